"""What the two warehouse IO managers share, on Dagster's database IO manager (``DbIOManager``).

Each warehouse is three pieces, as in Dagster's own integrations (dagster-duckdb, dagster-snowflake, dagster-clickhouse):

* a **resource** (``GreenplumWarehouse``, ``ClickHouseWarehouse``) — the connection settings and ``session()``, the one
  way to talk to the warehouse. The IO manager opens its sessions through it, and so do the marts' checks
  (``partition_stats``), notebooks and tests (``write_frame``/``read_frame``), never through an IO manager;
* a **DbClient** (:class:`WarehouseDbClient`, one class for both): connect (a session), ensure schema *and table* exist
  (``ensure_schema_exists``), delete the slice being replaced (``delete_table_slice``), build the select;
* one **type handler** for pandas (:class:`PandasTypeHandler`, shared by both): a frame is conformed to an Arrow table
  of exactly the declared types and handed to the session, which loads it its own way; reads come back as pandas
  with stable dtypes.

``DbIOManager`` drives them: ``connect → ensure_schema_exists → delete_table_slice → handler.handle_output``, all in one
session — for Greenplum one transaction (lock + DELETE + COPY, committed when the session closes), for ClickHouse a
staging table swapped in with ``REPLACE PARTITION`` (the delete is part of the swap, so it is a no-op there).

What a mart declares (asset metadata, the conventions of Dagster's warehouse IO managers)::

    dagster/column_schema  TableSchema: every column with the warehouse's type, e.g. TableColumn("dt", "date not null")
    partition_expr         the column a daily partition selects (``dt``); required on partitioned assets
    sum_columns            numeric columns summed into the output metadata (what the consistency checks compare)
    distributed_by         Greenplum's distribution key        order_by   ClickHouse's sorting key

The table is the last component of the asset key, the schema (ClickHouse: database) the IO manager's ``schema``
(or the asset's ``schema`` metadata). ``columns`` on an ``AssetIn``'s metadata selects the columns a downstream asset
reads. Output metadata: ``dagster/row_count``, ``dagster/table_name``, ``sum_<column>``, the load's timing and DDL.
"""

from __future__ import annotations

import re
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Iterable, Iterator, Optional, Sequence

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dagster._core.storage.db_io_manager import DbClient, DbIOManager, DbTypeHandler, TableSlice

from tv_platform.engines.metadata import declare, declared_columns, raw


# ---- identifiers and partitions ---------------------------------------------------------------------------------------
class WarehouseError(RuntimeError):
    """A load or read of a warehouse failed; the message says what, where, and what state the target is in."""


IDENTIFIER_RE = re.compile(r"^[a-z_][a-z0-9_]*$")
MAX_IDENTIFIER = 63  # PostgreSQL's NAMEDATALEN - 1; ClickHouse allows more, the same rule keeps both happy
PARTITION_KEY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def check_identifier(name: Any, what: str = "identifier") -> str:
    """``name`` if it is a plain lower-case SQL identifier (letters, digits, underscores; not starting with a digit; at
    most 63 characters). Quoting is never used to smuggle anything else in: such names are refused."""
    if not isinstance(name, str) or not IDENTIFIER_RE.match(name) or len(name) > MAX_IDENTIFIER:
        raise WarehouseError(
            f"invalid {what} {name!r}: use lower-case letters, digits and underscores, starting with a letter or "
            f"underscore, at most {MAX_IDENTIFIER} characters"
        )
    return name


def check_partition_keys(keys: Iterable[str]) -> list[str]:
    out = []
    for key in keys:
        if not isinstance(key, str) or not PARTITION_KEY_RE.match(key):
            raise WarehouseError(f"partition key {key!r} is not a YYYY-MM-DD day")
        out.append(key)
    return sorted(set(out))


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def table_metadata(columns: dict[str, str], *, partition_expr: Optional[str] = None, sum_columns: Sequence[str] = (),
                   distributed_by: Sequence[str] = (), order_by: Sequence[str] = (),
                   descriptions: Optional[dict[str, str]] = None) -> dict[str, Any]:
    """The asset metadata declaring a warehouse table (:func:`tv_platform.engines.metadata.declare`: {name: warehouse
    type} as ``dagster/column_schema``, the partition expression, the sums) and its keys."""
    meta = declare(columns, partition_expr=partition_expr, sum_columns=sum_columns, descriptions=descriptions)
    if distributed_by:
        meta["distributed_by"] = list(distributed_by)
    if order_by:
        meta["order_by"] = list(order_by)
    return meta


