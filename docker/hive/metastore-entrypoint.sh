#!/bin/bash
# Start the Hive Metastore; create its schema in PostgreSQL on the first start only.
# (The image's own entrypoint runs `schematool -initSchema` at every start unless IS_RESUME=true, and that fails once
# the schema exists: checking with -info makes restarts work without touching the environment.)
# The JDBC password arrives as a system property in SERVICE_OPTS, never in hive-site.xml.
set -euo pipefail
export HIVE_CONF_DIR=/opt/hive/conf
export HADOOP_CLIENT_OPTS="${HADOOP_CLIENT_OPTS:-} -Xmx${HMS_HEAP:-1g} ${SERVICE_OPTS:-}"
if /opt/hive/bin/schematool -dbType postgres -info >/dev/null 2>&1; then
  echo "hive-metastore: schema present"
else
  echo "hive-metastore: initializing schema 3.1.0 in PostgreSQL"
  /opt/hive/bin/schematool -dbType postgres -initSchema
fi
exec /opt/hive/bin/hive --skiphadoopversion --skiphbasecp --service metastore
