"""Days that match the operator's clock (#15), against the real services: Kafka -> the sensor -> landing in HDFS ->
the lake on Spark -> the ClickHouse marts, what to rebuild decided by the graph's own automation conditions.

Expected values are computed with pandas from the events the test produced, never from the platform's metadata."""

from __future__ import annotations

import io
import json
import uuid
from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest

from tv_platform.engines.hdfs import frame_to_csv_bytes

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

COLUMNS = ["session_id", "user_id", "channel_id", "timer", "status"]


@pytest.fixture(scope="module")
def env(stack, spark, lake, tmp_path_factory):
    """A lake root, a Hive database, a ClickHouse engine and a topic of this module, with reference data."""
    from tv_platform.engines.clickhouse import ClickHouseWarehouse
    from tv_platform.engines.greenplum import GreenplumWarehouse
    from tv_platform.engines.hdfs import LakeResource
    from tv_platform.resources import kafka_resource, lake_resource, warehouse_resources
    from tv_platform_tests.conftest import create_warehouse_schema, hive_resources

    suffix = uuid.uuid4().hex[:8]
    root = f"/tests/days_{suffix}"
    schema = f"test_days_{suffix}"
    create_warehouse_schema(stack, schema)
    kafka = kafka_resource(stack).with_topic(f"days_{suffix}")
    kafka.ensure_topic()
    resources = {
        **hive_resources(stack, root, f"tv_days_{suffix}"),
        "kafka": kafka,
        "lake": LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": root}),
        **warehouse_resources(
            GreenplumWarehouse(host=stack.gp_host, port=stack.gp_port, database=stack.gp_database, schema_name=schema,
                               user=stack.gp_loader_user, password=stack.gp_loader_password,
                               reader_role=stack.gp_reader_user),
            ClickHouseWarehouse(url=f"chdb://{tmp_path_factory.mktemp('chdb_days') / 'engine'}",
                                database=f"test_days_{suffix}")),
    }
    names = pd.read_csv(__import__("tv_platform").__path__[0] + "/data/tv_channels.csv")
    channels = names.assign(time_rating=0.0, viewers_rating=0.0, rank=names["channel_id"])
    lake.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(channels))
    users = pd.DataFrame({"user_id": range(1, 501), "user_name": [f"u{i}" for i in range(1, 501)]})
    lake.write_bytes(f"{root}/reference/users/users.csv", frame_to_csv_bytes(users))
    yield {"root": root, "resources": resources, "kafka": kafka, "schema": schema}
    lake.delete(root)


def _session(n: int, start: str, end: str, user: int = 1, channel: int = 1) -> list[dict]:
    sid = f"{n:032x}"
    return [dict(session_id=sid, user_id=user, channel_id=channel, timer=start, status="enabled"),
            dict(session_id=sid, user_id=user, channel_id=channel, timer=end, status="disabled")]