@dataclass(frozen=True)
class TableSpec:
    """The declared layout of one mart table (from the asset's metadata, see :func:`table_metadata`)."""

    name: str
    columns: dict[str, str]
    partition_expr: Optional[str] = None
    sum_columns: tuple[str, ...] = ()
    distributed_by: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()

    @classmethod
    def from_metadata(cls, table: str, metadata: Optional[dict]) -> "TableSpec":
        meta = {k: raw(v) for k, v in (metadata or {}).items()}
        declared = declared_columns(meta)
        if not declared:
            raise WarehouseError(f"{table}: the asset declares no 'dagster/column_schema' metadata (its columns and "
                                 "their warehouse types)")
        spec = cls(
            name=check_identifier(table, "table name"),
            columns={check_identifier(c, f"column name of {table}"): t for c, t in declared.items()},
            partition_expr=meta.get("partition_expr") or None,
            sum_columns=tuple(meta.get("sum_columns") or ()),
            distributed_by=tuple(_as_list(meta.get("distributed_by"))),
            order_by=tuple(_as_list(meta.get("order_by"))),
        )
        for col in [spec.partition_expr, *spec.sum_columns, *spec.distributed_by, *spec.order_by]:
            if col is not None and col not in spec.columns:
                raise WarehouseError(f"{table}: {col!r} is used as a key or sum but is not among the declared columns")
        return spec


def slice_days(table_slice: TableSlice) -> Optional[list[str]]:
    """The days a table slice addresses (None: the whole, unpartitioned table). Daily time windows become their days."""
    dims = table_slice.partition_dimensions or []
    if not dims:
        return None
    if len(dims) > 1:
        raise WarehouseError(f"{table_slice.table}: the marts are partitioned by one daily dimension, got {len(dims)}")
    parts = dims[0].partitions
    if isinstance(parts, dg.TimeWindow):
        first, end = parts.start.date(), parts.end.date()
        return [(first + timedelta(days=i)).isoformat() for i in range((end - first).days)]
    return check_partition_keys(parts)


