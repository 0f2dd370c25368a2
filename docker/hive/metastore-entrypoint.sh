#!/bin/bash
# Start the Hive Metastore 4.0.1 (org.apache.hadoop.hive.metastore.HiveMetaStore, as the cluster profile does);
# create its schema in PostgreSQL with Hive's MetastoreSchemaTool on the first start only (-info fails while there is
# no schema; -initSchema refuses to run over an existing one, so a wrong guess cannot drop data).
# The database password comes from the environment (the env file) and goes into this container's
# metastore-site.xml (mode 0600), as the profile keeps it in a 0600 file: never in the image or the repository.
set -euo pipefail
conf=/opt/hms/conf
password=${HIVE_METASTORE_DB_PASSWORD:?HIVE_METASTORE_DB_PASSWORD is not set}
password=${password//&/&amp;}
password=${password//</&lt;}
password=${password//>/&gt;}
umask 077
{
  sed '/<\/configuration>/d' /opt/hms/site/metastore-site.xml
  printf '  <property><name>javax.jdo.option.ConnectionPassword</name><value>%s</value></property>\n</configuration>\n' "$password"
} > "$conf/metastore-site.xml"
cp /opt/hms/site/log4j2.properties "$conf/log4j2.properties"

export METASTORE_HOME=/opt/hms METASTORE_CONF_DIR="$conf" HADOOP_USER_NAME="${HADOOP_USER_NAME:-tv_platform}"
classpath="$conf:${HADOOP_CONF_DIR:-/etc/hadoop/conf}:/opt/hms/lib/*"
jvm=(java "-Xmx${HMS_HEAP:-1g}" -Xms64m -XX:+ExitOnOutOfMemoryError -Djava.net.preferIPv4Stack=true
     -Djava.awt.headless=true "-Dlog4j2.configurationFile=$conf/log4j2.properties" -Djava.io.tmpdir=/opt/hms/tmp
     -cp "$classpath")
schematool=org.apache.hadoop.hive.metastore.tools.schematool.MetastoreSchemaTool
cd /opt/hms/tmp
if "${jvm[@]}" "$schematool" -info -dbType postgres >/dev/null 2>&1; then
  echo "hive-metastore: schema present"
else
  echo "hive-metastore: creating the schema in PostgreSQL (MetastoreSchemaTool -initSchema)"
  "${jvm[@]}" "$schematool" -initSchema -dbType postgres
fi
exec "${jvm[@]}" org.apache.hadoop.hive.metastore.HiveMetaStore
