"""Analytics layer (issue #7): questions answered over a window of the lake's daily tables, on Spark, each with a
chart (PNG) and a markdown summary attached to its materialization.

    channel_leaders      leaders and outsiders by hours, views and minutes per view          ← channel_rating
    weekday_weekend      weekday vs weekend: hours per weekday, hourly profile               ← daily_viewing, hourly_activity
    prime_time           prime-time concentration of minutes (19–23 h), per day              ← hourly_activity
    user_retention       users returning 1..7 days later; active users per day               ← user_activity
    user_segments        k-means (Spark MLlib) on each user's hour-of-day profile            ← viewing_sessions
    audience_daily [daily, group lake]  per broadcast day: universe, credited minutes, TVR / AMA / reach / share /
                         ATS per channel × daypart, programme airing, series                  ← viewing_sessions, guide
    audience_measures    the same measures over a window of calendar broadcast days          ← audience_daily tables
    viewing_forecast     next 7 days of total hours, per-channel hours, hourly load;         ← daily_viewing, channel_rating,
                         seasonal naive vs calendar ridge, backtest on the held-out week        hourly_activity

Not partitioned: each reads the last ``days`` partitions (config) ending at the latest one present (or ``end``).
Tabular results go to unpartitioned Hive tables ``analytics_<asset>`` (and ``forecast_daily``); charts to
``<lake_root>/analytics/charts/<asset>.png`` in the lake. Pure logic: tv_platform/analytics/.
Resource: ``hive`` (HiveResource) only.
"""


import dagster as dg
import numpy as np
import pandas as pd
from pyspark.sql import functions as F

from tv_platform.analytics import charts as C
from tv_platform.analytics import forecast as FC
from tv_platform.analytics import measures as audience
from tv_platform.analytics import segments as SG
from tv_platform.engines.metadata import declare
from tv_platform.engines.spark import HiveCatalog, HiveResource, union_of_days
from tv_platform.lake import aggregates as A
from tv_platform.lake.calendar import ALL_DAY, BroadcastCalendar
from tv_platform.partitions import BROADCAST_WINDOW, GUIDE_DAYS, daily, spark_range
from tv_platform.settings import get_settings

GROUP = "analytics"
KINDS = {"spark", "python"}
WEEKEND_COLOR, WEEKDAY_COLOR = "tab:orange", "tab:blue"


class WindowConfig(dg.Config):
    days: int = 28
    """How many daily partitions to read, ending at ``end`` (0 = all present)."""
    end: str = ""
    """Last day of the window (YYYY-MM-DD); empty = the latest partition present in the source table."""


class SegmentsConfig(WindowConfig):
    k: int = 4
    """Number of segments (k-means clusters)."""
    seed: int = 7
    """Seed of k-means (fixed seed → the same segments)."""
    min_minutes: float = 10.0
    """Users with fewer minutes in the window are not segmented."""


class ForecastConfig(WindowConfig):
    days: int = 56
    horizon: int = 7
    top_channels: int = 10
    """Channels (by hours in the window) forecast one by one."""


# ---------------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------------
def window(cat: HiveCatalog, table: str, config: WindowConfig) -> list[str]:
    cat.require(table, f"the lake's `{table}`")
    parts = cat.partitions(table)
    if config.end:
        parts = [p for p in parts if p <= config.end]
    if config.days > 0:
        parts = parts[-config.days:]
    if not parts:
        raise dg.Failure(f"{cat.database}.{table} has no partitions in the window (end={config.end or 'latest'})")
    return parts


def pull(cat: HiveCatalog, table: str, days: list[str], columns: list[str]) -> pd.DataFrame:
    """A small aggregate table's window as pandas (only the named columns leave Spark)."""
    return cat.read(table, days).select(*columns).toPandas()


def store(cat: HiveCatalog, table: str, frame: pd.DataFrame) -> dict:
    """Replace the unpartitioned Hive table ``table`` with ``frame``; returns the write's metadata. A ``dt`` column is
    renamed ``day`` (HiveCatalog.write treats ``dt`` as the partition column)."""
    frame = frame.rename(columns={"dt": "day"})
    def py(v):
        if v is None or (not isinstance(v, str) and pd.isna(v)):
            return None
        return v.item() if hasattr(v, "item") else v

    records = [tuple(py(v) for v in row) for row in frame.itertuples(index=False, name=None)]
    sdf = cat.spark.createDataFrame(records, schema=_schema(frame))
    return cat.write(table, sdf, None)


def _schema(frame: pd.DataFrame) -> str:
    def t(dtype) -> str:
        k = str(dtype)
        if k.startswith(("int", "Int", "uint")):
            return "bigint"
        if k.startswith(("float", "Float")):
            return "double"
        if k == "bool":
            return "boolean"
        return "string"

    return ", ".join(f"`{c}` {t(frame[c].dtype)}" for c in frame.columns)


