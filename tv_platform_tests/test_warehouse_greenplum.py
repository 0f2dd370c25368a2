"""The Greenplum IO manager on the stack's real PostgreSQL (dialect off): load, reload without duplicates, schema
evolution, roles, and a load killed mid-COPY that leaves the partition's previous rows intact."""

import socket
import threading
import time

import dagster as dg
import psycopg2
import pytest

from tv_platform.engines.greenplum import GreenplumIOManager, GreenplumWarehouse
from tv_platform.engines.warehouse import WarehouseError
from tv_platform.stack.postgres import PostgresService
from tv_platform_tests.test_warehouse_units import (
    GP_CHANNEL_DAILY,
    GP_SESSIONS,
    as_spec,
    assert_same_rows,
    channel_daily_frame,
    sessions_frame,
    to_metadata,
)

pytestmark = pytest.mark.services

DAILY = dg.DailyPartitionsDefinition(start_date="2023-09-01")
DAY1, DAY2 = "2023-09-01", "2023-09-02"


@pytest.fixture
def admin(stack):
    conn = PostgresService(stack).admin_connect(stack.gp_database)
    conn.autocommit = True
    yield conn
    conn.close()


@pytest.fixture
def schema(stack, admin, unique):
    """A schema of this test only, owned by the loader role (which may not create schemas itself)."""
    name = f"test_marts_{unique}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{name}" AUTHORIZATION "{stack.gp_loader_user}"')
    yield name
    with admin.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def make_io(stack, schema: str, unique: str, **overrides) -> GreenplumWarehouse:
    config = dict(
        host=stack.gp_host, port=stack.gp_port, database=stack.gp_database, schema_name=schema,
        user=stack.gp_loader_user, password=stack.gp_loader_password, reader_role=stack.gp_reader_user,
        application_name=f"tvp_test_{unique}",
    )
    return GreenplumWarehouse(**{**config, **overrides})


def mart_asset(meta: dict, make_frame):
    @dg.asset(key=["greenplum", meta["table"]], partitions_def=DAILY, io_manager_key="greenplum_io_manager",
              metadata=to_metadata(meta))
    def mart(context: dg.AssetExecutionContext):
        return make_frame(context.partition_key)

    return mart


def materialize(asset, io, day, **kwargs):
    return dg.materialize([asset], partition_key=day, resources={"greenplum_io_manager": GreenplumIOManager(warehouse=io)},
                          **kwargs)


def output_meta(result, table: str) -> dict:
    (mat,) = result.asset_materializations_for_node(f"greenplum__{table}")
    return {k: v.value for k, v in mat.metadata.items()}


def failure_text(result) -> str:
    return "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)


def query(stack, sql: str, role: str = "loader"):
    conn = psycopg2.connect(stack.gp_dsn(role))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


# ---- load, reload ------------------------------------------------------------------------------------------------------
def test_load_reload_no_duplicates_and_values(stack, schema, unique):
    io = make_io(stack, schema, unique)
    frames = {d: channel_daily_frame(d) for d in (DAY1, DAY2)}
    asset = mart_asset(GP_CHANNEL_DAILY, lambda d: frames[d])

    first = materialize(asset, io, DAY1)
    meta = output_meta(first, "channel_daily")
    expected = frames[DAY1]
    assert meta["dagster/row_count"] == len(expected) == 40
    assert meta["sum_hours"] == pytest.approx(expected["hours"].sum(), rel=1e-12)
    assert meta["sum_views"] == expected["views"].sum()
    assert meta["rows_per_second"] > 0 and "created table" in meta["ddl"]

    materialize(asset, io, DAY2)
    again = materialize(asset, io, DAY1)  # reload: the partition is replaced, never appended to
    assert output_meta(again, "channel_daily")["deleted_rows"] == 40
    counts = dict(query(stack, f'SELECT dt::text, count(*) FROM "{schema}".channel_daily GROUP BY dt'))
    assert counts == {DAY1: 40, DAY2: 40}

    spec = as_spec(GP_CHANNEL_DAILY)
    back = io.read_frame(spec, [DAY1])
    assert_same_rows(back, expected, ["channel_id"])  # incl. '' vs NULL, quotes, newline, Cyrillic
    assert back["channel_name"].tolist().count("") == expected["channel_name"].tolist().count("")
    assert back["share"].isna().sum() == expected["share"].isna().sum()
    # independent pandas aggregate == SQL aggregate over the warehouse
    (sql_hours, sql_views), = query(stack, f"SELECT sum(hours), sum(views) FROM \"{schema}\".channel_daily WHERE dt = '{DAY1}'")
    assert sql_hours == pytest.approx(expected["hours"].sum(), rel=1e-12) and int(sql_views) == int(expected["views"].sum())


