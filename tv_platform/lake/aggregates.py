"""Daily aggregates of viewing sessions — pure functions of a sessions DataFrame and the day.

Every builder takes the rows of ``viewing_sessions`` (columns of tables.SESSION_COLUMNS + dt) for day D and, where
the definition needs it, D-1 (sessions started the evening before that run into D), and returns a DataFrame whose
columns and types are exactly the declared ones of its table (tables.py) plus ``dt`` = D.

Two clocks (docs/lake.md):

* **by start day** — a session counts, whole, on the day it started (the seed's definition: ``to_date(time_start)``
  and ``unix_timestamp(time_end) - unix_timestamp(time_start)``). Views, viewers, the channel rating, the duration
  histogram and ``hours_by_start`` use it.
* **in day** — only the seconds actually watched inside the calendar day [D 00:00, D+1 00:00) count; a session
  crossing midnight is split between the two days. ``hours_in_day``, hourly activity, the channel × weekday × hour
  heatmap and the users' minutes in day use it, built from :func:`hour_slices`.
"""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tv_platform.lake.sessions import as_date, ntz
from tv_platform.lake.tables import (
    CHANNEL_RATING_COLUMNS,
    CHANNEL_WEEKDAY_HOUR_COLUMNS,
    DAILY_VIEWING_COLUMNS,
    DURATION_HISTOGRAM_COLUMNS,
    HOURLY_ACTIVITY_COLUMNS,
    USER_ACTIVITY_COLUMNS,
    Columns,
)

DAY_S = 86_400
HOUR_S = 3_600
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
SEGMENTS = ("night", "morning", "afternoon", "evening")
"""Time-of-day segments: 00–06, 06–12, 12–18, 18–24 (segment = hour div 6)."""

DURATION_BUCKETS: list[tuple[str, int, int | None]] = [
    ("0s", 0, 1),
    ("<1m", 1, 60),
    ("1-5m", 60, 300),
    ("5-15m", 300, 900),
    ("15-30m", 900, 1_800),
    ("30-60m", 1_800, 3_600),
    ("1-2h", 3_600, 7_200),
    ("2-3h", 7_200, 10_800),
    ("3-4h", 10_800, 14_400),
    ("4-8h", 14_400, 28_800),
    ("8h+", 28_800, None),
]
"""(label, lower_s inclusive, upper_s exclusive or None): a session of duration d falls in lower_s <= d < upper_s."""


def _day(day) -> str:
    return as_date(day).isoformat()


def _typed(frame: DataFrame, columns: Columns, day) -> DataFrame:
    """Select the declared columns in order, cast to their declared types, and append dt."""
    return frame.select(*[F.col(c).cast(t.lower()).alias(c) for c, t in columns],
                        F.lit(_day(day)).cast("string").alias("dt"))


def _started(sessions: DataFrame, day) -> DataFrame:
    return sessions.where(F.col("dt") == _day(day))


def day_overlap(sessions: DataFrame, day) -> DataFrame:
    """The sessions (started on D-1 or D) that overlap calendar day D, one row each, with ``start_s``/``end_s`` (start
    and end in seconds from D 00:00 — negative for a session started the day before, beyond 86 400 for one ending
    after midnight), ``in_s``/``out_s`` (the part inside D: max(start_s, 0) .. min(end_s, 86 400)) and ``in_day_s``
    (its length). A zero-length session overlaps D if its instant is in D; a session ending exactly at D 00:00 does
    not."""
    d = as_date(day)
    midnight = F.lit(d).cast("timestamp_ntz")
    s0 = F.timestamp_diff("SECOND", midnight, ntz("time_start"))
    e0 = F.timestamp_diff("SECOND", midnight, ntz("time_end"))
    base = sessions.where(F.col("dt").between((d - timedelta(days=1)).isoformat(), d.isoformat())).select(
        "session_id", "user_id", "user_name", "channel_id", "channel_name", "time_start", "time_end", "duration_s",
        "is_zero_length", "dt", s0.alias("start_s"), e0.alias("end_s"),
    )
    start_s, end_s = F.col("start_s"), F.col("end_s")
    overlaps = ((end_s > start_s) & (end_s > 0) & (start_s < DAY_S)) | (
        (end_s == start_s) & (start_s >= 0) & (start_s < DAY_S))
    return (
        base.where(overlaps)
        .withColumn("in_s", F.greatest(start_s, F.lit(0)))
        .withColumn("out_s", F.least(end_s, F.lit(DAY_S)))
        .withColumn("in_day_s", F.col("out_s") - F.col("in_s"))
    )


