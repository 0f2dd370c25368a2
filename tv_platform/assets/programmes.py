"""Programmes layer: the electronic programme guide (EPG), viewing attributed to programmes, show and series
popularity. Group ``programmes``; docs/programmes.md.

    programme_guide [daily]        synthetic guide (or an XMLTV import) → HDFS raw/epg/dt=…/events.csv
    hive_programme_guide [daily]   external CSV table over it, partition per day              tv.programme_guide
    programme_viewing [daily]      sessions of D-1..D+1 split at programme boundaries in broadcast day D
                                                                                              tv.programme_viewing
    programme_aggregates [daily]   programme_popularity, series_popularity, series_weekday_hour, top_programmes

The logic is in tv_platform/epg/ (pure functions); the assets read, call and write. Resources: ``hdfs_io_manager``
(the guide's CSV), ``hive`` and ``hive_io_manager`` (as the lake).
"""


import dagster as dg
import pandas as pd
from pyspark.sql import functions as F

from tv_platform.dates import as_date
from tv_platform.engines.metadata import declare
from tv_platform.engines.spark import HiveCatalog, HiveResource, union_of_days
from tv_platform.epg import attribution as EA
from tv_platform.epg import tables as ET
from tv_platform.epg.generator import make_guide
from tv_platform.epg.guide import GUIDE_COLUMNS, coverage_problems, normalize_day
from tv_platform.epg.xmltv import parse_xmltv
from tv_platform.lake.queries import of_days_sql, session_totals_of_days_sql
from tv_platform.lake.calendar import BroadcastCalendar
from tv_platform.location import settings as location_settings
from tv_platform.partitions import BROADCAST_WINDOW, GUIDE_DAYS, daily, spark_range

GROUP = "programmes"
KINDS = {"spark", "hive"}


def _in(days: list[str]) -> str:
    return ", ".join(repr(d) for d in days)


def _guide_days(day: str) -> list[str]:
    """The calendar days whose guide broadcast day ``day`` needs: D and D+1."""
    from datetime import timedelta

    return [day, (as_date(day) + timedelta(days=1)).isoformat()]


# ---------------------------------------------------------------------------------------------------------------------
# the guide
# ---------------------------------------------------------------------------------------------------------------------
class ProgrammeGuideConfig(dg.Config):
    seed: int = location_settings.sim_seed
    """Seed of the synthetic guide (default TVP_SIM_SEED): a (seed, date) pair always gives the same guide."""
    xmltv_file: str = ""
    """A local XMLTV file to import instead of the synthetic guide (channels matched by id or display name to the
    platform's channel names or ids; the day is cut out of it, gaps become `unknown` programmes)."""
    xmltv_timezone: str = "Europe/Moscow"


def build_guide(day: str, config: ProgrammeGuideConfig, channels: pd.DataFrame | None = None) -> pd.DataFrame:
    from tv_platform.simulator.reference import load_channels

    channels = load_channels() if channels is None else channels
    if not config.xmltv_file:
        return make_guide(day, config.seed, channels)
    channel_map = {**{str(n): int(i) for i, n in zip(channels["channel_id"], channels["channel_name"])},
                   **{str(int(i)): int(i) for i in channels["channel_id"]}}
    with open(config.xmltv_file, "rb") as f:
        imported = parse_xmltv(f.read(), channel_map, config.xmltv_timezone)
    return normalize_day(imported, day, channels["channel_id"])


