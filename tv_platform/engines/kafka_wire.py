"""Kafka's two hot paths on the wire protocol: reading offset ranges (Fetch) and writing event frames (Produce),
with record batches decoded and encoded column-wise.

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

* **Writing** is the mirror image: the producer's events are already columns (Arrow arrays of keys and JSON values),
  so whole record batches are built with numpy — varints, keys and values scattered into one buffer — and sent as
  **Produce v3** requests (``acks=-1``: all in-sync replicas) to each partition's leader, one request per leader at a
  time, so each partition receives its batches in order. kafka-python's producer spent ≈ 30 µs an event in Python.

`tv_platform_tests/test_kafka_wire.py` checks the decoder against kafka-python's own record reader, the encoder by
reading its batches back with kafka-python, the reader against kafka-python's consumer on the broker, and the writer by
consuming what it wrote.
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
    """The zigzag varints starting at every position in ``at`` (``arr`` padded with ≥ 10 zero bytes): (values,
    lengths)."""
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


def _spans(starts: np.ndarray, sizes: np.ndarray, packed_at: np.ndarray) -> np.ndarray:
    """Indices of the spans [start, start + size) laid end to end — where the packed bytes from ``packed_at[i]`` on
    (the spans' positions in a contiguous run of bytes: ``packed_at[0] = 0``, then cumulative sizes) sit."""
    return np.repeat(starts - packed_at, sizes) + np.arange(int(sizes.sum()), dtype=np.int64)


def _gather(arr: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> pa.BinaryArray:
    """The byte strings arr[start:start+length] as one Arrow binary array; a negative length is a null."""
    valid = lengths >= 0
    sizes = np.where(valid, lengths, 0)
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] >= 2**31:
        raise CorruptRecordsError("more than 2 GiB of record data in one read")
    data = arr[_spans(starts, sizes, offsets[:-1])].tobytes()
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
        (_, _, _, _, crc, attributes, last_delta, first_time, max_time, _, _, _, count) = \
            BATCH_HEADER.unpack_from(data, pos)
        if check_crc and crc32c(data[pos + CRC_FROM:end]) != crc:
            raise CorruptRecordsError(f"record batch at offset {base_offset} of partition {partition} fails its CRC")
        body_at, pos = pos + BATCH_HEADER.size, end
        next_offset = max(next_offset, base_offset + last_delta + 1)
        if attributes & CONTROL_BATCH or base_offset + last_delta < start or base_offset >= stop or count <= 0:
            continue
        codec = attributes & COMPRESSION_MASK
        body = data[body_at:end] if codec == 0 else _decompress(codec, data[body_at:end])
        p = 0
        try:
            for _ in range(count):
                b = body[p]
                if b < 0x80:  # records of < 64 bytes
                    n, p = b >> 1, p + 1
                elif body[p + 1] < 0x80:  # < 8 KiB: the events' case
                    n, p = ((b & 0x7F) | (body[p + 1] << 7)) >> 1, p + 2
                else:
                    n, p = _varint(body, p)
                if n <= 0 or p + n > len(body):
                    raise IndexError
                record_starts.append(base + p)
                p += n
                record_ends.append(base + p)
        except IndexError:
            raise CorruptRecordsError(f"a record of the batch at offset {base_offset} runs past the batch") from None
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
# writing: record batches encoded column-wise
# ---------------------------------------------------------------------------------------------------------------------
def _varint_sizes(zigzag: np.ndarray) -> np.ndarray:
    size = np.ones(len(zigzag), dtype=np.int64)
    for bits in (7, 14, 21, 28, 35, 42, 49, 56, 63):
        size += zigzag >= (1 << bits)
    return size


def _put_varints(buf: np.ndarray, at: np.ndarray, zigzag: np.ndarray, sizes: np.ndarray) -> None:
    for k in range(int(sizes.max(initial=1))):
        going = sizes > k
        byte = (zigzag[going] >> (7 * k)) & 0x7F
        byte |= np.where(sizes[going] > k + 1, 0x80, 0)
        buf[at[going] + k] = byte


def _offsets(column: pa.BinaryArray) -> np.ndarray:
    """A binary array's value offsets into its data buffer (len + 1 of them; a slice starts past 0)."""
    return np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1].astype(
        np.int64)


def _lengths(column: pa.BinaryArray) -> np.ndarray:
    """The byte length of every value of a binary array."""
    return np.diff(_offsets(column))


