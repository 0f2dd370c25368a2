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

from tv_platform.lake.sessions import as_date, elapsed_s, ntz
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
    and end in seconds from D 00:00 — negative for a session started the day before, beyond the day's length for one
    ending after midnight), ``in_s``/``out_s`` (the part inside D: max(start_s, 0) .. min(end_s, day length)) and
    ``in_day_s`` (its length). Seconds are real time in the operator's zone: a DST day is 23 or 25 hours long
    (``day_seconds``). A zero-length session overlaps D if its instant is in D; a session ending exactly at D 00:00
    does not."""
    d = as_date(day)
    day_s = day_seconds(d)
    midnight = F.lit(d).cast("timestamp_ntz")
    s0 = elapsed_s(midnight, "time_start")
    e0 = elapsed_s(midnight, "time_end")
    base = sessions.where(F.col("dt").between((d - timedelta(days=1)).isoformat(), d.isoformat())).select(
        "session_id", "user_id", "user_name", "channel_id", "channel_name", "time_start", "time_end", "duration_s",
        "is_zero_length", "dt", s0.alias("start_s"), e0.alias("end_s"),
    )
    start_s, end_s = F.col("start_s"), F.col("end_s")
    overlaps = ((end_s > start_s) & (end_s > 0) & (start_s < day_s)) | (
        (end_s == start_s) & (start_s >= 0) & (start_s < day_s))
    return (
        base.where(overlaps)
        .withColumn("in_s", F.greatest(start_s, F.lit(0)))
        .withColumn("out_s", F.least(end_s, F.lit(day_s)))
        .withColumn("in_day_s", F.col("out_s") - F.col("in_s"))
    )


def day_seconds(day) -> int:
    """The length of ``day`` in the operator's zone, in seconds: 86 400, or 82 800 / 90 000 on a DST day."""
    from tv_platform.dates import day_hours

    return int(round(day_hours(day) * 3600))


