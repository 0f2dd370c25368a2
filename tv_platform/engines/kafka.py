"""Kafka: the resource every Kafka-facing piece uses, and the producer behind ``tv-platform produce``.

Events are JSON objects ``{session_id, user_id, channel_id, timer, status}`` keyed by ``session_id`` (so both events of a
session land in one partition, in order), sent with ``acks=all`` and batching.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import contextmanager
from datetime import date, datetime
from typing import Iterable, Iterator

import dagster as dg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.serializer import Serializer

EVENT_FIELDS = ("session_id", "user_id", "channel_id", "timer", "status")


class Utf8Serializer(Serializer):
    def serialize(self, topic, headers, value):
        return None if value is None else value.encode("utf-8")


class JsonSerializer(Serializer):
    """Compact JSON, non-ASCII kept as UTF-8 (channel names are Cyrillic)."""

    def serialize(self, topic, headers, value):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class KafkaResource(dg.ConfigurableResource):
    """Connection to the Kafka cluster holding the live viewing events."""

    bootstrap_servers: str
    topic: str
    partitions: int = 3
    request_timeout_ms: int = 10_000

    def with_topic(self, topic: str) -> "KafkaResource":
        """The same cluster, another topic (a new resource: Dagster rebuilds resources from their config)."""
        return KafkaResource(**{**self.model_dump(), "topic": topic})

    def admin(self) -> KafkaAdminClient:
        return KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, request_timeout_ms=self.request_timeout_ms,
                                client_id="tv_platform-admin")

    def ensure_topic(self, topic: str | None = None, partitions: int | None = None) -> None:
        admin = self.admin()
        try:
            admin.create_topics([NewTopic(topic or self.topic, partitions or self.partitions, 1)])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()

    def producer(self, **overrides) -> KafkaProducer:
        config = dict(
            bootstrap_servers=self.bootstrap_servers,
            acks="all",
            linger_ms=20,
            batch_size=512 * 1024,
            compression_type=None,
            key_serializer=Utf8Serializer(),
            value_serializer=JsonSerializer(),
            client_id="tv_platform-producer",
        )
        config.update(overrides)
        return KafkaProducer(**config)

    @contextmanager
    def consumer(self) -> Iterator[KafkaConsumer]:
        """A consumer with no group: offsets are managed by the sensor's cursor, never committed."""
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            request_timeout_ms=max(self.request_timeout_ms, 11_000),
            consumer_timeout_ms=5_000,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            client_id="tv_platform-consumer",
        )
        try:
            yield consumer
        finally:
            consumer.close()

    def offsets(self, topic: str | None = None) -> tuple[dict[int, int], dict[int, int]]:
        """(beginning, end) offsets per partition of the topic."""
        topic = topic or self.topic
        with self.consumer() as consumer:
            parts = consumer.partitions_for_topic(topic) or set()
            tps = [TopicPartition(topic, p) for p in sorted(parts)]
            begin = consumer.beginning_offsets(tps) if tps else {}
            end = consumer.end_offsets(tps) if tps else {}
        return ({tp.partition: o for tp, o in begin.items()}, {tp.partition: o for tp, o in end.items()})

    def read_range(self, partition: int, start: int, end: int, timeout_s: float = 60.0, topic: str | None = None):
        """Exactly the records with start <= offset < end of one partition (assign + seek); raises if they can't all be read."""
        topic = topic or self.topic
        tp = TopicPartition(topic, partition)
        records = []
        if end <= start:
            return records
        with self.consumer() as consumer:
            consumer.assign([tp])
            consumer.seek(tp, start)
            deadline = time.monotonic() + timeout_s
            position = start
            while position < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"read {topic}[{partition}] offsets {start}..{end}: stuck at {position} after {timeout_s:.0f}s"
                    )
                batch = consumer.poll(timeout_ms=1000, max_records=5000)
                for rec in batch.get(tp, []):
                    if rec.offset >= end:
                        position = end
                        break
                    if rec.offset < position:
                        continue
                    records.append(rec)
                    position = rec.offset + 1
                if position < end and not batch:
                    # offsets can be skipped (transaction markers, compaction): trust the consumer position
                    current = consumer.position(tp)
                    if current is not None and current >= end:
                        position = end
        return records