def test_load_input_reads_the_partition_back(stack, schema, unique):
    io = make_io(stack, schema, unique)
    frames = {d: channel_daily_frame(d, seed=5) for d in (DAY1, DAY2)}
    upstream = mart_asset(GP_CHANNEL_DAILY, lambda d: frames[d])
    seen = {}

    @dg.asset(partitions_def=DAILY, ins={"mart": dg.AssetIn(key=["greenplum", "channel_daily"])})
    def consumer(mart):
        seen["frame"] = mart
        return None

    for day in (DAY1, DAY2):
        materialize(upstream, io, day)
    dg.materialize([upstream, consumer], partition_key=DAY2, resources={"greenplum_io_manager": GreenplumIOManager(warehouse=io)},
                   selection=[consumer.key])
    assert_same_rows(seen["frame"], frames[DAY2], ["channel_id"])
    assert str(seen["frame"]["dt"].dtype) == "datetime64[s]" and seen["frame"]["channel_id"].dtype == "int32"


def test_unpartitioned_asset_is_replaced_whole(stack, schema, unique):
    """An unpartitioned asset (no partition_column, no partitions): every materialization replaces the table whole —
    DELETE of every row and COPY in one transaction — so a smaller second frame leaves nothing of the first."""
    io = make_io(stack, schema, unique)
    meta = {k: v for k, v in GP_CHANNEL_DAILY.items() if k != "partition_expr"}
    frames = [channel_daily_frame(DAY1, seed=1), channel_daily_frame(DAY2, seed=2).iloc[:7]]
    calls = iter(frames)

    @dg.asset(key=["greenplum", meta["table"]], io_manager_key="greenplum_io_manager", metadata=to_metadata(meta))
    def whole():
        return next(calls)

    first = dg.materialize([whole], resources={"greenplum_io_manager": GreenplumIOManager(warehouse=io)})
    assert output_meta(first, "channel_daily")["dagster/row_count"] == 40 and "partitions" not in output_meta(first, "channel_daily")
    second = dg.materialize([whole], resources={"greenplum_io_manager": GreenplumIOManager(warehouse=io)})
    out = output_meta(second, "channel_daily")
    assert out["dagster/row_count"] == 7 and out["deleted_rows"] == 40
    assert query(stack, f'SELECT dt::text, count(*), sum(hours) FROM "{schema}".channel_daily GROUP BY dt',
                 role="reader") == [(DAY2, 7, pytest.approx(frames[1]["hours"].sum(), rel=1e-12))]
    spec = as_spec(meta)
    assert_same_rows(io.read_frame(spec, None), frames[1], ["channel_id"])
    assert io.partition_stats(spec, None)["rows"] == 7


def test_reader_role_reads_but_cannot_write(stack, schema, unique):
    materialize(mart_asset(GP_CHANNEL_DAILY, channel_daily_frame), make_io(stack, schema, unique), DAY1)
    assert query(stack, f'SELECT count(*) FROM "{schema}".channel_daily', role="reader") == [(40,)]
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        query(stack, f'DELETE FROM "{schema}".channel_daily', role="reader")


def test_default_privileges_cover_the_marts_schema(stack, unique):
    """In the stack's own schema, ALTER DEFAULT PRIVILEGES already gives the reader SELECT (no explicit GRANT)."""
    table = f"test_defaults_{unique}"
    io = make_io(stack, stack.gp_schema, unique, reader_role="")
    try:
        materialize(mart_asset({**GP_CHANNEL_DAILY, "table": table}, channel_daily_frame), io, DAY1)
        assert query(stack, f"SELECT has_table_privilege('{stack.gp_reader_user}', '{stack.gp_schema}.{table}', 'SELECT')") == [(True,)]
        assert query(stack, f"SELECT count(*) FROM {stack.gp_schema}.{table}", role="reader") == [(40,)]
    finally:
        query(stack, f"DROP TABLE IF EXISTS {stack.gp_schema}.{table}; SELECT 1")


