"""The ClickHouse IO manager on the real embedded engine (chDB), in a data directory of this test module (so other
processes using the stack's chDB path are never blocked): load, reload without duplicates, day and month partitions,
schema evolution, the engine held by another process, and a loading process killed mid-insert."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from tv_platform.engines.clickhouse import ClickHouseIOManager, ClickHouseWarehouse
from tv_platform.engines.warehouse import WarehouseError
from tv_platform_tests.test_warehouse_units import (
    CH_CHANNEL_DAILY,
    CH_SESSIONS,
    as_spec,
    assert_same_rows,
    channel_daily_frame,
    sessions_frame,
    to_metadata,
)

pytestmark = pytest.mark.services

DAILY = dg.DailyPartitionsDefinition(start_date="2023-09-01")
DAY1, DAY2, DAY3 = "2023-09-01", "2023-09-02", "2023-10-01"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def chdb_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("chdb") / "engine"


@pytest.fixture
def io(stack, chdb_dir, unique) -> ClickHouseWarehouse:
    return ClickHouseWarehouse(url=f"chdb://{chdb_dir}", database=f"test_marts_{unique}", lock_timeout=10)


def mart_asset(meta: dict, make_frame):
    @dg.asset(key=["clickhouse", meta["table"]], partitions_def=DAILY, io_manager_key="clickhouse_io_manager",
              metadata=to_metadata(meta))
    def mart(context: dg.AssetExecutionContext):
        return make_frame(context.partition_key)

    return mart


def materialize(asset, io, day, **kwargs):
    return dg.materialize([asset], partition_key=day, resources={"clickhouse_io_manager": ClickHouseIOManager(warehouse=io)},
                          **kwargs)


def output_meta(result, table: str) -> dict:
    (mat,) = result.asset_materializations_for_node(f"clickhouse__{table}")
    return {k: v.value for k, v in mat.metadata.items()}


def failure_text(result) -> str:
    return "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)


def ch_query(io: ClickHouseWarehouse, sql: str):
    with io.session() as session:
        return session.client.query(sql).result_rows


# ---- load, reload ------------------------------------------------------------------------------------------------------
def test_load_reload_no_duplicates_and_values(io):
    frames = {d: channel_daily_frame(d) for d in (DAY1, DAY2)}
    asset = mart_asset(CH_CHANNEL_DAILY, lambda d: frames[d])
    meta = output_meta(materialize(asset, io, DAY1), "channel_daily")
    expected = frames[DAY1]
    assert meta["dagster/row_count"] == 40 and meta["sum_views"] == expected["views"].sum()
    assert meta["sum_hours"] == pytest.approx(expected["hours"].sum(), rel=1e-12)
    assert meta["swap"] == "REPLACE PARTITION (20230901)" and "created table" in meta["ddl"]

    materialize(asset, io, DAY2)
    materialize(asset, io, DAY1)
    materialize(asset, io, DAY1)
    assert sorted(ch_query(io, f"SELECT toString(dt), count() FROM {io.database}.channel_daily GROUP BY dt")) == [
        (DAY1, 40), (DAY2, 40)]
    spec = as_spec(CH_CHANNEL_DAILY)
    back = io.read_frame(spec, [DAY1])
    assert_same_rows(back, expected, ["channel_id"])  # incl. '' vs NULL, quotes, newline, Cyrillic
    assert back["channel_name"].isna().sum() == expected["channel_name"].isna().sum()
    assert back["share"].isna().sum() == expected["share"].isna().sum()
    (hours, views), = ch_query(io, f"SELECT sum(hours), sum(views) FROM {io.database}.channel_daily WHERE dt = '{DAY1}'")
    assert hours == pytest.approx(expected["hours"].sum(), rel=1e-12) and views == expected["views"].sum()
    # the declared types, not what pandas guessed
    types = dict(ch_query(io, f"SELECT name, type FROM system.columns WHERE database = '{io.database}' "
                              "AND table = 'channel_daily'"))
    assert types["channel_id"] == "UInt16" and types["channel_name"] == "LowCardinality(Nullable(String))"
    assert ch_query(io, f"SELECT partition_key, sorting_key FROM system.tables WHERE database = '{io.database}' "
                        "AND name = 'channel_daily'") == [("dt", "channel_id")]
    # no staging table is left behind
    assert ch_query(io, f"SELECT name FROM system.tables WHERE database = '{io.database}'") == [("channel_daily",)]


def test_sessions_round_trip_timestamps(io):
    frame = sessions_frame(DAY1, 5_000, seed=4)
    meta = output_meta(materialize(mart_asset(CH_SESSIONS, lambda d: frame), io, DAY1), "sessions")
    assert meta["sum_duration_min"] == pytest.approx(frame["duration_min"].sum(), rel=1e-12)
    back = io.read_frame(as_spec(CH_SESSIONS), [DAY1])
    assert_same_rows(back, frame, ["session_id"])
    # wall-clock hours survive (DateTime('UTC') keeps the session/server time zone out of it)
    by_hour = dict(ch_query(io, f"SELECT toHour(start), count() FROM {io.database}.sessions GROUP BY 1"))
    assert by_hour == frame.groupby(frame["start"].dt.hour).size().to_dict()


def test_days_of_one_month_are_partitions_of_their_own(io):
    """Every day is a ClickHouse partition: replacing one day of a month leaves its neighbours alone, and an empty day
    drops its rows (ClickHouse refuses REPLACE from an empty source)."""
    frames = {d: channel_daily_frame(d) for d in (DAY1, DAY2, DAY3)}
    asset = mart_asset(CH_CHANNEL_DAILY, lambda d: frames[d])
    for day in (DAY1, DAY2, DAY3):
        materialize(asset, io, day)
    frames[DAY1] = channel_daily_frame(DAY1, channels=10, seed=3)
    meta = output_meta(materialize(asset, io, DAY1), "channel_daily")
    assert meta["swap"] == "REPLACE PARTITION (20230901)" and meta["dagster/row_count"] == 10
    counts = dict(ch_query(io, f"SELECT toString(dt), count() FROM {io.database}.channel_daily GROUP BY dt"))
    assert counts == {DAY1: 10, DAY2: 40, DAY3: 40}
    assert_same_rows(io.read_frame(as_spec(CH_CHANNEL_DAILY), [DAY2]), frames[DAY2], ["channel_id"])
    frames[DAY3] = frames[DAY3].iloc[:0]
    materialize(asset, io, DAY3)
    assert dict(ch_query(io, f"SELECT toString(dt), count() FROM {io.database}.channel_daily GROUP BY dt")) == {
        DAY1: 10, DAY2: 40}


def test_concurrent_loads_of_two_days_of_one_month_both_land(io):
    """Two processes loading different days of one month at once (on chDB they take turns on the engine): neither
    load loses the other's day."""
    frames = {d: channel_daily_frame(d, seed=5) for d in (DAY1, DAY2)}
    loaders = [_python(
        """
        import sys
        from tv_platform.engines.clickhouse import ClickHouseWarehouse
        from tv_platform_tests.test_warehouse_units import CH_CHANNEL_DAILY, as_spec, channel_daily_frame
        io = ClickHouseWarehouse(url=sys.argv[1], database=sys.argv[2], lock_timeout=60)
        for _ in range(3):
            io.write_frame(as_spec(CH_CHANNEL_DAILY), channel_daily_frame(sys.argv[3], seed=5), [sys.argv[3]])
        print("done", flush=True)
        """, io.url, io.database, day) for day in (DAY1, DAY2)]
    for loader in loaders:
        assert loader.communicate(timeout=240)[0].strip() == "done"
    for day, frame in frames.items():
        assert_same_rows(io.read_frame(as_spec(CH_CHANNEL_DAILY), [day]), frame, ["channel_id"])