def hour_slices(sessions: DataFrame, day) -> DataFrame:
    """The parts of sessions watched inside calendar day D, one row per (session, hour of D it overlaps).

    Columns: those of :func:`day_overlap`, plus ``hour`` (0–23) and ``overlap_s`` (seconds of [start, end) inside
    [hour, hour + 1)). A zero-length session gets one row in the hour of its instant with ``overlap_s`` 0; a session
    ending exactly at D 00:00 has no row. Only sessions started on D-1 or D are sliced.
    """
    s, e = F.col("in_s"), F.col("out_s")
    first_hour = F.floor(s / HOUR_S).cast("int")
    last_hour = F.when(e > s, (F.ceil(e / HOUR_S) - 1).cast("int")).otherwise(first_hour)
    sliced = day_overlap(sessions, day).withColumn("hour", F.explode(F.sequence(first_hour, last_hour)))
    hour_start = F.col("hour").cast("bigint") * HOUR_S
    overlap = F.greatest(F.least(e, hour_start + HOUR_S) - F.greatest(s, hour_start), F.lit(0))
    return sliced.withColumn("overlap_s", overlap.cast("bigint"))


def _sum0(column: Column | str) -> Column:
    return F.coalesce(F.sum(column), F.lit(0))


def daily_viewing(sessions: DataFrame, day) -> DataFrame:
    """One row for day D.

    views / viewers: sessions started on D and their distinct users (the seed's count_views);
    active_users: distinct users who watched inside D (including sessions carried over from D-1);
    hours_by_start: whole length of the sessions started on D (the seed's sum_time);
    hours_in_day: seconds watched inside D by any session (started D or D-1);
    hours_after_day: what sessions started on D watched after D ended (hours_by_start minus their in-day part);
    hours_carried_in: what sessions started on D-1 watched inside D.
    So hours_in_day = hours_by_start - hours_after_day + hours_carried_in.
    Needs the sessions of D-1 and D.
    """
    d = _day(day)
    started = _started(sessions, d).agg(
        F.count(F.lit(1)).alias("views"),
        F.countDistinct("user_id").alias("viewers"),
        _sum0("duration_s").alias("by_start_s"),
        _sum0(F.col("is_zero_length").cast("int")).alias("zero_length_views"),
        _sum0(F.col("crosses_midnight").cast("int")).alias("sessions_crossing_midnight"),
    )
    slices = day_overlap(sessions, d).agg(
        F.countDistinct("user_id").alias("active_users"),
        _sum0("in_day_s").alias("in_day_s"),
        _sum0(F.when(F.col("dt") == d, F.col("in_day_s"))).alias("in_day_started_s"),
        _sum0(F.when(F.col("dt") < d, F.col("in_day_s"))).alias("carried_in_s"),
    )
    out = started.crossJoin(slices).select(
        "views", "viewers", "active_users",
        (F.col("by_start_s") / 3600.0).alias("hours_by_start"),
        (F.col("in_day_s") / 3600.0).alias("hours_in_day"),
        ((F.col("by_start_s") - F.col("in_day_started_s")) / 3600.0).alias("hours_after_day"),
        (F.col("carried_in_s") / 3600.0).alias("hours_carried_in"),
        "sessions_crossing_midnight", "zero_length_views",
        F.when(F.col("views") > 0, F.col("by_start_s") / 60.0 / F.col("views")).alias("avg_view_minutes"),
    )
    return _typed(out, DAILY_VIEWING_COLUMNS, d)


def channel_rating(sessions: DataFrame, day) -> DataFrame:
    """Per channel, sessions started on D (the seed's channel rating, by start day).

    hours, views, viewers (distinct users); hours_share = channel hours / all hours × 100; viewers_share = channel
    viewers / Σ channels' viewers × 100 (shares of the audience's channel choices, summing to 100 like the seed's
    rating table); reach_pct = channel viewers / distinct viewers of the day × 100; avg_view_minutes; rank by hours
    (then views, then channel_id), 1 = most watched. Channels without sessions that day have no row.
    """
    d = _day(day)
    started = _started(sessions, d)
    per = started.groupBy("channel_id").agg(
        F.max("channel_name").alias("channel_name"),
        _sum0("duration_s").alias("seconds"),
        F.count(F.lit(1)).alias("views"),
        F.countDistinct("user_id").alias("viewers"),
    )
    totals = started.agg(_sum0("duration_s").alias("total_s"), F.countDistinct("user_id").alias("day_viewers"))
    everything = Window.partitionBy(F.lit(0))
    ranking = Window.partitionBy(F.lit(0)).orderBy(F.col("seconds").desc(), F.col("views").desc(),
                                                   F.col("channel_id").asc_nulls_last())
    out = (
        per.crossJoin(totals)
        .withColumn("sum_viewers", F.sum("viewers").over(everything))
        .select(
            F.row_number().over(ranking).alias("rank"),
            "channel_id", "channel_name",
            (F.col("seconds") / 3600.0).alias("hours"),
            "views", "viewers",
            F.when(F.col("total_s") > 0, F.col("seconds") * 100.0 / F.col("total_s")).otherwise(0.0)
            .alias("hours_share"),
            F.when(F.col("sum_viewers") > 0, F.col("viewers") * 100.0 / F.col("sum_viewers")).otherwise(0.0)
            .alias("viewers_share"),
            F.when(F.col("day_viewers") > 0, F.col("viewers") * 100.0 / F.col("day_viewers")).otherwise(0.0)
            .alias("reach_pct"),
            (F.col("seconds") / 60.0 / F.col("views")).alias("avg_view_minutes"),
        )
    )
    return _typed(out, CHANNEL_RATING_COLUMNS, d)