def _land(env, instance, cursor=None):
    """One tick of the Kafka sensor; its runs landed (in ``instance``). Returns (cursor, {day: events landed})."""
    from tv_platform.assets.ingest import tv_stream_snapshot
    from tv_platform.sensors import kafka_events_sensor

    res = env["resources"]
    ctx = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": res["kafka"],
                                                                               "lake": res["lake"]})
    tick = kafka_events_sensor(ctx)
    by_day: dict[str, int] = {}
    for rr in tick.run_requests:
        result = dg.materialize([tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
                                resources={"kafka": res["kafka"], "lake": res["lake"]}, instance=instance)
        assert result.success
        # the run's own materialization (the other days it touched are recorded beside it)
        meta = next(m.metadata for m in result.asset_materializations_for_node("tv_stream_snapshot")
                    if "events_landed_by_day" in m.metadata)
        for day, n in meta["events_landed_by_day"].value.items():
            by_day[day] = by_day.get(day, 0) + n
        checks = result.get_asset_check_evaluations()
        assert checks and all(c.passed for c in checks)  # read = landed + quarantined, recounted from the files
    return tick.cursor, by_day


FOLLOWED = ["hive_tv_stream", "viewing_sessions", "session_anomalies", "daily_viewing", "clickhouse/sessions",
            "clickhouse/daily_viewing"]


CHECKS: dict[tuple[str, str, str], bool] = {}  # the latest result of every check the followed runs evaluated


def _follow(env, instance, auto_cursor):
    """Evaluate the graph's automation conditions and materialize what they request (the part of the graph this test
    follows), parents first, until nothing more is requested. Returns (cursor, {asset: days materialized})."""
    from tv_platform.assets import lake as L
    from tv_platform.assets import marts as M
    from tv_platform.definitions import defs

    assets = [L.hive_tv_stream, L.sessionize_assets, *L.AGGREGATES,
              *M.assets]  # (each step below selects what it materializes)
    done: dict[str, set] = {}
    for _ in range(8):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=auto_cursor)
        auto_cursor = result.cursor
        wanted = {r.key.to_user_string(): set(r.true_subset.expensively_compute_partition_keys())
                  for r in result.results if r.true_subset.size}
        wanted = {k: v for k, v in wanted.items() if k in FOLLOWED}
        if not wanted:
            return auto_cursor, done
        for name in FOLLOWED:  # parents first
            for day in sorted(wanted.get(name, ())):
                if name == "session_anomalies" and day in wanted.get("viewing_sessions", ()):
                    continue  # one multi-asset run makes both
                keys = ([dg.AssetKey("viewing_sessions"), dg.AssetKey("session_anomalies")]
                        if name in ("viewing_sessions", "session_anomalies") else [dg.AssetKey.from_user_string(name)])
                r = dg.materialize(assets, selection=keys, partition_key=day, resources=env["resources"],
                                   instance=instance)
                assert r.success, (name, day)
                for c in r.get_asset_check_evaluations():
                    # a WARN check (anomalies reported: sessions still open before midnight's events) may warn
                    # until the day is complete; errors never
                    assert c.passed or c.severity == dg.AssetCheckSeverity.WARN, c
                    CHECKS[(c.asset_key.to_user_string(), c.check_name, day)] = c.passed
                for k in keys:
                    done.setdefault(k.to_user_string(), set()).add(day)
    raise AssertionError("automation kept requesting")


def test_operator_at_utc_plus_3_lands_0030_in_its_day(env, zone):
    """Moscow: events at 00:30 local (21:30 UTC the day before) — naive, and one with an explicit offset — land in
    the local day, none quarantined; their records are stamped with the true instants."""
    from tv_platform.engines.kafka import publish

    zone("Europe/Moscow")
    events = _session(1, "2023-10-10 00:30:00", "2023-10-10 00:40:00") + [
        dict(session_id=f"{2:032x}", user_id=2, channel_id=2, timer="2023-10-09T21:45:00Z", status="enabled"),
        dict(session_id=f"{2:032x}", user_id=2, channel_id=2, timer="2023-10-10 01:00:00+03:00", status="disabled"),
    ]
    kafka = env["kafka"].with_topic(env["kafka"].topic + "_msk")
    kafka.ensure_topic()
    publish(kafka, events, raw=True, progress=False)
    instance = dg.DagsterInstance.ephemeral()
    _, by_day = _land({**env, "resources": {**env["resources"], "kafka": kafka}}, instance)
    assert by_day == {"2023-10-10": 4}
    stamps = sorted(kafka_stamps(kafka))
    utc = pd.Timestamp("2023-10-09 21:30", tz="UTC")
    assert stamps[0] == int(utc.timestamp() * 1000)  # 00:30 Moscow
    fs = env["resources"]["lake"].fs()
    landed = pd.concat(pd.read_csv(io.BytesIO(fs.read_bytes(p))) for p in _files(env, "2023-10-10"))
    assert sorted(landed["timer"]) == ["2023-10-10 00:30:00", "2023-10-10 00:40:00", "2023-10-10 00:45:00",
                                       "2023-10-10 01:00:00"]


def kafka_stamps(kafka) -> list[int]:
    out = []
    begin, end = kafka.offsets()
    with kafka.reader(kafka.topic) as reader:
        for p in end:
            out += reader.read_exactly(p, begin[p], end[p]).timestamps.tolist()
    return out


