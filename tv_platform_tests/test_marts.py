"""Marts: declarations (no services), and the whole path lake table -> Spark -> pandas -> both warehouses -> consistency
checks, on hand-made lake partitions in a Hive database of this module (real Spark, PostgreSQL and chDB)."""

import uuid
from datetime import datetime, timedelta

import dagster as dg
import pandas as pd
import pytest

from tv_platform.assets import marts as M
from tv_platform.engines.clickhouse import (
    ClickHouseIOManager, ClickHouseWarehouse, create_table_sql as ch_ddl, parse_ch_type,
)
from tv_platform.engines.greenplum import GreenplumIOManager, GreenplumWarehouse, create_table_sql as gp_ddl, parse_pg_type
from tv_platform.engines.warehouse import TableSpec
from tv_platform.lake import tables as T
from tv_platform_tests.conftest import broadcast_day

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

LAKE_AGGREGATES = ["daily_viewing", "channel_rating", "hourly_activity", "channel_weekday_hour", "duration_histogram",
                   "user_activity"]
D = "2023-09-23"


# ---- declarations (no services) -----------------------------------------------------------------------------------------
def test_every_lake_aggregate_has_a_mart_in_both_warehouses():
    keys = {key for a in M.assets for key in a.keys}
    for name in [*LAKE_AGGREGATES, "sessions"]:
        for warehouse in M.WAREHOUSES:
            assert dg.AssetKey([warehouse, name]) in keys
    # one multi-asset per warehouse, each mart with its check
    assert len(M.assets) == 2 and len(keys) == len({c for a in M.assets for c in a.check_keys}) == 14
    sources = {M.MARTS[n].source for n in M.MARTS}
    assert sources == {*LAKE_AGGREGATES, "viewing_sessions"}


@pytest.mark.parametrize("name", list(M.MARTS))
def test_mart_declares_exactly_the_lake_columns(name):
    """The declared mart columns are the lake table's declared columns (+ dt), in order: a change in the lake shows
    up here rather than as a failed load."""
    mart = M.MARTS[name]
    lake_columns = [c for c, _ in T.DERIVED_TABLES[mart.source]]
    assert list(mart.columns) == ["dt", *lake_columns]


@pytest.mark.parametrize("name", list(M.MARTS))
def test_mart_metadata_is_valid_in_both_warehouses(name):
    mart = M.MARTS[name]
    for warehouse in M.WAREHOUSES:
        key = dg.AssetKey([warehouse, name])
        (asset,) = [a for a in M.assets if key in a.keys]
        meta = asset.specs_by_key[key].metadata
        spec = TableSpec.from_metadata(key.path[-1], meta)
        assert spec.partition_expr == "dt" and set(spec.sum_columns) == set(mart.sums)
        assert asset.partitions_def is not None and asset.group_names_by_key[key] == "marts"
        assert asset.get_io_manager_key_for_asset_key(key) == f"{warehouse}_io_manager"
        assert asset.asset_deps[key] == {dg.AssetKey(mart.source)}  # lineage from the lake table
        if warehouse == "greenplum":
            cols = [parse_pg_type(n, t) for n, t in spec.columns.items()]
            ddl = gp_ddl("tv_marts", spec, "greenplum", cols)
            assert ddl.endswith("DISTRIBUTED BY (" + ", ".join(f'"{c}"' for c in mart.distributed_by) + ")")
            assert {"greenplum", "postgres"} <= set(asset.specs_by_key[key].kinds)
        else:
            cols = [parse_ch_type(n, t) for n, t in spec.columns.items()]
            ddl = ch_ddl("tv_marts", spec, cols)
            assert "ENGINE = MergeTree" in ddl
            assert "PARTITION BY `dt`" in ddl
            assert set(asset.specs_by_key[key].kinds) == {"clickhouse"}
        # the measures the checks compare are numeric
        kinds = {c.name: c.kind for c in cols}
        assert all(kinds[s].startswith(("int", "uint", "float")) for s in mart.sums)


def test_checks_are_partitioned_and_read_the_lake():
    for asset in M.assets:
        specs = list(asset.check_specs)
        assert {s.asset_key for s in specs} == set(asset.keys)
        for spec in specs:
            assert spec.name == "agrees_with_lake" and spec.partitions_def is not None
            assert {d.asset_key for d in spec.additional_deps} == {dg.AssetKey(M.MARTS[spec.asset_key.path[-1]].source)}
        # the step queries the warehouse's resource and the lake's; it writes through the warehouse's IO manager
        warehouse = next(iter(asset.keys)).path[0]
        assert asset.required_resource_keys - {"io_manager"} == {warehouse, "hive", f"{warehouse}_io_manager"}
        assert asset.can_subset