# ---- pandas -> Arrow of exactly the declared types ------------------------------------------------------------------
#: logical kinds the two warehouses' types map to, and their Arrow type
ARROW_TYPES: dict[str, pa.DataType] = {
    "int8": pa.int8(), "int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(),
    "uint8": pa.uint8(), "uint16": pa.uint16(), "uint32": pa.uint32(), "uint64": pa.uint64(),
    "float32": pa.float32(), "float64": pa.float64(),
    "string": pa.large_string(), "bool": pa.bool_(), "date": pa.date32(),
    "timestamp_s": pa.timestamp("s"), "timestamp_ms": pa.timestamp("ms"), "timestamp_us": pa.timestamp("us"),
    "timestamp_ns": pa.timestamp("ns"),
}
_PANDAS_INT = {k: k for k in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")}
_PANDAS_NULLABLE_INT = {k: ("U" + k[1:].capitalize() if k.startswith("u") else k.capitalize()) for k in _PANDAS_INT}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the warehouse's canonical spelling of the declared type
    kind: str  # key of ARROW_TYPES
    nullable: bool


def conform_arrow(frame: Any, columns: Sequence[Column], what: str) -> pa.Table:
    """The frame as an Arrow table with exactly the declared columns, in order, cast *safely* to the declared types
    (no silent truncation, overflow or sign change); a WarehouseError naming the column otherwise."""
    if not isinstance(frame, pd.DataFrame):
        raise WarehouseError(f"{what}: expected a pandas DataFrame, got {type(frame).__name__}")
    declared = [c.name for c in columns]
    undeclared = [str(c) for c in frame.columns if c not in declared]
    if undeclared:
        raise WarehouseError(
            f"{what}: the frame has column(s) {undeclared} that the asset does not declare — add them with their type "
            "to the asset's 'columns' metadata, or drop them from the frame"
        )
    missing = [c for c in declared if c not in frame.columns]
    if missing:
        raise WarehouseError(f"{what}: the frame lacks declared column(s) {missing}")
    if frame.columns.duplicated().any():
        raise WarehouseError(f"{what}: duplicate column names {list(frame.columns[frame.columns.duplicated()])}")
    arrays = [_column_to_arrow(frame[c.name], c, what) for c in columns]
    return pa.Table.from_arrays(arrays, names=declared)


def _column_to_arrow(series: pd.Series, col: Column, what: str) -> pa.Array:
    target = ARROW_TYPES[col.kind]
    try:
        if isinstance(series.dtype, pd.DatetimeTZDtype):
            raise WarehouseError(
                f"{what}: column {col.name!r} holds time-zone-aware timestamps; the marts store naive local times "
                "(convert with .dt.tz_convert(...).dt.tz_localize(None))"
            )
        arr = pa.array(series, from_pandas=True)
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        if (col.kind == "date" or col.kind.startswith("timestamp")) and (
            pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
        ):
            try:  # ISO text ("2023-09-01", "2023-09-01 20:15:00")
                arr = pc.cast(arr, target, safe=True)
            except pa.ArrowInvalid:
                arr = pc.cast(pc.cast(arr, pa.timestamp("us")), target, safe=True)
        arr = pc.cast(arr, target, safe=True)
    except WarehouseError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, TypeError, ValueError) as exc:
        raise WarehouseError(
            f"{what}: column {col.name!r} ({series.dtype}) cannot be stored as {col.type}: {exc}"
        ) from exc
    if not col.nullable and arr.null_count:
        raise WarehouseError(f"{what}: column {col.name!r} is declared NOT NULL but has {arr.null_count} null value(s)")
    return arr


def arrow_to_pandas(table: pa.Table, columns: Sequence[Column]) -> pd.DataFrame:
    """Read-back frame with stable dtypes: ints as numpy ints (pandas nullable ints where the column is nullable),
    floats float64, text ``str``, dates ``datetime64[s]``, timestamps ``datetime64[<unit>]``."""
    out = {}
    for col in columns:
        arr = table.column(col.name)
        if pa.types.is_dictionary(arr.type):
            arr = pc.cast(arr, arr.type.value_type)
        arr = pc.cast(arr, ARROW_TYPES[col.kind])
        if col.kind == "date":
            out[col.name] = pd.Series(pc.cast(arr, pa.timestamp("s")).to_pandas(), name=col.name)
        elif col.kind in _PANDAS_INT:
            s = arr.to_pandas()
            dtype = _PANDAS_INT[col.kind]
            out[col.name] = s.astype(_PANDAS_NULLABLE_INT[col.kind] if col.nullable else dtype) if len(s) else s.astype(dtype)
        elif col.kind == "bool" and col.nullable:
            out[col.name] = arr.to_pandas().astype("boolean")
        else:
            out[col.name] = arr.to_pandas()
    frame = pd.DataFrame(out, columns=[c.name for c in columns])
    return frame.reset_index(drop=True)


def check_rows_in_partitions(table: pa.Table, column: Column, keys: list[str], what: str) -> None:
    """Every row's partition column must lie in the partitions being written — otherwise a re-run would duplicate it
    into a partition it does not replace."""
    arr = table.column(column.name)
    if pa.types.is_timestamp(arr.type):
        arr = pc.cast(arr, pa.date32())
    allowed = pc.cast(pa.array(keys), pa.date32()) if pa.types.is_date(arr.type) else pa.array(keys, arr.type)
    inside = pc.is_in(arr, value_set=allowed)
    outside = pc.invert(pc.fill_null(inside, False))
    bad = pc.sum(outside).as_py() or 0
    if bad:
        sample = sorted({str(v) for v in pc.filter(arr, outside).slice(0, 1000).to_pylist()})[:5]
        raise WarehouseError(
            f"{what}: {bad} row(s) have {column.name} outside the partition(s) {keys} being written "
            f"(e.g. {sample}); each daily partition must only hold its own day"
        )


