"""Daily aggregates of viewing sessions — pure functions of a sessions DataFrame and the day.

Every builder takes the rows of ``viewing_sessions`` (columns of tables.SESSION_COLUMNS + dt) of calendar days D-1..D+1
and returns a DataFrame whose columns and types are exactly the declared ones of its table (tables.py) plus ``dt`` = D.

**Day D is broadcast day D** (lake/calendar.py, docs/measures.md): from D at ``TVP_BROADCAST_DAY_START`` (default
05:00) to the same clock time on D+1, in real time of the operator's zone (23 or 25 hours across a DST change).
``00:00`` makes it the calendar day — the seed's day, which the reproduction tests use. Hours are clock hours.

Two clocks (docs/lake.md):

* **by start day** — a session counts, whole, on the broadcast day it started in (the seed's definition, on the
  calendar day: ``to_date(time_start)`` and ``unix_timestamp(time_end) - unix_timestamp(time_start)``). Views, viewers,
  the channel rating, the duration histogram and ``hours_by_start`` use it.
* **in day** — only the seconds actually watched inside broadcast day D count; a session crossing its boundary is
  split between the two days. ``hours_in_day``, hourly activity, the channel × weekday × hour heatmap and the users'
  minutes in day use it, built from :func:`hour_slices`.

Every builder takes an optional ``cal`` (a :class:`~tv_platform.lake.calendar.BroadcastCalendar`); without it the
settings' calendar.
"""

from __future__ import annotations

from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tv_platform.lake.calendar import ALL_DAY
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


def _cal(cal):
    """The broadcast calendar of the settings (TVP_BROADCAST_DAY_START, TVP_DAYPARTS) unless one is given."""
    if cal is None:
        from tv_platform.lake.calendar import BroadcastCalendar

        return BroadcastCalendar.from_settings()
    return cal


def _day_start(cal, day) -> Column:
    """The wall-clock start of broadcast day ``day`` as a TIMESTAMP_NTZ column (built from the date, so no client or
    session time zone enters)."""
    return F.timestamp_add("MINUTE", F.lit(cal.start), F.lit(as_date(day)).cast("timestamp_ntz"))


def _read_days(day) -> tuple[str, str]:
    d = as_date(day)
    return (d - timedelta(days=1)).isoformat(), (d + timedelta(days=1)).isoformat()


def _timed(sessions: DataFrame, day, cal=None) -> DataFrame:
    """The sessions of calendar days D-1..D+1 with ``start_s``/``end_s``: their start and end in real seconds from the
    start of broadcast day D (negative before it), and ``started``: the session started inside broadcast day D
    (0 <= start_s < the day's length) — the day a session counts on by its start."""
    cal = _cal(cal)
    day_s = cal.day_seconds(day)
    lo = _day_start(cal, day)
    first, last = _read_days(day)
    base = sessions.where(F.col("dt").between(first, last)).select(
        "session_id", "user_id", "user_name", "channel_id", "channel_name", "time_start", "time_end", "duration_s",
        "is_zero_length", "dt", elapsed_s(lo, "time_start").alias("start_s"), elapsed_s(lo, "time_end").alias("end_s"),
    )
    return base.withColumn("started", (F.col("start_s") >= 0) & (F.col("start_s") < day_s))


def _started(sessions: DataFrame, day, cal=None) -> DataFrame:
    """The sessions that started inside broadcast day D (with the columns of :func:`_timed`)."""
    return _timed(sessions, day, cal).where(F.col("started"))


