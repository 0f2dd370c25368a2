"""Writes the Superset bundle in this directory: two mirror-image dashboards, one over Greenplum, one over ClickHouse.

    python superset_exports/build.py           # rewrite the YAML files from the declarations below
    python superset_exports/build.py --check   # exit 1 if the files differ from what this script writes

The YAML files are the artifact — Superset's import/export format, what ``tv-platform superset up`` imports and what a
reviewer reads in a diff. This script is how they are written, so the two dashboards stay mirror images (same charts,
same filters; only the SQL dialect of a few expressions differs), every object keeps a stable uuid (uuid5 of its
name), and the datasets list exactly the columns the marts declare (``tv_platform/assets/marts.py``: ``MARTS`` and
``FORECAST``; ``tv_platform/epg/marts.py``: ``PROGRAMME_MARTS``). A change made in Superset's UI and exported belongs here too; ``test_superset_bundle.py`` fails while the files and this script
disagree.

No password is written: database URIs carry Superset's mask ``XXXXXXXXXX``; the real one is supplied at import.
"""

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tv_platform.assets.marts import AUDIENCE_MARTS, FORECAST, MARTS  # noqa: E402
from tv_platform.epg.marts import PROGRAMME_MARTS  # noqa: E402

ALL_MARTS = {**MARTS, **PROGRAMME_MARTS, FORECAST.source: FORECAST, **AUDIENCE_MARTS}
"""Every mart a dataset can be over: the lake's, the programme guide's and the forecast against the actuals."""

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/tv_platform/superset_exports")
VERSION = "1.0.0"
TIMESTAMP = "2026-11-26T00:00:00+00:00"  # fixed: the files change only when their content does


def uid(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "/".join(parts)))


# ---------------------------------------------------------------------------------------------------------------------
# databases
# ---------------------------------------------------------------------------------------------------------------------
WAREHOUSES: dict[str, dict[str, Any]] = {
    "greenplum": {
        "key": "tv_greenplum",
        "database_name": "Greenplum (tv_marts)",
        "title": "TV viewing — Greenplum",
        "slug": "tv-greenplum",
        # the read-only role of the stack; host, port, database and role are replaced from TVP_GP_* at import
        "sqlalchemy_uri": "postgresql+psycopg2://tv_reader:XXXXXXXXXX@127.0.0.1:5432/tv_warehouse",
        "schema": "tv_marts",
        "engine": "PostgreSQL 15 playing Greenplum locally",
    },
    "clickhouse": {
        "key": "tv_clickhouse",
        "database_name": "ClickHouse (tv_marts)",
        "title": "TV viewing — ClickHouse",
        "slug": "tv-clickhouse",
        # the embedded engine (chDB) through clickhouse-connect's SQLAlchemy dialect; replaced from TVP_CLICKHOUSE_URL
        "sqlalchemy_uri": "clickhousedb:///tv_marts?interface=chdb&path=<TVP_STATE_DIR>/clickhouse",
        "schema": "tv_marts",
        "engine": "ClickHouse (embedded chDB locally)",
    },
}


def database_yaml(wh: str) -> dict[str, Any]:
    w = WAREHOUSES[wh]
    return {
        "database_name": w["database_name"],
        "sqlalchemy_uri": w["sqlalchemy_uri"],
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        "extra": {
            "allows_virtual_table_explore": True,
            # one connection per query (Superset's default NullPool): chDB is released between queries
            "engine_params": {},
            "metadata_params": {},
            "schemas_allowed_for_file_upload": [],
        },
        "uuid": uid("database", wh),
        "version": VERSION,
    }


# ---------------------------------------------------------------------------------------------------------------------
# datasets: the marts, plus calculated columns and saved metrics
# ---------------------------------------------------------------------------------------------------------------------
# (greenplum expression, clickhouse expression) — the only places where the dialects differ
CALCULATED: dict[str, list[tuple[str, str, str, str]]] = {
    # table -> [(column, verbose name, greenplum SQL, clickhouse SQL)]
    "channel_weekday_hour": [
        ("weekday_label", "Weekday", "weekday || ' ' || weekday_name",
         "concat(toString(weekday), ' ', weekday_name)"),
    ],
    "duration_histogram": [
        ("bucket_label", "Session length", "lpad(bucket_order::text, 2, '0') || ' ' || bucket",
         "concat(leftPad(toString(bucket_order), 2, '0'), ' ', bucket)"),
    ],
    "series_weekday_hour": [
        ("weekday_label", "Weekday", "weekday || ' ' || weekday_name",
         "concat(toString(weekday), ' ', weekday_name)"),
    ],
    "programme_popularity": [
        ("start_hour", "Start hour", "CAST(extract(hour FROM programme_start) AS integer)",
         "toUInt8(toHour(programme_start))"),
        ("programme_label", "Programme", "title || ' — ' || coalesce(channel_name, '?')",
         "concat(title, ' — ', ifNull(channel_name, '?'))"),
    ],
}
NUMERIC_CALCULATED = {"duration_min", "start_hour"}

AIRING_METRICS = [  # a programme airing's and a series' measures, over its airtime (docs/measures.md)
    ("tvr", "TVR, %", "SUM(minutes) * 100.0 / NULLIF(SUM(airtime_min * universe), 0)",
     "SUM(minutes) * 100.0 / nullIf(SUM(airtime_min * universe), 0)", ",.3f"),
    ("average_minute_audience", "AMA", "SUM(minutes) * 1.0 / NULLIF(SUM(airtime_min), 0)",
     "SUM(minutes) / nullIf(SUM(airtime_min), 0)", ",.2f"),
    ("share", "Share, %", "SUM(minutes) * 100.0 / NULLIF(SUM(all_minutes), 0)",
     "SUM(minutes) * 100.0 / nullIf(SUM(all_minutes), 0)", ",.2f"),
]

PER_DAY = ("hours_per_day", "Hours watched per day (average over the calendar days of that weekday)",
           "SUM(minutes) / 60.0 / COUNT(DISTINCT dt)", "SUM(minutes) / 60 / COUNT(DISTINCT dt)", ",.1f")
"""A weekday × hour cell as the average day: its hours over the range divided by the number of calendar days in the
cell (two Tuesdays count twice as many days as one Saturday, so neither weekday outweighs the other by occurring more
often in the range). Every day of the range has viewing in every clock hour of a whole-audience heatmap, so the days
in a cell are the range's days of that weekday."""

