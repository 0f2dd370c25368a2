"""ClickHouse warehouse: the marts' IO manager over clickhouse-connect — the stack's embedded engine (``chdb:///path``)
by default, a server by ``http(s)://`` URL with the same code.

What a mart declares (asset metadata, never inferred from pandas)::

    columns           {name: ClickHouse type}  e.g. {"dt": "Date", "channel_name": "LowCardinality(String)",
                      "start": "DateTime('UTC')", "hours": "Float64"}
    partition_column  the Date column a daily partition key selects (``dt``); absent for unpartitioned tables
    partition_by      "day" (PARTITION BY dt) or "month" (PARTITION BY toYYYYMM(dt))
    order_by          the MergeTree sorting key (list of non-Nullable columns)
    sum_columns       numeric columns summed into the output metadata (what the consistency checks compare)
    table             table name (default: the last component of the asset key)

Overwriting a partition is atomic and idempotent (chosen approach: staging table + ``REPLACE PARTITION``):

1. ``CREATE TABLE IF NOT EXISTS`` the mart (MergeTree), reconcile its columns with the declaration;
2. ``CREATE TABLE _staging_<table>_<random> AS <table>`` — same structure, same partitioning;
3. insert the frame (Arrow, cast to the declared types) into the staging table; with monthly partitions also copy in
   the *other* days of each touched month from the mart;
4. per touched ClickHouse partition, ``ALTER TABLE t REPLACE PARTITION ID '<id>' FROM staging`` — an atomic swap of
   the partition's parts (or ``DROP PARTITION ID`` when the new content is empty: ClickHouse refuses to replace from
   an empty source);
5. drop the staging table (always).

A failure before step 4 (bad value, lost server, engine held by another process) leaves the mart untouched; readers
never see a half-written partition. Unpartitioned tables are swapped whole with ``EXCHANGE TABLES``.

Timestamps: the lake holds naive local wall-clock times; they are stored as ``DateTime('UTC')`` by convention so no
server or session time zone shifts them (``toHour(start)`` is the wall-clock hour everywhere).

The embedded engine admits one process at a time: every operation opens a client (waiting politely, up to
``lock_timeout`` seconds, while another process holds the data directory), does its work and closes it.
"""

import dataclasses
import re
import time
import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Optional, Sequence
from urllib.parse import urlparse

import dagster as dg
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tv_platform.engines.greenplum import (
    ARROW_TYPES,
    columns_to_add,
    Column,
    TableSpec,
    WarehouseError,
    arrow_to_pandas,
    check_identifier,
    check_rows_in_partitions,
    conform_arrow,
    output_metadata,
    partition_keys_of,
)

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
    if not spec.partition_column:
        return None
    col = next(c for c in columns if c.name == spec.partition_column)
    if col.nullable or col.kind not in ("date", "timestamp_s"):
        raise WarehouseError(
            f"{spec.name}: the partition column {col.name!r} must be a non-Nullable Date or DateTime, it is {col.type}"
        )
    day = _bq(col.name) if col.kind == "date" else f"toDate({_bq(col.name)})"
    return day if spec.partition_by == "day" else f"toYYYYMM({_bq(col.name)})"


def partition_id(spec: TableSpec, key: str) -> str:
    """ClickHouse's partition ID of the day ``key`` (YYYY-MM-DD): YYYYMMDD for daily, YYYYMM for monthly partitions."""
    compact = key.replace("-", "")
    return compact if spec.partition_by == "day" else compact[:6]


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


