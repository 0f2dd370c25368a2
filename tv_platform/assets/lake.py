"""Lake layer: the raw data as Hive tables, viewing sessions, and the daily aggregates every dashboard and mart reads.
All of it runs on Spark (the stack's Spark Connect server, which owns the Hive metastore).

    hive_channels, hive_users            external CSV tables over the reference data              tv.tv_channels, tv.tv_users
    hive_tv_dataset, hive_tv_stream      external CSV tables over raw events, partition per day   tv.tv_dataset, tv.tv_stream
    viewing_sessions [daily]             enabled/disabled paired per session (both sources)       tv.viewing_sessions (+ view tv.sessions_v)
    session_anomalies [daily]            every event not in a session, with its reason            tv.session_anomalies
    daily_viewing, channel_rating, hourly_activity, channel_weekday_hour, duration_histogram, user_activity [daily]
                                         per broadcast day D (TVP_BROADCAST_DAY_START), from the sessions of D-1..D+1

The logic is in tv_platform/lake/ (pure functions, tested on hand-made inputs); the assets read, call and write.
Resources: ``hive`` (:class:`~tv_platform.engines.spark.HiveResource`) and ``hive_io_manager``
(:class:`~tv_platform.engines.spark.HiveIOManager`) — ``tv_platform.engines.spark.lake_resources(settings)``.
"""


import dagster as dg
from pyspark.sql import functions as F

from tv_platform.engines.metadata import declare
from tv_platform.engines.spark import HiveCatalog, HiveResource, session_conf, union_of_days
from tv_platform.lake import aggregates as A
from tv_platform.lake import queries as Q
from tv_platform.lake import tables as T
from tv_platform.lake.calendar import BroadcastCalendar
from tv_platform.lake.sessions import REASONS, SESSION, read_window, sessionize, union_sources
from tv_platform.partitions import BROADCAST_WINDOW, RAW_WINDOW, daily, spark_range

GROUP = "lake"
KINDS = {"hive", "spark"}


# ---------------------------------------------------------------------------------------------------------------------
# raw data as Hive tables
# ---------------------------------------------------------------------------------------------------------------------
def _reference_asset(table: str, upstream: str, what: str):
    dimension = "users" if table == "tv_users" else "channels"

    @dg.asset(
        name=f"hive_{table.removeprefix('tv_')}",
        group_name=GROUP,
        kinds=KINDS | {"csv"},
        deps=[upstream],
        description=(
            f"Hive external table `{table}` over the {what} CSV in the lake (`{upstream}` asset; header row). "
            "Created if missing; the row count is read back through Spark. With it the dimension view "
            f"`{T.DIMENSIONS[dimension][3]}`: the reference rows plus an inferred member (flagged, with the day first "
            "seen) for every id landed events carry and the reference data lacks (`tv_inferred_members`)."
        ),
        metadata={"hive/table": table, **declare(T.REFERENCE_TABLES[table])},
    )
    def _asset(context: dg.AssetExecutionContext, hive: HiveResource) -> dg.MaterializeResult:
        cat = hive.catalog()
        locations = hive.locations()
        location = locations.of(table)
        cat.register_reference_table(table, location)
        rows = cat.spark.table(cat.qualified(table)).count()
        cat.spark.sql(T.create_inferred_table_sql(hive.database, locations.tv_inferred_members))
        cat.refresh(T.INFERRED_TABLE)
        view = T.DIMENSIONS[dimension][3]
        cat.spark.sql(T.dimension_view_sql(hive.database, dimension))
        inferred = cat.spark.table(cat.qualified(view)).where(F.col("inferred")).count()
        context.log.info(f"{hive.database}.{table} over {location}: {rows} rows; {inferred} inferred members")
        return dg.MaterializeResult(metadata={"table": f"{hive.database}.{table}", "location": location,
                                              "rows": rows, "dagster/row_count": rows, "dimension_view": view,
                                              "inferred_members": inferred})

    return _asset