def arrow_sums(table: pa.Table, columns: Sequence[str]) -> dict[str, float]:
    return {c: float(pc.sum(table.column(c)).as_py() or 0) for c in columns}




def output_metadata(*, keys: Optional[list[str]], rows: int, sums: dict[str, float], seconds: float,
                    extra: dict) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(rows),
        "seconds": dg.MetadataValue.float(round(seconds, 4)),
        "rows_per_second": dg.MetadataValue.int(int(rows / seconds) if seconds > 0 else 0),
    }
    if keys is not None:
        meta["partitions"] = ", ".join(keys) if len(keys) <= 5 else f"{keys[0]} .. {keys[-1]} ({len(keys)} days)"
    for name, value in sums.items():
        meta[f"sum_{name}"] = dg.MetadataValue.float(float(value))
    meta.update(extra)
    return meta


def columns_to_add(table: str, existing_types: dict[str, str], columns: Sequence[Column], allow_add: bool,
                   retype_sql: str, required_label: str, required_hint: str) -> list[Column]:
    """The schema-evolution policy both warehouses share: the declared columns a table lacks and may gain.

    Refused with a message naming the column and the migration: a table column no longer declared, a column whose
    type differs from the declaration (``retype_sql`` is the dialect's statement, formatted with table/name/type), a
    missing column when ``allow_add`` is off, and a missing required column (``required_label``/``required_hint``
    word it per dialect: NOT NULL here, non-Nullable in ClickHouse) — earlier rows would have no value for it."""
    declared = {c.name: c for c in columns}
    stale = [name for name in existing_types if name not in declared]
    if stale:
        raise WarehouseError(
            f"table {table} has column(s) {stale} that the asset no longer declares: declare them again, or drop "
            f"them (ALTER TABLE {table} DROP COLUMN ...) before loading"
        )
    for name, typ in existing_types.items():
        if typ != declared[name].type:
            fix = retype_sql.format(table=table, name=name, type=declared[name].type)
            raise WarehouseError(
                f"column {name!r} of {table} is {typ} but the asset declares {declared[name].type}: migrate the "
                f"table ({fix}) or fix the declaration"
            )
    missing = [c for c in columns if c.name not in existing_types]
    for col in missing:
        if not allow_add:
            raise WarehouseError(
                f"table {table} lacks the declared column {col.name!r} ({col.type}) and adding columns is switched "
                f"off (allow_add_columns=False): ALTER TABLE {table} ADD COLUMN {col.name} {col.type}"
            )
        if not col.nullable:
            raise WarehouseError(
                f"table {table} lacks the declared column {col.name!r} ({col.type}{required_label}): {required_hint}"
            )
    return missing




