"""Facts are never dropped for a missing dimension member (#14), through the real lake and a mart.

Events of subscribers and a channel the reference data lacks are produced to Kafka, landed by the sensor's runs, and
carried through Hive, the sessions, the aggregates and the ClickHouse marts: every session counts, named by its
inferred member's label; the dimension views flag the members as inferred with the day first seen. Then the reference
load that lists the subscribers: the dimension names them, and the day's sessions recomputed carry the real names.
Sessions are counted from what was produced (pandas), not from the platform's metadata."""

import uuid

import dagster as dg
import pandas as pd
import pytest

from tv_platform.assets import ingest
from tv_platform.assets import lake as L
from tv_platform.assets import marts as M
from tv_platform.engines.clickhouse import ClickHouseIOManager, ClickHouseWarehouse
from tv_platform.engines.greenplum import TableSpec
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.kafka import publish
from tv_platform.resources import hdfs_io_manager, kafka_resource, lake_resource
from tv_platform.sensors import kafka_events_sensor
from tv_platform_tests.conftest import hive_resources

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

DAY = "2023-09-26"
USERS = 500
NEW_USERS = range(USERS + 1, USERS + 41)  # subscribers who watch before the next reference load
NEW_CHANNEL = 990


@pytest.fixture(scope="session")
def stack(settings):
    """Kafka and HDFS brought up (idempotent) and Spark Connect reached directly: the whole-stack probe can time out
    on a loaded machine while the server still answers."""
    from tv_platform.cli import stack_up

    stack_up(["kafka", "hdfs"], quiet=True)
    return settings


@pytest.fixture(scope="session")
def spark(stack):
    from pyspark.sql import SparkSession

    return SparkSession.builder.remote(stack.spark_remote).getOrCreate()


@pytest.fixture(scope="module")
def env(stack, lake, tmp_path_factory):
    suffix = uuid.uuid4().hex[:8]
    root = f"/tests/inferred_{suffix}"
    clickhouse = ClickHouseWarehouse(url=f"chdb://{tmp_path_factory.mktemp('chdb_inferred') / 'engine'}",
                                     database=f"inferred_{suffix}")
    resources = {
        **hive_resources(stack, root, f"tv_inferred_{suffix}"),
        "clickhouse": clickhouse,
        "clickhouse_io_manager": ClickHouseIOManager(warehouse=clickhouse),
        "hdfs_io_manager": HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": root}),
        "lake": LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": root}),
    }
    kafka = kafka_resource(stack).with_topic(f"inferred_{suffix}")
    kafka.ensure_topic(partitions=2)
    yield resources, kafka
    try:
        resources["hive"].catalog().drop_database()
    finally:
        lake.delete(root)
        admin = kafka.admin()
        admin.delete_topics([kafka.topic])
        admin.close()


def _produced() -> pd.DataFrame:
    """300 sessions of DAY: 200 of known subscribers on known channels, 60 of subscribers not yet in the list, 40 of
    known subscribers on a channel not in the channel list."""
    rows = []
    for k in range(300):
        user = NEW_USERS[k % len(NEW_USERS)] if 200 <= k < 260 else 1 + k % USERS
        channel = NEW_CHANNEL if k >= 260 else 1 + k % 148
        sid = uuid.uuid5(uuid.NAMESPACE_URL, f"inferred/{k}").hex
        start = pd.Timestamp(f"{DAY} 09:00:00") + pd.Timedelta(minutes=2 * k)
        rows.append([sid, user, channel, start, "enabled"])
        rows.append([sid, user, channel, start + pd.Timedelta(minutes=5 + k % 30), "disabled"])
    return pd.DataFrame(rows, columns=["session_id", "user_id", "channel_id", "timer", "status"])


def _lake_and_marts(resources):
    lake_assets = [L.hive_tv_dataset, L.hive_tv_stream, L.sessionize_assets, *L.AGGREGATES]
    assert dg.materialize([L.hive_channels, L.hive_users], resources=resources).success
    (marts,) = [a for a in M.assets if M.mart_key("clickhouse", "sessions") in a.keys]
    chosen = [M.mart_key("clickhouse", n) for n in ("sessions", "channel_rating", "user_activity")]
    result = dg.materialize([*lake_assets, marts], partition_key=DAY, resources=resources,
                            selection=[*[k for a in lake_assets for k in a.keys], *chosen])
    assert result.success