def test_compare_tolerates_float_order_only():
    lake = {"rows": 3, "sums": {"views": 10.0, "hours": 1.0 / 3.0}}
    assert M.compare({"rows": 3, "sums": {"views": 10.0, "hours": 1.0 / 3.0 + 1e-15}}, lake)[0]
    assert not M.compare({"rows": 2, "sums": {"views": 10.0, "hours": 1.0 / 3.0}}, lake)[0]
    ok, meta = M.compare({"rows": 3, "sums": {"views": 11.0, "hours": 1.0 / 3.0}}, lake)
    assert not ok and meta["warehouse_sum_views"] == 11.0 and meta["lake_sum_views"] == 10.0


# ---- through the services -----------------------------------------------------------------------------------------------
def _value(column: str, hive_type: str, i: int, nullable: bool, day: str):
    """A deterministic hand-made value of a lake column (small ints fit every warehouse type)."""
    rng = (i * 7919 + len(column) * 104_729) % 1000
    if nullable and i % 5 == 3:
        return None
    if hive_type == "STRING":
        names = ["Первый канал", 'Канал "Дом", кино', "ТНТ", "Россия 1", "line\nbreak"]
        return f"{column}-{i:05d}" if column == "session_id" else names[i % len(names)]
    if hive_type in ("INT", "BIGINT"):
        return i % 24 if column in ("hour", "weekday", "bucket_order") else 1 + rng
    if hive_type == "DOUBLE":
        return rng / 7.0
    if hive_type == "TIMESTAMP":
        return datetime.fromisoformat(day) + timedelta(minutes=17 * i % 1440, seconds=i % 60)
    if hive_type == "BOOLEAN":
        return i % 2 == 0
    raise AssertionError(hive_type)


def hand_lake_frame(table: str, day: str, rows: int) -> pd.DataFrame:
    mart = next(m for m in M.MARTS.values() if m.source == table)
    data = {}
    for column, hive_type in T.DERIVED_TABLES[table]:
        nullable = "not null" not in mart.columns[column][0]
        data[column] = [_value(column, hive_type, i, nullable, day) for i in range(rows)]
    frame = pd.DataFrame(data)
    frame["dt"] = day
    return frame


def spark_schema(table: str) -> str:
    return ", ".join(f"`{c}` {t.lower()}" for c, t in T.DERIVED_TABLES[table]) + ", `dt` string"


@pytest.fixture(scope="module")
def warehouse_env(stack, spark, lake, tmp_path_factory):
    """A Hive database and lake root, a PostgreSQL schema and a chDB directory of this module only."""
    from tv_platform.engines.spark import HiveIOManager, HiveResource
    from tv_platform.stack.postgres import PostgresService

    suffix = uuid.uuid4().hex[:8]
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_test_marts_{suffix}", lake_url=stack.hdfs_url,
                        lake_root=f"/tv_platform_test_marts_{suffix}", webhdfs_url=stack.webhdfs_url,
                        hdfs_user=stack.hdfs_user)
    hive_io = HiveIOManager(spark_remote=stack.spark_remote, database=hive.database,
                            database_location=hive.resolved_database_location())
    admin = PostgresService(stack).admin_connect(stack.gp_database)
    admin.autocommit = True
    schema = f"test_marts_{suffix}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{stack.gp_loader_user}"')
    gp = GreenplumWarehouse(host=stack.gp_host, port=stack.gp_port, database=stack.gp_database, schema_name=schema,
                            user=stack.gp_loader_user, password=stack.gp_loader_password,
                            reader_role=stack.gp_reader_user)
    ch = ClickHouseWarehouse(url=f"chdb://{tmp_path_factory.mktemp('chdb_marts') / 'engine'}",
                             database=f"test_marts_{suffix}")
    yield {"hive": hive, "hive_io_manager": hive_io, "greenplum": gp, "clickhouse": ch,
           "greenplum_io_manager": GreenplumIOManager(warehouse=gp), "clickhouse_io_manager": ClickHouseIOManager(warehouse=ch)}
    with admin.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.close()
    try:
        hive.catalog().drop_database()
    finally:
        lake.delete(f"/tv_platform_test_marts_{suffix}")


