"""One module per engine: the resources and IO managers through which assets talk to Kafka, HDFS, Hive/Spark,
Greenplum, ClickHouse and Superset. Local/cluster differences live in tv_platform/resources.py, not here."""
