"""Kafka over SASL_SSL end to end, on a broker of the test's own (the shared one is never reconfigured): the stack
makes the certificates (openssl, keytool) and the SCRAM user (the broker's kafka-configs); `tv-platform produce`, the
sensor and a landing run all go through the SASL_SSL listener; a wrong password is one clear line, quickly."""

import os
import subprocess
import sys
import time
import uuid
from datetime import date

import dagster as dg
import pytest

from tv_platform.assets import ingest
from tv_platform.engines.kafka import KafkaClientError, KafkaResource
from tv_platform.resources import kafka_resource
from tv_platform.sensors import kafka_events_sensor
from tv_platform.simulator.live import live_frame
from tv_platform.simulator.model import SimulationParams
from tv_platform_tests.private_kafka import hdfs_up, landed_events, private_kafka, produced_events, reference_lake

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def secure(settings, tmp_path_factory):
    with private_kafka(hdfs_up(settings), tmp_path_factory.mktemp("kafka_sasl_ssl") / "state", sasl_ssl=True) as own:
        yield own


def _env(own, **extra) -> dict:
    return {**os.environ, "TVP_KAFKA_BOOTSTRAP": f"127.0.0.1:{own.kafka_sasl_ssl_port}",
            "TVP_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "TVP_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "TVP_KAFKA_SASL_USERNAME": own.kafka_sasl_username, "TVP_KAFKA_SASL_PASSWORD": own.kafka_sasl_password,
            "TVP_KAFKA_SSL_CAFILE": str(own.state_dir / "data" / "kafka-tls" / "ca.pem"), **extra}


def _secure_resource(own, topic, mechanism, **extra):
    return KafkaResource(**{
        **kafka_resource(own).model_dump(), "bootstrap_servers": f"127.0.0.1:{own.kafka_sasl_ssl_port}",
        "topic": topic, "security_protocol": "SASL_SSL", "sasl_mechanism": mechanism,
        "ssl_cafile": str(own.state_dir / "data" / "kafka-tls" / "ca.pem"), **extra})


@pytest.fixture(scope="module")
def lake_res(secure):
    with reference_lake(secure, "kafka_sasl") as lake:
        yield lake


def test_produce_sense_and_land_through_sasl_ssl(secure, lake_res):
    topic = f"secure_{uuid.uuid4().hex[:8]}"
    # admin over SASL_SSL with PLAIN, producing with SCRAM-SHA-512 (the command line), reading with SCRAM-SHA-256
    _secure_resource(secure, topic, "PLAIN").ensure_topic(partitions=3)
    args = ["--topic", topic, "--date", "2023-10-14", "--users", "10000", "--seed", "3", "--count", "30000"]
    proc = subprocess.run([sys.executable, "-m", "tv_platform.cli", "produce", "--no-progress", *args],
                          env=_env(secure), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    kafka = _secure_resource(secure, topic, "SCRAM-SHA-256")
    ctx = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), resources={"kafka": kafka, "lake": lake_res})
    result = kafka_events_sensor(ctx)
    assert result.run_requests
    for rr in result.run_requests:
        res = dg.materialize([ingest.tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
                             resources={"kafka": kafka, "lake": lake_res})
        assert res.success
    frame = live_frame(date(2023, 10, 14), SimulationParams(users=10_000, seed=3), count=30_000)
    assert landed_events(lake_res, [rr.partition_key for rr in result.run_requests]) == produced_events(frame)


def test_a_wrong_password_is_one_clear_line_not_a_hang(secure):
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tv_platform.cli", "produce", "--no-progress", "--count", "10",
                           "--topic", "never"], env=_env(secure, TVP_KAFKA_SASL_PASSWORD="wrong"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tv-platform: kafka:"), proc.stderr
    assert "authentication" in lines[0].lower() or "sasl" in lines[0].lower(), lines[0]
    assert time.monotonic() - t0 < 60
    # the data path's clients alike
    wrong = _secure_resource(secure, "never", "SCRAM-SHA-256", sasl_password="wrong")
    for attempt in (lambda: wrong.producer(), lambda: wrong.reader().__enter__(), lambda: wrong.offsets()):
        t0 = time.monotonic()
        with pytest.raises(KafkaClientError) as info:
            attempt()
        assert "\n" not in str(info.value) and time.monotonic() - t0 < 45, str(info.value)
