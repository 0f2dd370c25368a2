"""The Kafka sensor: turns new offsets of the events topic into runs of ``tv_stream_snapshot``.

Cursor (JSON)::

    {"epoch": "<id of this cursor's life>", "next": {"<partition>": <next offset>},
     "pending": [[partition, start, end, day, attempt], ...]}

Each tick reads the end offsets, reads the new records of every partition (bounded by a record and a time budget, so a
tick stays well under Dagster's 60 s limit; polls always have timeouts), cuts them into contiguous ranges of one event
date, and requests one run per range: ``partition_key`` = the date, ``run_config`` = the offset range (never payloads),
``run_key`` = ``topic:epoch:partition:start-end`` — unique across partitions, and a reset cursor starts a new epoch so
its keys never collide with the old ones. A requested range stays *pending* until its run succeeds; a failed or
canceled run is requested again (``…#retryN``), so a failure leaves its range to be retried, never skipped.
The consumer lag (end offset − next offset, per partition) is recorded as an observation of the topic asset.
"""


import json
import time
import uuid

import dagster as dg
from kafka import TopicPartition

from tv_platform.assets.ingest import kafka_topic, tv_stream_snapshot
from tv_platform.engines.kafka import KafkaResource
from tv_platform.partitions import daily
from tv_platform.streaming import Message, cut_by_date

MAX_RECORDS_PER_TICK = 200_000
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
    cursor.setdefault("pending", [])
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


def run_key(topic: str, epoch: str, partition: int, start: int, end: int, attempt: int = 0) -> str:
    key = f"{topic}:{epoch}:{partition}:{start}-{end}"
    return key if attempt == 0 else f"{key}#retry{attempt}"


def run_request(topic: str, epoch: str, partition: int, start: int, end: int, day: str, attempt: int = 0) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=run_key(topic, epoch, partition, start, end, attempt),
        partition_key=day,
        run_config={"ops": {"tv_stream_snapshot": {"config": {
            "topic": topic, "ranges": [{"partition": partition, "start": start, "end": end}]}}}},
        tags={"tv_platform/kafka_range": f"{partition}:{start}-{end}"},
    )


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


@dg.sensor(
    job=land_stream_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Consumes the Kafka events topic: requests one landing run per offset range and event date.",
)
def kafka_events_sensor(context: dg.SensorEvaluationContext, kafka: KafkaResource) -> dg.SensorResult:
    started = time.monotonic()
    topic = kafka.topic
    cursor = load_cursor(context.cursor, topic)
    with kafka.consumer() as consumer:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
        tps = [TopicPartition(topic, p) for p in parts]
        begin = consumer.beginning_offsets(tps) if tps else {}
        end_offsets = consumer.end_offsets(tps) if tps else {}
    why = stale_cursor(cursor, topic, {tp.partition: o for tp, o in end_offsets.items()})
    if why:
        context.log.warning(f"{why}; starting a new cursor (new epoch) from the beginning of {topic}"
                            + (f", dropping {len(cursor['pending'])} pending ranges" if cursor["pending"] else ""))
        cursor = new_cursor(topic)
    epoch = cursor["epoch"]
    requests: list[dg.RunRequest] = []

    # 1. ranges requested before: drop the landed ones, request the failed ones again
    still_pending = []
    for partition, start, end, day, attempt in cursor["pending"]:
        state = _pending_state(context.instance, run_key(topic, epoch, partition, start, end, attempt))
        if state == "failed":
            attempt += 1
            context.log.warning(f"range {partition}:{start}-{end} ({day}) failed; requesting it again (attempt {attempt})")
            requests.append(run_request(topic, epoch, partition, start, end, day, attempt))
        if state != "done":
            still_pending.append([partition, start, end, day, attempt])

    # 2. new records
    valid_days = set(daily.get_partition_keys())
    lag: dict[str, int] = {}
    budget = MAX_RECORDS_PER_TICK
    with kafka.consumer() as consumer:
        for tp in tps:
            p = tp.partition
            start = max(int(cursor["next"].get(str(p), begin[tp])), begin[tp])
            end = end_offsets[tp]
            if end <= start or budget <= 0 or time.monotonic() - started > TICK_BUDGET_S:
                lag[str(p)] = max(end - start, 0)
                cursor["next"][str(p)] = start
                continue
            stop = min(end, start + budget)
            consumer.assign([tp])
            consumer.seek(tp, start)
            messages: list[Message] = []
            position = start
            while position < stop and time.monotonic() - started < TICK_BUDGET_S:
                batch = consumer.poll(timeout_ms=1000, max_records=10_000).get(tp, [])
                if not batch:
                    pos = consumer.position(tp)
                    if pos is not None and pos >= stop:
                        break
                    continue
                for rec in batch:
                    if rec.offset >= stop:
                        break
                    messages.append(Message(rec.partition, rec.offset, rec.value, rec.timestamp))
                position = batch[-1].offset + 1
            if not messages:
                lag[str(p)] = end - start
                continue
            # a range ends where the messages read end (a tick that ran out of time continues next tick)
            range_end = min(stop, messages[-1].offset + 1) if position < stop else stop
            fallback = time.strftime("%Y-%m-%d", time.localtime(messages[0].timestamp_ms / 1000))
            for r in cut_by_date(p, messages, range_end, valid_days, fallback_day=fallback
                                 if fallback in valid_days else max(valid_days)):
                requests.append(run_request(topic, epoch, r.partition, r.start, r.end, r.day))
                still_pending.append([r.partition, r.start, r.end, r.day, 0])
            cursor["next"][str(p)] = range_end
            budget -= range_end - start
            lag[str(p)] = end - range_end

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