def test_a_monthly_table_of_an_earlier_version_is_rebuilt_by_day(io):
    """Tables were once PARTITION BY toYYYYMM(dt): the first load rebuilds such a table by day, keeping its rows."""
    frames = {d: channel_daily_frame(d, seed=9) for d in (DAY1, DAY2)}
    cols = ", ".join(f"`{n}` {t}" for n, t in CH_CHANNEL_DAILY["columns"].items())
    with io.session() as session:
        session.client.command(f"CREATE TABLE {io.database}.channel_daily ({cols}) ENGINE = MergeTree "
                               "PARTITION BY toYYYYMM(dt) ORDER BY channel_id")
    io.write_frame(as_spec(CH_CHANNEL_DAILY), frames[DAY1], [DAY1])
    meta = io.write_frame(as_spec(CH_CHANNEL_DAILY), frames[DAY2], [DAY2])
    assert ch_query(io, f"SELECT partition_key FROM system.tables WHERE database = '{io.database}' "
                        "AND name = 'channel_daily'") == [("dt",)]
    assert meta["dagster/row_count"].value == 40
    for day, frame in frames.items():
        assert_same_rows(io.read_frame(as_spec(CH_CHANNEL_DAILY), [day]), frame, ["channel_id"])


def test_unpartitioned_asset_is_replaced_whole(io):
    """An unpartitioned Dagster asset (no partition_column): every materialization swaps the table whole (EXCHANGE
    TABLES), so a smaller second frame leaves nothing of the first."""
    meta = {k: v for k, v in CH_CHANNEL_DAILY.items() if k != "partition_expr"}
    frames = [channel_daily_frame(DAY1, seed=1), channel_daily_frame(DAY2, seed=2).iloc[:7]]
    calls = iter(frames)

    @dg.asset(key=["clickhouse", meta["table"]], io_manager_key="clickhouse_io_manager", metadata=to_metadata(meta))
    def whole():
        return next(calls)

    first = dg.materialize([whole], resources={"clickhouse_io_manager": ClickHouseIOManager(warehouse=io)})
    assert output_meta(first, "channel_daily")["dagster/row_count"] == 40
    second = dg.materialize([whole], resources={"clickhouse_io_manager": ClickHouseIOManager(warehouse=io)})
    out = output_meta(second, "channel_daily")
    assert out["dagster/row_count"] == 7 and out["swap"] == "EXCHANGE TABLES" and "partitions" not in out
    spec = as_spec(meta)
    back = io.read_frame(spec, None)
    assert_same_rows(back, frames[1], ["channel_id"])
    assert io.partition_stats(spec, None)["sums"]["hours"] == pytest.approx(frames[1]["hours"].sum(), rel=1e-12)