def test_loader_cannot_create_a_missing_schema_clear_error(stack, unique):
    io = make_io(stack, f"test_missing_{unique}", unique)
    result = materialize(mart_asset(GP_CHANNEL_DAILY, channel_daily_frame), io, DAY1, raise_on_error=False)
    assert not result.success
    assert f"schema test_missing_{unique} does not exist" in failure_text(result)
    assert f"AUTHORIZATION {stack.gp_loader_user}" in failure_text(result)


# ---- schema evolution --------------------------------------------------------------------------------------------------
def test_new_nullable_column_is_added(stack, schema, unique):
    io = make_io(stack, schema, unique)
    materialize(mart_asset(GP_CHANNEL_DAILY, channel_daily_frame), io, DAY1)

    wider = {**GP_CHANNEL_DAILY, "columns": {**GP_CHANNEL_DAILY["columns"], "avg_minutes": "double precision"}}
    frame2 = channel_daily_frame(DAY2).assign(avg_minutes=lambda f: f["hours"] * 60 / f["views"])
    result = materialize(mart_asset(wider, lambda d: frame2), io, DAY2)
    assert "added column avg_minutes double precision" in output_meta(result, "channel_daily")["ddl"]

    rows = dict(query(stack, f'SELECT dt::text, count(avg_minutes) FROM "{schema}".channel_daily GROUP BY dt'))
    assert rows == {DAY1: 0, DAY2: 40}  # earlier rows read NULL, new ones have the values
    back = io.read_frame(as_spec(wider), [DAY2])
    assert back.sort_values("channel_id")["avg_minutes"].to_numpy() == pytest.approx(frame2["avg_minutes"].to_numpy())


@pytest.mark.parametrize("case", ["not_null", "switched_off", "undeclared_in_frame", "type_changed", "dropped"])
def test_column_changes_rejected_with_clear_message(stack, schema, unique, case):
    io = make_io(stack, schema, unique)
    materialize(mart_asset(GP_CHANNEL_DAILY, channel_daily_frame), io, DAY1)
    cols = GP_CHANNEL_DAILY["columns"]
    frame = channel_daily_frame(DAY1, seed=9)
    meta, expected = GP_CHANNEL_DAILY, None
    if case == "not_null":
        meta = {**GP_CHANNEL_DAILY, "columns": {**cols, "rank": "integer not null"}}
        frame = frame.assign(rank=1)
        expected = "lacks the declared column 'rank' (integer NOT NULL)"
    elif case == "switched_off":
        meta = {**GP_CHANNEL_DAILY, "columns": {**cols, "rank": "integer"}}
        frame = frame.assign(rank=1)
        io = make_io(stack, schema, unique, allow_add_columns=False)
        expected = "adding columns is switched off"
    elif case == "undeclared_in_frame":
        frame = frame.assign(rank=1)
        expected = "the frame has column(s) ['rank'] that the asset does not declare"
    elif case == "type_changed":
        meta = {**GP_CHANNEL_DAILY, "columns": {**cols, "viewers": "bigint not null"}}
        expected = "column 'viewers' of"
    else:
        meta = {**GP_CHANNEL_DAILY, "columns": {k: v for k, v in cols.items() if k != "share"}}
        frame = frame.drop(columns="share")
        expected = "has column(s) ['share'] that the asset no longer declares"
    result = materialize(mart_asset(meta, lambda d: frame), io, DAY1, raise_on_error=False)
    assert not result.success
    assert expected in failure_text(result)
    # nothing changed
    assert query(stack, f'SELECT count(*), sum(views) FROM "{schema}".channel_daily') == [
        (40, int(channel_daily_frame(DAY1)["views"].sum()))
    ]


# ---- failures mid-load ---------------------------------------------------------------------------------------------------
def _kill_copy_of(admin, application_name: str, done: threading.Event, killed: list) -> None:
    deadline = time.monotonic() + 120
    with admin.cursor() as cur:
        while not done.is_set() and time.monotonic() < deadline:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' "
                "AND query ILIKE 'COPY%%'", (application_name,),
            )
            row = cur.fetchone()
            if row:
                time.sleep(0.3)  # let some rows arrive first
                cur.execute("SELECT pg_terminate_backend(%s)", (row[0],))
                killed.append(row[0])
                return
            time.sleep(0.02)


