"""Assets, grouped by layer: ingest (reference data, simulator, Kafka stream), lake (Hive tables, sessions, aggregates),
marts (Greenplum, ClickHouse) and analytics."""