# Saved metrics. Names never equal a column name: ClickHouse resolves `SUM(views) AS views` into a cyclic alias.
METRICS: dict[str, list[tuple[str, str, str, str, str]]] = {
    # table -> [(metric, verbose name, greenplum SQL, clickhouse SQL, d3 format)]
    "channel_rating": [
        ("total_hours", "Hours", "SUM(hours)", "SUM(hours)", ",.1f"),
        ("total_views", "Views", "SUM(views)", "SUM(views)", ",d"),
        ("viewer_days", "Viewer-days", "SUM(viewers)", "SUM(viewers)", ",d"),
        ("mean_view_minutes", "Minutes per view", "SUM(hours) * 60 / NULLIF(SUM(views), 0)",
         "SUM(hours) * 60 / nullIf(SUM(views), 0)", ",.1f"),
    ],
    "daily_viewing": [
        ("total_hours", "Hours watched", "SUM(hours_in_day)", "SUM(hours_in_day)", ",.0f"),
        ("total_views", "Views", "SUM(views)", "SUM(views)", ",d"),
        ("active_user_days", "Active users", "SUM(active_users)", "SUM(active_users)", ",d"),
    ],
    "hourly_activity": [
        ("mean_concurrent_viewers", "Average concurrent viewers", "AVG(avg_concurrent)", "AVG(avg_concurrent)",
         ",.0f"),
        ("total_sessions_started", "Sessions started", "SUM(sessions_started)", "SUM(sessions_started)", ",d"),
        ("total_hours", "Hours watched", "SUM(minutes) / 60", "SUM(minutes) / 60", ",.0f"),
    ],
    "channel_weekday_hour": [
        ("total_hours", "Hours watched", "SUM(minutes) / 60", "SUM(minutes) / 60", ",.1f"),
        PER_DAY,
        ("viewer_hours", "Viewers (sum over hours)", "SUM(viewers)", "SUM(viewers)", ",d"),
    ],
    "duration_histogram": [
        ("total_sessions", "Sessions", "SUM(sessions)", "SUM(sessions)", ",d"),
        ("total_hours", "Hours", "SUM(hours)", "SUM(hours)", ",.0f"),
    ],
    "user_activity": [
        ("distinct_users", "Active users", "COUNT(DISTINCT user_id)", "COUNT(DISTINCT user_id)", ",d"),
        ("user_days", "User-days", "COUNT(*)", "COUNT(*)", ",d"),
        ("total_sessions", "Sessions", "SUM(sessions)", "SUM(sessions)", ",d"),
        ("total_hours", "Hours watched", "SUM(minutes_in_day) / 60", "SUM(minutes_in_day) / 60", ",.0f"),
    ],
    "series_weekday_hour": [
        ("total_hours", "Hours watched", "SUM(minutes) / 60", "SUM(minutes) / 60", ",.1f"),
        PER_DAY,
        ("total_sessions", "Sessions", "SUM(sessions)", "SUM(sessions)", ",d"),
    ],
    "programme_popularity": [
        ("total_hours", "Hours watched", "SUM(minutes) / 60", "SUM(minutes) / 60", ",.1f"),
        ("total_sessions", "Sessions", "SUM(sessions)", "SUM(sessions)", ",d"),
    ],
    "series_popularity": [
        ("total_hours", "Hours watched", "SUM(minutes) / 60", "SUM(minutes) / 60", ",.1f"),
        ("total_airings", "Airings", "SUM(airings)", "SUM(airings)", ",d"),
        ("viewer_days", "Viewer-days", "SUM(viewers)", "SUM(viewers)", ",d"),
        ("mean_minute_audience", "Average minute audience", "SUM(minutes) / NULLIF(SUM(airtime_min), 0)",
         "SUM(minutes) / nullIf(SUM(airtime_min), 0)", ",.2f"),
    ],
    "top_programmes": [
        ("total_hours", "Hours watched", "SUM(minutes) / 60", "SUM(minutes) / 60", ",.1f"),
    ],
    "forecast_daily": [
        ("forecast_hours", "Hours watched", "SUM(hours)", "SUM(hours)", ",.0f"),
    ],
    # the audience marts (docs/measures.md): ratios of sums, so any span of days and any filter stays right
    "audience_channel": [
        ("tvr", "TVR, %", "SUM(minutes) * 100.0 / NULLIF(SUM(period_minutes * universe), 0)",
         "SUM(minutes) * 100.0 / nullIf(SUM(period_minutes * universe), 0)", ",.3f"),
        ("average_minute_audience", "AMA", "SUM(minutes) * 1.0 / NULLIF(SUM(period_minutes), 0)",
         "SUM(minutes) / nullIf(SUM(period_minutes), 0)", ",.2f"),
        ("share", "Share, %", "SUM(minutes) * 100.0 / NULLIF(SUM(all_minutes), 0)",
         "SUM(minutes) * 100.0 / nullIf(SUM(all_minutes), 0)", ",.2f"),
        ("mean_daily_reach_pct", "Daily reach, % (mean over days)", "AVG(reach_pct)", "AVG(reach_pct)", ",.2f"),
        ("ats_per_member_day", "ATS per member and day, min", "SUM(minutes) * 1.0 / NULLIF(SUM(universe), 0)",
         "SUM(minutes) / nullIf(SUM(universe), 0)", ",.1f"),
    ],
    "audience_programme": AIRING_METRICS,
    "audience_series": AIRING_METRICS,
    "sessions": [
        ("session_count", "Sessions", "COUNT(*)", "COUNT(*)", ",d"),
        ("total_hours", "Hours", "SUM(duration_s) / 3600.0", "SUM(duration_s) / 3600.0", ",.0f"),
        ("distinct_viewers", "Viewers", "COUNT(DISTINCT user_id)", "COUNT(DISTINCT user_id)", ",d"),
    ],
}

DATASET_TABLES = ["channel_rating", "daily_viewing", "hourly_activity", "channel_weekday_hour", "duration_histogram",
                  "user_activity", "sessions", "series_weekday_hour", "programme_popularity", "series_popularity",
                  "forecast_daily", "top_programmes", "audience_channel", "audience_programme", "audience_series"]
