"""Ingest on the real broker and HDFS: reference data, history, and the Kafka sensor landing events exactly once (#3)."""

import io
import json
import uuid
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from tv_platform import layout
from tv_platform.assets import ingest
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.kafka import publish
from tv_platform.resources import hdfs_io_manager, kafka_resource, lake_resource
from tv_platform.sensors import kafka_events_sensor, run_key
from tv_platform.settings import get_settings

pytestmark = pytest.mark.services

FIXTURE = "tv_platform_tests/fixtures/tv_stream.csv"


@pytest.fixture(scope="module")
def lake_res(stack) -> LakeResource:
    """The stack's HDFS, under a lake root of this module's own: tests never see each other's files."""
    root = f"/tests/ingest_{uuid.uuid4().hex[:8]}"
    yield LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": root})
    lake_resource(stack).fs().delete(root)


@pytest.fixture(scope="module")
def hdfs_io(stack, lake_res):
    return HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": lake_res.lake_root})


@pytest.fixture(scope="module")
def reference(stack, lake_res, hdfs_io):
    """channels and users materialized into the lake through the HDFS IO manager."""
    result = dg.materialize(
        [ingest.channels, ingest.users],
        resources={"hdfs_io_manager": hdfs_io},
        run_config={"ops": {"users": {"config": {"users": 10_000, "seed": 42}}}},
    )
    assert result.success
    return result


def _read_csv(lake_res, path) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(lake_res.fs().read_bytes(path)))


def test_reference_data_lands_in_the_lake(reference, lake_res):
    channels = _read_csv(lake_res, f"{layout.channels_dir(lake_res.lake_root)}/channels.csv")
    assert len(channels) == 148 and channels["channel_id"].is_unique
    assert channels.loc[channels["channel_id"] == 1, "channel_name"].item() == "Россия 1"
    users = _read_csv(lake_res, f"{layout.users_dir(lake_res.lake_root)}/users.csv")
    assert len(users) == 10_000 and users["user_id"].tolist() == list(range(1, 10_001))
    assert reference.asset_materializations_for_node("users")[0].metadata["dagster/row_count"].value == 10_000


def test_history_partition_is_the_simulated_day_and_rewrites_identically(stack, lake_res, hdfs_io):
    from tv_platform.simulator.model import SimulationParams, simulate_day

    def run():
        result = dg.materialize([ingest.tv_dataset], partition_key="2023-09-16",
                                resources={"hdfs_io_manager": hdfs_io},
                                run_config={"ops": {"tv_dataset": {"config": {"users": 800, "seed": 7}}}})
        assert result.success
        base = layout.partition_dir(layout.raw_dir("tv_dataset", lake_res.lake_root), "2023-09-16")
        assert lake_res.fs().listdir(base) == ["events.csv"]
        return lake_res.fs().read_bytes(f"{base}/events.csv")

    first, second = run(), run()
    assert first == second
    landed = pd.read_csv(io.BytesIO(first))
    expected = simulate_day(date(2023, 9, 16), SimulationParams(users=800, seed=7))
    assert len(landed) == len(expected)
    assert landed["session_id"].tolist() == expected["session_id"].tolist()
    assert landed["timer"].tolist() == expected["timer"].dt.strftime("%Y-%m-%d %H:%M:%S").tolist()


def _sensor_tick(kafka, cursor=None, instance=None, lake=None):
    instance = instance or dg.DagsterInstance.ephemeral()
    lake = lake or LakeResource(**{**lake_resource(get_settings()).model_dump(), "lake_root": "/tests/ingest_sensor"})
    ctx = dg.build_sensor_context(cursor=cursor, instance=instance, resources={"kafka": kafka, "lake": lake})
    return kafka_events_sensor(ctx), instance


def _land(stack, lake_res, kafka, requests, instance=None, lake=None):
    for rr in requests:
        result = dg.materialize(
            [ingest.tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
            resources={"kafka": kafka, "lake": lake or lake_res}, instance=instance, tags=rr.tags | {"dagster/run_key": rr.run_key},
            raise_on_error=False,
        )
        yield rr, result


def _landed_events(lake_res, day) -> pd.DataFrame:
    fs = lake_res.fs()
    base = layout.partition_dir(layout.raw_dir("tv_stream", lake_res.lake_root), day)
    frames = [pd.read_csv(io.BytesIO(fs.read_bytes(f"{base}/{n}"))) for n in fs.listdir(base) if n.endswith(".csv")]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=layout.EVENT_COLUMNS)