def test_load_input_and_unpartitioned_swap(io):
    frames = {d: channel_daily_frame(d, seed=8) for d in (DAY1, DAY2)}
    upstream = mart_asset(CH_CHANNEL_DAILY, lambda d: frames[d])
    seen = {}

    @dg.asset(partitions_def=DAILY, ins={"mart": dg.AssetIn(key=["clickhouse", "channel_daily"])})
    def consumer(mart):
        seen["frame"] = mart

    for day in (DAY1, DAY2):
        materialize(upstream, io, day)
    dg.materialize([upstream, consumer], partition_key=DAY2, resources={"clickhouse_io_manager": ClickHouseIOManager(warehouse=io)},
                   selection=[consumer.key])
    assert_same_rows(seen["frame"], frames[DAY2], ["channel_id"])

    # an unpartitioned table is swapped whole (EXCHANGE TABLES)
    spec = as_spec({**CH_CHANNEL_DAILY, "table": "reference", "partition_expr": None})
    io.write_frame(spec, frames[DAY1], None)
    meta = io.write_frame(spec, frames[DAY2].iloc[:5], None)
    assert meta["swap"] == "EXCHANGE TABLES" and io.partition_stats(spec, None)["rows"] == 5


# ---- schema evolution --------------------------------------------------------------------------------------------------
def test_new_nullable_column_is_added(io):
    materialize(mart_asset(CH_CHANNEL_DAILY, channel_daily_frame), io, DAY1)
    wider = {**CH_CHANNEL_DAILY, "columns": {**CH_CHANNEL_DAILY["columns"], "avg_minutes": "Nullable(Float64)"}}
    frame2 = channel_daily_frame(DAY2).assign(avg_minutes=lambda f: f["hours"] * 60 / f["views"])
    meta = output_meta(materialize(mart_asset(wider, lambda d: frame2), io, DAY2), "channel_daily")
    assert "added column avg_minutes Nullable(Float64)" in meta["ddl"]
    assert dict(ch_query(io, f"SELECT toString(dt), count(avg_minutes) FROM {io.database}.channel_daily GROUP BY dt")) == {
        DAY1: 0, DAY2: 40}
    # reloading an old day after the change works (the staging table mirrors the altered table)
    materialize(mart_asset(wider, lambda d: channel_daily_frame(d).assign(avg_minutes=1.0)), io, DAY1)
    assert ch_query(io, f"SELECT count(avg_minutes) FROM {io.database}.channel_daily") == [(80,)]


