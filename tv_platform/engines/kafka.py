"""Kafka: the resource every Kafka-facing piece uses, the reader of offset ranges, and the producer behind
``tv-platform produce``.

Two clients, each for what it does well (docs/architecture.md):

* **confluent-kafka** (librdkafka) carries the data: the producer (idempotent, ``acks=all``, compressed) and the
  reader of offset ranges the landing runs use (``read_committed``). librdkafka negotiates protocol versions, follows
  leaders that move, reconnects to brokers that come back, and speaks TLS and SASL.
* **kafka-python** does the bookkeeping: creating topics, beginning/end offsets and ``offsets_for_times`` in the
  sensor, topic metadata.

Both are configured from the same settings (``TVP_KAFKA_SECURITY_PROTOCOL``, ``TVP_KAFKA_SASL_*``, ``TVP_KAFKA_SSL_*``).

Events are JSON objects ``{session_id, user_id, channel_id, timer, status}`` keyed by ``session_id`` (so both events of a
session land in one partition, in order) and stamped with their timer as the record timestamp.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Iterable, Iterator, Sequence

import dagster as dg
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

from tv_platform.streaming import Records

FUTURE_TIMESTAMP_MS = 3 * 86_400_000
"""How far ahead of the broker's clock a record's timestamp (its event's time) may be. Kafka 4 refuses records more
than an hour ahead by default (``message.timestamp.after.max.ms``, KIP-937), and a whole batch with them
(``INVALID_TIMESTAMP`` / ``_INVALID_DIFFERENT_RECORD``): a day produced at once — the demo's live day, a replay of
today — has events up to the end of tomorrow (the platform's clock-skew tolerance, ``partitions.SKEW_DAYS``). Three
days cover that in any time zone; the topics the platform creates carry it (and an existing topic with less gets it:
``KafkaResource.ensure_topic``), the local stack's brokers default to it."""
TIMESTAMP_AHEAD_KEY = "message.timestamp.after.max.ms"

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

EVENT_FIELDS = ("session_id", "user_id", "channel_id", "timer", "status")
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


class KafkaClientError(RuntimeError):
    """One line: what a Kafka client could not do and why (wrong password, unreachable brokers, a fatal producer
    error)."""


def _json_bytes(value) -> bytes:
    """Compact JSON, non-ASCII kept as UTF-8 (channel names are Cyrillic)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


UNKNOWN_TOPIC_OR_PARTITION = 3  # Kafka's error code for a topic that does not exist

class KafkaResource(dg.ConfigurableResource):
    """Connection to the Kafka cluster holding the live viewing events."""

    bootstrap_servers: str
    topic: str
    partitions: int = 3
    replication_factor: int = -1  # -1: the brokers' default.replication.factor
    request_timeout_ms: int = 10_000
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str = ""
    sasl_password: str = ""
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    compression: str = "lz4"

    def with_topic(self, topic: str) -> "KafkaResource":
        """The same cluster, another topic (a new resource: Dagster rebuilds resources from their config)."""
        return KafkaResource(**{**self.model_dump(), "topic": topic})

    # ---- the security settings, once for each client -------------------------------------------------------------
    def _checked_security(self) -> None:
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise KafkaClientError(f"TVP_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}, "
                                   f"got {self.security_protocol!r}")
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism not in SASL_MECHANISMS:
            raise KafkaClientError(f"TVP_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
                                   f"got {self.sasl_mechanism!r}")

    def librdkafka_config(self) -> dict:
        """Connection and security settings for confluent-kafka (librdkafka's names)."""
        self._checked_security()
        conf = {"bootstrap.servers": self.bootstrap_servers, "security.protocol": self.security_protocol.lower(),
                "socket.timeout.ms": max(self.request_timeout_ms, 10_000)}
        if self.security_protocol.startswith("SASL"):
            conf.update({"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.sasl_username,
                         "sasl.password": self.sasl_password})
        if self.security_protocol.endswith("SSL"):
            for key, value in (("ssl.ca.location", self.ssl_cafile), ("ssl.certificate.location", self.ssl_certfile),
                               ("ssl.key.location", self.ssl_keyfile)):
                if value:
                    conf[key] = value
        return conf

    def kafka_python_config(self) -> dict:
        """Connection and security settings for kafka-python (its names)."""
        self._checked_security()
        conf: dict = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.security_protocol.startswith("SASL"):
            conf.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                        sasl_plain_password=self.sasl_password)
        if self.security_protocol.endswith("SSL"):
            conf.update(ssl_cafile=self.ssl_cafile or None, ssl_certfile=self.ssl_certfile or None,
                        ssl_keyfile=self.ssl_keyfile or None)
        return conf

    # ---- kafka-python: admin, offsets, metadata --------------------------------------------------------------
    def admin(self) -> KafkaAdminClient:
        return _kafka_python(KafkaAdminClient, self, **self.kafka_python_config(),
                             request_timeout_ms=self.request_timeout_ms, client_id="tv_platform-admin")

    def ensure_topic(self, topic: str | None = None, partitions: int | None = None) -> None:
        """Create the topic if it does not exist, accepting record timestamps up to ``FUTURE_TIMESTAMP_MS`` ahead of
        the broker's clock (see there). A topic that exists with a smaller limit (created before the platform set it,
        or by hand: Kafka 4's default is an hour) has its limit raised — an incremental change of that one key, the
        topic's other settings untouched."""
        name = topic or self.topic
        admin = self.admin()
        try:
            try:
                admin.create_topics([NewTopic(name, partitions or self.partitions, self.replication_factor,
                                              topic_configs={TIMESTAMP_AHEAD_KEY: str(FUTURE_TIMESTAMP_MS)})])
            except TopicAlreadyExistsError:
                if self.timestamp_ahead_limit_ms(name, admin) < FUTURE_TIMESTAMP_MS:
                    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                                        {TIMESTAMP_AHEAD_KEY: str(FUTURE_TIMESTAMP_MS)})],
                                        incremental=True)
        finally:
            admin.close()

    def timestamp_ahead_limit_ms(self, topic: str | None = None, admin: KafkaAdminClient | None = None) -> int:
        """The topic's ``message.timestamp.after.max.ms``: how far ahead of the broker a record may be stamped."""
        own = admin is None
        admin = admin or self.admin()
        try:
            answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic or self.topic,
                                                            {TIMESTAMP_AHEAD_KEY: None})], config_filter="all")
        finally:
            if own:
                admin.close()
        return int(answer["topic"][topic or self.topic][TIMESTAMP_AHEAD_KEY]["value"])

    def topic_id(self, topic: str | None = None, wait: float = 60.0) -> str:
        """The topic's id (a UUID Kafka gives each incarnation of a topic: a topic deleted and created again has a new
        one); "" when the topic does not exist. While a broker is down or a leader is being elected the metadata may
        fail or answer with an error for a while: it is asked again for up to ``wait`` seconds."""
        name = topic or self.topic
        deadline, delay, problem = time.monotonic() + wait, 0.5, ""
        while True:
            try:
                admin = self.admin()
                try:
                    (meta,) = admin.describe_topics([name])
                finally:
                    admin.close()
                code = int(meta.get("error_code") or 0)
                if code == UNKNOWN_TOPIC_OR_PARTITION:
                    return ""
                if code == 0 and meta.get("topic_id"):
                    return str(meta["topic_id"])
                problem = f"error code {code}"
            except Exception as exc:  # noqa: BLE001 - a broker restarting: asked again until the deadline
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise KafkaClientError(f"kafka: the id of topic {name} could not be read in {wait:.0f} s ({problem})")
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    @contextmanager
    def consumer(self) -> Iterator[KafkaConsumer]:
        """A kafka-python consumer with no group for offsets and metadata (``read_committed``: end offsets are the
        last stable offsets, so an open transaction's records are never handed out)."""
        consumer = _kafka_python(
            KafkaConsumer, self, **self.kafka_python_config(),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
            request_timeout_ms=max(self.request_timeout_ms, 11_000),
            consumer_timeout_ms=5_000,
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

    # ---- confluent-kafka: the data path --------------------------------------------------------------------------
    def reader(self, topic: str | None = None, peek: bool = False) -> "RangeReader":
        """A reader of offset ranges (``read_committed``); use it as a context manager. ``peek``: one that fetches
        little at a time, for reading a few records (the sensor's timestamps), not ranges."""
        return RangeReader(self, topic or self.topic, peek=peek)

    def producer(self, **overrides):
        """An idempotent confluent-kafka producer (``acks=all``, ``TVP_KAFKA_COMPRESSION``), checked to reach the
        cluster (``KafkaClientError`` in one line otherwise)."""
        if self.compression not in COMPRESSIONS:
            raise KafkaClientError(f"TVP_KAFKA_COMPRESSION must be one of {', '.join(COMPRESSIONS)}, "
                                   f"got {self.compression!r}")
        errors = _ClientErrors()
        conf = {**self.librdkafka_config(), "client.id": "tv_platform-producer", "error_cb": errors,
                "enable.idempotence": True, "acks": "all", "compression.type": self.compression,
                "linger.ms": 50, "batch.size": 1_000_000, "batch.num.messages": 100_000,
                "queue.buffering.max.messages": 2_000_000, "queue.buffering.max.kbytes": 1_048_576,
                "message.timeout.ms": 300_000, "delivery.report.only.error": True,
                "partitioner": "murmur2_random", **overrides}
        producer = _Producer(conf)
        errors.check_reachable(producer, self)
        producer.client_errors = errors
        return producer

    def read_range(self, partition: int, start: int, end: int, timeout_s: float = 60.0,
                   topic: str | None = None) -> Records:
        """Exactly the records with start <= offset < end of one partition; raises if they can't all be read within
        ``timeout_s``."""
        with self.reader(topic) as reader:
            return reader.read_exactly(partition, start, end, timeout_s)


def _kafka_python(cls, kafka: KafkaResource, **config):
    """A kafka-python client, its connection errors as one ``KafkaClientError`` line."""
    from kafka.errors import KafkaError

    try:
        return cls(**config)
    except KafkaError as exc:
        raise KafkaClientError(f"kafka: {cls.__name__} cannot reach {kafka.bootstrap_servers} "
                               f"({kafka.security_protocol}): {type(exc).__name__}: {exc}".splitlines()[0]) from None


_FATAL_CODES = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "_SSL", "TOPIC_AUTHORIZATION_FAILED",
                "CLUSTER_AUTHORIZATION_FAILED", "_INVALID_ARG")


