"""A landing run killed with SIGKILL mid-range heals without a person (#14): under a real ``dagster dev`` (webserver,
daemon, code server) the Kafka sensor requests the run, the test kills the run's process while its step is landing,
the run is marked failed (its code server notices the dead process; run monitoring covers the cases where nobody is
left to notice), the sensor requests the range again after its backoff, and the retry lands every event exactly once
— counted from the files in the lake.

The instance is one of this test's own (sqlite in a temporary DAGSTER_HOME, run monitoring polling every 5 s), as are
the topic and the lake root; the events are dated long ago, so the automation sensor does not carry them further."""

from __future__ import annotations

import os
import signal
import time
import uuid

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tv_platform import layout
from tv_platform.assets import ingest
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.kafka import publish_frame
from tv_platform.resources import hdfs_io_manager, kafka_resource, lake_resource
from tv_platform_tests.test_dagster_ui import _free_port

pytestmark = pytest.mark.services

DAY = "2023-09-19"
EVENTS = 400_000  # one run (TVP_LANDING_RUN_RECORDS is 1 M) that takes seconds to land: time to kill it half way

INSTANCE_YAML = """\
run_monitoring:
  enabled: true
  start_timeout_seconds: 300  # a loaded laptop may take a while to start a run worker
  cancel_timeout_seconds: 30
  max_resume_run_attempts: 0
  poll_interval_seconds: 5
telemetry:
  enabled: false
"""


@pytest.fixture(scope="module")
def landing_stack(settings):
    """Only what landing needs: Kafka and HDFS (the run neither reads Spark nor writes a warehouse)."""
    from tv_platform.cli import stack_up

    stack_up(["kafka", "hdfs"], quiet=True)
    return settings


def _events(tag: str, n: int) -> pd.DataFrame:
    i = np.arange(n)
    return pd.DataFrame({
        "session_id": [f"{tag}{k:024x}" for k in i // 2],
        "user_id": 1 + (i // 2) % 500,
        "channel_id": 1 + (i // 2) % 148,
        "timer": pd.Timestamp(f"{DAY} 08:00:00") + pd.to_timedelta((i // 2) % 40_000 + (i % 2) * 600, unit="s"),
        "status": np.where(i % 2 == 0, "enabled", "disabled"),
    })


def _runs(instance) -> list:
    return instance.get_runs(filters=dg.RunsFilter(job_name="land_kafka_stream"))


def _step_pid(instance, run_id: str) -> int | None:
    """The pid of the process executing the run's landing step, once it has started."""
    for record in instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START).records:
        return record.event_log_entry.dagster_event.pid
    return None


def test_a_landing_run_killed_mid_range_is_retried_and_lands_everything_once(landing_stack, tmp_path, monkeypatch):
    stack = landing_stack
    from tv_platform.cli import dagster_env
    from tv_platform.demo import start_dagster, stop_dagster

    suffix = uuid.uuid4().hex[:8]
    root = f"/tests/sigkill_{suffix}"
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)
    kafka = kafka_resource(stack).with_topic(f"sigkill_{suffix}")
    kafka.ensure_topic(partitions=1)
    lake = LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": root})
    io_manager = HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": root})
    assert dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": io_manager},
                          run_config={"ops": {"users": {"config": {"users": 500}}}}).success
    frame = _events(suffix, EVENTS)
    assert publish_frame(kafka, frame, progress=False) == EVENTS

    env = {"DAGSTER_HOME": str(home), "TVP_KAFKA_TOPIC": kafka.topic, "TVP_LAKE_ROOT": root,
           "TVP_HIVE_DATABASE": f"tv_sigkill_{suffix}", "TVP_KAFKA_SENSOR_INTERVAL": "3",
           "TVP_LANDING_RETRY_BACKOFF": "2", "TVP_LANDING_MAX_ATTEMPTS": "5"}
    for key, value in {**dagster_env(), **env}.items():
        monkeypatch.setenv(key, value)
    proc = start_dagster(_free_port())
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            # 1. the sensor's run starts landing; kill its process with SIGKILL while the step runs
            deadline = time.monotonic() + 400
            first = pid = None
            while pid is None:
                assert time.monotonic() < deadline, "the sensor's landing run never started its step"
                for run in _runs(instance):
                    if not run.is_finished and (pid := _step_pid(instance, run.run_id)):
                        first = run
                        break
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)

            # 2. nobody touches anything: the run is marked failed, the range is requested again and lands
            deadline = time.monotonic() + 300
            while True:
                runs = {r.run_id: r for r in _runs(instance)}
                killed = runs[first.run_id]
                retries = [r for r in runs.values() if r.run_id != first.run_id
                           and r.tags["dagster/run_key"].split("#")[0] == first.tags["dagster/run_key"].split("#")[0]]
                if killed.status == dg.DagsterRunStatus.FAILURE and any(
                        r.status == dg.DagsterRunStatus.SUCCESS for r in retries):
                    break
                assert killed.status != dg.DagsterRunStatus.SUCCESS, "the run finished before it was killed"
                assert time.monotonic() < deadline, (
                    f"not healed within 300 s: {[(r.run_id[:8], r.status.value, r.tags.get('dagster/run_key')) for r in runs.values()]}")
                time.sleep(2)
            (healed,) = [r for r in retries if r.status == dg.DagsterRunStatus.SUCCESS]
            assert "#retry" in healed.tags["dagster/run_key"]

        # 3. counted from the files: every produced event landed once, nothing quarantined, nothing half-written
        fs = lake.fs()
        raw = layout.partition_dir(layout.raw_dir("tv_stream", root), DAY)
        names = fs.listdir(raw)
        assert [n for n in names if n.startswith(".")] == []
        (name,) = names
        assert name == layout.range_file_name(0, 0, EVENTS, kafka.topic_id())
        import io

        got = pd.read_csv(io.BytesIO(fs.read_bytes(f"{raw}/{name}")))
        assert len(got) == EVENTS and not got.duplicated().any()
        assert got["session_id"].tolist() == frame["session_id"].tolist()
        assert fs.listdir(layout.partition_dir(layout.quarantine_dir("tv_stream", root), DAY)) == []
    finally:
        stop_dagster(proc)
        lake.fs().delete(root)
        admin = kafka.admin()
        admin.delete_topics([kafka.topic])
        admin.close()
