"""Greenplum warehouse (PostgreSQL 15 plays it locally): the marts' IO manager over the PostgreSQL protocol.

What a mart declares (asset metadata, never inferred from pandas)::

    columns           {name: SQL type}  e.g. {"dt": "date not null", "channel_name": "text", "hours": "double precision"}
    partition_column  the column a daily partition key selects (``dt``); absent for unpartitioned tables
    distributed_by    the Greenplum distribution key (list of columns); used only with the ``greenplum`` dialect
    sum_columns       numeric columns summed into the output metadata (what the consistency checks compare)
    table             table name (default: the last component of the asset key)

Writing a partition is one transaction: a transaction-scoped advisory lock per partition (two loaders of the same day
queue instead of both deleting and both inserting), ``DELETE FROM t WHERE dt = ANY(keys)``, ``COPY t FROM STDIN`` (CSV
rendered from Arrow record batches by a background thread while the connection streams), a check that COPY stored
exactly the frame's rows, ``COMMIT``. Readers see the old rows until the commit and the new ones after it; a failure
anywhere before the commit (bad value, lost connection, killed backend) rolls everything back, so the partition keeps
its previous content and a re-run simply loads it again.

Schema evolution (chosen policy): a *nullable* column declared by the asset but missing from an existing table is added
with ``ALTER TABLE … ADD COLUMN`` (rows of earlier loads read NULL there); a NOT NULL one, a column whose type differs
from the declaration, or a table column the asset no longer declares is refused with a message naming the column and
the migration to run. Set ``allow_add_columns=False`` to refuse additions too.

The first section holds what both warehouse IO managers share (identifier rules, declared-layout metadata, conversion
of a pandas frame to an Arrow table of exactly the declared types); ``tv_platform.engines.clickhouse`` imports it.
"""

import io
import re
import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


# =====================================================================================================================
# shared by both warehouses
# =====================================================================================================================
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


def _raw(value: Any) -> Any:
    """The plain Python value of a metadata entry (Dagster may wrap it in a MetadataValue)."""
    return value.value if isinstance(value, dg.MetadataValue) else value


@dataclass(frozen=True)
class TableSpec:
    """The declared layout of one mart table (from the asset's metadata)."""

    name: str
    columns: dict[str, str]
    partition_column: Optional[str] = None
    sum_columns: tuple[str, ...] = ()
    distributed_by: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    partition_by: str = "day"

    @classmethod
    def from_metadata(cls, asset_key: Optional[dg.AssetKey], metadata: Optional[dict]) -> "TableSpec":
        meta = {k: _raw(v) for k, v in (metadata or {}).items()}
        what = asset_key.to_user_string() if asset_key is not None else "table"
        columns = meta.get("columns")
        if not columns or not isinstance(columns, dict):
            raise WarehouseError(f"{what}: the asset declares no 'columns' metadata ({{name: type}})")
        table = meta.get("table") or (asset_key.path[-1] if asset_key is not None else None)
        spec = cls(
            name=check_identifier(table, f"table name of {what}"),
            columns={check_identifier(c, f"column name of {what}"): str(t) for c, t in columns.items()},
            partition_column=meta.get("partition_column") or None,
            sum_columns=tuple(meta.get("sum_columns") or ()),
            distributed_by=tuple(_as_list(meta.get("distributed_by"))),
            order_by=tuple(_as_list(meta.get("order_by"))),
            partition_by=str(meta.get("partition_by") or "day"),
        )
        for col in [spec.partition_column, *spec.sum_columns, *spec.distributed_by, *spec.order_by]:
            if col is not None and col not in spec.columns:
                raise WarehouseError(f"{what}: {col!r} is used as a key or sum but is not among the declared columns")
        if spec.partition_by not in ("day", "month"):
            raise WarehouseError(f"{what}: partition_by must be 'day' or 'month', got {spec.partition_by!r}")
        return spec

    @classmethod
    def from_context(cls, context) -> "TableSpec":
        return cls.from_metadata(context.asset_key, context.definition_metadata)


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def partition_keys_of(context) -> Optional[list[str]]:
    """The daily partition keys an input/output context addresses (None for an unpartitioned asset)."""
    if not context.has_asset_partitions:
        return None
    return check_partition_keys(context.asset_partition_keys)


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