def _scatter(buf: np.ndarray, at: np.ndarray, column: pa.BinaryArray) -> None:
    """Copy each byte string of ``column`` (no nulls) to ``buf[at[i]:]``."""
    offsets = _offsets(column)
    data = np.frombuffer(column.buffers()[2], dtype=np.uint8)[offsets[0]:offsets[-1]]
    buf[_spans(at, np.diff(offsets), offsets[:-1] - offsets[0])] = data


def encode_record_batch(keys: pa.BinaryArray, values: pa.BinaryArray, timestamp_ms: int) -> bytes:
    """One uncompressed v2 record batch of these records (base offset 0: the broker assigns offsets), every record
    stamped ``timestamp_ms`` (CreateTime), no headers. Keys and values are Arrow binary arrays without nulls."""
    from crc32c import crc32c

    n = len(values)
    if n == 0 or len(keys) != n or keys.null_count or values.null_count:
        raise ValueError("a batch needs one key and one value per record, none of them null")
    key_length, value_length = _lengths(keys), _lengths(values)
    offset_delta = np.arange(n, dtype=np.int64) * 2  # zigzag of i
    key_zz, value_zz = key_length * 2, value_length * 2
    sizes = {name: _varint_sizes(v) for name, v in (("offset", offset_delta), ("key", key_zz), ("value", value_zz))}
    # attributes, timestamp delta (0), offset delta, key length, key, value length, value, header count (0)
    body = 2 + sizes["offset"] + sizes["key"] + key_length + sizes["value"] + value_length + 1
    length_zz = body * 2
    length_size = _varint_sizes(length_zz)
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length_size + body, out=starts[1:])
    buf = np.zeros(BATCH_HEADER.size + int(starts[-1]), dtype=np.uint8)
    at = starts[:-1] + BATCH_HEADER.size
    _put_varints(buf, at, length_zz, length_size)
    at = at + length_size + 2
    _put_varints(buf, at, offset_delta, sizes["offset"])
    at = at + sizes["offset"]
    _put_varints(buf, at, key_zz, sizes["key"])
    at = at + sizes["key"]
    _scatter(buf, at, keys)
    at = at + key_length
    _put_varints(buf, at, value_zz, sizes["value"])
    _scatter(buf, at + sizes["value"], values)
    header = BATCH_HEADER.pack(0, len(buf) - 12, -1, 2, 0, 0, n - 1, timestamp_ms, timestamp_ms, -1, -1, -1, n)
    buf[:BATCH_HEADER.size] = np.frombuffer(header, dtype=np.uint8)
    out = buf.tobytes()
    return out[:17] + struct.pack(">I", crc32c(out[CRC_FROM:])) + out[CRC_FROM:]


# ---------------------------------------------------------------------------------------------------------------------
# the wire: requests to partition leaders
# ---------------------------------------------------------------------------------------------------------------------
PRODUCE_API_KEY = 0
PRODUCE_VERSION = 3


@dataclass(frozen=True)
class PartitionData:
    error_code: int
    high_watermark: int
    records: bytes


def _request(api_key: int, version: int, correlation_id: int, client_id: str, body: bytes) -> bytes:
    """A size-prefixed request with header v1."""
    client = client_id.encode()
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def encode_fetch(correlation_id: int, client_id: str, topic: str, partition: int, offset: int, max_wait_ms: int,
                 max_bytes: int) -> bytes:
    """A Fetch v4 request for one partition, read-uncommitted like kafka-python's default."""
    return _request(FETCH_API_KEY, FETCH_VERSION, correlation_id, client_id, b"".join([
        struct.pack(">iiiib", -1, max_wait_ms, 1, max_bytes, 0),  # replica, wait, min bytes, max bytes, isolation
        struct.pack(">i", 1), _string(topic),
        struct.pack(">iiqi", 1, partition, offset, max_bytes),
    ]))


def _each_partition(payload: bytes, pos: int, read_entry):
    """Walk a response's ``[topic [partition entry]]`` arrays from ``pos``, yielding ``read_entry(payload, pos)``'s
    value for every partition entry (``read_entry`` returns the value and the position after the entry)."""
    (topics,) = struct.unpack_from(">i", payload, pos)
    pos += 4
    for _ in range(topics):
        (name_length,) = struct.unpack_from(">h", payload, pos)
        pos += 2 + name_length
        (parts,) = struct.unpack_from(">i", payload, pos)
        pos += 4
        for _ in range(parts):
            value, pos = read_entry(payload, pos)
            yield value