@dg.asset(
    name="programme_guide",
    group_name=GROUP,
    kinds={"python", "hdfs", "csv"},
    partitions_def=daily,
    io_manager_key="hdfs_io_manager",
    deps=["channels"],
    metadata={"lake_path": ET.GUIDE_LAKE_PATH, **declare(GUIDE_COLUMNS, partition_expr="dt")},
    description=(
        "The day's electronic programme guide for the 148 channels: title, kind, genre, series and episode, start "
        "and end; gap-free over [D 00:00, D+1 00:00) per channel. Synthetic and deterministic for (seed, date) — "
        "schedules follow the channel's profile (news channels, sport, kids, film channels, recurring series in the "
        "same weekday slots, films in the evening) — or imported from an XMLTV file (config `xmltv_file`)."
    ),
)
def programme_guide(context: dg.AssetExecutionContext, config: ProgrammeGuideConfig) -> pd.DataFrame:
    day = context.partition_key
    guide = build_guide(day, config)
    problems = coverage_problems(guide, day)
    if problems:
        raise dg.Failure(f"the guide of {day} does not cover the day: {problems[:5]}")
    context.add_output_metadata({
        "programmes": len(guide), "channels": int(guide["channel_id"].nunique()),
        "source": "xmltv" if config.xmltv_file else f"synthetic (seed {config.seed})",
        "by_kind": dg.MetadataValue.json({k: int(v) for k, v in guide["kind"].value_counts().sort_index().items()}),
        **({"xmltv_counts": dg.MetadataValue.json(guide.attrs["counts"]),
            "xmltv_skipped_channels": dg.MetadataValue.json(guide.attrs.get("skipped_channels", [])),
            "xmltv_invalid": dg.MetadataValue.json(guide.attrs.get("invalid", []))}
           if "counts" in guide.attrs else {}),
    })
    return guide


def guide_location(hive: HiveResource) -> str:
    return f"{hive.lake_url.rstrip('/')}/{hive.lake_root.strip('/')}/{ET.GUIDE_LAKE_PATH}"


def register_guide(hive: HiveResource, days: list[str]) -> HiveCatalog:
    cat = hive.catalog()
    cat.ensure_database()
    location = guide_location(hive)
    cat.spark.sql(ET.create_guide_table_sql(cat.database, location))
    cat.add_partitions(ET.GUIDE_TABLE, days, location)
    return cat


def guide_coverage_sql(database: str, day: str) -> str:
    """Per channel of day D: programmes, covered seconds, overlaps/gaps between consecutive programmes, first start
    and last end in seconds from D 00:00 — the guide covers D iff every channel has 0 / 86 400 and no gap."""
    m = f"TIMESTAMP_NTZ'{day} 00:00:00'"
    s = f"timestampdiff(SECOND, {m}, CAST(`start` AS TIMESTAMP_NTZ))"
    e = f"timestampdiff(SECOND, {m}, CAST(`end` AS TIMESTAMP_NTZ))"
    return f"""
SELECT count(*) AS channels, coalesce(sum(n), 0) AS programmes,
       count_if(first_s <> 0 OR last_e <> 86400 OR covered <> 86400 OR breaks > 0 OR bad > 0) AS channels_not_covered
FROM (
    SELECT channel_id, count(*) AS n, min(s) AS first_s, max(e) AS last_e, sum(e - s) AS covered,
           count_if(prev_e IS NOT NULL AND prev_e <> s) AS breaks, count_if(e <= s OR s IS NULL OR e IS NULL) AS bad
    FROM (SELECT channel_id, {s} AS s, {e} AS e,
                 lag({e}) OVER (PARTITION BY channel_id ORDER BY `start`) AS prev_e
          FROM `{database}`.`{ET.GUIDE_TABLE}` WHERE dt = '{day}')
    GROUP BY channel_id
)
"""