def output_metadata(
    *, table: str, keys: Optional[list[str]], rows: int, sums: dict[str, float], seconds: float, extra: dict
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "table": table,
        "rows": dg.MetadataValue.int(rows),
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


# =====================================================================================================================
# Greenplum / PostgreSQL
# =====================================================================================================================
#: declared spelling (lower case) -> (canonical spelling = PostgreSQL's format_type, logical kind)
_PG_TYPES: dict[str, tuple[str, str]] = {
    "smallint": ("smallint", "int16"), "int2": ("smallint", "int16"),
    "integer": ("integer", "int32"), "int": ("integer", "int32"), "int4": ("integer", "int32"),
    "bigint": ("bigint", "int64"), "int8": ("bigint", "int64"),
    "real": ("real", "float32"), "float4": ("real", "float32"),
    "double precision": ("double precision", "float64"), "float8": ("double precision", "float64"),
    "text": ("text", "string"),
    "date": ("date", "date"),
    "timestamp": ("timestamp without time zone", "timestamp_us"),
    "timestamp without time zone": ("timestamp without time zone", "timestamp_us"),
    "boolean": ("boolean", "bool"), "bool": ("boolean", "bool"),
}
_PG_VARCHAR = re.compile(r"^(?:varchar|character varying)\((\d{1,5})\)$")
DIALECTS = ("postgres", "greenplum")


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


def parse_pg_type(name: str, declared: str) -> Column:
    """A declared PostgreSQL/Greenplum column type from the allow-list, optionally followed by ``not null``."""
    text = " ".join(str(declared).lower().split())
    nullable = True
    if text.endswith(" not null"):
        nullable, text = False, text[: -len(" not null")].strip()
    if text in _PG_TYPES:
        canonical, kind = _PG_TYPES[text]
        return Column(name, canonical, kind, nullable)
    m = _PG_VARCHAR.match(text)
    if m:
        return Column(name, f"character varying({int(m.group(1))})", "string", nullable)
    raise WarehouseError(
        f"column {name!r}: type {declared!r} is not supported; use one of {sorted(set(t for t, _ in _PG_TYPES.values()))} "
        "or varchar(n), optionally followed by 'not null'"
    )


def _q(name: str) -> str:
    """Double-quoted identifier (the name is validated first, so quoting only protects reserved words like "end")."""
    return '"' + check_identifier(name) + '"'


def create_table_sql(
    schema: str, spec: TableSpec, dialect: str = "postgres", columns: Optional[Sequence[Column]] = None
) -> str:
    """``CREATE TABLE IF NOT EXISTS`` for a mart; with the Greenplum dialect it ends in ``DISTRIBUTED BY (key)`` (or
    ``DISTRIBUTED RANDOMLY`` when the mart declares no key)."""
    if dialect not in DIALECTS:
        raise WarehouseError(f"dialect must be one of {DIALECTS}, got {dialect!r}")
    cols = columns or [parse_pg_type(n, t) for n, t in spec.columns.items()]
    body = ",\n".join(f"    {_q(c.name)} {c.type}{'' if c.nullable else ' NOT NULL'}" for c in cols)
    ddl = f"CREATE TABLE IF NOT EXISTS {_q(schema)}.{_q(spec.name)} (\n{body}\n)"
    if dialect == "greenplum":
        if spec.distributed_by:
            ddl += "\nDISTRIBUTED BY (" + ", ".join(_q(c) for c in spec.distributed_by) + ")"
        else:
            ddl += "\nDISTRIBUTED RANDOMLY"
    return ddl


def partition_index_sql(schema: str, spec: TableSpec, dialect: str = "postgres") -> Optional[str]:
    """PostgreSQL: a BRIN index on the partition column — a few pages, nearly free to maintain during COPY, and it
    turns ``DELETE … WHERE dt = …`` and the dashboards' date ranges into block-range scans (rows of a day are loaded
    together). Greenplum: none (segments scan in parallel; an index on an MPP fact table costs more than it saves)."""
    if not spec.partition_column or dialect == "greenplum":
        return None
    index = f"{spec.name}__{spec.partition_column}_brin"[:MAX_IDENTIFIER]
    return (f"CREATE INDEX IF NOT EXISTS {_q(index)} ON {_q(schema)}.{_q(spec.name)} "
            f"USING brin ({_q(spec.partition_column)})")


def csv_ready(table: pa.Table) -> pa.Table:
    """Timestamps without fractional seconds are rendered as ``YYYY-MM-DD HH:MM:SS`` (shorter CSV, cheaper to parse)."""
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type) and f.type.unit != "s":
            try:
                table = table.set_column(i, f.name, pc.cast(table.column(i), pa.timestamp("s"), safe=True))
            except pa.ArrowInvalid:
                pass  # sub-second values: keep them
    return table