hive_channels = _reference_asset("tv_channels", "channels", "channel")
hive_users = _reference_asset("tv_users", "users", "subscriber")


def _events_asset(table: str, upstream: str, what: str):
    @dg.asset(
        name=f"hive_{table}",
        group_name=GROUP,
        kinds=KINDS | {"csv"},
        partitions_def=daily,
        backfill_policy=spark_range,
        deps=[upstream],
        description=(
            f"Hive external table `{table}` ({what}) over `raw/{table}/dt=…` in the lake, partitioned by `dt`: "
            "created if missing; materializing a day registers its partition (ADD IF NOT EXISTS PARTITION … "
            "LOCATION) and reports the rows and the unreadable rows (NULL timer/ids) in it."
        ),
        metadata={"hive/table": table, **declare(T.EVENT_COLUMNS, partition_expr=T.PARTITION_COLUMN)},
    )
    def _asset(context: dg.AssetExecutionContext, hive: HiveResource) -> dg.MaterializeResult:
        cat = hive.catalog()
        location = hive.locations().of(table)
        cat.register_events_table(table, location)
        days = list(context.partition_keys)
        cat.add_partitions(table, days, location)
        rows = (
            cat.spark.table(cat.qualified(table))
            .where(F.col(T.PARTITION_COLUMN).isin(days))
            .agg(
                F.count(F.lit(1)).alias("rows"),
                F.count(F.when(F.col("status") == "enabled", 1)).alias("enabled"),
                F.count(F.when(F.col("status") == "disabled", 1)).alias("disabled"),
                F.count(F.when(F.col("timer").isNull() | F.col("user_id").isNull() | F.col("channel_id").isNull()
                               | F.col("session_id").isNull(), 1)).alias("unreadable"),
            )
            .collect()[0]
        )
        return dg.MaterializeResult(metadata={
            "table": f"{hive.database}.{table}",
            "location": location,
            "partitions": days[0] if len(days) == 1 else f"{days[0]}..{days[-1]}",
            "rows": int(rows["rows"]),
            "dagster/row_count": int(rows["rows"]),
            "enabled": int(rows["enabled"]),
            "disabled": int(rows["disabled"]),
            "unreadable_rows": int(rows["unreadable"]),
        })

    return _asset


hive_tv_dataset = _events_asset("tv_dataset", "tv_dataset", "simulated history")
hive_tv_stream = _events_asset("tv_stream", "tv_stream_snapshot", "live events landed from Kafka")


# ---------------------------------------------------------------------------------------------------------------------
# sessions
# ---------------------------------------------------------------------------------------------------------------------
def prepare_raw(hive: HiveResource, days: list[str]) -> HiveCatalog:
    """Raw tables exist, the partitions sessions of ``days`` read are registered (those whose directory exists —
    e.g. the next day's, which the ``hive_tv_*`` asset of that day may not have registered yet), the view is there."""
    cat = hive.register_raw_tables()
    window = read_window(days[0], days[-1])
    locations = hive.locations()
    for table in T.EVENT_SOURCES:
        cat.add_partitions(table, hive.existing_raw_days(table, window), locations.of(table))
    cat.create_sessions_view()
    return cat


def read_events(cat: HiveCatalog, days: list[str]):
    window = read_window(days[0], days[-1])
    return union_sources({
        table: cat.spark.table(cat.qualified(table)).where(F.col(T.PARTITION_COLUMN).isin(window))
        for table in T.EVENT_SOURCES
    })


