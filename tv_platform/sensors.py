"""The Kafka sensor: turns new offsets of the events topic into runs of ``tv_stream_snapshot``.

Cursor (JSON)::

    {"topic": "<topic>", "epoch": "<id of this cursor's life>", "next": {"<partition>": <next offset>},
     "pending": [[[[partition, start, end], ...], day, attempt, retry_at], ...], "topic_id": "<topic id>"}

Each tick reads the end offsets (last stable offsets: ``read_committed``) and cuts the new offsets of every partition
(bounded by a record and a time budget, so a tick stays well under Dagster's 60 s limit) into contiguous ranges of one
event date — from metadata alone: records carry their event's time as their timestamp, so the broker's time index
(``offsets_for_times`` at each midnight) says where a day ends; only the first record of a new range is read, for its
timestamp, never a payload; every event is read once, by the landing run. It requests one run per date — all
partitions' ranges of that date in one run, so a trickling stream costs one run per tick, not one per partition; a backlog is split into runs of at most ``TVP_LANDING_RUN_RECORDS`` records, which
then land side by side: ``partition_key`` = the date, ``run_config`` = the offset ranges (never payloads),
``run_key`` = ``topic:epoch:partition:start-end[+partition:start-end…]`` — offset ranges never overlap within an
epoch, and a reset cursor starts a new epoch so its keys never collide with the old ones. A requested run stays
*pending* until it succeeds — there is no cap on how many: nothing pending is ever dropped. A failed or canceled run
(also one whose process died: run monitoring marks it failed) is requested again (``…#retryN``) after a backoff
(``TVP_LANDING_RETRY_BACKOFF`` seconds, doubling, at most MAX_BACKOFF_S); after ``TVP_LANDING_MAX_ATTEMPTS`` runs its
ranges become a *dead letter*: a file in the lake (``tv_platform.quarantine``) with the reason, which the
``no_dead_letters`` check of the topic reports failing and ``tv-platform quarantine list|replay`` shows and re-lands.
The cursor also names the topic's id: a topic deleted and created again (a new id) starts a new cursor, and the old
incarnation's pending ranges — their messages are gone — become dead letters.
The consumer lag (end offset − next offset, per partition) is recorded as an observation of the topic asset.
"""


import json
import time
import uuid

import dagster as dg
from kafka import TopicPartition

from tv_platform import quarantine
from tv_platform.assets.ingest import kafka_topic, tv_stream_snapshot
from tv_platform.engines.hdfs import LakeResource
from tv_platform.dates import day_start_ms, record_day
from tv_platform.engines.kafka import KafkaResource, RangeReader
from tv_platform.partitions import daily
from tv_platform.location import settings as location_settings
from tv_platform.settings import get_settings
from tv_platform.streaming import DateRange

MAX_RECORDS_PER_TICK = 10_000_000  # offsets handed out a tick (no record is read to hand them out)
TICK_BUDGET_S = 25.0
MAX_BACKOFF_S = 900  # retries of a failing range wait 30 s, 60 s, 120 s … at most 15 min

land_stream_job = dg.define_asset_job(
    "land_kafka_stream",
    selection=dg.AssetSelection.assets(tv_stream_snapshot),
    description="Lands offset ranges of the events topic in HDFS (started by the kafka sensor).",
    # run monitoring fails a run past this (a hung or orphaned run); the sensor then retries its ranges
    tags={"dagster/max_runtime": str(location_settings.landing_max_runtime)},
)


def new_cursor(topic: str, topic_id: str = "") -> dict:
    return {"topic": topic, "topic_id": topic_id, "epoch": uuid.uuid4().hex[:8], "next": {}, "pending": []}


def load_cursor(raw: str | None, topic: str | None = None) -> dict:
    """The cursor; a pending entry is ``[ranges, day, attempt, retry_at]`` (``retry_at``: when a failed run may be
    requested again, epoch seconds; 0 = its run was requested)."""
    if not raw:
        return new_cursor(topic or "")
    cursor = json.loads(raw)
    # a cursor from before runs carried several ranges: [partition, start, end, day, attempt]
    cursor["pending"] = [[[e[:3]], e[3], e[4]] if len(e) == 5 else e for e in cursor.get("pending", [])]
    cursor["pending"] = [[*e, 0] if len(e) == 3 else e for e in cursor["pending"]]  # … and before backoff
    cursor.setdefault("next", {})
    cursor.setdefault("epoch", uuid.uuid4().hex[:8])
    cursor.setdefault("topic", topic or "")
    cursor.setdefault("topic_id", "")
    return cursor


