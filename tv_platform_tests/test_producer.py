"""The producer's fast path: JSON and partitions computed for all events at once, record batches built column-wise.

Unit tests check it against the reference implementations (``json.dumps``, kafka-python's murmur2 partitioner);
the broker test reads back what it sent to a real topic."""

import json
import random
from datetime import date

import pandas as pd
import pytest
from kafka.partitioner.default import murmur2

from tv_platform.engines.kafka import (
    JsonSerializer, encode_event_arrays, event_to_json, murmur2_partitions, publish_frame,
)
from tv_platform.resources import kafka_resource
from tv_platform.simulator.live import live_frame
from tv_platform.simulator.model import SimulationParams


def test_murmur2_partitions_agree_with_kafkas_default_partitioner():
    rng = random.Random(3)
    keys = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    keys += [f"{rng.getrandbits(128):032x}".encode() for _ in range(4000)]  # session ids: the common case
    for partitions in (1, 3, 7, 12):
        want = [(murmur2(k) & 0x7FFFFFFF) % partitions for k in keys]
        assert murmur2_partitions(keys, partitions).tolist() == want


def test_encoded_events_are_the_json_of_each_event():
    frame = live_frame(date(2023, 10, 10), SimulationParams(users=5_000, seed=2), count=3_000)
    keys, values = (a.to_pylist() for a in encode_event_arrays(frame))
    serializer = JsonSerializer()
    assert values == [serializer.serialize(None, None, event_to_json(e)) for e in frame.to_dict("records")]
    assert keys == [s.encode() for s in frame["session_id"]]


def test_strings_that_json_must_escape_are_escaped():
    frame = pd.DataFrame([{"session_id": 'a"b\\c', "user_id": 1, "channel_id": 2, "timer": "2023-01-01 00:00:00",
                           "status": "enab\x01"}, {"session_id": "ok", "user_id": -5, "channel_id": 0,
                                                   "timer": "2023-01-01 00:00:01", "status": "disabled"}])
    values = encode_event_arrays(frame)[1].to_pylist()
    assert [json.loads(v) for v in values] == [event_to_json(e) for e in frame.to_dict("records")]


@pytest.mark.services
def test_published_events_keep_their_keys_partition_and_order(stack, unique):
    kafka = kafka_resource(stack).with_topic(f"producer_{unique}")
    kafka.ensure_topic(partitions=4)
    frame = live_frame(date(2023, 10, 10), SimulationParams(users=30_000, seed=4), count=45_000)
    assert publish_frame(kafka, frame, progress=False, chunk=10_000) == 45_000

    _, end = kafka.offsets()
    assert sum(end.values()) == 45_000
    keys = encode_event_arrays(frame)[0].to_pylist()
    expected = murmur2_partitions(keys, 4)
    for partition, n in end.items():
        records = kafka.read_range(partition, 0, n)
        events = [json.loads(r.value) for r in records]
        mine = frame[expected == partition]
        # exactly this partition's events, in the frame's (timer) order, keys intact
        assert [e["session_id"] for e in events] == mine["session_id"].tolist()
        assert [r.key.decode() for r in records] == mine["session_id"].tolist()
        timers = [e["timer"] for e in events]
        assert timers == sorted(timers)
