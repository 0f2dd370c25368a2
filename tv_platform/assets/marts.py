"""Marts: every daily lake aggregate (and the viewing sessions, denormalized) in both warehouses, checked against the
lake.

    lake (Hive, Spark)                    Greenplum (PostgreSQL locally)     ClickHouse (chDB locally)
    viewing_sessions                 ──►  greenplum/sessions                 clickhouse/sessions
    daily_viewing                    ──►  greenplum/daily_viewing            clickhouse/daily_viewing
    channel_rating                   ──►  greenplum/channel_rating           clickhouse/channel_rating
    hourly_activity                  ──►  greenplum/hourly_activity          clickhouse/hourly_activity
    channel_weekday_hour             ──►  greenplum/channel_weekday_hour     clickhouse/channel_weekday_hour
    duration_histogram               ──►  greenplum/duration_histogram       clickhouse/duration_histogram
    user_activity                    ──►  greenplum/user_activity            clickhouse/user_activity
    forecast_daily (viewing_forecast) ─► greenplum/forecast_daily           clickhouse/forecast_daily   (unpartitioned)

Each mart is a daily-partitioned asset whose upstream is the lake asset's partition. The marts of one warehouse are one
multi-asset (``warehouse_marts``: one step per day loads every selected mart): per mart it reads the lake partition
through the ``hive`` resource, selects the declared columns in Spark, converts them with ``toPandas()`` (Arrow) and
yields the frame, which the warehouse's IO manager (``greenplum_io_manager`` / ``clickhouse_io_manager``: Dagster's
``DbIOManager``, engines/warehouse.py) writes — replacing that day atomically. Columns and types are declared here, per
warehouse, never inferred (``MARTS`` below: a dict of :class:`Mart` entries); docs/marts.md has the tables.

Each mart has the asset check ``agrees_with_lake`` per partition: the warehouse's row count and the sums of the mart's
measures (its "views" and "hours" columns), recounted in the warehouse, equal those of the lake table's partition —
counted on the frame the mart read in the same step, or, for a check run alone, recounted through Spark. Checks query
the warehouse through its resource (``greenplum`` / ``clickhouse``), never through an IO manager.

``forecast_daily`` (the analytics' forecast against the actuals, ``FORECAST``) is the one unpartitioned mart: its
assets read the Hive table through the ``hive`` resource, each materialization replaces the warehouse table whole, and
its check ``agrees_with_hive`` compares the row count and Σ hours with the Hive table. They belong to the group
``analytics`` (they run in the analytics job, after the forecast), not to the daily ``marts``.
"""

import math
import warnings
from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from tv_platform.engines.warehouse import TableSpec, table_metadata
from tv_platform.partitions import daily

GROUP = "marts"
WAREHOUSES = ("greenplum", "clickhouse")
IO_MANAGER_KEYS = {"greenplum": "greenplum_io_manager", "clickhouse": "clickhouse_io_manager"}
RESOURCE_KEYS = {"greenplum": "greenplum", "clickhouse": "clickhouse"}
"""The warehouses' resources (``GreenplumWarehouse`` / ``ClickHouseWarehouse``): what the checks query."""
KINDS = {"greenplum": {"greenplum", "postgres"}, "clickhouse": {"clickhouse"}}
POOLS = {"greenplum": None, "clickhouse": "clickhouse"}
"""ClickHouse steps share the ``clickhouse`` concurrency pool: the embedded engine admits one process at a time, and
every instance config the project ships (``dagster_home/dagster.yaml``, ``docker/dagster.yaml``) limits the pool to 1."""