class _ClientErrors:
    """librdkafka's error callback: keeps the errors no retry will cure (authentication, TLS, authorisation), which a
    client then raises as one line instead of retrying for ever."""

    def __init__(self):
        self.fatal: str | None = None

    def __call__(self, err) -> None:
        if self.fatal is None and (err.fatal() or any(err.name() == c for c in _FATAL_CODES)):
            self.fatal = f"{err.name()}: {err.str()}"

    def raise_if_fatal(self, what: str, kafka: KafkaResource) -> None:
        if self.fatal:
            raise KafkaClientError(f"kafka: {what} {kafka.bootstrap_servers} ({kafka.security_protocol}): "
                                   f"{self.fatal}".splitlines()[0])

    def check_reachable(self, client, kafka: KafkaResource, timeout_s: float = 15.0) -> None:
        """Ask the cluster for the topic's metadata: a wrong password or certificate fails here, in one line."""
        from confluent_kafka import KafkaException

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                client.list_topics(kafka.topic, timeout=1.0)
                self.raise_if_fatal("cannot use", kafka)
                return
            except KafkaException as exc:
                self.raise_if_fatal("cannot reach", kafka)
                last = str(exc)
        self.raise_if_fatal("cannot reach", kafka)
        raise KafkaClientError(f"kafka: cannot reach {kafka.bootstrap_servers} ({kafka.security_protocol}) within "
                               f"{timeout_s:.0f}s: {last}".splitlines()[0])


