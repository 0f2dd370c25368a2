"""Reading offset ranges fast: Fetch requests on Kafka's wire protocol, record batches decoded column-wise.

The landing reads every event twice — the sensor to date it, the landing run to land it — and kafka-python's consumer
decodes a record at ≈ 15 µs in Python, which kept landing below 50 k events/s on two cores (docs/benchmarks.md). An
offset range is a simple thing to read: no group, no commits, one partition, known bounds. So ranges are read here:

* **Fetch v4** (the baseline every broker from 0.11 to 4.x answers; record format v2) over a plain socket to the
  partition's leader. The leaders come from kafka-python's admin client; everything else — producing, offsets, topics
  — stays with kafka-python.
* **Record batches decoded column-wise.** A short Python loop finds where each record starts (one varint per record);
  every field after that — timestamp and offset deltas, key and value lengths, the key and value bytes — is read for
  all records at once with numpy, and values come out as one Arrow binary array, which is what validation wants.
  Batch CRCs (CRC-32C) are checked; compressed batches (gzip, snappy, lz4, zstd) are decompressed with kafka-python's
  codecs; control batches (transaction markers) are skipped.

`tv_platform_tests/test_kafka_fetch.py` checks the decoder against kafka-python's own record reader, batch for
batch, and the reader against kafka-python's consumer on the broker.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tv_platform.streaming import Records

FETCH_API_KEY = 1
FETCH_VERSION = 4
# baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta, baseTimestamp,
# maxTimestamp, producerId, producerEpoch, baseSequence, recordsCount
BATCH_HEADER = struct.Struct(">qiibIhiqqqhii")
CRC_FROM = 21  # the CRC covers the batch from its attributes to its end
COMPRESSION_MASK, LOG_APPEND_TIME, CONTROL_BATCH = 0x07, 0x08, 0x20


class CorruptRecordsError(ValueError):
    """A record batch that does not decode: wrong CRC, lengths that run past the batch, an unknown format."""


def _decompress(codec: int, payload: bytes) -> bytes:
    from kafka import codec as kc

    if codec == 1:
        return kc.gzip_decode(payload)
    if codec == 2:
        return kc.snappy_decode(payload)
    if codec == 3:
        return kc.lz4f_decode(payload)
    if codec == 4:
        return kc.zstd_decode(payload)
    raise CorruptRecordsError(f"unknown compression codec {codec}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(zigzag-decoded value, position after it) of the varint at ``pos``."""
    raw = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        raw |= (b & 0x7F) << shift
        if b < 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise CorruptRecordsError("varint longer than 10 bytes")