# ---- column types: (Greenplum / PostgreSQL, ClickHouse) ----------------------------------------------------------------
DT = ("date not null", "Date")
DAY_TS = ("timestamp not null", "DateTime('UTC')")  # wall-clock local time, see engines/clickhouse.py
COUNT = ("bigint not null", "UInt32")
BIG = ("bigint not null", "UInt64")
FLOAT = ("double precision not null", "Float64")
RATIO = ("double precision", "Nullable(Float64)")  # averages/shares: NULL when there is nothing to divide by
CHANNEL_ID = ("integer not null", "UInt16")
USER_ID = ("integer not null", "UInt32")
SMALL = ("smallint not null", "UInt8")  # hour, weekday
RANK = ("integer not null", "UInt16")
NAME = ("text", "LowCardinality(Nullable(String))")  # channel names (left-joined: NULL for an unknown channel)
USER_NAME = ("text", "Nullable(String)")  # 10^4..10^6 distinct values: not a LowCardinality column
LABEL = ("text not null", "LowCardinality(String)")  # small closed sets: weekday names, buckets, segments, sources
TEXT = ("text not null", "String")
FLAG = ("boolean not null", "Bool")


@dataclass(frozen=True)
class Mart:
    """A mart of one lake table in both warehouses."""

    source: str  # the lake asset (and Hive table)
    columns: dict[str, tuple[str, str]]  # name -> (greenplum type, clickhouse type); dt first
    sums: tuple[str, ...]  # the measures the consistency check compares (views-like, hours-like)
    distributed_by: tuple[str, ...]  # Greenplum distribution key
    order_by: tuple[str, ...]  # ClickHouse sorting key
    description: str = ""
    partition_column: str | None = "dt"  # None: an unpartitioned table, replaced whole by every materialization
    column_docs: dict[str, str] | None = None  # name -> description (the audience marts link docs/measures.md)

    def metadata(self, warehouse: str) -> dict[str, Any]:
        """The asset metadata of the mart in one warehouse (the DbIOManager conventions, engines/warehouse.py)."""
        which = 0 if warehouse == "greenplum" else 1
        return {
            **table_metadata(
                {name: types[which] for name, types in self.columns.items()},
                partition_expr=self.partition_column, sum_columns=self.sums,
                distributed_by=self.distributed_by if warehouse == "greenplum" else (),
                order_by=self.order_by if warehouse == "clickhouse" else (),
                descriptions=self.column_docs,
            ),
            "lake_table": self.source,
        }