# ---- a session: one open connection, and what every load and read does with it ------------------------------------------
class WarehouseSession:
    """One open connection to a warehouse (the ``connection`` DbIOManager hands to the client and the type handler).

    The engine modules implement the hooks — ``parse_type``, ``prepare`` (schema, table, reconciliation), ``delete``
    (the slice being replaced), ``replace`` (load an Arrow table), ``select_arrow``, ``stats`` — and keep ``phase`` up
    to date, which their ``session()`` names when something fails. The template methods below are the same for both."""

    engine = "warehouse"

    def __init__(self, warehouse: "Warehouse") -> None:
        self.warehouse = warehouse
        self.phase = "connecting"
        self.actions: list[str] = []
        self.table = warehouse.where()  # what the messages name: the table once one is addressed
        self.target = "the session"  # what was being done (loading partition(s) …, reading, recounting)

    # engine hooks
    def parse_type(self, name: str, declared: str) -> Column:
        raise NotImplementedError

    def qualified_name(self, spec: TableSpec) -> str:
        raise NotImplementedError

    def prepare(self, spec: TableSpec) -> None:
        raise NotImplementedError

    def delete(self, spec: TableSpec, days: Optional[list[str]]) -> None:
        raise NotImplementedError

    def replace(self, spec: TableSpec, columns: list[Column], table: pa.Table,
                days: Optional[list[str]]) -> tuple[int, dict[str, Any]]:
        raise NotImplementedError

    def select_arrow(self, spec: TableSpec, columns: list[Column], days: Optional[list[str]]) -> pa.Table:
        raise NotImplementedError

    def stats(self, spec: TableSpec, days: Optional[list[str]]) -> dict[str, Any]:
        raise NotImplementedError

    # the same for both
    def columns(self, spec: TableSpec) -> list[Column]:
        return [self.parse_type(name, declared) for name, declared in spec.columns.items()]

    def store(self, spec: TableSpec, frame: pd.DataFrame, days: Optional[list[str]]) -> dict[str, Any]:
        """Load ``frame`` as the new content of ``days`` (the whole table when None); returns output metadata."""
        started = time.perf_counter()
        what = f"{self.engine} {self.qualified_name(spec)}"
        if days is not None and not spec.partition_expr:
            raise WarehouseError(f"{what}: a partitioned asset must declare 'partition_expr' metadata")
        columns = self.columns(spec)
        table = conform_arrow(frame, columns, what)
        if days is not None:
            check_rows_in_partitions(table, next(c for c in columns if c.name == spec.partition_expr), days, what)
        rows, extra = self.replace(spec, columns, table, days)
        if rows != table.num_rows:
            raise WarehouseError(f"{what}: the warehouse stored {rows} rows, {table.num_rows} were sent")
        return output_metadata(keys=days, rows=rows, sums=arrow_sums(table, spec.sum_columns),
                               seconds=time.perf_counter() - started,
                               extra={"ddl": ", ".join(self.actions) or "none", **extra})

    def write(self, spec: TableSpec, frame: pd.DataFrame, days: Optional[list[str]]) -> dict[str, Any]:
        """What DbIOManager does with a session, for callers without a Dagster context: prepare, delete, store."""
        self.prepare(spec)
        self.delete(spec, days)
        return self.store(spec, frame, days)

    def fetch(self, spec: TableSpec, days: Optional[list[str]], select: Optional[Sequence[str]] = None) -> pd.DataFrame:
        """The slice as pandas with the declared types; ``select``: only these columns (an ``AssetIn``'s ``columns``)."""
        columns = self.columns(spec)
        if select:
            unknown = [c for c in select if c not in spec.columns]
            if unknown:
                raise WarehouseError(f"{self.qualified_name(spec)} has no column(s) {unknown} to select")
            columns = [c for c in columns if c.name in select]
        self.phase = "reading"
        return arrow_to_pandas(self.select_arrow(spec, columns, days), columns)


