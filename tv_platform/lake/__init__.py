"""The lake's logic as pure functions of Spark DataFrames — the Dagster assets in tv_platform/assets/lake.py only read
tables, call these and write the results.

    tables      Hive table names, declared column types, DDL (raw external CSV tables, derived parquet tables, the
                sessions view)
    sessions    sessionize(events, day) -> sessions + anomalies: enabled/disabled paired, every event accounted for
    aggregates  daily_viewing, channel_rating, hourly_activity, channel_weekday_hour, duration_histogram,
                user_activity (sessions, day) -> DataFrame; hour_slices (the in-day clock)
    queries     the weekly channel rating as one SQL query over the partitioned tables

docs/lake.md has the definitions.
"""

from tv_platform.lake.aggregates import (
    BUILDERS,
    channel_rating,
    channel_weekday_hour,
    daily_viewing,
    duration_histogram,
    hour_slices,
    hourly_activity,
    user_activity,
)
from tv_platform.lake.queries import weekly_channel_rating_from_daily_sql, weekly_channel_rating_sql
from tv_platform.lake.sessions import Sessionized, classify_events, read_window, sessionize, union_sources

__all__ = [
    "BUILDERS",
    "Sessionized",
    "channel_rating",
    "channel_weekday_hour",
    "classify_events",
    "daily_viewing",
    "duration_histogram",
    "hour_slices",
    "hourly_activity",
    "read_window",
    "sessionize",
    "union_sources",
    "user_activity",
    "weekly_channel_rating_from_daily_sql",
    "weekly_channel_rating_sql",
]