def test_backend_killed_during_copy_keeps_previous_rows(stack, schema, admin, unique):
    io = make_io(stack, schema, unique)
    before = sessions_frame(DAY1, 500, seed=1)
    materialize(mart_asset(GP_SESSIONS, lambda d: before), io, DAY1)

    big = sessions_frame(DAY1, 1_500_000, seed=2)
    done, killed = threading.Event(), []
    watcher = threading.Thread(target=_kill_copy_of, args=(admin, f"tvp_test_{unique}", done, killed))
    watcher.start()
    try:
        result = materialize(mart_asset(GP_SESSIONS, lambda d: big), io, DAY1, raise_on_error=False)
    finally:
        done.set()
        watcher.join()
    assert killed, "the COPY was never seen running"
    assert not result.success
    text = failure_text(result)
    assert "loading partition(s) ['2023-09-01'] failed while COPY" in text
    assert "the connection was lost" in text and "previous content is intact" in text
    back = io.read_frame(as_spec(GP_SESSIONS), [DAY1])
    assert_same_rows(back, before, ["session_id"])

    # and the next run loads normally
    small = sessions_frame(DAY1, 800, seed=3)
    assert output_meta(materialize(mart_asset(GP_SESSIONS, lambda d: small), io, DAY1), "sessions")["dagster/row_count"] == 800


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_warehouse_fails_clearly_and_keeps_rows(stack, schema, unique):
    io = make_io(stack, schema, unique)
    materialize(mart_asset(GP_CHANNEL_DAILY, channel_daily_frame), io, DAY1)
    port = _closed_port()
    dead = make_io(stack, schema, unique, port=port, connect_timeout=3)
    result = materialize(mart_asset(GP_CHANNEL_DAILY, lambda d: channel_daily_frame(d, seed=7)), dead, DAY1,
                         raise_on_error=False)
    assert not result.success
    assert f"Greenplum 127.0.0.1:{port}/{stack.gp_database} is unreachable as {stack.gp_loader_user}" in failure_text(result)
    assert stack.gp_loader_password not in failure_text(result).replace(f"as {stack.gp_loader_user}", "")
    back = io.read_frame(as_spec(GP_CHANNEL_DAILY), [DAY1])
    assert_same_rows(back, channel_daily_frame(DAY1), ["channel_id"])


def test_bad_value_rolls_back_whole_partition(stack, schema, unique):
    """A row the warehouse refuses (varchar too long) aborts the COPY: the DELETE is rolled back with it."""
    meta = {**GP_CHANNEL_DAILY, "columns": {**GP_CHANNEL_DAILY["columns"], "channel_name": "varchar(12)"}}
    io = make_io(stack, schema, unique)
    short = channel_daily_frame(DAY1).assign(channel_name="short")
    materialize(mart_asset(meta, lambda d: short), io, DAY1)
    long = short.assign(channel_name=["x" * (5 if i < 39 else 50) for i in range(40)])
    result = materialize(mart_asset(meta, lambda d: long), io, DAY1, raise_on_error=False)
    assert not result.success
    assert "the warehouse refused it" in failure_text(result) and "value too long" in failure_text(result)
    assert query(stack, f'SELECT count(*), min(channel_name) FROM "{schema}".channel_daily') == [(40, "short")]


def test_direct_write_errors_are_warehouse_errors(stack, schema, unique):
    io = make_io(stack, schema, unique)
    spec = as_spec(GP_CHANNEL_DAILY)
    with pytest.raises(WarehouseError, match="outside the partition"):
        io.write_frame(spec, channel_daily_frame(DAY2), [DAY1])
    io.write_frame(spec, channel_daily_frame(DAY1).iloc[:0], [DAY1])  # an empty day is a valid (empty) partition
    assert io.partition_stats(spec, [DAY1]) == {"rows": 0, "sums": {"hours": 0.0, "views": 0.0}, "table_exists": True}


def test_concurrent_loads_of_one_partition_never_duplicate(stack, schema, unique):
    """Two runs replacing the same day at once: the advisory lock queues the second, which then replaces the first."""
    io = make_io(stack, schema, unique)
    spec = as_spec(GP_SESSIONS)
    io.write_frame(spec, sessions_frame(DAY1, 10, seed=0), [DAY1])
    frames = [sessions_frame(DAY1, 200_000, seed=1), sessions_frame(DAY1, 150_000, seed=2)]
    errors = []

    def load(frame):
        try:
            io.write_frame(spec, frame, [DAY1])
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(f,)) for f in frames]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = io.partition_stats(spec, [DAY1])["rows"]
    assert rows in (200_000, 150_000)  # one of the two, never both
