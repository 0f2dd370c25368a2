"""Spark and Hive: sessions on the stack's Spark Connect server, the Hive catalog helpers the lake assets use, and the
Hive IO manager that stores derived assets as partitioned parquet tables.

* :class:`HiveCatalog` — plain helper around a SparkSession and one Hive database: register the raw external CSV
  tables and their partitions, create derived tables from declared schemas, write one or more ``dt`` partitions
  (replacing exactly them), read partitions back, count rows/sums for metadata.
* :class:`HiveResource` — a Dagster resource giving assets a :class:`HiveCatalog` (and the lake locations of the raw
  data, from the layout contract).
* :class:`HiveIOManager` — ``handle_output`` takes a Spark DataFrame and writes table ``<database>.<asset name>``
  (parquet, partitioned by ``dt``):

  - one partition: ``INSERT OVERWRITE TABLE t PARTITION (dt='D') SELECT …`` — replaces D, and empties it when the
    new output has no rows;
  - a time-window run: dynamic partition overwrite (``INSERT OVERWRITE … PARTITION (dt)``), and the window's
    partitions absent from the output are overwritten empty — rows outside the window are refused;
  - unpartitioned: ``INSERT OVERWRITE TABLE t SELECT …``.

  So a re-run never duplicates rows. Metadata as every IO manager here reads it (``engines/metadata.py``):
  ``partition_expr`` (``dt``, the tables' partition column), ``dagster/column_schema`` (the declared columns: the
  output must have exactly them), ``sum_columns`` (sums reported with ``dagster/row_count``). ``load_input`` returns
  a lazy Spark DataFrame of the upstream table restricted to the input's partitions and to the ``columns`` its
  ``AssetIn`` asks for (after ``REFRESH TABLE``: Spark caches file listings per session, and another process may have
  rewritten the partition).

Spark sessions come from ``SparkSession.builder.remote(spark_remote).getOrCreate()`` (a Spark Connect client; one per
process, shared — never stopped here). A ``spark_remote`` that is not ``sc://…`` (e.g. ``local[2]``) builds a classic
local session with Hive support, for development without the stack.
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from functools import reduce
from typing import Any, Iterable, Sequence

import dagster as dg

from tv_platform.engines import metadata
from tv_platform.lake import tables as T

# pyspark 4.3 warns on every toPandas() that it does not fully support pandas 3; what we use of it (Arrow conversion of
# declared column types) is tested against pandas 3.1 in every mart and analytics test
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)


class HiveError(RuntimeError):
    pass


class MetastoreUnavailable(HiveError):
    """The Hive metastore service the Spark server is a client of does not answer."""


def metastore_unreachable(uri: str, timeout: float = 3.0) -> str | None:
    """Why the metastore at ``uri`` (``thrift://host:port``) cannot be reached, or None when its port answers."""
    import socket
    from urllib.parse import urlparse

    u = urlparse(uri)
    try:
        with socket.create_connection((u.hostname or "127.0.0.1", u.port or 9083), timeout=timeout):
            return None
    except OSError as e:
        return f"{type(e).__name__}: {e}"


def spark_session(remote: str):
    """The process's Spark session on ``remote`` (``sc://host:port``), created on first use and shared."""
    from pyspark.sql import SparkSession

    if remote.startswith("sc://"):
        return SparkSession.builder.remote(remote).getOrCreate()
    return (
        SparkSession.builder.master(remote)
        .config("spark.sql.catalogImplementation", "hive")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


@contextlib.contextmanager
def session_conf(spark, **values: str):
    """Set SQL confs on a session for the duration of a block, restoring what was there:
    ``with session_conf(spark, **{"spark.sql.shuffle.partitions": "8"}): ...``."""
    before = {}
    for k, v in values.items():
        try:
            before[k] = spark.conf.get(k)
        except Exception:  # noqa: BLE001 - unset
            before[k] = None
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def _sql_str(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


class HiveCatalog:
    """One Hive database seen through a SparkSession."""

    def __init__(self, spark, database: str, database_location: str | None = None, metastore_uri: str = ""):
        self.spark = spark
        self.database = database
        self.database_location = database_location or None
        self.metastore_uri = metastore_uri
        self._database_ready = False

    # ---- the metastore service ---------------------------------------------------------------------------------
    def check_metastore(self, error: BaseException | None = None) -> None:
        """With a metastore service (``metastore_uri``): raise :class:`MetastoreUnavailable`, naming it, when it does
        not answer — Spark's own errors then say e.g. "Failed to find the data source: parquet" or "Unable to
        instantiate SessionHiveMetaStoreClient" after half a minute of retries. ``error``: what failed (chained)."""
        if not self.metastore_uri:
            return
        reason = metastore_unreachable(self.metastore_uri)
        if reason:
            raise MetastoreUnavailable(
                f"the Hive metastore {self.metastore_uri} does not answer ({reason}): the lake's tables cannot be read "
                f"or changed. Start it (on one machine: `tv-platform stack up --profile cluster`) or correct "
                f"TVP_HIVE_METASTORE_URI, then re-execute the run — a step rewrites its partitions whole"
            ) from error

    @contextlib.contextmanager
    def _metastore_named(self):
        """Re-raise a failure inside the block as :class:`MetastoreUnavailable` when the metastore is down."""
        try:
            yield
        except HiveError:
            raise
        except Exception as e:  # noqa: BLE001 - re-raised as it is unless the metastore explains it
            self.check_metastore(e)
            raise

    # ---- names -------------------------------------------------------------------------------------------------
    def qualified(self, table: str) -> str:
        return f"`{self.database}`.`{table}`"

    def ensure_database(self) -> None:
        if not self._database_ready:
            self.spark.sql(T.create_database_sql(self.database, self.database_location))
            self._database_ready = True

    def table_exists(self, table: str) -> bool:
        return bool(self.spark.catalog.tableExists(f"{self.database}.{table}"))

    def require(self, table: str, materialize: str) -> None:
        """A step's Failure when ``table`` does not exist, naming what to ``materialize`` first."""
        if not self.table_exists(table):
            raise dg.Failure(f"{self.database}.{table} does not exist: materialize {materialize} first")

    def table_columns(self, table: str) -> list[tuple[str, str]]:
        return [(f.name, f.dataType.simpleString()) for f in self.spark.table(self.qualified(table)).schema.fields]

    def refresh(self, table: str) -> None:
        """Drop Spark's cached file listing of a table (new files landed, or another session rewrote a partition)."""
        self.spark.sql(f"REFRESH TABLE {self.qualified(table)}")

    def drop_database(self) -> None:
        self.spark.sql(f"DROP DATABASE IF EXISTS `{self.database}` CASCADE")
        self._database_ready = False

    # ---- raw external tables --------------------------------------------------------------------------------------
    def register_events_table(self, table: str, location: str) -> None:
        """External CSV table of raw events (``tv_dataset`` / ``tv_stream``) over ``location`` (dt=… directories)."""
        self.ensure_database()
        self.spark.sql(T.create_events_table_sql(self.database, table, location))

    def register_reference_table(self, table: str, location: str) -> None:
        """External CSV table ``tv_channels`` / ``tv_users`` over a reference directory."""
        self.ensure_database()
        self.spark.sql(T.create_reference_table_sql(self.database, table, location))
        self.refresh(table)

    def add_partitions(self, table: str, days: Iterable[str], location: str) -> list[str]:
        """Register ``dt`` partitions (idempotent: ``ADD IF NOT EXISTS``) at ``location/dt=…``, then refresh the
        table. A directory that does not exist yet is created empty by the metastore."""
        days = list(days)
        for day in days:
            self.spark.sql(T.add_partition_sql(self.database, table, day, location))
        self.refresh(table)
        return days

    def partitions(self, table: str) -> list[str]:
        rows = self.spark.sql(f"SHOW PARTITIONS {self.qualified(table)}").collect()
        return sorted(r[0].split("=", 1)[1] for r in rows)

    def create_sessions_view(self) -> None:
        self.ensure_database()
        self.spark.sql(T.sessions_view_sql(self.database))

    # ---- derived tables ---------------------------------------------------------------------------------------------
    def ensure_table(self, table: str, columns: Sequence[tuple[str, str]], partitioned: bool = True) -> None:
        """Create a derived parquet table from declared columns (without ``dt``) if it does not exist; if it does,
        its columns must be the declared ones."""
        self.ensure_database()
        if not self.table_exists(table):
            self.spark.sql(T.create_derived_table_sql(self.database, table, list(columns), partitioned))
            return
        have = [c for c, _ in self.table_columns(table) if not (partitioned and c == T.PARTITION_COLUMN)]
        want = [c for c, _ in columns]
        if have != want:
            raise HiveError(
                f"table {self.database}.{table} has columns {have}, the asset now writes {want}: "
                f"migrate or drop the table (DROP TABLE {self.database}.{table}) and re-materialize"
            )

    def write(self, table: str, frame, partitions: Sequence[str] | None,
              sums: Sequence[str] = ()) -> dict[str, Any]:
        """Write ``frame`` to ``table``, replacing exactly ``partitions`` (``None``: an unpartitioned table, replaced
        whole). Returns metadata: table, partitions, row count and sums, read back from the table."""
        with self._metastore_named():
            return self._write(table, frame, partitions, sums)

    def _write(self, table: str, frame, partitions: Sequence[str] | None, sums: Sequence[str]) -> dict[str, Any]:
        spark = frame.sparkSession
        fields = [(f.name, f.dataType.simpleString()) for f in frame.schema.fields]
        data_columns = [(c, t) for c, t in fields if c != T.PARTITION_COLUMN]
        has_dt = len(data_columns) != len(fields)
        partitioned = partitions is not None
        if partitioned and not partitions:
            raise HiveError(f"{table}: a partitioned write needs at least one partition key")
        if partitioned and len(partitions) > 1 and not has_dt:
            raise HiveError(f"{table}: a multi-partition write needs a `{T.PARTITION_COLUMN}` column in the output")
        self.ensure_table(table, data_columns, partitioned)
        table_types = dict(self.table_columns(table))
        select = ", ".join(f"CAST(`{c}` AS {table_types[c]}) AS `{c}`" for c, _ in data_columns)
        target = self.qualified(table)
        view = f"tvp_out_{uuid.uuid4().hex[:12]}"
        frame.createOrReplaceTempView(view)
        try:
            if not partitioned:
                spark.sql(f"INSERT OVERWRITE TABLE {target} SELECT {select} FROM `{view}`")
            else:
                # Always a dynamic partition overwrite, also for one day: Spark then writes into a staging directory
                # of the job's own (.spark-staging-<job>) and moves the partitions in at commit. A static
                # ``PARTITION (dt='…')`` overwrite writes through ``<table>/_temporary``, which two runs writing
                # different days of one table at once (a backfill beside the automation sensor's run for today)
                # share: the first commit deletes the other's files ("_temporary/0 does not exist", a lost day).
                if len(partitions) == 1:  # one day: its rows, whatever a dt column of the frame says
                    present = {partitions[0]} if frame.limit(1).count() else set()
                    day = f"{_sql_str(partitions[0])} AS `{T.PARTITION_COLUMN}`"
                else:
                    present = {r[0] for r in spark.sql(f"SELECT DISTINCT `{T.PARTITION_COLUMN}` FROM `{view}`").collect()}
                    outside = sorted(str(p) for p in present - set(partitions))
                    if outside:
                        raise HiveError(f"{table}: output has rows for partitions {outside[:5]} outside the run's "
                                        f"{partitions[0]}..{partitions[-1]}")
                    day = f"`{T.PARTITION_COLUMN}`"
                with session_conf(spark, **{"spark.sql.sources.partitionOverwriteMode": "dynamic"}):
                    spark.sql(f"INSERT OVERWRITE TABLE {target} PARTITION ({T.PARTITION_COLUMN}) "
                              f"SELECT {select}, {day} FROM `{view}`")
                for p in partitions:
                    if p not in present:  # the run's days with no rows now: empty them (no write job involved)
                        self.empty_partition(table, p)
        finally:
            spark.catalog.dropTempView(view)
        return self.stats(table, partitions, sums, spark=spark)

    def table_kind(self, table: str) -> tuple[str, dict[str, str]]:
        """The metastore's type of ``table`` (``MANAGED`` / ``EXTERNAL`` / ``VIEW``) and its table properties."""
        info = {r["col_name"]: r["data_type"] for r in
                self.spark.sql(f"DESCRIBE TABLE EXTENDED {self.qualified(table)}").collect()}
        props = {}
        for item in (info.get("Table Properties") or "").strip("[]").split(", "):
            key, _, value = item.partition("=")
            if key:
                props[key.strip()] = value.strip()
        return (info.get("Type") or "").upper(), props

    def empty_partition(self, table: str, day: str) -> None:
        """Partition ``day`` of ``table`` exists and holds no rows (what a day without output is).

        A Hive 4 metastore (the cluster profile's, or an operator's) keeps the tables Spark creates as managed ones
        as EXTERNAL with ``external.table.purge=TRUE`` (its default metadata transformer: ``TRANSLATED_TO_EXTERNAL``),
        and Spark refuses ``TRUNCATE`` on an external table; there, dropping the partition deletes its files (the
        purge) and it is added back empty."""
        spec = f"PARTITION ({T.PARTITION_COLUMN}={_sql_str(day)})"
        kind, props = self.table_kind(table)
        if kind == "EXTERNAL":
            if props.get("external.table.purge", "").upper() != "TRUE":
                raise HiveError(f"{self.database}.{table} is an external table without external.table.purge: the "
                                f"platform will not delete the files of its partition {day}; empty it by hand or "
                                f"recreate the table as a managed one")
            self.spark.sql(f"ALTER TABLE {self.qualified(table)} DROP IF EXISTS {spec}")
            self.spark.sql(f"ALTER TABLE {self.qualified(table)} ADD {spec}")
            return
        self.spark.sql(f"ALTER TABLE {self.qualified(table)} ADD IF NOT EXISTS {spec}")
        self.spark.sql(f"TRUNCATE TABLE {self.qualified(table)} {spec}")

    def stats(self, table: str, partitions: Sequence[str] | None = None, sums: Sequence[str] = (),
              spark=None) -> dict[str, Any]:
        """Row count and sums of columns over the given partitions, from the table itself."""
        spark = spark or self.spark
        where = ""
        if partitions is not None:
            where = f" WHERE `{T.PARTITION_COLUMN}` IN ({', '.join(_sql_str(p) for p in partitions)})"
        exprs = ["count(*) AS `rows`"] + [f"sum(`{c}`) AS `sum_{c}`" for c in sums]
        row = spark.sql(f"SELECT {', '.join(exprs)} FROM {self.qualified(table)}{where}").collect()[0]
        out: dict[str, Any] = {
            "table": f"{self.database}.{table}",
            "rows": int(row["rows"]),
            "dagster/row_count": int(row["rows"]),
        }
        if partitions is not None:
            out["partitions"] = (partitions[0] if len(partitions) == 1
                                 else f"{partitions[0]}..{partitions[-1]} ({len(partitions)})")
        for c in sums:
            v = row[f"sum_{c}"]
            out[f"sum_{c}"] = float(v) if v is not None else 0.0
        return out

    def read(self, table: str, partitions: Sequence[str] | None = None):
        """A lazy DataFrame of ``table`` restricted to ``partitions`` (all when None)."""
        from pyspark.sql import functions as F

        with self._metastore_named():
            self.refresh(table)
            frame = self.spark.table(self.qualified(table))
        if partitions is not None:
            frame = frame.where(F.col(T.PARTITION_COLUMN).isin(list(partitions)))
        return frame


def union_of_days(frames: list):
    """The frames of a range's days (one per day, same columns) as one frame to write. With more than one, each day
    is computed on its own first (``localCheckpoint``: its rows kept by the Spark server for the write): a union of
    many days' plans — the audience measures have a dozen joins a day — is one plan Spark optimises and runs as a
    whole, and 24 days of it (the demo's forecast history) ran the server out of execution memory
    (``UNABLE_TO_ACQUIRE_MEMORY``), while each day alone is small."""
    if len(frames) == 1:
        return frames[0]
    return reduce(lambda a, b: a.unionByName(b), [f.localCheckpoint() for f in frames])


def column_schema(frame) -> dg.TableSchema:
    return dg.TableSchema(columns=[dg.TableColumn(f.name, f.dataType.simpleString()) for f in frame.schema.fields])


class HiveResource(dg.ConfigurableResource):
    """The lake's Hive database on the Spark Connect server, for assets that register or read tables themselves."""

    spark_remote: str
    database: str = "tv"
    lake_url: str = "hdfs://127.0.0.1:8020"
    """File system of the lake (``TVP_HDFS_URL``; ``file:///dir`` works too)."""
    lake_root: str = "/tv_platform"
    """Directory of the lake inside it (``TVP_LAKE_ROOT``)."""
    database_location: str = ""
    """Where the database's managed tables live; empty = ``<lake>/<root>/warehouse/<database>.db``."""
    webhdfs_url: str = "http://127.0.0.1:9870"
    """WebHDFS of the lake (to see which raw partition directories exist before registering them)."""
    hdfs_user: str = "tv_platform"
    metastore_uri: str = ""
    """``thrift://host:port`` of the Hive metastore service the Spark server uses (``TVP_HIVE_METASTORE_URI``):
    probed when a step opens the catalog, so that an outage fails the step naming it; empty = the server's own."""

    def fs(self):
        from tv_platform.engines.hdfs import LakeFS

        return LakeFS(url=self.lake_url, webhdfs_url=self.webhdfs_url, user=self.hdfs_user)

    def raw_partition_path(self, table: str, day: str) -> str:
        """Path inside the lake of a raw partition directory (layout: ``<root>/raw/<source>/dt=YYYY-MM-DD``)."""
        return f"/{self.lake_root.strip('/')}/raw/{table}/{T.PARTITION_COLUMN}={day}"

    def existing_raw_days(self, table: str, days: Iterable[str]) -> list[str]:
        """The days whose raw partition directory of ``table`` exists in the lake."""
        fs = self.fs()
        return [d for d in days if fs.exists(self.raw_partition_path(table, d))]

    def locations(self) -> T.LakeLocations:
        return T.LakeLocations.under(self.lake_url, self.lake_root)

    def resolved_database_location(self) -> str:
        return self.database_location or f"{self.locations().warehouse}/{self.database}.db"

    def session(self):
        return spark_session(self.spark_remote)

    def catalog(self) -> HiveCatalog:
        cat = HiveCatalog(self.session(), self.database, self.resolved_database_location(), self.metastore_uri)
        cat.check_metastore()
        return cat

    # conveniences used by the lake assets
    def register_raw_tables(self, catalog: HiveCatalog | None = None) -> HiveCatalog:
        """Create (if missing) every raw external table: tv_dataset, tv_stream, tv_channels, tv_users."""
        cat = catalog or self.catalog()
        loc = self.locations()
        for table in T.EVENT_SOURCES:
            cat.register_events_table(table, loc.of(table))
        for table in T.REFERENCE_TABLES:
            cat.register_reference_table(table, loc.of(table))
        return cat


class HiveIOManager(dg.ConfigurableIOManager):
    """Stores a Spark DataFrame as the Hive table ``<database>.<asset name>`` (parquet, partitioned by ``dt`` when the
    asset is partitioned), replacing exactly the run's partitions; loads inputs as lazy DataFrames of the upstream
    partitions. Asset metadata ``hive/table`` overrides the table name; the rest is the platform's common metadata
    (``partition_expr``, ``dagster/column_schema``, ``sum_columns``, ``columns`` on inputs)."""

    spark_remote: str
    database: str = "tv"
    database_location: str = ""
    """Location of the database if the IO manager creates it (keep it equal to HiveResource's)."""
    metastore_uri: str = ""
    """As :attr:`HiveResource.metastore_uri`."""

    def catalog(self) -> HiveCatalog:
        cat = HiveCatalog(spark_session(self.spark_remote), self.database, self.database_location or None,
                          self.metastore_uri)
        cat.check_metastore()
        return cat

    @staticmethod
    def table_name(asset_key: dg.AssetKey, metadata: dict | None) -> str:
        md = metadata or {}
        return str(md.get("hive/table") or "_".join(asset_key.path))

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        if obj is None:
            return
        md = dict(context.definition_metadata or {})
        what = context.asset_key.to_user_string()
        table = self.table_name(context.asset_key, md)
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else None
        if partitions is not None and metadata.partition_expr(md, what) != T.PARTITION_COLUMN:
            raise HiveError(f"{what}: the lake's tables are partitioned by {T.PARTITION_COLUMN!r}, the asset declares "
                            f"partition_expr {metadata.partition_expr(md, what)!r}")
        declared = metadata.declared_columns(md)
        written = [c for c in obj.columns if c != T.PARTITION_COLUMN]
        if declared is not None and written != [c for c in declared if c != T.PARTITION_COLUMN]:
            raise HiveError(f"{what}: the output has columns {written}, the asset declares {list(declared)}")
        meta = self.catalog().write(table, obj, partitions, metadata.sum_columns(md))
        meta["dagster/column_schema"] = column_schema(obj)
        context.add_output_metadata(meta)

    def load_input(self, context: dg.InputContext):
        upstream_md = dict(context.upstream_output.definition_metadata or {}) if context.upstream_output else {}
        table = self.table_name(context.asset_key, upstream_md)
        partitions = list(context.asset_partition_keys) if context.has_asset_partitions else None
        catalog = self.catalog()
        catalog.require(table, context.asset_key.to_user_string())
        frame = catalog.read(table, partitions)
        selected = metadata.selected_columns(context)
        return frame.select(*selected) if selected else frame


def lake_resources(settings=None, database: str | None = None) -> dict[str, Any]:
    """The resources the lake assets need: ``hive`` and ``hive_io_manager`` (merge into the definitions' resources)."""
    from tv_platform.settings import get_settings

    s = settings or get_settings()
    hive = HiveResource(spark_remote=s.spark_remote, database=database or s.hive_database, lake_url=s.hdfs_url,
                        lake_root=s.lake_root, webhdfs_url=s.webhdfs_url, hdfs_user=s.hdfs_user,
                        metastore_uri=s.hive_metastore_uri)
    io = HiveIOManager(spark_remote=s.spark_remote, database=hive.database,
                       database_location=hive.resolved_database_location(), metastore_uri=s.hive_metastore_uri)
    return {"hive": hive, "hive_io_manager": io}
