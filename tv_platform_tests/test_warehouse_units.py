"""Warehouse IO managers without services: DDL text (Greenplum dialect on/off, ClickHouse MergeTree), identifier and
type validation, the pandas -> Arrow conversion of declared types. Also the frame builders the service tests share."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tv_platform.engines.clickhouse import ClickHouseWarehouse, create_table_sql as ch_create_table_sql, parse_ch_type
from tv_platform.engines.greenplum import _ArrowCsvStream, create_table_sql, parse_pg_type
from tv_platform.engines.warehouse import (
    TableSpec,
    WarehouseError,
    check_identifier,
    check_rows_in_partitions,
    conform_arrow,
    table_metadata,
)

# ---- tables and frames shared by the service tests -------------------------------------------------------------------
# A test table in short: {"table", "columns": {name: type}, "partition_expr", "sum_columns", "distributed_by",
# "order_by"}; to_metadata() makes it the asset metadata a mart declares, as_spec() the TableSpec the engines read.
def to_metadata(meta: dict) -> dict:
    return table_metadata(meta["columns"], partition_expr=meta.get("partition_expr"),
                          sum_columns=meta.get("sum_columns", ()), distributed_by=meta.get("distributed_by", ()),
                          order_by=meta.get("order_by", ()))


def as_spec(meta: dict) -> TableSpec:
    return TableSpec.from_metadata(meta["table"], to_metadata(meta))


#: channel names that exercise CSV quoting and encodings: quotes, commas, a newline, Cyrillic, empty string, NULL
TRICKY_NAMES = ["Первый канал", 'Канал "Дом", кино', "line\nbreak", "", None, "Россия 1", "back\\slash", "ТНТ"]

GP_CHANNEL_DAILY = {
    "table": "channel_daily",
    "columns": {
        "dt": "date not null", "channel_id": "integer not null", "channel_name": "text",
        "views": "bigint not null", "viewers": "integer not null", "hours": "double precision not null",
        "share": "double precision",
    },
    "partition_expr": "dt",
    "distributed_by": ["channel_id"],
    "sum_columns": ["hours", "views"],
}

CH_CHANNEL_DAILY = {
    "table": "channel_daily",
    "columns": {
        "dt": "Date", "channel_id": "UInt16", "channel_name": "LowCardinality(Nullable(String))",
        "views": "UInt32", "viewers": "UInt32", "hours": "Float64", "share": "Nullable(Float64)",
    },
    "partition_expr": "dt",
    "order_by": ["channel_id"],
    "sum_columns": ["hours", "views"],
}


def channel_daily_frame(day: str, channels: int = 40, seed: int = 0) -> pd.DataFrame:
    """A hand-made daily channel aggregate, ``dt`` as the lake's string partition column."""
    rng = np.random.default_rng(seed + int(day.replace("-", "")))
    views = rng.integers(1, 5_000, channels)
    share = rng.random(channels)
    share[::7] = np.nan
    return pd.DataFrame({
        "dt": day,
        "channel_id": np.arange(1, channels + 1, dtype="int64"),
        "channel_name": [TRICKY_NAMES[i % len(TRICKY_NAMES)] for i in range(channels)],
        "views": views,
        "viewers": (views * rng.uniform(0.3, 0.9, channels)).astype("int64"),
        "hours": (views * rng.gamma(2.0, 0.8, channels)).round(6),
        "share": share,
    })


GP_SESSIONS = {
    "table": "sessions",
    "columns": {
        "dt": "date not null", "session_id": "text not null", "user_id": "bigint not null", "channel_name": "text not null",
        "start": "timestamp not null", "end": "timestamp not null", "duration_min": "double precision not null",
    },
    "partition_expr": "dt",
    "distributed_by": ["session_id"],
    "sum_columns": ["duration_min"],
}

CH_SESSIONS = {
    "table": "sessions",
    "columns": {
        "dt": "Date", "session_id": "String", "user_id": "UInt32", "channel_name": "LowCardinality(String)",
        "start": "DateTime('UTC')", "end": "DateTime('UTC')", "duration_min": "Float64",
    },
    "partition_expr": "dt",
    "order_by": ["channel_name", "start"],
    "sum_columns": ["duration_min"],
}


def sessions_frame(day: str, n: int, seed: int = 0) -> pd.DataFrame:
    """A sessions-mart-like frame: n sessions starting on ``day`` (some end after midnight)."""
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    minutes = np.minimum(rng.gamma(1.5, 60.0, n), 600).round(0)
    names = np.array([f"Канал {i}" for i in range(148)], dtype=object)
    return pd.DataFrame({
        "dt": day,
        "session_id": pd.Series(rng.integers(0, 2**63 - 1, n, dtype="int64")).map("{:032x}".format),
        "user_id": rng.integers(1, 10_000, n),
        "channel_name": names[rng.integers(0, 148, n)],
        "start": start.astype("datetime64[s]"),
        "end": (start + pd.to_timedelta(minutes, unit="m")).astype("datetime64[s]"),
        "duration_min": minutes,
    })


