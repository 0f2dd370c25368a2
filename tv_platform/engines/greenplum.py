"""Greenplum warehouse (PostgreSQL 15 plays it locally) on Dagster's ``DbIOManager`` (see ``engines/warehouse.py``):
the ``GreenplumWarehouse`` resource and its session, and ``GreenplumIOManager`` built on them.

Types a mart declares in ``dagster/column_schema``: PostgreSQL's, optionally ``not null`` — e.g. ``date not null``,
``text``, ``double precision`` (:func:`parse_pg_type` has the allow-list). ``distributed_by`` is the Greenplum
distribution key (used only with the ``greenplum`` dialect).

Writing a partition is one transaction, the session's: a transaction-scoped advisory lock per day (two loaders of the
same day queue instead of both deleting and both inserting), ``DELETE FROM t WHERE dt = ANY(days)``
(``delete_table_slice``), ``COPY t FROM STDIN`` (CSV rendered from Arrow record batches by a background thread while
the connection streams — the type handler's load), a check that COPY stored exactly the frame's rows, ``COMMIT`` when
the session closes. Readers see the old rows until the commit and the new ones after it; a failure anywhere before the
commit (bad value, lost connection, killed backend) rolls everything back, so the partition keeps its previous content
and a re-run simply loads it again.

Schema evolution (chosen policy): a *nullable* column declared by the asset but missing from an existing table is added
with ``ALTER TABLE … ADD COLUMN`` (rows of earlier loads read NULL there); a NOT NULL one, a column whose type differs
from the declaration, or a table column the asset no longer declares is refused with a message naming the column and
the migration to run. Set ``allow_add_columns=False`` to refuse additions too.
"""

from __future__ import annotations

import io
import re
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from dagster._core.storage.db_io_manager import DbIOManager

from tv_platform.engines.warehouse import (
    ARROW_TYPES,
    MAX_IDENTIFIER,
    Column,
    TableSpec,
    Warehouse,
    WarehouseError,
    WarehouseSession,
    build_io_manager,
    check_identifier,
    columns_to_add,
)


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
    if not spec.partition_expr or dialect == "greenplum":
        return None
    index = f"{spec.name}__{spec.partition_expr}_brin"[:MAX_IDENTIFIER]
    return (f"CREATE INDEX IF NOT EXISTS {_q(index)} ON {_q(schema)}.{_q(spec.name)} "
            f"USING brin ({_q(spec.partition_expr)})")


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


