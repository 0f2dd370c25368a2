"""The Kafka data path on librdkafka (confluent-kafka): the range reader against what was produced, read_committed
against a transactional producer's commits and aborts, the sensor's cut of offsets by record timestamps, and the
security settings as each client gets them."""

import random
import time

import pytest

from tv_platform.dates import day_start_ms, record_day, timer_ms
from tv_platform.engines.kafka import KafkaClientError, KafkaResource
from tv_platform.resources import kafka_resource, lake_resource
from tv_platform.sensors import cut_by_timestamp
from tv_platform.streaming import DateRange
from tv_platform_tests.private_kafka import kafka_up

DAYS = [f"2023-10-{d:02d}" for d in range(1, 31)]


@pytest.fixture(scope="module")
def kafka_stack(settings):
    return kafka_up(settings)


def _cut(stamps, start, stop, days=DAYS):
    """The sensor's cut over records with these timestamps (offset = index), ``find`` as the broker answers it."""
    def find(ts):
        hit = next((i for i, t in enumerate(stamps) if t >= ts), None)
        return None if hit is None else (hit, stamps[hit])

    first = next(stamps[i] for i in range(start, stop))
    return cut_by_timestamp(0, start, stop, first, find, days)


def test_ordered_timestamps_are_cut_exactly_at_midnight():
    rng = random.Random(5)
    stamps = sorted(day_start_ms("2023-10-03") + rng.randrange(4 * 86_400_000) for _ in range(5_000))
    for start, stop in ((0, 5_000), (1_234, 4_321), (10, 11)):
        ranges = _cut(stamps, start, stop)
        # contiguous, covering [start, stop), and every record in the range of its own day
        assert ranges[0].start == start and ranges[-1].end == stop
        assert all(a.end == b.start for a, b in zip(ranges, ranges[1:]))
        for r in ranges:
            assert {record_day(stamps[i]) for i in range(r.start, r.end)} == {r.day}
        assert len({r.day for r in ranges}) == len(ranges)


def test_days_outside_the_partitions_join_the_nearest_and_late_records_stay_in_place():
    stamps = [day_start_ms("2023-09-20")] * 3 + [day_start_ms("2023-10-02") + 5] * 4 + \
             [day_start_ms("2023-10-01") + 7] + [day_start_ms("2023-10-02") + 9] * 2 + [day_start_ms("2024-05-05")] * 3
    ranges = _cut(stamps, 0, len(stamps))
    assert ranges == [DateRange(0, 0, 3, "2023-10-01"), DateRange(0, 3, 10, "2023-10-02"),
                      DateRange(0, 10, 13, "2023-10-30")]


def test_a_day_is_its_timers_date():
    stamps = timer_ms(["2023-10-05 00:00:00", "2023-10-05 23:59:59"])
    assert [record_day(t) for t in stamps] == ["2023-10-05", "2023-10-05"]
    assert stamps[0] == day_start_ms("2023-10-05")


def test_security_settings_reach_both_clients():
    kafka = KafkaResource(bootstrap_servers="b:1", topic="t", security_protocol="SASL_SSL",
                          sasl_mechanism="SCRAM-SHA-256", sasl_username="u", sasl_password="p", ssl_cafile="/ca.pem",
                          ssl_certfile="/c.pem", ssl_keyfile="/k.pem")
    rd = kafka.librdkafka_config()
    assert (rd["security.protocol"], rd["sasl.mechanism"], rd["sasl.username"], rd["sasl.password"]) == \
        ("sasl_ssl", "SCRAM-SHA-256", "u", "p")
    assert (rd["ssl.ca.location"], rd["ssl.certificate.location"], rd["ssl.key.location"]) == \
        ("/ca.pem", "/c.pem", "/k.pem")
    kp = kafka.kafka_python_config()
    assert (kp["security_protocol"], kp["sasl_mechanism"], kp["sasl_plain_username"], kp["sasl_plain_password"],
            kp["ssl_cafile"], kp["ssl_certfile"], kp["ssl_keyfile"]) == \
        ("SASL_SSL", "SCRAM-SHA-256", "u", "p", "/ca.pem", "/c.pem", "/k.pem")
    plain = KafkaResource(bootstrap_servers="b:1", topic="t").librdkafka_config()
    assert plain["security.protocol"] == "plaintext" and "sasl.mechanism" not in plain
    with pytest.raises(KafkaClientError, match="TVP_KAFKA_SECURITY_PROTOCOL"):
        KafkaResource(bootstrap_servers="b:1", topic="t", security_protocol="TLS").librdkafka_config()