TOP_N_DEFAULT = 20
"""The programme and series heatmaps show this many rows (the most watched) unless the Top N filter says otherwise."""
TOP_N_CAP = 60
"""The most rows they ever show: more labels than this on one axis are unreadable (the tables list every one)."""
TOP_DATASETS: dict[str, tuple[str, str, str]] = {
    # virtual dataset -> (the mart it ranks, Greenplum SQL, ClickHouse SQL); {s} is the schema. top_rank: 1 = the row
    # group with the most minutes in the whole mart (ties broken by name, so every rank is unique)
    "series_weekday_hour_top": (
        "series_weekday_hour",
        "SELECT m.*, r.top_rank FROM {s}.series_weekday_hour AS m JOIN (SELECT series, CAST(row_number() OVER "
        "(ORDER BY sum(minutes) DESC, series) AS integer) AS top_rank FROM {s}.series_weekday_hour GROUP BY series) "
        "AS r ON r.series = m.series",
        "SELECT m.*, r.top_rank FROM {s}.series_weekday_hour AS m INNER JOIN (SELECT series, toUInt32(row_number() "
        "OVER (ORDER BY sum(minutes) DESC, series)) AS top_rank FROM {s}.series_weekday_hour GROUP BY series) AS r "
        "ON r.series = m.series",
    ),
    "programme_popularity_top": (
        "programme_popularity",
        "SELECT m.*, r.top_rank FROM {s}.programme_popularity AS m JOIN (SELECT title, coalesce(channel_name, '') AS "
        "channel_key, CAST(row_number() OVER (ORDER BY sum(minutes) DESC, title, coalesce(channel_name, '')) AS "
        "integer) AS top_rank FROM {s}.programme_popularity GROUP BY title, coalesce(channel_name, '')) AS r "
        "ON r.title = m.title AND r.channel_key = coalesce(m.channel_name, '')",
        "SELECT m.*, r.top_rank FROM {s}.programme_popularity AS m INNER JOIN (SELECT title, ifNull(channel_name, '') "
        "AS channel_key, toUInt32(row_number() OVER (ORDER BY sum(minutes) DESC, title, channel_key)) AS top_rank "
        "FROM {s}.programme_popularity GROUP BY title, channel_key) AS r "
        "ON r.title = m.title AND r.channel_key = ifNull(m.channel_name, '')",
    ),
}
"""The programme and series heatmaps' datasets: their mart with each row's ``top_rank`` (the rank of its series, or of
its programme — title on a channel — by minutes watched), which the Top N filter (default ``top_rank <=
TOP_N_DEFAULT``) and the charts' own cap (``top_rank <= TOP_N_CAP``) act on. The rank is over the whole mart, not the
date range (a virtual dataset cannot see the dashboard's range without Jinja templating, which stays off)."""
ALL_DATASETS = DATASET_TABLES + list(TOP_DATASETS)


def base_table(table: str) -> str:
    """The mart a dataset reads: itself, or the one a top-N dataset ranks."""
    return TOP_DATASETS[table][0] if table in TOP_DATASETS else table


TIME_COLUMN = {"forecast_daily": "day"}  # the dataset's time column (the Date range filter's), default dt
SERIES_TABLES = ("series_weekday_hour", "series_popularity", "series_weekday_hour_top")
"""The Series filter's scope: the charts about series. Not programme_popularity (its charts rank programmes — mostly
one-offs: films, sport, news — so a series filter would usually empty them) nor forecast_daily (its ``series`` is
another thing: 'total', 'channel:…', 'hour:…')."""

VERBOSE = {  # column labels: every table, then per table
    "*": {"dt": "Day", "channel_name": "Channel", "channel_id": "Channel id", "hour": "Hour of day",
          "weekday_name": "Weekday", "user_name": "Subscriber", "avg_view_minutes": "Minutes per view"},
    "daily_viewing": {"hours_in_day": "Hours watched", "views": "Views", "active_users": "Active users",
                      "viewers": "Viewers"},
    "channel_rating": {"hours": "Hours", "views": "Views", "viewers": "Viewers", "rank": "Rank"},
    "duration_histogram": {"bucket": "Length", "sessions": "Sessions", "hours": "Hours"},
    "user_activity": {"sessions": "Sessions in the day", "segment": "Main time of day"},
    "sessions": {"duration_s": "Duration, s", "time_start": "Start", "time_end": "End"},
    "series_weekday_hour": {"series": "Series", "kind": "Kind", "minutes": "Minutes", "sessions": "Sessions",
                            "viewers": "Viewers", "avg_audience": "Average audience"},
    "programme_popularity": {"title": "Title", "series": "Series", "kind": "Kind", "genre": "Genre",
                             "programme_start": "Start", "programme_end": "End", "minutes": "Minutes",
                             "viewers": "Viewers", "sessions": "Sessions", "rank": "Rank of the day"},
    "series_popularity": {"series": "Series", "kind": "Kind", "genre": "Genre", "airings": "Airings",
                          "airtime_min": "Airtime, min", "minutes": "Minutes", "viewers": "Viewers",
                          "rank": "Rank of the day"},
    "forecast_daily": {"day": "Day", "series": "Series", "kind": "Kind", "model": "Model", "hours": "Hours"},
    "top_programmes": {"chart": "Chart", "rank": "Rank", "name": "Programme", "kind": "Kind", "minutes": "Minutes",
                       "viewers": "Viewers", "first_start": "Start"},
    **{t: {"dt": "Broadcast day", "daypart": "Daypart", "universe": "Universe", "minutes": "Credited minutes",
           "tvr_pct": "TVR, %", "ama": "AMA", "reach": "Reach", "reach_pct": "Reach, %", "share_pct": "Share, %",
           "ats_universe_min": "ATS per member, min", "ats_viewer_min": "ATS per viewer, min", "title": "Title",
           "series": "Series", "airtime_min": "Airtime, min", "programme_start": "Start", "programme_end": "End"}
       for t in ("audience_channel", "audience_programme", "audience_series")},
}
MEASURES_DOC = "docs/measures.md"
METRIC_DOCS = {  # the anchor of docs/measures.md each metric's definition is under (default: the page)
    "tvr": "tvr", "average_minute_audience": "ama", "mean_minute_audience": "ama", "share": "share",
    "mean_daily_reach_pct": "reach", "ats_per_member_day": "ats", "mean_concurrent_viewers": "ama",
}


def metric_description(name: str, verbose: str) -> str:
    anchor = METRIC_DOCS.get(name)
    return f"{verbose}: definition in {MEASURES_DOC}" + (f"#{anchor}" if anchor else "")


DTTM_COLUMNS = {"dt", "day", "time_start", "time_end", "first_start", "last_end", "programme_start", "programme_end"}


