"""Kafka brokers of a test's own — on free ports, under a state directory of their own — for what the shared stack's
broker must not be reconfigured for: a SASL_SSL listener, a 3-node cluster. Started with the stack's own code
(``tv_platform/stack/kafka.py``) and stopped, state and all, when the test is done."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path

from tv_platform.settings import Settings
from tv_platform.stack.base import port_open
from tv_platform.stack.kafka import KafkaService, kafka_nodes


def free_base_port(span: int, low: int = 29_100, high: int = 39_000) -> int:
    """A port p such that p .. p+span-1 are all free (the nodes' ports are bases + 2(n-1))."""
    for base in range(low + (os.getpid() % 97) * 50, high, 50):
        if not any(port_open(p) for p in range(base, base + span)):
            return base
    raise RuntimeError("no free ports for a private Kafka")


@contextmanager
def private_kafka(settings: Settings, state_dir: Path, brokers: int = 1, sasl_ssl: bool = False):
    """Start ``brokers`` KRaft nodes (and a SASL_SSL listener) under ``state_dir``; yields their settings."""
    base = free_base_port(6 * brokers + 2)
    own = dataclasses.replace(
        settings, state_dir=state_dir,
        kafka_bootstrap=",".join(f"127.0.0.1:{base + 2 * n}" for n in range(brokers)), kafka_controller_port=base + 1,
        kafka_brokers=brokers, kafka_sasl_ssl_port=base + 2 * brokers if sasl_ssl else 0, kafka_heap="384m",
        kafka_partitions=3)
    nodes = kafka_nodes(own)
    try:
        for node in nodes:
            node.install(lambda _m: None)
            node.start()
        yield own
    finally:
        for node in reversed(nodes):
            node.stop(timeout=15)
        shutil.rmtree(state_dir, ignore_errors=True)


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