class Warehouse(dg.ConfigurableResource):
    """A warehouse's connection settings; ``session()`` opens a :class:`WarehouseSession` (engine modules subclass)."""

    @contextmanager
    def session(self) -> Iterator[WarehouseSession]:
        raise NotImplementedError
        yield

    @contextmanager
    def held(self) -> Iterator[None]:
        """A block in which sessions may share what is costly to open (ClickHouse: the embedded engine). Each session
        stays its own unit of work. By default nothing is shared (a PostgreSQL connection is cheap)."""
        yield

    def schema_for_tables(self) -> str:
        """Where the marts' tables live (the DbIOManager's ``schema``)."""
        raise NotImplementedError

    def database_for_tables(self) -> Optional[str]:
        """The DbIOManager's ``database`` (None when the schema is the whole address, as in ClickHouse)."""
        return None

    def where(self) -> str:
        """The warehouse's address without credentials (for messages)."""
        raise NotImplementedError

    @staticmethod
    def quote(name: str) -> str:
        """An identifier quoted in the warehouse's SQL."""
        raise NotImplementedError

    @staticmethod
    def day_of(expr: str) -> str:
        """SQL for the day of a partition expression (the column itself where it is a date)."""
        return expr

    def select_statement(self, table_slice: TableSlice) -> str:
        """The select of a slice (DbIOManager reports it as the output's ``Query``)."""
        q = self.quote
        cols = ", ".join(q(c) for c in table_slice.columns) if table_slice.columns else "*"
        days = slice_days(table_slice)
        where = ""
        if days is not None:
            expr = self.day_of(q(table_slice.partition_dimensions[0].partition_expr))
            where = f" WHERE {expr} IN ({', '.join(repr(d) for d in days)})"
        return f"SELECT {cols} FROM {q(table_slice.schema)}.{q(table_slice.table)}{where}"

    # direct use: checks, notebooks, tests, benchmarks
    def write_frame(self, spec: TableSpec, frame: pd.DataFrame, keys: Optional[Iterable[str]]) -> dict[str, Any]:
        """Replace the partitions ``keys`` (the whole table when None) with ``frame``, as the IO manager does."""
        days = None if keys is None else check_partition_keys(keys)
        with self.session() as s:
            return s.write(spec, frame, days)

    def read_frame(self, spec: TableSpec, keys: Optional[Iterable[str]],
                   select: Optional[Sequence[str]] = None) -> pd.DataFrame:
        days = None if keys is None else check_partition_keys(keys)
        with self.session() as s:
            return s.fetch(spec, days, select)

    def partition_stats(self, spec: TableSpec, keys: Optional[Iterable[str]]) -> dict[str, Any]:
        """Rows and sums of ``spec.sum_columns`` now in the warehouse for the partitions (0 when the table is missing):
        ``{"rows", "sums", "table_exists"}``."""
        days = None if keys is None else check_partition_keys(keys)
        with self.session() as s:
            s.phase = "recounting"
            return s.stats(spec, days)


# ---- DbIOManager's pieces ---------------------------------------------------------------------------------------------
def spec_of(output_context: dg.OutputContext, table_slice: TableSlice) -> TableSpec:
    return TableSpec.from_metadata(table_slice.table, output_context.definition_metadata)


class WarehouseDbClient(DbClient):
    """DbIOManager's client for either warehouse: every step goes to the resource's session."""

    def __init__(self, warehouse: Warehouse):
        self.warehouse = warehouse

    @contextmanager
    def connect(self, context, table_slice: TableSlice) -> Iterator[WarehouseSession]:
        with self.warehouse.session() as session:
            yield session

    def ensure_schema_exists(self, context: dg.OutputContext, table_slice: TableSlice,
                             connection: WarehouseSession) -> None:
        """Schema and table: the table is created from the asset's declared ``dagster/column_schema``."""
        connection.prepare(spec_of(context, table_slice))

    def delete_table_slice(self, context: dg.OutputContext, table_slice: TableSlice,
                           connection: WarehouseSession) -> None:
        connection.delete(spec_of(context, table_slice), slice_days(table_slice))

    def get_select_statement(self, table_slice: TableSlice) -> str:
        return self.warehouse.select_statement(table_slice)

    def get_table_name(self, table_slice: TableSlice) -> str:
        return DbClient.get_table_name(table_slice)


class PandasTypeHandler(DbTypeHandler[pd.DataFrame]):
    """pandas frames in and out of either warehouse (through Arrow, cast to exactly the declared types)."""

    def handle_output(self, context: dg.OutputContext, table_slice: TableSlice, obj: pd.DataFrame,
                      connection: WarehouseSession) -> dict[str, Any]:
        return connection.store(spec_of(context, table_slice), obj, slice_days(table_slice))

    def load_input(self, context: dg.InputContext, table_slice: TableSlice,
                   connection: WarehouseSession) -> pd.DataFrame:
        return connection.fetch(spec_of(context.upstream_output, table_slice), slice_days(table_slice),
                                table_slice.columns)

    @property
    def supported_types(self) -> Sequence[type]:
        return [pd.DataFrame]


def build_io_manager(warehouse: Warehouse, name: str) -> DbIOManager:
    return DbIOManager(
        type_handlers=[PandasTypeHandler()], db_client=WarehouseDbClient(warehouse),
        database=warehouse.database_for_tables(), schema=warehouse.schema_for_tables(), io_manager_name=name,
        default_load_type=pd.DataFrame,
    )