def _files(env, day: str) -> list[str]:
    from tv_platform import layout

    lake = env["resources"]["lake"]
    base = layout.partition_dir(layout.raw_dir("tv_stream", lake.lake_root), day)
    return [f"{base}/{n}" for n in lake.fs().listdir(base) if n.endswith(".csv")]


def test_dst_day_has_25_hours_in_the_lake(spark, zone):
    """Moscow, 2010-10-31 (03:00 MSD -> 02:00 MSK, 25 hours): a session 01:00 -> 04:00 on the wall clock lasted 4
    hours; hour 2 of the day held two hours of viewing. 2010-03-28 (23 hours): 01:30 -> 03:30 lasted one hour, the
    skipped hour 2 is empty."""
    from pyspark.sql import functions as F

    from tv_platform.lake.aggregates import daily_viewing, hourly_activity
    from tv_platform.lake.sessions import sessionize, union_sources

    zone("Europe/Moscow")
    rows = _session(1, "2010-10-31 01:00:00", "2010-10-31 04:00:00") + _session(
        2, "2010-03-28 01:30:00", "2010-03-28 03:30:00")
    frame = pd.DataFrame(rows)
    frame["dt"] = frame["timer"].str.slice(0, 10)
    events = spark.createDataFrame(frame).withColumn("timer", F.col("timer").cast("timestamp_ntz"))
    sessions = sessionize(union_sources({"stream": events}), "2010-03-28", "2010-10-31").sessions
    autumn = daily_viewing(sessions, "2010-10-31").toPandas().iloc[0]
    assert autumn["hours_by_start"] == pytest.approx(4.0) and autumn["hours_in_day"] == pytest.approx(4.0)
    hours = hourly_activity(sessions, "2010-10-31").toPandas().set_index("hour")
    assert len(hours) == 24
    assert hours.loc[1, "minutes"] == pytest.approx(60) and hours.loc[2, "minutes"] == pytest.approx(120)
    assert hours.loc[3, "minutes"] == pytest.approx(60) and hours["minutes"].sum() == pytest.approx(240)
    spring = daily_viewing(sessions, "2010-03-28").toPandas().iloc[0]
    assert spring["hours_by_start"] == pytest.approx(1.0)
    hours = hourly_activity(sessions, "2010-03-28").toPandas().set_index("hour")
    assert hours.loc[1, "minutes"] == pytest.approx(30) and hours.loc[2, "minutes"] == 0
    assert hours.loc[3, "minutes"] == pytest.approx(30)