def _mart(resources, name: str) -> pd.DataFrame:
    mart = M.MARTS[name]
    return resources["clickhouse"].read_frame(TableSpec.from_metadata(name, mart.metadata("clickhouse")),
                                                         [DAY])


def test_viewing_of_members_missing_from_the_reference_data_is_counted_and_labelled(env, spark):
    resources, kafka = env
    produced = _produced()
    assert dg.materialize([ingest.channels, ingest.users], resources=resources,
                          run_config={"ops": {"users": {"config": {"users": USERS, "seed": 5}}}}).success
    assert publish(kafka, produced.assign(timer=produced["timer"].dt.strftime("%Y-%m-%d %H:%M:%S"))
                   .to_dict("records"), progress=False) == len(produced)
    tick = kafka_events_sensor(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                                       resources={"kafka": kafka, "lake": resources["lake"]}))
    landed = quarantined = 0
    for rr in tick.run_requests:
        res = dg.materialize([ingest.tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
                             resources={"kafka": kafka, "lake": resources["lake"]})
        meta = res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata
        landed += meta["events_landed"].value
        quarantined += meta["events_quarantined"].value
    assert (landed, quarantined) == (600, 0)

    _lake_and_marts(resources)
    db = resources["hive"].database
    # independently: the sessions of what was produced
    enabled = produced[produced.status == "enabled"].set_index("session_id")
    sessions = spark.table(f"{db}.viewing_sessions").where(f"dt = '{DAY}'").toPandas().set_index("session_id")
    assert len(sessions) == len(enabled) == 300
    unknown_users = enabled[enabled.user_id.isin(NEW_USERS)]
    assert (sessions.loc[unknown_users.index, "user_name"] ==
            [f"subscriber #{u} (not in the subscriber list)" for u in unknown_users.user_id]).all()
    on_new_channel = enabled[enabled.channel_id == NEW_CHANNEL].index
    assert (sessions.loc[on_new_channel, "channel_name"] == f"channel #{NEW_CHANNEL} (not in the channel list)").all()
    assert spark.table(f"{db}.daily_viewing").where(f"dt = '{DAY}'").collect()[0]["views"] == 300

    users_dim = spark.table(f"{db}.users_dim").toPandas()
    inferred = users_dim[users_dim.inferred]
    assert sorted(inferred.user_id) == list(NEW_USERS) and set(inferred.first_seen) == {DAY}
    assert len(users_dim) == USERS + len(NEW_USERS)
    channels_dim = spark.table(f"{db}.channels_dim").where("inferred").toPandas()
    assert channels_dim.channel_id.tolist() == [NEW_CHANNEL]

    # the marts (and the dashboards reading them) count and name the same
    mart_sessions = _mart(resources, "sessions").set_index("session_id")
    assert len(mart_sessions) == 300
    assert (mart_sessions.loc[unknown_users.index, "user_name"] == sessions.loc[unknown_users.index, "user_name"]).all()
    rating = _mart(resources, "channel_rating").set_index("channel_id")
    assert rating.loc[NEW_CHANNEL, "channel_name"] == f"channel #{NEW_CHANNEL} (not in the channel list)"
    assert rating.loc[NEW_CHANNEL, "views"] == len(on_new_channel)
    assert rating["views"].sum() == 300
    activity = _mart(resources, "user_activity").set_index("user_id")
    assert activity.loc[NEW_USERS[0], "user_name"] == f"subscriber #{NEW_USERS[0]} (not in the subscriber list)"

    # the next reference load lists the new subscribers: the dimension names them; the day recomputed carries it
    assert dg.materialize([ingest.users], resources=resources,
                          run_config={"ops": {"users": {"config": {"users": USERS + len(NEW_USERS), "seed": 5}}}}).success
    _lake_and_marts(resources)
    users_dim = spark.table(f"{db}.users_dim").toPandas().set_index("user_id")
    assert not users_dim["inferred"].any() and len(users_dim) == USERS + len(NEW_USERS)
    sessions = spark.table(f"{db}.viewing_sessions").where(f"dt = '{DAY}'").toPandas().set_index("session_id")
    assert len(sessions) == 300
    names = users_dim.loc[unknown_users.user_id, "user_name"].to_numpy()
    assert (sessions.loc[unknown_users.index, "user_name"].to_numpy() == names).all()
    assert not sessions["user_name"].str.contains("not in the subscriber list").any()
    mart_sessions = _mart(resources, "sessions").set_index("session_id")
    assert len(mart_sessions) == 300
    assert (mart_sessions.loc[unknown_users.index, "user_name"].to_numpy() == names).all()