def _varints(arr: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The zigzag varints starting at every position in ``at`` (``arr`` padded with ≥ 10 zero bytes): (values, lengths)."""
    raw = np.zeros(len(at), dtype=np.uint64)
    length = np.zeros(len(at), dtype=np.int64)
    going = np.ones(len(at), dtype=bool)
    for k in range(10):
        b = arr[at + k].astype(np.uint64)
        raw |= np.where(going, (b & np.uint64(0x7F)) << np.uint64(7 * k), np.uint64(0))
        length += going
        going &= b >= 0x80
        if not going.any():
            break
    else:
        raise CorruptRecordsError("varint longer than 10 bytes")
    value = (raw >> np.uint64(1)).astype(np.int64) ^ -((raw & np.uint64(1)).astype(np.int64))
    return value, length


def _gather(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """The byte strings arr[start:start+length] as one Arrow binary array; a negative length is a null."""
    valid = lengths >= 0
    sizes = np.where(valid, lengths, 0)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])
    if total >= 2**31:
        raise CorruptRecordsError("more than 2 GiB of record data in one read")
    index = np.repeat(starts - offsets[:-1], sizes) + np.arange(total, dtype=np.int64)
    data = arr[index].tobytes()
    bitmap = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    return pa.BinaryArray.from_buffers(pa.binary(), len(sizes),
                                       [bitmap, pa.py_buffer(offsets.astype(np.int32).tobytes()), pa.py_buffer(data)])


def decode_record_set(data: bytes, partition: int, start: int = 0, stop: int = 2**63 - 1,
                      check_crc: bool = True) -> tuple[Records, int]:
    """The records with start <= offset < stop in a fetched record set (concatenated v2 record batches; a partial batch
    at the end, as brokers send, is ignored). Returns (records, the offset after the last whole batch — where the next
    fetch starts; ``start`` if there was none)."""
    from crc32c import crc32c

    segments: list[bytes] = []
    record_starts: list[int] = []  # where each record's body starts, in the joined segments
    record_ends: list[int] = []
    batch_counts: list[int] = []
    batch_offsets: list[int] = []
    batch_times: list[int] = []
    batch_log_append: list[bool] = []
    base = 0
    pos, size, next_offset = 0, len(data), start
    while pos + 17 <= size:
        base_offset, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if end > size:
            break  # the broker cut the last batch short: fetched again next time
        if data[pos + 16] != 2:
            raise CorruptRecordsError(f"record batch at offset {base_offset} has message format v{data[pos + 16]}; "
                                      "only v2 (Kafka ≥ 0.11) is read")
        if length < BATCH_HEADER.size - 12:
            raise CorruptRecordsError(f"record batch at offset {base_offset} is {length} bytes long")
        (_, _, _, _, crc, attributes, last_delta, first_time, max_time, _, _, _, count) = BATCH_HEADER.unpack_from(data, pos)
        if check_crc and crc32c(data[pos + CRC_FROM:end]) != crc:
            raise CorruptRecordsError(f"record batch at offset {base_offset} of partition {partition} fails its CRC")
        body_at, pos = pos + BATCH_HEADER.size, end
        next_offset = max(next_offset, base_offset + last_delta + 1)
        if attributes & CONTROL_BATCH or base_offset + last_delta < start or base_offset >= stop or count <= 0:
            continue
        codec = attributes & COMPRESSION_MASK
        body = data[body_at:end] if codec == 0 else _decompress(codec, data[body_at:end])
        p = 0
        for _ in range(count):
            b = body[p]
            if b < 0x80:  # records of < 64 bytes
                n, p = b >> 1, p + 1
            elif body[p + 1] < 0x80:  # < 8 KiB: the events' case
                n, p = ((b & 0x7F) | (body[p + 1] << 7)) >> 1, p + 2
            else:
                n, p = _varint(body, p)
            if n <= 0 or p + n > len(body):
                raise CorruptRecordsError(f"a record of the batch at offset {base_offset} runs past the batch")
            record_starts.append(base + p)
            p += n
            record_ends.append(base + p)
        if p != len(body):
            raise CorruptRecordsError(f"the batch at offset {base_offset} holds more than its {count} records")
        segments.append(body)
        base += len(body)
        batch_counts.append(count)
        batch_offsets.append(base_offset)
        batch_times.append(max_time if attributes & LOG_APPEND_TIME else first_time)
        batch_log_append.append(bool(attributes & LOG_APPEND_TIME))

    if not record_starts:
        return Records.empty(partition), next_offset
    arr = np.frombuffer(b"".join(segments) + bytes(16), dtype=np.uint8)
    at = np.asarray(record_starts, dtype=np.int64) + 1  # after the record's attributes byte
    ends = np.asarray(record_ends, dtype=np.int64)
    counts = np.asarray(batch_counts)
    time_delta, n = _varints(arr, at)
    at += n
    offset_delta, n = _varints(arr, at)
    at += n
    key_length, n = _varints(arr, at)
    at += n
    key_at = at.copy()
    at += np.maximum(key_length, 0)
    value_length, n = _varints(arr, at)
    at += n
    value_at = at.copy()
    at += np.maximum(value_length, 0)
    if (at >= ends).any() or (key_length < -1).any() or (value_length < -1).any():
        raise CorruptRecordsError("a record's key or value runs past the record")
    offsets = np.repeat(np.asarray(batch_offsets, dtype=np.int64), counts) + offset_delta
    times = np.repeat(np.asarray(batch_times, dtype=np.int64), counts)
    times = np.where(np.repeat(np.asarray(batch_log_append), counts), times, times + time_delta)
    keep = (offsets >= start) & (offsets < stop)
    if not keep.all():
        offsets, times, key_at, key_length, value_at, value_length = (
            a[keep] for a in (offsets, times, key_at, key_length, value_at, value_length))
    return Records(partition, offsets, times, _gather(arr, value_at, value_length),
                   _gather(arr, key_at, key_length)), next_offset


# ---------------------------------------------------------------------------------------------------------------------
# the wire: Fetch v4 to the partition leader
# ---------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PartitionData:
    error_code: int
    high_watermark: int
    records: bytes


def encode_fetch(correlation_id: int, client_id: str, topic: str, partition: int, offset: int, max_wait_ms: int,
                 max_bytes: int) -> bytes:
    """A size-prefixed Fetch v4 request (header v1) for one partition, read-uncommitted like kafka-python's default."""
    client, name = client_id.encode(), topic.encode()
    body = b"".join([
        struct.pack(">hhih", FETCH_API_KEY, FETCH_VERSION, correlation_id, len(client)), client,
        struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0),  # replica, wait, min bytes, max bytes, isolation
        struct.pack(">ih", 1, len(name)), name,
        struct.pack(">iiqi", 1, partition, offset, max_bytes),
    ])
    return struct.pack(">i", len(body)) + body