@pytest.mark.parametrize("case", ["not_nullable", "switched_off", "undeclared_in_frame", "type_changed", "keys_changed"])
def test_column_changes_rejected_with_clear_message(io, case):
    materialize(mart_asset(CH_CHANNEL_DAILY, channel_daily_frame), io, DAY1)
    cols = CH_CHANNEL_DAILY["columns"]
    frame = channel_daily_frame(DAY1, seed=9)
    meta = CH_CHANNEL_DAILY
    if case == "not_nullable":
        meta = {**CH_CHANNEL_DAILY, "columns": {**cols, "rank": "UInt16"}}
        frame, expected = frame.assign(rank=1), "lacks the declared column 'rank' (UInt16): a non-Nullable column"
    elif case == "switched_off":
        meta = {**CH_CHANNEL_DAILY, "columns": {**cols, "rank": "Nullable(UInt16)"}}
        frame, expected = frame.assign(rank=1), "adding columns is switched off"
        io = ClickHouseWarehouse(url=io.url, database=io.database, allow_add_columns=False)
    elif case == "undeclared_in_frame":
        frame, expected = frame.assign(rank=1), "the frame has column(s) ['rank'] that the asset does not declare"
    elif case == "type_changed":
        meta = {**CH_CHANNEL_DAILY, "columns": {**cols, "viewers": "UInt64"}}
        expected = "column 'viewers' of"
    else:
        meta = {**CH_CHANNEL_DAILY, "order_by": ["channel_id", "dt"]}
        expected = "is PARTITION BY dt ORDER BY (channel_id) but the asset declares PARTITION BY dt ORDER BY (channel_id, dt)"
    result = materialize(mart_asset(meta, lambda d: frame), io, DAY1, raise_on_error=False)
    assert not result.success and expected in failure_text(result)
    assert ch_query(io, f"SELECT count(), sum(views) FROM {io.database}.channel_daily") == [
        (40, int(channel_daily_frame(DAY1)["views"].sum()))]


# ---- the engine unavailable / the loader dying ---------------------------------------------------------------------------
def _python(code: str, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env, cwd=ROOT)