def _producer_class():
    from confluent_kafka import Producer

    class TvProducer(Producer):
        """A confluent-kafka producer that carries its client's ``_ClientErrors`` (``client_errors``)."""

    return TvProducer


def _Producer(conf):
    return _producer_class()(conf)


class RangeReader:
    """Reads offset ranges [start, stop) of one topic through a confluent-kafka consumer: no group, nothing committed,
    ``isolation.level=read_committed`` (records of aborted transactions and transaction markers are skipped — a range
    may hold fewer records than offsets). The landing runs read their ranges with it; the sensor only its first
    records' timestamps, with ``peek``: librdkafka fetches and decompresses everything a fetch returns before it
    hands over the first record, so a reader sized for ranges (16 MB a partition, 100 k records prefetched) spends
    most of a second for one record of a busy partition; a peeking one fetches 256 KB (the broker still returns at
    least one whole record batch) and prefetches little."""

    _RANGES = {"fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 16 * 1024 * 1024,
               "queued.max.messages.kbytes": 262_144}
    _PEEK = {"fetch.max.bytes": 1024 * 1024, "max.partition.fetch.bytes": 256 * 1024,
             "queued.max.messages.kbytes": 2048, "queued.min.messages": 1000}

    def __init__(self, kafka: KafkaResource, topic: str, batch: int = 10_000, peek: bool = False):
        self.kafka, self.topic, self.batch, self.peek = kafka, topic, batch, peek
        self._consumer = None
        self._errors = _ClientErrors()

    def __enter__(self) -> "RangeReader":
        from confluent_kafka import Consumer

        self._consumer = Consumer({
            **self.kafka.librdkafka_config(), "client.id": "tv_platform-reader", "error_cb": self._errors,
            "group.id": "tv_platform-ranges", "enable.auto.commit": False, "enable.auto.offset.store": False,
            "isolation.level": "read_committed", "enable.partition.eof": True, "auto.offset.reset": "error",
            "fetch.wait.max.ms": 100, "fetch.queue.backoff.ms": 10, **(self._PEEK if self.peek else self._RANGES),
        })
        self._errors.check_reachable(self._consumer, self.kafka.with_topic(self.topic))
        return self

    def __exit__(self, *exc) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def read(self, partition: int, start: int, stop: int, deadline: float, limit: int | None = None
             ) -> tuple[Records, int]:
        """The records with start <= offset < stop (at most ``limit`` of them), read until ``stop`` or the monotonic
        ``deadline``: (records in offset order, the offset reached — ``stop`` when all were read)."""
        (records,), reached = self._read_together([(partition, start, stop)], deadline, limit)
        return records, reached[partition]

    def read_ranges(self, ranges: Sequence[tuple[int, int, int]], timeout_s: float = 120.0) -> list[Records]:
        """Exactly the records of each (partition, start, stop) range, in the order given; the ranges of different
        partitions are read together (one assignment: librdkafka fetches them side by side — 1.3–2x the rate of one
        partition after another, measured). Several ranges of one partition are read one round after the other. Raises
        ``TimeoutError`` if they can't all be read within ``timeout_s``."""
        out: list[Records | None] = [None] * len(ranges)
        todo = list(enumerate(ranges))
        deadline = time.monotonic() + timeout_s
        while todo:
            batch, later, seen = [], [], set()
            for i, r in todo:
                (later if r[0] in seen else batch).append((i, r))
                seen.add(r[0])
            got, reached = self._read_together([r for _, r in batch], deadline)
            for (i, (p, start, stop)), records in zip(batch, got):
                if reached[p] < stop:
                    raise TimeoutError(f"read {self.topic}[{p}] offsets {start}..{stop}: stuck at {reached[p]} "
                                       f"after {timeout_s:.0f}s")
                out[i] = records
            todo = later
        return out

    def _read_together(self, ranges, deadline: float, limit: int | None = None
                       ) -> tuple[list[Records], dict[int, int]]:
        """The ranges of distinct partitions (at most ``limit`` records of each), read through one assignment until
        their stops or the monotonic ``deadline``: (their records, the offset each partition reached — its stop when
        all were read)."""
        from confluent_kafka import KafkaError, KafkaException, TopicPartition as Tp
        import pyarrow as pa

        consumer = self._consumer
        want = {p: (start, stop) for p, start, stop in ranges}
        got = {p: ([], [], [], []) for p in want}  # offsets, timestamps, keys, values
        # per open partition: its lists' appends, the next offset wanted, the stop (a list: one lookup per record)
        live = {p: [*(column.append for column in got[p]), start, stop] for p, (start, stop) in want.items()
                if start < stop}
        position = {p: start for p, (start, _) in want.items()}
        paused: list = []
        consumer.assign([Tp(self.topic, p, start) for p, (start, _) in want.items() if p in live])
        batch = self.batch if limit is None else min(self.batch, limit)  # a peek takes no more than it wants
        try:
            while live and time.monotonic() < deadline:
                for m in consumer.consume(batch, timeout=min(1.0, max(deadline - time.monotonic(), 0.01))):
                    p = m.partition()
                    state = live.get(p)
                    if state is None:
                        continue  # a partition already read to its stop, or left by an earlier assignment
                    err = m.error()
                    if err is None:
                        offset = m.offset()
                        if offset < state[4]:
                            continue  # already read (a resend of a fetch), or before the range
                        if offset < state[5]:
                            state[0](offset)
                            state[1](m.timestamp()[1])
                            state[2](m.key())
                            state[3](m.value())
                            state[4] = offset + 1
                            if state[4] < state[5] and (limit is None or len(got[p][0]) < limit):
                                continue
                        else:
                            state[4] = state[5]
                    elif err.code() == KafkaError._PARTITION_EOF:  # the end (LSO) reached: gaps included
                        state[4] = max(state[4], min(m.offset(), state[5]))
                        if state[4] < state[5]:
                            continue
                    else:
                        raise KafkaClientError(f"kafka: read {self.topic}[{p}] at {state[4]}: "
                                               f"{err.name()}: {err.str()}")
                    position[p] = state[4]
                    del live[p]
                    paused.append(Tp(self.topic, p))
                    consumer.pause(paused[-1:])  # its later records are not wanted: stop fetching them
                self._errors.raise_if_fatal("cannot read from", self.kafka)
        except KafkaException as exc:
            raise KafkaClientError(f"kafka: read {self.topic} {sorted(want)}: {exc}") from None
        finally:
            if paused:
                consumer.resume(paused)  # a pause outlives the assignment: the next one would never fetch
            consumer.unassign()
        for p, state in live.items():
            position[p] = state[4]
        return [Records(p, got[p][0], got[p][1], pa.array(got[p][3], type=pa.binary()),
                        pa.array(got[p][2], type=pa.binary())) for p, _, _ in ranges], position

    def read_exactly(self, partition: int, start: int, stop: int, timeout_s: float = 60.0) -> Records:
        """Exactly the records with start <= offset < stop; raises if they can't all be read within ``timeout_s``."""
        records, position = self.read(partition, start, stop, deadline=time.monotonic() + timeout_s)
        if position < stop:
            raise TimeoutError(f"read {self.topic}[{partition}] offsets {start}..{stop}: stuck at {position} "
                               f"after {timeout_s:.0f}s")
        return records


