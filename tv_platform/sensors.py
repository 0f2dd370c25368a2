"""The Kafka sensor: turns new offsets of the events topic into runs of ``tv_stream_snapshot``.

Cursor (JSON)::

    {"topic": "<topic>", "epoch": "<id of this cursor's life>", "next": {"<partition>": <next offset>},
     "pending": [[[[partition, start, end], ...], day, attempt], ...]}

Each tick reads the end offsets (last stable offsets: ``read_committed``) and cuts the new offsets of every partition
(bounded by a record and a time budget, so a tick stays well under Dagster's 60 s limit) into contiguous ranges of one
event date — from metadata alone: records carry their event's time as their timestamp, so the broker's time index
(``offsets_for_times`` at each midnight) says where a day ends; only the first record of a new range is read, for its
timestamp, never a payload. Every event is read once, by the landing run — and requests one run per date — all partitions' ranges of that date in one run, so a trickling stream
costs one run per tick, not one per partition; a burst is split into runs of at most MAX_RUN_RECORDS records, which
then land side by side: ``partition_key`` = the date, ``run_config`` = the offset ranges (never payloads),
``run_key`` = ``topic:epoch:partition:start-end[+partition:start-end…]`` — offset ranges never overlap within an
epoch, and a reset cursor starts a new epoch so its keys never collide with the old ones. A requested run stays
*pending* until it succeeds; a failed or canceled run is requested again (``…#retryN``), so a failure leaves its
ranges to be retried, never skipped.
The consumer lag (end offset − next offset, per partition) is recorded as an observation of the topic asset.
"""


import json
import time
import uuid

import dagster as dg
from kafka import TopicPartition

from tv_platform.assets.ingest import kafka_topic, tv_stream_snapshot
from tv_platform.engines.kafka import KafkaResource
from tv_platform.dates import day_start_ms, record_day
from tv_platform.engines.kafka import RangeReader
from tv_platform.partitions import daily
from tv_platform.settings import get_settings
from tv_platform.streaming import DateRange

MAX_RECORDS_PER_TICK = 10_000_000  # offsets handed out a tick (no record is read to hand them out)
MAX_RUN_RECORDS = 500_000  # records per landing run, at most (a run holds its ranges in memory)
TICK_BUDGET_S = 25.0
MAX_PENDING = 500

land_stream_job = dg.define_asset_job(
    "land_kafka_stream",
    selection=dg.AssetSelection.assets(tv_stream_snapshot),
    description="Lands offset ranges of the events topic in HDFS (started by the kafka sensor).",
)


def new_cursor(topic: str) -> dict:
    return {"topic": topic, "epoch": uuid.uuid4().hex[:8], "next": {}, "pending": []}


def load_cursor(raw: str | None, topic: str | None = None) -> dict:
    if not raw:
        return new_cursor(topic or "")
    cursor = json.loads(raw)
    # a cursor from before runs carried several ranges: [partition, start, end, day, attempt]
    cursor["pending"] = [[[e[:3]], e[3], e[4]] if len(e) == 5 else e for e in cursor.get("pending", [])]
    cursor.setdefault("next", {})
    cursor.setdefault("epoch", uuid.uuid4().hex[:8])
    cursor.setdefault("topic", topic or "")
    return cursor


def stale_cursor(cursor: dict, topic: str, end_offsets: dict[int, int]) -> str | None:
    """Why ``cursor`` cannot go on for ``topic`` (None when it can): it was kept for another topic, or a partition's
    next offset lies beyond the partition's end — the topic was deleted and created again, or truncated. Going on
    would skip every new message up to the old offsets, silently; the sensor starts a new cursor instead."""
    if cursor.get("topic") and cursor["topic"] != topic:
        return f"the cursor was kept for topic {cursor['topic']!r}, the sensor now reads {topic!r}"
    beyond = {p: (int(n), end_offsets.get(int(p), 0)) for p, n in cursor["next"].items()
              if int(n) > end_offsets.get(int(p), 0)}
    if beyond:
        return (f"{topic}: next offsets beyond the end of partitions {beyond} (next, end) — the topic was created "
                "again or truncated")
    return None