def hour_bounds(day) -> list[tuple[int, int]]:
    """[start, end) of each clock hour 0–23 of ``day``, in real seconds from its midnight (operator's zone): hour h
    runs from h:00 to h+1:00 on the wall clock — none of it on the hour a spring DST change skips, two hours on the
    hour an autumn change repeats."""
    from tv_platform.dates import day_start_ms, timer_ms

    d = as_date(day)
    walls = [f"{d.isoformat()} {h:02d}:00:00" for h in range(24)]
    starts = [int(x) for x in timer_ms(walls)]
    ends = starts[1:] + [day_start_ms(d + timedelta(days=1))]
    base = day_start_ms(d)
    return [((a - base) // 1000, (b - base) // 1000) for a, b in zip(starts, ends)]


def hour_slices(sessions: DataFrame, day) -> DataFrame:
    """The parts of sessions watched inside calendar day D, one row per (session, hour of D it overlaps).

    Columns: those of :func:`day_overlap`, plus ``hour`` (0–23) and ``overlap_s`` (seconds of [start, end) inside
    [hour, hour + 1)). A zero-length session gets one row in the hour of its instant with ``overlap_s`` 0; a session
    ending exactly at D 00:00 has no row. Only sessions started on D-1 or D are sliced. On a DST day the hours are
    the wall clock's (``hour_bounds``: the skipped hour is empty, the repeated one two hours long).
    """
    s, e = F.col("in_s"), F.col("out_s")
    bounds = hour_bounds(day)
    if bounds != [(h * HOUR_S, (h + 1) * HOUR_S) for h in range(24)]:
        return _dst_hour_slices(sessions, day, bounds)
    first_hour = F.floor(s / HOUR_S).cast("int")
    last_hour = F.when(e > s, (F.ceil(e / HOUR_S) - 1).cast("int")).otherwise(first_hour)
    sliced = day_overlap(sessions, day).withColumn("hour", F.explode(F.sequence(first_hour, last_hour)))
    hour_start = F.col("hour").cast("bigint") * HOUR_S
    overlap = F.greatest(F.least(e, hour_start + HOUR_S) - F.greatest(s, hour_start), F.lit(0))
    return sliced.withColumn("overlap_s", overlap.cast("bigint"))


def _dst_hour_slices(sessions: DataFrame, day, bounds: list[tuple[int, int]]) -> DataFrame:
    """:func:`hour_slices` of a day whose hours are not all 3 600 s: each session against the 24 hours' bounds."""
    s, e = F.col("in_s"), F.col("out_s")
    hours = sessions.sparkSession.createDataFrame(
        [(h, lo, hi) for h, (lo, hi) in enumerate(bounds)], "hour int, hour_lo bigint, hour_hi bigint")
    lo, hi = F.col("hour_lo"), F.col("hour_hi")
    sliced = day_overlap(sessions, day).crossJoin(F.broadcast(hours)).where(
        ((e > s) & (s < hi) & (e > lo)) | ((e == s) & (s >= lo) & (s < hi)))
    overlap = F.greatest(F.least(e, hi) - F.greatest(s, lo), F.lit(0))
    return sliced.withColumn("overlap_s", overlap.cast("bigint")).drop("hour_lo", "hour_hi")


def started_in_hour(day) -> Column:
    """Whether a slice's session started in the slice's hour (``start_s`` against the hours of ``day``)."""
    bounds = hour_bounds(day)
    if bounds == [(h * HOUR_S, (h + 1) * HOUR_S) for h in range(24)]:
        return F.floor(F.col("start_s") / HOUR_S) == F.col("hour")
    lo = F.element_at(F.array(*[F.lit(b[0]) for b in bounds]), F.col("hour") + 1)
    hi = F.element_at(F.array(*[F.lit(b[1]) for b in bounds]), F.col("hour") + 1)
    return (F.col("start_s") >= lo) & (F.col("start_s") < hi)


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
        _sum0(F.when((F.col("dt") == d) & started_in_hour(d), 1)).alias("sessions_started"),
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


# ---------------------------------------------------------------------------------------------------------------------
# audience measures on the broadcast day (docs/measures.md)
# ---------------------------------------------------------------------------------------------------------------------
CREDIT_MIN_S = 30
"""A viewer's clock minute is credited only if the channel watched longest in it was watched at least this long."""

AUDIENCE_TABLES: dict[str, Columns] = {
    "audience_universe": [("user_id", "INT"), ("member", "STRING")],
    "audience_minutes": [("user_id", "INT"), ("channel_id", "INT"), ("minute", "INT"), ("daypart", "STRING"),
                         ("seconds", "INT"), ("programme_id", "STRING"), ("series", "STRING")],
    "audience_channel": [("daypart", "STRING"), ("channel_id", "INT"), ("channel_name", "STRING"),
                         ("weekday", "INT"), ("is_weekend", "BOOLEAN"), ("days", "INT"), ("universe", "BIGINT"),
                         ("period_minutes", "BIGINT"), ("minutes", "BIGINT"), ("all_minutes", "BIGINT"),
                         ("ama", "DOUBLE"), ("tvr_pct", "DOUBLE"), ("reach", "BIGINT"), ("reach_pct", "DOUBLE"),
                         ("share_pct", "DOUBLE"), ("ats_universe_min", "DOUBLE"), ("ats_viewer_min", "DOUBLE")],
    "audience_programme": [("programme_id", "STRING"), ("channel_id", "INT"), ("title", "STRING"),
                           ("series", "STRING"), ("programme_start", "TIMESTAMP"), ("programme_end", "TIMESTAMP"),
                           ("daypart", "STRING"), ("universe", "BIGINT"), ("airtime_min", "BIGINT"),
                           ("minutes", "BIGINT"), ("all_minutes", "BIGINT"), ("ama", "DOUBLE"), ("tvr_pct", "DOUBLE"),
                           ("reach", "BIGINT"), ("reach_pct", "DOUBLE"), ("share_pct", "DOUBLE"),
                           ("ats_universe_min", "DOUBLE"), ("ats_viewer_min", "DOUBLE")],
    "audience_series": [("series", "STRING"), ("daypart", "STRING"), ("airings", "BIGINT"), ("days", "INT"), ("universe", "BIGINT"),
                        ("airtime_min", "BIGINT"), ("minutes", "BIGINT"), ("all_minutes", "BIGINT"), ("ama", "DOUBLE"),
                        ("tvr_pct", "DOUBLE"), ("reach", "BIGINT"), ("reach_pct", "DOUBLE"), ("share_pct", "DOUBLE"),
                        ("ats_universe_min", "DOUBLE"), ("ats_viewer_min", "DOUBLE")],
}
"""The audience tables (dt appended), all per broadcast day: the universe's members, the credited minutes, and the
measures per channel × daypart, per programme airing and per series."""


def _audience_typed(frame: DataFrame, name: str, day) -> DataFrame:
    return _typed(frame, AUDIENCE_TABLES[name], day)


def _broadcast_secs(column: str, cal, day) -> Column:
    """Seconds from the start of broadcast day ``day`` to ``column`` (wall clock: built from the date, never from a
    client-side datetime, so no time zone of the client or the session enters)."""
    lo = F.timestamp_add("MINUTE", F.lit(cal.start), F.lit(as_date(day)).cast("timestamp_ntz"))
    return F.timestamp_diff("SECOND", lo, ntz(column))


def broadcast_overlap(sessions: DataFrame, cal, day) -> DataFrame:
    """The sessions overlapping broadcast day D ([D start, D+1 start), see lake/calendar.py), with ``in_s``/``out_s``:
    the part inside it in seconds from its start. Reads sessions started on D-1..D+1 (a session started on D+1 before
    the broadcast-day start belongs partly to D). A zero-length session overlaps if its instant lies in the day."""
    d = as_date(day)
    s, e = _broadcast_secs("time_start", cal, d), _broadcast_secs("time_end", cal, d)
    base = sessions.where(F.col("dt").between((d - timedelta(days=1)).isoformat(), (d + timedelta(days=1)).isoformat())
                          ).select("session_id", "user_id", "channel_id", "channel_name", s.alias("start_s"),
                                   e.alias("end_s"))
    start_s, end_s = F.col("start_s"), F.col("end_s")
    overlaps = ((end_s > start_s) & (end_s > 0) & (start_s < DAY_S)) | (
        (end_s == start_s) & (start_s >= 0) & (start_s < DAY_S))
    return (base.where(overlaps).withColumn("in_s", F.greatest(start_s, F.lit(0)))
            .withColumn("out_s", F.least(end_s, F.lit(DAY_S))))


def audience_universe(sessions: DataFrame, users: DataFrame, cal, day) -> DataFrame:
    """The universe of broadcast day D, one row per member: every subscriber of the reference table ``users``
    (``member = 'reference'``; the table carries no churn or activation dates, so every row is active) and every
    user with a session overlapping D who is not in it (``member = 'inferred'``, e.g. a new subscriber the reference
    extract does not hold yet). Its row count is the day's universe."""
    ref = users.select(F.col("user_id").cast("int").alias("user_id")).where(F.col("user_id").isNotNull()).distinct()
    seen = broadcast_overlap(sessions, cal, day).select(F.col("user_id").cast("int").alias("user_id")).distinct()
    inferred = seen.join(ref, "user_id", "left_anti").withColumn("member", F.lit("inferred"))
    out = ref.withColumn("member", F.lit("reference")).unionByName(inferred)
    return _audience_typed(out, "audience_universe", day)


def guide_minutes(guide: DataFrame, cal, day) -> DataFrame:
    """The programmes on screen in broadcast day D with the minutes they own: minute m belongs to the programme on
    screen at its first second (``first_minute`` <= m < ``end_minute``); ``airtime_min`` = their count (0: a programme
    shorter than a minute that holds no minute start). ``guide``: programme_guide rows of calendar days D and D+1."""
    a = F.ceil(_broadcast_secs("start", cal, day) / 60.0).cast("int")
    b = F.ceil(_broadcast_secs("end", cal, day) / 60.0).cast("int")
    lo, hi = F.lit(0), F.lit(DAY_S // 60)
    # a programme across midnight is in both calendar days' guides (clipped, same id): one airing again
    whole = guide.groupBy(F.col("channel_id").cast("int").alias("channel_id"), "programme_id").agg(
        F.first(F.coalesce(F.col("title"), F.lit("")), ignorenulls=True).alias("title"),
        F.first(F.when(F.col("series") != "", F.col("series")), ignorenulls=True).alias("series"),
        F.min("start").alias("start"), F.max("end").alias("end"))
    g = whole.select(
        "channel_id", "programme_id", "title", "series",
        F.col("start").alias("programme_start"), F.col("end").alias("programme_end"),
        F.greatest(F.least(a, hi), lo).alias("first_minute"), F.greatest(F.least(b, hi), lo).alias("end_minute"),
    )
    return (g.where((F.col("end_minute") > F.col("first_minute"))
                    | ((F.col("programme_end") > F.col("programme_start"))
                       & (_broadcast_secs("programme_start", cal, day) < DAY_S)
                       & (_broadcast_secs("programme_end", cal, day) > 0)))
            .withColumn("airtime_min", F.col("end_minute") - F.col("first_minute")))


def credited_minutes(sessions: DataFrame, cal, day, guide: DataFrame | None = None) -> DataFrame:
    """Minute crediting: one row per (viewer, clock minute of broadcast day D) credited to a channel.

    Each session is cut at the clock minutes of D; in each minute a viewer's seconds are summed per channel, and the
    minute goes to the channel watched longest in it (ties: the smaller channel_id), if that channel was watched at
    least :data:`CREDIT_MIN_S` seconds of it. So a zero-length session, and any viewing shorter than half a minute,
    credits nothing; two sessions of one viewer on one channel never credit a minute twice. ``seconds`` is the
    credited channel's seconds in the minute (≤ 60). With ``guide`` (programme_guide rows of D and D+1) each minute
    carries the programme on screen on that channel at the minute's first second and its series; a channel without a
    guide gets the pseudo programme ``<channel>-none``."""
    d = as_date(day)
    ov = broadcast_overlap(sessions, cal, d).where(F.col("out_s") > F.col("in_s"))
    s, e = F.col("in_s"), F.col("out_s")
    cut = ov.withColumn("minute", F.explode(F.sequence(F.floor(s / 60).cast("int"),
                                                       (F.ceil(e / 60) - 1).cast("int"))))
    ms = F.col("minute").cast("bigint") * 60
    cut = cut.withColumn("s", F.greatest(F.least(e, ms + 60) - F.greatest(s, ms), F.lit(0)))
    per = cut.groupBy("user_id", "minute", "channel_id").agg(F.least(F.sum("s"), F.lit(60)).alias("seconds"))
    best = Window.partitionBy("user_id", "minute").orderBy(F.desc("seconds"), F.asc("channel_id"))
    credited = (per.withColumn("_r", F.row_number().over(best))
                .where((F.col("_r") == 1) & (F.col("seconds") >= CREDIT_MIN_S)).drop("_r")
                .withColumn("daypart", cal.daypart_column(F.col("minute"))))
    if guide is None:
        out = credited.withColumn("programme_id", F.concat(F.col("channel_id").cast("string"), F.lit("-none"))) \
            .withColumn("series", F.lit(None).cast("string"))
    else:
        g = guide_minutes(guide, cal, d).select("channel_id", F.col("programme_id").alias("g_programme_id"),
                                                F.col("series").alias("g_series"), "first_minute", "end_minute")
        c, q = credited.alias("c"), g.alias("q")
        joined = c.join(q, (F.col("c.channel_id") == F.col("q.channel_id"))
                        & (F.col("c.minute") >= F.col("q.first_minute")) & (F.col("c.minute") < F.col("q.end_minute")),
                        "left")
        out = joined.select(
            "c.user_id", "c.channel_id", "c.minute", "c.daypart", "c.seconds",
            F.coalesce(F.col("q.g_programme_id"), F.concat(F.col("c.channel_id").cast("string"), F.lit("-none")))
            .alias("programme_id"),
            F.col("q.g_series").alias("series"))
    return _audience_typed(out, "audience_minutes", d)


def reached(minutes: DataFrame, keys: list[str], threshold: int) -> DataFrame:
    """Distinct (``keys``…, user_id) with at least ``threshold`` consecutive credited minutes within one broadcast day
    (``dt``) and one value of ``keys`` — the reach rule. Consecutive: minute numbers without a gap, on the same
    channel (``keys`` include channel_id or a programme of one channel)."""
    part = ["dt", "user_id", *keys]
    w = Window.partitionBy(*part).orderBy("minute")
    runs = (minutes.select(*part, "minute").withColumn("_run", F.col("minute") - F.row_number().over(w))
            .groupBy(*part, "_run").agg(F.count(F.lit(1)).alias("_len")))
    return runs.where(F.col("_len") >= int(threshold)).select("user_id", *keys).distinct()


def _ratios(minutes: Column, period: Column, period_universe: Column, reach: Column, universe: Column,
            everything: Column) -> list[Column]:
    """The measures from their sums (docs/measures.md): AMA, TVR %, reach %, share %, ATS per member and per viewer."""
    def div(a, b):
        return F.when(b > 0, a / b)

    return [div(minutes.cast("double"), period).alias("ama"),
            div(100.0 * minutes, period_universe).alias("tvr_pct"),
            reach.alias("reach"),
            div(100.0 * reach, universe).alias("reach_pct"),
            div(100.0 * minutes, everything).alias("share_pct"),
            div(minutes.cast("double"), universe).alias("ats_universe_min"),
            div(minutes.cast("double"), reach).alias("ats_viewer_min")]


def universe_sizes(universe: DataFrame) -> DataFrame:
    """(dt, universe) per day of a window of audience_universe rows."""
    return universe.groupBy("dt").agg(F.count(F.lit(1)).alias("universe"))


def channel_measures(minutes: DataFrame, universe: DataFrame, cal, threshold: int,
                     names: DataFrame | None = None) -> DataFrame:
    """Per (daypart, channel_id) over the days of ``universe`` (audience_universe rows; every day of the window must
    be there, a quiet day simply has no minutes): ``days``, ``universe`` (distinct members over the days),
    ``period_minutes`` (the daypart's minutes × days), credited ``minutes`` and the measures of :func:`_ratios` —
    AMA = minutes / period minutes, TVR = AMA as % of the universe (Σ over days of period minutes × that day's
    universe), reach (≥ ``threshold`` consecutive minutes), share = minutes / all channels' minutes in the daypart.
    Daypart ``all`` is the whole broadcast day. Every channel of ``names`` (channel_id, channel_name: the reference
    channels and the viewed ones) gets a row in every daypart, zeros included — so a sum over days of ``minutes`` /
    ``period_minutes`` in a warehouse is still the AMA of the whole span."""
    per_day = universe_sizes(universe)
    totals = per_day.agg(F.count(F.lit(1)).alias("days"), F.sum("universe").alias("universe_days"))
    members = universe.select("user_id").distinct().agg(F.count(F.lit(1)).alias("universe"))
    spark = minutes.sparkSession
    parts = spark.createDataFrame(list(cal.daypart_minutes().items()), "daypart string, day_minutes bigint")
    both = minutes.unionByName(minutes.withColumn("daypart", F.lit("all")))
    m = both.groupBy("daypart", "channel_id").agg(F.count(F.lit(1)).alias("minutes"))
    everything = both.groupBy("daypart").agg(F.count(F.lit(1)).alias("all_minutes"))
    r = reached(both, ["daypart", "channel_id"], threshold).groupBy("daypart", "channel_id").agg(
        F.count(F.lit(1)).alias("reach"))
    named = minutes.select("channel_id").distinct().withColumn("channel_name", F.lit(None).cast("string"))
    if names is not None:
        named = named.unionByName(names.select(F.col("channel_id").cast("int"), "channel_name"))
    named = named.groupBy("channel_id").agg(F.max("channel_name").alias("channel_name"))
    cells = parts.crossJoin(named)
    x = (cells.join(m, ["daypart", "channel_id"], "left").join(r, ["daypart", "channel_id"], "left")
         .join(everything, "daypart", "left").crossJoin(totals).crossJoin(members)
         .withColumn("minutes", F.coalesce(F.col("minutes"), F.lit(0)))
         .withColumn("all_minutes", F.coalesce(F.col("all_minutes"), F.lit(0)))
         .withColumn("reach", F.coalesce(F.col("reach"), F.lit(0)))
         .withColumn("period_minutes", F.col("day_minutes") * F.col("days")))
    return x.select(
        "daypart", "channel_id", "channel_name", "days", "universe", "period_minutes", "minutes", "all_minutes",
        *_ratios(F.col("minutes"), F.col("period_minutes"), F.col("day_minutes") * F.col("universe_days"),
                 F.col("reach"), F.col("universe"), F.col("all_minutes")))


def audience_channel(minutes: DataFrame, universe: DataFrame, cal, threshold: int, day,
                     names: DataFrame | None = None) -> DataFrame:
    """:func:`channel_measures` of broadcast day D, tagged with its weekday (the broadcast day's)."""
    d = as_date(day)
    x = channel_measures(minutes, universe, cal, threshold, names)
    x = x.withColumn("weekday", F.lit(d.isoweekday())).withColumn("is_weekend", F.lit(d.weekday() >= 5))
    return _audience_typed(x, "audience_channel", d)


def minute_totals_before(minutes: DataFrame) -> DataFrame:
    """(minute, before): all channels' credited minutes in minutes [0, minute) of the day, for minute = 0..1440 —
    so all viewing in minutes [a, b) is before(b) − before(a)."""
    spark = minutes.sparkSession
    every = spark.range(DAY_S // 60 + 1).select(F.col("id").cast("int").alias("minute"))
    per = minutes.groupBy("minute").agg(F.count(F.lit(1)).alias("n"))
    w = Window.partitionBy(F.lit(0)).orderBy("minute").rowsBetween(Window.unboundedPreceding, -1)  # 1441 rows
    return every.join(per, "minute", "left").select(
        "minute", F.coalesce(F.sum(F.coalesce(F.col("n"), F.lit(0))).over(w), F.lit(0)).alias("before"))


def audience_programme(minutes: DataFrame, universe: DataFrame, guide: DataFrame, cal, threshold: int,
                       day) -> DataFrame:
    """Per programme airing on screen in broadcast day D (every airing of the guide, empty ones included, plus the
    pseudo programmes of viewed channels without a guide): airtime (minutes it owns), credited minutes, all channels'
    minutes during it, AMA = minutes / airtime, TVR, reach, share = minutes / all minutes during it, ATS. ``daypart``:
    the daypart of its first minute."""
    d = as_date(day)
    g = guide_minutes(guide, cal, d)
    pseudo = minutes.where(F.col("programme_id").endswith("-none")).select("channel_id", "programme_id").distinct() \
        .select("channel_id", "programme_id", F.lit("").alias("title"), F.lit(None).cast("string").alias("series"),
                F.lit(None).cast("timestamp").alias("programme_start"),
                F.lit(None).cast("timestamp").alias("programme_end"), F.lit(0).alias("first_minute"),
                F.lit(DAY_S // 60).alias("end_minute"), F.lit(DAY_S // 60).alias("airtime_min"))
    progs = g.unionByName(pseudo.select(*g.columns))
    u = universe_sizes(universe).agg(F.sum("universe").alias("universe"))
    m = minutes.groupBy("channel_id", "programme_id").agg(F.count(F.lit(1)).alias("minutes"))
    r = reached(minutes, ["channel_id", "programme_id"], threshold).groupBy("channel_id", "programme_id").agg(
        F.count(F.lit(1)).alias("reach"))
    before = minute_totals_before(minutes)
    a, b = before.alias("a"), before.alias("b")
    x = (progs.join(m, ["channel_id", "programme_id"], "left").join(r, ["channel_id", "programme_id"], "left")
         .crossJoin(u)
         .join(a, F.col("first_minute") == F.col("a.minute"), "left")
         .join(b, F.col("end_minute") == F.col("b.minute"), "left")
         .withColumn("minutes", F.coalesce(F.col("minutes"), F.lit(0)))
         .withColumn("reach", F.coalesce(F.col("reach"), F.lit(0)))
         .withColumn("all_minutes", F.col("b.before") - F.col("a.before"))
         .withColumn("daypart", cal.daypart_column(F.col("first_minute"))))
    out = x.select(
        "programme_id", "channel_id", "title", "series", "programme_start", "programme_end", "daypart", "universe",
        "airtime_min", "minutes", "all_minutes",
        *_ratios(F.col("minutes"), F.col("airtime_min"), F.col("airtime_min") * F.col("universe"), F.col("reach"),
                 F.col("universe"), F.col("all_minutes")))
    return _audience_typed(out, "audience_programme", d)


def series_measures(programmes: DataFrame, minutes: DataFrame, universe: DataFrame, threshold: int) -> DataFrame:
    """Per series and daypart (an airing's daypart is that of its first minute; ``all`` = every airing) over the days
    of ``universe``: from its airings (audience_programme rows of those days — empty airings count, in airtime and in
    the all-channels minutes during them) and the credited minutes (reach: distinct members with ≥ ``threshold``
    consecutive minutes in one of its airings). AMA = Σ minutes / Σ airtime, TVR = Σ minutes / Σ (airtime × the
    airing day's universe), share = Σ minutes / Σ all minutes during its airings."""
    p = programmes.where(F.col("series").isNotNull())
    p = p.unionByName(p.withColumn("daypart", F.lit("all")))
    agg = p.groupBy("series", "daypart").agg(
        F.count(F.lit(1)).alias("airings"),
        F.sum("airtime_min").alias("airtime_min"), F.sum("minutes").alias("minutes"),
        F.sum("all_minutes").alias("all_minutes"), F.sum(F.col("airtime_min") * F.col("universe")).alias("pu"))
    pairs = reached(minutes.where(F.col("series").isNotNull()), ["series", "programme_id"], threshold)
    pairs = pairs.join(p.select("programme_id", "daypart").distinct(), "programme_id")
    r = pairs.select("series", "daypart", "user_id").distinct().groupBy("series", "daypart").agg(
        F.count(F.lit(1)).alias("reach"))
    days = universe.select("dt").distinct().agg(F.count(F.lit(1)).alias("days"))
    members = universe.select("user_id").distinct().agg(F.count(F.lit(1)).alias("universe"))
    x = agg.join(r, ["series", "daypart"], "left").crossJoin(days).crossJoin(members) \
        .withColumn("reach", F.coalesce(F.col("reach"), F.lit(0)))
    return x.select("series", "daypart", "airings", "days", "universe", "airtime_min", "minutes", "all_minutes",
                    *_ratios(F.col("minutes"), F.col("airtime_min"), F.col("pu"), F.col("reach"), F.col("universe"),
                             F.col("all_minutes")))


def audience_series(programmes: DataFrame, minutes: DataFrame, universe: DataFrame, threshold: int, day) -> DataFrame:
    """:func:`series_measures` of broadcast day D."""
    return _audience_typed(series_measures(programmes, minutes, universe, threshold), "audience_series", day)
