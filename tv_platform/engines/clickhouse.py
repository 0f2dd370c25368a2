"""ClickHouse warehouse on Dagster's ``DbIOManager`` (see ``engines/warehouse.py``): the ``ClickHouseWarehouse``
resource over clickhouse-connect — the stack's embedded engine (``chdb:///path``) by default, a server by
``http(s)://`` URL with the same code — its session, and ``ClickHouseIOManager`` built on them.

Types a mart declares in ``dagster/column_schema``: ClickHouse's — e.g. ``Date``, ``LowCardinality(String)``,
``DateTime('UTC')``, ``Nullable(Float64)`` (:func:`parse_ch_type` has the allow-list); ``order_by`` is the MergeTree
sorting key. Tables are partitioned by day (``PARTITION BY <partition_expr>``): a load replaces whole ClickHouse
partitions of its own days only, so two concurrent loads of different days never touch the same partition, on chDB
or on a server.

Overwriting a day is atomic and idempotent (staging table + ``REPLACE PARTITION``):

1. ``CREATE TABLE IF NOT EXISTS`` the mart (MergeTree), reconcile its columns with the declaration
   (``ensure_schema_exists``);
2. ``CREATE TABLE _staging_<table>_<random> AS <table>`` — same structure, same partitioning;
3. insert the frame (Arrow, cast to the declared types) into the staging table;
4. per day, ``ALTER TABLE t REPLACE PARTITION ID '<YYYYMMDD>' FROM staging`` — an atomic swap of the day's parts (or
   ``DROP PARTITION ID`` when the new content is empty: ClickHouse refuses to replace from an empty source);
5. drop the staging table (always).

``delete_table_slice`` deletes nothing: the swap *is* the delete, and a failure before step 4 (bad value, lost server,
engine held by another process) leaves the mart untouched; readers never see a half-written day. Unpartitioned tables
are swapped whole with ``EXCHANGE TABLES``. A table created monthly-partitioned by an earlier version is rebuilt by
day once (new table, ``INSERT … SELECT``, ``EXCHANGE TABLES``).

Timestamps: the lake holds naive local wall-clock times; they are stored as ``DateTime('UTC')`` by convention so no
server or session time zone shifts them (``toHour(start)`` is the wall-clock hour everywhere).

The embedded engine admits one process at a time (it takes a file lock on ``<path>/status``, which holds the owner's
PID). By construction one run step uses it at a time — the marts' steps share the ``clickhouse`` concurrency pool,
limited to 1 in every instance config the project ships — and :func:`open_client` waits with backoff, up to
``lock_timeout`` seconds, while anything else (a notebook, Superset, a test) holds the directory, as dagster-duckdb's
resource retries a locked database file. Every session opens a client and closes it, releasing the engine.
"""

from __future__ import annotations

import fcntl
import os
import re
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import urlparse

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
from dagster._core.storage.db_io_manager import DbIOManager

from tv_platform.engines.warehouse import (
    ARROW_TYPES,
    Column,
    TableSpec,
    Warehouse,
    WarehouseError,
    WarehouseSession,
    build_io_manager,
    check_identifier,
    columns_to_add,
)
from tv_platform.processes import pid_alive

#: how long a client waits by default for another process to let go of a chDB path
LOCK_WAIT_SECONDS = 30.0
_HELD: dict[tuple[str, int], Any] = {}
"""(URL, thread) -> the client :meth:`ClickHouseWarehouse.held` keeps open."""


class ChdbBusy(WarehouseError):
    """The chDB data directory stayed held by another process for the whole wait."""


# ---- opening a client: chDB's one-process rule -------------------------------------------------------------------------
def is_chdb(url: str) -> bool:
    return url.startswith("chdb:")


def chdb_path(url: str) -> Path | None:
    """The data directory of a ``chdb:///abs/path`` URL (None for http(s) or in-memory chDB)."""
    if not is_chdb(url):
        return None
    parsed = urlparse(url)
    location = parsed.path if not parsed.netloc else parsed.netloc
    if location in ("", "memory", ":memory:"):
        return None
    return Path(os.path.realpath(location))