def run_key(topic: str, epoch: str, ranges: list, attempt: int = 0) -> str:
    key = f"{topic}:{epoch}:" + "+".join(f"{p}:{start}-{end}" for p, start, end in ranges)
    return key if attempt == 0 else f"{key}#retry{attempt}"


def run_request(topic: str, epoch: str, ranges: list, day: str, attempt: int = 0) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key(topic, epoch, ranges, attempt),
        partition_key=day,
        run_config={"ops": {"tv_stream_snapshot": {"config": {
            "topic": topic, "ranges": [{"partition": p, "start": start, "end": end} for p, start, end in ranges]}}}},
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


def _pending_state(instance: dg.DagsterInstance, key: str) -> str:
    """'done', 'failed' or 'running' for the latest run of a run key ('running' also while not yet launched)."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/run_key": key}), limit=1)
    if not runs:
        return "running"
    status = runs[0].status
    if status == dg.DagsterRunStatus.SUCCESS:
        return "done"
    if status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return "failed"
    return "running"


def settle_pending(context: dg.SensorEvaluationContext, cursor: dict, topic: str) -> tuple[list, list]:
    """(run requests, runs still pending) for the runs requested before: the landed ones are dropped, the failed
    ones requested again."""
    requests, still_pending = [], []
    for ranges, day, attempt in cursor["pending"]:
        state = _pending_state(context.instance, run_key(topic, cursor["epoch"], ranges, attempt))
        if state == "failed":
            attempt += 1
            context.log.warning(f"ranges {ranges} ({day}) failed; requesting them again (attempt {attempt})")
            requests.append(run_request(topic, cursor["epoch"], ranges, day, attempt))
        if state != "done":
            still_pending.append([ranges, day, attempt])
    return requests, still_pending


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
                       deadline: float, requests: list, pending: list) -> dict[str, int]:
    """Cut the offsets after the cursor (at most MAX_RECORDS_PER_TICK, until ``deadline``) into ranges of one event
    date (``cut_by_timestamp``: the kafka-python ``consumer``'s ``offsets_for_times``, the ``reader`` for a range's
    first timestamp), pack them into runs (one date each, at most MAX_RUN_RECORDS records), append a run request and a
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
    for day, ranges in pack_runs(split_ranges(found, MAX_RUN_RECORDS), MAX_RUN_RECORDS):
        requests.append(run_request(tps[0].topic, cursor["epoch"], ranges, day))
        pending.append([ranges, day, 0])
    return lag


@dg.sensor(
    job=land_stream_job,
    minimum_interval_seconds=get_settings().kafka_sensor_interval,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Consumes the Kafka events topic: requests landing runs of offset ranges, one event date per run.",
)
def kafka_events_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    started = time.monotonic()
    topic = kafka.topic
    cursor = load_cursor(context.cursor, topic)
    with kafka.consumer() as consumer, kafka.reader(topic) as reader:  # offsets, then the new records
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        begin = consumer.beginning_offsets(tps) if tps else {}
        end_offsets = consumer.end_offsets(tps) if tps else {}
        why = stale_cursor(cursor, topic, {tp.partition: o for tp, o in end_offsets.items()})
        if why:
            context.log.warning(f"{why}; starting a new cursor (new epoch) from the beginning of {topic}"
                                + (f", dropping {len(cursor['pending'])} pending ranges" if cursor["pending"] else ""))
            cursor = new_cursor(topic)
        requests, still_pending = settle_pending(context, cursor, topic)
        lag = request_new_ranges(consumer, reader, cursor, tps, begin, end_offsets, deadline=started + TICK_BUDGET_S,
                                 requests=requests, pending=still_pending)

    if len(still_pending) > MAX_PENDING:
        context.log.warning(f"{len(still_pending)} ranges pending; keeping the newest {MAX_PENDING}")
        still_pending = still_pending[-MAX_PENDING:]
    cursor["pending"] = still_pending
    observation = dg.AssetObservation(
        asset_key=kafka_topic.key,
        metadata={
            "consumer_lag": dg.MetadataValue.int(sum(lag.values())),
            "lag_by_partition": dg.MetadataValue.json(lag),
            "next_offsets": dg.MetadataValue.json(cursor["next"]),
            "pending_ranges": dg.MetadataValue.int(len(still_pending)),
        },
    )
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor), asset_events=[observation])


sensors = [kafka_events_sensor]
jobs = [land_stream_job]
