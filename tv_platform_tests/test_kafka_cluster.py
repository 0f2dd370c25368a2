"""A real 3-broker KRaft cluster (the stack's own code, `TVP_KAFKA_BROKERS=3`, on ports and a state directory of the
test's own): topics with replication factor 3 and min.insync.replicas=2; the partition leader is SIGKILLed during a
`produce` and again during a landing run — every event is there, and lands, exactly once (counted from the produced
frame, not from the platform's metadata) — and the killed broker rejoins the in-sync replicas."""

import threading
import time
import uuid
from collections import Counter
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from tv_platform.assets import ingest
from tv_platform.engines.kafka import encode_event_arrays, publish_frame
from tv_platform.resources import kafka_resource
from tv_platform.sensors import kafka_events_sensor
from tv_platform.simulator.live import live_frame
from tv_platform.simulator.model import SimulationParams
from tv_platform_tests.private_kafka import (
    hdfs_up, kill, landed_events, node_of, private_kafka, produced_events, reference_lake,
)

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def cluster(settings, tmp_path_factory):
    with private_kafka(hdfs_up(settings), tmp_path_factory.mktemp("kafka_cluster") / "state", brokers=3) as own:
        yield own


def _describe(kafka, topic):
    from confluent_kafka.admin import AdminClient

    admin, deadline = AdminClient(kafka.librdkafka_config()), time.monotonic() + 60
    while True:  # a topic just created takes a moment to reach every broker's metadata
        meta = admin.list_topics(topic, timeout=15).topics[topic]
        if (meta.error is None and meta.partitions and all(p.leader >= 0 for p in meta.partitions.values())) \
                or time.monotonic() > deadline:
            return meta.partitions  # {id: PartitionMetadata(leader, replicas, isrs)}
        time.sleep(0.5)


def _topic_config(kafka, topic, name):
    from confluent_kafka.admin import AdminClient, ConfigResource

    from confluent_kafka import KafkaError, KafkaException

    admin, deadline = AdminClient(kafka.librdkafka_config()), time.monotonic() + 60  # kept until the answer is in
    while True:  # the broker asked may not have the new topic in its metadata yet
        (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
        try:
            return future.result(15)[name].value
        except KafkaException as error:
            if error.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def _wait_rejoined(kafka, topic, node_id, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(node_id in p.isrs and len(p.isrs) == 3 for p in _describe(kafka, topic).values()):
            return
        time.sleep(1)
    raise AssertionError(f"broker {node_id} did not rejoin the ISR of {topic}: {_describe(kafka, topic)}")


def _kill_leader_then_restart(cluster, kafka, topic, when):
    """Wait for ``when()``, SIGKILL the leader of partition 0; returns (killed node, its service)."""
    deadline = time.monotonic() + 120
    while not when() and time.monotonic() < deadline:
        time.sleep(0.05)
    leader = _describe(kafka, topic)[0].leader
    node = node_of(cluster, leader)
    kill(node)
    return leader, node


def _frame(first_day, days, seed):
    """Consecutive simulated days of the reference's 10 000 subscribers (16 k events a day), in timer order."""
    from datetime import timedelta

    return pd.concat([live_frame(first_day + timedelta(days=d), SimulationParams(users=10_000, seed=seed))
                      for d in range(days)], ignore_index=True)


def _values_in_topic(kafka):
    _, end = kafka.offsets()
    with kafka.reader() as reader:
        return Counter(v for p, n in end.items() for v in reader.read_exactly(p, 0, n, timeout_s=120).values.to_pylist())


def test_topics_are_replicated_three_times_with_two_in_sync_required(cluster):
    kafka = kafka_resource(cluster).with_topic(f"rf_{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic(partitions=3)
    parts = _describe(kafka, kafka.topic)
    assert sorted(parts) == [0, 1, 2] and all(len(p.replicas) == 3 for p in parts.values())
    assert _topic_config(kafka, kafka.topic, "min.insync.replicas") == "2"


def test_leader_killed_during_produce_every_event_once_and_the_broker_rejoins(cluster):
    kafka = kafka_resource(cluster).with_topic(f"kill_produce_{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic(partitions=3)
    frame = _frame(date(2023, 10, 1), 18, 21)  # ≈ 290 k events, ≈ 7 s at 40 k/s
    outcome = {}
    producing = threading.Thread(target=lambda: outcome.update(sent=publish_frame(kafka, frame, rate=40_000,
                                                                                  progress=False)))
    producing.start()
    leader, node = _kill_leader_then_restart(cluster, kafka, kafka.topic,
                                             lambda: sum(kafka.offsets()[1].values()) > 80_000)
    producing.join(timeout=300)
    assert outcome.get("sent") == len(frame)
    assert _values_in_topic(kafka) == Counter(encode_event_arrays(frame)[1].to_pylist())
    node.start()
    _wait_rejoined(kafka, kafka.topic, leader)


@pytest.fixture(scope="module")
def lake_res(cluster):
    with reference_lake(cluster, "kafka_cluster") as lake:
        yield lake


def test_leader_killed_during_a_landing_run_every_event_lands_once(cluster, lake_res):
    kafka = kafka_resource(cluster).with_topic(f"kill_land_{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic(partitions=3)
    frame = _frame(date(2023, 11, 1), 20, 22)  # ≈ 320 k events: twenty landing runs
    assert publish_frame(kafka, frame, progress=False) == len(frame)
    ctx = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"kafka": kafka, "lake": lake_res})
    requests = kafka_events_sensor(ctx).run_requests
    assert requests
    started, results = threading.Event(), []

    def land():
        started.set()
        for rr in requests:
            results.append(dg.materialize([ingest.tv_stream_snapshot], partition_key=rr.partition_key,
                                          run_config=rr.run_config, resources={"kafka": kafka, "lake": lake_res}))

    landing = threading.Thread(target=land)
    landing.start()
    started.wait()
    time.sleep(0.5)  # the run is reading
    leader, node = _kill_leader_then_restart(cluster, kafka, kafka.topic, lambda: True)
    landing.join(timeout=600)
    assert len(results) == len(requests) and all(r.success for r in results)
    assert landed_events(lake_res, [rr.partition_key for rr in requests]) == produced_events(frame)
    node.start()
    _wait_rejoined(kafka, kafka.topic, leader)