def assert_same_rows(actual: pd.DataFrame, expected: pd.DataFrame, key: list[str]) -> None:
    """Same rows (order-insensitive) after normalising dtypes: dates/timestamps as datetime64, NULLs as None."""
    def norm(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        for c in out.columns:
            if c == "dt":
                out[c] = pd.to_datetime(out[c]).astype("datetime64[s]")
            elif c in ("start", "end"):
                out[c] = pd.to_datetime(out[c]).astype("datetime64[s]")
            elif out[c].dtype.kind in "iu" or str(out[c].dtype) in ("Int64", "Int32", "UInt32", "UInt16"):
                out[c] = out[c].astype("float64")
            elif out[c].dtype.kind != "f":
                out[c] = out[c].astype(object).where(out[c].notna(), None)
        return out.sort_values(key).reset_index(drop=True)

    pd.testing.assert_frame_equal(norm(actual)[list(expected.columns)], norm(expected), check_dtype=False)


# ---- Greenplum DDL ------------------------------------------------------------------------------------------------------
def test_greenplum_dialect_emits_distributed_by():
    spec = as_spec(GP_CHANNEL_DAILY)
    ddl = create_table_sql("tv_marts", spec, dialect="greenplum")
    assert ddl.startswith('CREATE TABLE IF NOT EXISTS "tv_marts"."channel_daily" (')
    assert ddl.rstrip().endswith('DISTRIBUTED BY ("channel_id")')
    assert '"dt" date NOT NULL' in ddl and '"share" double precision,' not in ddl  # the last column has no comma
    assert '"share" double precision\n)' in ddl
    assert '"channel_name" text,' in ddl


def test_greenplum_ddl_without_key_and_postgres_dialect():
    spec = as_spec({**GP_CHANNEL_DAILY, "distributed_by": []})
    assert create_table_sql("s", spec, dialect="greenplum").endswith("DISTRIBUTED RANDOMLY")
    plain = create_table_sql("s", as_spec(GP_CHANNEL_DAILY), dialect="postgres")
    assert "DISTRIBUTED" not in plain
    # a composite key keeps its order
    multi = as_spec({**GP_CHANNEL_DAILY, "distributed_by": ["dt", "channel_id"]})
    assert create_table_sql("s", multi, dialect="greenplum").endswith('DISTRIBUTED BY ("dt", "channel_id")')
    with pytest.raises(WarehouseError, match="dialect"):
        create_table_sql("s", multi, dialect="oracle")


@pytest.mark.parametrize("bad", ["x; drop table t", 'a"b', "Name", "1abc", "a-b", "", "a" * 64, "tab le", "t`x"])
def test_identifiers_are_validated(bad):
    with pytest.raises(WarehouseError, match="invalid"):
        check_identifier(bad)
    with pytest.raises(WarehouseError):
        as_spec({"table": "ok", "columns": {bad: "text"}})
    with pytest.raises(WarehouseError):
        as_spec({"table": bad, "columns": {"a": "text"}})


def test_declared_keys_must_be_columns():
    with pytest.raises(WarehouseError, match="'nope' is used as a key"):
        as_spec({**GP_CHANNEL_DAILY, "distributed_by": ["nope"]})
    with pytest.raises(WarehouseError, match="no 'dagster/column_schema' metadata"):
        TableSpec.from_metadata("t", {})


def test_pg_types_allow_list():
    assert parse_pg_type("a", "TIMESTAMP").type == "timestamp without time zone"
    assert parse_pg_type("a", "int not null").nullable is False
    assert parse_pg_type("a", "varchar(20)").type == "character varying(20)"
    for bad in ["text); drop table x; --", "money", "integer[]", "text default 'x'"]:
        with pytest.raises(WarehouseError, match="not supported"):
            parse_pg_type("a", bad)


# ---- ClickHouse DDL ------------------------------------------------------------------------------------------------------
def test_clickhouse_mergetree_ddl():
    spec = as_spec(CH_SESSIONS)
    ddl = ch_create_table_sql("tv_marts", spec)
    assert "ENGINE = MergeTree\nPARTITION BY `dt`\nORDER BY (`channel_name`, `start`)" in ddl
    assert "`channel_name` LowCardinality(String)" in ddl and "`start` DateTime('UTC')" in ddl
    nullable_key = as_spec({**CH_CHANNEL_DAILY, "order_by": ["share"]})
    with pytest.raises(WarehouseError, match="Nullable"):
        ch_create_table_sql("db", nullable_key)


def test_clickhouse_types_allow_list():
    assert parse_ch_type("a", "LowCardinality(Nullable(String))").nullable is True
    assert parse_ch_type("a", "DateTime64(3, 'UTC')").kind == "timestamp_ms"
    assert parse_ch_type("a", "Nullable(UInt32)").type == "Nullable(UInt32)"
    for bad in ["String) ENGINE = Log; --", "Array(String)", "LowCardinality(UInt32)", "Nullable(Nullable(String))",
                "DateTime('UTC'); drop"]:
        with pytest.raises(WarehouseError, match="not supported"):
            parse_ch_type("a", bad)


def test_clickhouse_http_server_unreachable_is_a_clear_error():
    io = ClickHouseWarehouse(url="http://127.0.0.1:1", database="tv_marts")
    with pytest.raises(WarehouseError, match=r"ClickHouse http://127\.0\.0\.1:1 is unreachable"):
        io.partition_stats(as_spec(CH_CHANNEL_DAILY), ["2023-09-01"])


# ---- conversion of declared types ------------------------------------------------------------------------------------
def _pg_cols(meta):
    return [parse_pg_type(n, t) for n, t in meta["columns"].items()]


def test_conform_casts_safely_and_names_the_column():
    frame = channel_daily_frame("2023-09-01")
    table = conform_arrow(frame, _pg_cols(GP_CHANNEL_DAILY), "t")
    assert table.schema.field("dt").type == pa.date32() and table.schema.field("channel_id").type == pa.int32()
    assert table.column("share").null_count == int(frame["share"].isna().sum())
    assert table.column("channel_name").to_pylist()[:5] == TRICKY_NAMES[:5]

    with pytest.raises(WarehouseError, match=r"\['surprise'\] that the asset does not declare"):
        conform_arrow(frame.assign(surprise=1), _pg_cols(GP_CHANNEL_DAILY), "t")
    with pytest.raises(WarehouseError, match=r"lacks declared column\(s\) \['share'\]"):
        conform_arrow(frame.drop(columns="share"), _pg_cols(GP_CHANNEL_DAILY), "t")
    with pytest.raises(WarehouseError, match="column 'views'.*cannot be stored as bigint"):
        conform_arrow(frame.assign(views=frame["views"] + 0.5), _pg_cols(GP_CHANNEL_DAILY), "t")
    with pytest.raises(WarehouseError, match="'hours' is declared NOT NULL but has 1 null"):
        conform_arrow(frame.assign(hours=frame["hours"].where(frame.index != 3)), _pg_cols(GP_CHANNEL_DAILY), "t")
    ch_cols = [parse_ch_type(n, t) for n, t in CH_CHANNEL_DAILY["columns"].items()]
    with pytest.raises(WarehouseError, match="column 'views'.*UInt32"):
        conform_arrow(frame.assign(views=-frame["views"]), ch_cols, "t")
    with pytest.raises(WarehouseError, match="time-zone-aware"):
        conform_arrow(sessions_frame("2023-09-01", 3).assign(start=lambda f: f["start"].dt.tz_localize("UTC")),
                      _pg_cols(GP_SESSIONS), "t")


def test_rows_outside_the_partition_are_refused():
    table = conform_arrow(pd.concat([channel_daily_frame("2023-09-01", 3), channel_daily_frame("2023-09-02", 2)]),
                          _pg_cols(GP_CHANNEL_DAILY), "t")
    with pytest.raises(WarehouseError, match=r"2 row\(s\) have dt outside .*2023-09-02"):
        check_rows_in_partitions(table, _pg_cols(GP_CHANNEL_DAILY)[0], ["2023-09-01"], "t")
    check_rows_in_partitions(table, _pg_cols(GP_CHANNEL_DAILY)[0], ["2023-09-01", "2023-09-02"], "t")


def test_csv_stream_renders_null_and_empty_differently():
    frame = channel_daily_frame("2023-09-01", channels=8)
    stream = _ArrowCsvStream(conform_arrow(frame, _pg_cols(GP_CHANNEL_DAILY), "t"), batch_rows=3)
    chunks = []
    while chunk := stream.read(7):  # tiny reads cross batch boundaries
        chunks.append(chunk)
    text = b"".join(chunks).decode()
    assert ',"",' in text  # the empty name: quoted
    assert ",," in text  # the NULL name: an unquoted empty field
    assert '"Канал ""Дом"", кино"' in text and '"line\nbreak"' in text
    assert len(pd.read_csv(pd.io.common.StringIO(text), header=None)) == 8


def test_clickhouse_messages_never_show_credentials():
    io = ClickHouseWarehouse(url="http://loader:s3cret@127.0.0.1:1", database="tv_marts")
    with pytest.raises(WarehouseError) as info:
        io.partition_stats(as_spec(CH_CHANNEL_DAILY), ["2023-09-01"])
    assert "s3cret" not in str(info.value) and "http://127.0.0.1:1" in str(info.value)
