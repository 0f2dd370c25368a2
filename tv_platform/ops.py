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


def contiguous_ranges(days: Iterable[str]) -> list[tuple[str, str]]:
    """Sorted ISO days as (first, last) runs of consecutive days: ['09-01', '09-02', '09-05'] -> two ranges."""
    from datetime import date, timedelta

    out: list[list[str]] = []
    for day in sorted(set(days)):
        if out and date.fromisoformat(out[-1][1]) + timedelta(days=1) == date.fromisoformat(day):
            out[-1][1] = day
        else:
            out.append([day, day])
    return [(first, last) for first, last in out]


def _runs(graph, chosen: list[dg.AssetKey], pkeys: list[str], ranges: bool) -> list[tuple[list, str | None, dict]]:
    """(assets, partition key, tags) of each run for one group of assets at one level: assets whose backfill policy
    is a single run (the Spark ones) get one run per range of consecutive days, the others one run per day."""
    partitioned = [k for k in chosen if graph.get(k).partitions_def is not None]
    plain = [k for k in chosen if graph.get(k).partitions_def is None]
    single = [k for k in partitioned if ranges and graph.get(k).backfill_policy is not None
              and graph.get(k).backfill_policy.max_partitions_per_run is None]
    per_day = [k for k in partitioned if k not in single]
    runs: list[tuple[list, str | None, dict]] = [(plain, None, {})] if plain else []
    for first, last in contiguous_ranges(pkeys) if single else []:
        if first == last:
            runs.append((single, first, {}))
        else:
            runs.append((single, None, {"dagster/asset_partition_range_start": first,
                                        "dagster/asset_partition_range_end": last}))
    runs += [(per_day, pk, {}) for pk in pkeys] if per_day else []
    return runs


def materialize_partitions(defs: dg.Definitions, instance: dg.DagsterInstance, selection,
                           partition_keys: Iterable[str] | None, progress: bool = True, ranges: bool = True) -> int:
    """Materialize the selection for the given days, level by level (see :func:`stages`), recording every run in
    ``instance`` so it shows in the Dagster UI. Unpartitioned assets run once; Spark assets (backfill policy: a single
    run) once per range of consecutive days, unless ``ranges=False``; the others once per day. Returns asset
    partitions materialized. Re-running is harmless: every IO manager replaces exactly the partitions it writes."""
    keys = resolve_selection(defs, selection)
    if not keys:
        return 0
    graph = defs.resolve_asset_graph()
    all_assets = [*(defs.assets or []), *(defs.asset_checks or [])]
    resources = defs.resources or {}
    pkeys = sorted(set(partition_keys or []))
    plan = [_runs(graph, stage, pkeys, ranges) for stage in stages(defs, keys)]
    done = 0
    with tqdm(total=sum(len(runs) for runs in plan), desc="materialize", unit="run", disable=not progress) as bar:
        for runs in plan:
            for chosen, pk, range_tags in runs:
                days = (f"{range_tags['dagster/asset_partition_range_start']}..."
                        f"{range_tags['dagster/asset_partition_range_end']}") if range_tags else (pk or "")
                bar.set_postfix_str(f"{', '.join(k.to_user_string() for k in chosen)[:60]} {days}")
                result = dg.materialize(all_assets, selection=chosen, instance=instance, resources=resources,
                                        partition_key=pk, tags={"tv_platform/launched_by": "cli", **range_tags},
                                        raise_on_error=False, run_config=QUIET)
                if not result.success:
                    raise RuntimeError(f"materializing {[k.to_user_string() for k in chosen]} {days} failed "
                                       f"(run {result.run_id})")
                n_days = len([d for d in pkeys if range_tags['dagster/asset_partition_range_start'] <= d
                              <= range_tags['dagster/asset_partition_range_end']]) if range_tags else 1
                done += len(chosen) * n_days
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
