"""The lake's Hive tables: names, declared column types and the DDL that registers them.

Raw tables are *external* Spark CSV tables (``USING csv OPTIONS (header 'true')``) over the directories of
``tv_platform/layout.py``; the daily ones are partitioned by ``dt`` and a partition is registered with
``ALTER TABLE … ADD IF NOT EXISTS PARTITION (dt='…') LOCATION '…'`` when it lands. Spark's own CSV reader is used rather
than a Hive ``ROW FORMAT DELIMITED`` text table because Spark 4 ignores ``skip.header.line.count`` on Hive text
tables (the header row comes back as a data row) and LazySimpleSerDe does not understand quoted fields.

Derived tables are managed parquet tables partitioned by ``dt`` (Hive-compatible: ParquetHiveSerDe, plain Hive types),
created from the declared schemas below and written by :class:`tv_platform.engines.spark.HiveIOManager`.

Timestamps are wall-clock local time of the operator (``layout``: "no zone"), stored as ``TIMESTAMP`` so the tables stay
Hive-compatible; every computation in :mod:`tv_platform.lake` converts them to ``TIMESTAMP_NTZ`` first, so durations and
hour/day boundaries are wall-clock arithmetic whatever the Spark session time zone is.
"""

from __future__ import annotations

from dataclasses import dataclass

from tv_platform import layout
from tv_platform.settings import Settings

Columns = list[tuple[str, str]]

PARTITION_COLUMN = "dt"

# ---- raw ---------------------------------------------------------------------------------------------------------
EVENT_COLUMNS: Columns = [
    ("session_id", "STRING"),
    ("user_id", "INT"),
    ("channel_id", "INT"),
    ("timer", "TIMESTAMP"),
    ("status", "STRING"),
]
CHANNEL_COLUMNS: Columns = [
    ("channel_id", "INT"),
    ("channel_name", "STRING"),
    ("time_rating", "DOUBLE"),
    ("viewers_rating", "DOUBLE"),
    ("rank", "INT"),
]
USER_COLUMNS: Columns = [("user_id", "INT"), ("user_name", "STRING")]
# ids met in landed events that the reference data lacks (written by the landing: layout.inferred_dir)
INFERRED_COLUMNS: Columns = [("dimension", "STRING"), ("member_id", "INT"), ("first_seen", "STRING")]
INFERRED_TABLE = "tv_inferred_members"
# dimension -> (reference table, id column, name column, view, label of an inferred member)
DIMENSIONS = {
    "users": ("tv_users", "user_id", "user_name", "users_dim", "subscriber #{id} (not in the subscriber list)"),
    "channels": ("tv_channels", "channel_id", "channel_name", "channels_dim", "channel #{id} (not in the channel list)"),
}

# source name (layout.raw_dir) -> Hive table; the value of the sessions' ``source`` column
EVENT_SOURCES = {"tv_dataset": "history", "tv_stream": "stream"}
REFERENCE_TABLES = {"tv_channels": CHANNEL_COLUMNS, "tv_users": USER_COLUMNS}