def stale_cursor(cursor: dict, topic: str, end_offsets: dict[int, int], topic_id: str = "") -> str | None:
    """Why ``cursor`` cannot go on for ``topic`` (None when it can): it was kept for another topic or another
    incarnation of it (topic id), or a partition's next offset lies beyond the partition's end — the topic was deleted
    and created again, or truncated. Going on would skip every new message up to the old offsets, silently; the
    sensor starts a new cursor instead."""
    if cursor.get("topic") and cursor["topic"] != topic:
        return f"the cursor was kept for topic {cursor['topic']!r}, the sensor now reads {topic!r}"
    if cursor.get("topic_id") and topic_id and cursor["topic_id"] != topic_id:
        return f"{topic} was deleted and created again (topic id {cursor['topic_id']}, now {topic_id})"
    beyond = {p: (int(n), end_offsets.get(int(p), 0)) for p, n in cursor["next"].items()
              if int(n) > end_offsets.get(int(p), 0)}
    if beyond:
        return (f"{topic}: next offsets beyond the end of partitions {beyond} (next, end) — the topic was created "
                "again or truncated")
    return None


def run_key(topic: str, epoch: str, ranges: list, attempt: int = 0) -> str:
    key = f"{topic}:{epoch}:" + "+".join(f"{p}:{start}-{end}" for p, start, end in ranges)
    return key if attempt == 0 else f"{key}#retry{attempt}"


def run_request(topic: str, epoch: str, ranges: list, day: str, attempt: int = 0, topic_id: str = "") -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key(topic, epoch, ranges, attempt),
        partition_key=day,
        run_config={"ops": {"tv_stream_snapshot": {"config": {
            "topic": topic, "topic_id": topic_id,
            "ranges": [{"partition": p, "start": start, "end": end} for p, start, end in ranges]}}}},
        tags={"tv_platform/kafka_ranges": " ".join(f"{p}:{start}-{end}" for p, start, end in ranges)},
    )


def pack_runs(ranges: list[DateRange], most: int) -> list[tuple[str, list]]:
    """Group date ranges into runs: (day, [[partition, start, end], ...]), one day per run, at most ``most`` records
    a run (a range is never split here: ``split_ranges`` made them at most one run's worth), days and ranges in
    the order met."""
    runs: list[tuple[str, list]] = []
    open_run: dict[str, tuple[list, int]] = {}
    for r in ranges:
        size = r.end - r.start
        members, total = open_run.get(r.day, (None, 0))
        if members is None or total + size > most:
            members, total = [], 0
            runs.append((r.day, members))
        members.append([r.partition, r.start, r.end])
        open_run[r.day] = (members, total + size)
    return runs


def _latest_run(instance: dg.DagsterInstance, key: str):
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=1)
    return runs[0] if runs else None


def _pending_state(run) -> str:
    """'done', 'failed' or 'running' for the latest run of a run key ('running' also while not yet launched)."""
    if run is None:
        return "running"
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return "done"
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return "failed"
    return "running"


def _failure_reason(instance: dg.DagsterInstance, run) -> str:
    """Why a run failed, in one line: its step's error, else the run's failure message."""
    records = instance.get_records_for_run(
        run.run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}).records
    for record in records:
        event = record.event_log_entry.dagster_event
        error = getattr(getattr(event, "event_specific_data", None), "error", None)
        if error is not None:
            return f"{error.cls_name}: {error.message.strip()}"[:500]
    for record in records:
        if record.event_log_entry.message:
            return record.event_log_entry.message[:500]
    return f"run {run.status.value.lower()}"


def backoff_s(attempt: int, base: int | None = None) -> int:
    """Seconds to wait before attempt ``attempt`` (1 = the first retry): base, 2·base, 4·base … at most MAX_BACKOFF_S."""
    base = get_settings().landing_retry_backoff if base is None else base
    return int(min(base * 2 ** max(attempt - 1, 0), MAX_BACKOFF_S))