def chdb_holder(path: Path) -> int | None:
    """PID of the process that holds a chDB data directory, from the ``status`` file the engine keeps while open."""
    try:
        for line in (path / "status").read_text().splitlines():
            if line.startswith("PID:"):
                pid = int(line.split(":", 1)[1])
                return pid if pid_alive(pid) else None
    except (OSError, ValueError):
        pass
    return None


def chdb_locked_by_other(path: Path) -> bool:
    """True while another process holds the chDB directory (the engine keeps an flock on ``<path>/status``)."""
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return chdb_holder(path) != os.getpid()  # our own process holding it can open more clients
    finally:
        os.close(fd)


def _cmdline(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


def _connect(url: str, **kwargs: Any):
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=url, **kwargs)


@contextmanager
def open_client(url: str, timeout: float = LOCK_WAIT_SECONDS, **kwargs: Any) -> Iterator[Any]:
    """A clickhouse-connect client on ``url``, closed on exit. With chDB, opening waits — with exponential backoff
    (0.2 s doubling to 3 s), up to ``timeout`` seconds — while another process holds the data directory, then raises
    :class:`ChdbBusy` naming the holder. Extra keyword arguments go to ``clickhouse_connect.get_client``."""
    path = chdb_path(url)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        # wait on the lock first: a failed open makes the engine print "Cannot lock file" to stderr at every try
        busy = path is not None and chdb_locked_by_other(path)
        if not busy:
            try:
                client = _connect(url, **kwargs)
                break
            except Exception:  # noqa: BLE001 - clickhouse_connect ProgrammingError "Unable to open the chdb engine"
                busy = path is not None and chdb_locked_by_other(path)
                if not busy:
                    raise
        if time.monotonic() + delay > deadline:
            holder = chdb_holder(path)
            raise ChdbBusy(f"the chDB directory {path} is held by process {holder} ({_cmdline(holder)}); only one "
                           f"process may open it at a time — gave up after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 3.0)
    try:
        yield client
    finally:
        client.close()


# ---- declared types ---------------------------------------------------------------------------------------------------
_CH_BASE: dict[str, str] = {
    "Int8": "int8", "Int16": "int16", "Int32": "int32", "Int64": "int64",
    "UInt8": "uint8", "UInt16": "uint16", "UInt32": "uint32", "UInt64": "uint64",
    "Float32": "float32", "Float64": "float64",
    "String": "string", "Bool": "bool", "Date": "date", "Date32": "date", "DateTime": "timestamp_s",
}
_TZ = r"'[A-Za-z_]+(?:/[A-Za-z_+\-]+)*'"
_DATETIME_TZ = re.compile(rf"^DateTime\(({_TZ})\)$")
_DATETIME64 = re.compile(rf"^DateTime64\((\d)(?:,\s*({_TZ}))?\)$")
_WRAPPED = re.compile(r"^(Nullable|LowCardinality)\((.+)\)$")
_DT64_KIND = {0: "timestamp_s", 1: "timestamp_ms", 2: "timestamp_ms", 3: "timestamp_ms",
              4: "timestamp_us", 5: "timestamp_us", 6: "timestamp_us", 7: "timestamp_ns", 8: "timestamp_ns",
              9: "timestamp_ns"}


def parse_ch_type(name: str, declared: str) -> Column:
    """A declared ClickHouse type from the allow-list (ints, floats, String, Bool, Date/Date32, DateTime['tz'],
    DateTime64(p['tz']), wrapped in Nullable(...) and/or LowCardinality(...)); canonical spelling as
    ``system.columns`` shows it."""
    text = str(declared).strip()

    def parse(t: str, nullable: bool, low_card: bool) -> tuple[str, str, bool]:
        m = _WRAPPED.match(t)
        if m:
            wrapper, inner = m.groups()
            if wrapper == "Nullable":
                if nullable:
                    raise ValueError("nested Nullable")
                canonical, kind, _ = parse(inner, True, low_card)
                return f"Nullable({canonical})", kind, True
            if low_card:
                raise ValueError("nested LowCardinality")
            canonical, kind, is_null = parse(inner, nullable, True)
            if kind != "string":
                raise ValueError("LowCardinality is only used for String here")
            return f"LowCardinality({canonical})", kind, is_null
        if t in _CH_BASE:
            return t, _CH_BASE[t], nullable
        m = _DATETIME_TZ.match(t)
        if m:
            return f"DateTime({m.group(1)})", "timestamp_s", nullable
        m = _DATETIME64.match(t)
        if m:
            precision, tz = int(m.group(1)), m.group(2)
            return (f"DateTime64({precision}, {tz})" if tz else f"DateTime64({precision})"), _DT64_KIND[precision], nullable
        raise ValueError("unknown type")

    try:
        canonical, kind, nullable = parse(text, False, False)
    except ValueError as exc:
        raise WarehouseError(
            f"column {name!r}: ClickHouse type {declared!r} is not supported ({exc}); use {sorted(_CH_BASE)}, "
            "DateTime('tz'), DateTime64(p[, 'tz']), Nullable(T) or LowCardinality(String)"
        ) from None
    return Column(name, canonical, kind, nullable)


def _bq(name: str) -> str:
    return "`" + check_identifier(name) + "`"


def partition_expression(spec: TableSpec, columns: Sequence[Column]) -> Optional[str]:
    """``PARTITION BY`` of a mart: its day (the partition column, or ``toDate`` of a DateTime one)."""
    if not spec.partition_expr:
        return None
    col = next(c for c in columns if c.name == spec.partition_expr)
    if col.nullable or col.kind not in ("date", "timestamp_s"):
        raise WarehouseError(
            f"{spec.name}: the partition column {col.name!r} must be a non-Nullable Date or DateTime, it is {col.type}"
        )
    return _bq(col.name) if col.kind == "date" else f"toDate({_bq(col.name)})"


def partition_id(key: str) -> str:
    """ClickHouse's partition ID of the day ``key`` (YYYY-MM-DD): YYYYMMDD."""
    return key.replace("-", "")


def create_table_sql(database: str, spec: TableSpec, columns: Optional[Sequence[Column]] = None) -> str:
    cols = columns or [parse_ch_type(n, t) for n, t in spec.columns.items()]
    for key in spec.order_by:
        col = next(c for c in cols if c.name == key)
        if col.nullable:
            raise WarehouseError(f"{spec.name}: ORDER BY column {key!r} is Nullable ({col.type}); sorting keys may not be")
    body = ",\n".join(f"    {_bq(c.name)} {c.type}" for c in cols)
    ddl = f"CREATE TABLE IF NOT EXISTS {_bq(database)}.{_bq(spec.name)}\n(\n{body}\n)\nENGINE = MergeTree"
    part = partition_expression(spec, cols)
    if part:
        ddl += f"\nPARTITION BY {part}"
    if len(spec.order_by) == 1:
        ddl += f"\nORDER BY {_bq(spec.order_by[0])}"
    else:
        ddl += "\nORDER BY " + ("(" + ", ".join(_bq(c) for c in spec.order_by) + ")" if spec.order_by else "tuple()")
    return ddl


class ClickHouseWarehouse(Warehouse):
    """ClickHouse (chDB locally): sessions for the IO manager, the checks and direct use. Marts are MergeTree tables
    partitioned by day, each day replaced atomically through a staging table."""

    url: str
    database: str = "tv_marts"
    lock_timeout: float = 60.0
    allow_add_columns: bool = True
    stale_staging_minutes: int = 60

    @property
    def embedded(self) -> bool:
        return is_chdb(self.url)

    def where(self) -> str:
        """The URL without credentials (for messages)."""
        if self.embedded:
            return self.url
        parsed = urlparse(self.url)
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}".rstrip(":")

    def _open(self):
        """(context manager, client) of a new client; failures to open become WarehouseErrors."""
        try:
            manager = open_client(self.url, timeout=self.lock_timeout)
            return manager, manager.__enter__()
        except ChdbBusy as exc:
            raise WarehouseError(f"ClickHouse {self.where()} is unavailable: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, auth, engine failed to open
            raise WarehouseError(
                f"ClickHouse {self.where()} is unreachable: {exc.__class__.__name__}: {_first_line(exc)}"
            ) from exc

    @contextmanager
    def held(self) -> Iterator[None]:
        """One client for everything this thread does with this ClickHouse inside the block — a step loading and
        checking several marts — instead of one per session: opening the embedded engine costs ~0.15 s (it loads every
        table's metadata), and the engine stays this process's for the block only."""
        key = (self.url, threading.get_ident())
        if key in _HELD:
            yield
            return
        manager, client = self._open()
        _HELD[key] = client
        try:
            yield
        finally:
            _HELD.pop(key, None)
            manager.__exit__(None, None, None)

    @contextmanager
    def session(self) -> Iterator["ClickHouseSession"]:
        """An open client on the mart database (created if missing), closed on exit — with chDB, waiting up to
        ``lock_timeout`` seconds while another process holds the engine; inside :meth:`held`, the held client. Driver
        errors become WarehouseErrors saying what was being done and whether the mart may have changed."""
        database = check_identifier(self.database, "ClickHouse database")
        client = _HELD.get((self.url, threading.get_ident()))
        manager = None
        if client is None:
            manager, client = self._open()
        session = ClickHouseSession(self, client)
        try:
            client.command(f"CREATE DATABASE IF NOT EXISTS {_bq(database)}")
            yield session
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - clickhouse_connect / chdb errors
            intact = session.phase != "swapping the new content in"
            raise WarehouseError(
                f"clickhouse {session.table}: {session.target} failed while {session.phase}: "
                f"{exc.__class__.__name__}: {_first_line(exc)}. "
                + ("The mart was not modified: the previous content is intact." if intact else
                   "Some days may already hold the new content; re-run the load (it is idempotent).")
            ) from exc
        finally:
            if manager is not None:
                manager.__exit__(None, None, None)  # closes the client (and releases the chDB directory)

    @contextmanager
    def client(self) -> Iterator[Any]:
        """The session's clickhouse-connect client, for queries of one's own (notebooks, benchmarks, tests)."""
        with self.session() as session:
            yield session.client

    def schema_for_tables(self) -> str:
        return check_identifier(self.database, "ClickHouse database")

    @staticmethod
    def quote(name: str) -> str:
        return _bq(name)

    @staticmethod
    def day_of(expr: str) -> str:
        return f"toDate({expr})"


class ClickHouseSession(WarehouseSession):
    """An open client of a :class:`ClickHouseWarehouse`."""

    engine = "clickhouse"

    def __init__(self, warehouse: ClickHouseWarehouse, client):
        super().__init__(warehouse)
        self.client = client
        self.database = warehouse.database

    def parse_type(self, name: str, declared: str) -> Column:
        return parse_ch_type(name, declared)

    def qualified_name(self, spec: TableSpec) -> str:
        return f"{self.database}.{spec.name}"

    def _table(self, name: str) -> str:
        return f"{_bq(self.database)}.{_bq(name)}"

    def _existing_columns(self, table: str) -> dict[str, str]:
        result = self.client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
            parameters={"db": self.database, "t": table},
        )
        return {name: typ for name, typ in result.result_rows}

    # ---- DDL -------------------------------------------------------------------------------------------------------
    def prepare(self, spec: TableSpec) -> None:
        self.phase, self.target, self.table = "preparing the table", "loading the table", self.qualified_name(spec)
        columns = self.columns(spec)
        existing = self._existing_columns(spec.name)
        if not existing:
            self.client.command(create_table_sql(self.database, spec, columns))
            self.actions.append(f"created table {self.qualified_name(spec)}")
            return
        table = self.qualified_name(spec)
        self._check_keys(spec, columns)
        for col in columns_to_add(
            table, existing, columns, self.warehouse.allow_add_columns,
            retype_sql="ALTER TABLE {table} MODIFY COLUMN {name} {type}",
            required_label="",
            required_hint="a non-Nullable column cannot be added to a table whose earlier rows have no value for it "
                          "(they would read 0 or '') — declare it Nullable(...), or migrate the table first",
        ):
            self.client.command(
                f"ALTER TABLE {self._table(spec.name)} ADD COLUMN IF NOT EXISTS {_bq(col.name)} {col.type}")
            self.actions.append(f"added column {col.name} {col.type}")
        self._drop_stale_staging(spec.name)

    def _keys(self, name: str) -> tuple[str, str]:
        return tuple(self.client.query(
            "SELECT partition_key, sorting_key FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self.database, "t": name},
        ).result_rows[0])

    def _check_keys(self, spec: TableSpec, columns: list[Column]) -> None:
        """An existing table must be partitioned and sorted as declared: partition IDs are computed from the
        declaration, so a table partitioned otherwise would be swapped wrongly. One made monthly by an earlier
        version (``toYYYYMM(dt)``) is rebuilt daily, keeping its rows."""
        want_partition = (partition_expression(spec, columns) or "").replace("`", "")
        want_sorting = ", ".join(spec.order_by)
        have_partition, have_sorting = self._keys(spec.name)
        if have_partition == f"toYYYYMM({spec.partition_expr})" and have_sorting == want_sorting:
            self._rebuild_daily(spec, columns)
            have_partition = want_partition
        if (have_partition, have_sorting) != (want_partition, want_sorting):
            raise WarehouseError(
                f"table {self.qualified_name(spec)} is PARTITION BY {have_partition or '()'} ORDER BY "
                f"({have_sorting}) but the asset declares PARTITION BY {want_partition or '()'} ORDER BY "
                f"({want_sorting}): recreate the table (a new table with the declared keys, INSERT … SELECT, "
                "EXCHANGE TABLES) or fix the declaration"
            )

    def _rebuild_daily(self, spec: TableSpec, columns: list[Column]) -> None:
        new = f"_daily_{spec.name}_{uuid.uuid4().hex[:8]}"
        self.client.command(create_table_sql(self.database, TableSpec(**{**spec.__dict__, "name": new}), columns))
        try:
            names = ", ".join(_bq(c.name) for c in columns)
            self.client.command(f"INSERT INTO {self._table(new)} ({names}) SELECT {names} FROM {self._table(spec.name)}")
            self.client.command(f"EXCHANGE TABLES {self._table(new)} AND {self._table(spec.name)}")
        finally:
            self.client.command(f"DROP TABLE IF EXISTS {self._table(new)}")
        self.actions.append(f"repartitioned {self.qualified_name(spec)} by day")

    def _drop_stale_staging(self, table: str) -> None:
        """Staging tables left by a killed process (never by a live load: with chDB only this process has the engine;
        on a server only those older than ``stale_staging_minutes``)."""
        age = 0 if self.warehouse.embedded else self.warehouse.stale_staging_minutes
        rows = self.client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {prefix:String}) "
            "AND metadata_modification_time <= now() - toIntervalMinute({age:UInt32})",
            parameters={"db": self.database, "prefix": f"_staging_{table}_", "age": age},
        ).result_rows
        for (name,) in rows:
            self.client.command(f"DROP TABLE IF EXISTS {self._table(name)}")

    # ---- the slice ---------------------------------------------------------------------------------------------------
    def delete(self, spec: TableSpec, days: Optional[list[str]]) -> None:
        """Nothing to delete ahead: :meth:`replace` swaps the days' partitions (the old parts go with the swap)."""
        self.table = self.qualified_name(spec)
        self.target = f"loading {'partition(s) ' + str(days) if days is not None else 'the table'}"

    def replace(self, spec: TableSpec, columns: list[Column], table: pa.Table,
                days: Optional[list[str]]) -> tuple[int, dict[str, Any]]:
        staging = f"_staging_{spec.name}_{uuid.uuid4().hex[:8]}"
        self.client.command(f"CREATE TABLE {self._table(staging)} AS {self._table(spec.name)}")
        try:
            self.phase = "inserting into the staging table"
            if table.num_rows:
                self.client.insert_arrow(staging, insert_ready(table, columns), database=self.database)
            self.phase = "swapping the new content in"
            swapped = self._swap(spec, staging, days)
        finally:
            self.client.command(f"DROP TABLE IF EXISTS {self._table(staging)}")
        self.phase = "recounting"
        rows = self.stats(spec, days)["rows"]
        return rows, {"swap": swapped, "engine": "chdb (embedded)" if self.warehouse.embedded else "server"}

    def _swap(self, spec: TableSpec, staging: str, days: Optional[list[str]]) -> str:
        target, stage = self._table(spec.name), self._table(staging)
        if days is None:
            self.client.command(f"EXCHANGE TABLES {stage} AND {target}")
            return "EXCHANGE TABLES"
        ids = sorted({partition_id(d) for d in days})
        staged = {
            pid for (pid,) in self.client.query(
                "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} AND table = {t:String} "
                "AND active", parameters={"db": self.database, "t": staging},
            ).result_rows
        }
        for pid in ids:
            if pid in staged:
                self.client.command(f"ALTER TABLE {target} REPLACE PARTITION ID '{pid}' FROM {stage}")
            else:
                self.client.command(f"ALTER TABLE {target} DROP PARTITION ID '{pid}'")
        return f"REPLACE PARTITION ({', '.join(ids)})"

    def _filter(self, spec: TableSpec, days: Optional[list[str]]) -> str:
        if days is None or not spec.partition_expr:
            return ""
        return f" WHERE toDate({_bq(spec.partition_expr)}) IN ({', '.join(repr(d) for d in days)})"

    def stats(self, spec: TableSpec, days: Optional[list[str]]) -> dict[str, Any]:
        if not self._existing_columns(spec.name):
            return {"rows": 0, "sums": {c: 0.0 for c in spec.sum_columns}, "table_exists": False}
        sums = "".join(f", toFloat64(sum({_bq(c)}))" for c in spec.sum_columns)
        row = self.client.query(
            f"SELECT count(){sums} FROM {self._table(spec.name)}{self._filter(spec, days)}").result_rows[0]
        return {"rows": int(row[0]), "sums": {c: float(v) for c, v in zip(spec.sum_columns, row[1:])},
                "table_exists": True}

    def select_arrow(self, spec: TableSpec, columns: list[Column], days: Optional[list[str]]) -> pa.Table:
        self.table, self.target = self.qualified_name(spec), "reading"
        if not self._existing_columns(spec.name):
            raise WarehouseError(f"clickhouse {self.qualified_name(spec)} does not exist: materialize it first")
        table = self.client.query_arrow(
            f"SELECT {', '.join(_bq(c.name) for c in columns)} FROM {self._table(spec.name)}"
            f"{self._filter(spec, days)}", use_strings=True,
        )
        return _decode_ch_arrow(table, columns)