@dg.asset(
    name="hive_programme_guide",
    group_name=GROUP,
    kinds=KINDS | {"csv"},
    partitions_def=daily,
    backfill_policy=spark_range,
    deps=["programme_guide"],
    metadata={"hive/table": ET.GUIDE_TABLE, **declare(ET.GUIDE_COLUMNS, partition_expr="dt")},
    description="Hive external table `programme_guide` over `raw/epg/dt=…` in the lake, partitioned by `dt`: created "
                "if missing; materializing a day registers its partition and re-checks the coverage in Spark.",
    check_specs=[dg.AssetCheckSpec("guide_covers_day", asset="hive_programme_guide",
                                   description="every channel's programmes cover [D 00:00, D+1 00:00) exactly: no "
                                               "gap, no overlap (recounted through Spark)")],
)
def hive_programme_guide(context: dg.AssetExecutionContext, hive: HiveResource):
    days = list(context.partition_keys)
    cat = register_guide(hive, days)
    results = _by_day(cat, of_days_sql(lambda d: guide_coverage_sql(cat.database, d), days), days)
    programmes = sum(int(r["programmes"]) for r in results)
    yield dg.MaterializeResult(metadata={"table": f"{hive.database}.{ET.GUIDE_TABLE}", "location": guide_location(hive),
                                         "rows": programmes, "dagster/row_count": programmes,
                                         "channels": max(int(r["channels"]) for r in results)})
    bad = sum(int(r["channels_not_covered"]) for r in results)
    yield dg.AssetCheckResult(check_name="guide_covers_day", passed=bad == 0 and all(r["channels"] for r in results),
                              metadata={"channels_not_covered": bad, "days": len(days)})


# ---------------------------------------------------------------------------------------------------------------------
# viewing attributed to programmes
# ---------------------------------------------------------------------------------------------------------------------
def conservation_sql(database: str, day: str, cal=None) -> str:
    """Per session overlapping broadcast day D (viewing_sessions of D-1..D+1, plain SQL, real seconds of the operator's
    zone): its seconds inside D, against the sum of its rows in programme_viewing — sessions missing on either side
    and sessions whose seconds differ."""
    from tv_platform.dates import zone_name

    cal = cal or BroadcastCalendar.from_settings()
    d = as_date(day)
    prev, nxt = d.fromordinal(d.toordinal() - 1).isoformat(), d.fromordinal(d.toordinal() + 1).isoformat()
    lo, _ = cal.window(d)
    day_s = cal.day_seconds(d)
    name = zone_name()

    def real(expr: str) -> str:
        return expr if name == "UTC" else f"convert_timezone('{name}', 'UTC', {expr})"

    m = real(f"TIMESTAMP_NTZ'{lo:%Y-%m-%d %H:%M:%S}'")
    s = f"timestampdiff(SECOND, {m}, {real('CAST(time_start AS TIMESTAMP_NTZ)')})"
    e = f"timestampdiff(SECOND, {m}, {real('CAST(time_end AS TIMESTAMP_NTZ)')})"
    db = f"`{database}`"
    return f"""
WITH vs AS (
    SELECT session_id, greatest(0, least(e, {day_s}) - greatest(s, 0)) AS secs
    FROM (SELECT session_id, {s} AS s, {e} AS e FROM {db}.viewing_sessions WHERE dt IN ('{prev}', '{day}', '{nxt}'))
    WHERE (e > s AND e > 0 AND s < {day_s}) OR (e = s AND s >= 0 AND s < {day_s})
), pv AS (
    SELECT session_id, sum(seconds) AS secs FROM {db}.programme_viewing WHERE dt = '{day}' GROUP BY session_id
)
SELECT count(vs.session_id) AS sessions, count(pv.session_id) AS attributed_sessions,
       coalesce(sum(vs.secs), 0) AS session_seconds, coalesce(sum(pv.secs), 0) AS attributed_seconds,
       count_if(vs.session_id IS NULL OR pv.session_id IS NULL OR vs.secs <> pv.secs) AS mismatched
FROM vs FULL OUTER JOIN pv ON vs.session_id = pv.session_id
"""



def _by_day(cat, sql: str, days: list[str]) -> list:
    """The rows of a per-day query (``of_days_sql``) in the order of ``days``."""
    rows = {r["dt"]: r for r in cat.spark.sql(sql).collect()}
    return [rows[d] for d in days]