# ---------------------------------------------------------------------------------------------------------------------
# producer
# ---------------------------------------------------------------------------------------------------------------------
# The JSON values and keys are built column-wise (Arrow string kernels) and every key's partition is computed up front
# with a vectorised murmur2 (Kafka's default partitioner, Java's and kafka-python's): the events of one frame always
# go to the same partitions in the same order, which is what makes `produce` resumable (see ``resume_points``).
# librdkafka does the rest: batching, lz4/zstd compression, idempotent delivery (no duplicates when it resends after a
# timeout or a leader change), acks from every in-sync replica.

_MURMUR_SEED = 0x9747B28C
_MURMUR_M = 0x5BD1E995


def _keys_by_length(keys):
    """(indices, keys as a uint8 matrix) per distinct key length. An Arrow array whose keys all have one length
    (session ids) is read straight from its data buffer, no Python objects; anything else goes through bytes."""
    import numpy as np
    import pyarrow as pa

    if isinstance(keys, pa.ChunkedArray):
        keys = keys.combine_chunks()
    if isinstance(keys, pa.Array):
        if keys.null_count == 0:
            wide = keys.cast(pa.large_binary())
            offsets = np.frombuffer(wide.buffers()[1], dtype=np.int64)[wide.offset:wide.offset + len(wide) + 1]
            lengths = np.diff(offsets)
            if lengths.min() == lengths.max() > 0:
                block = np.frombuffer(wide.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
                yield np.arange(len(wide)), block.reshape(len(wide), int(lengths[0]))
                return
        keys = keys.to_pylist()
    lengths = np.fromiter((len(k) for k in keys), dtype=np.int64, count=len(keys))
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        yield idx, np.frombuffer(b"".join(keys[i] for i in idx), dtype=np.uint8).reshape(len(idx), int(length))


def murmur2_partitions(keys, partitions: int):
    """The partition Kafka's default partitioner picks for each key: ``(murmur2(key) & 0x7fffffff) % partitions``.

    ``keys``: a list of bytes or an Arrow binary array. Vectorised over keys of equal length (one numpy pass per
    distinct length)."""
    import numpy as np

    out = np.empty(len(keys), dtype=np.int64)
    if not len(keys):
        return out
    m = np.uint32(_MURMUR_M)
    for idx, data in _keys_by_length(keys):
        length = data.shape[1]
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


def encode_event_arrays(frame, checked: bool = False) -> "tuple[pa.BinaryArray, pa.BinaryArray]":
    """(keys, values) of an event frame (``simulate_day``/``live_frame``/``read_recorded`` columns): the key is the
    session id, the value compact JSON ``{"session_id":…,"user_id":…,"channel_id":…,"timer":"YYYY-MM-DD HH:MM:SS",
    "status":…}`` — byte for byte what ``json.dumps`` of ``event_to_json`` gives, built column-wise. ``checked``:
    the caller has already asked ``check_event_frame`` of this frame (or of the frame it was cut from)."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    from tv_platform.dates import timer_texts

    if not checked:
        check_event_frame(frame)

    def text(column):
        values = pa.array(frame[column].astype(str), type=pa.string())  # Arrow-backed text: no copy
        if isinstance(values, pa.ChunkedArray):  # a frame put together with pd.concat
            values = values.combine_chunks()
        return values

    sid, status = text("session_id"), text("status")
    timer = frame["timer"]
    timers_made = pd.api.types.is_datetime64_any_dtype(timer)
    timers = timer_texts(timer) if timers_made else text("timer")
    ints = {c: pa.array(frame[c].astype("int64").to_numpy()).cast(pa.string()) for c in ("user_id", "channel_id")}
    parts = ['{"session_id":"', sid, '","user_id":', ints["user_id"], ',"channel_id":', ints["channel_id"],
             ',"timer":"', timers, '","status":"', status, '"}']
    values = pc.binary_join_element_wise(*parts, "").cast(pa.binary())
    # strings that JSON must escape (quotes, backslashes, control characters) are rare: those rows go through json.
    # Text columns are scanned byte-wise in one pass; only a column holding such a byte is looked at row by row.
    # Timers made by ``timer_texts`` are digits, dashes, colons and a space by construction.
    plain = r'^[^"\\\x00-\x1f]*$'
    unsafe = None
    for column in (sid, status) if timers_made else (sid, status, timers):
        if _needs_escaping(column):
            bad = pc.invert(pc.match_substring_regex(column, plain))
            unsafe = bad if unsafe is None else pc.or_(unsafe, bad)
    rows = [] if unsafe is None else pc.indices_nonzero(unsafe).to_pylist()
    if rows:
        fixed = values.to_pylist()
        for i in rows:
            fixed[i] = _json_bytes(event_to_json(frame.iloc[i].to_dict()))
        values = pa.array(fixed, type=pa.binary())
    return sid.cast(pa.binary()), values


def _needs_escaping(text) -> bool:
    """Whether any string of an Arrow string array holds a byte JSON must escape (``"``, ``\\``, below 0x20): one
    numpy pass over the array's data buffer."""
    import numpy as np

    _, offset_buffer, data_buffer = text.buffers()
    if not len(text) or offset_buffer is None or data_buffer is None:
        return False
    offsets = np.frombuffer(offset_buffer, dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8)[offsets[0]:offsets[-1]]
    return bool(((data < 0x20) | (data == 0x22) | (data == 0x5C)).any())


def pace_schedule(stamps, speed: float, start_ms: int | None = None) -> "np.ndarray":
    """When to send each event (seconds after the producer starts) so the stream arrives as the day runs: the day's
    clock runs ``speed`` times real time from ``start_ms`` (a record timestamp; default the first event's); events
    stamped before it go at once. ``stamps`` in send order (timer order)."""
    import numpy as np

    if not speed or speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    stamps = np.asarray(stamps, dtype=np.int64)
    if not len(stamps):
        return np.zeros(0)
    start = int(stamps[0]) if start_ms is None else int(start_ms)
    return np.maximum(stamps - start, 0) / 1000.0 / float(speed)


def publish_frame(kafka: "KafkaResource", frame, rate: float | None = None, progress: bool = True,
                  duration: float | None = None, chunk: int = 50_000, resume: bool = False,
                  speed: float | None = None, pace_from_ms: int | None = None) -> int:
    """Send an event frame to the topic, in frame order per partition (each event to its key's partition), each
    record stamped with its event's timer; ``rate`` limits the events/s, ``duration`` (seconds) stops early. Returns
    how many events the brokers acknowledged (``acks=all``, idempotent) — with ``resume``, how many of the frame are
    in the topic now (see ``resume_points``); raises ``KafkaClientError`` when any could not be delivered. ``speed``
    paces the stream on the day's clock (``pace_schedule``: 1 = real time, 60 = an hour a minute, from
    ``pace_from_ms``), so events arrive as the day does, not all at once. A bad frame (a missing column or value, an
    id that is not an integer, a timer that is not one) raises before anything is sent."""
    import numpy as np
    from tqdm import tqdm

    from tv_platform.dates import timer_ms

    check_event_frame(frame)
    if not len(frame):
        return 0
    stamps = timer_ms(frame["timer"])
    producer = kafka.producer()
    count = _partition_count(producer, kafka)
    due = pace_schedule(stamps, speed, pace_from_ms) if speed else None
    if resume:  # the whole frame first: the resume points are found from every partition's events
        keys, values = encode_event_arrays(frame, checked=True)
        parts = murmur2_partitions(keys, count)
        todo = np.flatnonzero(_rank_limit(parts, resume_points(kafka, parts, values)))
        pieces = _one_ahead([lambda: _send_lists(keys, values, parts, stamps, todo)])
        due = due[todo] if due is not None else None
        total = len(todo)
    else:  # encoded a piece ahead in a thread (Arrow's kernels let go of the GIL) while the previous one is sent
        pieces = _one_ahead([lambda a=a: _encoded_piece(frame.iloc[a:a + _PIECE], stamps[a:a + _PIECE], count)
                             for a in range(0, len(frame), _PIECE)])
        total = len(frame)
    already = len(frame) - total
    step = int(min(chunk, max(1, rate / 20))) if rate else chunk  # a throttled producer sends 20 times a second
    if due is not None:
        step = min(step, 500)
    failed: list = []

    def on_error(err, _msg):
        failed.append(err)

    bar = tqdm(total=len(frame), initial=already, unit="ev", disable=not progress, desc=f"produce {kafka.topic}")
    sent, t0 = 0, time.monotonic()
    produce, poll, topic = producer.produce, producer.poll, kafka.topic
    stop = False
    try:
        for values_l, keys_l, parts_l, stamps_l in pieces:
            lo = 0
            while lo < len(values_l) and not stop:
                hi = min(lo + step, len(values_l))
                if due is not None:  # on the day's clock: the batch goes when its first event is due …
                    first = sent  # the batch's first event, counted over the whole send
                    wait = due[first] - (time.monotonic() - t0)
                    if wait > 0:
                        poll(min(wait, 0.5))
                        wait = due[first] - (time.monotonic() - t0)
                        if wait > 0:
                            time.sleep(wait)
                    elapsed = time.monotonic() - t0  # … with only the events due by now (the rest in the next batch)
                    on_time = due[first:first + hi - lo] <= elapsed + 0.05
                    hi = lo + max(1, len(on_time) if on_time.all() else int(np.argmin(on_time)))
                # positional arguments: produce(topic, value, key, partition, on_delivery, callback, timestamp) — a
                # keyword timestamp costs librdkafka's Python binding a third of the call
                for value, key, part, stamp in zip(values_l[lo:hi], keys_l[lo:hi], parts_l[lo:hi], stamps_l[lo:hi]):
                    try:
                        produce(topic, value, key, part, on_error, None, stamp)
                    except BufferError:  # the local queue is full: let librdkafka send, then try again
                        _produce_when_queued(producer, (topic, value, key, part, on_error, None, stamp))
                n = hi - lo
                lo += n
                sent += n
                poll(0)
                producer.client_errors.raise_if_fatal("cannot produce to", kafka)
                bar.update(n)
                stop = bool(failed) or (duration is not None and time.monotonic() - t0 >= duration)
                if rate and not stop:
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            if stop:
                break
    finally:
        pieces.close()
        left = producer.flush(120)
        bar.close()
    producer.client_errors.raise_if_fatal("cannot produce to", kafka)
    if failed or left:
        raise KafkaClientError(f"kafka: {len(failed) + left} of {sent} events to {topic} were not delivered"
                               + (f": {failed[0].name()}: {failed[0].str()}" if failed else " within 120 s"))
    return already + sent if resume else sent


_PIECE = 100_000
"""Events encoded at a time by ``publish_frame``'s encoder thread."""


def check_event_frame(frame) -> None:
    """Raise ``ValueError`` for a frame that cannot be sent: a missing column, a missing value, an id that is not an
    integer. ``encode_event_arrays`` asks it; ``publish_frame`` asks it for the whole frame first, since it encodes
    piece by piece while it sends (a bad row must stop it before the first event goes, not half-way)."""
    missing = [c for c in EVENT_FIELDS if c not in frame.columns]
    if missing:
        raise ValueError(f"event frame lacks columns {missing}")
    for column in EVENT_FIELDS:
        nulls = int(frame[column].isna().sum())
        if nulls:
            raise ValueError(f"event frame has {nulls} missing {column} values")
    for column in ("user_id", "channel_id"):
        frame[column].astype("int64")


def _send_lists(keys, values, parts, stamps, todo=None) -> tuple[list, list, list, list]:
    """(values, keys, partitions, timestamps) as Python lists, in send order — the ``todo`` rows, or all (numpy's
    object arrays: 3x faster than Arrow's to_pylist)."""
    import numpy as np

    pick = slice(None) if todo is None else todo
    return (values.to_numpy(zero_copy_only=False)[pick].tolist(), keys.to_numpy(zero_copy_only=False)[pick].tolist(),
            np.asarray(parts)[pick].tolist(), np.asarray(stamps)[pick].tolist())


def _encoded_piece(piece, stamps, count: int) -> tuple[list, list, list, list]:
    """A piece of a checked event frame ready to send (``_send_lists``), its partitions among ``count``."""
    keys, values = encode_event_arrays(piece, checked=True)
    return _send_lists(keys, values, murmur2_partitions(keys, count), stamps)


def _one_ahead(makers):
    """The results of ``makers`` (functions) in order, each computed in a worker thread while the previous one is
    used; a maker's error is raised where its result is taken. Closing the generator (``close``, or leaving it with
    an error) cancels what was not started and waits for the one being made."""
    from concurrent.futures import ThreadPoolExecutor

    makers = list(makers)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tv_platform-encoder")
    try:
        ahead = pool.submit(makers[0]) if makers else None
        for i in range(len(makers)):
            current, ahead = ahead, pool.submit(makers[i + 1]) if i + 1 < len(makers) else None
            yield current.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _produce_when_queued(producer, args) -> None:
    """``producer.produce(*args)`` once librdkafka's local queue has room."""
    while True:
        producer.poll(0.05)
        try:
            producer.produce(*args)
            return
        except BufferError:
            continue


def _rank_limit(parts, done: dict) -> "np.ndarray":
    """For every event, whether it comes after its partition's resume point (its rank among its partition's events
    is at least the number already in the topic)."""
    import numpy as np

    rank = np.empty(len(parts), dtype=np.int64)
    for p in np.unique(parts).tolist():
        idx = np.flatnonzero(parts == p)
        rank[idx] = np.arange(len(idx))
    return rank >= np.array([done.get(int(p), 0) for p in parts.tolist()], dtype=np.int64)


def _partition_count(client, kafka: "KafkaResource") -> int:
    meta = client.list_topics(kafka.topic, timeout=15).topics.get(kafka.topic)
    if meta is None or meta.error is not None or not meta.partitions:
        raise KafkaClientError(f"kafka: topic {kafka.topic} does not exist (kafka.ensure_topic() first)")
    return len(meta.partitions)


def resume_points(kafka: "KafkaResource", parts, values, window: int = 1_000) -> dict[int, int]:
    """How many of each partition's events of a frame are in the topic already: {partition: n}.

    Resuming rests on two facts. A frame is deterministic (the same ``produce`` arguments give the same events in the
    same order, and ``murmur2_partitions`` sends each to the same partition), and an idempotent producer delivers a
    partition's records in order, without gaps. So what was acknowledged of a partition is a prefix of that
    partition's events, and the last of them in the topic says how long the prefix is: the topic is searched from
    its end backwards (in windows of ``window`` records, as far back as needed: other producers may have written
    since) for the newest record whose value is one of the partition's events (a value names its session, status and
    time, so it is unique in a frame)."""
    import numpy as np

    out: dict[int, int] = {}
    begin, end = kafka.offsets()
    with kafka.reader() as reader:
        for p in np.unique(parts).tolist():
            mine = {v: k for k, v in enumerate(values.filter(_mask(parts == p)).to_pylist())}
            hi = end.get(p, 0)
            while hi > begin.get(p, 0) and p not in out:
                lo = max(begin.get(p, 0), hi - window)
                records = reader.read_exactly(p, lo, hi)
                for v in reversed(records.values.to_pylist()):
                    if v in mine:
                        out[p] = mine[v] + 1
                        break
                hi, window = lo, window * 4
    return out


def _mask(flags):
    import pyarrow as pa

    return pa.array(flags)


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


def publish(kafka: KafkaResource, events: Iterable, total: int | None = None, rate: float | None = None,
            progress: bool = True, raw: bool = False, timestamp_ms: int | None = None) -> int:
    """Send events (dicts) to the topic; ``rate`` limits events/s. Returns how many were acknowledged.

    Well-formed events go through ``publish_frame``; ``raw=True`` sends the values as they are (dicts as JSON, bytes
    untouched), stamped with ``timestamp_ms`` or else their timer when it reads as one (now otherwise) — tests publish
    malformed events so."""
    if not raw:
        import pandas as pd

        frame = pd.DataFrame([event_to_json(e) for e in events], columns=list(EVENT_FIELDS))
        return publish_frame(kafka, frame, rate=rate, progress=progress)

    producer = kafka.producer()
    failed: list = []
    sent = 0
    for value in events:
        key = str(value.get("session_id", "")) if isinstance(value, dict) else None
        producer.produce(kafka.topic, value if isinstance(value, bytes) else _json_bytes(value), key,
                         timestamp=timestamp_ms or _stamp_of(value), on_delivery=lambda err, _m: err and failed.append(err))
        sent += 1
    left = producer.flush(120)
    if failed or left:
        raise KafkaClientError(f"kafka: {len(failed) + left} of {sent} raw events to {kafka.topic} not delivered")
    return sent


def _stamp_of(value) -> int:
    from tv_platform.dates import timer_ms

    try:
        timer = value["timer"] if isinstance(value, dict) else json.loads(value)["timer"]
        return int(timer_ms([timer])[0])
    except Exception:  # noqa: BLE001 - a malformed event: stamped now, landed today, quarantined with its reason
        return int(time.time() * 1000)


def add_produce_parser(sub) -> None:
    p = sub.add_parser("produce", help="publish viewing events to Kafka (simulated live, or --replay a recorded CSV)")
    p.add_argument("--count", type=int, help="number of events (default: the whole simulated day)")
    p.add_argument("--duration", type=float, help="seconds to keep producing (with --rate)")
    p.add_argument("--rate", type=float, help="events per second (default: as fast as possible)")
    p.add_argument("--date", type=date.fromisoformat, default=None,
                   help="day to simulate (default: today in the operator's zone, TVP_TIMEZONE)")
    p.add_argument("--speed", type=float, default=None, metavar="N",
                   help="pace the stream on the day's clock, N times real time (1 = as the day runs, 60 = an hour a "
                        "minute); today's clock starts now (what is past goes at once), another day's at its first "
                        "event. Default: as fast as possible")
    p.add_argument("--users", type=int, default=None, help="simulated subscribers (default: TVP_SIM_USERS)")
    p.add_argument("--seed", type=int, default=None, help="simulator seed (default: TVP_SIM_SEED)")
    p.add_argument("--topic", default=None, help="topic (default: TVP_KAFKA_TOPIC)")
    p.add_argument("--replay", metavar="FILE.csv", help="publish a recorded CSV (session_id,user_id,channel_id,timer,status) in timer order")
    p.add_argument("--fresh", action="store_true",
                   help="send every event again (default: resume — skip what an earlier run with the same arguments "
                        "already delivered)")
    p.add_argument("--no-progress", action="store_true")


def produce_command(args: argparse.Namespace) -> int:
    from tv_platform.dates import today as local_today
    from tv_platform.resources import kafka_resource
    from tv_platform.settings import get_settings
    from tv_platform.simulator.live import live_frame, read_recorded
    from tv_platform.simulator.model import SimulationParams

    settings = get_settings()
    kafka = kafka_resource(settings)
    if args.topic:
        kafka = kafka.with_topic(args.topic)
    try:
        kafka.ensure_topic()
    except KafkaClientError as exc:
        print(f"tv-platform: {exc}", file=sys.stderr)
        return 1
    if args.replay:
        frame = read_recorded(args.replay)
        if args.count is not None:
            frame = frame.iloc[:args.count]
    else:
        params = SimulationParams(users=args.users or settings.sim_users,
                                  seed=args.seed if args.seed is not None else settings.sim_seed)
        frame = live_frame(args.date or local_today(), params, count=args.count)
    pace_from = None
    if args.speed is not None:
        if args.speed <= 0:
            print(f"tv-platform: --speed must be > 0, got {args.speed}", file=sys.stderr)
            return 2
        if not args.replay and (args.date is None or args.date == local_today()):
            pace_from = int(time.time() * 1000)  # today: the day's clock is the wall clock
    t0 = time.monotonic()
    try:
        sent = publish_frame(kafka, frame, rate=args.rate, progress=not args.no_progress, duration=args.duration,
                             resume=not args.fresh, speed=args.speed, pace_from_ms=pace_from)
    except KafkaClientError as exc:
        print(f"tv-platform: {exc}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - t0
    print(f"{sent} of {len(frame)} events in {kafka.topic} after {elapsed:.1f}s")
    return 0