@dg.multi_asset(
    name="sessionize",
    group_name=GROUP,
    partitions_def=daily,
    backfill_policy=spark_range,
    outs={
        "viewing_sessions": dg.AssetOut(
            io_manager_key="hive_io_manager",
            kinds=KINDS | {"parquet"},
            description=(
                "Viewing sessions started on the day (the seed's `tv_dataset_v`, done properly): enabled/disabled "
                "paired per session over both sources (history and stream), names joined. A session crossing "
                "midnight is paired from the next day's events; duplicate events collapse; zero-length sessions are "
                "kept and flagged. Hive table partitioned by dt = start date; the view `sessions_v` pairs everything."
            ),
            metadata=declare(T.SESSION_COLUMNS, partition_expr=T.PARTITION_COLUMN, sum_columns=["duration_s"]),
        ),
        "session_anomalies": dg.AssetOut(
            io_manager_key="hive_io_manager",
            kinds=KINDS | {"parquet"},
            description=(
                "Every event read that is not part of a session, one row per event with its reason: "
                + ", ".join(REASONS) + ". Nothing is silently dropped: events = 2 × sessions + anomalies."
            ),
            metadata=declare(T.ANOMALY_COLUMNS, partition_expr=T.PARTITION_COLUMN),
        ),
    },
    deps=[
        dg.AssetDep("hive_tv_dataset", partition_mapping=RAW_WINDOW),
        dg.AssetDep("hive_tv_stream", partition_mapping=RAW_WINDOW),
        dg.AssetDep("hive_channels"),
        dg.AssetDep("hive_users"),
    ],
    check_specs=[
        dg.AssetCheckSpec("events_conserved", asset="viewing_sessions",
                          description="events read for the day = 2 × sessions + anomaly rows, recounted from the "
                                      "written tables"),
        dg.AssetCheckSpec("anomalies_reported", asset="session_anomalies",
                          description="warns when events were set aside (open sessions, orphans, duplicates, …); "
                                      "counts by reason in the metadata"),
    ],
)
def sessionize_assets(context: dg.AssetExecutionContext, hive: HiveResource):
    """Reads raw events of D-1..D+1 from tv_dataset and tv_stream, pairs them (tv_platform.lake.sessions.sessionize)
    and writes sessions and anomalies for D."""
    days = list(context.partition_keys)
    cat = prepare_raw(hive, days)
    # grouping events by session_id has ~1 group per 2 rows: the map-side partial aggregation only costs
    with session_conf(cat.spark, **{"spark.sql.execution.bypassPartialAggregation": "true"}):
        result = sessionize(
            read_events(cat, days), days[0], days[-1],
            channels=cat.spark.table(cat.qualified("tv_channels")),
            users=cat.spark.table(cat.qualified("tv_users")),
            cache=True,
        )
        try:
            counts = result.counts()
            events = sum(counts.values())
            by_reason = {reason: sum(n for (k, _), n in counts.items() if k == reason) for reason in REASONS}
            sessions = counts.get((SESSION, "enabled"), 0)
            context.log.info(f"{days[0]}..{days[-1]}: {events} events -> {sessions} sessions, anomalies {by_reason}")
            yield dg.Output(result.sessions, output_name="viewing_sessions",
                            metadata={"events_read": events, "sessions_classified": sessions})
            yield dg.Output(result.anomalies, output_name="session_anomalies",
                            metadata={"by_reason": dg.MetadataValue.json(by_reason)})
        finally:
            result.release()

    # recount from what is now in the tables
    written = cat.spark.sql(
        f"SELECT count(*) AS sessions, count_if(is_zero_length) AS zero_length, "
        f"count_if(crosses_midnight) AS crossing FROM {cat.qualified('viewing_sessions')} "
        f"WHERE dt IN ({', '.join(repr(d) for d in days)})").collect()[0]
    table_reasons = {r["reason"]: int(r["n"]) for r in cat.spark.sql(
        f"SELECT reason, count(*) AS n FROM {cat.qualified('session_anomalies')} "
        f"WHERE dt IN ({', '.join(repr(d) for d in days)}) GROUP BY reason").collect()}
    anomalies = sum(table_reasons.values())
    n_sessions = int(written["sessions"])
    yield dg.AssetCheckResult(
        check_name="events_conserved",
        asset_key="viewing_sessions",
        passed=events == 2 * n_sessions + anomalies and counts.get((SESSION, "disabled"), 0) == n_sessions,
        metadata={"events_read": events, "sessions": n_sessions, "anomaly_rows": anomalies,
                  "of_which_duplicates": table_reasons.get("duplicate_event", 0)
                  + table_reasons.get("conflicting_duplicate", 0)},
    )
    yield dg.AssetCheckResult(
        check_name="anomalies_reported",
        asset_key="session_anomalies",
        passed=anomalies == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"anomaly_rows": anomalies, **{r: table_reasons.get(r, 0) for r in REASONS},
                  "zero_length_sessions": int(written["zero_length"]),
                  "sessions_crossing_midnight": int(written["crossing"])},
    )