# ---- the audience measures per broadcast day (docs/measures.md) --------------------------------------------------------
MEASURES = "docs/measures.md"
MEASURE_DOCS = {
    "daypart": f"daypart of the broadcast day (TVP_DAYPARTS; 'all' = the whole day) — {MEASURES}#dayparts",
    "universe": f"members of the universe (reference + inferred subscribers) — {MEASURES}#universe",
    "period_minutes": f"minutes of the period (daypart × days) — {MEASURES}#ama",
    "airtime_min": f"minutes the airing owns (minute starts inside it) — {MEASURES}#programmes-and-series",
    "minutes": f"credited viewing minutes — {MEASURES}#minute-crediting",
    "all_minutes": f"all channels' credited minutes in the same period / during the airing(s) — {MEASURES}#share",
    "ama": f"AMA, average minute audience (members) — {MEASURES}#ama",
    "tvr_pct": f"TVR, AMA as % of the universe — {MEASURES}#tvr",
    "reach": f"reach, members with >= threshold consecutive minutes — {MEASURES}#reach",
    "reach_pct": f"reach as % of the universe — {MEASURES}#reach",
    "share_pct": f"share of viewing minutes, % — {MEASURES}#share",
    "ats_universe_min": f"ATS per universe member, minutes — {MEASURES}#ats",
    "ats_viewer_min": f"ATS per reached viewer, minutes — {MEASURES}#ats",
    "weekday": f"ISO weekday of the broadcast day — {MEASURES}#broadcast-day",
    "is_weekend": f"the broadcast day is a Saturday or Sunday — {MEASURES}#broadcast-day",
    "dt": f"broadcast day — {MEASURES}#broadcast-day",
}
AIRING_MEASURES = {
    "airtime_min": COUNT, "minutes": COUNT, "all_minutes": COUNT, "ama": RATIO, "tvr_pct": RATIO, "reach": COUNT,
    "reach_pct": RATIO, "share_pct": RATIO, "ats_universe_min": RATIO, "ats_viewer_min": RATIO,
}
"""The measure columns of a programme airing and of a series, in the lake tables' order."""
AUDIENCE_MARTS: dict[str, Mart] = {
    "audience_channel": Mart(
        source="audience_channel",
        columns={
            "dt": DT, "daypart": LABEL, "channel_id": CHANNEL_ID, "channel_name": NAME, "weekday": SMALL,
            "is_weekend": FLAG, "days": SMALL, "universe": COUNT, "period_minutes": COUNT, "minutes": COUNT,
            "all_minutes": COUNT, "ama": RATIO, "tvr_pct": RATIO, "reach": COUNT, "reach_pct": RATIO, "share_pct": RATIO,
            "ats_universe_min": RATIO, "ats_viewer_min": RATIO,
        },
        sums=("minutes", "reach"),
        distributed_by=("channel_id",),
        order_by=("dt", "daypart", "channel_id"),
        description=f"Audience measures per broadcast day, channel and daypart (TVR, AMA, reach, share, ATS; {MEASURES})",
        column_docs=MEASURE_DOCS,
    ),
    "audience_programme": Mart(
        source="audience_programme",
        columns={
            "dt": DT, "programme_id": TEXT, "channel_id": CHANNEL_ID, "title": TEXT, "series": ("text", "Nullable(String)"),
            "programme_start": ("timestamp", "Nullable(DateTime('UTC'))"),
            "programme_end": ("timestamp", "Nullable(DateTime('UTC'))"), "daypart": LABEL, "universe": COUNT,
            **AIRING_MEASURES,
        },
        sums=("minutes", "airtime_min"),
        distributed_by=("programme_id",),
        order_by=("dt", "channel_id", "programme_id"),
        description=f"Audience measures per programme airing of each broadcast day ({MEASURES})",
        column_docs=MEASURE_DOCS,
    ),
    "audience_series": Mart(
        source="audience_series",
        columns={
            "dt": DT, "series": TEXT, "daypart": LABEL, "airings": COUNT, "days": SMALL, "universe": COUNT, **AIRING_MEASURES,
        },
        sums=("minutes", "airtime_min"),
        distributed_by=("series",),
        order_by=("dt", "series", "daypart"),
        description=f"Audience measures per series, daypart and broadcast day, over its airings, empty ones included "
                    f"({MEASURES})",
        column_docs=MEASURE_DOCS,
    ),
}