class _ArrowCsvStream:
    """A read()-able CSV stream over an Arrow table for ``COPY FROM STDIN``. A background thread renders record batches
    to CSV (Arrow's writer releases the GIL) while the connection sends the previous ones, so on two cores the client
    keeps the server's COPY busy; at most ``depth`` rendered batches wait in memory. Strings are always quoted and NULL
    is an unquoted empty field — exactly how PostgreSQL's CSV COPY tells NULL from ''."""

    def __init__(self, table: pa.Table, batch_rows: int = 50_000, depth: int = 4):
        import queue
        import threading

        self._queue: "queue.Queue" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._chunk = b""
        self._offset = 0
        self._done = False
        self.bytes = 0
        self._thread = threading.Thread(
            target=self._produce, args=(table, batch_rows), name="greenplum-csv", daemon=True
        )
        self._thread.start()

    def _produce(self, table: pa.Table, batch_rows: int) -> None:
        options = pacsv.WriteOptions(include_header=False, quoting_style="needed", delimiter=",")
        try:
            for batch in table.to_batches(max_chunksize=batch_rows):
                if self._stop.is_set():
                    return
                if batch.num_rows:
                    sink = pa.BufferOutputStream()
                    pacsv.write_csv(batch, sink, options)
                    self._put(sink.getvalue().to_pybytes())
            self._put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it in the loading thread
            self._put(exc)

    def _put(self, item) -> None:
        import queue

        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _next_chunk(self) -> bool:
        if self._done:
            return False
        item = self._queue.get()
        if item is None:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise WarehouseError(f"rendering CSV for COPY failed: {item}") from item
        self._chunk, self._offset = item, 0
        return True

    def read(self, size: int = -1) -> bytes:
        parts = []
        want = size if size is not None and size >= 0 else None
        while want is None or want > 0:
            if self._offset >= len(self._chunk) and not self._next_chunk():
                break
            end = len(self._chunk) if want is None else self._offset + want
            take = self._chunk[self._offset:end]
            self._offset += len(take)
            if want is not None:
                want -= len(take)
            parts.append(take)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.bytes += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only uses read(); present for file-likeness
        return self.read(size)

    def close(self) -> None:
        """Stop the producer (after a failed COPY it may still be waiting to hand over a batch)."""
        self._stop.set()
        self._thread.join(timeout=5)


def _pg_message(exc: BaseException) -> str:
    text = (getattr(exc, "pgerror", None) or str(exc) or exc.__class__.__name__).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " ".join(lines[:3]) or exc.__class__.__name__


