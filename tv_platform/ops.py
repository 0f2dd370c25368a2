"""Operating the graph from the command line: materializing partitions (demo, backfills) and summaries."""

from __future__ import annotations

import time

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

    def query(table: str, sql: str, tries: int = 5):
        # the automation sensor may be rewriting a partition of it right now (a landing rebuilds its day and the
        # neighbours): the file list Spark cached is then stale. Refresh it and ask again.
        for attempt in range(tries):
            spark.sql(f"REFRESH TABLE {db}.{table}")
            try:
                return spark.sql(sql).toPandas()
            except Exception as exc:  # noqa: BLE001 - only a vanished file is asked again
                if "FILE_NOT_EXIST" not in str(exc) or attempt == tries - 1:
                    raise
                time.sleep(2.0)

    daily = query("daily_viewing",
                  f"select dt as day, views, viewers, round(hours_by_start, 0) as hours_by_start, "
                  f"round(hours_in_day, 0) as hours_in_day from {db}.daily_viewing where dt in ({in_days}) order by dt")
    top = query("channel_rating",
                f"select channel_name, round(sum(hours), 0) as hours, sum(views) as views from {db}.channel_rating "
                f"where dt in ({in_days}) group by channel_name order by hours desc limit 10")
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


def backfill_targets(defs: dg.Definitions) -> list[str]:
    """The backfill's daily assets (:func:`backfill_selection`) and the unpartitioned assets they read (reference data:
    ``channels``, ``users`` and their Hive tables), materialized once by the same backfill, first."""
    graph = defs.resolve_asset_graph()
    daily = backfill_selection(defs)
    parents = {p for k in daily for p in graph.get(dg.AssetKey.from_user_string(k)).parent_keys
               if graph.get(p).is_materializable and graph.get(p).partitions_def is None}
    return sorted(p.to_user_string() for p in parents) + daily


# ---- backfills run by the daemon -----------------------------------------------------------------------------------------
class BackfillError(RuntimeError):
    pass


LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}"""

STATUS = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      assetBackfillData {
        assetBackfillStatuses {
          __typename
          ... on AssetPartitionsStatusCounts {
            numPartitionsTargeted numPartitionsInProgress numPartitionsMaterialized numPartitionsFailed
          }
          ... on UnpartitionedAssetStatus { inProgress materialized failed }
        }
      }
    }
    ... on Error { message }
  }
}"""

#: a backfill in one of these states is over
FINISHED = {"COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"}


def graphql(url: str, query: str, variables: dict) -> dict:
    """One request to the Dagster webserver's GraphQL endpoint (what the UI itself sends)."""
    import requests

    try:
        response = requests.post(f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables},
                                 timeout=60)
    except requests.RequestException as exc:
        raise BackfillError(f"the Dagster webserver at {url} does not answer ({exc.__class__.__name__}): start it "
                            "with `tv-platform dev` (webserver and daemon)") from exc
    if response.status_code != 200:
        raise BackfillError(f"{url}/graphql answered HTTP {response.status_code}: {response.text[:300]}")
    body = response.json()
    if body.get("errors"):
        raise BackfillError(f"{url}/graphql: {body['errors'][0].get('message')}")
    return body["data"]


def launch_backfill(url: str, assets: list[str], first: str, last: str, title: str = "") -> str:
    """Submit an asset backfill of ``assets`` over the days ``first``..``last`` to the daemon, as the UI's "Materialize"
    with a range does (``launchPartitionBackfill``); unpartitioned assets are materialized once. Returns its id: the
    backfill is visible, resumable ("re-execute from failure") and cancelable in the UI."""
    from tv_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    by_asset = []
    for name in assets:
        key = dg.AssetKey.from_user_string(name)
        entry: dict = {"assetKey": {"path": key.path}}
        if graph.get(key).partitions_def is not None:
            entry["partitions"] = {"range": {"start": first, "end": last}}
        by_asset.append(entry)
    params = {"partitionsByAssets": by_asset, "title": title or f"tv-platform backfill {first}..{last}",
              "tags": [{"key": "tv_platform/launched_by", "value": "cli"}]}
    result = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    if result["__typename"] != "LaunchBackfillSuccess":
        raise BackfillError(f"the backfill was refused: {result['__typename']}: {result.get('message')}")
    return result["backfillId"]


def backfill_progress(url: str, backfill_id: str) -> tuple[str, int, int, int]:
    """(status, asset partitions materialized, failed, targeted) of a backfill, from the webserver."""
    result = graphql(url, STATUS, {"id": backfill_id})["partitionBackfillOrError"]
    if result["__typename"] != "PartitionBackfill":
        raise BackfillError(f"backfill {backfill_id}: {result['__typename']}: {result.get('message')}")
    done = failed = total = 0
    for status in (result.get("assetBackfillData") or {}).get("assetBackfillStatuses") or []:
        if status["__typename"] == "AssetPartitionsStatusCounts":
            total += status["numPartitionsTargeted"]
            done += status["numPartitionsMaterialized"]
            failed += status["numPartitionsFailed"]
        else:
            total += 1
            done += int(status["materialized"])
            failed += int(status["failed"])
    return result["status"], done, failed, total


def wait_for_backfill(url: str, backfill_id: str, progress: bool = True, poll_seconds: float = 3.0,
                      timeout: float | None = None) -> str:
    """Wait until the backfill is over, with a progress bar of its asset partitions; returns its final status."""
    import time

    deadline = None if timeout is None else time.monotonic() + timeout
    with tqdm(desc=f"backfill {backfill_id}", unit="asset-partition", disable=not progress) as bar:
        while True:
            status, done, failed, total = backfill_progress(url, backfill_id)
            bar.total = total
            bar.n = done
            bar.set_postfix_str(f"{status.lower()}{f', {failed} failed' if failed else ''}")
            bar.refresh()
            if status in FINISHED:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise BackfillError(f"backfill {backfill_id} still {status} after {timeout:.0f} s "
                                    f"({done}/{total} asset partitions)")
            time.sleep(poll_seconds)


def backfill_days(weeks: int, end: str | None = None, start: str | None = None) -> list[str]:
    """``weeks`` whole weeks of days ending yesterday (or ``end``); with ``start``, the days ``start`` .. ``end``
    (``end`` default: ``start``) — rebuilding one day is ``start == end``."""
    from datetime import date, timedelta

    from tv_platform.dates import today as local_today

    if start:
        first, last = date.fromisoformat(start), date.fromisoformat(end or start)
        if last < first:
            raise ValueError(f"backfill: --end {last} is before --start {first}")
        return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]
    last = date.fromisoformat(end) if end else local_today() - timedelta(days=1)
    return [(last - timedelta(days=i)).isoformat() for i in range(weeks * 7 - 1, -1, -1)]


def backfill(url: str, weeks: int, end: str | None = None, wait: bool = True, progress: bool = True,
             timeout: float | None = None, start: str | None = None) -> tuple[str, list[str], str | None]:
    """Backfill ``weeks`` whole weeks of history ending yesterday (or ``end``) through the lake, programmes and marts:
    one Dagster backfill run by the daemon of the webserver at ``url``. Returns (backfill id, days, final status —
    None when not waited for)."""
    from tv_platform.definitions import defs

    days = backfill_days(weeks, end, start)
    backfill_id = launch_backfill(url, backfill_targets(defs), days[0], days[-1])
    status = wait_for_backfill(url, backfill_id, progress=progress, timeout=timeout) if wait else None
    return backfill_id, days, status