def day_overlap(sessions: DataFrame, day, cal=None) -> DataFrame:
    """The sessions (started on calendar days D-1..D+1) that overlap broadcast day D, one row each, with
    ``start_s``/``end_s`` (start and end in real seconds from the start of D — negative for a session started before
    it, beyond the day's length for one ending after it), ``started`` (it started inside D), ``in_s``/``out_s`` (the
    part inside D: max(start_s, 0) .. min(end_s, day length)) and ``in_day_s`` (its length). Seconds are real time in
    the operator's zone: a day across a DST change is 23 or 25 hours long (``BroadcastCalendar.day_seconds``). A
    zero-length session overlaps D if its instant is in D; a session ending exactly at D's start does not. With
    ``TVP_BROADCAST_DAY_START=00:00`` D is the calendar day."""
    cal = _cal(cal)
    day_s = cal.day_seconds(day)
    start_s, end_s = F.col("start_s"), F.col("end_s")
    overlaps = ((end_s > start_s) & (end_s > 0) & (start_s < day_s)) | (
        (end_s == start_s) & (start_s >= 0) & (start_s < day_s))
    return (
        _timed(sessions, day, cal).where(overlaps)
        .withColumn("in_s", F.greatest(start_s, F.lit(0)))
        .withColumn("out_s", F.least(end_s, F.lit(day_s)))
        .withColumn("in_day_s", F.col("out_s") - F.col("in_s"))
    )


def day_seconds(day, cal=None) -> int:
    """The length of broadcast day ``day`` in the operator's zone, in seconds: 86 400, or 82 800 / 90 000 across a
    DST change."""
    return _cal(cal).day_seconds(day)


def hour_bounds(day, cal=None) -> list[tuple[int, int, int]]:
    """The clock hours of broadcast day ``day``: ``(hour, lo_s, hi_s)`` in real seconds from its start
    (``BroadcastCalendar.hour_segments``): hour h runs from h:00 to h+1:00 on the wall clock — none of it on the hour
    a spring DST change skips, two hours on the hour an autumn change repeats."""
    return _cal(cal).hour_segments(day)


def _regular(bounds: list[tuple[int, int, int]]) -> bool:
    return len(bounds) == 24 and all(lo == k * HOUR_S and hi == lo + HOUR_S for k, (_, lo, hi) in enumerate(bounds))


def hour_slices(sessions: DataFrame, day, cal=None) -> DataFrame:
    """The parts of sessions watched inside broadcast day D, one row per (session, clock-hour piece of D it overlaps).

    Columns: those of :func:`day_overlap`, plus ``hour`` (the clock hour, 0–23), ``seg_lo``/``seg_hi`` (the piece's
    bounds in seconds from the start of D) and ``overlap_s`` (seconds of [start, end) inside the piece). A
    zero-length session gets one row in the piece of its instant with ``overlap_s`` 0; a session ending exactly at D's
    start has no row. With a 05:00 broadcast day the pieces are the clock hours 05..23 of D and 00..04 of D+1; a day
    starting off the hour has the start hour in two pieces; across a DST change the skipped hour has no piece and the
    repeated one is two hours long.
    """
    cal = _cal(cal)
    s, e = F.col("in_s"), F.col("out_s")
    bounds = hour_bounds(day, cal)
    overlap = day_overlap(sessions, day, cal)
    if _regular(bounds):
        first_k = F.floor(s / HOUR_S).cast("int")
        last_k = F.when(e > s, (F.ceil(e / HOUR_S) - 1).cast("int")).otherwise(first_k)
        hours = F.array(*[F.lit(h) for h, _, _ in bounds])
        sliced = overlap.withColumn("_k", F.explode(F.sequence(first_k, last_k)))
        sliced = (sliced.withColumn("hour", F.element_at(hours, F.col("_k") + 1))
                  .withColumn("seg_lo", F.col("_k").cast("bigint") * HOUR_S)
                  .withColumn("seg_hi", F.col("seg_lo") + HOUR_S).drop("_k"))
    else:
        pieces = sessions.sparkSession.createDataFrame(bounds, "hour int, seg_lo bigint, seg_hi bigint")
        lo, hi = F.col("seg_lo"), F.col("seg_hi")
        sliced = overlap.crossJoin(F.broadcast(pieces)).where(
            ((e > s) & (s < hi) & (e > lo)) | ((e == s) & (s >= lo) & (s < hi)))
    lo, hi = F.col("seg_lo"), F.col("seg_hi")
    return sliced.withColumn("overlap_s", F.greatest(F.least(e, hi) - F.greatest(s, lo), F.lit(0)).cast("bigint"))


