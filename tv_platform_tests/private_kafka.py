"""Kafka brokers of a test's own — on free ports, under a state directory of their own — for what the shared stack's
broker must not be reconfigured for: a SASL_SSL listener, a 3-node cluster (``own_kafka``, the stack's own code), and
a crash of one of them."""

from __future__ import annotations

import os
import signal
import time

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