MARTS: dict[str, Mart] = {
    "sessions": Mart(
        source="viewing_sessions",
        columns={
            "dt": DT, "session_id": TEXT, "user_id": USER_ID, "user_name": USER_NAME, "channel_id": CHANNEL_ID,
            "channel_name": NAME, "time_start": DAY_TS, "time_end": DAY_TS, "duration_s": COUNT,
            "is_zero_length": FLAG, "crosses_midnight": FLAG, "source": LABEL,
        },
        sums=("duration_s",),
        distributed_by=("session_id",),
        order_by=("channel_id", "time_start"),
        description="Viewing sessions, denormalized (user and channel names joined) — the seed's materialized view "
                    "over tv_dataset: one row per session started on the day, with start, end and duration.",
    ),
    "daily_viewing": Mart(
        source="daily_viewing",
        columns={
            "dt": DT, "views": COUNT, "viewers": COUNT, "active_users": COUNT, "hours_by_start": FLOAT,
            "hours_in_day": FLOAT, "hours_after_day": FLOAT, "hours_carried_in": FLOAT,
            "sessions_crossing_midnight": COUNT, "zero_length_views": COUNT, "avg_view_minutes": RATIO,
        },
        sums=("views", "hours_by_start", "hours_in_day"),
        distributed_by=("dt",),
        order_by=("dt",),
    ),
    "channel_rating": Mart(
        source="channel_rating",
        columns={
            "dt": DT, "rank": RANK, "channel_id": CHANNEL_ID, "channel_name": NAME, "hours": FLOAT, "views": COUNT,
            "viewers": COUNT, "hours_share": RATIO, "viewers_share": RATIO, "reach_pct": RATIO,
            "avg_view_minutes": RATIO,
        },
        sums=("views", "hours"),
        distributed_by=("channel_id",),
        order_by=("dt", "channel_id"),
    ),
    "hourly_activity": Mart(
        source="hourly_activity",
        columns={
            "dt": DT, "hour": SMALL, "sessions_active": COUNT, "sessions_started": COUNT, "viewers": COUNT,
            "minutes": FLOAT, "avg_concurrent": FLOAT,
        },
        sums=("sessions_started", "minutes"),
        distributed_by=("dt",),
        order_by=("dt", "hour"),
    ),
    "channel_weekday_hour": Mart(
        source="channel_weekday_hour",
        columns={
            "dt": DT, "weekday": SMALL, "weekday_name": LABEL, "hour": SMALL, "channel_id": CHANNEL_ID,
            "channel_name": NAME, "minutes": FLOAT, "sessions_active": COUNT, "viewers": COUNT,
        },
        sums=("sessions_active", "minutes"),
        distributed_by=("channel_id",),
        order_by=("dt", "channel_id", "hour"),
    ),
    "duration_histogram": Mart(
        source="duration_histogram",
        columns={
            "dt": DT, "bucket_order": SMALL, "bucket": LABEL, "lower_s": COUNT, "upper_s": ("bigint", "Nullable(UInt32)"),
            "sessions": COUNT, "hours": FLOAT, "sessions_share": RATIO,
        },
        sums=("sessions", "hours"),
        distributed_by=("dt",),
        order_by=("dt", "bucket_order"),
    ),
    "user_activity": Mart(
        source="user_activity",
        columns={
            "dt": DT, "user_id": USER_ID, "user_name": USER_NAME, "sessions": COUNT, "channels": COUNT,
            "minutes_by_start": FLOAT, "minutes_in_day": FLOAT, "night_minutes": FLOAT, "morning_minutes": FLOAT,
            "afternoon_minutes": FLOAT, "evening_minutes": FLOAT, "segment": LABEL, "first_start": DAY_TS,
            "last_end": DAY_TS,
        },
        sums=("sessions", "minutes_in_day"),
        distributed_by=("user_id",),
        order_by=("dt", "user_id"),
    ),
}
"""Mart name -> declaration. ``MARTS[name].source`` is the lake asset it copies."""


def mart_key(warehouse: str, name: str) -> dg.AssetKey:
    return dg.AssetKey([warehouse, name])


def lake_frame_to_pandas(lake_frame, mart: Mart) -> pd.DataFrame:
    """The declared columns of the lake partition, as pandas (Spark's Arrow path). Timestamps are cast to
    TIMESTAMP_NTZ first so pandas gets the wall-clock times whatever the Spark session time zone."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampType

    missing = [c for c in mart.columns if c not in lake_frame.columns]
    if missing:
        raise dg.Failure(
            f"the lake table {mart.source} has no column(s) {missing} that its marts declare: the lake and "
            "tv_platform/assets/marts.py disagree — update the mart declaration (and migrate the warehouse tables)"
        )
    types = {f.name: f.dataType for f in lake_frame.schema.fields}
    selected = [
        F.col(c).cast("timestamp_ntz").alias(c) if isinstance(types[c], TimestampType) else F.col(c)
        for c in mart.columns
    ]
    return lake_frame.select(*selected).toPandas()


# ---- consistency with the lake -----------------------------------------------------------------------------------------
def lake_stats(catalog, table: str, day: str, sums: tuple[str, ...]) -> dict[str, Any]:
    """Rows and sums of a lake table's partition, through Spark (after REFRESH: another process may have rewritten it).
    ``catalog``: the lake's :class:`~tv_platform.engines.spark.HiveCatalog` (``hive.catalog()``)."""
    if not catalog.table_exists(table):
        return {"rows": 0, "sums": {c: 0.0 for c in sums}, "table_exists": False}
    catalog.refresh(table)
    stats = catalog.stats(table, [day], list(sums))
    return {"rows": int(stats["rows"]), "sums": {c: float(stats[f"sum_{c}"]) for c in sums}, "table_exists": True}