def dataset_yaml(wh: str, table: str) -> dict[str, Any]:
    which = 0 if wh == "greenplum" else 1
    base = base_table(table)
    mart = ALL_MARTS[base]
    columns = []
    physical = dict(mart.columns)
    if table in TOP_DATASETS:
        physical["top_rank"] = ("integer not null", "UInt32")
    for name, types in physical.items():
        typ = types[which].replace(" not null", "").upper() if which == 0 else types[which]
        is_dttm = name in DTTM_COLUMNS
        columns.append({
            "column_name": name, "verbose_name": VERBOSE.get(base, {}).get(name, VERBOSE["*"].get(name)),
            "is_dttm": is_dttm, "is_active": True,
            "type": typ, "advanced_data_type": None, "groupby": True, "filterable": True, "expression": None,
            "description": (mart.column_docs or {}).get(name), "python_date_format": None, "extra": {},
        })
    for name, verbose, gp_sql, ch_sql in CALCULATED.get(base, []):
        columns.append({
            "column_name": name, "verbose_name": verbose, "is_dttm": False, "is_active": True,
            "type": "NUMERIC" if name in NUMERIC_CALCULATED else ("TEXT" if which == 0 else "String"),
            "advanced_data_type": None, "groupby": True, "filterable": True,
            "expression": gp_sql if which == 0 else ch_sql, "description": None, "python_date_format": None,
            "extra": {},
        })
    metrics = [{
        "metric_name": name, "verbose_name": verbose, "metric_type": None,
        "expression": gp_sql if which == 0 else ch_sql, "description": metric_description(name, verbose),
        "d3format": fmt,
        "currency": None, "extra": {}, "warning_text": None,
    } for name, verbose, gp_sql, ch_sql, fmt in METRICS[base]]
    sql = TOP_DATASETS[table][1 + which].format(s=WAREHOUSES[wh]["schema"]) if table in TOP_DATASETS else None
    return {
        "table_name": table,
        "main_dttm_col": TIME_COLUMN.get(table, "dt"),
        "description": (f"Mart {base} with the rank of each row's {'series' if 'series' in base else 'programme'} "
                        f"(top_rank) ({WAREHOUSES[wh]['engine']}); see docs/superset.md" if sql else
                        f"Mart {table} ({WAREHOUSES[wh]['engine']}); see docs/marts.md"),
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": None,
        "catalog": None,
        "schema": WAREHOUSES[wh]["schema"],
        "sql": sql,
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "always_filter_main_dttm": False,
        "uuid": uid("dataset", wh, table),
        "metrics": metrics,
        "columns": columns,
        "version": VERSION,
        "database_uuid": uid("database", wh),
    }


# ---------------------------------------------------------------------------------------------------------------------
# charts
# ---------------------------------------------------------------------------------------------------------------------
def time_filter(column: str = "dt") -> list[dict[str, Any]]:
    """Every chart carries a "No filter" temporal filter on its dataset's time column (dt; day for the forecast): the
    dashboard's date range replaces its value."""
    return [{"clause": "WHERE", "comparator": "No filter", "expressionType": "SIMPLE", "operator": "TEMPORAL_RANGE",
             "subject": column}]


def where(params: dict[str, Any], column: str, operator: str, value: Any) -> dict[str, Any]:
    """The chart's params with one more (simple) WHERE condition, e.g. ``rank <= 30``."""
    params["adhoc_filters"] = params["adhoc_filters"] + [
        {"clause": "WHERE", "comparator": value, "expressionType": "SIMPLE", "operator": operator, "subject": column}]
    return params


def _common(viz: str) -> dict[str, Any]:
    return {"viz_type": viz, "adhoc_filters": time_filter(), "extra_form_data": {}, "dashboards": [],
            "annotation_layers": []}


def timeseries(viz: str, x_axis: str, metrics: list[str], *, time_grain: str | None = "P1D", row_limit: int = 10000,
               order_desc: bool = True, x_sort: str | None = None, x_sort_asc: bool = True, horizontal: bool = False,
               x_title: str = "", y_title: str = "", show_legend: bool = True, show_values: bool = False,
               y_format: str = "SMART_NUMBER", groupby: list[str] | None = None) -> dict[str, Any]:
    p = _common(viz)
    p.update({
        "x_axis": x_axis, "metrics": metrics, "groupby": groupby or [], "row_limit": row_limit,
        "order_desc": order_desc,
        "truncate_metric": True, "show_empty_columns": True, "comparison_type": "values", "rich_tooltip": True,
        "showTooltipTotal": False, "show_legend": show_legend, "legendType": "scroll", "legendOrientation": "top",
        "x_axis_title": x_title, "x_axis_title_margin": 30 if x_title else 15, "y_axis_title": y_title,
        "y_axis_title_margin": 40 if y_title else 15, "y_axis_title_position": "Left", "y_axis_format": y_format,
        "x_axis_time_format": "smart_date", "truncateXAxis": True, "y_axis_bounds": [None, None],
        "color_scheme": "supersetColors", "only_total": True, "show_value": show_values,
    })
    if time_grain:
        p["time_grain_sqla"] = time_grain
    if x_sort:
        p["x_axis_sort"] = x_sort
        p["x_axis_sort_asc"] = x_sort_asc
    if viz == "echarts_timeseries_bar":
        p["orientation"] = "horizontal" if horizontal else "vertical"
    if viz == "echarts_timeseries_line":
        p.update({"seriesType": "line", "markerEnabled": True, "markerSize": 6, "opacity": 0.2})
    return p


def table_chart(groupby: list[str], metrics: list[str], *, order_by: str, desc: bool = True, page_length: int = 20,
                search: bool = True, row_limit: int = 1000, time_grain: str | None = None) -> dict[str, Any]:
    p = _common("table")
    p.update({
        "query_mode": "aggregate", "groupby": groupby, "metrics": metrics, "all_columns": [], "percent_metrics": [],
        "timeseries_limit_metric": order_by, "order_desc": desc, "row_limit": row_limit, "server_page_length": 10,
        "server_pagination": False, "page_length": page_length, "include_search": search, "show_cell_bars": True,
        "color_pn": True, "allow_rearrange_columns": False, "table_timestamp_format": "%Y-%m-%d",
        "conditional_formatting": [], "column_config": {},
    })
    if time_grain:
        p["time_grain_sqla"] = time_grain
    return p


