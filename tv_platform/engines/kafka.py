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
from typing import TYPE_CHECKING, Iterable, Iterator

import dagster as dg
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError
from kafka.serializer import Serializer

from tv_platform.engines.kafka_wire import BatchWriter, RangeReader
from tv_platform.streaming import Records

if TYPE_CHECKING:
    import pyarrow as pa

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

    def topic_id(self, topic: str | None = None) -> str:
        """The topic's id (a UUID Kafka gives each incarnation of a topic: a topic deleted and created again has a new
        one); "" when the topic does not exist."""
        admin = self.admin()
        try:
            (meta,) = admin.describe_topics([topic or self.topic])
        finally:
            admin.close()
        return "" if meta.get("error_code") else str(meta.get("topic_id") or "")

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

    def reader(self, topic: str | None = None) -> RangeReader:
        """A reader of offset ranges (Fetch requests straight to the partition leaders, records decoded column-wise:
        see ``engines/kafka_wire.py``); use it as a context manager."""
        return RangeReader(self.bootstrap_servers, topic or self.topic,
                           timeout_s=max(self.request_timeout_ms, 11_000) / 1000)

    def writer(self, topic: str | None = None) -> BatchWriter:
        """A writer of record batches (Produce requests straight to the partition leaders, batches encoded
        column-wise: see ``engines/kafka_wire.py``); use it as a context manager."""
        return BatchWriter(self.bootstrap_servers, topic or self.topic,
                           timeout_s=max(self.request_timeout_ms, 30_000) / 1000)

    def read_range(self, partition: int, start: int, end: int, timeout_s: float = 60.0,
                   topic: str | None = None) -> Records:
        """Exactly the records with start <= offset < end of one partition; raises if they can't all be read within
        ``timeout_s``."""
        with self.reader(topic) as reader:
            return reader.read_exactly(partition, start, end, timeout_s)


# ---------------------------------------------------------------------------------------------------------------------
# producer
# ---------------------------------------------------------------------------------------------------------------------
# kafka-python does everything per record in Python; what can be done for all records at once is done here instead:
# the JSON values and keys are built column-wise (Arrow string kernels), the partition of every key is computed with a
# vectorised murmur2 (the same function as Kafka's default partitioner, Java's and kafka-python's), and the records are
# sent by one producer process per core, each owning a share of the partitions — so a partition's events still come
# from one producer, in order, and both events of a session (same key) still land in one partition.

_MURMUR_SEED = 0x9747B28C
_MURMUR_M = 0x5BD1E995


def murmur2_partitions(keys: "list[bytes]", partitions: int):
    """The partition Kafka's default partitioner picks for each key: ``(murmur2(key) & 0x7fffffff) % partitions``.

    Vectorised over keys of equal length (one numpy pass per distinct length)."""
    import numpy as np

    out = np.empty(len(keys), dtype=np.int64)
    if not keys:
        return out
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    m = np.uint32(_MURMUR_M)
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        length = int(length)
        data = np.frombuffer(b"".join(keys[i] for i in idx), dtype=np.uint8).reshape(len(idx), length)
        h = np.full(len(idx), (_MURMUR_SEED ^ length) & 0xFFFFFFFF, dtype=np.uint32)
        words = length // 4
        if words:
            blocks = np.ascontiguousarray(data[:, : words * 4]).view("<u4")
            for w in range(words):
                k = blocks[:, w] * m
                k ^= k >> np.uint32(24)
                k *= m
                h *= m
                h ^= k
        tail = data[:, words * 4:].astype(np.uint32)
        extra = length % 4
        if extra >= 3:
            h ^= tail[:, 2] << np.uint32(16)
        if extra >= 2:
            h ^= tail[:, 1] << np.uint32(8)
        if extra >= 1:
            h ^= tail[:, 0]
            h *= m
        h ^= h >> np.uint32(13)
        h *= m
        h ^= h >> np.uint32(15)
        out[idx] = (h & np.uint32(0x7FFFFFFF)).astype(np.int64) % partitions
    return out


