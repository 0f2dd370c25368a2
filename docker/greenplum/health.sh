#!/bin/bash
# Healthy = the coordinator answers as gpadmin and the platform's provisioning (10-tv-platform.sh) has run.
su - "${GREENPLUM_USER:-gpadmin}" -c \
  "psql -d ${GREENPLUM_DATABASE_NAME:-tv_warehouse} -tAc \"select 1 from pg_namespace where nspname = '${TVP_GP_SCHEMA:-tv_marts}'\"" \
  2>/dev/null | grep -qx 1
