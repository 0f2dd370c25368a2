"""Analytics layer (issue #7): questions answered over a window of the lake's daily tables, on Spark, each with a
chart (PNG) and a markdown summary attached to its materialization.

    channel_leaders      leaders and outsiders by hours, views and minutes per view          ← channel_rating
    weekday_weekend      weekday vs weekend: hours per weekday, hourly profile               ← daily_viewing, hourly_activity
    prime_time           prime-time concentration of minutes (19–23 h), per day              ← hourly_activity
    user_retention       users returning 1..7 days later; active users per day               ← user_activity
    user_segments        k-means (Spark MLlib) on each user's hour-of-day profile            ← viewing_sessions
    audience_measures    reach, share, average minute audience by channel and hour           ← channel_weekday_hour, viewing_sessions
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
from tv_platform.engines.spark import HiveCatalog, HiveResource

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
    if not cat.table_exists(table):
        raise dg.Failure(f"{cat.database}.{table} does not exist: materialize the lake's `{table}` first")
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
        "Weekday vs weekend behaviour: mean hours, views and active users per weekday, and the average audience by "
        "hour of day on weekdays and weekends; table analytics_weekday_weekend.")
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
# audience measures
# ---------------------------------------------------------------------------------------------------------------------
@_asset("audience_measures", ["channel_weekday_hour", "viewing_sessions", "hive_users"],
        "TV audience measures per channel over the window: reach % (distinct viewers / the user base in tv_users), "
        "share % (the channel's minutes / all minutes) and AMA (average minute audience, users) — overall and by "
        "hour of day. Tables analytics_audience (per channel) and analytics_audience_hourly (channel × hour AMA).")
def audience_measures(context: dg.AssetExecutionContext, config: WindowConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "channel_weekday_hour", config)
    cwh = pull(cat, "channel_weekday_hour", days, ["dt", "hour", "channel_id", "channel_name", "minutes"])
    viewers = (cat.read("viewing_sessions", days).groupBy("channel_id")
               .agg(F.countDistinct("user_id").alias("viewers")).toPandas())
    cat.refresh("tv_users")
    user_base = int(cat.spark.table(cat.qualified("tv_users")).count())
    per, ama = audience.audience(cwh, viewers, user_base)
    written = store(cat, "analytics_audience", per[["channel_id", "channel_name", "viewers", "reach_pct",
                                                    "minutes", "share_pct", "ama"]])
    long = ama.stack().rename("ama").reset_index().rename(columns={"level_1": "hour"})
    long["hour"] = long["hour"].astype("int64")
    store(cat, "analytics_audience_hourly", long[["channel_id", "hour", "ama"]])

    top = per.head(10)
    fig, axes = C.figure(2, 1, width=13, height=5)
    ax = axes[0][0]
    y = np.arange(len(top))
    ax.barh(y - 0.2, top["reach_pct"], height=0.4, label="reach, % of users")
    ax.barh(y + 0.2, top["share_pct"], height=0.4, label="share, % of minutes")
    ax.set_yticks(y, top["channel_name"], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("percent, %")
    ax.set_ylabel("channel")
    ax.legend(fontsize=7)
    ax.set_title("top 10 channels by share")
    ax = axes[0][1]
    m = ama.loc[top["channel_id"]].to_numpy()
    im = ax.imshow(m, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(top)), top["channel_name"], fontsize=7)
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel("hour of day")
    ax.set_ylabel("channel")
    ax.set_title("average minute audience (AMA)")
    cb = fig.colorbar(im, ax=ax)
    cb.set_label("AMA, users watching per minute")
    cb.ax._tvp_colorbar = True  # noqa: SLF001
    lead = per.iloc[0]
    summary = (f"**Audience measures**, {span(days)}, user base {user_base}.\n\nLargest share: **{lead.channel_name}** "
               f"— share {lead.share_pct:.1f}%, reach {lead.reach_pct:.1f}%, AMA {lead.ama:.2f} users.\n\n"
               + _md_table(top.head(5)[["channel_name", "reach_pct", "share_pct", "ama"]], ".2f"))
    return result(context, hive, "audience_measures", fig, summary, {
        "window": span(days), "user_base": user_base, "channels": len(per), "table": written["table"],
        "top_share_channel": str(lead.channel_name), "top_share_pct": round(float(lead.share_pct), 3)})


# ---------------------------------------------------------------------------------------------------------------------
# forecast
# ---------------------------------------------------------------------------------------------------------------------
def forecast_inputs(cat: HiveCatalog, days: list[str], top: int):
    """Wide daily frames: total hours in day; hours of the top channels (by start, channel_rating); average concurrent
    viewers per clock hour (hourly_activity minutes / 60)."""
    first, last = days[0], days[-1]
    every = pd.date_range(first, last, freq="D").strftime("%Y-%m-%d")
    missing = sorted(set(every) - set(days))
    if missing:
        raise dg.Failure(f"daily_viewing misses {len(missing)} day(s) in {first}..{last} (e.g. {missing[:3]}): "
                         "materialize them or set `end`/`days` to a complete window")
    daily = pull(cat, "daily_viewing", days, ["dt", "hours_in_day"]).set_index("dt")[["hours_in_day"]]
    total = FC.complete_days(daily.rename(columns={"hours_in_day": "total"}), first, last)
    rating = pull(cat, "channel_rating", days, ["dt", "channel_name", "hours"])
    leaders = rating.groupby("channel_name")["hours"].sum().sort_values(ascending=False).head(top).index
    ch = rating[rating["channel_name"].isin(leaders)].pivot_table(index="dt", columns="channel_name", values="hours",
                                                                   aggfunc="sum")[list(leaders)]
    channels = FC.complete_days(ch, first, last)
    hourly = pull(cat, "hourly_activity", days, ["dt", "hour", "minutes"])
    hh = hourly.pivot_table(index="dt", columns="hour", values="minutes", aggfunc="sum").reindex(
        columns=range(24)).fillna(0.0) / 60.0
    hours = FC.complete_days(hh, first, last)
    return total, channels, hours


@_asset("viewing_forecast", ["daily_viewing", "channel_rating", "hourly_activity"],
        "The next 7 days of total viewing hours (in-day clock), per-channel hours (top channels) and the hourly load "
        "profile (average concurrent viewers per clock hour), from the history: seasonal naive (same weekday last "
        "week) vs a calendar ridge regression (trend + day-of-week, numpy least squares); backtest on the last "
        "held-out week with both MAPEs and `beats_baseline`. Rows to Hive table forecast_daily (dt, series, kind, "
        "model, hours).")
def viewing_forecast(context: dg.AssetExecutionContext, config: ForecastConfig, hive: HiveResource):
    cat = hive.catalog()
    days = window(cat, "daily_viewing", config)
    need = FC.MIN_MODEL_DAYS + config.horizon
    if len(days) < need:
        raise dg.Failure(f"the forecast needs {need} days (history {FC.MIN_MODEL_DAYS} + held-out {config.horizon}); "
                         f"the window has {len(days)}")
    total, channels, hours = forecast_inputs(cat, days, config.top_channels)
    h = config.horizon
    bt_total = FC.backtest(total["total"], h)
    bt_channels = FC.backtest_many(channels, h)
    bt_hours = FC.backtest_many(hours, h)
    err_ch, err_hr = FC.pooled_errors(bt_channels), FC.pooled_errors(bt_hours)
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
    summary = (f"**Viewing forecast**, history {span(days)}, horizon {h} days.\n\n"
               f"Backtest on the held-out week {act.index[-h]:%Y-%m-%d}..{act.index[-1]:%Y-%m-%d} (MAPE):\n\n"
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