@dg.asset(
    name="programme_viewing",
    group_name=GROUP,
    kinds=KINDS | {"parquet"},
    partitions_def=daily,
    backfill_policy=spark_range,
    io_manager_key="hive_io_manager",
    ins={"viewing_sessions": dg.AssetIn(partition_mapping=BROADCAST_WINDOW)},
    deps=[dg.AssetDep("hive_programme_guide", partition_mapping=GUIDE_DAYS)],
    metadata=declare(ET.PROGRAMME_VIEWING_COLUMNS, partition_expr="dt", sum_columns=["seconds"]),
    description=(EA.attribute.__doc__ or "").strip() + " Split at programme boundaries by a range join on "
                "(channel, clock-hour piece) — see tv_platform/epg/attribution.py. Broadcast day D "
                "(TVP_BROADCAST_DAY_START): the sessions of D-1..D+1, the guide of D and D+1.",
    check_specs=[dg.AssetCheckSpec(
        "minutes_conserved", asset="programme_viewing",
        description="every session with time in D is attributed, and its seconds over programmes equal its seconds "
                    "inside D computed from viewing_sessions by plain SQL (so the day's totals are equal too)")],
)
def programme_viewing(context: dg.AssetExecutionContext, hive: HiveResource, viewing_sessions):
    days = list(context.partition_keys)
    cal = BroadcastCalendar.from_settings()
    cat = hive.catalog()
    cat.refresh(ET.GUIDE_TABLE)
    guide = cat.spark.table(cat.qualified(ET.GUIDE_TABLE))
    frames = [EA.attribute(viewing_sessions, guide.where(F.col("dt").isin(_guide_days(day))), day, cal)
              for day in days]
    yield dg.Output(union_of_days(frames))
    # one query for every day's conservation, one for every day's session totals (not two a day)
    rows = _by_day(cat, of_days_sql(lambda d: conservation_sql(cat.database, d, cal), days), days)
    totals = _by_day(cat, session_totals_of_days_sql(cat.database, days, cal), days)
    passed = all(int(r["mismatched"]) == 0 and int(r["attributed_seconds"]) == int(t["in_day_s"])
                 for r, t in zip(rows, totals))
    yield dg.AssetCheckResult(check_name="minutes_conserved", passed=passed, metadata={
        "sessions": sum(int(r["sessions"]) for r in rows),
        "attributed_sessions": sum(int(r["attributed_sessions"]) for r in rows),
        "session_minutes": sum(int(t["in_day_s"]) for t in totals) / 60.0,
        "attributed_minutes": sum(int(r["attributed_seconds"]) for r in rows) / 60.0,
        "mismatched_sessions": sum(int(r["mismatched"]) for r in rows),
    })


# ---------------------------------------------------------------------------------------------------------------------
# popularity
# ---------------------------------------------------------------------------------------------------------------------
_SUMS = {
    "programme_popularity": ["sessions", "minutes"],
    "series_popularity": ["sessions", "minutes"],
    "series_weekday_hour": ["minutes"],
    "top_programmes": ["minutes"],
}
_DESCRIPTIONS = {
    "programme_popularity": EA.programme_popularity.__doc__,
    "series_popularity": EA.series_popularity.__doc__,
    "series_weekday_hour": EA.series_weekday_hour.__doc__,
    "top_programmes": EA.top_programmes.__doc__,
}