def raw_table(columns: list[str], *, order_by: str, desc: bool, page_length: int = 20, search: bool = False,
              row_limit: int = 1000, then_by: str | None = None) -> dict[str, Any]:
    """A table of the rows themselves (daily_viewing has one row per day), newest first."""
    p = _common("table")
    p.update({
        "query_mode": "raw", "groupby": [], "metrics": [], "all_columns": columns, "percent_metrics": [],
        "order_by_cols": [json.dumps([order_by, not desc])] + ([json.dumps([then_by, True])] if then_by else []),
        "row_limit": row_limit, "server_page_length": 10,
        "server_pagination": False, "page_length": page_length, "include_search": search, "show_cell_bars": True,
        "color_pn": True, "allow_rearrange_columns": False, "table_timestamp_format": "%Y-%m-%d",
        "conditional_formatting": [],
        "column_config": {"hours_in_day": {"d3NumberFormat": ",.0f"}, "views": {"d3NumberFormat": ",d"},
                          "active_users": {"d3NumberFormat": ",d"}, "avg_view_minutes": {"d3NumberFormat": ",.1f"},
                          "minutes": {"d3NumberFormat": ",.0f"}, "viewers": {"d3NumberFormat": ",d"}},
    })
    return p


def pie(groupby: str, metric: str, *, row_limit: int, donut: bool = True) -> dict[str, Any]:
    p = _common("pie")
    p.update({
        "groupby": [groupby], "metric": metric, "row_limit": row_limit, "sort_by_metric": True,
        "color_scheme": "supersetColors", "show_labels_threshold": 4, "show_legend": True, "legendType": "scroll",
        "legendOrientation": "right", "label_type": "key_percent", "number_format": "SMART_NUMBER",
        "date_format": "smart_date", "show_labels": True, "labels_outside": True, "outerRadius": 75,
        "donut": donut, "innerRadius": 40, "show_total": True,
    })
    return p


def big_number(metric: str, subheader: str) -> dict[str, Any]:
    p = _common("big_number_total")
    p.update({"metric": metric, "subheader": subheader, "header_font_size": 0.4, "subheader_font_size": 0.15,
              "y_axis_format": "SMART_NUMBER", "time_format": "smart_date"})
    return p


def heatmap(x_axis: str, groupby: str, metric: str, *, sort_y: str = "alpha_asc") -> dict[str, Any]:
    """``sort_y``: ``alpha_asc`` (labels in order) or ``value_desc`` (the rows with the biggest cells first)."""
    p = _common("heatmap_v2")
    p.update({
        "x_axis": x_axis, "groupby": groupby, "metric": metric, "row_limit": 10000, "sort_x_axis": "alpha_asc",
        "sort_y_axis": sort_y, "normalize_across": "heatmap", "legend_type": "continuous",
        "linear_color_scheme": "superset_seq_1", "xscale_interval": -1, "yscale_interval": -1, "left_margin": "auto",
        "bottom_margin": "auto", "value_bounds": [None, None], "y_axis_format": "SMART_NUMBER",
        "x_axis_time_format": "smart_date", "show_legend": True, "show_percentage": False, "show_values": False,
    })
    return p


def top_n(params: dict[str, Any]) -> dict[str, Any]:
    """A chart over a top-N dataset (TOP_DATASETS): never more than TOP_N_CAP rows of labels, whatever the filter."""
    return where(params, "top_rank", "<=", TOP_N_CAP)


