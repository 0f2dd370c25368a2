#!/bin/bash
# Migrate the metadata database, create the admin (or reset its password from the environment), serve.
set -euo pipefail
superset db upgrade
superset init
if ! superset fab create-admin --username "${SUPERSET_ADMIN_USER}" --password "${SUPERSET_ADMIN_PASSWORD}" \
      --firstname Admin --lastname TV --email "${SUPERSET_ADMIN_USER}@tv-platform.invalid"; then
  superset fab reset-password --username "${SUPERSET_ADMIN_USER}" --password "${SUPERSET_ADMIN_PASSWORD}"
fi
exec gunicorn --bind 0.0.0.0:8088 --workers 2 --worker-class gthread --threads 8 --timeout 120 \
  --limit-request-line 0 --limit-request-field_size 0 "superset.app:create_app()"