def lake_specs() -> list[dg.AssetSpec]:
    """The lake tables as seen from the marts (their assets are issue #4's; here the tables are written by hand)."""
    return [dg.AssetSpec(key=m.source, partitions_def=M.daily).with_io_manager_key("hive_io_manager")
            for m in M.MARTS.values()]


def run_marts(env, day: str, selection=None, raise_on_error: bool = True):
    """Run the selection (default: every mart and its checks) for one day, as a job of Definitions holding the lake
    tables as (non-executable) specs read through the hive_io_manager."""
    resources = dict(env)  # the checks read the lake through the `hive` resource, the marts through hive_io_manager
    job = dg.define_asset_job("marts_test_job", selection=selection or dg.AssetSelection.groups("marts"))
    defs = dg.Definitions(assets=[*lake_specs(), *M.assets], jobs=[job], resources=resources)
    return defs.resolve_job_def("marts_test_job").execute_in_process(partition_key=day, raise_on_error=raise_on_error)


@pytest.fixture(scope="module")
def loaded(warehouse_env, spark):
    """Hand-made lake partitions of every mart's table for D, then every mart and check for D."""
    cat = warehouse_env["hive"].catalog()
    frames = {}
    for mart in M.MARTS.values():
        frames[mart.source] = hand_lake_frame(mart.source, D, rows=300 if mart.source == "viewing_sessions" else 60)
        cat.write(mart.source, spark.createDataFrame(frames[mart.source], schema=spark_schema(mart.source)), [D])
    result = run_marts(warehouse_env, D)
    return frames, result


@pytest.mark.services
def test_marts_load_both_warehouses_and_checks_pass(warehouse_env, loaded):
    frames, result = loaded
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 14 and all(e.passed for e in evaluations), [
        (e.asset_key.to_user_string(), e.metadata) for e in evaluations if not e.passed]
    assert {e.partition for e in evaluations} == {D}
    # the checks ran in the marts' run: the lake's side is what the mart read (no second Spark count), equal to the
    # hand-made frames counted here with pandas; the warehouse's side was recounted in the warehouse
    for e in evaluations:
        meta = {k: v.value for k, v in e.metadata.items()}
        expected = frames[M.MARTS[e.asset_key.path[-1]].source]
        assert meta["lake_counted"] == "read by this materialization", e.asset_key
        assert meta["lake_rows"] == meta["warehouse_rows"] == len(expected)
        for col in M.MARTS[e.asset_key.path[-1]].sums:
            assert meta[f"lake_sum_{col}"] == pytest.approx(float(pd.to_numeric(expected[col]).sum()), rel=1e-12)
    for name, mart in M.MARTS.items():
        expected = frames[mart.source]
        for warehouse in M.WAREHOUSES:
            key = dg.AssetKey([warehouse, name])
            (mat,) = [m for m in result.asset_materializations_for_node(f"{warehouse}_marts") if m.asset_key == key]
            meta = {k: v.value for k, v in mat.metadata.items()}
            assert meta["dagster/row_count"] == len(expected)
            for col in mart.sums:  # independently computed with pandas
                assert meta[f"sum_{col}"] == pytest.approx(float(pd.to_numeric(expected[col]).sum()), rel=1e-12)


@pytest.mark.services
@pytest.mark.parametrize("name", ["sessions", "duration_histogram", "user_activity"])
def test_mart_content_equals_the_lake_partition(warehouse_env, loaded, name):
    frames, _ = loaded
    mart = M.MARTS[name]
    expected = frames[mart.source][list(mart.columns)]
    for warehouse in M.WAREHOUSES:
        spec = TableSpec.from_metadata(name, mart.metadata(warehouse))
        got = warehouse_env[warehouse].read_frame(spec, [D])
        key = "session_id" if name == "sessions" else ("bucket_order" if name == "duration_histogram" else "user_id")
        if name != "sessions":  # keys of the hand-made aggregates repeat: sort by every column
            key = [c for c in mart.columns if c != "dt"]
        _assert_same(got, expected, key if isinstance(key, list) else [key], mart)