# ---------------------------------------------------------------------------------------------------------------------
# aggregates
# ---------------------------------------------------------------------------------------------------------------------
_SUMS = {
    "daily_viewing": ["views", "viewers", "hours_by_start", "hours_in_day"],
    "channel_rating": ["views", "hours"],
    "hourly_activity": ["sessions_started", "minutes"],
    "channel_weekday_hour": ["minutes"],
    "duration_histogram": ["sessions", "hours"],
    "user_activity": ["sessions", "minutes_by_start", "minutes_in_day"],
}


_CHECK_SUMS = {
    "daily_viewing": {"n": "count(*)", "views": "sum(views)", "hb": "sum(hours_by_start)", "hd": "sum(hours_in_day)",
                      "ha": "sum(hours_after_day)", "hc": "sum(hours_carried_in)"},
    "channel_rating": {"views": "sum(views)", "hours": "sum(hours)", "share": "sum(hours_share)", "n": "count(*)",
                       "max_rank": "max(rank)"},
    "hourly_activity": {"n": "count(*)", "started": "sum(sessions_started)", "m": "sum(minutes)"},
    "channel_weekday_hour": {"m": "sum(minutes)"},
    "duration_histogram": {"n": "count(*)", "s": "sum(sessions)", "h": "sum(hours)"},
    "user_activity": {"s": "sum(sessions)", "mb": "sum(minutes_by_start)", "md": "sum(minutes_in_day)"},
}
"""What each aggregate's check sums over a written partition: {name ``_compare`` reads: SQL expression}."""


def _consistency(name: str, cat: HiveCatalog, days: list[str], cal=None) -> list[tuple[bool, dict]]:
    """Compare each day's aggregate partition, read back from its table, with totals computed from viewing_sessions
    by plain SQL (queries.session_totals_of_days_sql, on the same broadcast day) — a different code path from the
    builders. Two Spark queries for the whole range: the sessions' totals of every day, the table's sums per day."""
    totals = {r["dt"]: r for r in cat.spark.sql(Q.session_totals_of_days_sql(cat.database, days, cal)).collect()}
    sums = _CHECK_SUMS[name]
    listed = ", ".join(f"'{d}'" for d in days)
    found = {r["dt"]: r.asDict() for r in cat.spark.sql(
        f"SELECT dt, {', '.join(f'{e} AS {k}' for k, e in sums.items())} FROM {cat.qualified(name)} "
        f"WHERE dt IN ({listed}) GROUP BY dt").collect()}
    nothing = {k: 0 if e == "count(*)" else None for k, e in sums.items()}  # a day without rows
    return [_compare(name, found.get(d, nothing), totals[d]) for d in days]