# (key, title, dataset table, params, channel filter applies, width, description)
CHARTS: list[tuple[str, str, str, dict[str, Any], bool, str]] = [
    ("kpi_views", "Views", "daily_viewing", big_number("total_views", "views in the period"), False,
     "Views (channel switches to a channel) in the date range."),
    ("kpi_hours", "Hours watched", "daily_viewing", big_number("total_hours", "hours watched in the period"), False,
     "Viewing hours inside the days of the date range (sessions crossing midnight split between the days)."),
    ("kpi_users", "Active users", "user_activity", big_number("distinct_users", "distinct subscribers who watched"),
     False, "Distinct subscribers with at least one session in the date range."),
    ("channel_rating", "Channel rating", "channel_rating",
     table_chart(["channel_name"], ["total_hours", "total_views", "viewer_days", "mean_view_minutes"],
                 order_by="total_hours", page_length=25), True,
     "Every channel by hours watched in the date range, with views, viewer-days and minutes per view; searchable."),
    ("top10_pie", "Top-10 channels by hours", "channel_rating", pie("channel_name", "total_hours", row_limit=10), True,
     "Share of hours of the ten most watched channels (among the ten)."),
    ("daily_line", "Hours and views per day", "daily_viewing",
     timeseries("echarts_timeseries_line", "dt", ["total_hours", "total_views"], x_title="", y_title=""), False,
     "Hours watched (inside the day) and views, day by day."),
    ("daily_table", "Hours and views per day (table)", "daily_viewing",
     raw_table(["dt", "hours_in_day", "views", "active_users", "avg_view_minutes"], order_by="dt", desc=True,
               page_length=10), False,
     "The same numbers as the line chart, as a table."),
    ("top20", "Top-20 channels", "channel_rating",
     timeseries("echarts_timeseries_bar", "channel_name", ["total_hours"], time_grain=None, row_limit=20,
                order_desc=True, x_sort="total_hours", x_sort_asc=True, horizontal=True, show_legend=False,
                show_values=True), True,
     "The twenty channels with the most hours watched in the date range."),
    ("outsiders20", "Top-20 outsiders", "channel_rating",
     timeseries("echarts_timeseries_bar", "channel_name", ["total_hours"], time_grain=None, row_limit=20,
                order_desc=False, x_sort="total_hours", x_sort_asc=False, horizontal=True, show_legend=False,
                show_values=True), True,
     "The twenty channels with the fewest hours watched (among channels watched at all)."),
    ("hourly_activity", "Activity by hour of day", "hourly_activity",
     timeseries("echarts_timeseries_bar", "hour", ["mean_concurrent_viewers"], time_grain=None, row_limit=24,
                x_sort="hour", x_sort_asc=True, x_title="hour of day", show_legend=False), False,
     "Average number of concurrent viewers in each hour of the day, averaged over the days of the range."),
    ("channel_heatmap", "Channel popularity by weekday × hour (hours on an average day)", "channel_weekday_hour",
     heatmap("hour", "weekday_label", "hours_per_day"), True,
     "Hours watched in each hour of an average day of each weekday (1 = Monday): a cell's hours in the date range "
     "divided by the number of calendar days of that weekday in it, so a weekday that occurs twice in the range does "
     "not outweigh one that occurs once. Pick channels with the Channel filter."),
    ("duration_buckets", "Session durations", "duration_histogram",
     timeseries("echarts_timeseries_bar", "bucket_label", ["total_sessions"], time_grain=None, row_limit=100,
                x_sort="bucket_label", x_sort_asc=True, show_legend=False, x_title="session length"), False,
     "Sessions by length bucket (from the duration_histogram mart)."),
    ("duration_hours", "Hours by session length", "duration_histogram",
     timeseries("echarts_timeseries_bar", "bucket_label", ["total_hours"], time_grain=None, row_limit=100,
                x_sort="bucket_label", x_sort_asc=True, show_legend=False, x_title="session length"), False,
     "Hours watched in sessions of each length bucket: where the viewing time goes (from the duration_histogram "
     "mart — every session started in the date range, counted once per day, no sampling)."),
    ("active_users_daily", "Active users per day", "daily_viewing",
     timeseries("echarts_timeseries_bar", "dt", ["active_user_days"], show_legend=False), False,
     "Subscribers with at least one session, per day."),
    ("sessions_per_user", "Sessions per user", "user_activity",
     timeseries("echarts_timeseries_bar", "sessions", ["user_days"], time_grain=None, row_limit=200, x_sort="sessions",
                x_sort_asc=True, show_legend=False, x_title="sessions in a day", y_title="users × days"), False,
     "How many sessions a subscriber has in a day: user-days by number of sessions."),
    ("segments", "Main time of day", "user_activity", pie("segment", "user_days", row_limit=10, donut=False), False,
     "User-days by the part of the day with the most viewing (night 0–6, morning 6–12, afternoon 12–18, "
     "evening 18–24)."),
    # the programme guide (docs/programmes.md): viewing attributed to programmes and series
    ("series_hour_heatmap", "Top series by hour of day", "series_weekday_hour_top",
     top_n(heatmap("hour", "series", "total_hours", sort_y="value_desc")), False,
     f"Hours of the most watched series and recurring strands (TV series, shows, documentaries, kids, music) in each "
     f"clock hour — the top {TOP_N_DEFAULT} by minutes watched (the Top N filter changes how many, up to "
     f"{TOP_N_CAP}); every series is in the Series popularity table. Pick series with the Series filter."),
    ("series_weekday_heatmap", "Series by weekday × hour (hours on an average day)", "series_weekday_hour",
     heatmap("hour", "weekday_label", "hours_per_day"), False,
     "Hours of series and other recurring strands watched in each hour of an average day of each weekday (1 = "
     "Monday): a cell's hours in the date range divided by the calendar days of that weekday in it — all strands, "
     "or the ones picked with the Series filter."),
    ("top_shows_heatmap", "Top programmes by start hour", "programme_popularity_top",
     top_n(heatmap("start_hour", "programme_label", "total_hours", sort_y="value_desc")), True,
     f"Hours watched of the most watched programmes (a title on a channel, all its airings) by the hour they "
     f"started — the top {TOP_N_DEFAULT} by minutes watched (the Top N filter changes how many, up to {TOP_N_CAP}); "
     f"every programme is in the Programme popularity table. Follows the Channel filter."),
    ("programmes_table", "Programme popularity", "programme_popularity",
     table_chart(["programme_label", "kind"], ["total_hours", "total_sessions"], order_by="total_hours",
                 page_length=15), True,
     "Every programme (a title on a channel) by hours watched in the date range, with its sessions; searchable."),
    ("series_table", "Series popularity", "series_popularity",
     table_chart(["series", "kind"], ["total_hours", "viewer_days", "total_airings", "mean_minute_audience"],
                 order_by="total_hours", page_length=15), False,
     "Every series and recurring strand by hours watched in the date range, with viewer-days, airings and the "
     "average minute audience during its airings; searchable."),
    ("top_programmes_table", "Top 10 programmes of the day", "top_programmes",
     where(raw_table(["dt", "rank", "name", "kind", "channel_name", "first_start", "minutes", "viewers"],
                     order_by="dt", desc=True, then_by="rank", page_length=10), "chart", "==", "programme"), True,
     "Each day's ten most watched programmes (minutes watched, distinct viewers), newest day first; follows the "
     "Channel filter (a channel's programmes among each day's top 10)."),
    # the forecast (docs/analytics.md)
    ("forecast_line", "Forecast against actual (total hours per day)", "forecast_daily",
     where(timeseries("echarts_timeseries_line", "day", ["forecast_hours"], groupby=["model"]), "series", "==",
           "total"), False,
     "Total hours watched per day: the actuals, and each model's backtest over the held-out week and forecast of "
     "the next 7 days (viewing_forecast: seasonal naive vs calendar ridge)."),
]

# rows of the dashboard: (chart key or "markdown", width, height)
LAYOUT: list[list[tuple[str, int, int]]] = [
    [("markdown", 3, 24), ("kpi_views", 3, 24), ("kpi_hours", 3, 24), ("kpi_users", 3, 24)],
    [("channel_rating", 7, 80), ("top10_pie", 5, 80)],
    [("daily_line", 8, 56), ("daily_table", 4, 56)],
    [("top20", 6, 80), ("outsiders20", 6, 80)],
    [("hourly_activity", 6, 60), ("channel_heatmap", 6, 60)],
    [("duration_buckets", 4, 56), ("duration_hours", 4, 56), ("sessions_per_user", 4, 56)],
    [("active_users_daily", 6, 56), ("segments", 6, 56)],
    [("series_hour_heatmap", 7, 90), ("series_table", 5, 90)],
    [("top_shows_heatmap", 7, 90), ("programmes_table", 5, 90)],
    [("series_weekday_heatmap", 6, 64), ("forecast_line", 6, 64)],
    [("top_programmes_table", 12, 64)],
]


def top_n_filters(n: int = TOP_N_DEFAULT) -> list[dict[str, Any]]:
    """What the Top N (range) filter adds to the query of a chart in its scope: ``1 <= top_rank <= n``."""
    return [{"col": "top_rank", "op": ">=", "val": 1}, {"col": "top_rank", "op": "<=", "val": n}]


