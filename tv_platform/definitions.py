"""The platform as Dagster sees it — read top to bottom, it is the architecture:

    ingest     reference data + simulator + Kafka topic ─► raw CSV in HDFS
    lake       Hive tables over the raw data ─► viewing sessions ─► daily aggregates (Spark)
    marts      aggregates ─► Greenplum (PostgreSQL locally) and ClickHouse (chdb locally)
    analytics  Spark analyses and forecasts over the lake

Resources (and so the engines behind each IO manager) come from tv_platform/resources.py, keyed by TVP_ENV.
"""

from __future__ import annotations

import dagster as dg

from tv_platform import sensors
from tv_platform.assets import ingest
from tv_platform.resources import get_resources

defs = dg.Definitions(
    assets=[*ingest.assets],
    asset_checks=[*ingest.checks],
    jobs=[*sensors.jobs],
    sensors=[*sensors.sensors],
    resources=get_resources(),
)