def _assert_same(got: pd.DataFrame, expected: pd.DataFrame, key: list[str], mart: M.Mart) -> None:
    """Same rows, compared by the declared type of each column (so dtypes of the read-back frame do not matter)."""
    def norm(frame):
        out = frame.copy()
        for c in out.columns:
            gp_type = mart.columns[c][0]
            if gp_type.startswith(("date", "timestamp")):
                out[c] = pd.to_datetime(out[c]).astype("datetime64[s]")
            elif gp_type.startswith("boolean"):
                out[c] = out[c].astype(object).map(lambda v: None if v is None or v is pd.NA else bool(v))
            elif gp_type.startswith(("integer", "bigint", "smallint", "double")):
                out[c] = pd.to_numeric(out[c]).astype("float64")
            else:
                out[c] = out[c].astype(object).where(out[c].notna(), None)
        return out.sort_values(key, na_position="first").reset_index(drop=True)

    pd.testing.assert_frame_equal(norm(got)[list(expected.columns)], norm(expected), check_dtype=False)


@pytest.mark.services
def test_rerun_is_idempotent_and_checks_catch_drift(warehouse_env, loaded, spark):
    frames, _ = loaded
    again = run_marts(warehouse_env, D)
    assert all(e.passed for e in again.get_asset_check_evaluations())
    gp = warehouse_env["greenplum"]
    ch = warehouse_env["clickhouse"]
    rating = M.MARTS["channel_rating"]
    gp_spec = TableSpec.from_metadata("channel_rating", rating.metadata("greenplum"))
    ch_spec = TableSpec.from_metadata("channel_rating", rating.metadata("clickhouse"))
    assert gp.partition_stats(gp_spec, [D])["rows"] == ch.partition_stats(ch_spec, [D])["rows"] == 60

    # the lake changes behind the marts' back: the checks (run alone, for the day) fail and give the numbers.
    # (Dagster 1.13 cannot execute_in_process a checks-only selection of partitioned checks, so the check's function
    # is called directly with the same resources.)
    cat = warehouse_env["hive"].catalog()
    changed = frames["channel_rating"].iloc[:50]
    cat.write("channel_rating", spark.createDataFrame(changed, schema=spark_schema("channel_rating")), [D])
    for warehouse, io in (("greenplum", gp), ("clickhouse", ch)):
        result = M.check_partition(io, warehouse_env["hive"].catalog(), warehouse, "channel_rating", D)
        assert not result.passed and result.metadata["lake_counted"].value == "recounted through Spark"
        assert result.metadata["warehouse_rows"].value == 60 and result.metadata["lake_rows"].value == 50
        assert result.metadata["lake_sum_views"].value == pytest.approx(float(changed["views"].sum()))
    # re-materializing the marts brings them back in line
    fixed = run_marts(warehouse_env, D, selection=dg.AssetSelection.assets(
        dg.AssetKey(["greenplum", "channel_rating"]), dg.AssetKey(["clickhouse", "channel_rating"])))
    assert all(e.passed for e in fixed.get_asset_check_evaluations())
    assert gp.partition_stats(gp_spec, [D])["rows"] == ch.partition_stats(ch_spec, [D])["rows"] == 50


def test_docs_list_every_mart_column_with_its_types():
    """docs/marts.md documents the tables as declared (regenerate its table block when a declaration changes)."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "marts.md").read_text()
    for name, mart in M.MARTS.items():
        assert f"#### `{name}` ← lake `{mart.source}`" in doc
        for column, (gp, ch) in mart.columns.items():
            assert f"| `{column}` | `{gp}` | `{ch}` |" in doc, (name, column)


def test_marts_fit_the_platform_definitions():
    """With the lake's assets and resources, the marts resolve: inputs from the Hive aggregates, every resource key
    provided (what tv_platform/definitions.py gets once it lists lake and marts)."""
    from tv_platform.assets import ingest, lake
    from tv_platform.engines.spark import lake_resources
    from tv_platform.resources import get_resources

    defs = dg.Definitions(assets=[*ingest.assets, *lake.assets, *M.assets],
                          asset_checks=[*ingest.checks, *lake.checks],
                          resources={**get_resources(), **lake_resources()})
    graph = defs.resolve_asset_graph()
    for name, mart in M.MARTS.items():
        for warehouse in M.WAREHOUSES:
            assert graph.get(dg.AssetKey([warehouse, name])).parent_keys == {dg.AssetKey(mart.source)}
    assert defs.resolve_implicit_global_asset_job_def() is not None