# ---- derived (the dt partition column is appended to each) --------------------------------------------------------
SESSION_COLUMNS: Columns = [
    ("session_id", "STRING"),
    ("user_id", "INT"),
    ("user_name", "STRING"),
    ("channel_id", "INT"),
    ("channel_name", "STRING"),
    ("time_start", "TIMESTAMP"),
    ("time_end", "TIMESTAMP"),
    ("duration_s", "BIGINT"),
    ("is_zero_length", "BOOLEAN"),
    ("crosses_midnight", "BOOLEAN"),
    ("source", "STRING"),
]
ANOMALY_COLUMNS: Columns = [
    ("session_id", "STRING"),
    ("reason", "STRING"),
    ("status", "STRING"),
    ("timer", "TIMESTAMP"),
    ("user_id", "INT"),
    ("channel_id", "INT"),
    ("source", "STRING"),
    ("raw_dt", "STRING"),
    ("detail", "STRING"),
]
DAILY_VIEWING_COLUMNS: Columns = [
    ("views", "BIGINT"),
    ("viewers", "BIGINT"),
    ("active_users", "BIGINT"),
    ("hours_by_start", "DOUBLE"),
    ("hours_in_day", "DOUBLE"),
    ("hours_after_day", "DOUBLE"),
    ("hours_carried_in", "DOUBLE"),
    ("sessions_crossing_midnight", "BIGINT"),
    ("zero_length_views", "BIGINT"),
    ("avg_view_minutes", "DOUBLE"),
]
CHANNEL_RATING_COLUMNS: Columns = [
    ("rank", "INT"),
    ("channel_id", "INT"),
    ("channel_name", "STRING"),
    ("hours", "DOUBLE"),
    ("views", "BIGINT"),
    ("viewers", "BIGINT"),
    ("hours_share", "DOUBLE"),
    ("viewers_share", "DOUBLE"),
    ("reach_pct", "DOUBLE"),
    ("avg_view_minutes", "DOUBLE"),
]
HOURLY_ACTIVITY_COLUMNS: Columns = [
    ("hour", "INT"),
    ("sessions_active", "BIGINT"),
    ("sessions_started", "BIGINT"),
    ("viewers", "BIGINT"),
    ("minutes", "DOUBLE"),
    ("avg_concurrent", "DOUBLE"),
]
CHANNEL_WEEKDAY_HOUR_COLUMNS: Columns = [
    ("weekday", "INT"),
    ("weekday_name", "STRING"),
    ("hour", "INT"),
    ("channel_id", "INT"),
    ("channel_name", "STRING"),
    ("minutes", "DOUBLE"),
    ("sessions_active", "BIGINT"),
    ("viewers", "BIGINT"),
]
DURATION_HISTOGRAM_COLUMNS: Columns = [
    ("bucket_order", "INT"),
    ("bucket", "STRING"),
    ("lower_s", "BIGINT"),
    ("upper_s", "BIGINT"),
    ("sessions", "BIGINT"),
    ("hours", "DOUBLE"),
    ("sessions_share", "DOUBLE"),
]
USER_ACTIVITY_COLUMNS: Columns = [
    ("user_id", "INT"),
    ("user_name", "STRING"),
    ("sessions", "BIGINT"),
    ("channels", "BIGINT"),
    ("minutes_by_start", "DOUBLE"),
    ("minutes_in_day", "DOUBLE"),
    ("night_minutes", "DOUBLE"),
    ("morning_minutes", "DOUBLE"),
    ("afternoon_minutes", "DOUBLE"),
    ("evening_minutes", "DOUBLE"),
    ("segment", "STRING"),
    ("first_start", "TIMESTAMP"),
    ("last_end", "TIMESTAMP"),
]

DERIVED_TABLES: dict[str, Columns] = {
    "viewing_sessions": SESSION_COLUMNS,
    "session_anomalies": ANOMALY_COLUMNS,
    "daily_viewing": DAILY_VIEWING_COLUMNS,
    "channel_rating": CHANNEL_RATING_COLUMNS,
    "hourly_activity": HOURLY_ACTIVITY_COLUMNS,
    "channel_weekday_hour": CHANNEL_WEEKDAY_HOUR_COLUMNS,
    "duration_histogram": DURATION_HISTOGRAM_COLUMNS,
    "user_activity": USER_ACTIVITY_COLUMNS,
}

SESSIONS_VIEW = "sessions_v"


def column_names(columns: Columns, partitioned: bool = True) -> list[str]:
    return [c for c, _ in columns] + ([PARTITION_COLUMN] if partitioned else [])


def ddl_columns(columns: Columns) -> str:
    return ", ".join(f"`{c}` {t}" for c, t in columns)


def quote_path(uri: str) -> str:
    return uri.replace("\\", "\\\\").replace("'", "\\'")