class ClickHouseIOManager(dg.ConfigurableIOManager):
    """Marts in ClickHouse (chDB locally): MergeTree tables partitioned by day or month, each daily partition replaced
    atomically through a staging table. ``load_input`` reads the partition(s) back as pandas; ``partition_stats``
    recounts rows and sums (for checks)."""

    url: str
    database: str = "tv_marts"
    lock_timeout: float = 60.0
    allow_add_columns: bool = True
    stale_staging_minutes: int = 60

    # ---- client ----------------------------------------------------------------------------------------------------
    @property
    def embedded(self) -> bool:
        return self.url.startswith("chdb:")

    def _where(self) -> str:
        """The URL without credentials (for messages)."""
        if self.embedded:
            return self.url
        parsed = urlparse(self.url)
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}".rstrip(":")

    @contextmanager
    def client(self) -> Iterator[Any]:
        """An open client on the mart database (created if missing); closed on exit. With chDB, waits up to
        ``lock_timeout`` seconds while another process holds the engine's data directory."""
        from tv_platform.settings import get_settings
        from tv_platform.stack.base import StackError
        from tv_platform.stack.clickhouse import clickhouse_client

        database = check_identifier(self.database, "ClickHouse database")
        settings = dataclasses.replace(get_settings(), clickhouse_url=self.url, clickhouse_database=database)
        manager = clickhouse_client(settings, database=None, timeout=self.lock_timeout)
        try:
            client = manager.__enter__()
        except StackError as exc:
            raise WarehouseError(f"ClickHouse {self._where()} is unavailable: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - connection refused, DNS, auth, engine failed to open
            raise WarehouseError(
                f"ClickHouse {self._where()} is unreachable: {exc.__class__.__name__}: {_first_line(exc)}"
            ) from exc
        try:
            client.command(f"CREATE DATABASE IF NOT EXISTS {_bq(database)}")
            yield client
        finally:
            manager.__exit__(None, None, None)  # closes the client (and releases the chDB directory)

    def _columns(self, spec: TableSpec) -> list[Column]:
        return [parse_ch_type(name, declared) for name, declared in spec.columns.items()]

    def _table(self, name: str) -> str:
        return f"{_bq(self.database)}.{_bq(name)}"

    # ---- DDL -------------------------------------------------------------------------------------------------------
    def ensure_table(self, client, spec: TableSpec, columns: list[Column]) -> list[str]:
        existing = self._existing_columns(client, spec.name)
        if not existing:
            client.command(create_table_sql(self.database, spec, columns))
            return [f"created table {self.database}.{spec.name}"]
        table = f"{self.database}.{spec.name}"
        self._check_keys(client, spec, columns)
        actions = []
        for col in columns_to_add(
            table, existing, columns, self.allow_add_columns,
            retype_sql="ALTER TABLE {table} MODIFY COLUMN {name} {type}",
            required_label="",
            required_hint="a non-Nullable column cannot be added to a table whose earlier rows have no value for it "
                          "(they would read 0 or '') — declare it Nullable(...), or migrate the table first",
        ):
            client.command(f"ALTER TABLE {self._table(spec.name)} ADD COLUMN IF NOT EXISTS {_bq(col.name)} {col.type}")
            actions.append(f"added column {col.name} {col.type}")
        return actions

    def _check_keys(self, client, spec: TableSpec, columns: list[Column]) -> None:
        """An existing table must be partitioned and sorted as declared: partition IDs are computed from the
        declaration, so a table partitioned otherwise would be swapped wrongly."""
        want_partition = (partition_expression(spec, columns) or "").replace("`", "")
        want_sorting = ", ".join(spec.order_by)
        have_partition, have_sorting = client.query(
            "SELECT partition_key, sorting_key FROM system.tables WHERE database = {db:String} AND name = {t:String}",
            parameters={"db": self.database, "t": spec.name},
        ).result_rows[0]
        if (have_partition, have_sorting) != (want_partition, want_sorting):
            raise WarehouseError(
                f"table {self.database}.{spec.name} is PARTITION BY {have_partition or '()'} ORDER BY "
                f"({have_sorting}) but the asset declares PARTITION BY {want_partition or '()'} ORDER BY "
                f"({want_sorting}): recreate the table (a new table with the declared keys, INSERT … SELECT, "
                "EXCHANGE TABLES) or fix the declaration"
            )

    def _existing_columns(self, client, table: str) -> dict[str, str]:
        result = client.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} ORDER BY position",
            parameters={"db": self.database, "t": table},
        )
        return {name: typ for name, typ in result.result_rows}

    def _drop_stale_staging(self, client, table: str) -> None:
        """Staging tables left by a killed process (never by a live load: with chDB only this process has the engine;
        on a server only those older than ``stale_staging_minutes``)."""
        age = 0 if self.embedded else self.stale_staging_minutes
        rows = client.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND startsWith(name, {prefix:String}) "
            "AND metadata_modification_time <= now() - toIntervalMinute({age:UInt32})",
            parameters={"db": self.database, "prefix": f"_staging_{table}_", "age": age},
        ).result_rows
        for (name,) in rows:
            client.command(f"DROP TABLE IF EXISTS {self._table(name)}")

    # ---- load ------------------------------------------------------------------------------------------------------
    def write_frame(self, spec: TableSpec, frame: pd.DataFrame, keys: Optional[list[str]]) -> dict[str, Any]:
        started = time.perf_counter()
        what = f"clickhouse {self.database}.{spec.name}"
        columns = self._columns(spec)
        if keys is not None and not spec.partition_column:
            raise WarehouseError(f"{what}: a partitioned asset must declare 'partition_column' metadata")
        if keys is not None:
            partition_expression(spec, columns)
        table = conform_arrow(frame, columns, what)
        if keys is not None:
            check_rows_in_partitions(table, next(c for c in columns if c.name == spec.partition_column), keys, what)
        target = f"partition(s) {keys}" if keys is not None else "the table"
        phase = "opening the engine"
        try:
            with self.client() as client:
                phase = "preparing the table"
                actions = self.ensure_table(client, spec, columns)
                self._drop_stale_staging(client, spec.name)
                staging = f"_staging_{spec.name}_{uuid.uuid4().hex[:8]}"
                client.command(f"CREATE TABLE {self._table(staging)} AS {self._table(spec.name)}")
                try:
                    phase = "inserting into the staging table"
                    if table.num_rows:
                        client.insert_arrow(staging, insert_ready(table, columns), database=self.database)
                    phase = "swapping the new content in"
                    swapped = self._swap(client, spec, staging, keys)
                finally:
                    client.command(f"DROP TABLE IF EXISTS {self._table(staging)}")
                phase = "recounting"
                rows, sums = self._stats(client, spec, keys)
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001 - clickhouse_connect / chdb errors
            intact = phase != "swapping the new content in"
            raise WarehouseError(
                f"{what}: loading {target} failed while {phase}: {exc.__class__.__name__}: {_first_line(exc)}. "
                + ("The mart was not modified: the previous content is intact."
                   if intact else "Some partitions may already hold the new content; re-run the load (it is idempotent).")
            ) from exc
        seconds = time.perf_counter() - started
        if rows != table.num_rows:
            raise WarehouseError(f"{what}: recount after the load found {rows} rows, {table.num_rows} were sent")
        return output_metadata(
            table=f"{self.database}.{spec.name}", keys=keys, rows=rows, sums=sums, seconds=seconds,
            extra={"ddl": ", ".join(actions) or "none", "swap": swapped,
                   "engine": "chdb (embedded)" if self.embedded else "server"},
        )

    def _swap(self, client, spec: TableSpec, staging: str, keys: Optional[list[str]]) -> str:
        target, stage = self._table(spec.name), self._table(staging)
        if keys is None:
            client.command(f"EXCHANGE TABLES {stage} AND {target}")
            return "EXCHANGE TABLES"
        ids = sorted({partition_id(spec, k) for k in keys})
        if spec.partition_by == "month":
            # the staging table must hold the whole month: copy in the days of those months that are not rewritten
            pcol = _bq(spec.partition_column)
            client.command(
                f"INSERT INTO {stage} SELECT * FROM {target} WHERE toYYYYMM({pcol}) IN ({', '.join(ids)}) "
                f"AND toDate({pcol}) NOT IN ({', '.join(repr(k) for k in keys)})"
            )
        staged = {
            pid for (pid,) in client.query(
                "SELECT DISTINCT partition_id FROM system.parts WHERE database = {db:String} AND table = {t:String} "
                "AND active", parameters={"db": self.database, "t": staging},
            ).result_rows
        }
        for pid in ids:
            if pid in staged:
                client.command(f"ALTER TABLE {target} REPLACE PARTITION ID '{pid}' FROM {stage}")
            else:
                client.command(f"ALTER TABLE {target} DROP PARTITION ID '{pid}'")
        return f"REPLACE PARTITION ({', '.join(ids)})"

    def _filter(self, spec: TableSpec, keys: Optional[list[str]]) -> str:
        if keys is None or not spec.partition_column:
            return ""
        return f" WHERE toDate({_bq(spec.partition_column)}) IN ({', '.join(repr(k) for k in keys)})"

    def _stats(self, client, spec: TableSpec, keys: Optional[list[str]]):
        sums = "".join(f", toFloat64(sum({_bq(c)}))" for c in spec.sum_columns)
        row = client.query(f"SELECT count(){sums} FROM {self._table(spec.name)}{self._filter(spec, keys)}").result_rows[0]
        return int(row[0]), {c: float(v) for c, v in zip(spec.sum_columns, row[1:])}

    def partition_stats(self, spec: TableSpec, keys: Optional[list[str]]) -> dict[str, Any]:
        try:
            with self.client() as client:
                if not self._existing_columns(client, spec.name):
                    return {"rows": 0, "sums": {c: 0.0 for c in spec.sum_columns}, "table_exists": False}
                rows, sums = self._stats(client, spec, keys)
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(f"clickhouse {self.database}.{spec.name}: recount failed: {_first_line(exc)}") from exc
        return {"rows": rows, "sums": sums, "table_exists": True}

    def read_frame(self, spec: TableSpec, keys: Optional[list[str]]) -> pd.DataFrame:
        columns = self._columns(spec)
        try:
            with self.client() as client:
                if not self._existing_columns(client, spec.name):
                    raise WarehouseError(f"clickhouse {self.database}.{spec.name} does not exist: materialize it first")
                table = client.query_arrow(
                    f"SELECT {', '.join(_bq(c.name) for c in columns)} FROM {self._table(spec.name)}"
                    f"{self._filter(spec, keys)}", use_strings=True,
                )
        except WarehouseError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise WarehouseError(f"clickhouse {self.database}.{spec.name}: read failed: {_first_line(exc)}") from exc
        return arrow_to_pandas(_decode_ch_arrow(table, columns), columns)

    # ---- Dagster ---------------------------------------------------------------------------------------------------
    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        if obj is None:
            return
        spec = TableSpec.from_context(context)
        context.add_output_metadata(self.write_frame(spec, obj, partition_keys_of(context)))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        spec = TableSpec.from_metadata(upstream.asset_key, upstream.definition_metadata)
        return self.read_frame(spec, partition_keys_of(context))


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


def clickhouse_io_manager(settings=None) -> ClickHouseIOManager:
    """The IO manager of the settings (``TVP_CLICKHOUSE_URL`` / ``TVP_CLICKHOUSE_DATABASE``). A server URL set in the
    environment (it may carry a password) is passed as ``EnvVar`` so Dagster never shows its value."""
    import os

    from tv_platform.settings import get_settings

    s = settings or get_settings()
    url = s.clickhouse_url
    if not url.startswith("chdb:") and "TVP_CLICKHOUSE_URL" in os.environ:
        url = dg.EnvVar("TVP_CLICKHOUSE_URL")
    return ClickHouseIOManager(url=url, database=s.clickhouse_database)
