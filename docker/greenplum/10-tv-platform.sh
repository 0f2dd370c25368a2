#!/bin/bash
# Run once by the Greenplum image on an empty data directory (/docker-entrypoint-initdb.d, woblerr/greenplum):
# the platform's roles, schema and grants — what `tv-platform stack up` provisions in the local PostgreSQL.
# The warehouse database itself is GREENPLUM_DATABASE_NAME (= TVP_GP_DATABASE), created by the image.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --no-psqlrc -U "${GREENPLUM_USER:-gpadmin}" -h "$(hostname)" -d "${GREENPLUM_DATABASE_NAME}" \
  -v loader="${TVP_GP_LOADER_USER}" -v loader_pw="${TVP_GP_LOADER_PASSWORD}" \
  -v reader="${TVP_GP_READER_USER}" -v reader_pw="${TVP_GP_READER_PASSWORD}" \
  -v schema="${TVP_GP_SCHEMA}" -v db="${GREENPLUM_DATABASE_NAME}" <<'SQL'
CREATE ROLE :"loader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'loader_pw';
CREATE ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'reader_pw';
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"loader", :"reader";
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"loader";
GRANT USAGE ON SCHEMA :"schema" TO :"reader";
ALTER DEFAULT PRIVILEGES FOR ROLE :"loader" IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"reader";
ALTER ROLE :"loader" IN DATABASE :"db" SET search_path = :"schema", public;
ALTER ROLE :"reader" IN DATABASE :"db" SET search_path = :"schema", public;
SQL
# password logins from the compose network (the image's pg_hba.conf may only trust local connections)
HBA="${MASTER_DATA_DIRECTORY:-${COORDINATOR_DATA_DIRECTORY:-}}/pg_hba.conf"
if [ -f "$HBA" ] && ! grep -q "tv_platform" "$HBA"; then
  printf '# tv_platform: marts loader and dashboards\nhost all all 0.0.0.0/0 md5\n' >> "$HBA"
  gpstop -u
fi
echo "tv_platform: roles ${TVP_GP_LOADER_USER}/${TVP_GP_READER_USER} and schema ${TVP_GP_SCHEMA} ready"