@pytest.mark.services
def test_a_day_produced_at_once_is_accepted_up_to_the_end_of_tomorrow(kafka_stack, unique):
    """Kafka 4 refuses a record stamped more than an hour ahead of the broker by default; the demo's live day (and a
    replay of today) is produced at once, its events stamped up to the end of tomorrow: the platform's topics accept
    them (FUTURE_TIMESTAMP_MS), and the broker still refuses a record stamped beyond that."""
    from confluent_kafka import Producer

    from tv_platform.engines.kafka import FUTURE_TIMESTAMP_MS

    kafka = kafka_resource(kafka_stack).with_topic(f"ahead_{unique}")
    kafka.ensure_topic(partitions=1)
    now = int(time.time() * 1000)
    ahead = [now + h * 3_600_000 for h in (0, 2, 23, 47)]
    failed = []
    producer = Producer({**kafka.librdkafka_config(), "linger.ms": 0})
    for ts in ahead:
        producer.produce(kafka.topic, b"x", timestamp=ts, on_delivery=lambda err, msg: err and failed.append(err))
        producer.flush(30)
    assert not failed, failed
    with kafka.reader() as reader:
        assert [m.timestamp_ms for m in reader.read_exactly(0, 0, len(ahead))] == ahead
    producer.produce(kafka.topic, b"y", timestamp=now + FUTURE_TIMESTAMP_MS + 3_600_000,
                     on_delivery=lambda err, msg: err and failed.append(err))
    producer.flush(30)
    assert len(failed) == 1 and "timestamp" in str(failed[0]).lower(), failed


@pytest.mark.services
def test_an_existing_topic_with_kafkas_hour_limit_gets_the_platforms(kafka_stack, unique):
    """A topic made before the platform set its timestamp limit (or by hand, with Kafka 4's one hour): ensure_topic
    raises it to FUTURE_TIMESTAMP_MS and leaves its other settings as they were."""
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    from tv_platform.engines.kafka import FUTURE_TIMESTAMP_MS

    kafka = kafka_resource(kafka_stack).with_topic(f"old_{unique}")
    admin = kafka.admin()
    try:
        admin.create_topics([NewTopic(kafka.topic, 1, 1, topic_configs={
            "message.timestamp.after.max.ms": "3600000", "retention.ms": "123456789"})])
    finally:
        admin.close()
    assert kafka.timestamp_ahead_limit_ms() == 3_600_000
    kafka.ensure_topic()
    assert kafka.timestamp_ahead_limit_ms() == FUTURE_TIMESTAMP_MS
    admin = kafka.admin()
    try:
        answer = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, kafka.topic, {"retention.ms": None})],
                                        config_filter="all")
    finally:
        admin.close()
    assert answer["topic"][kafka.topic]["retention.ms"]["value"] == "123456789"


def _first_difference(got: list, want: list) -> str:
    """Where two record lists part, in one line (a full diff of 6 000 random values says nothing)."""
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    show = lambda rows: [r[:3] + (None if r[3] is None else len(r[3]),) for r in rows[at:at + 3]]  # noqa: E731
    return (f"{len(got)} records read, {len(want)} produced; first difference at index {at}: "
            f"read {show(got)}, produced {show(want)} (offset, timestamp, key, value length)")