@dg.multi_asset(
    name="programme_aggregates",
    group_name=GROUP,
    partitions_def=daily,
    backfill_policy=spark_range,
    outs={
        name: dg.AssetOut(io_manager_key="hive_io_manager", kinds=KINDS | {"parquet"},
                          description=" ".join((_DESCRIPTIONS[name] or name).split()),
                          metadata=declare(ET.DERIVED_TABLES[name], partition_expr="dt", sum_columns=_SUMS[name]))
        for name in _SUMS
    },
    ins={"programme_viewing": dg.AssetIn()},
    deps=[dg.AssetDep("hive_programme_guide", partition_mapping=GUIDE_DAYS)],
    check_specs=[
        dg.AssetCheckSpec("consistent_with_viewing", asset="programme_popularity",
                          description="Σ minutes and Σ sessions over programmes = those of programme_viewing"),
        dg.AssetCheckSpec("consistent_with_viewing", asset="series_weekday_hour",
                          description="Σ minutes over the cells = programme_viewing's minutes of programmes with a "
                                      "series"),
    ],
)
def programme_aggregates(context: dg.AssetExecutionContext, hive: HiveResource, programme_viewing):
    """Per programme and per series popularity, the series × weekday × hour heatmap and the day's top charts, from one
    read of programme_viewing (each table is read back to build the next)."""
    days = list(context.partition_keys)
    cal = BroadcastCalendar.from_settings()
    cat = hive.catalog()
    cat.refresh(ET.GUIDE_TABLE)
    guide = cat.spark.table(cat.qualified(ET.GUIDE_TABLE))
    channels = cat.spark.table(cat.qualified("tv_channels")) if cat.table_exists("tv_channels") else None

    def per_day(build):
        return union_of_days([build(d) for d in days])

    def viewing(d):
        return programme_viewing.where(F.col("dt") == d)

    yield dg.Output(per_day(lambda d: EA.programme_popularity(viewing(d), guide.where(F.col("dt").isin(_guide_days(d))),
                                                              d, channels, cal)),
                    output_name="programme_popularity")
    popularity = cat.read("programme_popularity", days)
    yield dg.Output(per_day(lambda d: EA.series_popularity(viewing(d), popularity.where(F.col("dt") == d), d)),
                    output_name="series_popularity")
    series = cat.read("series_popularity", days)
    yield dg.Output(per_day(lambda d: EA.series_weekday_hour(viewing(d), d, cal)), output_name="series_weekday_hour")
    yield dg.Output(per_day(lambda d: EA.top_programmes(popularity.where(F.col("dt") == d),
                                                        series.where(F.col("dt") == d), d)),
                    output_name="top_programmes")

    where = f"WHERE dt IN ({_in(days)})"
    pv = cat.spark.sql(f"SELECT count(*) AS n, coalesce(sum(minutes), 0) AS m, "
                       f"coalesce(sum(CASE WHEN series IS NOT NULL THEN minutes END), 0) AS sm "
                       f"FROM {cat.qualified('programme_viewing')} {where}").collect()[0]
    pp = cat.spark.sql(f"SELECT coalesce(sum(sessions), 0) AS n, coalesce(sum(minutes), 0) AS m "
                       f"FROM {cat.qualified('programme_popularity')} {where}").collect()[0]
    sw = cat.spark.sql(f"SELECT coalesce(sum(minutes), 0) AS m FROM {cat.qualified('series_weekday_hour')} "
                       f"{where}").collect()[0]

    def close(a, b):
        return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))

    yield dg.AssetCheckResult(asset_key="programme_popularity", check_name="consistent_with_viewing",
                              passed=int(pp["n"]) == int(pv["n"]) and close(pp["m"], pv["m"]),
                              metadata={"sessions": int(pp["n"]), "viewing_rows": int(pv["n"]),
                                        "minutes": float(pp["m"]), "viewing_minutes": float(pv["m"])})
    yield dg.AssetCheckResult(asset_key="series_weekday_hour", check_name="consistent_with_viewing",
                              passed=close(sw["m"], pv["sm"]),
                              metadata={"minutes": float(sw["m"]), "viewing_series_minutes": float(pv["sm"])})


assets = [programme_guide, hive_programme_guide, programme_viewing, programme_aggregates]
checks: list = []


def _programme_marts():
    from tv_platform.assets import marts
    from tv_platform.epg.marts import PROGRAMME_MARTS

    return marts.build(PROGRAMME_MARTS, "programme_marts")


# the programme tables in both warehouses, built like the lake's marts (group "marts", checked against the lake)
mart_assets = _programme_marts()