# ---- where things are --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LakeLocations:
    """Full Hadoop URIs (what Spark is given) of the raw directories, from the layout contract."""

    tv_dataset: str
    tv_stream: str
    tv_channels: str
    tv_users: str
    warehouse: str

    @classmethod
    def from_settings(cls, settings: Settings) -> "LakeLocations":
        from tv_platform.engines.hdfs import lake_fs

        fs = lake_fs(settings)
        return cls(
            tv_dataset=fs.uri(layout.raw_dir("tv_dataset", settings)),
            tv_stream=fs.uri(layout.raw_dir("tv_stream", settings)),
            tv_channels=fs.uri(layout.channels_dir(settings)),
            tv_users=fs.uri(layout.users_dir(settings)),
            warehouse=fs.uri(warehouse_dir(settings)),
        )

    @classmethod
    def under(cls, lake_url: str, root: str = "/tv_platform") -> "LakeLocations":
        """Locations for a lake whose files live at ``lake_url`` (e.g. ``file:///tmp/x``) with lake root ``root``."""
        base = lake_url.rstrip("/") + "/" + root.strip("/")
        return cls(
            tv_dataset=f"{base}/raw/tv_dataset",
            tv_stream=f"{base}/raw/tv_stream",
            tv_channels=f"{base}/reference/channels",
            tv_users=f"{base}/reference/users",
            warehouse=f"{base}/warehouse",
        )

    def of(self, table: str) -> str:
        return getattr(self, table)

    @property
    def tv_inferred_members(self) -> str:
        """Beside the reference directories: ``<root>/reference/inferred``."""
        return self.tv_users.rstrip("/").rsplit("/", 1)[0] + "/inferred"


def warehouse_dir(settings: Settings) -> str:
    """Lake directory under which the derived (managed) tables of each Hive database live: ``<root>/warehouse/<db>.db``."""
    return f"{layout.root(settings)}/warehouse"


# ---- DDL ---------------------------------------------------------------------------------------------------------
def create_database_sql(database: str, location: str | None = None) -> str:
    loc = f" LOCATION '{quote_path(location)}'" if location else ""
    return f"CREATE DATABASE IF NOT EXISTS `{database}`{loc}"


def create_events_table_sql(database: str, table: str, location: str) -> str:
    """External CSV table of raw events partitioned by ``dt`` (the directory ``dt=YYYY-MM-DD``)."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({ddl_columns(EVENT_COLUMNS)}, `{PARTITION_COLUMN}` STRING) "
        f"USING csv OPTIONS (header 'true', mode 'PERMISSIVE') PARTITIONED BY ({PARTITION_COLUMN}) "
        f"LOCATION '{quote_path(location)}'"
    )


def create_reference_table_sql(database: str, table: str, location: str) -> str:
    """External CSV table over a reference directory (``channels.csv`` / ``users.csv``), unpartitioned."""
    columns = REFERENCE_TABLES[table]
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({ddl_columns(columns)}) "
        f"USING csv OPTIONS (header 'true', mode 'PERMISSIVE') LOCATION '{quote_path(location)}'"
    )


def create_inferred_table_sql(database: str, location: str) -> str:
    """External CSV table of the inferred members (every landed range's file, unpartitioned)."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{INFERRED_TABLE}` ({ddl_columns(INFERRED_COLUMNS)}) "
        f"USING csv OPTIONS (header 'true', mode 'PERMISSIVE') LOCATION '{quote_path(location)}'"
    )


def label_sql(dimension: str, id_sql: str) -> str:
    """SQL of the label an inferred member is shown with: ``subscriber #12345 (not in the subscriber list)``."""
    before, after = DIMENSIONS[dimension][4].split("{id}")
    return f"concat('{before}', CAST({id_sql} AS STRING), '{after}')"


