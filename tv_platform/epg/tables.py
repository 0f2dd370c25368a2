"""Hive tables of the programme guide and of viewing attributed to programmes: declared columns and DDL.

``programme_guide`` is an external Spark CSV table over ``<root>/raw/epg/dt=…`` (like ``tv_dataset``); the derived
tables are parquet tables partitioned by ``dt`` written by the HiveIOManager (``dt`` appended to each)."""

from __future__ import annotations

from tv_platform.lake.tables import PARTITION_COLUMN, Columns, ddl_columns, quote_path

GUIDE_TABLE = "programme_guide"
GUIDE_LAKE_PATH = "raw/epg"

GUIDE_COLUMNS: Columns = [
    ("channel_id", "INT"),
    ("programme_id", "STRING"),
    ("title", "STRING"),
    ("kind", "STRING"),
    ("genre", "STRING"),
    ("series", "STRING"),
    ("episode", "INT"),
    ("start", "TIMESTAMP"),
    ("end", "TIMESTAMP"),
]
_PROGRAMME: Columns = [
    ("programme_id", "STRING"),
    ("title", "STRING"),
    ("kind", "STRING"),
    ("genre", "STRING"),
    ("series", "STRING"),
    ("episode", "INT"),
    ("programme_start", "TIMESTAMP"),
    ("programme_end", "TIMESTAMP"),
]
PROGRAMME_VIEWING_COLUMNS: Columns = [
    ("session_id", "STRING"),
    ("user_id", "INT"),
    ("channel_id", "INT"),
    ("channel_name", "STRING"),
    *_PROGRAMME,
    ("watch_start", "TIMESTAMP"),
    ("watch_end", "TIMESTAMP"),
    ("seconds", "BIGINT"),
    ("minutes", "DOUBLE"),
    ("session_dt", "STRING"),
]
PROGRAMME_POPULARITY_COLUMNS: Columns = [
    ("rank", "INT"),
    ("channel_id", "INT"),
    ("channel_name", "STRING"),
    *_PROGRAMME,
    ("duration_min", "DOUBLE"),
    ("sessions", "BIGINT"),
    ("viewers", "BIGINT"),
    ("minutes", "DOUBLE"),
    ("avg_minute_audience", "DOUBLE"),
    ("channel_share_pct", "DOUBLE"),
    ("tv_share_pct", "DOUBLE"),
]
SERIES_POPULARITY_COLUMNS: Columns = [
    ("rank", "INT"),
    ("series", "STRING"),
    ("kind", "STRING"),
    ("genre", "STRING"),
    ("channels", "BIGINT"),
    ("airings", "BIGINT"),
    ("airtime_min", "DOUBLE"),
    ("sessions", "BIGINT"),
    ("viewers", "BIGINT"),
    ("minutes", "DOUBLE"),
    ("avg_minute_audience", "DOUBLE"),
    ("tv_share_pct", "DOUBLE"),
]
SERIES_WEEKDAY_HOUR_COLUMNS: Columns = [
    ("series", "STRING"),
    ("kind", "STRING"),
    ("weekday", "INT"),
    ("weekday_name", "STRING"),
    ("hour", "INT"),
    ("minutes", "DOUBLE"),
    ("avg_audience", "DOUBLE"),
    ("sessions", "BIGINT"),
    ("viewers", "BIGINT"),
]
TOP_PROGRAMMES_COLUMNS: Columns = [
    ("chart", "STRING"),
    ("rank", "INT"),
    ("name", "STRING"),
    ("kind", "STRING"),
    ("channel_name", "STRING"),
    ("first_start", "TIMESTAMP"),
    ("minutes", "DOUBLE"),
    ("viewers", "BIGINT"),
    ("avg_minute_audience", "DOUBLE"),
    ("tv_share_pct", "DOUBLE"),
]
DERIVED_TABLES: dict[str, Columns] = {
    "programme_viewing": PROGRAMME_VIEWING_COLUMNS,
    "programme_popularity": PROGRAMME_POPULARITY_COLUMNS,
    "series_popularity": SERIES_POPULARITY_COLUMNS,
    "series_weekday_hour": SERIES_WEEKDAY_HOUR_COLUMNS,
    "top_programmes": TOP_PROGRAMMES_COLUMNS,
}


def create_guide_table_sql(database: str, location: str) -> str:
    """External CSV table over ``raw/epg`` partitioned by ``dt`` (one ``events.csv`` per day, header row)."""
    return (
        f"CREATE TABLE IF NOT EXISTS `{database}`.`{GUIDE_TABLE}` ({ddl_columns(GUIDE_COLUMNS)}, "
        f"`{PARTITION_COLUMN}` STRING) USING csv OPTIONS (header 'true', mode 'PERMISSIVE') "
        f"PARTITIONED BY ({PARTITION_COLUMN}) LOCATION '{quote_path(location)}'"
    )