def frame_lake_stats(frame: pd.DataFrame, mart: Mart) -> dict[str, Any]:
    """The lake partition's rows and sums (as :func:`lake_stats` gives them), counted on the frame read from it: every
    row, the declared columns. A mart records them as ``lake_rows`` / ``lake_sum_<column>`` output metadata."""
    return {"rows": len(frame), "sums": {c: float(frame[c].sum()) for c in mart.sums}, "table_exists": True}


def compare(warehouse: dict[str, Any], lake: dict[str, Any], rel: float = 1e-9) -> tuple[bool, dict[str, Any]]:
    """(agree?, metadata): equal row counts and sums equal within ``rel`` (floating sums add up in another order)."""
    ok = warehouse["rows"] == lake["rows"]
    meta: dict[str, Any] = {"warehouse_rows": warehouse["rows"], "lake_rows": lake["rows"]}
    for col, lake_sum in lake["sums"].items():
        wh_sum = warehouse["sums"].get(col, 0.0)
        meta[f"warehouse_sum_{col}"] = wh_sum
        meta[f"lake_sum_{col}"] = lake_sum
        ok = ok and math.isclose(wh_sum, lake_sum, rel_tol=rel, abs_tol=1e-6)
    return ok, meta


def check_partition(warehouse_resource, catalog, warehouse: str, name: str, day: str,
                    mart: "Mart | None" = None, in_lake: dict[str, Any] | None = None) -> dg.AssetCheckResult:
    """The consistency check of one mart partition: the warehouse (its resource's ``partition_stats``, recounted
    there) against the lake table — ``in_lake`` when the numbers are in hand (what the mart just read,
    :func:`frame_lake_stats`), else recounted through Spark (``catalog``: a HiveCatalog). Callable outside a run too (e.g. to re-check one day from a
    notebook)."""
    mart = mart or MARTS[name]
    spec = TableSpec.from_metadata(name, mart.metadata(warehouse))
    in_warehouse = warehouse_resource.partition_stats(spec, [day])
    counted = "read by this materialization" if in_lake is not None else "recounted through Spark"
    if in_lake is None:
        in_lake = lake_stats(catalog, mart.source, day, mart.sums)
    ok, meta = compare(in_warehouse, in_lake)
    meta["lake_counted"] = counted
    if not in_lake["table_exists"]:
        meta["note"] = f"the lake table {mart.source} does not exist"
    if not in_warehouse["table_exists"]:
        meta["note"] = f"the {warehouse} table {spec.name} does not exist"
    return dg.AssetCheckResult(asset_key=mart_key(warehouse, name), check_name="agrees_with_lake", passed=ok,
                               metadata={"partition": day, **meta})


def _where(warehouse: str) -> str:
    return "Greenplum (PostgreSQL locally)" if warehouse == "greenplum" else "ClickHouse (chDB locally)"


def _spec(warehouse: str, name: str, mart: Mart) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=mart_key(warehouse, name),
        group_name=GROUP,
        kinds=KINDS[warehouse],
        partitions_def=daily,
        deps=[dg.AssetKey(mart.source)],
        metadata=mart.metadata(warehouse),
        description=(mart.description or f"The lake's `{mart.source}` for dashboards") + f" — in {_where(warehouse)}; "
        "a materialization replaces the day atomically.",
    ).with_io_manager_key(IO_MANAGER_KEYS[warehouse])