def hourly_activity(sessions: DataFrame, day) -> DataFrame:
    """24 rows (hours 0–23 of D, zeros included), from :func:`hour_slices` — clipped to the hour, unlike the seed's
    ``generate_series(hour(start), hour(end))`` which counted every touched hour as a view and wrapped at midnight.

    sessions_active: sessions with any time in the hour (a zero-length one counts in the hour of its instant);
    sessions_started: sessions started on D in that hour; viewers: distinct users active; minutes: minutes watched
    inside the hour; avg_concurrent: minutes / 60, the average number of simultaneous viewers. Needs D-1 and D.
    """
    d = _day(day)
    slices = hour_slices(sessions, d)
    per_hour = slices.groupBy("hour").agg(
        F.count(F.lit(1)).alias("sessions_active"),
        _sum0(F.when((F.col("dt") == d) & (F.floor(F.col("start_s") / HOUR_S) == F.col("hour")), 1)
              ).alias("sessions_started"),
        F.countDistinct("user_id").alias("viewers"),
        _sum0("overlap_s").alias("seconds"),
    )
    hours = sessions.sparkSession.range(24).select(F.col("id").cast("int").alias("hour"))
    out = hours.join(per_hour, "hour", "left").select(
        "hour",
        F.coalesce("sessions_active", F.lit(0)).alias("sessions_active"),
        F.coalesce("sessions_started", F.lit(0)).alias("sessions_started"),
        F.coalesce("viewers", F.lit(0)).alias("viewers"),
        (F.coalesce("seconds", F.lit(0)) / 60.0).alias("minutes"),
        (F.coalesce("seconds", F.lit(0)) / 3600.0).alias("avg_concurrent"),
    ).orderBy("hour")
    return _typed(out, HOURLY_ACTIVITY_COLUMNS, d)


def channel_weekday_hour(sessions: DataFrame, day) -> DataFrame:
    """Minutes watched per channel and hour of D (clipped to the hour, from :func:`hour_slices`), tagged with D's ISO
    weekday (1 = Monday) — the cells of a channel × weekday × hour popularity heatmap; a week or a quarter is a
    ``SUM(minutes) … GROUP BY weekday, hour, channel`` over partitions. Only cells with activity have rows.
    sessions_active and viewers are as in hourly_activity, per channel. Needs D-1 and D."""
    d = as_date(day)
    slices = hour_slices(sessions, d)
    out = slices.groupBy("channel_id", "hour").agg(
        F.max("channel_name").alias("channel_name"),
        (_sum0("overlap_s") / 60.0).alias("minutes"),
        F.count(F.lit(1)).alias("sessions_active"),
        F.countDistinct("user_id").alias("viewers"),
    ).select(
        F.lit(d.isoweekday()).alias("weekday"),
        F.lit(WEEKDAYS[d.weekday()]).alias("weekday_name"),
        "hour", "channel_id", "channel_name", "minutes", "sessions_active", "viewers",
    )
    return _typed(out, CHANNEL_WEEKDAY_HOUR_COLUMNS, d)


def duration_bucket(duration_s: Column) -> Column:
    """Index into DURATION_BUCKETS of a duration in seconds."""
    expr = None
    for i, (_, lower, upper) in enumerate(DURATION_BUCKETS):
        cond = duration_s >= lower if upper is None else (duration_s >= lower) & (duration_s < upper)
        expr = F.when(cond, F.lit(i)) if expr is None else expr.when(cond, F.lit(i))
    return expr


