"""Viewing attributed to programmes — pure Spark functions of DataFrames (tested on hand-made inputs).

Day D is **broadcast day D** (lake/calendar.py: from D at ``TVP_BROADCAST_DAY_START`` to that time on D+1; ``00:00``
= the calendar day), like the lake's aggregates: it reads the sessions of calendar days D-1..D+1 and the guide of
calendar days D and D+1 (a programme across midnight is in both, clipped, with one id: it is one airing again).

:func:`attribute` splits every session at programme boundaries. Sessions are first cut into their parts inside each
clock-hour piece of D (:func:`tv_platform.lake.aggregates.hour_slices`), the guide into the pieces each programme
overlaps; the two meet in an equi-join on (channel, piece) with the interval condition
``programme.start < piece.end AND programme.end > piece.start`` — a range join that never compares a piece with
programmes of other hours. Each piece lies inside one hour and the guide partitions the day, so the pieces'
intersections with programmes partition each session's time in D exactly: minutes are conserved. A zero-length
session is attributed (0 s) to the programme on screen at its instant; a session on a channel without any guide gets
one row per hour-piece on a pseudo programme ``<channel>-none`` (kind ``unknown``), so nothing is dropped.

All seconds are **real** seconds from the start of D in the operator's zone (TVP_TIMEZONE): a day across a DST change
is 23 or 25 hours long, and the guide's times, like the sessions', are wall-clock times converted to that axis
(``watch_start`` / ``watch_end`` are converted back to the wall clock).
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tv_platform.epg import tables as ET
from tv_platform.epg.guide import GAP_TITLE
from tv_platform.lake.aggregates import WEEKDAYS, _cal, _day_start, hour_bounds, hour_slices
from tv_platform.lake.sessions import as_date, elapsed_s, instant

TOP_N = 10


def _secs(column: str, day, cal=None) -> Column:
    """Real seconds from the start of broadcast day ``day`` to the wall-clock time ``column``."""
    return elapsed_s(_day_start(_cal(cal), day), column)


def _at(seconds: Column, day, cal=None) -> Column:
    """The wall-clock time (TIMESTAMP_NTZ, operator's zone) ``seconds`` real seconds after the start of ``day``."""
    from tv_platform.dates import zone_name

    name = zone_name()
    utc = F.timestamp_add("SECOND", seconds, instant(_day_start(_cal(cal), day)))
    return utc if name == "UTC" else F.convert_timezone(F.lit("UTC"), F.lit(name), utc)


def _typed(frame: DataFrame, name: str, day) -> DataFrame:
    return frame.select(*[F.col(c).cast(t.lower()).alias(c) for c, t in ET.DERIVED_TABLES[name]],
                        F.lit(as_date(day).isoformat()).alias("dt"))


def guide_of_day(guide: DataFrame, day, cal=None) -> DataFrame:
    """The guide rows overlapping broadcast day D, one per airing (the clipped halves of a programme across midnight,
    one in each calendar day's guide, merged by id), with ``g_start_s``/``g_end_s`` clipped to [0, the day's real
    length]; empty strings → NULL. ``guide``: rows of calendar days D and D+1."""
    cal = _cal(cal)
    day_s = cal.day_seconds(day)
    whole = guide.groupBy("channel_id", "programme_id").agg(
        F.first(F.coalesce(F.col("title"), F.lit("")), ignorenulls=True).alias("title"),
        F.first(F.coalesce(F.col("kind"), F.lit("unknown")), ignorenulls=True).alias("kind"),
        F.first("genre", ignorenulls=True).alias("genre"),
        F.first(F.when(F.col("series") != "", F.col("series")), ignorenulls=True).alias("series"),
        F.first(F.when(F.col("episode") > 0, F.col("episode")), ignorenulls=True).alias("episode"),
        F.min("start").alias("start"), F.max("end").alias("end"))
    s, e = _secs("start", day, cal), _secs("end", day, cal)
    return (
        whole.select(
            "channel_id", "programme_id", "title", "kind", "genre", "series", "episode",
            F.col("start").alias("programme_start"), F.col("end").alias("programme_end"),
            F.greatest(s, F.lit(0)).alias("g_start_s"), F.least(e, F.lit(day_s)).alias("g_end_s"),
        )
        .where(F.col("g_end_s") > F.col("g_start_s"))
    )


def _pieces(spark, day, cal) -> DataFrame:
    """The clock-hour pieces of broadcast day D: (hour, seg_lo, seg_hi) in real seconds from its start."""
    return spark.createDataFrame(hour_bounds(day, cal), "hour int, seg_lo bigint, seg_hi bigint")


def attribute(sessions: DataFrame, guide: DataFrame, day, cal=None) -> DataFrame:
    """One row per (session, programme) with the seconds of the session watched during the programme inside broadcast
    day D (columns of ``programme_viewing`` + dt). ``sessions``: rows of viewing_sessions of calendar days D-1..D+1;
    ``guide``: the guide rows of calendar days D and D+1 (``programme_guide`` columns)."""
    cal = _cal(cal)
    d = as_date(day)
    lo, hi = F.col("seg_lo"), F.col("seg_hi")
    pieces = hour_slices(sessions, d, cal).select(
        "session_id", "user_id", "channel_id", "channel_name", "seg_lo", F.col("dt").alias("session_dt"),
        F.greatest(F.col("in_s"), lo).alias("p_s"),
        F.when(F.col("out_s") > F.col("in_s"), F.least(F.col("out_s"), hi)).otherwise(F.col("in_s")).alias("p_e"),
    )
    g = guide_of_day(guide, d, cal)
    g_hours = g.crossJoin(F.broadcast(_pieces(sessions.sparkSession, d, cal))).where(
        (F.col("g_start_s") < hi) & (F.col("g_end_s") > lo)).drop("hour", "seg_hi")
    p, q = pieces.alias("p"), g_hours.alias("g")
    cond = (
        (F.col("p.channel_id") == F.col("g.channel_id")) & (F.col("p.seg_lo") == F.col("g.seg_lo"))
        & (((F.col("g.g_start_s") < F.col("p.p_e")) & (F.col("g.g_end_s") > F.col("p.p_s")))
           | ((F.col("p.p_s") == F.col("p.p_e")) & (F.col("g.g_start_s") <= F.col("p.p_s"))
              & (F.col("p.p_s") < F.col("g.g_end_s"))))
    )
    from datetime import timedelta

    lo_wall, hi_wall = _day_start(cal, d), _day_start(cal, d + timedelta(days=1))
    matched = F.col("g.programme_id").isNotNull()
    ws = F.when(matched, F.greatest(F.col("p.p_s"), F.col("g.g_start_s"))).otherwise(F.col("p.p_s"))
    we = F.when(matched, F.least(F.col("p.p_e"), F.col("g.g_end_s"))).otherwise(F.col("p.p_e"))
    joined = p.join(q, cond, "left").select(
        "p.session_id", "p.user_id", "p.channel_id", "p.channel_name", "p.session_dt",
        F.coalesce(F.col("g.programme_id"), F.concat(F.col("p.channel_id").cast("string"), F.lit("-none")))
        .alias("programme_id"),
        F.coalesce(F.col("g.title"), F.lit(GAP_TITLE)).alias("title"),
        F.coalesce(F.col("g.kind"), F.lit("unknown")).alias("kind"),
        F.col("g.genre").alias("genre"), F.col("g.series").alias("series"), F.col("g.episode").alias("episode"),
        F.coalesce(F.col("g.programme_start"), lo_wall.cast("timestamp"))
        .alias("programme_start"),
        F.coalesce(F.col("g.programme_end"), hi_wall.cast("timestamp"))
        .alias("programme_end"),
        ws.alias("ws"), we.alias("we"),
    )
    keys = ["session_id", "programme_id"]
    out = joined.groupBy(*keys).agg(
        *[F.first(c, ignorenulls=True).alias(c) for c in
          ("user_id", "channel_id", "channel_name", "session_dt", "title", "kind", "genre", "series", "episode",
           "programme_start", "programme_end")],
        F.min("ws").alias("ws"), F.max("we").alias("we"), F.sum(F.col("we") - F.col("ws")).alias("seconds"),
    )
    out = out.withColumn("watch_start", _at(F.col("ws"), d, cal)).withColumn("watch_end", _at(F.col("we"), d, cal)) \
        .withColumn("minutes", F.col("seconds") / 60.0)
    return _typed(out, "programme_viewing", d)


def audience_integral(viewing: DataFrame, guide: DataFrame, day, cal=None) -> DataFrame:
    """``(t, total_before_s)`` at every instant t (real seconds of broadcast day D) where something starts or ends: the
    viewer-seconds of all channels watched in [0, t). All viewing during [a, b) = total_before(b) − total_before(a).
    The events are aggregated per second first (≤ one row per second of the day), so the ordered window is small."""
    cal = _cal(cal)
    ws, we = _secs("watch_start", day, cal), _secs("watch_end", day, cal)
    watched = viewing.where(F.col("seconds") > 0)
    g = guide_of_day(guide, day, cal)
    events = (
        watched.select(ws.alias("t"), F.lit(1).alias("d"))
        .unionByName(watched.select(we.alias("t"), F.lit(-1).alias("d")))
        .unionByName(g.select(F.col("g_start_s").alias("t"), F.lit(0).alias("d")))
        .unionByName(g.select(F.col("g_end_s").alias("t"), F.lit(0).alias("d")))
        .unionByName(viewing.sparkSession.createDataFrame([(0, 0), (cal.day_seconds(day), 0)], "t bigint, d int"))
    )
    w = Window.partitionBy(F.lit(0)).orderBy("t")  # one window on purpose (small, see above), said explicitly
    pts = events.groupBy(F.col("t").cast("bigint").alias("t")).agg(F.sum("d").alias("delta"))
    pts = pts.withColumn("active", F.sum("delta").over(w.rowsBetween(Window.unboundedPreceding, 0)))
    pts = pts.withColumn("seg", F.col("active") * F.coalesce(F.lead("t").over(w) - F.col("t"), F.lit(0)))
    return pts.select("t", F.coalesce(F.sum("seg").over(w.rowsBetween(Window.unboundedPreceding, -1)), F.lit(0))
                      .alias("total_before_s"))


def programme_popularity(viewing: DataFrame, guide: DataFrame, day, channels: DataFrame | None = None,
                         cal=None) -> DataFrame:
    """Per programme on screen in D (every programme of the guide, zeros included, plus the pseudo programmes of
    channels without a guide): sessions, viewers (distinct users), minutes watched, ``avg_minute_audience`` (minutes
    / duration: the average number of viewers at a minute of it), ``channel_share_pct`` (% of the channel's minutes
    in D), ``tv_share_pct`` (% of all viewing, every channel, during the programme) and ``rank`` (by minutes)."""
    cal = _cal(cal)
    d = as_date(day)
    watched = viewing.groupBy("programme_id").agg(
        F.count("*").alias("sessions"), F.countDistinct("user_id").alias("viewers"),
        F.sum("seconds").alias("seconds"), F.first("channel_name", ignorenulls=True).alias("viewed_channel_name"))
    g = guide_of_day(guide, d, cal)
    pseudo = viewing.where(F.col("programme_id").endswith("-none")).groupBy("programme_id").agg(
        *[F.first(c).alias(c) for c in ("channel_id", "title", "kind", "genre", "series", "episode",
                                        "programme_start", "programme_end")],
        F.lit(0).cast("bigint").alias("g_start_s"), F.lit(cal.day_seconds(d)).cast("bigint").alias("g_end_s"))
    progs = g.unionByName(pseudo.select(*g.columns))
    x = progs.join(watched, "programme_id", "left")
    if channels is not None:
        x = x.join(channels.select("channel_id", F.col("channel_name").alias("ref_channel_name")), "channel_id", "left")
    else:
        x = x.withColumn("ref_channel_name", F.lit(None).cast("string"))
    integral = audience_integral(viewing, guide, d, cal)
    a, b = integral.alias("a"), integral.alias("b")
    x = (x.join(a, F.col("g_start_s") == F.col("a.t"), "left").join(b, F.col("g_end_s") == F.col("b.t"), "left")
         .withColumn("all_s", F.col("b.total_before_s") - F.col("a.total_before_s")))
    seconds = F.coalesce(F.col("seconds"), F.lit(0))
    duration = F.col("g_end_s") - F.col("g_start_s")
    channel_s = F.sum(seconds).over(Window.partitionBy("channel_id"))
    out = x.select(
        "channel_id", F.coalesce(F.col("viewed_channel_name"), F.col("ref_channel_name")).alias("channel_name"),
        "programme_id", "title", "kind", "genre", "series", "episode", "programme_start", "programme_end",
        (duration / 60.0).alias("duration_min"),
        F.coalesce(F.col("sessions"), F.lit(0)).alias("sessions"), F.coalesce(F.col("viewers"), F.lit(0)).alias("viewers"),
        (seconds / 60.0).alias("minutes"), (seconds / duration).alias("avg_minute_audience"),
        F.when(channel_s > 0, 100.0 * seconds / channel_s).alias("channel_share_pct"),
        F.when(F.col("all_s") > 0, 100.0 * seconds / F.col("all_s")).alias("tv_share_pct"),
    )
    out = out.withColumn("rank", F.row_number().over(Window.orderBy(F.desc("minutes"), F.desc("viewers"),
                                                                    "channel_id", "programme_start")))
    return _typed(out, "programme_popularity", d)


def series_popularity(viewing: DataFrame, popularity: DataFrame, day) -> DataFrame:
    """Per recurring strand (``series``) on screen in D: channels and airings, airtime, sessions, viewers (distinct
    over all its airings), minutes, ``avg_minute_audience`` (minutes / airtime), ``tv_share_pct`` (its minutes / all
    viewing during its airings) and ``rank`` by minutes."""
    d = as_date(day)
    pop = popularity.where(F.col("series").isNotNull())
    air = pop.groupBy("series", "kind").agg(
        F.first("genre", ignorenulls=True).alias("genre"), F.countDistinct("channel_id").alias("channels"),
        F.count("*").alias("airings"), F.sum("duration_min").alias("airtime_min"), F.sum("minutes").alias("minutes"),
        F.sum(F.when(F.col("tv_share_pct") > 0, F.col("minutes") * 100.0 / F.col("tv_share_pct")).otherwise(0.0))
        .alias("all_min"))
    who = viewing.where(F.col("series").isNotNull()).groupBy("series", "kind").agg(
        F.count("*").alias("sessions"), F.countDistinct("user_id").alias("viewers"))
    out = air.join(who, ["series", "kind"], "left").select(
        "series", "kind", "genre", "channels", "airings", "airtime_min",
        F.coalesce(F.col("sessions"), F.lit(0)).alias("sessions"), F.coalesce(F.col("viewers"), F.lit(0)).alias("viewers"),
        "minutes", (F.col("minutes") / F.col("airtime_min")).alias("avg_minute_audience"),
        F.when(F.col("all_min") > 0, 100.0 * F.col("minutes") / F.col("all_min")).alias("tv_share_pct"),
    )
    out = out.withColumn("rank", F.row_number().over(Window.orderBy(F.desc("minutes"), F.desc("viewers"), "series",
                                                                    "kind")))
    return _typed(out, "series_popularity", d)


def series_weekday_hour(viewing: DataFrame, day, cal=None) -> DataFrame:
    """Heatmap cells of the strands: minutes of each series watched in each clock hour of broadcast day D (the
    attributed rows cut at the clock-hour pieces of D), ``avg_audience`` (minutes / 60), sessions and viewers active;
    the broadcast day's ISO weekday (with a 05:00 day, Saturday 01:30 is Friday's). Only cells with viewing time or a
    zero-length session."""
    cal = _cal(cal)
    d = as_date(day)
    ws, we = _secs("watch_start", d, cal), _secs("watch_end", d, cal)
    rows = viewing.where(F.col("series").isNotNull()).select("series", "kind", "session_id", "user_id",
                                                              ws.alias("ws"), we.alias("we"))
    lo, hi, a, b = F.col("seg_lo"), F.col("seg_hi"), F.col("ws"), F.col("we")
    sliced = rows.crossJoin(F.broadcast(_pieces(viewing.sparkSession, d, cal))).where(
        ((b > a) & (a < hi) & (b > lo)) | ((b == a) & (a >= lo) & (a < hi)))
    sliced = sliced.withColumn("s", F.greatest(F.least(b, hi) - F.greatest(a, lo), F.lit(0)))
    out = sliced.groupBy("series", "kind", "hour").agg(
        (F.sum("s") / 60.0).alias("minutes"), F.countDistinct("session_id").alias("sessions"),
        F.countDistinct("user_id").alias("viewers"))
    wd = d.isoweekday()
    out = out.withColumn("avg_audience", F.col("minutes") / 60.0).withColumn("weekday", F.lit(wd)) \
        .withColumn("weekday_name", F.lit(WEEKDAYS[wd - 1]))
    return _typed(out, "series_weekday_hour", d)


def top_programmes(popularity: DataFrame, series: DataFrame, day, n: int = TOP_N) -> DataFrame:
    """The day's charts: ``chart = 'programme'`` — the n programmes with most minutes (name = title, its channel and
    start); ``chart = 'series'`` — the n strands with most minutes (channel = the one where it was watched most,
    first_start = its first airing of the day)."""
    d = as_date(day)
    progs = popularity.where(F.col("rank") <= n).select(
        F.lit("programme").alias("chart"), "rank", F.col("title").alias("name"), "kind", "channel_name",
        F.col("programme_start").alias("first_start"), "minutes", "viewers", "avg_minute_audience", "tv_share_pct")
    best_channel = (popularity.where(F.col("series").isNotNull())
                    .groupBy("series", "kind", "channel_name").agg(F.sum("minutes").alias("m"),
                                                                   F.min("programme_start").alias("fs"))
                    .withColumn("r", F.row_number().over(Window.partitionBy("series", "kind")
                                                         .orderBy(F.desc("m"), "channel_name"))))
    first = popularity.where(F.col("series").isNotNull()).groupBy("series", "kind").agg(
        F.min("programme_start").alias("first_start"))
    top_series = (series.where(F.col("rank") <= n)
                  .join(best_channel.where(F.col("r") == 1).select("series", "kind", "channel_name"),
                        ["series", "kind"], "left")
                  .join(first, ["series", "kind"], "left")
                  .select(F.lit("series").alias("chart"), "rank", F.col("series").alias("name"), "kind",
                          "channel_name", "first_start", "minutes", "viewers", "avg_minute_audience", "tv_share_pct"))
    return _typed(progs.unionByName(top_series), "top_programmes", d)