# ---------------------------------------------------------------------------------------------------------------------
# producer
# ---------------------------------------------------------------------------------------------------------------------
def event_to_json(event: dict) -> dict:
    """Normalise one event for the wire: timer as 'YYYY-MM-DD HH:MM:SS', ints as ints."""
    timer = event["timer"]
    if isinstance(timer, (datetime,)) or hasattr(timer, "strftime"):
        timer = timer.strftime("%Y-%m-%d %H:%M:%S")
    return {
        "session_id": str(event["session_id"]),
        "user_id": int(event["user_id"]),
        "channel_id": int(event["channel_id"]),
        "timer": str(timer),
        "status": str(event["status"]),
    }


def publish(kafka: KafkaResource, events: Iterable[dict], total: int | None = None, rate: float | None = None,
            progress: bool = True, raw: bool = False) -> int:
    """Send events (dicts) to the topic; ``rate`` limits events/s. Returns how many were acknowledged.

    ``raw=True`` sends the dicts as they are (tests use it to publish malformed events)."""
    from tqdm import tqdm

    producer = kafka.producer()
    sent = 0
    t0 = time.monotonic()
    bar = tqdm(total=total, unit="ev", disable=not progress, desc=f"produce {kafka.topic}")
    try:
        for event in events:
            value = event if raw else event_to_json(event)
            key = str(value.get("session_id", "")) if isinstance(value, dict) else ""
            producer.send(kafka.topic, key=key, value=value)
            sent += 1
            if sent % 1000 == 0:
                bar.update(1000)
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        producer.flush(timeout=120)
        bar.update(sent % 1000)
    finally:
        bar.close()
        producer.close(timeout=30)
    return sent


def add_produce_parser(sub) -> None:
    p = sub.add_parser("produce", help="publish viewing events to Kafka (simulated live, or --replay a recorded CSV)")
    p.add_argument("--count", type=int, help="number of events (default: the whole simulated day)")
    p.add_argument("--duration", type=float, help="seconds to keep producing (with --rate)")
    p.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    p.add_argument("--date", type=date.fromisoformat, default=None, help="day to simulate (default: today)")
    p.add_argument("--users", type=int, default=None, help="simulated subscribers (default: TVP_SIM_USERS)")
    p.add_argument("--seed", type=int, default=None, help="simulator seed (default: TVP_SIM_SEED)")
    p.add_argument("--topic", default=None, help="topic (default: TVP_KAFKA_TOPIC)")
    p.add_argument("--replay", metavar="FILE.csv", help="publish a recorded CSV (session_id,user_id,channel_id,timer,status) in timer order")
    p.add_argument("--no-progress", action="store_true")


def produce_command(args: argparse.Namespace) -> int:
    from itertools import islice

    from tv_platform.resources import kafka_resource
    from tv_platform.settings import get_settings
    from tv_platform.simulator.live import live_events, read_recorded
    from tv_platform.simulator.model import SimulationParams

    settings = get_settings()
    kafka = kafka_resource(settings)
    if args.topic:
        kafka = kafka.with_topic(args.topic)
    kafka.ensure_topic()
    if args.replay:
        frame = read_recorded(args.replay)
        events: Iterable[dict] = frame.to_dict("records")
        total = len(frame)
    else:
        params = SimulationParams(users=args.users or settings.sim_users, seed=args.seed if args.seed is not None else settings.sim_seed)
        events = live_events(args.date or date.today(), params, count=args.count)
        total = args.count
    if args.count:
        events = islice(events, args.count)
        total = min(total, args.count) if total else args.count
    if args.duration:
        events = _for_seconds(events, args.duration)
    t0 = time.monotonic()
    sent = publish(kafka, events, total=total, rate=args.rate, progress=not args.no_progress)
    elapsed = time.monotonic() - t0
    print(f"produced {sent} events to {kafka.topic} in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):,.0f} events/s)")
    return 0


def _for_seconds(events: Iterable[dict], seconds: float) -> Iterator[dict]:
    stop = time.monotonic() + seconds
    for event in events:
        if time.monotonic() > stop:
            return
        yield event