def span(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{days[0]}..{days[-1]} ({len(days)} days)"


def result(context, hive: HiveResource, name: str, fig, summary: str, metadata: dict) -> dg.MaterializeResult:
    png = C.to_png(fig)
    path = f"/{hive.lake_root.strip('/')}/analytics/charts/{name}.png"
    try:
        hive.fs().write_bytes(path, png)
        where = hive.fs().uri(path)
    except Exception as exc:  # noqa: BLE001 - the chart still goes to the UI
        context.log.warning(f"could not write {path} to the lake: {exc}")
        where = ""
    md = f"{summary.strip()}\n\n{C.markdown_image(png, name)}\n"
    meta = {"summary": dg.MetadataValue.md(md), "chart_png_bytes": len(png), **metadata}
    if where:
        meta["chart_path"] = dg.MetadataValue.path(where)
    return dg.MaterializeResult(metadata=meta)


def _md_table(frame: pd.DataFrame, floatfmt: str = ".1f") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        cells = [format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v) for v in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _asset(name: str, deps: list[str], description: str, **kw):
    return dg.asset(name=name, group_name=GROUP, kinds=KINDS, deps=deps, description=description, **kw)


# ---------------------------------------------------------------------------------------------------------------------
# leaders and outsiders
# ---------------------------------------------------------------------------------------------------------------------
@_asset("channel_leaders", ["channel_rating"],
        "Channels leading and trailing over the window by hours watched, by views and by minutes per view (the "
        "seed's rating); table analytics_channel_leaders, chart of top/bottom 10 of each.")
def channel_leaders(context: dg.AssetExecutionContext, config: WindowConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "channel_rating", config)
    rating = pull(cat, "channel_rating", days, ["dt", "channel_id", "channel_name", "hours", "views"])
    table = audience.channel_leaders(rating)
    written = store(cat, "analytics_channel_leaders", table)

    fig, axes = C.figure(3, 2, width=13, height=8)
    panels = [("hours", "hours watched, h"), ("views", "views, sessions"), ("minutes_per_view", "minutes per view, min")]
    for j, (col, label) in enumerate(panels):
        top, bottom = audience.top_bottom(table, col if col != "minutes_per_view" else col, 10)
        if col == "minutes_per_view":
            ranked = table[table["rank_minutes_per_view"].notna()]
            top, bottom = audience.top_bottom(ranked, col, 10)
        C.hbar(axes[0][j], top["channel_name"], top[col], f"leaders by {col.replace('_', ' ')}", label)
        C.hbar(axes[1][j], bottom["channel_name"], bottom[col], f"outsiders by {col.replace('_', ' ')}", label,
               color="tab:red")
    fig.suptitle(f"Channels, {span(days)}")
    lead, last = table.iloc[0], table.iloc[-1]
    summary = (f"**Channel leaders and outsiders**, {span(days)}, {len(table)} channels.\n\n"
               f"Leader by hours: **{lead.channel_name}** ({lead.hours:.0f} h, {lead.hours_share_pct:.1f}% of all "
               f"hours); last: **{last.channel_name}** ({last.hours:.1f} h).\n\n"
               + _md_table(table.head(5)[["rank_hours", "channel_name", "hours", "views", "minutes_per_view"]]))
    return result(context, hive, "channel_leaders", fig, summary, {
        "window": span(days), "channels": len(table), "leader_by_hours": str(lead.channel_name),
        "outsider_by_hours": str(last.channel_name), "table": written["table"], "dagster/row_count": len(table)})


# ---------------------------------------------------------------------------------------------------------------------
# weekday vs weekend
# ---------------------------------------------------------------------------------------------------------------------
@_asset("weekday_weekend", ["daily_viewing", "hourly_activity"],
        "Weekday vs weekend behaviour of the service on the broadcast day (TVP_BROADCAST_DAY_START: with 05:00, "
        "Friday night after midnight is Friday's): mean hours, views and active users per weekday, and the average "
        "audience by clock hour on weekdays and weekends; table analytics_weekday_weekend. The audience measures' "
        "weekday vs weekend is in audience_measures (docs/measures.md).")
def weekday_weekend(context: dg.AssetExecutionContext, config: WindowConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "daily_viewing", config)
    daily = pull(cat, "daily_viewing", days, ["dt", "views", "active_users", "hours_in_day"])
    hourly = pull(cat, "hourly_activity", days, ["dt", "hour", "minutes"])
    prof = audience.weekday_profile(daily)
    ratio = audience.weekend_vs_weekday(daily)
    hp = audience.hourly_profile(hourly)
    written = store(cat, "analytics_weekday_weekend", prof)

    fig, axes = C.figure(2, 1, width=12, height=4.2)
    ax = axes[0][0]
    colors = [WEEKEND_COLOR if n >= 6 else WEEKDAY_COLOR for n in prof["weekday_num"]]
    ax.bar(prof["weekday"], prof["hours"], color=colors)
    ax.set_xlabel("day of week")
    ax.set_ylabel("hours watched per day, h")
    ax.set_title("mean hours per weekday (orange = weekend)")
    ax = axes[0][1]
    for kind, color in (("weekday", WEEKDAY_COLOR), ("weekend", WEEKEND_COLOR)):
        if kind in hp.columns:
            ax.plot(hp.index, hp[kind], marker="o", ms=3, color=color, label=kind)
    ax.set_xlabel("hour of day")
    ax.set_ylabel("average concurrent viewers, users")
    ax.set_xticks(range(0, 24, 2))
    ax.legend()
    ax.set_title("audience by hour")
    r = ratio["weekend_to_weekday_hours"]
    summary = (f"**Weekday vs weekend**, {span(days)}.\n\nWeekend days: {ratio['weekend_hours_per_day']:.0f} h/day, "
               f"weekdays: {ratio['weekday_hours_per_day']:.0f} h/day — weekend/weekday = **{r:.2f}**.\n\n"
               + _md_table(prof[["weekday", "days", "hours", "views", "active_users"]]))
    return result(context, hive, "weekday_weekend", fig, summary, {
        "window": span(days), **{k: round(v, 3) for k, v in ratio.items() if np.isfinite(v)},
        "table": written["table"]})


# ---------------------------------------------------------------------------------------------------------------------
# prime time
# ---------------------------------------------------------------------------------------------------------------------
@_asset("prime_time", ["hourly_activity"],
        f"Prime-time concentration: share of minutes watched in {audience.PRIME_HOURS[0]}:00–{audience.PRIME_HOURS[-1] + 1}:00 "
        "overall and per day, the peak hour, how many hours hold half of the minutes; table analytics_prime_time.")
def prime_time(context: dg.AssetExecutionContext, config: WindowConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "hourly_activity", config)
    hourly = pull(cat, "hourly_activity", days, ["dt", "hour", "minutes"])
    per_day, summ = audience.prime_time(hourly)
    written = store(cat, "analytics_prime_time", per_day[["dt", "weekday", "minutes", "prime_minutes",
                                                          "prime_share_pct"]])
    by_hour = hourly.groupby("hour")["minutes"].sum().reindex(range(24), fill_value=0.0)
    share = 100.0 * by_hour / max(float(by_hour.sum()), 1e-12)

    fig, axes = C.figure(2, 1, width=12, height=4.2)
    ax = axes[0][0]
    ax.bar(share.index, share.values, color=["tab:red" if h in audience.PRIME_HOURS else "tab:gray" for h in share.index])
    ax.set_xlabel("hour of day")
    ax.set_ylabel("share of minutes watched, %")
    ax.set_title("minutes by hour (red = prime time)")
    ax = axes[0][1]
    x = pd.to_datetime(per_day["dt"])
    ax.plot(x, per_day["prime_share_pct"], marker="o", ms=3)
    ax.set_xlabel("date")
    ax.set_ylabel("prime-time share of the day's minutes, %")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_title("prime-time share per day")
    summary = (f"**Prime-time concentration**, {span(days)}.\n\n{summ['prime_share_pct']:.1f}% of all minutes fall "
               f"in prime time {summ['prime_hours']} ({summ['prime_share_of_clock_pct']:.1f}% of the clock); peak "
               f"hour {summ['peak_hour']}:00 with {summ['peak_hour_share_pct']:.1f}%; "
               f"{summ['hours_holding_half_of_minutes']} busiest hours hold half of all minutes.")
    return result(context, hive, "prime_time", fig, summary, {"window": span(days), **summ,
                                                              "table": written["table"]})


# ---------------------------------------------------------------------------------------------------------------------
# retention
# ---------------------------------------------------------------------------------------------------------------------
def return_pairs_sql(cat: HiveCatalog, days: list[str], max_lag: int = 7) -> str:
    inlist = ", ".join(f"'{d}'" for d in days)
    return f"""
        WITH a AS (SELECT DISTINCT user_id, CAST(dt AS DATE) AS d FROM {cat.qualified('user_activity')}
                   WHERE dt IN ({inlist})),
             base AS (SELECT d, count(*) AS base FROM a GROUP BY d),
             lags AS (SELECT explode(sequence(1, {int(max_lag)})) AS lag),
             ret AS (SELECT a.d, b.lag, count(*) AS returned
                     FROM a JOIN lags b JOIN a c ON c.user_id = a.user_id AND c.d = date_add(a.d, b.lag)
                     GROUP BY a.d, b.lag)
        SELECT CAST(base.d AS STRING) AS dt, lags.lag, base.base, coalesce(ret.returned, 0) AS returned
        FROM base CROSS JOIN lags LEFT JOIN ret ON ret.d = base.d AND ret.lag = lags.lag
        WHERE date_add(base.d, lags.lag) <= (SELECT max(d) FROM a)
        ORDER BY dt, lag"""


@_asset("user_retention", ["user_activity"],
        "Users returning across days: of the users active on a day, the share active again 1..7 days later (pooled "
        "over the window's start days), and active users per day; table analytics_user_retention.")
def user_retention(context: dg.AssetExecutionContext, config: WindowConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "user_activity", config)
    cat.refresh("user_activity")
    pairs = cat.spark.sql(return_pairs_sql(cat, days)).toPandas()
    dau = (cat.read("user_activity", days).groupBy("dt").agg(F.count(F.lit(1)).alias("active_users"))
           .orderBy("dt").toPandas())
    curve = audience.retention_curve(pairs) if len(pairs) else pd.DataFrame(columns=["lag", "base", "returned",
                                                                                "retention_pct"])
    written = store(cat, "analytics_user_retention", curve.astype({"lag": "int64", "base": "int64",
                                                                   "returned": "int64", "retention_pct": "float64"}))
    fig, axes = C.figure(2, 1, width=12, height=4.2)
    ax = axes[0][0]
    ax.plot(curve["lag"], curve["retention_pct"], marker="o")
    ax.set_xlabel("days later")
    ax.set_ylabel("users active again, %")
    ax.set_ylim(0, 100)
    ax.set_title("return rate by lag")
    ax = axes[0][1]
    ax.bar(pd.to_datetime(dau["dt"]), dau["active_users"], color="tab:green")
    ax.set_xlabel("date")
    ax.set_ylabel("active users, users")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.set_title("active users per day")
    d1 = float(curve.loc[curve["lag"] == 1, "retention_pct"].iloc[0]) if (curve["lag"] == 1).any() else float("nan")
    d7 = float(curve.loc[curve["lag"] == 7, "retention_pct"].iloc[0]) if (curve["lag"] == 7).any() else float("nan")
    summary = (f"**Retention**, {span(days)}: of a day's active users, **{d1:.1f}%** are back the next day and "
               f"**{d7:.1f}%** 7 days later (NaN: window too short). Mean active users per day: "
               f"{dau['active_users'].mean():.0f}.")
    meta = {"window": span(days), "table": written["table"], "mean_active_users": float(dau["active_users"].mean())}
    if np.isfinite(d1):
        meta["return_next_day_pct"] = round(d1, 2)
    if np.isfinite(d7):
        meta["return_day7_pct"] = round(d7, 2)
    return result(context, hive, "user_retention", fig, summary, meta)


# ---------------------------------------------------------------------------------------------------------------------
# segments
# ---------------------------------------------------------------------------------------------------------------------
@_asset("user_segments", ["viewing_sessions"],
        "User segments by viewing pattern: k-means (Spark MLlib, over Spark Connect) on each user's hour-of-day "
        "profile (share of their minutes per clock hour) over the window; segments numbered by their peak hour. "
        "Table analytics_user_segments (user_id, segment, minutes).")
def user_segments(context: dg.AssetExecutionContext, config: SegmentsConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "viewing_sessions", config)
    profiles = SG.user_hour_profiles(cat.read("viewing_sessions", days), config.min_minutes)
    assigned, centers, _ = SG.kmeans_segments(profiles, config.k, config.seed)
    written = cat.write("analytics_user_segments", assigned.select("user_id", "segment", "minutes"), None)
    sizes = {int(r["segment"]): (int(r["users"]), float(r["minutes"])) for r in cat.spark.sql(
        f"SELECT segment, count(*) AS users, avg(minutes) AS minutes FROM {cat.qualified('analytics_user_segments')} "
        "GROUP BY segment").collect()}
    names = [SG.describe_center(c) for c in centers]
    fig, axes = C.figure(1, 1, width=10, height=4.5)
    ax = axes[0][0]
    for i, c in enumerate(centers):
        n = sizes.get(i, (0, 0.0))[0]
        ax.plot(range(24), 100 * c, marker="o", ms=3, label=f"{i}: {names[i]}, {n} users")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("share of the user's minutes, %")
    ax.set_xticks(range(0, 24, 2))
    ax.legend(fontsize=7)
    ax.set_title(f"segment centres (k-means, k={config.k}, seed={config.seed})")
    total = sum(v[0] for v in sizes.values())
    rows = pd.DataFrame([{"segment": i, "profile": names[i], "users": sizes.get(i, (0, 0))[0],
                          "users_pct": 100 * sizes.get(i, (0, 0))[0] / max(total, 1),
                          "avg_minutes": sizes.get(i, (0, 0.0))[1]} for i in range(len(centers))])
    summary = f"**User segments**, {span(days)}: {total} users, k-means on hour-of-day profiles.\n\n" + _md_table(rows)
    return result(context, hive, "user_segments", fig, summary, {
        "window": span(days), "users": total, "k": config.k, "seed": config.seed, "table": written["table"],
        "segments": dg.MetadataValue.json({str(i): {"profile": names[i], "users": sizes.get(i, (0, 0))[0]}
                                           for i in range(len(centers))}),
        "centres_peak_hours": [int(np.argmax(c)) for c in centers]})


# ---------------------------------------------------------------------------------------------------------------------
# audience measures (docs/measures.md)
# ---------------------------------------------------------------------------------------------------------------------
MEASURES_DOC = "docs/measures.md"
AUDIENCE_OUTPUTS = ("audience_universe", "audience_minutes", "audience_channel", "audience_programme",
                    "audience_series")
_AUDIENCE_SUMS = {"audience_universe": [], "audience_minutes": ["seconds"], "audience_channel": ["minutes"],
                  "audience_programme": ["minutes"], "audience_series": ["minutes"]}
_AUDIENCE_DOCS = {
    "audience_universe": A.audience_universe.__doc__,
    "audience_minutes": A.credited_minutes.__doc__,
    "audience_channel": A.channel_measures.__doc__,
    "audience_programme": A.audience_programme.__doc__,
    "audience_series": A.series_measures.__doc__,
}


def _broadcast_days(days: list[str]) -> list[str]:
    """The calendar days whose guide a set of broadcast days needs (D and D+1)."""
    from datetime import timedelta

    from tv_platform.dates import as_date

    return sorted({d for day in days for d in (day, (as_date(day) + timedelta(days=1)).isoformat())})


@dg.multi_asset(
    name="audience_daily",
    group_name="lake",  # daily lake tables (the analytics group is unpartitioned: its job holds one partitioning)
    partitions_def=daily,
    backfill_policy=spark_range,
    outs={name: dg.AssetOut(io_manager_key="hive_io_manager", kinds={"spark", "parquet"},
                            description=" ".join((_AUDIENCE_DOCS[name] or name).split()) + f" See {MEASURES_DOC}.",
                            metadata=declare(A.AUDIENCE_TABLES[name], partition_expr="dt",
                                             sum_columns=_AUDIENCE_SUMS[name]))
          for name in AUDIENCE_OUTPUTS},
    ins={"viewing_sessions": dg.AssetIn(partition_mapping=BROADCAST_WINDOW)},
    deps=["hive_users", dg.AssetDep("hive_programme_guide", partition_mapping=GUIDE_DAYS)],
    check_specs=[
        dg.AssetCheckSpec("universe_declared", asset="audience_universe",
                          description="the day's universe = the reference subscribers + the inferred members (viewers "
                                      "of the day outside the reference), recounted with plain SQL"),
        dg.AssetCheckSpec("shares_add_up", asset="audience_channel",
                          description="per day and daypart the channels' shares add up to 100 % and their minutes to "
                                      "the credited minutes of audience_minutes"),
    ],
)
def audience_daily(context: dg.AssetExecutionContext, hive: HiveResource, viewing_sessions):
    """The audience measures of each broadcast day (TVP_BROADCAST_DAY_START, dayparts TVP_DAYPARTS, reach threshold
    TVP_REACH_THRESHOLD_MINUTES): the universe, the credited minutes, and TVR / AMA / reach / share / ATS per channel
    × daypart, per programme airing and per series. Reads the sessions of D-1..D+1 and the guide of D and D+1."""
    settings = get_settings()
    cal = BroadcastCalendar.from_settings(settings)
    threshold = settings.reach_threshold_minutes
    days = list(context.partition_keys)
    cat = hive.catalog()
    cat.refresh("tv_users")
    users = cat.spark.table(cat.qualified("tv_users"))
    guide = None
    if cat.table_exists("programme_guide"):
        cat.refresh("programme_guide")
        guide = cat.read("programme_guide", _broadcast_days(days))
    context.log.info(cal.describe() + f"; reach threshold {threshold} min; guide: {guide is not None}")

    def per_day(build):
        return union_of_days([build(d) for d in days])

    yield dg.Output(per_day(lambda d: A.audience_universe(viewing_sessions, users, cal, d)),
                    output_name="audience_universe")
    yield dg.Output(per_day(lambda d: A.credited_minutes(viewing_sessions, cal, d, guide)),
                    output_name="audience_minutes")
    universe, minutes = cat.read("audience_universe", days), cat.read("audience_minutes", days)

    def of(frame, d):
        return frame.where(F.col("dt") == d)

    cut = {}  # a day's credited minutes cut into viewing pieces once, shared by its channel, programme and series

    def pieces(d):
        if d not in cut:
            cut[d] = A.viewing_pieces(of(minutes, d)).localCheckpoint()
        return cut[d]

    channels = viewing_sessions.select("channel_id", "channel_name")
    if cat.table_exists("tv_channels"):
        cat.refresh("tv_channels")
        channels = channels.unionByName(cat.spark.table(cat.qualified("tv_channels")).select("channel_id",
                                                                                            "channel_name"))
    yield dg.Output(per_day(lambda d: A.audience_channel(of(minutes, d), of(universe, d), cal, threshold, d,
                                                         channels, pieces=pieces(d))),
                    output_name="audience_channel")
    empty_guide = cat.spark.createDataFrame([], "channel_id int, programme_id string, title string, series string, "
                                                "start timestamp, end timestamp")
    yield dg.Output(per_day(lambda d: A.audience_programme(of(minutes, d), of(universe, d),
                                                           guide if guide is not None else empty_guide, cal,
                                                           threshold, d, pieces=pieces(d))),
                    output_name="audience_programme")
    programmes = cat.read("audience_programme", days)
    yield dg.Output(per_day(lambda d: A.audience_series(of(programmes, d), of(minutes, d), of(universe, d),
                                                        threshold, d, pieces=pieces(d))),
                    output_name="audience_series")

    where = "WHERE dt IN (" + ", ".join(f"'{d}'" for d in days) + ")"
    u = cat.spark.sql(
        f"SELECT count(*) AS n, count(DISTINCT dt) AS days, "
        f"coalesce(sum(CASE WHEN member = 'reference' THEN 1 END), 0) AS ref, "
        f"coalesce(sum(CASE WHEN member = 'inferred' THEN 1 END), 0) AS inferred "
        f"FROM {cat.qualified('audience_universe')} {where}").collect()[0]
    ref_rows = int(users.select("user_id").where(F.col("user_id").isNotNull()).distinct().count())
    ok_u = int(u["ref"]) == ref_rows * len(days) and int(u["n"]) == int(u["ref"]) + int(u["inferred"])
    yield dg.AssetCheckResult(asset_key="audience_universe", check_name="universe_declared", passed=ok_u,
                              metadata={"universe_member_days": int(u["n"]), "reference_subscribers": ref_rows,
                                        "inferred_member_days": int(u["inferred"]), "days": len(days)})
    c = cat.spark.sql(
        f"SELECT dt, daypart, sum(share_pct) AS share, sum(minutes) AS minutes FROM "
        f"{cat.qualified('audience_channel')} {where} GROUP BY dt, daypart").toPandas()
    credited = cat.spark.sql(f"SELECT count(*) AS n FROM {cat.qualified('audience_minutes')} {where}").collect()[0]
    whole = c[c["daypart"] == ALL_DAY]
    ok_c = bool(((c["share"] - 100.0).abs() < 1e-6).all()) and int(whole["minutes"].sum()) == int(credited["n"])
    yield dg.AssetCheckResult(asset_key="audience_channel", check_name="shares_add_up", passed=ok_c,
                              metadata={"credited_minutes": int(credited["n"]),
                                        "channel_minutes": int(whole["minutes"].sum()),
                                        "cells": len(c)})


class AudienceWindowConfig(dg.Config):
    days: int = 28
    """Calendar (broadcast) days of the window, ending at ``end``; every one must have its audience_daily partition
    (a day without viewing is a partition with a universe and no minutes — it counts as zero, never skipped)."""
    end: str = ""
    """Last broadcast day of the window (YYYY-MM-DD); empty = the latest audience_universe partition."""


def calendar_window(cat: HiveCatalog, table: str, config: AudienceWindowConfig) -> list[str]:
    """The ``config.days`` calendar days ending at ``config.end`` (or the latest partition of ``table``), starting no
    earlier than its first partition (a window longer than the history is the history: the metadata's ``window``
    says which days); a Failure naming the missing days if any day inside has no partition — a window never
    silently shrinks to the days that have rows."""
    cat.require(table, "`audience_daily`")
    have = set(cat.partitions(table))
    if not have:
        raise dg.Failure(f"{cat.database}.{table} has no partitions: materialize `audience_daily` first")
    last = pd.Timestamp(config.end or max(have))
    n = max(int(config.days), 1)
    first = max(last - pd.Timedelta(days=n - 1), pd.Timestamp(min(have)))  # not before the history begins
    days = list(pd.date_range(first, last, freq="D").strftime("%Y-%m-%d"))
    missing = [d for d in days if d not in have]
    if missing:
        raise dg.Failure(f"the window {days[0]}..{days[-1]} misses audience_daily for {len(missing)} day(s) "
                         f"(e.g. {missing[:3]}): materialize them, or choose `end`/`days` inside what exists")
    return days


@_asset("audience_measures", ["audience_universe", "audience_minutes", "audience_programme"],
        "TV audience measures over a window of calendar broadcast days, by the definitions of docs/measures.md: per "
        "channel and daypart TVR, AMA (over every minute of the window, quiet days count as zero), reach (count and "
        "% of the window's universe, at least TVP_REACH_THRESHOLD_MINUTES consecutive minutes), share and ATS per "
        "universe member and per viewer; per series the same over all its airings (empty ones included). Tables "
        "analytics_audience (channel × daypart) and analytics_audience_series.")
def audience_measures(context: dg.AssetExecutionContext, config: AudienceWindowConfig, hive: HiveResource):
    settings = get_settings()
    cal = BroadcastCalendar.from_settings(settings)
    threshold = settings.reach_threshold_minutes
    cat = hive.catalog()
    days = calendar_window(cat, "audience_universe", config)
    universe, minutes = cat.read("audience_universe", days), cat.read("audience_minutes", days)
    names = cat.read("audience_channel", days).select("channel_id", "channel_name").where(F.col("daypart") == ALL_DAY)
    cut = A.viewing_pieces(minutes).localCheckpoint()  # the window's minutes cut into pieces once, for both tables
    per = A.channel_measures(minutes, universe, cal, threshold, names, pieces=cut).toPandas()
    per = per.sort_values(["daypart", "share_pct", "channel_id"], ascending=[True, False, True])
    written = store(cat, "analytics_audience", per)
    series = A.series_measures(cat.read("audience_programme", days), minutes, universe, threshold,
                               pieces=cut).toPandas()
    series = series.sort_values(["tvr_pct", "series"], ascending=[False, True])
    store(cat, "analytics_audience_series", series)

    whole = per[per["daypart"] == ALL_DAY].sort_values(["share_pct", "channel_id"], ascending=[False, True])
    # weekday vs weekend on the broadcast day (Friday night after midnight is Friday's): minutes per member and day
    by_day = (cat.read("audience_channel", days).where(F.col("daypart") == ALL_DAY).groupBy("dt", "is_weekend")
              .agg(F.sum("minutes").alias("minutes"), F.max("universe").alias("universe")).toPandas())
    by_day["ats"] = by_day["minutes"] / by_day["universe"].where(by_day["universe"] > 0)
    weekly = {("weekend" if k else "weekday"): float(v) for k, v in by_day.groupby("is_weekend")["ats"].mean().items()}
    top = whole.head(10)
    fig, axes = C.figure(2, 1, width=13, height=5)
    ax = axes[0][0]
    y = np.arange(len(top))
    ax.barh(y - 0.2, top["reach_pct"], height=0.4, label="reach, % of the universe")
    ax.barh(y + 0.2, top["share_pct"], height=0.4, label="share, % of viewing minutes")
    ax.set_yticks(y, top["channel_name"].fillna(top["channel_id"].astype(str)), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("percent, %")
    ax.set_ylabel("channel")
    ax.legend(fontsize=7)
    ax.set_title("top 10 channels by share (whole broadcast day)")
    ax = axes[0][1]
    parts = [p.name for p in cal.dayparts]
    pivot = per[per["channel_id"].isin(top["channel_id"])].pivot_table(
        index="channel_id", columns="daypart", values="tvr_pct", aggfunc="sum").reindex(
        index=top["channel_id"], columns=parts).fillna(0.0)
    im = ax.imshow(pivot.to_numpy(), aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(top)), top["channel_name"].fillna(top["channel_id"].astype(str)), fontsize=7)
    ax.set_xticks(range(len(parts)), parts, fontsize=7, rotation=30)
    ax.set_xlabel("daypart")
    ax.set_ylabel("channel")
    ax.set_title("TVR by daypart")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("TVR, % of the universe watching an average minute")
    cb.ax._tvp_colorbar = True  # noqa: SLF001
    universe_size = int(whole["universe"].max()) if len(whole) else 0
    summary = (f"**Audience measures**, {span(days)} ({cal.describe()}; reach ≥ {threshold} consecutive min), "
               f"universe {universe_size} members (definitions: {MEASURES_DOC}). Minutes per member and broadcast "
               f"day: " + ", ".join(f"{k} {v:.1f}" for k, v in weekly.items()) + ".\n\n")
    if len(whole):
        lead = whole.iloc[0]
        summary += (f"Largest share: **{lead.channel_name}** — share {lead.share_pct:.1f}%, TVR {lead.tvr_pct:.3f}%, "
                    f"reach {lead.reach_pct:.1f}%, AMA {lead.ama:.2f}.\n\n"
                    + _md_table(top.head(5)[["channel_name", "tvr_pct", "reach_pct", "share_pct", "ama",
                                             "ats_universe_min"]], ".3f"))
    return result(context, hive, "audience_measures", fig, summary, {
        "window": span(days), "universe": universe_size, "channels": int(whole["channel_id"].nunique()),
        "series": len(series), "reach_threshold_minutes": threshold, "calendar": cal.describe(),
        **{f"ats_per_member_day_{k}": round(v, 3) for k, v in weekly.items() if np.isfinite(v)},
        "definitions": MEASURES_DOC, "table": written["table"]})


# ---------------------------------------------------------------------------------------------------------------------
# forecast
# ---------------------------------------------------------------------------------------------------------------------
def forecast_inputs(cat: HiveCatalog, days: list[str]):
    """Wide daily frames over every calendar day first..last of ``days``: total hours in day; hours of every channel
    (by start, channel_rating; 0 on a day that exists without the channel); average concurrent viewers per clock hour
    (hourly_activity minutes / 60). A day without a partition is missing (NaN), never 0."""
    first, last = days[0], days[-1]
    daily = pull(cat, "daily_viewing", days, ["dt", "hours_in_day"]).set_index("dt")[["hours_in_day"]]
    total = FC.complete_days(daily.rename(columns={"hours_in_day": "total"}), first, last)
    rating = pull(cat, "channel_rating", days, ["dt", "channel_name", "hours"])
    ch = rating.pivot_table(index="dt", columns="channel_name", values="hours", aggfunc="sum")
    ch = ch.reindex(index=sorted(daily.index)).fillna(0.0)
    channels = FC.complete_days(ch, first, last)
    hourly = pull(cat, "hourly_activity", days, ["dt", "hour", "minutes"])
    hh = hourly.pivot_table(index="dt", columns="hour", values="minutes", aggfunc="sum").reindex(
        columns=range(24)).fillna(0.0) / 60.0
    hours = FC.complete_days(hh, first, last)
    return total, channels, hours


@_asset("viewing_forecast", ["daily_viewing", "channel_rating", "hourly_activity"],
        "The next 7 days of total viewing hours (in-day clock), per-channel hours (top channels) and the hourly load "
        "profile (average concurrent viewers per clock hour), from the finished days of the history (today's "
        "partition is left out; a missing day stays missing, never 0): seasonal naive (same weekday last week) vs a "
        "calendar ridge regression (trend + day-of-week, numpy least squares); backtest on 4 rolling origins with "
        "the mean MAPE, its 95 % interval and `beats_baseline`; the top channels of each fold chosen on its "
        "training days only. Rows to Hive table forecast_daily (dt, series, kind, model, hours).")
def viewing_forecast(context: dg.AssetExecutionContext, config: ForecastConfig, hive: HiveResource):
    cat = hive.catalog()
    present = window(cat, "daily_viewing", config)
    days = FC.finished_days(present)
    unfinished = sorted(set(present) - set(days))
    if unfinished:
        context.log.info(f"left out of the forecast, not finished yet: {unfinished}")
    h = config.horizon
    span_days = len(pd.date_range(days[0], days[-1])) if days else 0
    need = FC.MIN_MODEL_DAYS + h + FC.FOLDS - 1
    if span_days < need:
        raise dg.Failure(f"the forecast needs {need} finished days (training {FC.MIN_MODEL_DAYS}, held-out {h}, "
                         f"{FC.FOLDS} rolling origins); the window has {span_days}")
    total, channels, hours = forecast_inputs(cat, days)
    bt_total = FC.backtest(total["total"], h)
    selected = FC.backtest_selected(channels, config.top_channels, h)
    bt_channels = FC.backtest_many(channels[selected["selected"]], h)
    bt_hours = FC.backtest_many(hours, h)
    err_ch, err_hr = selected, FC.pooled_errors(bt_hours)
    mape_ch, mape_hr, wape_ch, wape_hr = err_ch["mape"], err_hr["mape"], err_ch["wape"], err_hr["wape"]

    rows = [FC.rows("total", bt_total)]
    rows += [FC.rows(f"channel:{c}", r) for c, r in bt_channels.items()]
    rows += [FC.rows(f"hour:{int(c):02d}", r) for c, r in bt_hours.items()]
    table = pd.concat(rows, ignore_index=True)[["day", "series", "kind", "model", "hours"]]
    written = store(cat, "forecast_daily", table)

    fig, axes = C.figure(3, 1, width=16, height=4.5)
    ax = axes[0][0]
    act = bt_total.actual
    ax.plot(act.index, act.values, color="black", lw=1.2, label="actual")
    styles = {"seasonal_naive": "tab:orange", "calendar_ridge": "tab:blue"}
    for m, color in styles.items():
        ax.plot(bt_total.backtest[m].index, bt_total.backtest[m].values, "--", color=color,
                label=f"{m} backtest (MAPE {bt_total.mape[m]:.1f}%)")
        ax.plot(bt_total.future[m].index, bt_total.future[m].values, "-", color=color, lw=2, label=f"{m} forecast")
    ax.axvline(act.index[-h], color="gray", lw=0.8)
    ax.set_xlabel("date")
    ax.set_ylabel("hours watched per day, h")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=6)
    ax.set_title("total viewing hours")
    ax = axes[0][1]
    for c in list(bt_channels)[:5]:
        r = bt_channels[c]
        line = ax.plot(r.actual.index[-21:], r.actual.values[-21:], lw=1)[0]
        ax.plot(r.future["calendar_ridge"].index, r.future["calendar_ridge"].values, "--", color=line.get_color(),
                label=c[:22])
    ax.set_xlabel("date")
    ax.set_ylabel("hours watched per day, h")
    ax.tick_params(axis="x", labelrotation=45, labelsize=7)
    ax.legend(fontsize=6)
    ax.set_title("top 5 channels (dashed = calendar ridge forecast)")
    ax = axes[0][2]
    last_week = hours.iloc[-7:].to_numpy().ravel()
    nxt = np.column_stack([bt_hours[str(c)].future["calendar_ridge"].to_numpy() for c in hours.columns]).ravel()
    ax.plot(np.arange(-len(last_week), 0), last_week, color="black", lw=1, label="last 7 days, actual")
    ax.plot(np.arange(len(nxt)), nxt, color="tab:blue", lw=1, label="next 7 days, calendar ridge")
    ax.set_xlabel("hours from the end of the history, h")
    ax.set_ylabel("average concurrent viewers, users")
    ax.legend(fontsize=6)
    ax.set_title("hourly load profile")

    beats = bt_total.beats_baseline
    verdict = ("**The calendar ridge model beats the seasonal-naive baseline**" if beats else
               "**The calendar ridge model does NOT beat the seasonal-naive baseline**")
    fut = bt_total.future["calendar_ridge"]
    lo_r, hi_r = bt_total.interval["calendar_ridge"]
    lo_n, hi_n = bt_total.interval["seasonal_naive"]
    summary = (f"**Viewing forecast**, history {span(days)} ({int(total['total'].isna().sum())} missing day(s) left "
               f"missing), horizon {h} days.\n\n"
               f"Backtest on {len(bt_total.origins)} rolling origins "
               f"({', '.join(f'{o:%Y-%m-%d}' for o in bt_total.origins)}), mean MAPE over the folds — total hours: "
               f"seasonal naive {bt_total.mape['seasonal_naive']:.2f}% (95% interval {lo_n:.2f}–{hi_n:.2f}), "
               f"calendar ridge {bt_total.mape['calendar_ridge']:.2f}% ({lo_r:.2f}–{hi_r:.2f}). "
               f"Top channels chosen on each fold's training days only.\n\n"
               f"| series | seasonal naive | calendar ridge |\n|---|---|---|\n"
               f"| total hours, MAPE | {bt_total.mape['seasonal_naive']:.2f}% | {bt_total.mape['calendar_ridge']:.2f}% |\n"
               f"| top {len(bt_channels)} channels, MAPE / WAPE | {mape_ch['seasonal_naive']:.2f}% / "
               f"{wape_ch['seasonal_naive']:.2f}% | {mape_ch['calendar_ridge']:.2f}% / {wape_ch['calendar_ridge']:.2f}% |\n"
               f"| 24 clock hours, MAPE / WAPE | {mape_hr['seasonal_naive']:.2f}% / {wape_hr['seasonal_naive']:.2f}% | "
               f"{mape_hr['calendar_ridge']:.2f}% / {wape_hr['calendar_ridge']:.2f}% |\n\n"
               f"{verdict} on total hours. Next {h} days (calendar ridge): "
               + ", ".join(f"{d:%a %d} {v:.0f} h" for d, v in fut.items()))
    r2 = lambda v: round(float(v), 3)  # noqa: E731
    return result(context, hive, "viewing_forecast", fig, summary, {
        "history": span(days),
        "holdout": f"{act.index[-h]:%Y-%m-%d}..{act.index[-1]:%Y-%m-%d}",
        "folds": len(bt_total.origins),
        "fold_origins": [f"{o:%Y-%m-%d}" for o in bt_total.origins],
        "mape_total_folds": dg.MetadataValue.json({m: [r2(v) for v in bt_total.mape_folds[m]] for m in FC.MODELS}),
        "mape_total_interval95": dg.MetadataValue.json({m: [r2(v) for v in bt_total.interval[m]]
                                                        for m in FC.MODELS}),
        "missing_days": int(total["total"].isna().sum()),
        "unfinished_days_left_out": unfinished,
        "channels_selected_per_fold": dg.MetadataValue.json(selected["selected_per_fold"]),
        "mape_total_seasonal_naive": r2(bt_total.mape["seasonal_naive"]),
        "mape_total_calendar_ridge": r2(bt_total.mape["calendar_ridge"]),
        "beats_baseline": beats,
        "mape_channels_seasonal_naive": r2(mape_ch["seasonal_naive"]),
        "mape_channels_calendar_ridge": r2(mape_ch["calendar_ridge"]),
        "beats_baseline_channels": bool(mape_ch["calendar_ridge"] < mape_ch["seasonal_naive"]),
        "mape_hourly_seasonal_naive": r2(mape_hr["seasonal_naive"]),
        "mape_hourly_calendar_ridge": r2(mape_hr["calendar_ridge"]),
        "beats_baseline_hourly": bool(mape_hr["calendar_ridge"] < mape_hr["seasonal_naive"]),
        "wape_channels_seasonal_naive": r2(wape_ch["seasonal_naive"]),
        "wape_channels_calendar_ridge": r2(wape_ch["calendar_ridge"]),
        "wape_hourly_seasonal_naive": r2(wape_hr["seasonal_naive"]),
        "wape_hourly_calendar_ridge": r2(wape_hr["calendar_ridge"]),
        "model_coefficients_total": dg.MetadataValue.json(bt_total.coefficients),
        "forecast_total_hours": dg.MetadataValue.json({f"{d:%Y-%m-%d}": round(float(v), 2) for d, v in fut.items()}),
        "table": written["table"], "dagster/row_count": written["rows"]})


assets = [channel_leaders, weekday_weekend, prime_time, user_retention, user_segments, audience_measures,
          viewing_forecast]
daily_assets = [audience_daily]
"""The daily (partitioned) audience tables: definitions.py makes them follow the landed stream like the lake."""
