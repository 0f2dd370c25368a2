"""The Dagster UI, as a user opens it: ``dagster dev`` on the PostgreSQL-backed instance serves the asset graph (GraphQL
and the rendered pages in headless Chromium, driven by Playwright) and shows a materialized partition of ``tv_dataset``.

The partition is written to a lake root of this module only (the platform's lake is left alone); the run is recorded
in the platform's instance (DAGSTER_HOME), which is what the UI reads."""

from __future__ import annotations

import os
import socket
import time
import uuid

import pytest
import requests

pytestmark = pytest.mark.services

DAY = "2023-09-16"
LINEAGE = ["kafka/tv_events", "tv_stream_snapshot", "hive_tv_stream", "viewing_sessions", "daily_viewing"]
MARTS = ["clickhouse/daily_viewing", "greenplum/daily_viewing"]


def _free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 3000:
            return port


@pytest.fixture(scope="module")
def dagster_ui(stack, lake):
    """``dagster dev`` on a free port, with one partition of tv_dataset materialized in its instance."""
    import dagster as dg

    from tv_platform.cli import dagster_env
    from tv_platform.demo import start_dagster, stop_dagster
    from tv_platform.engines.hdfs import HdfsCsvIOManager
    from tv_platform.resources import hdfs_io_manager

    port = _free_port()
    suffix = uuid.uuid4().hex[:8]
    root = f"/tests/dagster_ui_{suffix}"
    database = f"tv_ui_{suffix}"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in dagster_env().items():
            if os.environ.get(key) != value:
                mp.setenv(key, value)
        # what the UI launches (the backfill test) writes to this module's lake root and Hive database
        mp.setenv("TVP_LAKE_ROOT", root)
        mp.setenv("TVP_HIVE_DATABASE", database)
        mp.setenv("TVP_SIM_USERS", "500")
        proc = start_dagster(port)
        try:
            from tv_platform.assets import ingest

            io = HdfsCsvIOManager(**{**hdfs_io_manager(stack).model_dump(), "lake_root": root})
            with dg.DagsterInstance.get() as instance:
                result = dg.materialize([ingest.tv_dataset], partition_key=DAY, instance=instance,
                                        resources={"hdfs_io_manager": io},
                                        run_config={"ops": {"tv_dataset": {"config": {"users": 500}}}},
                                        tags={"tv_platform/launched_by": "test_dagster_ui"})
            assert result.success
            yield f"http://127.0.0.1:{port}", root
        finally:
            stop_dagster(proc)
            lake.delete(root)
            from pyspark.sql import SparkSession

            SparkSession.builder.remote(stack.spark_remote).getOrCreate().sql(
                f"DROP DATABASE IF EXISTS {database} CASCADE")


def _graphql(url: str, query: str, variables: dict | None = None) -> dict:
    r = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    r.raise_for_status()
    body = r.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def test_graphql_lists_the_asset_lineage_from_kafka_to_the_marts(dagster_ui):
    url, _ = dagster_ui
    data = _graphql(url, "{ assetNodes { assetKey { path } dependencyKeys { path } } }")
    parents = {"/".join(n["assetKey"]["path"]): {"/".join(d["path"]) for d in n["dependencyKeys"]}
               for n in data["assetNodes"]}
    for name in [*LINEAGE, *MARTS, "tv_dataset", "hive_tv_dataset"]:
        assert name in parents, f"{name} is not an asset node of the UI"
    for parent, child in zip(LINEAGE, LINEAGE[1:]):
        assert parent in parents[child], f"{child} does not depend on {parent}: {sorted(parents[child])}"
    for mart in MARTS:
        assert "daily_viewing" in parents[mart], f"{mart} does not depend on daily_viewing: {sorted(parents[mart])}"


def test_graphql_knows_the_materialized_partition(dagster_ui):
    url, _ = dagster_ui
    data = _graphql(url, """
        query ($key: AssetKeyInput!, $pk: String!) {
          assetNodeOrError(assetKey: $key) {
            ... on AssetNode { assetMaterializations(partitions: [$pk]) { partition runId } }
          }
        }""", {"key": {"path": ["tv_dataset"]}, "pk": DAY})
    assert DAY in {m["partition"] for m in data["assetNodeOrError"]["assetMaterializations"]}


def _wait_for_text(page, texts: list[str], timeout: float = 90) -> None:
    """Wait until the page's visible text contains every one of ``texts`` (Playwright's retrying assertion)."""
    from playwright.sync_api import expect

    body = page.locator("body")
    deadline = time.monotonic() + timeout
    for text in texts:
        expect(body).to_contain_text(text, timeout=max(1.0, deadline - time.monotonic()) * 1000)


def _dismiss_newsletter(page, seconds: float = 8) -> None:
    """Close Dagster's "Join the Dagster community" dialog (shown once per browser profile) if it comes up."""
    skip = page.get_by_role("button", name="Skip", exact=True)
    try:
        skip.wait_for(state="visible", timeout=seconds * 1000)
    except Exception:  # noqa: BLE001 - playwright's TimeoutError: the dialog did not come up
        return
    skip.click()
    skip.wait_for(state="hidden", timeout=10_000)