def encode_event_arrays(frame) -> "tuple[pa.BinaryArray, pa.BinaryArray]":
    """(keys, values) of an event frame (``simulate_day``/``live_frame``/``read_recorded`` columns): the key is the
    session id, the value compact JSON ``{"session_id":…,"user_id":…,"channel_id":…,"timer":"YYYY-MM-DD HH:MM:SS",
    "status":…}`` — byte for byte what ``json.dumps`` of ``event_to_json`` gives, built column-wise."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = [c for c in EVENT_FIELDS if c not in frame.columns]
    if missing:
        raise ValueError(f"event frame lacks columns {missing}")
    def text(column):
        return pa.array(frame[column].astype(str).to_numpy(dtype=object), type=pa.string())

    sid, status = text("session_id"), text("status")
    timer = frame["timer"]
    if pd.api.types.is_datetime64_any_dtype(timer):
        timers = pc.strftime(pa.array(timer.to_numpy().astype("datetime64[s]")), format="%Y-%m-%d %H:%M:%S")
    else:
        timers = text("timer")
    ints = {c: pa.array(frame[c].astype("int64").to_numpy()).cast(pa.string()) for c in ("user_id", "channel_id")}
    parts = ['{"session_id":"', sid, '","user_id":', ints["user_id"], ',"channel_id":', ints["channel_id"],
             ',"timer":"', timers, '","status":"', status, '"}']
    values = pc.binary_join_element_wise(*parts, "").cast(pa.binary())
    # strings that JSON must escape (quotes, backslashes, control characters) are rare: those rows go through json
    plain = r'^[^"\\\x00-\x1f]*$'
    unsafe = pc.invert(pc.and_(pc.and_(pc.match_substring_regex(sid, plain), pc.match_substring_regex(status, plain)),
                               pc.match_substring_regex(timers, plain)))
    rows = pc.indices_nonzero(unsafe).to_pylist()
    if rows:
        fixed = values.to_pylist()
        for i in rows:
            fixed[i] = JsonSerializer().serialize(None, None, event_to_json(frame.iloc[i].to_dict()))
        values = pa.array(fixed, type=pa.binary())
    return sid.cast(pa.binary()), values


def publish_frame(kafka: "KafkaResource", frame, rate: float | None = None, progress: bool = True,
                  duration: float | None = None, chunk: int = 50_000) -> int:
    """Send an event frame to the topic, in frame order per partition (each event to its key's partition, as Kafka's
    default partitioner would); ``rate`` limits the events/s, ``duration`` (seconds) stops early. Returns how many
    the brokers acknowledged (``acks=all``); raises on any broker error.

    The whole frame is encoded at once (JSON values and murmur2 partitions column-wise) and sent in record batches
    built column-wise (``engines/kafka_wire.py``), ``chunk`` events at a time — fewer when ``rate`` asks for it."""
    from kafka.errors import UnknownTopicOrPartitionError
    from tqdm import tqdm

    keys, values = encode_event_arrays(frame)
    if not len(keys):
        return 0
    sent, t0 = 0, time.monotonic()
    step = int(min(chunk, max(1, rate / 10))) if rate else chunk  # a throttled producer sends 10 times a second
    bar = tqdm(total=len(keys), unit="ev", disable=not progress, desc=f"produce {kafka.topic}")
    try:
        with kafka.writer() as writer:
            try:
                writer.find_leaders()
            except UnknownTopicOrPartitionError:
                raise RuntimeError(f"topic {kafka.topic} does not exist (kafka.ensure_topic() first)") from None
            parts = murmur2_partitions(keys.to_pylist(), writer.partition_count)
            for lo in range(0, len(keys), step):
                n = min(step, len(keys) - lo)
                sent += writer.write(parts[lo:lo + n], keys.slice(lo, n), values.slice(lo, n))
                bar.update(n)
                if rate:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                if duration is not None and time.monotonic() - t0 >= duration:
                    break
    finally:
        bar.close()
    return sent


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

    Well-formed events go through ``publish_frame``; ``raw=True`` sends the dicts as they are, one by one, through
    the JSON serializer (tests use it to publish malformed events)."""
    if not raw:
        import pandas as pd

        frame = pd.DataFrame([event_to_json(e) for e in events], columns=list(EVENT_FIELDS))
        return publish_frame(kafka, frame, rate=rate, progress=progress)

    from tqdm import tqdm

    producer = kafka.producer()
    sent = 0
    bar = tqdm(total=total, unit="ev", disable=not progress, desc=f"produce {kafka.topic}")
    try:
        for value in events:
            key = str(value.get("session_id", "")) if isinstance(value, dict) else ""
            producer.send(kafka.topic, key=key, value=value)
            sent += 1
        producer.flush(timeout=120)
        bar.update(sent)
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
    from tv_platform.resources import kafka_resource
    from tv_platform.settings import get_settings
    from tv_platform.simulator.live import live_frame, read_recorded
    from tv_platform.simulator.model import SimulationParams

    settings = get_settings()
    kafka = kafka_resource(settings)
    if args.topic:
        kafka = kafka.with_topic(args.topic)
    kafka.ensure_topic()
    if args.replay:
        frame = read_recorded(args.replay)
        if args.count is not None:
            frame = frame.iloc[:args.count]
    else:
        params = SimulationParams(users=args.users or settings.sim_users,
                                  seed=args.seed if args.seed is not None else settings.sim_seed)
        frame = live_frame(args.date or date.today(), params, count=args.count)
    t0 = time.monotonic()
    sent = publish_frame(kafka, frame, rate=args.rate, progress=not args.no_progress,
                         duration=args.duration)
    elapsed = time.monotonic() - t0
    print(f"produced {sent} events to {kafka.topic} in {elapsed:.1f}s ({sent / max(elapsed, 1e-9):,.0f} events/s)")
    return 0