def _topic(stack, name, partitions=3):
    kafka = kafka_resource(stack).with_topic(name)
    kafka.ensure_topic(partitions=partitions)
    return kafka


def test_replayed_seed_day_lands_all_20000_events_in_their_dates(stack, reference, lake_res, unique):
    from tv_platform.simulator.live import read_recorded

    kafka = _topic(stack, f"replay_{unique}")
    recorded = read_recorded(FIXTURE)
    assert publish(kafka, recorded.to_dict("records"), total=len(recorded), progress=False) == 20_000

    result, _ = _sensor_tick(kafka)
    days = sorted({rr.partition_key for rr in result.run_requests})
    assert days == ["2023-09-23", "2023-09-24"]
    keys = [rr.run_key for rr in result.run_requests]
    assert len(set(keys)) == len(keys)
    # one run a day, holding every partition's range of that day
    assert sorted(rr.partition_key for rr in result.run_requests) == days
    for rr in result.run_requests:
        assert sorted(r["partition"] for r in rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"]) == [0, 1, 2]
    cursor = json.loads(result.cursor)
    assert sum(cursor["next"].values()) == 20_000
    lag = next(e for e in result.asset_events if isinstance(e, dg.AssetObservation))
    assert lag.metadata["consumer_lag"].value == 0

    # landing runs; a full re-run of every range changes nothing (files are named by their range)
    for _rr, res in _land(stack, lake_res, kafka, result.run_requests):
        assert res.success
        checks = res.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)
    for _rr, res in _land(stack, lake_res, kafka, result.run_requests):
        assert res.success

    day1, day2 = _landed_events(lake_res, "2023-09-23"), _landed_events(lake_res, "2023-09-24")
    # other tests may share the seed's days: count only this topic's sessions
    ours = set(recorded["session_id"])
    n1 = day1[day1.session_id.isin(ours)].drop_duplicates().shape[0]
    n2 = day2[day2.session_id.isin(ours)].drop_duplicates().shape[0]
    assert (n1, n2) == (19_978, 22)
    assert day1[day1.session_id.isin(ours)].shape[0] == 19_978  # no duplicates after the re-run

    # the next tick finds nothing new
    again, _ = _sensor_tick(kafka, cursor=result.cursor)
    assert again.run_requests == []


def test_simulated_live_events_land_exactly(stack, reference, lake_res, unique):
    from tv_platform.simulator.live import live_events
    from tv_platform.simulator.model import SimulationParams

    kafka = _topic(stack, f"live_{unique}")
    produced = list(live_events(date(2023, 10, 2), SimulationParams(users=10_000, seed=11), count=3_000))
    assert publish(kafka, produced, total=len(produced), progress=False) == 3_000
    result, _ = _sensor_tick(kafka)
    for _rr, res in _land(stack, lake_res, kafka, result.run_requests):
        assert res.success
    landed = pd.concat([_landed_events(lake_res, d) for d in sorted({rr.partition_key for rr in result.run_requests})])
    ids = {e["session_id"] for e in produced}
    landed = landed[landed.session_id.isin(ids)]
    want = sorted((e["session_id"], e["status"], e["timer"].strftime("%Y-%m-%d %H:%M:%S")
                   if hasattr(e["timer"], "strftime") else str(e["timer"])) for e in produced)
    got = sorted(zip(landed.session_id, landed.status, landed.timer))
    assert got == want