class GreenplumWarehouse(Warehouse):
    """Greenplum (PostgreSQL locally), as the loader role: sessions for the IO manager, the checks and direct use.

    A session's load creates the schema (if the role may) and the table from the asset's declared columns, grants
    SELECT to ``reader_role``, then replaces the slice in one transaction (DELETE + COPY)."""

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
    application_name: str = "tv_platform.greenplum"

    def where(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def connect(self):
        """A psycopg2 connection as the loader role (autocommit off)."""
        import psycopg2

        if self.dialect not in DIALECTS:
            raise WarehouseError(f"GreenplumWarehouse.dialect must be one of {DIALECTS}, got {self.dialect!r}")
        try:
            return psycopg2.connect(
                host=self.host, port=self.port, dbname=self.database, user=self.user, password=self.password,
                connect_timeout=self.connect_timeout, application_name=self.application_name,
                keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3,
            )
        except psycopg2.Error as exc:
            raise WarehouseError(f"Greenplum {self.where()} is unreachable as {self.user}: {_pg_message(exc)}") from exc

    @contextmanager
    def session(self) -> Iterator["GreenplumSession"]:
        """One connection, one transaction: committed when the block ends, rolled back when it raises (and a
        psycopg2 error becomes a WarehouseError saying what was being done and that the previous content is intact)."""
        import psycopg2

        conn = self.connect()
        session = GreenplumSession(self, conn)
        try:
            yield session
            session.phase = "COMMIT"
            conn.commit()
        except WarehouseError:
            _rollback(conn)
            raise
        except psycopg2.Error as exc:
            _rollback(conn)
            raise WarehouseError(session.failure(exc)) from exc
        finally:
            conn.close()

    def schema_for_tables(self) -> str:
        return check_identifier(self.schema_name, "schema")

    def database_for_tables(self) -> Optional[str]:
        return self.database

    @staticmethod
    def quote(name: str) -> str:
        return _q(name)


class GreenplumSession(WarehouseSession):
    """An open connection of a :class:`GreenplumWarehouse`, inside one transaction."""

    engine = "greenplum"

    def __init__(self, warehouse: GreenplumWarehouse, conn):
        super().__init__(warehouse)
        self.conn = conn

    @property
    def schema(self) -> str:
        return check_identifier(self.warehouse.schema_name, "schema")

    def parse_type(self, name: str, declared: str) -> Column:
        return parse_pg_type(name, declared)

    def qualified_name(self, spec: TableSpec) -> str:
        return f"{self.warehouse.schema_name}.{spec.name}"

    def _qualified(self, spec: TableSpec) -> str:
        return f"{_q(self.schema)}.{_q(spec.name)}"

    def failure(self, exc: BaseException) -> str:
        import psycopg2

        lost = isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)) or self.conn.closed
        if self.phase == "COMMIT" and lost:
            return (f"greenplum {self.table}: the connection to {self.warehouse.where()} was lost during COMMIT "
                    f"({self.target}): "
                    f"whether the load was committed is unknown — re-run it (loads are idempotent). "
                    f"Cause: {_pg_message(exc)}")
        cause = "the connection was lost" if lost else "the warehouse refused it"
        return (f"greenplum {self.table}: {self.target} failed while {self.phase} — {cause}: "
                f"{_pg_message(exc)}. The transaction was rolled back: the previous content is intact")

    def _table_exists(self, cur, spec: TableSpec) -> bool:
        cur.execute("SELECT to_regclass(%s)", (self._qualified(spec),))
        return cur.fetchone()[0] is not None

    # ---- DDL -------------------------------------------------------------------------------------------------------
    def prepare(self, spec: TableSpec) -> None:
        """Create schema and table if missing, reconcile an existing table with the declaration; commits (the DDL
        lock is held only that long). The actions taken go into the output metadata."""
        import psycopg2

        self.phase, self.target, self.table = "preparing the table", "loading the table", self.qualified_name(spec)
        columns = self.columns(spec)
        schema, user = self.schema, self.warehouse.user
        with self.conn.cursor() as cur:
            # one preparer per schema at a time (until this short transaction commits): two loaders creating,
            # altering or granting at once — on one table, or GRANT USAGE on the schema — would fail with
            # "tuple concurrently updated" in the catalog
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"ddl:{self.warehouse.database}.{schema}",))
            cur.execute("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (schema,))
            row = cur.fetchone()
            if row is None:
                try:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(schema)}")
                except psycopg2.errors.InsufficientPrivilege as exc:
                    raise WarehouseError(
                        f"schema {schema} does not exist in {self.warehouse.database} and role {user} may not create "
                        f"it: create it as an administrator (CREATE SCHEMA {schema} AUTHORIZATION {user}) or "
                        f"GRANT CREATE ON DATABASE {self.warehouse.database} TO {user}"
                    ) from exc
                self.actions.append(f"created schema {schema}")
                owner = user
            else:
                owner = row[0]
            if not self._table_exists(cur, spec):
                cur.execute(create_table_sql(schema, spec, self.warehouse.dialect, columns))
                index = partition_index_sql(schema, spec, self.warehouse.dialect)
                if index:
                    cur.execute(index)
                self.actions.append(f"created table {schema}.{spec.name}")
            else:
                self._reconcile(cur, spec, columns)
            if self.warehouse.reader_role:
                reader = _q(check_identifier(self.warehouse.reader_role, "reader role"))
                if owner == user:
                    cur.execute(f"GRANT USAGE ON SCHEMA {_q(schema)} TO {reader}")
                cur.execute(f"GRANT SELECT ON {self._qualified(spec)} TO {reader}")
        self.conn.commit()

    def _reconcile(self, cur, spec: TableSpec, columns: list[Column]) -> None:
        table = self.qualified_name(spec)
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull FROM pg_attribute a "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (self._qualified(spec),),
        )
        existing = {name: typ for name, typ, _notnull in cur.fetchall()}
        for col in columns_to_add(
            table, existing, columns, self.warehouse.allow_add_columns,
            retype_sql="ALTER TABLE {table} ALTER COLUMN {name} TYPE {type}",
            required_label=" NOT NULL",
            required_hint="a NOT NULL column cannot be added to a table whose earlier rows have no value for it — "
                          "declare it nullable, or migrate the table (add it with a default) first",
        ):
            cur.execute(f"ALTER TABLE {self._qualified(spec)} ADD COLUMN IF NOT EXISTS {_q(col.name)} {col.type}")
            self.actions.append(f"added column {col.name} {col.type}")

    # ---- the slice ---------------------------------------------------------------------------------------------------
    def _filter(self, spec: TableSpec, days: Optional[list[str]]) -> tuple[str, tuple]:
        if days is None or not spec.partition_expr:
            return "", ()
        pcol = self.parse_type(spec.partition_expr, spec.columns[spec.partition_expr])
        return f" WHERE {_q(pcol.name)} = ANY(%s::{pcol.type}[])", (list(days),)

    def delete(self, spec: TableSpec, days: Optional[list[str]]) -> None:
        """Lock the days (or the table) for this transaction, then delete their rows."""
        qualified = self._qualified(spec)
        self.table = self.qualified_name(spec)
        self.target = f"loading {'partition(s) ' + str(days) if days is not None else 'the table'}"
        where, params = self._filter(spec, days)
        with self.conn.cursor() as cur:
            self.phase = "locking the partition"
            # one loader per partition at a time: a concurrent DELETE would not see the other's new rows
            for lock in ([f"{qualified}:{d}" for d in days] if days is not None else [qualified]):
                cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock,))
            self.phase = "deleting the partition's previous rows"
            cur.execute(f"DELETE FROM {qualified}{where}", params)
            self.deleted = max(cur.rowcount, 0)

    def replace(self, spec: TableSpec, columns: list[Column], table: pa.Table,
                days: Optional[list[str]]) -> tuple[int, dict[str, Any]]:
        """COPY the (already deleted) slice's new rows in; the commit comes when the session ends."""
        self.phase = "COPY"
        stream = _ArrowCsvStream(csv_ready(table))
        try:
            with self.conn.cursor() as cur:
                cur.copy_expert(
                    f"COPY {self._qualified(spec)} ({', '.join(_q(c.name) for c in columns)}) FROM STDIN "
                    "WITH (FORMAT csv)", stream, size=1 << 20,
                )
                rows = cur.rowcount
        finally:
            stream.close()
        return rows, {
            "deleted_rows": dg.MetadataValue.int(getattr(self, "deleted", 0)),
            "csv_bytes": dg.MetadataValue.int(stream.bytes),
            "dialect": self.warehouse.dialect,
        }

    def stats(self, spec: TableSpec, days: Optional[list[str]]) -> dict[str, Any]:
        self.table, self.target = self.qualified_name(spec), "recounting"
        with self.conn.cursor() as cur:
            if not self._table_exists(cur, spec):
                return {"rows": 0, "sums": {c: 0.0 for c in spec.sum_columns}, "table_exists": False}
            where, params = self._filter(spec, days)
            sums = ", ".join(f"COALESCE(SUM({_q(c)}), 0)::double precision" for c in spec.sum_columns)
            cur.execute(f"SELECT COUNT(*){', ' + sums if sums else ''} FROM {self._qualified(spec)}{where}", params)
            row = cur.fetchone()
        return {"rows": int(row[0]), "sums": {c: float(v) for c, v in zip(spec.sum_columns, row[1:])},
                "table_exists": True}

    def select_arrow(self, spec: TableSpec, columns: list[Column], days: Optional[list[str]]) -> pa.Table:
        self.table, self.target = self.qualified_name(spec), "reading"
        where, params = self._filter(spec, days)
        buf = io.BytesIO()
        with self.conn.cursor() as cur:
            if not self._table_exists(cur, spec):
                raise WarehouseError(f"greenplum {self.qualified_name(spec)} does not exist: materialize it first")
            select = cur.mogrify(
                f"SELECT {', '.join(_q(c.name) for c in columns)} FROM {self._qualified(spec)}{where}", params
            ).decode()
            cur.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv)", buf)
        return _read_pg_csv(buf.getvalue(), columns)


class GreenplumIOManager(dg.ConfigurableIOManagerFactory):
    """The marts' IO manager for Greenplum: Dagster's ``DbIOManager`` with the warehouse's client and the pandas type
    handler (``engines/warehouse.py``), sessions from the ``warehouse`` resource."""

    warehouse: GreenplumWarehouse

    def create_io_manager(self, context) -> DbIOManager:
        return build_io_manager(self.warehouse, "GreenplumIOManager")




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