def duration_histogram(sessions: DataFrame, day) -> DataFrame:
    """Sessions started on D by length bucket (DURATION_BUCKETS; every bucket present, zeros included): sessions,
    their hours, and sessions_share (% of the day's sessions). Bucket 0 is the zero-length sessions."""
    d = _day(day)
    started = _started(sessions, d)
    counted = started.groupBy(duration_bucket(F.col("duration_s")).alias("bucket_order")).agg(
        F.count(F.lit(1)).alias("sessions"), _sum0("duration_s").alias("seconds"))
    buckets = sessions.sparkSession.createDataFrame(
        [(i, label, lower, upper) for i, (label, lower, upper) in enumerate(DURATION_BUCKETS)],
        schema="bucket_order int, bucket string, lower_s bigint, upper_s bigint",
    )
    total = Window.partitionBy(F.lit(0))
    out = (
        buckets.join(counted, "bucket_order", "left")
        .select(
            "bucket_order", "bucket", "lower_s", "upper_s",
            F.coalesce("sessions", F.lit(0)).alias("sessions"),
            (F.coalesce("seconds", F.lit(0)) / 3600.0).alias("hours"),
        )
        .withColumn("_total", F.sum("sessions").over(total))
        .withColumn("sessions_share",
                    F.when(F.col("_total") > 0, F.col("sessions") * 100.0 / F.col("_total")).otherwise(0.0))
        .orderBy("bucket_order")
    )
    return _typed(out, DURATION_HISTOGRAM_COLUMNS, d)


def user_activity(sessions: DataFrame, day) -> DataFrame:
    """One row per user active in D — any session overlapping the calendar day (including a zero-length one and a
    session carried over from D-1); the number of rows is the day's active users.

    sessions: sessions the user started on D; channels: distinct channels watched inside D; minutes_by_start: whole
    length of the sessions started on D; minutes_in_day: minutes watched inside D; night/morning/afternoon/evening
    minutes: inside D, per segment (00–06, 06–12, 12–18, 18–24); segment: the segment with the most minutes (ties: the
    earlier one; a user with only zero-length sessions gets the segment of their instant); first_start / last_end:
    earliest start and latest end of the sessions active in D (may fall on D-1 / D+1). Needs D-1 and D."""
    d = _day(day)
    seg_s = DAY_S // len(SEGMENTS)
    s, e = F.col("in_s"), F.col("out_s")
    aggs = [
        F.max("user_name").alias("user_name"),
        F.count(F.when(F.col("dt") == d, 1)).alias("sessions"),
        _sum0(F.when(F.col("dt") == d, F.col("duration_s"))).alias("by_start_s"),
        F.countDistinct("channel_id").alias("channels"),
        _sum0("in_day_s").alias("in_day_s"),
        F.min("time_start").alias("first_start"),
        F.max("time_end").alias("last_end"),
    ]
    for i, name in enumerate(SEGMENTS):
        lo, hi = i * seg_s, (i + 1) * seg_s
        part = F.greatest(F.least(e, F.lit(hi)) - F.greatest(s, F.lit(lo)), F.lit(0))
        # a segment "has" a session if some of it is watched there, or a zero-length session happened there
        present = (part > 0) | ((e == s) & (s >= lo) & (s < hi))
        aggs.append(_sum0(part).alias(f"{name}_s"))
        aggs.append(F.max(F.when(present, F.lit(1))).alias(f"{name}_present"))
    active = day_overlap(sessions, d).groupBy("user_id").agg(*aggs)
    ranked = [F.when(F.col(f"{n}_present") == 1, F.col(f"{n}_s")).otherwise(F.lit(-1)) for n in SEGMENTS]
    best = F.greatest(*ranked)
    segment = F.when(ranked[0] == best, F.lit(SEGMENTS[0]))
    for n, r in zip(SEGMENTS[1:], ranked[1:]):
        segment = segment.when(r == best, F.lit(n))
    out = active.select(
        "user_id", "user_name", "sessions", "channels",
        (F.col("by_start_s") / 60.0).alias("minutes_by_start"),
        (F.col("in_day_s") / 60.0).alias("minutes_in_day"),
        *[(F.col(f"{n}_s") / 60.0).alias(f"{n}_minutes") for n in SEGMENTS],
        segment.alias("segment"),
        "first_start", "last_end",
    )
    return _typed(out, USER_ACTIVITY_COLUMNS, d)


BUILDERS = {
    "daily_viewing": daily_viewing,
    "channel_rating": channel_rating,
    "hourly_activity": hourly_activity,
    "channel_weekday_hour": channel_weekday_hour,
    "duration_histogram": duration_histogram,
    "user_activity": user_activity,
}
"""Aggregate table name -> builder(sessions, day)."""

NEEDS_PREVIOUS_DAY = {"daily_viewing", "hourly_activity", "channel_weekday_hour", "user_activity"}
"""Builders that read the sessions of D-1 as well (sessions crossing into D)."""