def test_a_backlog_bigger_than_a_tick_lands_in_bounded_runs_without_gaps(stack, reference, lake_res, unique,
                                                                         monkeypatch):
    """Small limits stand in for the real ones (10 M records a tick, TVP_LANDING_RUN_RECORDS a run): the backlog
    takes several ticks, each reads its partitions in run-sized pieces, every run holds one date and at most
    TVP_LANDING_RUN_RECORDS records, and the ranges of all runs cover every offset exactly once — then the runs land
    every event."""
    from tv_platform import sensors
    from tv_platform.settings import get_settings
    from tv_platform.simulator.live import live_events
    from tv_platform.simulator.model import SimulationParams

    kafka = _topic(stack, f"backlog_{unique}")
    produced = list(live_events(date(2023, 10, 3), SimulationParams(users=10_000, seed=12), count=2_500))
    assert publish(kafka, produced, total=len(produced), progress=False) == 2_500

    monkeypatch.setattr(sensors, "MAX_RECORDS_PER_TICK", 1_000)
    monkeypatch.setenv("TVP_LANDING_RUN_RECORDS", "300")  # read by the sensor when it ticks
    get_settings.cache_clear()
    requests, cursor, ticks = [], None, 0
    try:
        while True:
            result, _ = _sensor_tick(kafka, cursor=cursor)
            cursor, ticks = result.cursor, ticks + 1
            if not result.run_requests:
                break
            requests += result.run_requests
            assert sum(r["end"] - r["start"] for rr in result.run_requests
                       for r in rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"]) <= 1_000
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert ticks == 4  # 1 000 + 1 000 + 500, then nothing new
    covered: dict[int, list] = {}
    for rr in requests:
        ranges = rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"]
        assert sum(r["end"] - r["start"] for r in ranges) <= 300
        for r in ranges:
            covered.setdefault(r["partition"], []).append((r["start"], r["end"]))
    _, end = kafka.offsets()
    for partition, spans in covered.items():
        spans.sort()
        assert spans[0][0] == 0 and spans[-1][1] == end[partition]
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous: no gap, no overlap

    for _rr, res in _land(stack, lake_res, kafka, requests):
        assert res.success
    landed = pd.concat([_landed_events(lake_res, d) for d in sorted({rr.partition_key for rr in requests})])
    assert landed.session_id.isin({e["session_id"] for e in produced}).sum() == 2_500


def test_bad_messages_end_in_quarantine_with_their_reason(stack, reference, lake_res, unique):
    kafka = _topic(stack, f"bad_{unique}", partitions=1)
    good = {"session_id": "a" * 32, "user_id": 5, "channel_id": 3, "timer": "2023-10-05 20:00:00", "status": "enabled"}
    bad = [
        b"{not json",
        json.dumps({k: v for k, v in good.items() if k != "status"}).encode(),
        json.dumps(good | {"extra": 1}).encode(),
        json.dumps(good | {"user_id": "abc"}).encode(),
        json.dumps(good | {"user_id": 2**31}).encode(),
        json.dumps(good | {"timer": "yesterday"}).encode(),
        json.dumps(good | {"status": "paused"}).encode(),
    ]
    from tv_platform.dates import timer_ms

    # stamped with the good event's time, as a producer following the platform's contract would (the record
    # timestamp is the event's time): the sensor sees one day
    publish(kafka, [good, *bad], raw=True, progress=False, timestamp_ms=int(timer_ms([good["timer"]])[0]))

    result, _ = _sensor_tick(kafka)
    assert [rr.partition_key for rr in result.run_requests] == ["2023-10-05"]
    (_rr, res), = list(_land(stack, lake_res, kafka, result.run_requests))
    assert res.success
    meta = res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata
    assert (meta["events_read"].value, meta["events_landed"].value, meta["events_quarantined"].value) == (8, 1, 7)
    assert all(c.passed for c in res.get_asset_check_evaluations())

    name = layout.range_file_name(0, 0, 8, kafka.topic_id())
    q = _read_csv(lake_res, f"{layout.partition_dir(layout.quarantine_dir('tv_stream', lake_res.lake_root), '2023-10-05')}/{name}")
    assert q["topic"].unique().tolist() == [kafka.topic]
    assert q["offset"].tolist() == list(range(1, 8))
    reasons = q["reason"].tolist()
    for fragment in ["malformed JSON", "missing fields: status", "unexpected fields: extra", "user_id is not an integer",
                     f"user_id out of range: {2**31}", "unparseable timer", "unknown status"]:
        assert any(fragment in r for r in reasons), fragment
    assert q.loc[0, "payload"] == "{not json"


class _CrashingLake(LakeResource):
    """The real HDFS, but the process dies half way through writing a range file (as a killed run would)."""

    def fs(self):
        real = super().fs()
        original = real.write_bytes

        def half_then_crash(path, data):
            if "/raw/tv_stream/" in path:
                original(path.rsplit("/", 1)[0] + "/.crashed.tmp", data[: len(data) // 2])
                raise RuntimeError("killed half way")
            return original(path, data)

        real.write_bytes = half_then_crash
        return real


@pytest.fixture
def no_backoff(monkeypatch):
    """Failed ranges are retried at the next tick (TVP_LANDING_RETRY_BACKOFF=0)."""
    monkeypatch.setenv("TVP_LANDING_RETRY_BACKOFF", "0")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("TVP_LANDING_RETRY_BACKOFF")
    get_settings.cache_clear()


def test_interrupted_landing_rerun_gives_byte_identical_file_and_failed_range_is_retried(stack, reference, lake_res, unique,
                                                                                       no_backoff):
    kafka = _topic(stack, f"crash_{unique}", partitions=1)
    from tv_platform.simulator.live import read_recorded

    rows = read_recorded(FIXTURE).head(500).to_dict("records")
    publish(kafka, rows, progress=False)
    instance = dg.DagsterInstance.ephemeral()
    result, _ = _sensor_tick(kafka, instance=instance)
    (rr,) = result.run_requests
    crashing = _CrashingLake(**lake_res.model_dump())
    (_, failed), = list(_land(stack, lake_res, kafka, [rr], instance=instance, lake=crashing))
    assert not failed.success
    name = layout.range_file_name(0, 0, 500, kafka.topic_id())
    base = layout.partition_dir(layout.raw_dir("tv_stream", lake_res.lake_root), rr.partition_key)
    assert name not in lake_res.fs().listdir(base)  # nothing half-written under the real name

    # the sensor sees the failed run and asks for the range again
    retry, _ = _sensor_tick(kafka, cursor=result.cursor, instance=instance)
    (rr2,) = retry.run_requests
    assert rr2.run_key == run_key(kafka.topic, json.loads(result.cursor)["epoch"], [[0, 0, 500]], 1)
    assert rr2.run_config == rr.run_config
    (_, ok), = list(_land(stack, lake_res, kafka, [rr2], instance=instance))
    assert ok.success
    first = lake_res.fs().read_bytes(f"{base}/{name}")
    (_, ok2), = list(_land(stack, lake_res, kafka, [rr2]))
    assert ok2.success and lake_res.fs().read_bytes(f"{base}/{name}") == first
    expected = read_recorded(FIXTURE).head(500)
    assert len(pd.read_csv(io.BytesIO(first))) == len(expected)

    done, _ = _sensor_tick(kafka, cursor=retry.cursor, instance=instance)
    assert done.run_requests == [] and json.loads(done.cursor)["pending"] == []


def test_cursor_reset_gets_new_run_keys(stack, reference, unique):
    kafka = _topic(stack, f"reset_{unique}", partitions=2)
    publish(kafka, [{"session_id": "b" * 32, "user_id": 1, "channel_id": 1, "timer": "2023-10-06 10:00:00",
                     "status": "enabled"}], progress=False)
    first, _ = _sensor_tick(kafka)
    second, _ = _sensor_tick(kafka)  # a reset cursor: same ranges, new epoch
    assert [rr.run_config for rr in first.run_requests] == [rr.run_config for rr in second.run_requests]
    assert {rr.run_key for rr in first.run_requests}.isdisjoint({rr.run_key for rr in second.run_requests})


def _one_event(kafka, n=1):
    publish(kafka, [{"session_id": f"{i:032x}", "user_id": 1, "channel_id": 1, "timer": "2023-10-06 10:00:00",
                     "status": "enabled"} for i in range(n)], progress=False)


def test_a_cursor_kept_for_another_topic_starts_over(stack, reference, unique):
    """TVP_KAFKA_TOPIC changed: the old topic's offsets mean nothing here, so the sensor reads the new topic from its
    beginning instead of skipping its first messages."""
    old = _topic(stack, f"old_{unique}", partitions=1)
    _one_event(old, 50)
    first, _ = _sensor_tick(old)
    assert json.loads(first.cursor)["next"] == {"0": 50}

    new = _topic(stack, f"new_{unique}", partitions=1)
    _one_event(new, 20)
    result, _ = _sensor_tick(new, cursor=first.cursor)
    cursor = json.loads(result.cursor)
    assert cursor["topic"] == new.topic and cursor["next"] == {"0": 20}
    assert cursor["epoch"] != json.loads(first.cursor)["epoch"]
    assert [rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"] for rr in result.run_requests] == [
        [{"partition": 0, "start": 0, "end": 20}]]


def test_a_topic_created_again_is_read_from_its_beginning(stack, reference, unique):
    """Offsets in the cursor beyond a partition's end: the topic was deleted and created again (or truncated). The
    sensor must not wait for the offsets to catch up (every message until then would be skipped)."""
    kafka = _topic(stack, f"again_{unique}", partitions=1)
    _one_event(kafka, 30)
    recreated = json.dumps({"topic": kafka.topic, "epoch": "0ld0ld00", "next": {"0": 10_000},
                            "pending": [[0, 9_000, 10_000, "2023-10-06", 0]]})
    result, _ = _sensor_tick(kafka, cursor=recreated)
    cursor = json.loads(result.cursor)
    assert cursor["next"] == {"0": 30} and cursor["epoch"] != "0ld0ld00"
    assert cursor["pending"] == [[[[0, 0, 30]], "2023-10-06", 0, 0]]  # the old, unreadable range is a dead letter
    assert [rr.run_config["ops"]["tv_stream_snapshot"]["config"]["ranges"] for rr in result.run_requests] == [
        [{"partition": 0, "start": 0, "end": 30}]]


@pytest.mark.skipif(__import__("os").environ.get("TVP_PROFILE") != "cluster",
                    reason="needs the cluster profile's three DataNodes (run by test_cluster_profile.py)")
def test_datanode_killed_during_landing_nothing_lost_reads_succeed(stack, reference, lake_res, unique, no_backoff,
                                                                    spark):
    """SIGKILL DataNode 1 (replication 3) just before the sensor's ranges land: the NameNode still counts it live for
    its heartbeat expiry and redirects WebHDFS writes and reads to it — the lake asks another DataNode, and a range
    whose run failed anyway is asked for again by the sensor. Every recorded event is in the lake exactly once, read
    back through WebHDFS and through Spark, and counted against the fixture read with pandas."""
    import os
    import signal

    from tv_platform.simulator.live import read_recorded
    from tv_platform.stack.hdfs import HdfsDataNodeService

    kafka = _topic(stack, f"datanode_{unique}", partitions=1)
    expected = read_recorded(FIXTURE)
    publish(kafka, expected.to_dict("records"), progress=False)
    node = HdfsDataNodeService(stack, node=1)
    pgid = node.recorded_pid()
    assert pgid
    instance = dg.DagsterInstance.ephemeral()
    try:
        os.killpg(pgid, signal.SIGKILL)
        tick, _ = _sensor_tick(kafka, instance=instance)
        days, runs = set(), 0
        while tick.run_requests and runs < 10:
            for rr, result in _land(stack, lake_res, kafka, tick.run_requests, instance=instance):
                days.add(rr.partition_key)
                runs += 1
            tick, _ = _sensor_tick(kafka, cursor=tick.cursor, instance=instance)
        assert tick.run_requests == [] and json.loads(tick.cursor)["pending"] == [], "ranges still pending"
        landed = pd.concat([_landed_events(lake_res, d) for d in sorted(days)], ignore_index=True)
        key = ["session_id", "status"]
        assert len(landed) == len(expected) and not landed.duplicated(key).any()
        assert set(map(tuple, landed[key].to_numpy())) == set(map(tuple, expected[key].to_numpy()))
        raw = layout.raw_dir("tv_stream", lake_res.lake_root)
        through_spark = spark.read.option("header", True).csv(lake_res.fs().uri(raw)).count()
        assert through_spark == len(expected)
    finally:
        node.start()