def test_engine_held_by_another_process_fails_clearly_and_keeps_content(io, chdb_dir):
    frame = channel_daily_frame(DAY1)
    materialize(mart_asset(CH_CHANNEL_DAILY, lambda d: frame), io, DAY1)
    holder = _python(
        """
        import sys, time, clickhouse_connect
        client = clickhouse_connect.get_client(dsn=sys.argv[1])
        print("holding", flush=True)
        time.sleep(120)
        """,
        f"chdb://{chdb_dir}",
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        impatient = ClickHouseWarehouse(url=io.url, database=io.database, lock_timeout=2.0)
        started = time.monotonic()
        result = materialize(mart_asset(CH_CHANNEL_DAILY, lambda d: channel_daily_frame(d, seed=1)), impatient, DAY1,
                             raise_on_error=False)
        waited = time.monotonic() - started
        assert not result.success
        text = failure_text(result)
        assert f"is held by process {holder.pid}" in text and "only one process may open it at a time" in text
        assert 1.0 <= waited < 10  # it waited politely (backoff up to lock_timeout=2 s) before giving up
    finally:
        holder.kill()
        holder.wait()
    assert_same_rows(io.read_frame(as_spec(CH_CHANNEL_DAILY), [DAY1]), frame, ["channel_id"])


def test_waits_for_a_short_holder_then_loads(io, chdb_dir):
    holder = _python(
        """
        import sys, time, clickhouse_connect
        client = clickhouse_connect.get_client(dsn=sys.argv[1])
        print("holding", flush=True)
        time.sleep(2)
        client.close()
        time.sleep(30)
        """,
        f"chdb://{chdb_dir}",
    )
    try:
        assert holder.stdout.readline().strip() == "holding"
        result = materialize(mart_asset(CH_CHANNEL_DAILY, channel_daily_frame), io, DAY1)
        assert output_meta(result, "channel_daily")["dagster/row_count"] == 40
    finally:
        holder.kill()
        holder.wait()


def test_loader_killed_mid_insert_keeps_previous_partition(io, chdb_dir):
    before = sessions_frame(DAY1, 1_000, seed=1)
    spec = as_spec(CH_SESSIONS)
    io.write_frame(spec, before, [DAY1])
    loader = _python(
        """
        import sys
        from tv_platform.engines.clickhouse import ClickHouseWarehouse
        from tv_platform_tests.test_warehouse_units import CH_SESSIONS, as_spec, sessions_frame
        io = ClickHouseWarehouse(url=sys.argv[1], database=sys.argv[2])
        frame = sessions_frame("2023-09-01", 3_000_000, seed=2)
        print("frame ready", flush=True)
        io.write_frame(as_spec(CH_SESSIONS), frame, ["2023-09-01"])
        print("done", flush=True)
        """,
        f"chdb://{chdb_dir}", io.database,
    )
    staging_sql = chdb_dir / "metadata" / io.database
    try:
        assert loader.stdout.readline().strip() == "frame ready"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not list(staging_sql.glob("_staging_sessions_*.sql")):
            time.sleep(0.01)
        assert list(staging_sql.glob("_staging_sessions_*.sql")), "the loader never created its staging table"
        time.sleep(0.2)  # inside the insert
        loader.send_signal(signal.SIGKILL)
        loader.wait()
    finally:
        if loader.poll() is None:
            loader.kill()
            loader.wait()
    assert loader.returncode == -signal.SIGKILL
    # the engine reopens, the partition holds exactly its previous rows
    assert_same_rows(io.read_frame(spec, [DAY1]), before, ["session_id"])
    # and the next load cleans the dead loader's staging table up and succeeds
    after = sessions_frame(DAY1, 2_000, seed=3)
    assert io.write_frame(spec, after, [DAY1])["dagster/row_count"].value == 2_000
    assert ch_query(io, f"SELECT name FROM system.tables WHERE database = '{io.database}'") == [("sessions",)]


def test_rows_outside_the_partition_are_refused(io):
    spec = as_spec(CH_CHANNEL_DAILY)
    with pytest.raises(WarehouseError, match="outside the partition"):
        io.write_frame(spec, channel_daily_frame(DAY2), [DAY1])
    # nothing was created by the refused load
    # nothing was loaded (the table itself is created, empty, before the frame is checked: DbIOManager's order)
    stats = io.partition_stats(spec, [DAY1])
    assert stats["rows"] == 0 and stats["sums"] == {"hours": 0.0, "views": 0.0}


def test_engine_is_released_after_each_operation(io, chdb_dir):
    """Open, load, close: right after a load another process can open the engine."""
    io.write_frame(as_spec(CH_CHANNEL_DAILY), channel_daily_frame(DAY1), [DAY1])
    probe = _python(
        """
        import sys, clickhouse_connect
        client = clickhouse_connect.get_client(dsn=sys.argv[1])
        print(client.command(f"SELECT count() FROM {sys.argv[2]}.channel_daily"), flush=True)
        client.close()
        """,
        f"chdb://{chdb_dir}", io.database,
    )
    assert probe.stdout.readline().strip() == "40"
    assert probe.wait(timeout=60) == 0
