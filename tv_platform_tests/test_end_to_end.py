"""The seed's recorded day, end to end: `tv-platform produce --replay` -> Kafka -> sensor -> HDFS -> Hive -> sessions ->
daily viewing. The seed's presentation published 10,000 views and 19,882 hours for 2023-09-23 (#3, #4)."""

import uuid

import dagster as dg
import pandas as pd
import pytest

from tv_platform.assets import ingest
from tv_platform.assets import lake as L
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.spark import HiveIOManager, HiveResource
from tv_platform.resources import hdfs_io_manager, kafka_resource, lake_resource
from tv_platform.sensors import kafka_events_sensor
from tv_platform_tests.conftest import FIXTURES

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

DAY, NEXT = "2023-09-23", "2023-09-24"


@pytest.fixture(scope="module")
def isolated(stack, lake):
    """A lake root and a Hive database of this module only."""
    suffix = uuid.uuid4().hex[:8]
    root = f"/tests/e2e_{suffix}"
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_e2e_{suffix}", lake_url=stack.hdfs_url,
                        lake_root=root, webhdfs_url=stack.webhdfs_url, hdfs_user=stack.hdfs_user)
    lake_res = LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": root})
    hdfs_io = HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": root})
    yield hive, lake_res, hdfs_io
    try:
        hive.catalog().drop_database()
    finally:
        lake.delete(root)


def _independent_truth() -> tuple[int, float, float]:
    """views, hours by start day and hours watched after midnight, straight from the CSV with pandas."""
    events = pd.read_csv(FIXTURES / "tv_stream.csv", header=None,
                         names=["session_id", "user_id", "channel_id", "timer", "status"], parse_dates=["timer"])
    start = events[events.status == "enabled"].set_index("session_id")["timer"]
    end = events[events.status == "disabled"].set_index("session_id")["timer"]
    seconds = (end - start.loc[end.index]).dt.total_seconds()
    after = (end - pd.Timestamp(NEXT)).dt.total_seconds().clip(lower=0)
    return len(start), seconds.sum() / 3600, after.sum() / 3600


def test_replayed_seed_day_gives_the_seeds_published_numbers(stack, spark, isolated, unique):
    from tv_platform.cli import main

    hive, lake_res, hdfs_io = isolated
    topic = f"e2e_{unique}"
    # 1. the producer's command line replays the recording in timer order
    assert main(["produce", "--replay", str(FIXTURES / "tv_stream.csv"), "--topic", topic, "--no-progress"]) == 0
    kafka = kafka_resource(stack).with_topic(topic)
    begin, end = kafka.offsets()
    assert sum(end.values()) - sum(begin.values()) == 20_000

    # 2. reference data, then the sensor's ranges landed by the snapshot asset
    assert dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": hdfs_io},
                          run_config={"ops": {"users": {"config": {"users": 10_000}}}}).success
    tick = kafka_events_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                                       resources={"kafka": kafka, "lake": lake_res}))
    landed = 0
    for rr in tick.run_requests:
        res = dg.materialize([ingest.tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
                             resources={"kafka": kafka, "lake": lake_res})
        assert res.success
        landed += res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata["events_landed"].value
    assert landed == 20_000

    # 3. the lake: Hive tables, sessions, daily viewing for the day and the next (sessions crossing midnight)
    resources = {"hive": hive, "hive_io_manager": HiveIOManager(
        spark_remote=hive.spark_remote, database=hive.database, database_location=hive.resolved_database_location())}
    assert dg.materialize([L.hive_channels, L.hive_users], resources=resources).success
    daily = next(a for a in L.AGGREGATES if a.key == dg.AssetKey("daily_viewing"))
    for day in (DAY, NEXT):
        assert dg.materialize([L.hive_tv_dataset, L.hive_tv_stream, L.sessionize_assets, daily],
                              partition_key=day, resources=resources).success

    views, hours, after_midnight = _independent_truth()
    dv = spark.table(f"{hive.database}.daily_viewing").toPandas().set_index("dt")
    assert (views, round(hours)) == (10_000, 19_882)  # the seed's presentation
    assert dv.loc[DAY, "views"] == views
    assert round(dv.loc[DAY, "hours_by_start"]) == 19_882
    assert dv.loc[DAY, "hours_by_start"] == pytest.approx(hours, abs=1e-9)
    # hours in day is lower by exactly what the sessions crossing midnight watched after it
    assert dv.loc[DAY, "hours_by_start"] - dv.loc[DAY, "hours_in_day"] == pytest.approx(after_midnight, abs=1e-9)
    assert after_midnight == pytest.approx(8.0908, abs=1e-4)
    assert dv.loc[NEXT, "hours_in_day"] == pytest.approx(after_midnight, abs=1e-9)
