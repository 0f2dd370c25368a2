"""Backfills are idempotent: materializing the same days twice through :func:`tv_platform.ops.materialize_partitions`
changes nothing — the raw files are byte-identical, the daily aggregates are the same and no session is duplicated.

Runs on the stack with resources of this module only (a lake root and a Hive database of its own) and an ephemeral
Dagster instance, so it never touches the platform's ``tv`` database, lake root or run history."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
from pandas.testing import assert_frame_equal

from tv_platform import layout
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.spark import HiveIOManager, HiveResource
from tv_platform.ops import materialize_partitions
from tv_platform.resources import hdfs_io_manager, lake_resource

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

DAYS = ["2023-09-16", "2023-09-17"]
SELECTION = ["channels", "users", "tv_dataset", "hive_channels", "hive_users", "hive_tv_dataset", "hive_tv_stream",
             "viewing_sessions", "session_anomalies", "daily_viewing"]


@pytest.fixture(scope="module")
def isolated_defs(stack, lake):
    """The platform's definitions with every lake resource pointed at a root and a Hive database of this module."""
    from tv_platform.definitions import defs

    suffix = uuid.uuid4().hex[:8]
    root = f"/tests/backfill_{suffix}"
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_backfill_{suffix}", lake_url=stack.hdfs_url,
                        lake_root=root, webhdfs_url=stack.webhdfs_url, hdfs_user=stack.hdfs_user)
    resources = {
        **(defs.resources or {}),
        "lake": LakeResource(**{**lake_resource(stack).model_dump(), "lake_root": root}),
        "hdfs_io_manager": HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": root}),
        "hive": hive,
        "hive_io_manager": HiveIOManager(spark_remote=hive.spark_remote, database=hive.database,
                                         database_location=hive.resolved_database_location()),
    }
    copy = dg.Definitions(assets=list(defs.assets or []), asset_checks=list(defs.asset_checks or []),
                          resources=resources)
    yield copy, root, hive.database
    try:
        hive.catalog().drop_database()
    finally:
        lake.delete(root)


def _raw_files(lake, root: str) -> dict[str, bytes]:
    out = {}
    for day in DAYS:
        base = layout.partition_dir(layout.raw_dir("tv_dataset", root), day)
        for name in sorted(lake.listdir(base)):
            out[f"{day}/{name}"] = lake.read_bytes(f"{base}/{name}")
    return out


def _state(spark, lake, root: str, db: str) -> dict:
    in_days = ", ".join(f"'{d}'" for d in DAYS)
    daily = (spark.sql(f"SELECT * FROM {db}.daily_viewing WHERE dt IN ({in_days})").toPandas()
             .sort_values("dt").reset_index(drop=True))
    sessions = spark.sql(
        f"SELECT dt, count(*) AS n, count(DISTINCT session_id) AS distinct_ids, sum(duration_s) AS duration "
        f"FROM {db}.viewing_sessions GROUP BY dt ORDER BY dt").toPandas()
    anomalies = spark.sql(f"SELECT count(*) AS n FROM {db}.session_anomalies").toPandas()["n"].iloc[0]
    return {"daily": daily, "sessions": sessions, "anomalies": int(anomalies), "raw": _raw_files(lake, root)}


def test_backfilling_the_same_days_twice_changes_nothing(isolated_defs, spark, lake):
    """The first backfill runs day by day; the second runs each Spark asset once over both days (its backfill
    policy, as a UI backfill does): same raw files, same sessions and aggregates."""
    defs, root, db = isolated_defs
    instance = dg.DagsterInstance.ephemeral()

    first_count = materialize_partitions(defs, instance, SELECTION, DAYS, progress=False, ranges=False)
    first = _state(spark, lake, root, db)
    runs_before = len(instance.get_runs())
    second_count = materialize_partitions(defs, instance, SELECTION, DAYS, progress=False)
    second = _state(spark, lake, root, db)

    # the ranged pass: one run over both days for each Spark asset; the raw history still one run per day
    ranged = {r.run_id for r in instance.get_runs()[: len(instance.get_runs()) - runs_before]
              if r.tags.get("dagster/asset_partition_range_start") == DAYS[0]
              and r.tags.get("dagster/asset_partition_range_end") == DAYS[-1]}

    def latest_runs(asset: str) -> set[str]:
        records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
        latest = {}
        for rec in records:  # newest first
            latest.setdefault(rec.partition_key, rec.run_id)
        return {latest[d] for d in DAYS}

    for asset in ("hive_tv_dataset", "viewing_sessions", "session_anomalies", "daily_viewing"):
        runs = latest_runs(asset)
        assert len(runs) == 1 and runs <= ranged, asset
    assert len(latest_runs("tv_dataset")) == 2 and not latest_runs("tv_dataset") & ranged

    assert first_count == second_count > 0
    # something was built: both days have aggregates and sessions
    assert list(first["daily"]["dt"].astype(str)) == DAYS
    assert (first["daily"]["views"] > 0).all()
    assert list(first["sessions"]["dt"].astype(str)) == DAYS
    # the raw history is rewritten byte for byte, not appended to
    assert first["raw"] and set(first["raw"]) == set(second["raw"])
    for name, data in first["raw"].items():
        assert second["raw"][name] == data, f"raw file {name} changed on the second backfill"
    # the aggregates and sessions are the same; no session was written twice
    # (floating sums compared to 1e-12: Spark may add the same numbers in another order)
    assert_frame_equal(first["daily"], second["daily"], check_exact=False, rtol=1e-12)
    assert_frame_equal(first["sessions"], second["sessions"], check_exact=False, rtol=1e-12)
    assert (second["sessions"]["n"] == second["sessions"]["distinct_ids"]).all()
    assert first["anomalies"] == second["anomalies"]