def _fetch_entry(payload: bytes, pos: int) -> tuple[tuple[int, PartitionData], int]:
    index, error, high_watermark, _last_stable, aborted = struct.unpack_from(">ihqqi", payload, pos)
    pos += 26 + max(aborted, 0) * 16  # aborted transactions: producer id, first offset
    (length,) = struct.unpack_from(">i", payload, pos)
    size = max(length, 0)
    return (index, PartitionData(error, high_watermark, payload[pos + 4:pos + 4 + size])), pos + 4 + size


def decode_fetch(payload: bytes, partition: int) -> PartitionData:
    """The one partition's answer in a Fetch v4 response (after its correlation id; then comes the throttle time)."""
    for index, data in _each_partition(payload, 4, _fetch_entry):
        if index == partition:
            return data
    raise ConnectionError(f"Fetch response has no data for partition {partition}")


def encode_produce(correlation_id: int, client_id: str, topic: str, batches: dict[int, bytes],
                   timeout_ms: int) -> bytes:
    """A Produce v3 request (no transaction, ``acks=-1``) with one record set per partition."""
    parts = [struct.pack(">ii", p, len(data)) + data for p, data in batches.items()]
    return _request(PRODUCE_API_KEY, PRODUCE_VERSION, correlation_id, client_id, b"".join([
        struct.pack(">hhi", -1, -1, timeout_ms), struct.pack(">i", 1), _string(topic),
        struct.pack(">i", len(parts)), *parts,
    ]))


def _produce_entry(payload: bytes, pos: int) -> tuple[tuple[int, tuple[int, int]], int]:
    index, error, base_offset, _append_time = struct.unpack_from(">ihqq", payload, pos)
    return (index, (error, base_offset)), pos + 22


def decode_produce(payload: bytes) -> dict[int, tuple[int, int]]:
    """{partition: (error code, base offset)} of a Produce v3 response (after its correlation id)."""
    return dict(_each_partition(payload, 0, _produce_entry))


class _Leaders:
    """Partition leaders of one topic and a connection to each (plain TCP, like the rest of the platform's Kafka
    configuration in `KafkaResource`); a context manager."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float, client_id: str):
        self.bootstrap_servers, self.topic = bootstrap_servers, topic
        self.timeout_s, self.client_id = timeout_s, client_id
        self.leaders: dict[int, tuple[str, int]] = {}
        self.partition_count = 0
        self._sockets: dict[tuple[str, int], socket.socket] = {}
        self._correlation = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def find_leaders(self) -> dict[int, tuple[str, int]]:
        from kafka import KafkaAdminClient
        from kafka.errors import for_code

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=self.client_id,
                                 request_timeout_ms=int(self.timeout_s * 1000))
        try:
            brokers = {b["broker_id"]: (b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]}
            (described,) = admin.describe_topics([self.topic])
        finally:
            admin.close()
        if described["error_code"]:
            raise for_code(described["error_code"])(f"topic {self.topic}")
        self.partition_count = len(described["partitions"])
        self.leaders = {p["partition_index"]: brokers[p["leader_id"]] for p in described["partitions"]
                        if p["leader_id"] in brokers}
        return self.leaders

    def leader(self, partition: int) -> tuple[str, int]:
        if partition not in self.leaders:
            self.find_leaders()
        if partition not in self.leaders:
            raise KeyError(f"{self.topic} has no partition {partition} with a live leader")
        return self.leaders[partition]

    def _receive(self, sock: socket.socket, size: int) -> bytes:
        buf = bytearray(size)
        view, got = memoryview(buf), 0
        while got < size:
            n = sock.recv_into(view[got:], size - got)
            if n == 0:
                raise ConnectionError("the broker closed the connection")
            got += n
        return bytes(buf)

    def roundtrip(self, address: tuple[str, int], encode) -> bytes:
        """Send ``encode(correlation_id)`` to a broker, return its response after the correlation id."""
        self._correlation += 1
        sock = self._sockets.get(address)
        try:
            if sock is None:
                sock = self._sockets[address] = socket.create_connection(address, timeout=self.timeout_s)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(encode(self._correlation))
            (size,) = struct.unpack(">i", self._receive(sock, 4))
            payload = self._receive(sock, size)
        except OSError:
            if sock is not None:
                sock.close()
            self._sockets.pop(address, None)
            raise
        (got,) = struct.unpack_from(">i", payload)
        if got != self._correlation:
            raise ConnectionError(f"response to request {got}, expected {self._correlation}")
        return payload[4:]


class RangeReader(_Leaders):
    """Reads offset ranges of one topic from the partition leaders."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 11.0, max_bytes: int = 8 * 1024 * 1024,
                 max_wait_ms: int = 500, client_id: str = "tv_platform-range-reader"):
        super().__init__(bootstrap_servers, topic, timeout_s, client_id)
        self.max_bytes, self.max_wait_ms = max_bytes, max_wait_ms

    def fetch(self, partition: int, offset: int) -> PartitionData:
        """One Fetch of ``partition`` from ``offset`` (the broker waits up to ``max_wait_ms`` for data)."""
        payload = self.roundtrip(self.leader(partition), lambda c: encode_fetch(
            c, self.client_id, self.topic, partition, offset, self.max_wait_ms, self.max_bytes))
        return decode_fetch(payload, partition)

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
                    self.find_leaders()
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

    def read_exactly(self, partition: int, start: int, stop: int, timeout_s: float = 60.0) -> Records:
        """Exactly the records with start <= offset < stop; raises if they can't all be read within ``timeout_s``."""
        records, position = self.read(partition, start, stop, deadline=time.monotonic() + timeout_s)
        if position < stop:
            raise TimeoutError(f"read {self.topic}[{partition}] offsets {start}..{stop}: stuck at {position} "
                               f"after {timeout_s:.0f}s")
        return records