def settle_pending(context: dg.SensorEvaluationContext, cursor: dict, topic: str, lake: LakeResource | None = None,
                   now: float | None = None) -> tuple[list, list, list]:
    """(run requests, runs still pending, new dead letters) for the runs requested before: the landed ones are
    dropped; a failed one is requested again once its backoff has passed, or, after the last attempt, written to the
    lake as a dead letter (never dropped silently)."""
    settings = get_settings()
    now = time.time() if now is None else now
    requests, still_pending, dead = [], [], []
    for ranges, day, attempt, retry_at in cursor["pending"]:
        if retry_at:  # failed before, waiting out its backoff
            if now < retry_at:
                still_pending.append([ranges, day, attempt, retry_at])
            else:
                requests.append(run_request(topic, cursor["epoch"], ranges, day, attempt, cursor.get("topic_id", "")))
                still_pending.append([ranges, day, attempt, 0])
            continue
        run = _latest_run(context.instance, run_key(topic, cursor["epoch"], ranges, attempt))
        state = _pending_state(run)
        if state == "running":
            still_pending.append([ranges, day, attempt, 0])
        elif state == "failed":
            reason = _failure_reason(context.instance, run)
            if attempt + 1 >= settings.landing_max_attempts:
                letter = quarantine.dead_letter(cursor, ranges, day, attempt + 1, reason, run.run_id)
                if lake is not None:
                    quarantine.write_dead_letter(lake, letter)
                context.log.error(f"ranges {ranges} ({day}) failed {attempt + 1} times; dead letter: {reason}")
                dead.append(letter)
                continue
            attempt += 1
            wait = backoff_s(attempt, settings.landing_retry_backoff)
            context.log.warning(f"ranges {ranges} ({day}) failed ({reason}); attempt {attempt + 1} of "
                                f"{settings.landing_max_attempts} in {wait} s")
            if wait <= 0:
                requests.append(run_request(topic, cursor["epoch"], ranges, day, attempt, cursor.get("topic_id", "")))
                still_pending.append([ranges, day, attempt, 0])
            else:
                still_pending.append([ranges, day, attempt, now + wait])
    return requests, still_pending, dead