def started_in_hour() -> Column:
    """Whether a slice's session started in the slice's piece (``start_s`` within ``seg_lo``..``seg_hi``)."""
    return (F.col("start_s") >= F.col("seg_lo")) & (F.col("start_s") < F.col("seg_hi"))


def _sum0(column: Column | str) -> Column:
    return F.coalesce(F.sum(column), F.lit(0))


def daily_viewing(sessions: DataFrame, day, cal=None) -> DataFrame:
    """One row for broadcast day D (TVP_BROADCAST_DAY_START; ``00:00`` = the calendar day).

    views / viewers: sessions started in D and their distinct users (the seed's count_views, on the calendar day);
    active_users: distinct users who watched inside D (including sessions carried over from before it);
    hours_by_start: whole length of the sessions started in D (the seed's sum_time);
    hours_in_day: seconds watched inside D by any session;
    hours_after_day: what sessions started in D watched after D ended (hours_by_start minus their in-day part);
    hours_carried_in: what sessions started before D watched inside D;
    sessions_crossing_midnight: sessions started in D that end at or after its end (the broadcast day's boundary).
    So hours_in_day = hours_by_start - hours_after_day + hours_carried_in.
    Needs the sessions of calendar days D-1..D+1.
    """
    cal = _cal(cal)
    d = _day(day)
    day_s = cal.day_seconds(d)
    started = _started(sessions, d, cal).agg(
        F.count(F.lit(1)).alias("views"),
        F.countDistinct("user_id").alias("viewers"),
        _sum0("duration_s").alias("by_start_s"),
        _sum0(F.col("is_zero_length").cast("int")).alias("zero_length_views"),
        _sum0((F.col("end_s") >= day_s).cast("int")).alias("sessions_crossing_midnight"),
    )
    slices = day_overlap(sessions, d, cal).agg(
        F.countDistinct("user_id").alias("active_users"),
        _sum0("in_day_s").alias("in_day_s"),
        _sum0(F.when(F.col("started"), F.col("in_day_s"))).alias("in_day_started_s"),
        _sum0(F.when(F.col("start_s") < 0, F.col("in_day_s"))).alias("carried_in_s"),
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


def channel_rating(sessions: DataFrame, day, cal=None) -> DataFrame:
    """Per channel, sessions started in broadcast day D (the seed's channel rating, by start day).

    hours, views, viewers (distinct users); hours_share = channel hours / all hours × 100; viewers_share = channel
    viewers / Σ channels' viewers × 100 (shares of the audience's channel choices, summing to 100 like the seed's
    rating table); reach_pct = channel viewers / distinct viewers of the day × 100; avg_view_minutes; rank by hours
    (then views, then channel_id), 1 = most watched. Channels without sessions that day have no row.
    """
    d = _day(day)
    started = _started(sessions, d, cal)
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


def hourly_activity(sessions: DataFrame, day, cal=None) -> DataFrame:
    """24 rows (clock hours 0–23 of broadcast day D, zeros included; with a 05:00 day hours 0–4 are those of the
    night after D), from :func:`hour_slices` — clipped to the hour, unlike the seed's
    ``generate_series(hour(start), hour(end))`` which counted every touched hour as a view and wrapped at midnight.

    sessions_active: sessions with any time in the hour (a zero-length one counts in the hour of its instant);
    sessions_started: sessions started in D in that hour; viewers: distinct users active; minutes: minutes watched
    inside the hour; avg_concurrent: minutes / 60, the average number of simultaneous viewers (of a 60-minute hour).
    Needs the sessions of calendar days D-1..D+1.
    """
    d = _day(day)
    slices = hour_slices(sessions, d, cal)
    per_hour = slices.groupBy("hour").agg(
        F.countDistinct("session_id").alias("sessions_active"),
        _sum0(F.when(F.col("started") & started_in_hour(), 1)).alias("sessions_started"),
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


def channel_weekday_hour(sessions: DataFrame, day, cal=None) -> DataFrame:
    """Minutes watched per channel and clock hour of broadcast day D (clipped to the hour, from :func:`hour_slices`),
    tagged with the broadcast day's ISO weekday (1 = Monday: with a 05:00 day, Saturday 01:30 is Friday's) — the cells
    of a channel × weekday × hour popularity heatmap; a week or a quarter is a ``SUM(minutes) … GROUP BY weekday,
    hour, channel`` over partitions. Only cells with activity have rows. sessions_active and viewers are as in
    hourly_activity, per channel. Needs the sessions of calendar days D-1..D+1."""
    d = as_date(day)
    slices = hour_slices(sessions, d, cal)
    out = slices.groupBy("channel_id", "hour").agg(
        F.max("channel_name").alias("channel_name"),
        (_sum0("overlap_s") / 60.0).alias("minutes"),
        F.countDistinct("session_id").alias("sessions_active"),
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


def duration_histogram(sessions: DataFrame, day, cal=None) -> DataFrame:
    """Sessions started in broadcast day D by length bucket (DURATION_BUCKETS; every bucket present, zeros included):
    sessions, their hours, and sessions_share (% of the day's sessions). Bucket 0 is the zero-length sessions."""
    d = _day(day)
    started = _started(sessions, d, cal)
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


def segment_ranges(day, cal=None) -> list[list[tuple[int, int]]]:
    """Per time-of-day segment (SEGMENTS: clock 00–06, 06–12, 12–18, 18–24) its pieces of broadcast day D as
    [lo_s, hi_s) in seconds from D's start — with a 05:00 day ``night`` is 05:00–06:00 at the start and 00:00–05:00
    at the end."""
    out: list[list[tuple[int, int]]] = [[] for _ in SEGMENTS]
    for hour, lo, hi in hour_bounds(day, cal):
        ranges = out[hour // 6]
        if ranges and ranges[-1][1] == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return out


def user_activity(sessions: DataFrame, day, cal=None) -> DataFrame:
    """One row per user active in broadcast day D — any session overlapping it (including a zero-length one and a
    session carried over from before it); the number of rows is the day's active users.

    sessions: sessions the user started in D; channels: distinct channels watched inside D; minutes_by_start: whole
    length of the sessions started in D; minutes_in_day: minutes watched inside D; night/morning/afternoon/evening
    minutes: inside D, per clock segment (00–06, 06–12, 12–18, 18–24; :func:`segment_ranges`); segment: the segment
    with the most minutes (ties: the earlier one; a user with only zero-length sessions gets the segment of their
    instant); first_start / last_end: earliest start and latest end of the sessions active in D (may fall outside
    it). Needs the sessions of calendar days D-1..D+1."""
    d = _day(day)
    s, e = F.col("in_s"), F.col("out_s")
    aggs = [
        F.max("user_name").alias("user_name"),
        F.count(F.when(F.col("started"), 1)).alias("sessions"),
        _sum0(F.when(F.col("started"), F.col("duration_s"))).alias("by_start_s"),
        F.countDistinct("channel_id").alias("channels"),
        _sum0("in_day_s").alias("in_day_s"),
        F.min("time_start").alias("first_start"),
        F.max("time_end").alias("last_end"),
    ]
    for name, ranges in zip(SEGMENTS, segment_ranges(d, cal)):
        part = F.lit(0)
        present = F.lit(False)
        for lo, hi in ranges:
            part = part + F.greatest(F.least(e, F.lit(hi)) - F.greatest(s, F.lit(lo)), F.lit(0))
            # a segment "has" a session if some of it is watched there, or a zero-length session happened there
            present = present | ((e == s) & (s >= lo) & (s < hi))
        present = present | (part > 0)
        aggs.append(_sum0(part).alias(f"{name}_s"))
        aggs.append(F.max(F.when(present, F.lit(1))).alias(f"{name}_present"))
    active = day_overlap(sessions, d, cal).groupBy("user_id").agg(*aggs)
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

NEEDS_NEIGHBOUR_DAYS = set(BUILDERS)
"""Builders that read the sessions of calendar days D-1 and D+1 as well: every one — broadcast day D starts at
TVP_BROADCAST_DAY_START of D and ends at that time on D+1, and sessions started before it run into it."""


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
    """Real seconds from the start of broadcast day ``day`` to the wall-clock time ``column`` (the start is built from
    the date, never from a client-side datetime; both are read on the operator's clock, TVP_TIMEZONE, so across a DST
    change the seconds are those that really elapsed)."""
    return elapsed_s(_day_start(cal, day), column)


def broadcast_overlap(sessions: DataFrame, cal, day) -> DataFrame:
    """The sessions overlapping broadcast day D ([D start, D+1 start), see lake/calendar.py), with ``in_s``/``out_s``:
    the part inside it in seconds from its start. Reads sessions started on D-1..D+1 (a session started on D+1 before
    the broadcast-day start belongs partly to D). A zero-length session overlaps if its instant lies in the day."""
    d = as_date(day)
    day_s = cal.day_seconds(d)
    s, e = _broadcast_secs("time_start", cal, d), _broadcast_secs("time_end", cal, d)
    base = sessions.where(F.col("dt").between((d - timedelta(days=1)).isoformat(), (d + timedelta(days=1)).isoformat())
                          ).select("session_id", "user_id", "channel_id", "channel_name", s.alias("start_s"),
                                   e.alias("end_s"))
    start_s, end_s = F.col("start_s"), F.col("end_s")
    overlaps = ((end_s > start_s) & (end_s > 0) & (start_s < day_s)) | (
        (end_s == start_s) & (start_s >= 0) & (start_s < day_s))
    return (base.where(overlaps).withColumn("in_s", F.greatest(start_s, F.lit(0)))
            .withColumn("out_s", F.least(end_s, F.lit(day_s))))


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
    day_s = cal.day_seconds(day)
    lo, hi = F.lit(0), F.lit(day_s // 60)
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
                       & (_broadcast_secs("programme_start", cal, day) < day_s)
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
                .withColumn("daypart", cal.daypart_column(F.col("minute"), d)))
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


def viewing_pieces(minutes: DataFrame) -> DataFrame:
    """A viewer's credited minutes (audience_minutes rows) as pieces: maximal runs of consecutive minutes of one
    broadcast day on one channel with one daypart and one programme — (dt, user_id, channel_id, daypart,
    programme_id, series, ``lo`` = its first minute, ``len`` = its minutes). A day of 10 k subscribers has ≈ 2 M
    credited minutes and tens of thousands of pieces; the measures' minutes, reach and runs are computed from them,
    one window over the minutes for all of them. A daypart or a pseudo programme need not be contiguous (a night
    from 20:00 to 06:00 of a day starting at 05:00 holds the day's first and last minutes): a piece ends where
    either changes, so every piece is one interval."""
    w = Window.partitionBy("dt", "user_id", "channel_id").orderBy("minute")
    cont = ((F.col("minute") == F.lag("minute").over(w) + 1)
            & F.col("daypart").eqNullSafe(F.lag("daypart").over(w))
            & F.col("programme_id").eqNullSafe(F.lag("programme_id").over(w)))
    starts = minutes.select("dt", "user_id", "channel_id", "daypart", "programme_id", "series", "minute",
                            F.when(cont, 0).otherwise(1).alias("_new"))
    seg = starts.withColumn("_piece", F.sum("_new").over(w.rowsBetween(Window.unboundedPreceding, 0)))
    return seg.groupBy("dt", "user_id", "channel_id", "_piece", "daypart", "programme_id", "series").agg(
        F.min("minute").alias("lo"), F.count(F.lit(1)).alias("len")).drop("_piece")


def reached(pieces: DataFrame, keys: list[str], threshold: int) -> DataFrame:
    """Distinct (user_id, ``keys``…) with at least ``threshold`` consecutive credited minutes within one broadcast day
    (``dt``) and one value of ``keys`` — the reach rule — from :func:`viewing_pieces`: the pieces of one viewer, day
    and key value that touch (one ends where the next begins) are one run. Consecutive: minute numbers without a
    gap, on the same channel (``keys`` include channel_id or a programme of one channel)."""
    part = ["dt", "user_id", *keys]
    w = Window.partitionBy(*part).orderBy("lo")
    touches = F.col("lo") == F.lag(F.col("lo") + F.col("len")).over(w)
    runs = pieces.select(*part, "lo", "len", F.when(touches, 0).otherwise(1).alias("_new"))
    runs = runs.withColumn("_run", F.sum("_new").over(w.rowsBetween(Window.unboundedPreceding, 0)))
    long = runs.groupBy(*part, "_run").agg(F.sum("len").alias("_len")).where(F.col("_len") >= int(threshold))
    return long.select("user_id", *keys).distinct()


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
                     names: DataFrame | None = None, pieces: DataFrame | None = None) -> DataFrame:
    """Per (daypart, channel_id) over the days of ``universe`` (audience_universe rows; every day of the window must
    be there, a quiet day simply has no minutes): ``days``, ``universe`` (distinct members over the days),
    ``period_minutes`` (Σ over the days of the daypart's real minutes that day: its length × days, but on a DST
    day), credited ``minutes`` and the measures of :func:`_ratios` —
    AMA = minutes / period minutes, TVR = AMA as % of the universe (Σ over days of that day's period minutes × its
    universe), reach (≥ ``threshold`` consecutive minutes), share = minutes / all channels' minutes in the daypart.
    Daypart ``all`` is the whole broadcast day. Every channel of ``names`` (channel_id, channel_name: the reference
    channels and the viewed ones) gets a row in every daypart, zeros included — so a sum over days of ``minutes`` /
    ``period_minutes`` in a warehouse is still the AMA of the whole span. ``pieces``: :func:`viewing_pieces` of
    ``minutes`` when the caller has them already."""
    per_day = universe_sizes(universe)
    totals = per_day.agg(F.count(F.lit(1)).alias("days"))
    members = universe.select("user_id").distinct().agg(F.count(F.lit(1)).alias("universe"))
    spark = minutes.sparkSession
    days = sorted(r["dt"] for r in per_day.select("dt").collect())
    # each day's daypart minutes (real minutes: a DST day's change hour is missing or doubled) x that day's universe
    day_parts = spark.createDataFrame(
        [(d, k, v) for d in days for k, v in cal.daypart_minutes(d).items()] or [("", ALL_DAY, 0)],
        "dt string, daypart string, minutes_of_day bigint")
    parts = day_parts.join(per_day, "dt", "left").groupBy("daypart").agg(
        F.sum("minutes_of_day").alias("period_minutes"),
        F.sum(F.col("minutes_of_day") * F.coalesce(F.col("universe"), F.lit(0))).alias("period_universe"))
    if not days:
        parts = spark.createDataFrame([(k, 0, 0) for k in cal.daypart_minutes()],
                                      "daypart string, period_minutes bigint, period_universe bigint")
    p = viewing_pieces(minutes) if pieces is None else pieces
    # the whole day: the dayparts' pieces as one daypart (pieces of one channel either side of a daypart's end touch)
    both = p.unionByName(p.withColumn("daypart", F.lit(ALL_DAY)))
    m = both.groupBy("daypart", "channel_id").agg(F.sum("len").alias("minutes"))
    everything = both.groupBy("daypart").agg(F.sum("len").alias("all_minutes"))
    r = reached(both, ["daypart", "channel_id"], threshold).groupBy("daypart", "channel_id").agg(
        F.count(F.lit(1)).alias("reach"))
    named = p.select("channel_id").distinct().withColumn("channel_name", F.lit(None).cast("string"))
    if names is not None:
        named = named.unionByName(names.select(F.col("channel_id").cast("int"), "channel_name"))
    named = named.groupBy("channel_id").agg(F.max("channel_name").alias("channel_name"))
    cells = parts.crossJoin(named)
    x = (cells.join(m, ["daypart", "channel_id"], "left").join(r, ["daypart", "channel_id"], "left")
         .join(everything, "daypart", "left").crossJoin(totals).crossJoin(members)
         .withColumn("minutes", F.coalesce(F.col("minutes"), F.lit(0)))
         .withColumn("all_minutes", F.coalesce(F.col("all_minutes"), F.lit(0)))
         .withColumn("reach", F.coalesce(F.col("reach"), F.lit(0))))
    return x.select(
        "daypart", "channel_id", "channel_name", "days", "universe", "period_minutes", "minutes", "all_minutes",
        *_ratios(F.col("minutes"), F.col("period_minutes"), F.col("period_universe"),
                 F.col("reach"), F.col("universe"), F.col("all_minutes")))


def audience_channel(minutes: DataFrame, universe: DataFrame, cal, threshold: int, day,
                     names: DataFrame | None = None, pieces: DataFrame | None = None) -> DataFrame:
    """:func:`channel_measures` of broadcast day D, tagged with its weekday (the broadcast day's)."""
    d = as_date(day)
    x = channel_measures(minutes, universe, cal, threshold, names, pieces)
    x = x.withColumn("weekday", F.lit(d.isoweekday())).withColumn("is_weekend", F.lit(d.weekday() >= 5))
    return _audience_typed(x, "audience_channel", d)


def minute_totals_before(pieces: DataFrame, day_minutes: int = DAY_S // 60) -> DataFrame:
    """(minute, before): all channels' credited minutes in minutes [0, minute) of the day, for minute =
    0..``day_minutes`` (1440, or 1380 / 1500 across a DST change) — so all viewing in minutes [a, b) is
    before(b) − before(a). From :func:`viewing_pieces`: a piece adds one viewer from its first minute on and removes
    him after its last, so the viewers of minute k are the running sum of those steps up to k."""
    spark = pieces.sparkSession
    every = spark.range(day_minutes + 1).select(F.col("id").cast("int").alias("minute"))
    steps = pieces.select(F.col("lo").alias("minute"), F.lit(1).alias("step")).unionByName(
        pieces.select((F.col("lo") + F.col("len")).cast("int").alias("minute"), F.lit(-1).alias("step")))
    per = steps.groupBy("minute").agg(F.sum("step").alias("step"))
    w = Window.partitionBy(F.lit(0)).orderBy("minute")  # 1441 rows
    viewers = every.join(per, "minute", "left").select(
        "minute", F.sum(F.coalesce(F.col("step"), F.lit(0))).over(w.rowsBetween(Window.unboundedPreceding, 0))
        .alias("n"))
    return viewers.select("minute", F.coalesce(F.sum("n").over(w.rowsBetween(Window.unboundedPreceding, -1)),
                                               F.lit(0)).cast("bigint").alias("before"))


def audience_programme(minutes: DataFrame, universe: DataFrame, guide: DataFrame, cal, threshold: int,
                       day, pieces: DataFrame | None = None) -> DataFrame:
    """Per programme airing on screen in broadcast day D (every airing of the guide, empty ones included, plus the
    pseudo programmes of viewed channels without a guide): airtime (minutes it owns), credited minutes, all channels'
    minutes during it, AMA = minutes / airtime, TVR, reach, share = minutes / all minutes during it, ATS. ``daypart``:
    the daypart of its first minute. ``pieces``: :func:`viewing_pieces` of ``minutes`` when the caller has them."""
    d = as_date(day)
    n = cal.day_minutes(d)
    g = guide_minutes(guide, cal, d)
    p = viewing_pieces(minutes) if pieces is None else pieces
    pseudo = p.where(F.col("programme_id").endswith("-none")).select("channel_id", "programme_id").distinct() \
        .select("channel_id", "programme_id", F.lit("").alias("title"), F.lit(None).cast("string").alias("series"),
                F.lit(None).cast("timestamp").alias("programme_start"),
                F.lit(None).cast("timestamp").alias("programme_end"), F.lit(0).alias("first_minute"),
                F.lit(n).alias("end_minute"), F.lit(n).alias("airtime_min"))
    progs = g.unionByName(pseudo.select(*g.columns))
    u = universe_sizes(universe).agg(F.sum("universe").alias("universe"))
    m = p.groupBy("channel_id", "programme_id").agg(F.sum("len").alias("minutes"))
    r = reached(p, ["channel_id", "programme_id"], threshold).groupBy("channel_id", "programme_id").agg(
        F.count(F.lit(1)).alias("reach"))
    before = minute_totals_before(p, n)
    a, b = before.alias("a"), before.alias("b")
    x = (progs.join(m, ["channel_id", "programme_id"], "left").join(r, ["channel_id", "programme_id"], "left")
         .crossJoin(u)
         .join(a, F.col("first_minute") == F.col("a.minute"), "left")
         .join(b, F.col("end_minute") == F.col("b.minute"), "left")
         .withColumn("minutes", F.coalesce(F.col("minutes"), F.lit(0)))
         .withColumn("reach", F.coalesce(F.col("reach"), F.lit(0)))
         .withColumn("all_minutes", F.col("b.before") - F.col("a.before"))
         .withColumn("daypart", cal.daypart_column(F.col("first_minute"), d)))
    out = x.select(
        "programme_id", "channel_id", "title", "series", "programme_start", "programme_end", "daypart", "universe",
        "airtime_min", "minutes", "all_minutes",
        *_ratios(F.col("minutes"), F.col("airtime_min"), F.col("airtime_min") * F.col("universe"), F.col("reach"),
                 F.col("universe"), F.col("all_minutes")))
    return _audience_typed(out, "audience_programme", d)


def series_measures(programmes: DataFrame, minutes: DataFrame, universe: DataFrame, threshold: int,
                    pieces: DataFrame | None = None) -> DataFrame:
    """Per series and daypart (an airing's daypart is that of its first minute; ``all`` = every airing) over the days
    of ``universe``: from its airings (audience_programme rows of those days — empty airings count, in airtime and in
    the all-channels minutes during them) and the credited minutes (reach: distinct members with ≥ ``threshold``
    consecutive minutes in one of its airings). AMA = Σ minutes / Σ airtime, TVR = Σ minutes / Σ (airtime × the
    airing day's universe), share = Σ minutes / Σ all minutes during its airings. ``pieces``: :func:`viewing_pieces`
    of ``minutes`` when the caller has them."""
    p = programmes.where(F.col("series").isNotNull())
    p = p.unionByName(p.withColumn("daypart", F.lit("all")))
    agg = p.groupBy("series", "daypart").agg(
        F.count(F.lit(1)).alias("airings"),
        F.sum("airtime_min").alias("airtime_min"), F.sum("minutes").alias("minutes"),
        F.sum("all_minutes").alias("all_minutes"), F.sum(F.col("airtime_min") * F.col("universe")).alias("pu"))
    pieces = viewing_pieces(minutes) if pieces is None else pieces
    pairs = reached(pieces.where(F.col("series").isNotNull()), ["series", "programme_id"], threshold)
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


def audience_series(programmes: DataFrame, minutes: DataFrame, universe: DataFrame, threshold: int, day,
                    pieces: DataFrame | None = None) -> DataFrame:
    """:func:`series_measures` of broadcast day D."""
    return _audience_typed(series_measures(programmes, minutes, universe, threshold, pieces), "audience_series", day)