class GreenplumIOManager(dg.ConfigurableIOManager):
    """Marts in Greenplum (PostgreSQL locally), loaded by the loader role, one daily partition per write, atomically.

    ``handle_output`` creates the schema (if the role may) and the table from the asset's declared ``columns``,
    grants SELECT to ``reader_role``, then replaces the output's partition(s) in one transaction (DELETE + COPY).
    ``load_input`` reads the partition(s) back as pandas. ``partition_stats`` recounts rows and sums (for checks).
    """

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "tv_warehouse"
    schema_name: str = "tv_marts"
    user: str = "tv_loader"
    password: str = ""
    reader_role: str = ""
    dialect: str = "postgres"
    allow_add_columns: bool = True
    connect_timeout: int = 10
    application_name: str = "tv_platform.greenplum_io_manager"

    # ---- connections ---------------------------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def connect(self):
        """A psycopg2 connection as the loader role (autocommit off)."""
        import psycopg2

        if self.dialect not in DIALECTS:
            raise WarehouseError(f"GreenplumIOManager.dialect must be one of {DIALECTS}, got {self.dialect!r}")
        try:
            return psycopg2.connect(
                host=self.host, port=self.port, dbname=self.database, user=self.user, password=self.password,
                connect_timeout=self.connect_timeout, application_name=self.application_name,
                keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
            )
        except psycopg2.Error as exc:
            raise WarehouseError(
                f"Greenplum {self._where()} is unreachable as {self.user}: {_pg_message(exc)}"
            ) from exc

    def _columns(self, spec: TableSpec) -> list[Column]:
        return [parse_pg_type(name, declared) for name, declared in spec.columns.items()]

    def _qualified(self, spec: TableSpec) -> str:
        return f"{_q(check_identifier(self.schema_name, 'schema'))}.{_q(spec.name)}"

    # ---- DDL -------------------------------------------------------------------------------------------------------
    def ensure_table(self, conn, spec: TableSpec, columns: list[Column]) -> list[str]:
        """Create schema and table if missing, reconcile an existing table with the declaration; commits. Returns the
        DDL actions taken (for the output metadata)."""
        import psycopg2

        schema = check_identifier(self.schema_name, "schema")
        actions: list[str] = []
        with conn.cursor() as cur:
            # one preparer per schema at a time (until this short transaction commits): two loaders creating,
            # altering or granting at once — on one table, or GRANT USAGE on the schema — would fail with
            # "tuple concurrently updated" in the catalog
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ddl:{self.database}.{schema}",))
            cur.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (schema,))
            row = cur.fetchone()
            if row is None:
                try:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
                except psycopg2.errors.InsufficientPrivilege as exc:
                    conn.rollback()
                    raise WarehouseError(
                        f"schema {schema} does not exist in {self.database} and role {self.user} may not create it: "
                        f"create it as an administrator (CREATE SCHEMA {schema} AUTHORIZATION {self.user}) or "
                        f"GRANT CREATE ON DATABASE {self.database} TO {self.user}"
                    ) from exc
                actions.append(f"created schema {schema}")
                owner = self.user
            else:
                owner = row[0]
            cur.execute("SELECT to_regclass(%s)", (self._qualified(spec),))
            exists = cur.fetchone()[0] is not None
            if not exists:
                cur.execute(create_table_sql(schema, spec, self.dialect, columns))
                index = partition_index_sql(schema, spec, self.dialect)
                if index:
                    cur.execute(index)
                actions.append(f"created table {schema}.{spec.name}")
            else:
                actions += self._reconcile(cur, spec, columns)
            if self.reader_role:
                reader = _q(check_identifier(self.reader_role, "reader role"))
                if owner == self.user:
                    cur.execute(f"GRANT USAGE ON SCHEMA {_q(schema)} TO {reader}")
                cur.execute(f"GRANT SELECT ON {self._qualified(spec)} TO {reader}")
        conn.commit()
        return actions

    def _reconcile(self, cur, spec: TableSpec, columns: list[Column]) -> list[str]:
        table = f"{self.schema_name}.{spec.name}"
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self._qualified(spec),),
        )
        existing = {name: typ for name, typ, _notnull in cur.fetchall()}
        actions = []
        for col in columns_to_add(
            table, existing, columns, self.allow_add_columns,
            retype_sql="ALTER TABLE {table} ALTER COLUMN {name} TYPE {type}",
            required_label=" NOT NULL",
            required_hint="a NOT NULL column cannot be added to a table whose earlier rows have no value for it — "
                          "declare it nullable, or migrate the table (add it with a default) first",
        ):
            cur.execute(f"ALTER TABLE {self._qualified(spec)} ADD COLUMN IF NOT EXISTS {_q(col.name)} {col.type}")
            actions.append(f"added column {col.name} {col.type}")
        return actions

    # ---- load ------------------------------------------------------------------------------------------------------
    def _partition_filter(self, spec: TableSpec, columns: list[Column], keys: Optional[list[str]]) -> tuple[str, tuple]:
        if keys is None or not spec.partition_column:
            return "", ()
        pcol = next(c for c in columns if c.name == spec.partition_column)
        return f" WHERE {_q(pcol.name)} = ANY(%s::{pcol.type}[])", (list(keys),)

    def write_frame(self, spec: TableSpec, frame: pd.DataFrame, keys: Optional[list[str]]) -> dict[str, Any]:
        """Replace the partitions ``keys`` (or the whole table when None) with ``frame``; returns output metadata."""
        import psycopg2

        started = time.perf_counter()
        what = f"greenplum {self.schema_name}.{spec.name}"
        columns = self._columns(spec)
        if keys is not None and not spec.partition_column:
            raise WarehouseError(f"{what}: a partitioned asset must declare 'partition_column' metadata")
        table = conform_arrow(frame, columns, what)
        if keys is not None:
            check_rows_in_partitions(table, next(c for c in columns if c.name == spec.partition_column), keys, what)
        conn = self.connect()
        phase = "preparing the table"
        try:
            actions = self.ensure_table(conn, spec, columns)
            where, params = self._partition_filter(spec, columns, keys)
            qualified = self._qualified(spec)
            with conn.cursor() as cur:
                phase = "locking the partition"
                # one loader per partition at a time: a concurrent DELETE would not see the other's new rows
                for lock in ([f"{qualified}:{k}" for k in keys] if keys is not None else [qualified]):
                    cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
                phase = "deleting the partition's previous rows"
                cur.execute(f"DELETE FROM {qualified}{where}", params)
                deleted = cur.rowcount
                phase = "COPY"
                stream = _ArrowCsvStream(csv_ready(table))
                try:
                    cur.copy_expert(
                        f"COPY {qualified} ({', '.join(_q(c.name) for c in columns)}) FROM STDIN WITH (FORMAT csv)",
                        stream, size=1 << 20,
                    )
                finally:
                    stream.close()
                rows = cur.rowcount
            phase = "COMMIT"
            conn.commit()
        except WarehouseError:
            _rollback(conn)
            raise
        except psycopg2.Error as exc:
            _rollback(conn)
            partition = f"partition(s) {keys}" if keys is not None else "the table"
            lost = isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) or conn.closed
            if phase == "COMMIT" and lost:
                raise WarehouseError(
                    f"{what}: the connection to {self._where()} was lost during COMMIT of {partition}: whether the "
                    f"load was committed is unknown — re-run it (loads are idempotent). Cause: {_pg_message(exc)}"
                ) from exc
            cause = "the connection was lost" if lost else "the warehouse refused it"
            raise WarehouseError(
                f"{what}: loading {partition} failed while {phase} — {cause}: {_pg_message(exc)}. The transaction was "
                "rolled back: the previous content is intact"
            ) from exc
        finally:
            conn.close()
        seconds = time.perf_counter() - started
        if rows != table.num_rows:
            raise WarehouseError(f"{what}: COPY stored {rows} rows, {table.num_rows} were sent")
        return output_metadata(
            table=f"{self.database}.{self.schema_name}.{spec.name}", keys=keys, rows=rows,
            sums=arrow_sums(table, spec.sum_columns), seconds=seconds,
            extra={
                "deleted_rows": dg.MetadataValue.int(max(deleted, 0)),
                "csv_bytes": dg.MetadataValue.int(stream.bytes),
                "ddl": ", ".join(actions) or "none",
                "dialect": self.dialect,
            },
        )

    def _stats(self, cur, spec: TableSpec, columns: list[Column], keys: Optional[list[str]]):
        where, params = self._partition_filter(spec, columns, keys)
        sums = ", ".join(f"COALESCE(SUM({_q(c)}), 0)::double precision" for c in spec.sum_columns)
        cur.execute(f"SELECT COUNT(*){', ' + sums if sums else ''} FROM {self._qualified(spec)}{where}", params)
        row = cur.fetchone()
        return int(row[0]), {c: float(v) for c, v in zip(spec.sum_columns, row[1:])}

    def partition_stats(self, spec: TableSpec, keys: Optional[list[str]]) -> dict[str, Any]:
        """Rows and sums of ``spec.sum_columns`` now in the warehouse for the partitions (0 when the table is missing)."""
        import psycopg2

        columns = self._columns(spec)
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (self._qualified(spec),))
                if cur.fetchone()[0] is None:
                    return {"rows": 0, "sums": {c: 0.0 for c in spec.sum_columns}, "table_exists": False}
                rows, sums = self._stats(cur, spec, columns, keys)
            return {"rows": rows, "sums": sums, "table_exists": True}
        except psycopg2.Error as exc:
            raise WarehouseError(f"greenplum {self.schema_name}.{spec.name}: recount failed: {_pg_message(exc)}") from exc
        finally:
            conn.close()

    def read_frame(self, spec: TableSpec, keys: Optional[list[str]]) -> pd.DataFrame:
        """The partitions (or the whole table) as pandas with the declared types."""
        import psycopg2

        columns = self._columns(spec)
        where, params = self._partition_filter(spec, columns, keys)
        conn = self.connect()
        try:
            buf = io.BytesIO()
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (self._qualified(spec),))
                if cur.fetchone()[0] is None:
                    raise WarehouseError(f"greenplum {self.schema_name}.{spec.name} does not exist: materialize it first")
                select = cur.mogrify(
                    f"SELECT {', '.join(_q(c.name) for c in columns)} FROM {self._qualified(spec)}{where}", params
                ).decode()
                cur.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)", buf)
            conn.rollback()
        except psycopg2.Error as exc:
            raise WarehouseError(f"greenplum {self.schema_name}.{spec.name}: read failed: {_pg_message(exc)}") from exc
        finally:
            conn.close()
        return arrow_to_pandas(_read_pg_csv(buf.getvalue(), columns), columns)

    # ---- Dagster ---------------------------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        spec = TableSpec.from_context(context)
        meta = self.write_frame(spec, obj, partition_keys_of(context))
        context.add_output_metadata(meta)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        spec = TableSpec.from_metadata(upstream.asset_key, upstream.definition_metadata)
        return self.read_frame(spec, partition_keys_of(context))


