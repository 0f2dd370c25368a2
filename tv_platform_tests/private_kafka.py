"""Kafka brokers of a test's own — on free ports, under a state directory of their own — for what the shared stack's
broker must not be reconfigured for: a SASL_SSL listener, a 3-node cluster (``own_kafka``, the stack's own code), and
a crash of one of them."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from contextlib import contextmanager

from tv_platform.settings import Settings
from tv_platform.stack.kafka import KafkaService, kafka_nodes, own_kafka

private_kafka = own_kafka


def node_of(settings: Settings, node_id: int) -> KafkaService:
    return kafka_nodes(settings)[node_id - 1]


def kill(node: KafkaService) -> None:
    """SIGKILL the node's JVM (its whole process group), as a crash would."""
    pid = node.recorded_pid()
    assert pid, f"{node.name} is not running"
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while node.running() and time.monotonic() < deadline:
        time.sleep(0.1)


def hdfs_up(settings: Settings) -> Settings:
    """The stack's HDFS (and the Kafka jars), up — all a private Kafka's landing tests need of the stack."""
    from tv_platform.cli import stack_up

    stack_up(["hdfs"], quiet=True)
    return settings


@contextmanager
def reference_lake(settings: Settings, name: str):
    """A lake root of its own on the stack's HDFS with ``channels`` and ``users`` (10 000, seed 42) in it — what a
    landing validates against; deleted afterwards."""
    import uuid

    import dagster as dg

    from tv_platform.assets import ingest
    from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
    from tv_platform.resources import hdfs_io_manager, lake_resource

    root = f"/tests/{name}_{uuid.uuid4().hex[:8]}"
    lake = LakeResource(**{**lake_resource(settings).model_dump(), "lake_root": root})
    io_manager = HdfsCsvIOManager(**{**hdfs_io_manager(settings).model_dump(), "lake_root": root})
    assert dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": io_manager},
                          run_config={"ops": {"users": {"config": {"users": 10_000, "seed": 42}}}}).success
    try:
        yield lake
    finally:
        lake.fs().delete(root)


def landed_events(lake, days) -> Counter:
    """(session_id, status, timer) of every event landed in the lake's raw stream files of ``days``, counted."""
    import io

    import pandas as pd

    from tv_platform import layout

    fs, got = lake.fs(), Counter()
    for day in sorted(set(days)):
        base = layout.partition_dir(layout.raw_dir("tv_stream", lake.lake_root), day)
        for n in fs.listdir(base):
            if n.endswith(".csv"):
                frame = pd.read_csv(io.BytesIO(fs.read_bytes(f"{base}/{n}")))
                got.update(zip(frame.session_id, frame.status, frame.timer))
    return got


def produced_events(frame) -> Counter:
    """(session_id, status, timer) of every event of a produced frame, counted."""
    return Counter(zip(frame.session_id, frame.status, frame.timer.dt.strftime("%Y-%m-%d %H:%M:%S")))


def kafka_up(settings: Settings) -> Settings:
    """The stack's broker up — all a test of the Kafka clients needs of the stack."""
    from tv_platform.cli import stack_up

    stack_up(["kafka"], quiet=True)
    return settings