def _compare(name: str, r: dict, tot) -> tuple[bool, dict]:
    """(passed, metadata) of one day: its partition's sums ``r`` against the sessions' totals ``tot``."""
    views, by_start_h, in_day_h = int(tot["views"]), tot["by_start_s"] / 3600.0, tot["in_day_s"] / 3600.0
    close = lambda a, b: abs((a or 0.0) - (b or 0.0)) <= 1e-6 * max(1.0, abs(b or 0.0))  # noqa: E731
    if name == "daily_viewing":
        ok = r["n"] == 1 and r["views"] == views and close(r["hb"], by_start_h) and close(r["hd"], in_day_h) \
            and close(r["hd"], (r["hb"] or 0) - (r["ha"] or 0) + (r["hc"] or 0))
        return ok, {"rows": r["n"], "views": r["views"], "sessions_views": views, "hours_in_day": r["hd"],
                    "sessions_hours_in_day": in_day_h}
    if name == "channel_rating":
        ok = (r["views"] or 0) == views and close(r["hours"], by_start_h) \
            and (views == 0 or abs((r["share"] or 0) - 100.0) < 1e-6 or by_start_h == 0) and r["max_rank"] == (
                r["n"] or None)
        return ok, {"views": r["views"], "sessions_views": views, "hours": r["hours"], "hours_share_total": r["share"]}
    if name == "hourly_activity":
        ok = r["n"] == 24 and r["started"] == views and close((r["m"] or 0) / 60.0, in_day_h)
        return ok, {"rows": r["n"], "sessions_started": r["started"], "sessions_views": views,
                    "hours": (r["m"] or 0) / 60.0, "sessions_hours_in_day": in_day_h}
    if name == "channel_weekday_hour":
        ok = close((r["m"] or 0) / 60.0, in_day_h)
        return ok, {"hours": (r["m"] or 0) / 60.0, "sessions_hours_in_day": in_day_h}
    if name == "duration_histogram":
        ok = r["n"] == len(A.DURATION_BUCKETS) and r["s"] == views and close(r["h"], by_start_h)
        return ok, {"buckets": r["n"], "sessions": r["s"], "sessions_views": views}
    if name == "user_activity":
        ok = (r["s"] or 0) == views and close((r["mb"] or 0) / 60.0, by_start_h) and close((r["md"] or 0) / 60.0,
                                                                                          in_day_h)
        return ok, {"sessions": r["s"], "sessions_views": views, "hours_in_day": (r["md"] or 0) / 60.0,
                    "sessions_hours_in_day": in_day_h}
    raise KeyError(name)


def _aggregate_asset(name: str):
    builder = A.BUILDERS[name]

    @dg.asset(
        name=name,
        group_name=GROUP,
        kinds=KINDS | {"parquet"},
        partitions_def=daily,
        backfill_policy=spark_range,
        io_manager_key="hive_io_manager",
        ins={"viewing_sessions": dg.AssetIn(partition_mapping=BROADCAST_WINDOW)},
        metadata=declare(T.DERIVED_TABLES[name], partition_expr=T.PARTITION_COLUMN, sum_columns=_SUMS[name]),
        description=(builder.__doc__ or name).strip(),
        check_specs=[dg.AssetCheckSpec(
            "consistent_with_sessions", asset=name,
            description="totals of the written partition equal views / hours recomputed from viewing_sessions "
                        "with plain SQL")],
    )
    def _asset(context: dg.AssetExecutionContext, hive: HiveResource, viewing_sessions):
        days = list(context.partition_keys)
        cal = BroadcastCalendar.from_settings()
        context.log.info(f"{name} on the {cal.describe()}")
        frames = [builder(viewing_sessions, day, cal) for day in days]
        yield dg.Output(union_of_days(frames))
        cat = hive.catalog()
        results = _consistency(name, cat, days, cal)
        metadata = results[0][1] if len(results) == 1 else {"days_checked": len(results),
                                                            "days_failed": sum(not ok for ok, _ in results)}
        yield dg.AssetCheckResult(check_name="consistent_with_sessions", passed=all(ok for ok, _ in results),
                                  metadata={k: v for k, v in metadata.items() if v is not None})

    return _asset


daily_viewing = _aggregate_asset("daily_viewing")
channel_rating = _aggregate_asset("channel_rating")
hourly_activity = _aggregate_asset("hourly_activity")
channel_weekday_hour = _aggregate_asset("channel_weekday_hour")
duration_histogram = _aggregate_asset("duration_histogram")
user_activity = _aggregate_asset("user_activity")

AGGREGATES = [daily_viewing, channel_rating, hourly_activity, channel_weekday_hour, duration_histogram, user_activity]
assets = [hive_channels, hive_users, hive_tv_dataset, hive_tv_stream, sessionize_assets, *AGGREGATES]
checks: list = []