def dimension_view_sql(database: str, dimension: str) -> str:
    """``<db>.users_dim`` / ``<db>.channels_dim``: the reference rows (``inferred`` false) and, for every id met in
    landed events but missing from the reference data, an inferred member — labelled, ``inferred`` true, with the day
    it was first seen. The next reference load that lists the id replaces the inferred member by the real one."""
    table, key, name, view, _ = DIMENSIONS[dimension]
    db = f"`{database}`"
    return f"""
CREATE OR REPLACE VIEW {db}.`{view}` AS
SELECT r.{key}, r.{name}, false AS inferred, CAST(NULL AS STRING) AS first_seen FROM {db}.`{table}` r
UNION ALL
SELECT m.member_id AS {key}, {label_sql(dimension, 'm.member_id')} AS {name}, true AS inferred,
       min(m.first_seen) AS first_seen
FROM {db}.`{INFERRED_TABLE}` m LEFT ANTI JOIN {db}.`{table}` r ON m.member_id = r.{key}
WHERE m.dimension = '{dimension}' AND m.member_id IS NOT NULL
GROUP BY m.member_id
"""


def add_partition_sql(database: str, table: str, day: str, location: str) -> str:
    return (
        f"ALTER TABLE `{database}`.`{table}` ADD IF NOT EXISTS PARTITION ({PARTITION_COLUMN}='{day}') "
        f"LOCATION '{quote_path(location.rstrip('/') + '/' + PARTITION_COLUMN + '=' + day)}'"
    )


def create_derived_table_sql(database: str, table: str, columns: Columns, partitioned: bool = True) -> str:
    part = f", `{PARTITION_COLUMN}` STRING" if partitioned else ""
    by = f" PARTITIONED BY ({PARTITION_COLUMN})" if partitioned else ""
    return f"CREATE TABLE IF NOT EXISTS `{database}`.`{table}` ({ddl_columns(columns)}{part}) USING parquet{by}"


def sessions_view_sql(database: str) -> str:
    """``<db>.sessions_v``: every session paired from the raw tables of both sources — the seed's ``tv_dataset_v``
    done properly. ``UNION`` collapses events duplicated within or across sources; the earliest ``enabled`` and the
    latest ``disabled`` of a session are paired (the same rule as :func:`tv_platform.lake.sessions.sessionize`), a
    negative duration is not a session, names are left-joined (a session of a channel or subscriber missing from the
    reference data is kept, named by its inferred member's label). Sessions
    whose other half is missing are left out here; the ``session_anomalies`` table lists them with their reason."""
    db = f"`{database}`"
    return f"""
CREATE OR REPLACE VIEW {db}.`{SESSIONS_VIEW}` AS
WITH ev AS (
    SELECT session_id, user_id, channel_id, timer, status FROM {db}.`tv_dataset`
    UNION
    SELECT session_id, user_id, channel_id, timer, status FROM {db}.`tv_stream`
), ts AS (
    SELECT session_id,
           min_by(user_id, struct(timer, user_id, channel_id)) AS user_id,
           min_by(channel_id, struct(timer, user_id, channel_id)) AS channel_id,
           min(timer) AS time_start
    FROM ev WHERE status = 'enabled' AND session_id IS NOT NULL AND timer IS NOT NULL
      AND user_id IS NOT NULL AND channel_id IS NOT NULL
    GROUP BY session_id
), te AS (
    SELECT session_id, max(timer) AS time_end
    FROM ev WHERE status = 'disabled' AND session_id IS NOT NULL AND timer IS NOT NULL
      AND user_id IS NOT NULL AND channel_id IS NOT NULL
    GROUP BY session_id
)
SELECT ts.session_id, ts.user_id, coalesce(u.user_name, {label_sql("users", "ts.user_id")}) AS user_name,
       ts.channel_id, coalesce(c.channel_name, {label_sql("channels", "ts.channel_id")}) AS channel_name,
       ts.time_start, te.time_end,
       timestampdiff(SECOND, CAST(ts.time_start AS TIMESTAMP_NTZ), CAST(te.time_end AS TIMESTAMP_NTZ)) AS duration_s,
       CAST(CAST(CAST(ts.time_start AS TIMESTAMP_NTZ) AS DATE) AS STRING) AS dt
FROM ts
JOIN te ON ts.session_id = te.session_id AND te.time_end >= ts.time_start
LEFT JOIN {db}.`tv_channels` c ON ts.channel_id = c.channel_id
LEFT JOIN {db}.`tv_users` u ON ts.user_id = u.user_id
"""