def query_context(params: dict[str, Any], dataset_id: int, extra_filters: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The query context Superset's frontend builds for these params (its ``buildQuery`` of each viz type, for the
    controls used here), saved with the chart so ``GET /api/v1/chart/<id>/data`` answers too. The dashboards build
    their own at runtime; ``test_superset.py`` checks that they equal these."""
    viz = params["viz_type"]
    q: dict[str, Any] = {
        # the dashboard puts its native filters' conditions before the chart's own
        "filters": list(extra_filters) + [{"col": f["subject"], "op": f["operator"], "val": f["comparator"]}
                                          for f in params["adhoc_filters"]],
        "extras": {"having": "", "where": ""},
        "applied_time_extras": {},
        "annotation_layers": [],
        "series_limit": 0,
        "group_others_when_limit_reached": False,
        "order_desc": params.get("order_desc", True),
        "url_params": {},
        "custom_params": {},
        "custom_form_data": {},
    }
    if viz == "big_number_total":
        q.update(columns=[], metrics=[params["metric"]])
    elif viz == "pie":
        m = params["metric"]
        q.update(columns=params["groupby"], metrics=[m], orderby=[[m, False]], row_limit=params["row_limit"],
                 post_processing=[{"operation": "contribution",
                                   "options": {"columns": [m], "rename_columns": [f"{m}__contribution"]}}])
    elif viz == "table" and params["query_mode"] == "aggregate":
        q.update(columns=params["groupby"], metrics=params["metrics"],
                 orderby=[[params["timeseries_limit_metric"], not params["order_desc"]]],
                 row_limit=params["row_limit"], series_limit_metric=params["timeseries_limit_metric"],
                 post_processing=[], time_offsets=[])
        if params.get("time_grain_sqla"):
            q["extras"]["time_grain_sqla"] = params["time_grain_sqla"]
    elif viz == "table":
        q.update(columns=params["all_columns"], orderby=[json.loads(c) for c in params["order_by_cols"]],
                 row_limit=params["row_limit"], post_processing=[], time_offsets=[])
    elif viz in ("echarts_timeseries_line", "echarts_timeseries_bar"):
        x, metrics = params["x_axis"], params["metrics"]
        axis: dict[str, Any] = {"columnType": "BASE_AXIS", "sqlExpression": x, "label": x, "expressionType": "SQL",
                                "isColumnReference": True}
        if params.get("time_grain_sqla"):
            axis = {"timeGrain": params["time_grain_sqla"], **axis}
            q["extras"]["time_grain_sqla"] = params["time_grain_sqla"]
        post = [{"operation": "pivot", "options": {
            "index": [x], "columns": [], "aggregates": {m: {"operator": "mean"} for m in metrics},
            "drop_missing_columns": False}}]
        if params.get("x_axis_sort") == x:
            post.append({"operation": "sort", "options": {"is_sort_index": True,
                                                          "ascending": params["x_axis_sort_asc"]}})
        elif params.get("x_axis_sort"):
            post.append({"operation": "sort", "options": {"by": params["x_axis_sort"],
                                                          "ascending": params["x_axis_sort_asc"]}})
        groupby = params["groupby"]
        post[0]["options"]["columns"] = list(groupby)
        if groupby and len(metrics) == 1 and params.get("truncate_metric"):
            # one metric split by a dimension: the series are named by the dimension's values alone
            post.insert(1, {"operation": "rename", "options": {"columns": {metrics[0]: None}, "level": 0,
                                                               "inplace": True}})
        post.append({"operation": "flatten"})
        q.update(columns=[axis, *groupby], metrics=metrics, orderby=[[metrics[0], not params["order_desc"]]],
                 row_limit=params["row_limit"], series_columns=list(groupby), time_offsets=[],
                 post_processing=post)
    elif viz == "heatmap_v2":
        x, y, m = params["x_axis"], params["groupby"], params["metric"]
        q.update(columns=[{"columnType": "BASE_AXIS", "sqlExpression": x, "label": x, "expressionType": "SQL",
                           "isColumnReference": True}, y],
                 metrics=[m], orderby=[[m if "value" in params["sort_x_axis"] else x, "asc" in params["sort_x_axis"]],
                                       [m if "value" in params["sort_y_axis"] else y, "asc" in params["sort_y_axis"]]],
                 row_limit=params["row_limit"], post_processing=[{"operation": "rank", "options": {"metric": m}}])
    else:
        raise ValueError(f"no query context for viz type {viz!r}")
    return {"datasource": {"id": dataset_id, "type": "table"}, "force": False, "queries": [q],
            "form_data": {**params, "force": False, "result_format": "json", "result_type": "full"},
            "result_format": "json", "result_type": "full"}


def dataset_id(wh: str, table: str) -> int:
    """The id a dataset has inside the bundle (Superset replaces it at import)."""
    return (1 if wh == "greenplum" else 101) + ALL_DATASETS.index(table)


def chart_id(wh: str, index: int) -> int:
    """The id a chart has inside the bundle (Superset maps it to the real one at import)."""
    return (1 if wh == "greenplum" else 101) + index


def chart_yaml(wh: str, index: int) -> tuple[str, dict[str, Any]]:
    key, title, table, params, _channel, description = CHARTS[index]
    params = json.loads(json.dumps(params))
    for f in params["adhoc_filters"]:  # the Date range acts on the dataset's time column
        if f["operator"] == "TEMPORAL_RANGE":
            f["subject"] = TIME_COLUMN.get(table, "dt")
    params["datasource"] = f"{dataset_id(wh, table)}__table"
    params["slice_id"] = chart_id(wh, index)
    doc = {
        "slice_name": title,
        "description": description,
        "certified_by": None,
        "certification_details": None,
        "viz_type": params["viz_type"],
        "params": params,
        # the dashboard's Top N filter applies its default to the top-N charts: their saved queries do the same
        "query_context": json.dumps(query_context(params, dataset_id(wh, table),
                                                  top_n_filters() if table in TOP_DATASETS else []),
                                    ensure_ascii=False),
        "cache_timeout": None,
        "uuid": uid("chart", wh, key),
        "version": VERSION,
        "dataset_uuid": uid("dataset", wh, table),
    }
    return f"charts/{WAREHOUSES[wh]['key']}_{key}.yaml", doc


# ---------------------------------------------------------------------------------------------------------------------
# dashboards
# ---------------------------------------------------------------------------------------------------------------------
def markdown(wh: str) -> str:
    w = WAREHOUSES[wh]
    other = "clickhouse" if wh == "greenplum" else "greenplum"
    return (f"### {w['title']}\n\n"
            f"IPTV viewing marts in **{w['engine']}**, schema `tv_marts` (see `docs/marts.md`).\n\n"
            f"Filters: **Date range** (every chart), **Channel** (channel charts) and **Series** (programme "
            f"guide charts).\n\n"
            f"Same charts over the other warehouse: [{WAREHOUSES[other]['title']}]"
            f"(/superset/dashboard/{WAREHOUSES[other]['slug']}/)")



def select_filter(wh: str, key: str, name: str, dataset: str, column: str, excluded: list, search_all: bool,
                  description: str) -> dict:
    """A multi-select native filter on one dataset's column, applied to every chart but ``excluded``."""
    return {
        "id": f"NATIVE_FILTER-{key}",
        "name": name,
        "filterType": "filter_select",
        "type": "NATIVE_FILTER",
        "targets": [{"column": {"name": column}, "datasetUuid": uid("dataset", wh, dataset)}],
        "controlValues": {"enableEmptyFilter": False, "defaultToFirstItem": False, "multiSelect": True,
                          "searchAllOptions": search_all, "inverseSelection": False, "sortAscending": True},
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": excluded},
        "description": description,
    }