def _rollback(conn) -> None:
    try:
        if not conn.closed:
            conn.rollback()
    except Exception:  # noqa: BLE001 - the connection may be gone; the server rolls back on its own then
        pass


def _read_pg_csv(data: bytes, columns: Sequence[Column]) -> pa.Table:
    names = [c.name for c in columns]
    if not data:
        return pa.table({c.name: pa.array([], ARROW_TYPES[c.kind]) for c in columns})
    read_types = {c.name: (pa.timestamp("us") if c.kind.startswith("timestamp") else ARROW_TYPES[c.kind]) for c in columns}
    return pacsv.read_csv(
        io.BytesIO(data),
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
        convert_options=pacsv.ConvertOptions(
            column_types=read_types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            null_values=[""], true_values=["t", "true"], false_values=["f", "false"],
        ),
    )


def greenplum_io_manager(settings=None) -> GreenplumIOManager:
    """The IO manager of the settings (``TVP_GP_*``): loads as the loader role, grants SELECT to the reader role. When
    the password comes from the environment it is passed as ``EnvVar`` so Dagster never shows its value."""
    import os

    from tv_platform.settings import get_settings

    s = settings or get_settings()
    password = dg.EnvVar("TVP_GP_LOADER_PASSWORD") if "TVP_GP_LOADER_PASSWORD" in os.environ else s.gp_loader_password
    return GreenplumIOManager(
        host=s.gp_host, port=s.gp_port, database=s.gp_database, schema_name=s.gp_schema, user=s.gp_loader_user,
        password=password, reader_role=s.gp_reader_user, dialect=s.gp_dialect,
    )
