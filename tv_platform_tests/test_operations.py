"""Operating the graph: the daily schedule, the level-by-level backfill plan, the definitions as a whole (#9)."""

from datetime import datetime

import dagster as dg


def test_daily_schedule_materializes_yesterday():
    from tv_platform.schedules import daily_schedule

    ctx = dg.build_schedule_context(scheduled_execution_time=datetime(2023, 9, 24, 0, 30))
    request = daily_schedule(ctx)
    assert request.partition_key == "2023-09-23"
    assert request.run_key == "daily:2023-09-23"
    early = daily_schedule(dg.build_schedule_context(scheduled_execution_time=datetime(2020, 1, 2, 0, 30)))
    assert isinstance(early, dg.SkipReason)


def test_backfill_runs_days_level_by_level():
    """A day's sessions read the next day's events, so every level runs for all days before the next level starts."""
    from tv_platform.definitions import defs
    from tv_platform.ops import backfill_selection, resolve_selection, stages

    selection = backfill_selection(defs)
    assert "tv_stream_snapshot" not in selection and "tv_dataset" in selection
    plan = stages(defs, resolve_selection(defs, selection))
    position = {k.to_user_string(): i for i, stage in enumerate(plan) for k in stage}
    graph = defs.resolve_asset_graph()
    for key in resolve_selection(defs, selection):
        for parent in graph.get(key).parent_keys:
            if parent.to_user_string() in position:
                assert position[parent.to_user_string()] < position[key.to_user_string()], (parent, key)


def test_contiguous_ranges():
    from tv_platform.ops import contiguous_ranges

    assert contiguous_ranges(["2023-09-02", "2023-09-01", "2023-09-05", "2023-09-03", "2023-09-05"]) == [
        ("2023-09-01", "2023-09-03"), ("2023-09-05", "2023-09-05")]
    assert contiguous_ranges(["2023-12-31", "2024-01-01"]) == [("2023-12-31", "2024-01-01")]
    assert contiguous_ranges([]) == []


def test_spark_assets_backfill_a_range_in_one_run_and_the_rest_day_by_day():
    """UI backfills follow each asset's backfill policy: the Spark assets (lake, programmes) take a whole range in one
    run; the per-day CSV writers and the warehouse marts one run per day. The CLI backfill plans the same way."""
    from tv_platform.definitions import defs
    from tv_platform.ops import _runs, backfill_selection, resolve_selection, stages

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.partitions_def is None or not node.is_materializable:
            continue
        single = node.backfill_policy is not None and node.backfill_policy.max_partitions_per_run is None
        assert single == ("spark" in node.kinds), key

    week = [f"2023-09-{d:02d}" for d in range(4, 11)]
    runs = [run for stage in stages(defs, resolve_selection(defs, backfill_selection(defs)))
            for run in _runs(graph, stage, week, ranges=True)]
    by_asset: dict[str, list] = {}
    for assets, pk, tags in runs:
        for key in assets:
            by_asset.setdefault(key.to_user_string(), []).append(
                pk or (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]))
    assert by_asset["viewing_sessions"] == [("2023-09-04", "2023-09-10")]
    assert by_asset["daily_viewing"] == [("2023-09-04", "2023-09-10")]
    assert by_asset["tv_dataset"] == week
    assert by_asset["greenplum/daily_viewing"] == week


def test_lake_and_marts_follow_a_newly_landed_stream_partition():
    """The sensor lands a range of today -> the Hive partition is registered -> sessions -> aggregates -> marts."""
    from tv_platform.definitions import defs
    from tv_platform.partitions import daily

    today = daily.get_last_partition_key()
    instance = dg.DagsterInstance.ephemeral()
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    cursor = result.cursor

    def landed(asset: str):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=today))

    def requested(cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        names = {r.key.to_user_string() for r in result.results if r.true_subset.size}
        for r in result.results:
            if r.true_subset.size:  # only today's partition is ever requested
                assert r.true_subset.size == 1
        return names, result.cursor, None

    names, cursor, _ = requested(cursor)
    assert names == set(), "nothing runs before data lands"

    landed("tv_stream_snapshot")
    names, cursor, _ = requested(cursor)
    chain = {"hive_tv_stream", "viewing_sessions", "session_anomalies", "daily_viewing", "channel_rating",
             "hourly_activity", "greenplum/sessions", "clickhouse/sessions", "clickhouse/daily_viewing"}
    assert chain <= names
    assert not names & {"tv_dataset", "hive_tv_dataset", "channels", "users", "tv_stream_snapshot"}

    for name in names:
        landed(name)
    names, cursor, _ = requested(cursor)
    assert names == set(), "nothing new upstream, nothing requested"


def test_marts_declare_freshness():
    from tv_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    marts = [k for k in graph.get_all_asset_keys() if k.path[0] in ("greenplum", "clickhouse")]
    assert len(marts) >= 14
    assert all(graph.get(k).freshness_policy is not None for k in marts)
