"""The range reader: record batches decoded column-wise, checked against kafka-python's own record reader (unit tests,
batches built by kafka-python's builder) and against kafka-python's consumer on the real broker."""

import random
import struct
import time

import pytest
from crc32c import crc32c
from kafka import KafkaConsumer, TopicPartition
from kafka import codec as kc
from kafka.errors import OffsetOutOfRangeError
from kafka.record import MemoryRecords
from kafka.record.memory_records import MemoryRecordsBuilder

from tv_platform.engines.kafka_wire import (
    BatchWriter, CorruptRecordsError, RangeReader, decode_record_set, encode_record_batch,
)
from tv_platform.resources import kafka_resource

CODECS = {"none": 0, "gzip": 1}
if kc.has_snappy():
    CODECS["snappy"] = 2
if kc.has_lz4():
    CODECS["lz4"] = 3
if kc.has_zstd():
    CODECS["zstd"] = 4


def _batch(rng: random.Random, offset: int, codec: int, count: int, skip_every: int = 0) -> bytes:
    builder = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=10**8, offset=offset)
    base_time = 1_695_500_000_000
    for i in range(count):
        if skip_every and i % skip_every == skip_every - 1:
            builder.skip(rng.randint(1, 3))  # offsets removed by compaction
        key = None if rng.random() < 0.2 else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40)))
        size = rng.choice([0, 5, 63, 64, 150, 8191, 8192, 20_000])
        value = None if rng.random() < 0.05 else bytes(rng.getrandbits(8) for _ in range(size))
        headers = [("h", b"v" * rng.randint(0, 3))] if rng.random() < 0.1 else []
        builder.append(base_time + rng.randint(-5_000, 5_000_000), key, value, headers)
    builder.close()
    return bytes(builder.buffer())


def _reference(data: bytes, start: int, stop: int) -> list[tuple]:
    """What kafka-python's record reader finds in ``data``: (offset, timestamp, key, value) in [start, stop)."""
    out, records = [], MemoryRecords(data)
    while (batch := records.next_batch()) is not None:
        for r in batch:
            if start <= r.offset < stop:
                out.append((r.offset, r.timestamp, r.key, r.value))
    return out


def _decoded(data: bytes, start: int = 0, stop: int = 2**62) -> list[tuple]:
    records, _ = decode_record_set(data, 3, start, stop)
    assert records.partition == 3
    return [(m.offset, m.timestamp_ms, m.key, m.value) for m in records]


@pytest.mark.parametrize("codec", sorted(CODECS))
def test_batches_decode_as_kafka_python_reads_them(codec):
    rng = random.Random(CODECS[codec])
    data, offset = b"", 0
    for count in (1, 2, 130, 700, 1):
        batch = _batch(rng, offset, CODECS[codec], count, skip_every=50)
        data += batch
        offset = struct.unpack_from(">q", batch)[0] + struct.unpack_from(">i", batch, 23)[0] + 1
    everything = _reference(data, 0, 2**62)
    assert len(everything) == 834
    assert _decoded(data) == everything
    # a range cuts batches: only its offsets
    lo, hi = everything[100][0], everything[600][0]
    assert _decoded(data, lo, hi) == _reference(data, lo, hi)


def test_next_offset_skips_whole_batches_and_ignores_a_cut_off_last_one():
    rng = random.Random(7)
    first, second = _batch(rng, 0, 0, 10), _batch(rng, 10, 0, 10)
    records, next_offset = decode_record_set(first + second[:-5], 0)
    assert [m.offset for m in records] == list(range(10)) and next_offset == 10
    records, next_offset = decode_record_set(first + second, 0, start=12, stop=15)
    assert [m.offset for m in records] == [12, 13, 14] and next_offset == 20
    empty, next_offset = decode_record_set(b"", 0, start=5)
    assert len(empty) == 0 and next_offset == 5


def _with_attributes(batch: bytes, attributes: int) -> bytes:
    patched = bytearray(batch)
    struct.pack_into(">h", patched, 21, attributes)
    struct.pack_into(">I", patched, 17, crc32c(bytes(patched[21:])))
    return bytes(patched)


def test_control_batches_are_skipped_and_log_append_time_is_the_batch_time():
    rng = random.Random(8)
    marker = _with_attributes(_batch(rng, 0, 0, 1), 0x20)
    data = _batch(rng, 1, 0, 5)
    records, next_offset = decode_record_set(marker + data, 0)
    assert [m.offset for m in records] == [1, 2, 3, 4, 5] and next_offset == 6
    stamped = _with_attributes(data, 0x08)
    max_time = struct.unpack_from(">q", stamped, 35)[0]
    records, _ = decode_record_set(stamped, 0)
    assert set(records.timestamps.tolist()) == {max_time}


def test_a_corrupt_batch_is_an_error_not_a_silent_drop():
    data = bytearray(_batch(random.Random(9), 0, 0, 20))
    data[200] ^= 0xFF
    with pytest.raises(CorruptRecordsError, match="CRC"):
        decode_record_set(bytes(data), 4)
    old_format = bytearray(_batch(random.Random(9), 0, 0, 2))
    old_format[16] = 1
    with pytest.raises(CorruptRecordsError, match="message format v1"):
        decode_record_set(bytes(old_format), 4)


