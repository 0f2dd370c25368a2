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


def materialize_partitions(defs: dg.Definitions, instance: dg.DagsterInstance, selection,
                           partition_keys: Iterable[str] | None, progress: bool = True) -> int:
    """Materialize the selection once per partition key (in order), recording runs in ``instance``.
    Unpartitioned assets in the selection run once. Returns the number of asset partitions materialized."""
    keys = resolve_selection(defs, selection)
    if not keys:
        return 0
    graph = defs.resolve_asset_graph()
    partitioned = [k for k in keys if graph.get(k).partitions_def is not None]
    unpartitioned = [k for k in keys if graph.get(k).partitions_def is None]
    all_assets = list(defs.assets or [])
    resources = defs.resources or {}
    done = 0
    if unpartitioned:
        result = dg.materialize(all_assets, selection=unpartitioned, instance=instance, resources=resources)
        if not result.success:
            raise RuntimeError(f"materializing {[k.to_user_string() for k in unpartitioned]} failed")
        done += len(unpartitioned)
    pkeys = list(partition_keys or [])
    if partitioned and pkeys:
        for pk in tqdm(pkeys, desc="partitions", unit="day", disable=not progress):
            result = dg.materialize(all_assets, selection=partitioned, instance=instance, resources=resources,
                                    partition_key=pk, tags={"tv_platform/launched_by": "cli"})
            if not result.success:
                raise RuntimeError(f"partition {pk} of {[k.to_user_string() for k in partitioned]} failed")
            done += len(partitioned)
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