def _check_spec(warehouse: str, name: str, mart: Mart) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        name="agrees_with_lake",
        asset=mart_key(warehouse, name),
        additional_deps=[dg.AssetKey(mart.source)],
        partitions_def=daily,
        description=f"The {warehouse} table's partition, recounted there, has the lake's row count and sums of "
                    f"{', '.join(mart.sums)} — the lake `{mart.source}`'s as the mart read it in the same step, or, "
                    "checked alone, recounted through Spark.",
    )


def warehouse_marts(warehouse: str, declarations: dict[str, Mart], name: str) -> dg.AssetsDefinition:
    """The marts of ``declarations`` in one warehouse as one multi-asset: one step loads a day of every selected mart
    (each lake partition read once, through the ``hive`` resource; each mart written by the warehouse's IO manager,
    its day replaced atomically) and checks each against the lake with the numbers in hand, over one engine session
    (``held``). Subsettable: any marts or checks alone, as the UI selects them."""
    key = RESOURCE_KEYS[warehouse]
    by_key = {mart_key(warehouse, n): (n, m) for n, m in declarations.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)  # partitioned asset checks are a preview feature
        check_specs = [_check_spec(warehouse, n, m) for n, m in declarations.items()]

    @dg.multi_asset(
        name=name,
        specs=[_spec(warehouse, n, m) for n, m in declarations.items()],
        check_specs=check_specs,
        can_subset=True,
        required_resource_keys={key, "hive"},
        pool=POOLS[warehouse],
    )
    def _marts(context: dg.AssetExecutionContext):
        day = context.partition_key
        resource = getattr(context.resources, key)
        catalog = context.resources.hive.catalog()
        checks = {c.asset_key for c in context.selected_asset_check_keys}
        with resource.held():
            for asset_key, (mart_name, mart) in by_key.items():
                in_lake = None
                if asset_key in context.selected_asset_keys:
                    catalog.require(mart.source, f"{mart.source} for {day}")
                    frame = lake_frame_to_pandas(catalog.read(mart.source, [day]), mart)
                    context.log.info(f"{mart.source} {day}: {len(frame)} rows -> {warehouse}")
                    in_lake = frame_lake_stats(frame, mart)
                    yield dg.Output(frame, output_name=asset_key.to_python_identifier(), metadata={
                        "lake_rows": in_lake["rows"], **{f"lake_sum_{c}": v for c, v in in_lake["sums"].items()}})
                if asset_key in checks:  # the Output above is stored (written) before the generator resumes
                    yield check_partition(resource, catalog, warehouse, mart_name, day, mart, in_lake=in_lake)

    return _marts


def build(declarations: dict[str, Mart], name: str) -> list[dg.AssetsDefinition]:
    """The marts of a set of declarations in both warehouses — one multi-asset per warehouse, ``<warehouse>_<name>``
    (the lake's ``MARTS`` here; the programme guide's in ``tv_platform/assets/programmes.py``)."""
    return [warehouse_marts(w, declarations, f"{w}_{name}") for w in WAREHOUSES]


assets = build(MARTS, "marts")
audience_assets = build(AUDIENCE_MARTS, "audience_marts")
"""The audience marts (docs/measures.md), built like the lake's from the ``audience_daily`` tables."""


# ---- the forecast against the actuals ----------------------------------------------------------------------------------
FORECAST = Mart(
    source="forecast_daily",
    columns={"day": DT, "series": TEXT, "kind": LABEL, "model": LABEL, "hours": FLOAT},
    sums=("hours",),
    distributed_by=("series",),
    order_by=("series", "kind", "model", "day"),
    partition_column=None,
    description="The viewing forecast against the actuals (the analytics' `viewing_forecast`): per day and series "
                "('total', 'channel:<name>', 'hour:HH') the actual hours, each model's backtest over the held-out week "
                "and its forecast of the next days",
)
"""``forecast_daily``: not partitioned (the forecast asset rewrites its Hive table whole), so each materialization
replaces the warehouse table whole too — ``DELETE`` + ``COPY`` in one transaction in Greenplum, ``EXCHANGE TABLES`` in
ClickHouse."""