def _consumer_reads(bootstrap: str, topic: str, partition: int, start: int, stop: int) -> list[tuple]:
    """The reference: kafka-python's consumer, assign + seek + poll."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek(tp, start)
    out, deadline = [], time.monotonic() + 60
    while consumer.position(tp) < stop and time.monotonic() < deadline:
        for r in consumer.poll(timeout_ms=1000).get(tp, []):
            if r.offset < stop:
                out.append((r.offset, r.timestamp, r.key, r.value))
    consumer.close()
    return out


@pytest.mark.services
def test_the_reader_reads_what_kafka_pythons_consumer_reads(stack, unique):
    kafka = kafka_resource(stack).with_topic(f"fetch_{unique}")
    kafka.ensure_topic(partitions=2)
    rng = random.Random(11)
    for compression in ("gzip", None):  # batches of both kinds in one partition
        producer = kafka.producer(compression_type=compression, key_serializer=None, value_serializer=None,
                                  batch_size=16_384)
        for i in range(6_000):
            value = None if i % 1000 == 3 else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            producer.send(kafka.topic, key=None if i % 5 == 1 else f"k{i % 17}".encode(), value=value,
                          partition=i % 2, timestamp_ms=1_695_500_000_000 + i)
        producer.flush()
        producer.close()
    _, end = kafka.offsets()
    assert end == {0: 6_000, 1: 6_000}
    with RangeReader(stack.kafka_bootstrap, kafka.topic, max_bytes=64 * 1024) as reader:  # many fetches
        for partition, start, stop in ((0, 0, 6_000), (1, 0, 6_000), (1, 2_345, 4_567)):
            records, reached = reader.read(partition, start, stop, deadline=time.monotonic() + 60)
            assert reached == stop
            assert [(m.offset, m.timestamp_ms, m.key, m.value) for m in records] == \
                _consumer_reads(stack.kafka_bootstrap, kafka.topic, partition, start, stop)
        # past the end: it reads what there is until the deadline
        records, reached = reader.read(0, 5_990, 6_100, deadline=time.monotonic() + 1.5)
        assert len(records) == 10 and reached == 6_000
        with pytest.raises(OffsetOutOfRangeError):
            reader.read(0, 7_000, 7_010, deadline=time.monotonic() + 5)


def test_encoded_batches_read_back_with_kafka_python():
    import pyarrow as pa

    rng = random.Random(12)
    keys = [bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 32, 70, 200]))) for _ in range(3_000)]
    values = [bytes(rng.getrandbits(8) for _ in range(rng.choice([0, 1, 63, 64, 150, 8191, 8192, 20_000])))
              for _ in range(3_000)]
    k, v = pa.array(keys, type=pa.binary()), pa.array(values, type=pa.binary())
    for lo, hi in ((0, 1), (0, 3_000), (1_234, 2_345)):  # slices of arrays too
        batch = encode_record_batch(k.slice(lo, hi - lo), v.slice(lo, hi - lo), 1_695_500_000_123)
        assert _reference(batch, 0, 2**62) == [(i, 1_695_500_000_123, keys[lo + i], values[lo + i])
                                               for i in range(hi - lo)]
        assert _decoded(batch) == _reference(batch, 0, 2**62)


@pytest.mark.services
def test_the_writer_delivers_every_record_to_its_partition_in_order(stack, unique):
    import numpy as np
    import pyarrow as pa

    kafka = kafka_resource(stack).with_topic(f"write_{unique}")
    kafka.ensure_topic(partitions=3)
    rng = random.Random(13)
    n = 30_000
    keys = [f"{rng.getrandbits(128):032x}".encode() for _ in range(n)]
    values = [f'{{"i":{i},"pad":"{"x" * rng.randint(0, 400)}"}}'.encode() for i in range(n)]
    partitions = np.array([rng.randrange(3) for _ in range(n)])
    with BatchWriter(stack.kafka_bootstrap, kafka.topic, batch_bytes=64 * 1024) as writer:  # many batches a partition
        assert writer.write(partitions, pa.array(keys, type=pa.binary()), pa.array(values, type=pa.binary())) == n
        assert writer.partition_count == 3
    _, end = kafka.offsets()
    for p in range(3):
        mine = np.flatnonzero(partitions == p)
        assert end[p] == len(mine)
        got = _consumer_reads(stack.kafka_bootstrap, kafka.topic, p, 0, end[p])
        assert [(key, value) for _, _, key, value in got] == [(keys[i], values[i]) for i in mine]


def test_a_batch_claiming_more_records_than_it_holds_is_an_error():
    batch = bytearray(_batch(random.Random(14), 0, 0, 3))
    struct.pack_into(">i", batch, 57, 4)  # recordsCount
    struct.pack_into(">I", batch, 17, crc32c(bytes(batch[21:])))
    with pytest.raises(CorruptRecordsError, match="runs past the batch"):
        decode_record_set(bytes(batch), 0)
