"""Viewing sessions: ``enabled``/``disabled`` events paired per session, with every event accounted for.

:func:`sessionize` is a pure function of Spark DataFrames (classic or Spark Connect), so tests call it on hand-made
events and the Dagster asset only reads the raw tables and writes the results.

Rules (docs/lake.md has the reasoning):

* **Attribution.** A session belongs to the day its start (``enabled``) happened — the seed's definition. The events
  of a session are grouped by ``session_id`` over *all* events read (both sources, raw partitions D-1..D+1), and the
  whole group is attributed to the date of its earliest valid ``enabled`` event, or, if it has none, of its earliest
  ``disabled`` event. A run for day D keeps the groups attributed to D, so a session that starts at 23:10 and ends
  at 01:20 is paired from the next day's partition, and the next day's run does not see its ``disabled`` as an orphan.
* **Invalid events** (a missing field, an unparseable timer — Spark's CSV reader turns it into NULL — or a status
  other than enabled/disabled) cannot be attributed by time; they are set aside as ``invalid_event`` on the day of
  the raw partition (``dt``) they were read from.
* **Duplicates.** Within a group, events with the same status are ranked: ``enabled`` earliest first, ``disabled``
  latest first (the widest span), then user, channel and source. The first one is kept; each other is set aside
  as ``duplicate_event`` if it equals the kept one (timer, user, channel — e.g. the same event in history and in the
  stream, or delivered twice) or ``conflicting_duplicate`` if it differs.
* **Pairing.** Kept ``enabled`` + kept ``disabled`` with ``time_end >= time_start`` make a session (user and channel
  from the ``enabled``, as in the seed). Otherwise the kept events are set aside: ``open_session`` (an enabled with no
  disabled — still open, or closed beyond the window), ``orphan_disabled`` (a disabled with no enabled) or
  ``negative_duration`` (both events). A zero-length session (``time_end == time_start``) is a session, flagged
  ``is_zero_length``.

So, for the day: ``events attributed = 2 × sessions + anomaly rows`` — nothing is dropped (the asset check recounts it
from the written tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from tv_platform.dates import as_date  # noqa: F401 - re-exported for the lake modules
from tv_platform.lake.tables import DIMENSIONS, EVENT_SOURCES

REASONS = (
    "invalid_event",
    "duplicate_event",
    "conflicting_duplicate",
    "open_session",
    "orphan_disabled",
    "negative_duration",
)
SESSION = "session"
SOURCES = tuple(EVENT_SOURCES.values())  # ("history", "stream"), sorted




def day_range(start, end=None) -> list[str]:
    """ISO dates from start to end inclusive."""
    first = as_date(start)
    last = as_date(end) if end is not None else first
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def read_window(start, end=None, pad_before: int = 1, pad_after: int = 1) -> list[str]:
    """The raw partitions sessionize needs for days start..end: one day either side (a session may cross midnight)."""
    first = as_date(start) - timedelta(days=pad_before)
    last = as_date(end if end is not None else start) + timedelta(days=pad_after)
    return day_range(first, last)


def ntz(column: str | Column) -> Column:
    """A stored TIMESTAMP as wall-clock TIMESTAMP_NTZ (see tables.py: arithmetic is wall-clock, zone-free)."""
    c = F.col(column) if isinstance(column, str) else column
    return c.cast("timestamp_ntz")


def instant(column: str | Column, tz: str | None = None) -> Column:
    """A stored wall-clock time of the operator's zone as the UTC wall clock (TIMESTAMP_NTZ): differences of such
    columns are real elapsed time, also across a DST change (the identity in UTC)."""
    from tv_platform.dates import zone_name

    name = zone_name(tz)
    c = ntz(column)
    return c if name == "UTC" else F.convert_timezone(F.lit(name), F.lit("UTC"), c)


def elapsed_s(start: str | Column, end: str | Column, tz: str | None = None) -> Column:
    """Seconds from ``start`` to ``end`` (wall-clock times of the operator's zone), as really elapsed."""
    return F.timestamp_diff("SECOND", instant(start, tz), instant(end, tz))


def union_sources(frames: dict[str, DataFrame]) -> DataFrame:
    """Raw event tables keyed by source (``tv_dataset``/``tv_stream`` or ``history``/``stream``) as one frame with a
    ``source`` column. Each frame needs session_id, user_id, channel_id, timer, status and dt."""
    out = None
    for name, frame in frames.items():
        source = EVENT_SOURCES.get(name, name)
        if source not in SOURCES:
            raise ValueError(f"unknown event source {name!r}: expected one of {sorted(EVENT_SOURCES)} or {SOURCES}")
        part = frame.select(
            F.col("session_id").cast("string").alias("session_id"),
            F.col("user_id").cast("int").alias("user_id"),
            F.col("channel_id").cast("int").alias("channel_id"),
            F.col("timer").cast("timestamp").alias("timer"),
            F.col("status").cast("string").alias("status"),
            F.col("dt").cast("string").alias("dt"),
            F.lit(source).alias("source"),
        )
        out = part if out is None else out.unionByName(part)
    if out is None:
        raise ValueError("union_sources needs at least one frame")
    return out


def is_valid_event() -> Column:
    """An event that can be paired: session, user, channel, a parseable timer (column ``t``) and a known status."""
    return F.coalesce(
        F.col("session_id").isNotNull() & (F.length("session_id") > 0) & F.col("user_id").isNotNull()
        & F.col("channel_id").isNotNull() & F.col("t").isNotNull() & F.col("status").isin("enabled", "disabled"),
        F.lit(False),
    )


@dataclass
class Sessionized:
    """Result of :func:`sessionize`.

    ``groups``: one row per session_id attributed to the days (fast path: the clean ones, one enabled + one
    disabled in order, become sessions straight from it); ``suspect``: the events of every other group and the
    invalid events, classified one by one (:func:`classify_events`, ``kind`` = ``session`` or a reason).
    """

    sessions: DataFrame
    anomalies: DataFrame
    groups: DataFrame
    suspect: DataFrame
    cached: list

    def counts(self) -> dict[tuple[str, str], int]:
        """Events attributed to the days by (kind, status): ``("session", "enabled")`` is the number of sessions."""
        clean = self.groups.where(F.col("clean")).count()
        out: dict[tuple[str, str], int] = {}
        if clean:
            out[(SESSION, "enabled")] = clean
            out[(SESSION, "disabled")] = clean
        for r in self.suspect.groupBy("kind", "status").agg(F.count(F.lit(1)).alias("n")).collect():
            key = (r["kind"], r["status"])
            out[key] = out.get(key, 0) + int(r["n"])
        return out

    def release(self) -> None:
        """Unpersist what :func:`sessionize` cached (``cache=True``)."""
        for frame in self.cached:
            frame.unpersist()
        self.cached.clear()


def classify_events(events: DataFrame, start, end=None) -> DataFrame:
    """Every event read, classified. Columns: the event's (session_id, user_id, channel_id, timer, status, source,
    raw_dt), ``dt`` (the day it is attributed to), ``kind`` (``session`` or an anomaly reason), ``detail``, and, for the
    session's events, the paired ``time_start``/``time_end``, ``e_user_id``/``e_channel_id`` and ``sources``."""
    days = day_range(start, end)
    first, last = days[0], days[-1]
    ev = events.select(
        "session_id", "user_id", "channel_id", "timer", "status", "source",
        F.col("dt").cast("string").alias("raw_dt"),
    ).withColumn("t", ntz("timer"))
    is_valid = is_valid_event()
    enabled = F.col("status") == "enabled"
    disabled = F.col("status") == "disabled"

    invalid = (
        ev.where(~is_valid & F.col("raw_dt").between(first, last))
        .withColumn("dt", F.col("raw_dt"))
        .withColumn("kind", F.lit("invalid_event"))
        .withColumn(
            "detail",
            F.concat_ws(
                "; ",
                F.when(F.col("session_id").isNull() | (F.length("session_id") == 0), F.lit("no session_id")),
                F.when(F.col("user_id").isNull(), F.lit("no user_id")),
                F.when(F.col("channel_id").isNull(), F.lit("no channel_id")),
                F.when(F.col("t").isNull(), F.lit("no timer")),
                F.when(~F.coalesce(F.col("status").isin("enabled", "disabled"), F.lit(False)),
                       F.concat(F.lit("status "), F.coalesce(F.col("status"), F.lit("NULL")))),
            ),
        )
    )

    group = Window.partitionBy("session_id")
    valid = ev.where(is_valid)
    anchor = F.coalesce(F.min(F.when(enabled, F.col("t"))).over(group), F.min("t").over(group))
    valid = valid.withColumn("dt", F.to_date(anchor).cast("string")).where(F.col("dt").between(first, last))

    # rank the events of each status: enabled earliest first, disabled latest first, then user, channel, source
    ranked_w = Window.partitionBy("session_id", "status").orderBy(
        F.when(enabled, F.col("t")).asc_nulls_last(),
        F.when(disabled, F.col("t")).desc_nulls_last(),
        F.col("user_id"), F.col("channel_id"), F.col("source"),
    )
    valid = (
        valid.withColumn("rn", F.row_number().over(ranked_w))
        .withColumn("k_t", F.first("t").over(ranked_w))
        .withColumn("k_user", F.first("user_id").over(ranked_w))
        .withColumn("k_channel", F.first("channel_id").over(ranked_w))
    )
    kept = F.col("rn") == 1
    valid = (
        valid.withColumn("time_start", F.max(F.when(kept & enabled, F.col("t"))).over(group))
        .withColumn("time_end", F.max(F.when(kept & disabled, F.col("t"))).over(group))
        .withColumn("e_user_id", F.max(F.when(kept & enabled, F.col("user_id"))).over(group))
        .withColumn("e_channel_id", F.max(F.when(kept & enabled, F.col("channel_id"))).over(group))
        .withColumn("sources", F.array_sort(F.collect_set("source").over(group)))
    )
    has_start = F.col("time_start").isNotNull()
    has_end = F.col("time_end").isNotNull()
    same_as_kept = (F.col("t") == F.col("k_t")) & (F.col("user_id") == F.col("k_user")) & (
        F.col("channel_id") == F.col("k_channel"))
    kind = (
        F.when(~kept & same_as_kept, F.lit("duplicate_event"))
        .when(~kept, F.lit("conflicting_duplicate"))
        .when(has_start & has_end & (F.col("time_end") >= F.col("time_start")), F.lit(SESSION))
        .when(has_start & has_end, F.lit("negative_duration"))
        .when(has_start, F.lit("open_session"))
        .otherwise(F.lit("orphan_disabled"))
    )
    fmt = "yyyy-MM-dd HH:mm:ss"
    detail = (
        F.when(F.col("kind") == "duplicate_event",
               F.concat(F.lit("copy of the kept "), F.col("status"), F.lit(" event")))
        .when(F.col("kind") == "conflicting_duplicate",
              F.concat(F.lit("kept "), F.col("status"), F.lit(" at "), F.date_format("k_t", fmt),
                       F.lit(" user "), F.col("k_user").cast("string"), F.lit(" channel "),
                       F.col("k_channel").cast("string")))
        .when(F.col("kind") == "negative_duration",
              F.concat(F.lit("disabled at "), F.date_format("time_end", fmt), F.lit(" before enabled at "),
                       F.date_format("time_start", fmt)))
        .when(F.col("kind") == "open_session", F.lit("no disabled event in the partitions read"))
        .when(F.col("kind") == "orphan_disabled", F.lit("no enabled event in the partitions read"))
    )
    valid = valid.withColumn("kind", kind).withColumn("detail", detail)

    common = ["session_id", "user_id", "channel_id", "timer", "status", "source", "raw_dt", "dt", "kind", "detail"]
    pair = ["time_start", "time_end", "e_user_id", "e_channel_id", "sources"]
    invalid = invalid.select(*common, *[F.lit(None).cast(t).alias(c) for c, t in
                                        zip(pair, ["timestamp_ntz", "timestamp_ntz", "int", "int", "array<string>"])])
    return valid.select(*common, *pair).unionByName(invalid)


def pairs_from_classified(classified: DataFrame) -> DataFrame:
    """The sessions among classified events, one row each (from the kept ``enabled``): session_id, user_id,
    channel_id, time_start, time_end (TIMESTAMP_NTZ), sources (array), dt."""
    return classified.where((F.col("kind") == SESSION) & (F.col("status") == "enabled")).select(
        "session_id",
        F.col("e_user_id").alias("user_id"),
        F.col("e_channel_id").alias("channel_id"),
        "time_start", "time_end", "sources", "dt",
    )


def inferred_label(dimension: str, id_column: str) -> Column:
    """The name of an inferred member (an id the reference data lacks): ``subscriber #12345 (not in the subscriber
    list)`` — what sessions, aggregates, marts and dashboards show until a reference load names it."""
    before, after = DIMENSIONS[dimension][4].split("{id}")
    return F.concat(F.lit(before), F.col(id_column).cast("string"), F.lit(after))


def finish_sessions(pairs: DataFrame, channels: DataFrame | None = None, users: DataFrame | None = None,
                    broadcast_users: bool = False) -> DataFrame:
    """Pairs with names left-joined, typed as tables.SESSION_COLUMNS + dt. The session is always kept: an id missing
    from the given reference frame is an inferred member, named by :func:`inferred_label`; without a reference frame
    the name is NULL."""
    s = pairs
    if channels is not None:
        ch = channels.groupBy(F.col("channel_id").cast("int").alias("channel_id")).agg(
            F.max("channel_name").alias("channel_name"))
        s = s.join(F.broadcast(ch), "channel_id", "left").withColumn(
            "channel_name", F.coalesce(F.col("channel_name"), inferred_label("channels", "channel_id")))
    else:
        s = s.withColumn("channel_name", F.lit(None).cast("string"))
    if users is not None:
        # user ids are unique in the reference data (a duplicate would duplicate sessions — and fail the
        # events_conserved check); deduplicating 1M users here would cost a shuffle on every run
        us = users.select(F.col("user_id").cast("int").alias("user_id"), F.col("user_name").cast("string"))
        s = s.join(F.broadcast(us) if broadcast_users else us, "user_id", "left").withColumn(
            "user_name", F.coalesce(F.col("user_name"), inferred_label("users", "user_id")))
    else:
        s = s.withColumn("user_name", F.lit(None).cast("string"))
    duration = elapsed_s("time_start", "time_end")  # real time: 23/25-hour DST days count right
    return s.select(
        F.col("session_id").cast("string").alias("session_id"),
        F.col("user_id").cast("int").alias("user_id"),
        F.col("user_name").cast("string").alias("user_name"),
        F.col("channel_id").cast("int").alias("channel_id"),
        F.col("channel_name").cast("string").alias("channel_name"),
        F.col("time_start").cast("timestamp").alias("time_start"),
        F.col("time_end").cast("timestamp").alias("time_end"),
        duration.cast("bigint").alias("duration_s"),
        (duration == 0).alias("is_zero_length"),
        (F.to_date("time_end") > F.to_date("time_start")).alias("crosses_midnight"),
        F.when(F.size("sources") > 1, F.lit("both")).otherwise(F.element_at("sources", 1)).alias("source"),
        F.col("dt").cast("string").alias("dt"),
    )


def sessions_from_classified(classified: DataFrame, channels: DataFrame | None = None,
                             users: DataFrame | None = None) -> DataFrame:
    """One row per session of classified events, names left-joined; columns as tables.SESSION_COLUMNS + dt."""
    return finish_sessions(pairs_from_classified(classified), channels, users)


def anomalies_from_classified(classified: DataFrame) -> DataFrame:
    """One row per event set aside; columns as tables.ANOMALY_COLUMNS + dt."""
    a = classified.where(F.col("kind") != SESSION)
    return a.select(
        F.col("session_id").cast("string").alias("session_id"),
        F.col("kind").alias("reason"),
        F.col("status").cast("string").alias("status"),
        F.col("timer").cast("timestamp").alias("timer"),
        F.col("user_id").cast("int").alias("user_id"),
        F.col("channel_id").cast("int").alias("channel_id"),
        F.col("source").cast("string").alias("source"),
        F.col("raw_dt").cast("string").alias("raw_dt"),
        F.col("detail").cast("string").alias("detail"),
        F.col("dt").cast("string").alias("dt"),
    )


def session_groups(events: DataFrame, start, end=None) -> DataFrame:
    """One row per session_id among the valid events, attributed to the days start..end (the same anchor as
    :func:`classify_events`): counts of events by status, time_start (earliest enabled), time_end (latest disabled),
    user/channel of the enabled, sources, dt, and ``clean`` — exactly one enabled and one disabled, not before it.
    A clean group is a session as it stands; any other group needs :func:`classify_events`. One hash aggregation,
    no sort: the fast path for the (nearly all) sessions that are fine."""
    days = day_range(start, end)
    enabled = F.col("status") == "enabled"
    disabled = F.col("status") == "disabled"
    valid = events.withColumn("t", ntz("timer")).where(is_valid_event())
    groups = valid.groupBy("session_id").agg(
        F.count(F.lit(1)).alias("n_events"),
        F.count(F.when(enabled, 1)).alias("n_enabled"),
        F.count(F.when(disabled, 1)).alias("n_disabled"),
        F.min(F.when(enabled, F.col("t"))).alias("time_start"),
        F.max(F.when(disabled, F.col("t"))).alias("time_end"),
        F.min("t").alias("t_min"),
        F.max(F.when(enabled, F.col("user_id"))).alias("user_id"),
        F.max(F.when(enabled, F.col("channel_id"))).alias("channel_id"),
        # numeric flags, not min/max of the string: string aggregates force a sort-based aggregation
        *[F.max(F.when(F.col("source") == name, 1).otherwise(0)).alias(f"from_{name}") for name in SOURCES],
    )
    anchor = F.coalesce(F.col("time_start"), F.col("t_min"))
    return (
        groups.withColumn("dt", F.to_date(anchor).cast("string"))
        .where(F.col("dt").between(days[0], days[-1]))
        .withColumn("clean", (F.col("n_enabled") == 1) & (F.col("n_disabled") == 1)
                    & (F.col("time_end") >= F.col("time_start")))
    )


def sessionize(events: DataFrame, start, end=None, channels: DataFrame | None = None,
               users: DataFrame | None = None, cache: bool = False, broadcast_users: bool = False) -> Sessionized:
    """Sessions started on the days ``start``..``end`` (inclusive; one day by default) and the events set aside.

    ``events``: raw events of both sources (:func:`union_sources`) covering at least the raw partitions
    ``start - 1`` .. ``end + 1``; columns session_id, user_id, channel_id, timer, status, source, dt (raw partition).
    ``channels``/``users``: optional reference frames (channel_id, channel_name) / (user_id, user_name).
    ``cache``: persist the groups and the classified suspect events (several actions follow: counts, sessions,
    anomalies) — the raw events are read twice (once aggregated, once for the suspect groups), which costs less than
    caching them; call ``release()`` on the result when done.

    Clean groups (one enabled, one later disabled) become sessions from one aggregation (:func:`session_groups`);
    the events of the other groups, and the invalid events, go through :func:`classify_events` — the same rules, by
    construction the same result as classifying everything, at a fraction of the cost.
    """
    days = day_range(start, end)
    cached = []
    groups = session_groups(events, start, end)
    if cache:
        groups = groups.persist()
        cached.append(groups)
    clean = groups.where(F.col("clean")).select(
        "session_id", "user_id", "channel_id", "time_start", "time_end",
        F.filter(F.array(*[F.when(F.col(f"from_{name}") == 1, F.lit(name)) for name in SOURCES]),
                 lambda x: x.isNotNull()).alias("sources"), "dt",
    )
    flagged = events.withColumn("t", ntz("timer"))
    # invalid events are looked for only in the days' own raw partitions (partition pruning)
    suspect_events = flagged.where(F.col("dt").cast("string").between(days[0], days[-1]) & ~is_valid_event())
    # the events of unclean groups: a second scan of the raw events, skipped when (cached and) there are none
    if not cache or groups.where(~F.col("clean")).limit(1).count() > 0:
        unclean = flagged.where(is_valid_event()).join(
            groups.where(~F.col("clean")).select("session_id"), "session_id", "left_semi")
        suspect_events = unclean.unionByName(suspect_events)
    suspect = classify_events(suspect_events.drop("t"), start, end)
    if cache:
        suspect = suspect.persist()
        cached.append(suspect)
    pairs = clean.unionByName(pairs_from_classified(suspect))
    return Sessionized(
        sessions=finish_sessions(pairs, channels, users, broadcast_users=broadcast_users),
        anomalies=anomalies_from_classified(suspect),
        groups=groups,
        suspect=suspect,
        cached=cached,
    )
