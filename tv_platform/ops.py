"""Operating the graph from the command line: materializing partitions (demo, backfills) and summaries."""

from __future__ import annotations

from typing import Iterable

import dagster as dg
from tqdm import tqdm


def resolve_selection(defs: dg.Definitions, selection) -> list[dg.AssetKey]:
    """Asset keys of a selection: a list of asset names, or 'group+group' (e.g. 'lake+marts')."""
    graph = defs.resolve_asset_graph()
    if isinstance(selection, str):
        groups = selection.split("+")
        keys = [k for k in graph.get_all_asset_keys()
                if graph.get(k).is_materializable and graph.get(k).group_name in groups]
    else:
        keys = [dg.AssetKey.from_user_string(s) for s in selection]
    return sorted(keys, key=lambda k: k.to_user_string())


# the runs' event logs are in the Dagster UI; the terminal shows the progress bar and warnings only
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def stages(defs: dg.Definitions, keys: list[dg.AssetKey]) -> list[list[dg.AssetKey]]:
    """The selected assets in topological levels: every asset comes after everything it depends on.

    Days are processed a level at a time (all days of the history, then all days of sessions, ...), because a day's
    sessions read the next day's events (a session crossing midnight) — a day-by-day walk would see them missing."""
    graph = defs.resolve_asset_graph()
    chosen = set(keys)
    level: dict[dg.AssetKey, int] = {}

    def depth(key: dg.AssetKey) -> int:
        if key not in level:
            parents = [p for p in graph.get(key).parent_keys if p in chosen]
            level[key] = 1 + max((depth(p) for p in parents), default=-1)
        return level[key]

    for k in keys:
        depth(k)
    out: list[list[dg.AssetKey]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for k in keys:
        out[level[k]].append(k)
    return [s for s in out if s]


def materialize_partitions(defs: dg.Definitions, instance: dg.DagsterInstance, selection,
                           partition_keys: Iterable[str] | None, progress: bool = True) -> int:
    """Materialize the selection for the given days, level by level (see :func:`stages`), recording every run in
    ``instance`` so it shows in the Dagster UI. Unpartitioned assets run once. Returns asset partitions materialized.
    Re-running is harmless: every IO manager replaces exactly the partitions it writes."""
    keys = resolve_selection(defs, selection)
    if not keys:
        return 0
    graph = defs.resolve_asset_graph()
    all_assets = [*(defs.assets or []), *(defs.asset_checks or [])]
    resources = defs.resources or {}
    pkeys = list(partition_keys or [])
    done = 0
    plan = stages(defs, keys)
    total = sum((len(pkeys) if any(graph.get(k).partitions_def for k in s) else 0)
                + (1 if any(graph.get(k).partitions_def is None for k in s) else 0) for s in plan)
    with tqdm(total=total, desc="materialize", unit="run", disable=not progress) as bar:
        for stage in plan:
            for partitioned in (False, True):
                chosen = [k for k in stage if (graph.get(k).partitions_def is not None) == partitioned]
                if not chosen:
                    continue
                for pk in (pkeys if partitioned else [None]):
                    bar.set_postfix_str(f"{', '.join(k.to_user_string() for k in chosen)[:60]} {pk or ''}")
                    result = dg.materialize(all_assets, selection=chosen, instance=instance, resources=resources,
                                            partition_key=pk, tags={"tv_platform/launched_by": "cli"},
                                            raise_on_error=False, run_config=QUIET)
                    if not result.success:
                        raise RuntimeError(f"materializing {[k.to_user_string() for k in chosen]} "
                                           f"{pk or ''} failed (run {result.run_id})")
                    done += len(chosen)
                    bar.update()
    return done


def summary_tables(settings, days: list[str]) -> list[tuple[str, str]]:
    """(title, text table) pairs: hours and views per day, top channels — read from the lake's aggregates."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(settings.spark_remote).getOrCreate()
    db = settings.hive_database
    in_days = ", ".join(f"'{d}'" for d in days)
    daily = spark.sql(
        f"select dt as day, views, viewers, round(hours_by_start, 0) as hours_by_start, round(hours_in_day, 0) as hours_in_day "
        f"from {db}.daily_viewing where dt in ({in_days}) order by dt").toPandas()
    top = spark.sql(
        f"select channel_name, round(sum(hours), 0) as hours, sum(views) as views from {db}.channel_rating "
        f"where dt in ({in_days}) group by channel_name order by hours desc limit 10").toPandas()
    return [("hours and views per day", daily.to_string(index=False)),
            ("top 10 channels by hours", top.to_string(index=False))]


def backfill_selection(defs: dg.Definitions) -> list[str]:
    """What a historical backfill builds: every daily asset but the live snapshot (the sensor owns that)."""
    graph = defs.resolve_asset_graph()
    return sorted(
        k.to_user_string() for k in graph.get_all_asset_keys()
        if graph.get(k).is_materializable and graph.get(k).partitions_def is not None
        and k.to_user_string() != "tv_stream_snapshot"
    )


def backfill(weeks: int, end: str | None = None, progress: bool = True) -> list[str]:
    """Backfill ``weeks`` whole weeks of history ending yesterday (or ``end``), through the lake and marts.
    Runs are recorded in the Dagster instance (DAGSTER_HOME), so they show in the UI."""
    from datetime import date, timedelta

    from tv_platform.definitions import defs

    last = date.fromisoformat(end) if end else date.today() - timedelta(days=1)
    days = [(last - timedelta(days=i)).isoformat() for i in range(weeks * 7 - 1, -1, -1)]
    instance = dg.DagsterInstance.get()
    materialize_partitions(defs, instance, ["channels", "users"], None, progress=False)
    materialize_partitions(defs, instance, backfill_selection(defs), days, progress=progress)
    return days
