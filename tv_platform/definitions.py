"""The platform as Dagster sees it — read top to bottom, it is the architecture:

    ingest      reference data + simulator + Kafka topic ─► raw CSV in HDFS          (sensor: kafka_events_sensor)
    lake        Hive tables over the raw data ─► viewing sessions ─► daily aggregates (Spark Connect + Hive metastore)
    programmes  programme guide (synthetic or XMLTV) ─► viewing split by programme ─► show / series popularity
    marts       aggregates ─► Greenplum (PostgreSQL locally) and ClickHouse (chdb locally), checked against the lake;
                the forecast against the actuals likewise (unpartitioned)
    analytics   leaders and outsiders, retention, segments, audience measures, a 7-day forecast (charts in the UI)
    operation   a nightly schedule for yesterday, automation that follows the live stream, backfills from the CLI

Resources (and so the engines behind each IO manager) come from tv_platform/resources.py, keyed by TVP_ENV; the
settings everything here is built from are read once, in tv_platform/location.py.
"""

import dagster as dg

from tv_platform import location, schedules, sensors
from tv_platform.assets import analytics, ingest, lake, marts, programmes
from tv_platform.automation import follows_stream, fresh_marts
from tv_platform.resources import get_executor, get_resources

defs = dg.Definitions(
    assets=[
        *ingest.assets,
        *follows_stream(lake.assets),
        *follows_stream(programmes.assets),
        *follows_stream(analytics.daily_assets),  # the audience measures per broadcast day (docs/measures.md)
        *follows_stream(fresh_marts([*marts.assets, *programmes.mart_assets])),
        *follows_stream(fresh_marts(marts.audience_assets)),  # the audience measures' marts (docs/measures.md)
        *analytics.assets,
        *fresh_marts(marts.forecast_assets),  # the forecast against the actuals, replaced whole (unpartitioned)
    ],
    asset_checks=[*ingest.checks, *lake.checks, *programmes.checks, *marts.forecast_checks],  # the marts' are theirs
    jobs=[*sensors.jobs, *schedules.jobs],
    schedules=[*schedules.schedules],
    sensors=[*sensors.sensors, *schedules.sensors],
    resources=get_resources(location.settings),
    executor=get_executor(location.settings),
)