def share_budget(backlog: dict, budget: int) -> dict:
    """How many new records to read from each partition this tick: all of a partition's backlog if it fits in a fair
    share of ``budget``, and what the smaller backlogs leave over shared evenly by the bigger ones."""
    out, left = {}, budget
    ordered = sorted(backlog.items(), key=lambda kv: kv[1])
    for i, (key, wanted) in enumerate(ordered):
        out[key] = max(min(wanted, left // (len(ordered) - i)), 0)
        left -= out[key]
    return out


def next_day(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def cut_by_timestamp(partition: int, start: int, stop: int, first_timestamp: int, find, days: list[str]
                     ) -> list[DateRange]:
    """Cut the offsets [start, stop) of one partition into contiguous ranges of one day, from record timestamps.

    ``first_timestamp`` is the timestamp of the first record at or after ``start``; ``find(ts)`` gives (offset,
    timestamp) of the first record of the partition with a timestamp >= ts, or None (Kafka's ``offsets_for_times``:
    the broker's time index, no payload read). Each range ends where the next day's first record sits; a day outside
    the partitions ``days`` (sorted) is taken as the nearest one, and neighbours of one day are merged. Every offset
    belongs to exactly one range: no gaps, no overlaps. Records out of timestamp order are landed with the range they
    sit in (validation quarantines an event of another date with its reason)."""
    def clamp(day: str) -> str:
        return min(max(day, days[0]), days[-1])

    out: list[DateRange] = []
    position, day = start, record_day(first_timestamp)
    while position < stop:
        hit = find(day_start_ms(next_day(day)))
        cut = stop if hit is None else min(max(hit[0], position), stop)
        if cut > position:
            label = clamp(day)
            if out and out[-1].day == label:
                out[-1] = DateRange(partition, out[-1].start, cut, label)
            else:
                out.append(DateRange(partition, position, cut, label))
            position = cut
        if hit is None:
            break
        day = max(record_day(hit[1]), next_day(day))  # strictly later: the loop ends
    return out


def split_ranges(ranges: list[DateRange], most: int) -> list[DateRange]:
    """Ranges of at most ``most`` offsets (a run holds its ranges in memory)."""
    return [DateRange(r.partition, lo, min(lo + most, r.end), r.day)
            for r in ranges for lo in range(r.start, r.end, most)]


def first_at_or_after(consumer, reader: RangeReader, tp, ts: int, lo: int, stop: int, deadline: float):
    """(offset, timestamp) of the first record in [lo, stop) stamped ``ts`` or later, None when there is none.

    The broker's time index answers (``offsets_for_times``); the record it points at is read to confirm it, because
    the index also counts transaction markers, stamped when they were written, and records stamped out of order. Only
    then are the records after it read, up to the first one that really is that late."""
    import numpy as np

    hit = consumer.offsets_for_times({tp: ts}).get(tp)
    if hit is None:
        return None
    at, limit = max(hit.offset, lo), 1
    while at < stop:
        records, reached = reader.read(tp.partition, at, stop, max(deadline, time.monotonic() + 10), limit=limit)
        later = np.flatnonzero(records.timestamps >= ts)
        if len(later):
            return int(records.offsets[later[0]]), int(records.timestamps[later[0]])
        if reached <= at:
            break
        at, limit = reached, 50_000
    return None


def request_new_ranges(consumer, reader: RangeReader, cursor: dict, tps: list, begin: dict, end_offsets: dict,
                       deadline: float, requests: list, pending: list, most: int) -> dict[str, int]:
    """Cut the offsets after the cursor (at most MAX_RECORDS_PER_TICK, until ``deadline``) into ranges of one event
    date (``cut_by_timestamp``: the kafka-python ``consumer``'s ``offsets_for_times``, the ``reader`` for a range's
    first timestamp), pack them into runs (one date each, at most ``most`` records), append a run request and a
    pending entry per run, advance the cursor. Returns the lag per partition."""
    days = sorted(daily.get_partition_keys())
    starts = {tp: max(int(cursor["next"].get(str(tp.partition), begin[tp])), begin[tp]) for tp in tps}
    allowed = share_budget({tp: end_offsets[tp] - starts[tp] for tp in tps}, MAX_RECORDS_PER_TICK)
    lag: dict[str, int] = {}
    found: list = []
    for tp in tps:
        position, stop = starts[tp], starts[tp] + allowed[tp]
        if position < stop and time.monotonic() < deadline:
            first, reached = reader.read(tp.partition, position, stop, max(deadline, time.monotonic() + 5), limit=1)
            if len(first):
                def find(ts, tp=tp, lo=position, stop=stop):
                    return first_at_or_after(consumer, reader, tp, ts, lo, stop, deadline)

                found += cut_by_timestamp(tp.partition, position, stop, int(first.timestamps[0]), find, days)
                position = stop
            else:
                position = reached  # only aborted records and transaction markers up to there: nothing to land
        cursor["next"][str(tp.partition)] = position
        lag[str(tp.partition)] = max(end_offsets[tp] - position, 0)
    for day, ranges in pack_runs(split_ranges(found, most), most):
        requests.append(run_request(tps[0].topic, cursor["epoch"], ranges, day, topic_id=cursor.get("topic_id", "")))
        pending.append([ranges, day, 0, 0])
    return lag


@dg.sensor(
    job=land_stream_job,
    minimum_interval_seconds=location_settings.kafka_sensor_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Consumes the Kafka events topic: requests landing runs of offset ranges, one event date per run.",
)
def kafka_events_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource,
                        lake: LakeResource) -> dg.SensorResult:
    started = time.monotonic()
    topic = kafka.topic
    cursor = load_cursor(context.cursor, topic)
    dead: list = []
    with kafka.consumer() as consumer, kafka.reader(topic, peek=True) as reader:  # offsets, then a few records
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        begin = consumer.beginning_offsets(tps) if tps else {}
        end_offsets = consumer.end_offsets(tps) if tps else {}
        topic_id = kafka.topic_id(topic) if tps else ""
        why = stale_cursor(cursor, topic, {tp.partition: o for tp, o in end_offsets.items()}, topic_id)
        if why:
            # the old incarnation's messages are gone: what was pending becomes dead letters, with the reason
            for ranges, day, attempt, _ in cursor["pending"]:
                letter = quarantine.dead_letter(cursor, ranges, day, attempt, f"never landed: {why}", "")
                quarantine.write_dead_letter(lake, letter)
                dead.append(letter)
            context.log.warning(f"{why}; starting a new cursor (new epoch) from the beginning of {topic}"
                                + (f"; {len(dead)} pending ranges are dead letters" if dead else ""))
            cursor = new_cursor(topic, topic_id)
        cursor["topic_id"] = cursor.get("topic_id") or topic_id
        requests, still_pending, failed = settle_pending(context, cursor, topic, lake)
        dead += failed
        lag = request_new_ranges(consumer, reader, cursor, tps, begin, end_offsets, deadline=started + TICK_BUDGET_S,
                                 requests=requests, pending=still_pending, most=get_settings().landing_run_records)

    cursor["pending"] = still_pending
    events: list = [dg.AssetObservation(
        asset_key=kafka_topic.key,
        metadata={
            "consumer_lag": dg.MetadataValue.int(sum(lag.values())),
            "lag_by_partition": dg.MetadataValue.json(lag),
            "next_offsets": dg.MetadataValue.json(cursor["next"]),
            "pending_ranges": dg.MetadataValue.int(len(still_pending)),
            "retrying_ranges": dg.MetadataValue.int(sum(1 for e in still_pending if e[2] > 0)),
        },
    )]
    if dead or "dead_letters" not in cursor:  # the check's state, whenever it may have changed
        letters = quarantine.dead_letters(lake)
        cursor["dead_letters"] = len(letters)
        events.append(quarantine.dead_letter_evaluation(letters))
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor), asset_events=events)


sensors = [kafka_events_sensor]
jobs = [land_stream_job]