@pytest.mark.services
def test_the_reader_reads_exactly_what_was_produced(kafka_stack, unique):
    kafka = kafka_resource(kafka_stack).with_topic(f"read_{unique}")
    kafka.ensure_topic(partitions=2)
    rng = random.Random(11)
    sent = {0: [], 1: []}
    for compression in ("gzip", "zstd"):  # batches of both kinds in one partition
        # the platform's producer (idempotent: a plain librdkafka producer may reorder batches when the first one is
        # retried — a topic's leader is not known yet — which is what once failed this test in CI)
        producer = kafka.producer(**{"compression.type": compression, "batch.size": 16_384, "linger.ms": 5})
        for i in range(6_000):
            value = None if i % 1000 == 3 else bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
            key = None if i % 5 == 1 else f"k{i % 17}".encode()
            producer.produce(kafka.topic, value, key, partition=i % 2, timestamp=1_695_500_000_000 + i)
            sent[i % 2].append((1_695_500_000_000 + i, key, value))
        assert producer.flush(30) == 0
    _, end = kafka.offsets()
    assert end == {0: 6_000, 1: 6_000}
    with kafka.reader() as reader:
        for partition, start, stop in ((0, 0, 6_000), (1, 0, 6_000), (1, 2_345, 4_567)):
            records = reader.read_exactly(partition, start, stop)
            got = [(m.offset, m.timestamp_ms, m.key, m.value) for m in records]
            want = [(o, *sent[partition][o]) for o in range(start, stop)]
            assert got == want, _first_difference(got, want)
        # several ranges at once (what a landing run reads): partitions side by side, two ranges of one partition one
        # after the other, an empty range — each exactly what read_exactly gives, in the order asked
        asked = [(1, 100, 5_900), (0, 0, 6_000), (1, 5_900, 6_000), (0, 17, 17), (1, 0, 100)]
        together = reader.read_ranges(asked)
        for (partition, start, stop), records in zip(asked, together):
            got = [(m.offset, m.timestamp_ms, m.key, m.value) for m in records]
            want = [(o, *sent[partition][o]) for o in range(start, stop)]
            assert records.partition == partition and got == want, _first_difference(got, want)
        # past the end: it reads what there is until the deadline
        records, reached = reader.read(0, 5_990, 6_100, deadline=time.monotonic() + 1.5)
        assert len(records) == 10 and reached == 6_000
        with pytest.raises(KafkaClientError):
            reader.read(0, 7_000, 7_010, deadline=time.monotonic() + 5)
        with pytest.raises(TimeoutError, match=r"\[1\] offsets 5990..6100: stuck at 6000"):
            reader.read_ranges([(0, 0, 10), (1, 5_990, 6_100)], timeout_s=2)


@pytest.mark.services
def test_read_committed_skips_aborted_transactions_and_the_sensor_cuts_around_them(kafka_stack, unique):
    stack = kafka_stack
    import dagster as dg
    from confluent_kafka import Producer

    from tv_platform.sensors import kafka_events_sensor

    kafka = kafka_resource(stack).with_topic(f"txn_{unique}")
    kafka.ensure_topic(partitions=1)
    producer = Producer({**kafka.librdkafka_config(), "transactional.id": f"tvp-test-{unique}"})
    producer.init_transactions(30)
    committed = []
    for n, commit in enumerate((True, False, True, False)):
        producer.begin_transaction()
        for i in range(100):
            value = f'{{"txn":{n},"i":{i}}}'.encode()
            producer.produce(kafka.topic, value, b"k", timestamp=day_start_ms("2023-10-07") + n * 1000 + i)
            if commit:
                committed.append(value)
        assert producer.flush(30) == 0  # all sent before the transaction ends
        (producer.commit_transaction if commit else producer.abort_transaction)(30)
    _, end = kafka.offsets()
    assert end[0] == 404  # 400 records and 4 markers
    records = kafka.read_range(0, 0, end[0])
    assert records.values.to_pylist() == committed

    ctx = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"kafka": kafka, "lake": lake_resource(stack)})
    result = kafka_events_sensor(ctx)
    assert len(result.run_requests) == 1, [(r.partition_key, r.run_config) for r in result.run_requests]
    (rr,) = result.run_requests
    assert rr.partition_key == "2023-10-07"
    assert rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"] == [{"partition": 0, "start": 0, "end": 404}]