def test_live_days_cross_midnight_late_data_replay_and_the_nightly_job(env, spark):
    """Yesterday streamed live, its closing events after midnight: every session reaches the marts once today's
    events land (yesterday re-paired by automation). A late session for D-3 changes D-3's marts by exactly it; so does
    a quarantined event of D-3 replayed. The nightly job on a stream day simulates nothing."""
    from tv_platform import layout
    from tv_platform.assets import ingest
    from tv_platform.assets import lake as L
    from tv_platform.dates import today as local_today
    from tv_platform.definitions import defs
    from tv_platform.engines.kafka import publish, publish_frame
    from tv_platform.quarantine import record_replay, replay_quarantine
    from tv_platform.schedules import nightly_request
    from tv_platform.simulator.live import live_frame
    from tv_platform.simulator.model import SimulationParams

    res = env["resources"]
    today = local_today()
    yesterday, late = today - timedelta(days=1), today - timedelta(days=3)
    iso = date.isoformat
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([L.hive_channels, L.hive_users], resources=res).success
    for d in (late - timedelta(days=1), late, late + timedelta(days=1), yesterday, today, today + timedelta(days=1)):
        assert dg.materialize([L.hive_tv_dataset], partition_key=iso(d), resources=res).success
    auto = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor

    # D-3 has two sessions; yesterday is streamed up to midnight
    publish(env["kafka"], _session(1, f"{late} 10:00:00", f"{late} 11:00:00", 1, 1)
            + _session(2, f"{late} 12:00:00", f"{late} 12:30:00", 2, 3), progress=False)
    live = live_frame(yesterday, SimulationParams(users=300, seed=5))
    midnight = pd.Timestamp(today)
    before, after = live[live["timer"] < midnight], live[live["timer"] >= midnight]
    assert len(after) > 0, "some sessions of yesterday close after midnight"
    publish_frame(env["kafka"], before, progress=False)
    cursor, landed = _land(env, instance)
    assert landed == {iso(late): 4, iso(yesterday): len(before)}
    auto, _ = _follow(env, instance, auto)
    started = live[live["status"] == "enabled"]
    open_at_midnight = set(started["session_id"]) - set(before[before["status"] == "disabled"]["session_id"])
    ch_sessions = _sessions_mart(env, iso(yesterday))
    assert len(ch_sessions) == len(started) - len(open_at_midnight)

    # after midnight: the closing events land in today and yesterday is paired again, by automation
    publish_frame(env["kafka"], after, progress=False)
    cursor, landed = _land(env, instance, cursor)
    assert landed == {iso(today): len(after)}
    auto, done = _follow(env, instance, auto)
    assert iso(yesterday) in done["viewing_sessions"] and iso(yesterday) in done["clickhouse/sessions"]
    ch_sessions = _sessions_mart(env, iso(yesterday))
    assert set(ch_sessions["session_id"]) == set(started["session_id"])  # every session reaches the marts
    assert len(ch_sessions) == len(started)
    assert all(passed for (_, _, day), passed in CHECKS.items() if day == iso(yesterday)), CHECKS
    ends = live[live["status"] == "disabled"].set_index("session_id")["timer"]
    starts = started.set_index("session_id")["timer"]
    seconds = (ends - starts.loc[ends.index]).dt.total_seconds()
    dv = _daily_mart(env, iso(yesterday))
    assert dv["views"] == len(started) and dv["hours_by_start"] == pytest.approx(seconds.sum() / 3600, abs=1e-6)

    # a late session for D-3, by automation: D-3's marts change by exactly it
    base = _daily_mart(env, iso(late))
    assert base["views"] == 2 and base["hours_by_start"] == pytest.approx(1.5)
    publish(env["kafka"], _session(3, f"{late} 20:00:00", f"{late} 20:45:00", 3, 5), progress=False)
    cursor, landed = _land(env, instance, cursor)
    assert landed == {iso(late): 2}
    auto, done = _follow(env, instance, auto)
    assert iso(late) in done["clickhouse/daily_viewing"]
    now = _daily_mart(env, iso(late))
    assert now["views"] == 3 and now["hours_by_start"] - base["hours_by_start"] == pytest.approx(0.75)
    assert sorted(_sessions_mart(env, iso(late))["session_id"]) == [f"{n:032x}" for n in (1, 2, 3)]

    # a quarantined session of D-3 (an id the old validation refused, say) replayed: lands once, marts follow
    lake = res["lake"]
    bad = layout.partition_dir(layout.quarantine_dir("tv_stream", lake.lake_root), iso(late))
    rows = _session(4, f"{late} 21:00:00", f"{late} 21:10:00", 4, 6)
    quarantined = pd.DataFrame([[env["kafka"].topic, 0, 900 + i, "unknown status: 'x'", json.dumps(r)]
                                for i, r in enumerate(rows)], columns=layout.QUARANTINE_COLUMNS)
    lake.fs().write_bytes(f"{bad}/p0-000000000900-000000000902.csv", frame_to_csv_bytes(quarantined))
    for _ in range(2):  # twice: exactly once
        summary = replay_quarantine(lake, iso(late))
        assert summary["replayed"] == 2
    record_replay(instance, lake, iso(late), summary)
    auto, done = _follow(env, instance, auto)
    replayed = _daily_mart(env, iso(late))
    assert replayed["views"] == 4 and replayed["hours_by_start"] - now["hours_by_start"] == pytest.approx(10 / 60)

    # the nightly job on yesterday, a stream day: nothing simulated, counts unchanged
    request = nightly_request(iso(yesterday), instance)
    assert request.tags["tv_platform/owner"] == "stream"
    r = dg.materialize([ingest.tv_dataset, L.hive_tv_dataset, L.sessionize_assets, *L.AGGREGATES],
                       partition_key=iso(yesterday), instance=instance,
                       resources={**res, "hdfs_io_manager": _hdfs_io(env)},
                       run_config={"ops": {"tv_dataset": {"config": {"users": 300, "seed": 5}}}})
    assert r.success
    assert r.asset_materializations_for_node("tv_dataset")[0].metadata["events"].value == 0
    again = spark.table(f"{res['hive'].database}.daily_viewing").where(f"dt = '{yesterday}'").toPandas().iloc[0]
    assert again["views"] == dv["views"] and again["hours_by_start"] == pytest.approx(dv["hours_by_start"])