class ClickHouseIOManager(dg.ConfigurableIOManagerFactory):
    """The marts' IO manager for ClickHouse: Dagster's ``DbIOManager`` with the warehouse's client and the pandas type
    handler (``engines/warehouse.py``), sessions from the ``warehouse`` resource."""

    warehouse: ClickHouseWarehouse

    def create_io_manager(self, context) -> DbIOManager:
        return build_io_manager(self.warehouse, "ClickHouseIOManager")


def insert_ready(table: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """The Arrow table as ClickHouse's Arrow input parses it fastest: 32-bit string offsets (kept 64-bit if a column
    holds > 2 GiB), and LowCardinality columns dictionary-encoded (they map onto the column's dictionary directly
    instead of being hashed value by value)."""
    try:
        table = table.cast(pa.schema([
            pa.field(f.name, pa.string() if pa.types.is_large_string(f.type) else f.type) for f in table.schema]))
    except (pa.ArrowInvalid, OverflowError):
        pass
    for i, col in enumerate(columns):
        if col.type.startswith("LowCardinality("):
            table = table.set_column(i, col.name, pc.dictionary_encode(table.column(i)))
    return table


def _decode_ch_arrow(table: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """ClickHouse's Arrow output sends Date as UInt16 days and DateTime as UInt32 seconds since the epoch: give them
    back their Arrow temporal types."""
    for i, col in enumerate(columns):
        arr = table.column(i)
        if pa.types.is_integer(arr.type):
            if col.kind == "date":
                table = table.set_column(i, col.name, pc.cast(pc.cast(arr, pa.int32()), pa.date32()))
            elif col.kind.startswith("timestamp"):
                table = table.set_column(i, col.name, pc.cast(pc.cast(arr, pa.int64()), ARROW_TYPES[col.kind]))
    return table


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:500]