class BatchWriter(_Leaders):
    """Writes records to the partition leaders of one topic: Produce v3, ``acks=-1`` (every in-sync replica), one
    request per leader at a time — so each partition gets its records in the order given."""

    def __init__(self, bootstrap_servers: str, topic: str, timeout_s: float = 30.0, batch_bytes: int = 512 * 1024,
                 client_id: str = "tv_platform-batch-writer"):
        super().__init__(bootstrap_servers, topic, timeout_s, client_id)
        self.batch_bytes = batch_bytes

    def _batches(self, partitions: np.ndarray, keys: pa.BinaryArray, values: pa.BinaryArray) -> dict[int, list]:
        """{partition: [(record count, batch bytes), …]}, each batch at most ``batch_bytes`` of keys and values."""
        stamp = int(time.time() * 1000)
        sizes = _lengths(keys) + _lengths(values)
        out: dict[int, list] = {}
        for p in np.unique(partitions).tolist():
            idx = np.flatnonzero(partitions == p)
            ends = np.cumsum(sizes[idx] + 8)
            cuts = [0, *(np.searchsorted(ends, np.arange(self.batch_bytes, int(ends[-1]), self.batch_bytes)).tolist()),
                    len(idx)]
            cuts = sorted(set(cuts))
            taken_keys, taken_values = keys.take(pa.array(idx)), values.take(pa.array(idx))
            out[p] = [(b - a, encode_record_batch(taken_keys.slice(a, b - a), taken_values.slice(a, b - a), stamp))
                      for a, b in zip(cuts, cuts[1:])]
        return out

    def write(self, partitions: np.ndarray, keys: pa.BinaryArray, values: pa.BinaryArray) -> int:
        """Send each record to its partition (``partitions[i]``); returns how many the brokers acknowledged. Raises
        with the broker's error on anything but a moved leader (then it asks where the leader is, once, and resends
        what was refused: a refused batch was not appended)."""
        from kafka.errors import for_code

        if not self.leaders:
            self.find_leaders()
        queues = self._batches(np.asarray(partitions), keys, values)
        acknowledged, moved = 0, False
        while any(queues.values()):
            by_leader: dict[tuple[str, int], dict[int, tuple[int, bytes]]] = {}
            for p, queue in queues.items():  # the next batch of every partition, grouped by leader
                if queue:
                    by_leader.setdefault(self.leader(p), {})[p] = queue[0]
            refused = []
            for address, heads in by_leader.items():
                payload = self.roundtrip(address, lambda c: encode_produce(
                    c, self.client_id, self.topic, {p: b for p, (_, b) in heads.items()}, int(self.timeout_s * 1000)))
                answers = decode_produce(payload)
                if set(answers) != set(heads):
                    raise ConnectionError(f"produce to {self.topic}: answers for partitions {sorted(answers)}, "
                                          f"sent {sorted(heads)}")
                for p, (error, _base) in answers.items():
                    if error == 0:
                        acknowledged += heads[p][0]
                        queues[p].pop(0)
                    elif getattr(for_code(error), "invalid_metadata", False) and not moved:
                        refused.append(p)
                    else:
                        raise for_code(error)(f"produce to {self.topic}[{p}]")
            if refused:
                moved = True
                self.find_leaders()
        return acknowledged