@pytest.fixture(scope="module")
def browser():
    from tv_platform.engines.superset import Browser

    with Browser() as b:
        yield b


def _render(browser, url: str, texts: list[str], shot) -> None:
    page = browser.new_page(width=1800, height=1100)
    try:
        page.goto(url, wait_until="domcontentloaded")
        _wait_for_text(page, texts)
        _dismiss_newsletter(page)
        _wait_for_text(page, texts)
        page.wait_for_timeout(2000)  # let the graph's layout settle before the picture
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        page.context.close()


def test_ui_renders_the_global_asset_lineage(dagster_ui, browser, artifacts_dir):
    url, _ = dagster_ui
    # the global lineage starts with the asset groups collapsed: every group of the platform is drawn
    _render(browser, f"{url}/asset-groups",
            ["Global asset lineage", "ingest", "lake", "programmes", "marts", "analytics"],
            artifacts_dir / "dagster_asset_graph.png")


def test_ui_renders_the_lineage_around_viewing_sessions(dagster_ui, browser, artifacts_dir):
    url, _ = dagster_ui
    _render(browser, f"{url}/assets/viewing_sessions?view=lineage",
            ["hive_tv_dataset", "hive_tv_stream", "viewing_sessions", "daily_viewing"],
            artifacts_dir / "dagster_viewing_sessions_lineage.png")


def test_ui_shows_the_materialized_partition_of_tv_dataset(dagster_ui, browser, artifacts_dir):
    url, root = dagster_ui
    # the selected partition's latest materialization is the one of this module (its lake path names the root)
    _render(browser, f"{url}/assets/tv_dataset?view=partitions&partition={DAY}",
            ["tv_dataset", DAY, "Latest materialization", f"{root}/raw/tv_dataset/dt={DAY}"],
            artifacts_dir / "dagster_tv_dataset_partitions.png")


def test_a_backfill_launched_from_the_ui_runs_spark_assets_once_per_range(dagster_ui):
    """What the UI's "Launch backfill" sends (GraphQL ``launchPartitionBackfill``), run by the daemon of ``dagster dev``:
    the simulated history one run per day, its Hive table (a Spark asset, ``BackfillPolicy.single_run``) one run for
    both days."""
    url, root = dagster_ui
    days = ["2023-09-20", "2023-09-21"]
    launched = _graphql(url, """
        mutation ($params: LaunchBackfillParams!) {
          launchPartitionBackfill(backfillParams: $params) {
            __typename
            ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message }
          }
        }""", {"params": {"assetSelection": [{"path": ["tv_dataset"]}, {"path": ["hive_tv_dataset"]}],
                          "partitionNames": days, "title": "test_dagster_ui"}})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    deadline = time.monotonic() + 420
    while True:
        data = _graphql(url, """
            query ($id: String!) {
              partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status runs(limit: 20) { runId status tags { key value } } }
                ... on PythonError { message }
              }
            }""", {"id": backfill_id})["partitionBackfillOrError"]
        assert "status" in data, data
        if data["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
            break
        assert time.monotonic() < deadline, f"backfill {backfill_id} still {data['status']} after 420 s"
        time.sleep(3)
    runs = data["runs"]
    assert data["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), data
    assert all(r["status"] == "SUCCESS" for r in runs), runs
    tags = [{t["key"]: t["value"] for t in r["tags"]} for r in runs]
    per_day = sorted(t["dagster/partition"] for t in tags if "dagster/partition" in t)
    ranges = [(t["dagster/asset_partition_range_start"], t["dagster/asset_partition_range_end"])
              for t in tags if "dagster/asset_partition_range_start" in t]
    assert per_day == days  # tv_dataset: one run per day
    # hive_tv_dataset: one run per range of days whose parents were ready together (both days in one run when their
    # tv_dataset runs end in the same daemon iteration, which a loaded machine does not promise) — every day in
    # exactly one range run
    covered = sorted(d for lo, hi in ranges for d in days if lo <= d <= hi)
    assert covered == days and 1 <= len(ranges) <= len(days), ranges
    assert len(runs) == len(days) + len(ranges)

    # and the Spark asset really registered both days, in this module's database
    data = _graphql(url, """
        query ($key: AssetKeyInput!) {
          assetNodeOrError(assetKey: $key) {
            ... on AssetNode { assetMaterializations(partitions: ["2023-09-20", "2023-09-21"]) { partition runId } }
          }
        }""", {"key": {"path": ["hive_tv_dataset"]}})
    range_runs = {r["runId"] for r, t in zip(runs, tags) if "dagster/asset_partition_range_start" in t}
    mats = data["assetNodeOrError"]["assetMaterializations"]
    assert sorted(m["partition"] for m in mats if m["runId"] in range_runs) == days