FORECAST_GROUP = "analytics"
"""The forecast's marts run with the analytics (the ``analytics`` job, after ``viewing_forecast``), not with the daily
partitions of the ``marts`` group (a daily job cannot hold unpartitioned assets)."""


def hive_forecast_stats(catalog, table: str = FORECAST.source) -> dict[str, Any]:
    """Rows and Σ hours of the Hive table (0 when it does not exist), after REFRESH."""
    if not catalog.table_exists(table):
        return {"rows": 0, "sums": {c: 0.0 for c in FORECAST.sums}, "table_exists": False}
    catalog.refresh(table)
    stats = catalog.stats(table, None, list(FORECAST.sums))
    return {"rows": int(stats["rows"]), "sums": {c: float(stats[f"sum_{c}"]) for c in FORECAST.sums},
            "table_exists": True}


def _forecast_asset(warehouse: str) -> dg.AssetsDefinition:
    where = "Greenplum (PostgreSQL locally)" if warehouse == "greenplum" else "ClickHouse (chDB locally)"

    @dg.asset(
        key=mart_key(warehouse, FORECAST.source),
        group_name=FORECAST_GROUP,
        kinds=KINDS[warehouse],
        io_manager_key=IO_MANAGER_KEYS[warehouse],
        deps=[dg.AssetKey("viewing_forecast")],
        metadata=FORECAST.metadata(warehouse),
        required_resource_keys={"hive"},
        pool=POOLS[warehouse],
        description=f"{FORECAST.description} — in {where}, for dashboards. Unpartitioned: a materialization replaces "
                    "the table whole, atomically.",
    )
    def _asset(context: dg.AssetExecutionContext) -> pd.DataFrame:
        cat = context.resources.hive.catalog()
        cat.require(FORECAST.source, "`viewing_forecast`")
        frame = cat.read(FORECAST.source).select(*FORECAST.columns).toPandas()
        context.log.info(f"{FORECAST.source}: {len(frame)} rows -> {warehouse}")
        return frame

    return _asset


def check_forecast(warehouse_resource, catalog, warehouse: str) -> dg.AssetCheckResult:
    """The warehouse's ``forecast_daily`` against the Hive table: same row count, same Σ hours."""
    spec = TableSpec.from_metadata(FORECAST.source, FORECAST.metadata(warehouse))
    in_warehouse = warehouse_resource.partition_stats(spec, None)
    in_hive = hive_forecast_stats(catalog)
    ok, meta = compare(in_warehouse, in_hive)
    ok = ok and in_hive["table_exists"] and in_warehouse["table_exists"]
    if not in_hive["table_exists"]:
        meta["note"] = f"the Hive table {FORECAST.source} does not exist"
    if not in_warehouse["table_exists"]:
        meta["note"] = f"the {warehouse} table {spec.name} does not exist"
    return dg.AssetCheckResult(asset_key=mart_key(warehouse, FORECAST.source), check_name="agrees_with_hive",
                               passed=ok, metadata=meta)


def _forecast_check(warehouse: str) -> dg.AssetChecksDefinition:
    key = RESOURCE_KEYS[warehouse]

    @dg.asset_check(
        asset=mart_key(warehouse, FORECAST.source),
        name="agrees_with_hive",
        additional_deps=[dg.AssetKey("viewing_forecast")],
        required_resource_keys={key, "hive"},
        pool=POOLS[warehouse],
        description=f"The {warehouse} table has the Hive table {FORECAST.source}'s row count and Σ hours (recounted "
                    "through Spark).",
    )
    def _check(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return check_forecast(getattr(context.resources, key), context.resources.hive.catalog(), warehouse)

    return _check


forecast_assets = [_forecast_asset(w) for w in WAREHOUSES]
forecast_checks = [_forecast_check(w) for w in WAREHOUSES]