def _hdfs_io(env):
    from tv_platform.engines.hdfs import HdfsCsvIOManager
    from tv_platform.resources import hdfs_io_manager
    from tv_platform.settings import get_settings

    return HdfsCsvIOManager(**{**hdfs_io_manager(get_settings()).model_dump(), "lake_root": env["root"]})


def _query(env, sql: str) -> pd.DataFrame:
    ch = env["resources"]["clickhouse"]
    with ch.client() as client:
        result = client.query(sql.format(ch=ch.database))
        return pd.DataFrame(result.result_rows, columns=list(result.column_names))


def _sessions_mart(env, day: str) -> pd.DataFrame:
    return _query(env, f"SELECT session_id FROM {{ch}}.sessions WHERE dt = '{day}'")


def _daily_mart(env, day: str) -> pd.Series:
    frame = _query(env, f"SELECT views, hours_by_start FROM {{ch}}.daily_viewing WHERE dt = '{day}'")
    assert len(frame) == 1, frame
    return frame.iloc[0]


def test_a_range_lands_each_event_in_its_own_day(env):
    """Records stamped for one day (the sensor cuts the range for it, from timestamps alone) whose payloads carry
    other dates: each well-formed event lands in the partition of its date under the range's file name, the other
    day is recorded as materialized; a date after tomorrow is quarantined with the reason; read = landed +
    quarantined."""
    from tv_platform import layout
    from tv_platform.dates import day_start_ms
    from tv_platform.engines.kafka import publish

    kafka = env["kafka"].with_topic(env["kafka"].topic + "_mixed")
    kafka.ensure_topic()
    events = (_session(11, "2023-11-02 00:05:00", "2023-11-02 00:20:00")  # the next day
              + _session(12, "2023-11-01 23:00:00", "2023-11-01 23:30:00")  # the day itself
              + [dict(session_id=f"{13:032x}", user_id=1, channel_id=1, timer="2099-01-01 00:00:00",
                      status="enabled")])
    publish(kafka, events, raw=True, progress=False, timestamp_ms=day_start_ms("2023-11-01") + 12 * 3_600_000)
    instance = dg.DagsterInstance.ephemeral()
    _, by_day = _land({**env, "resources": {**env["resources"], "kafka": kafka}}, instance)
    assert by_day == {"2023-11-01": 2, "2023-11-02": 2}
    lake = env["resources"]["lake"]
    fs = lake.fs()
    names = {d: sorted(n for n in fs.listdir(layout.partition_dir(layout.raw_dir("tv_stream", lake.lake_root), d))
                       if n.endswith(".csv")) for d in ("2023-11-01", "2023-11-02")}
    assert names["2023-11-01"] == names["2023-11-02"] and len(names["2023-11-01"]) >= 1
    bad_dir = layout.partition_dir(layout.quarantine_dir("tv_stream", lake.lake_root), "2023-11-01")
    bad = pd.concat(pd.read_csv(io.BytesIO(fs.read_bytes(f"{bad_dir}/{n}"))) for n in fs.listdir(bad_dir))
    assert len(bad) == 1 and "beyond the clock-skew tolerance" in bad["reason"].iloc[0]
    assert instance.get_materialized_partitions(dg.AssetKey("tv_stream_snapshot")) == {"2023-11-01", "2023-11-02"}