def top_n_filter(wh: str, excluded: list) -> dict:
    """A range filter on ``top_rank`` over the top-N charts: how many of the most watched series / programmes the
    heatmaps show (default 1..TOP_N_DEFAULT)."""
    return {
        "id": "NATIVE_FILTER-top_n",
        "name": "Top N",
        "filterType": "filter_range",
        "type": "NATIVE_FILTER",
        "targets": [{"column": {"name": "top_rank"}, "datasetUuid": uid("dataset", wh, "series_weekday_hour_top")}],
        "controlValues": {"enableEmptyFilter": False},
        "defaultDataMask": {"extraFormData": {"filters": top_n_filters()},
                            "filterState": {"value": [1, TOP_N_DEFAULT]}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": excluded},
        "description": f"Ranks of the most watched series and programmes the top-N heatmaps show (default "
                       f"1–{TOP_N_DEFAULT}; at most {TOP_N_CAP})",
    }


def dashboard_yaml(wh: str) -> dict[str, Any]:
    w = WAREHOUSES[wh]
    index = {c[0]: i for i, c in enumerate(CHARTS)}
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"children": ["GRID_ID"], "id": "ROOT_ID", "type": "ROOT"},
        "GRID_ID": {"children": [], "id": "GRID_ID", "parents": ["ROOT_ID"], "type": "GRID"},
        "HEADER_ID": {"id": "HEADER_ID", "meta": {"text": w["title"]}, "type": "HEADER"},
    }
    for r, row in enumerate(LAYOUT):
        row_id = f"ROW-r{r}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {"children": [], "id": row_id, "meta": {"background": "BACKGROUND_TRANSPARENT"},
                            "parents": ["ROOT_ID", "GRID_ID"], "type": "ROW"}
        for key, width, height in row:
            if key == "markdown":
                cid = f"MARKDOWN-r{r}"
                position[cid] = {"children": [], "id": cid, "meta": {"code": markdown(wh), "height": height,
                                                                      "width": width},
                                 "parents": ["ROOT_ID", "GRID_ID", row_id], "type": "MARKDOWN"}
            else:
                i = index[key]
                cid = f"CHART-{key}"
                position[cid] = {"children": [], "id": cid, "meta": {
                    "chartId": chart_id(wh, i), "height": height, "width": width, "sliceName": CHARTS[i][1],
                    "uuid": uid("chart", wh, key)}, "parents": ["ROOT_ID", "GRID_ID", row_id], "type": "CHART"}
            position[row_id]["children"].append(cid)
    not_channel = [chart_id(wh, i) for i, c in enumerate(CHARTS) if not c[4]]
    not_series = [chart_id(wh, i) for i, c in enumerate(CHARTS) if c[2] not in SERIES_TABLES]
    native_filters = [
        {
            "id": "NATIVE_FILTER-date_range",
            "name": "Date range",
            "filterType": "filter_time",
            "type": "NATIVE_FILTER",
            "targets": [{}],
            "controlValues": {"enableEmptyFilter": False},
            "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
            "cascadeParentIds": [],
            "scope": {"rootPath": ["ROOT_ID"], "excluded": []},
            "description": "Days of the marts' dt column; applies to every chart.",
        },
        # charts over marts without a channel (daily totals, hourly activity, buckets, users) are out of its scope
        select_filter(wh, "channel", "Channel", "channel_rating", "channel_name", not_channel, search_all=False,
                      description="Channels; applies to the charts over channel_rating, channel_weekday_hour, sessions "
                                  "and programme_popularity and top_programmes."),
        top_n_filter(wh, [chart_id(wh, i) for i, c in enumerate(CHARTS) if c[2] not in TOP_DATASETS]),
        # the series charts only (see SERIES_TABLES)
        select_filter(wh, "series", "Series", "series_popularity", "series", not_series, search_all=True,
                      description="Series and recurring strands of the programme guide; applies to the charts over "
                                  "series_weekday_hour and series_popularity."),
    ]
    return {
        "dashboard_title": w["title"],
        "description": None,
        "css": "",
        "slug": w["slug"],
        "certified_by": "",
        "certification_details": "",
        "published": True,
        "uuid": uid("dashboard", wh),
        "position": position,
        "metadata": {
            "native_filter_configuration": native_filters,
            "color_scheme": "supersetColors",
            "cross_filters_enabled": False,
            "refresh_frequency": 0,
            "expanded_slices": {},
            "timed_refresh_immune_slices": [],
            "default_filters": "{}",
            "label_colors": {},
            "shared_label_colors": [],
            "color_scheme_domain": [],
        },
        "version": VERSION,
    }


# ---------------------------------------------------------------------------------------------------------------------
# the files
# ---------------------------------------------------------------------------------------------------------------------
def bundle() -> dict[str, dict[str, Any]]:
    files: dict[str, dict[str, Any]] = {"metadata.yaml": {"version": VERSION, "type": "Dashboard",
                                                          "timestamp": TIMESTAMP}}
    for wh, w in WAREHOUSES.items():
        files[f"databases/{w['key']}.yaml"] = database_yaml(wh)
        for table in ALL_DATASETS:
            files[f"datasets/{w['key']}/{table}.yaml"] = dataset_yaml(wh, table)
        for i in range(len(CHARTS)):
            name, doc = chart_yaml(wh, i)
            files[name] = doc
        files[f"dashboards/{w['key']}.yaml"] = dashboard_yaml(wh)
    return files


def render(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs or is missing")
    args = ap.parse_args(argv)
    files = bundle()
    wanted = {HERE / rel: render(doc) for rel, doc in files.items()}
    existing = {p for p in HERE.rglob("*.yaml")}
    stale = sorted(existing - set(wanted))
    differ = sorted(p for p, text in wanted.items() if not p.exists() or p.read_text() != text)
    if args.check:
        for p in differ:
            print(f"differs: {p.relative_to(HERE)}")
        for p in stale:
            print(f"not written by build.py: {p.relative_to(HERE)}")
        return 1 if differ or stale else 0
    for p in stale:
        p.unlink()
    for p, text in wanted.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
    print(f"{len(wanted)} files in {HERE} ({len(differ)} rewritten, {len(stale)} removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
