"""The forecast against the actuals in both warehouses: the real ``viewing_forecast`` on a small simulated history
(Spark, Hive), then ``greenplum/forecast_daily`` and ``clickhouse/forecast_daily`` (unpartitioned: replaced whole) with
their ``agrees_with_hive`` checks, in a PostgreSQL schema and a chDB directory of this module."""

import uuid
from datetime import date

import dagster as dg
import pandas as pd
import pytest

from tv_platform.assets import marts as M
from tv_platform.engines.clickhouse import ClickHouseWarehouse
from tv_platform.engines.greenplum import GreenplumWarehouse
from tv_platform.engines.warehouse import TableSpec
from tv_platform.resources import warehouse_resources
from tv_platform_tests.forecast_history import DAYS, build_forecast_history

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

LAST = date(2024, 3, 31)


@pytest.fixture(scope="module")
def history(stack, spark):
    h = build_forecast_history(stack, spark, LAST, prefix="fcmart")
    yield h
    h.cleanup()


@pytest.fixture(scope="module")
def env(stack, history, tmp_path_factory):
    from tv_platform.stack.postgres import PostgresService

    suffix = uuid.uuid4().hex[:8]
    schema = f"test_forecast_{suffix}"
    admin = PostgresService(stack).admin_connect(stack.gp_database)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{stack.gp_loader_user}"')
    resources = {
        "hive": history.hive,
        **warehouse_resources(
            GreenplumWarehouse(
                host=stack.gp_host, port=stack.gp_port, database=stack.gp_database, schema_name=schema,
                user=stack.gp_loader_user, password=stack.gp_loader_password, reader_role=stack.gp_reader_user),
            ClickHouseWarehouse(
                url=f"chdb://{tmp_path_factory.mktemp('chdb_forecast') / 'engine'}",
                database=f"test_forecast_{suffix}", lock_timeout=30)),
    }
    yield {"resources": resources, "schema": schema}
    with admin.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.close()


def _load(env):
    return dg.materialize([*M.forecast_assets, *M.forecast_checks], resources=env["resources"])


def _warehouse_frame(env, warehouse: str) -> pd.DataFrame:
    spec = TableSpec.from_metadata("forecast_daily", M.FORECAST.metadata(warehouse))
    frame = env["resources"][M.RESOURCE_KEYS[warehouse]].read_frame(spec, None)
    frame["day"] = frame["day"].dt.strftime("%Y-%m-%d")
    return frame.sort_values(["series", "kind", "model", "day"]).reset_index(drop=True)


def test_forecast_marts_equal_the_hive_table_and_checks_pass(history, env):
    res = _load(env)
    assert res.success
    checks = res.get_asset_check_evaluations()
    assert {(c.asset_key.to_user_string(), c.check_name) for c in checks} == {
        ("greenplum/forecast_daily", "agrees_with_hive"), ("clickhouse/forecast_daily", "agrees_with_hive")}
    assert all(c.passed for c in checks), [c.metadata for c in checks]

    hive = history.hive.catalog().read("forecast_daily").toPandas()
    hive = hive[list(M.FORECAST.columns)].sort_values(["series", "kind", "model", "day"]).reset_index(drop=True)
    # the history: 24 days of actuals per series, the folds' backtest days + 7 forecast days per model
    total = hive[hive["series"] == "total"]
    assert (total["kind"] == "actual").sum() == DAYS
    assert len(total[total["kind"] == "forecast"]) == 2 * 7 and total["day"].max() == "2024-04-07"
    actual = total[total["kind"] == "actual"].set_index("day")["hours"]
    pd.testing.assert_series_equal(actual, history.total_hours.rename_axis("day"), check_names=False)
    for warehouse in M.WAREHOUSES:
        got = _warehouse_frame(env, warehouse)
        pd.testing.assert_frame_equal(got[["day", "series", "kind", "model"]], hive[["day", "series", "kind", "model"]],
                                      check_dtype=False)
        assert got["hours"].to_numpy() == pytest.approx(hive["hours"].to_numpy(), rel=1e-12)


def test_a_new_forecast_replaces_the_marts_whole_and_a_drift_fails_the_check(stack, history, env):
    cat = history.hive.catalog()
    assert _load(env).success
    # a new forecast: only the total series this time (the forecast's Hive table is rewritten whole, as the asset does)
    from tv_platform.assets.analytics import store

    before = cat.read("forecast_daily").toPandas()
    store(cat, "forecast_daily", before[before["series"] == "total"][list(M.FORECAST.columns)])
    hive_total = cat.read("forecast_daily").toPandas()
    assert set(hive_total["series"]) == {"total"}
    res = _load(env)
    assert res.success and all(c.passed for c in res.get_asset_check_evaluations())
    for warehouse in M.WAREHOUSES:
        got = _warehouse_frame(env, warehouse)
        assert len(got) == len(hive_total) and set(got["series"]) == {"total"}  # nothing of the old rows left
        assert got["hours"].sum() == pytest.approx(hive_total["hours"].sum(), rel=1e-12)

    # a warehouse row lost behind Dagster's back: the check sees it
    import psycopg2

    with psycopg2.connect(stack.gp_dsn("loader")) as conn, conn.cursor() as cur:
        cur.execute(f"DELETE FROM \"{env['schema']}\".forecast_daily WHERE ctid IN "
                    f"(SELECT ctid FROM \"{env['schema']}\".forecast_daily LIMIT 1)")
    check = M.check_forecast(env["resources"]["greenplum"], cat, "greenplum")
    assert not check.passed
    assert check.metadata["warehouse_rows"].value == len(hive_total) - 1
    assert check.metadata["lake_rows"].value == len(hive_total)


def test_docs_list_the_forecast_mart_columns():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "marts.md").read_text()
    assert "#### `forecast_daily` ← Hive `forecast_daily`" in doc
    for column, (gp, ch) in M.FORECAST.columns.items():
        assert f"| `{column}` | `{gp}` | `{ch}` |" in doc, column