def decode_fetch(payload: bytes, correlation_id: int, partition: int) -> PartitionData:
    """The one partition's answer in a Fetch v4 response (without its size prefix)."""
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise ConnectionError(f"Fetch response for request {got}, expected {correlation_id}")
    pos = 8  # correlation id, throttle time
    (topics,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    for _ in range(topics):
        (name_length,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + name_length
        (parts,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(parts):
            index, error, high_watermark, _last_stable, aborted = struct.unpack_from(">ihqqi", payload, pos)
            pos += 26 + max(aborted, 0) * 16
            (length,) = struct.unpack_from(">i", payload, pos)
            pos += 4
            records = payload[pos:pos + max(length, 0)]
            pos += max(length, 0)
            if index == partition:
                return PartitionData(error, high_watermark, records)
    raise ConnectionError(f"Fetch response has no data for partition {partition}")


class RangeReader:
    """Reads offset ranges of one topic from the partition leaders (one connection per broker, kept while open).

    Use as a context manager. Plain TCP, like the rest of the platform's Kafka configuration (`KafkaResource`)."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 11.0, max_bytes: int = 8 * 1024 * 1024,
                 max_wait_ms: int = 500, client_id: str = "tv_platform-range-reader"):
        self.bootstrap_servers, self.topic, self.timeout_s = bootstrap_servers, topic, timeout_s
        self.max_bytes, self.max_wait_ms, self.client_id = max_bytes, max_wait_ms, client_id
        self._leaders: dict[int, tuple[str, int]] = {}
        self._sockets: dict[tuple[str, int], socket.socket] = {}
        self._correlation = 0

    def __enter__(self) -> "RangeReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def _find_leaders(self) -> None:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id,
                                 request_timeout_ms=int(self.timeout_s * 1000))
        try:
            brokers = {b["broker_id"]: (b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]}
            (described,) = admin.describe_topics([self.topic])
        finally:
            admin.close()
        if described["error_code"]:
            from kafka.errors import for_code

            raise for_code(described["error_code"])(f"topic {self.topic}")
        self._leaders = {p["partition_index"]: brokers[p["leader_id"]] for p in described["partitions"]
                         if p["leader_id"] in brokers}

    def _socket(self, address: tuple[str, int]) -> socket.socket:
        sock = self._sockets.get(address)
        if sock is None:
            sock = socket.create_connection(address, timeout=self.timeout_s)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets[address] = sock
        return sock

    def _receive(self, sock: socket.socket, size: int) -> bytes:
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = sock.recv_into(view[got:], size - got)
            if n == 0:
                raise ConnectionError("the broker closed the connection")
            got += n
        return bytes(buf)

    def fetch(self, partition: int, offset: int) -> PartitionData:
        """One Fetch of ``partition`` from ``offset`` (the broker waits up to ``max_wait_ms`` for data)."""
        if partition not in self._leaders:
            self._find_leaders()
        if partition not in self._leaders:
            raise KeyError(f"{self.topic} has no partition {partition} with a live leader")
        address = self._leaders[partition]
        self._correlation += 1
        request = encode_fetch(self._correlation, self.client_id, self.topic, partition, offset, self.max_wait_ms,
                               self.max_bytes)
        sock = self._socket(address)
        try:
            sock.sendall(request)
            (size,) = struct.unpack(">i", self._receive(sock, 4))
            return decode_fetch(self._receive(sock, size), self._correlation, partition)
        except (OSError, ConnectionError):
            sock.close()
            self._sockets.pop(address, None)
            raise

    def read(self, partition: int, start: int, stop: int, deadline: float) -> tuple[Records, int]:
        """The records with start <= offset < stop, read until ``stop`` or the monotonic ``deadline``: (records in
        offset order, the offset reached — ``stop`` when all were read)."""
        from kafka.errors import for_code

        chunks, position, moved_leader = [], start, False
        while position < stop and time.monotonic() < deadline:
            answer = self.fetch(partition, position)
            if answer.error_code:
                error = for_code(answer.error_code)
                if getattr(error, "invalid_metadata", False) and not moved_leader:
                    moved_leader = True  # the leader moved: ask once where it is now
                    self._find_leaders()
                    continue
                raise error(f"fetch {self.topic}[{partition}] at offset {position}")
            records, next_offset = decode_record_set(answer.records, partition, position, stop)
            if len(records):
                chunks.append(records)
            if next_offset > position:
                position = next_offset
            elif answer.high_watermark <= position:
                continue  # nothing new yet: the broker waited max_wait_ms
            elif answer.records:
                raise CorruptRecordsError(f"{self.topic}[{partition}] at {position}: the broker sent no whole "
                                          f"batch in {len(answer.records)} bytes")
        return Records.concat(partition, chunks), min(position, stop)
