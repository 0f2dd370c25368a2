"""Operating the graph: the daily schedule, the level-by-level backfill plan, the definitions as a whole (#9)."""

from datetime import datetime

import dagster as dg
import pytest


def test_daily_schedule_materializes_yesterday():
    from tv_platform.schedules import nightly_request, yesterday_of

    instance = dg.DagsterInstance.ephemeral()
    request = nightly_request(yesterday_of(datetime(2023, 9, 24, 0, 30)), instance)
    assert request.partition_key == "2023-09-23"
    assert request.run_key == "daily:2023-09-23"
    assert request.tags["tv_platform/owner"] == "history"
    assert isinstance(nightly_request(yesterday_of(datetime(2020, 1, 2, 0, 30)), instance), dg.SkipReason)
    # a day the stream landed belongs to it
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="tv_stream_snapshot", partition="2023-09-23"))
    assert nightly_request("2023-09-23", instance).tags["tv_platform/owner"] == "stream"


def test_daily_schedule_runs_on_the_operators_clock():
    """At 00:30 in Moscow (21:30 UTC the evening before), yesterday is Moscow's yesterday; the schedule's cron runs in
    the operator's zone."""
    from zoneinfo import ZoneInfo

    from tv_platform.schedules import daily_schedule, yesterday_of
    from tv_platform.settings import get_settings

    moscow = datetime(2023, 9, 24, 0, 30, tzinfo=ZoneInfo("Europe/Moscow"))
    assert yesterday_of(moscow, "Europe/Moscow") == "2023-09-23"
    assert yesterday_of(datetime(2023, 9, 23, 21, 30), "Europe/Moscow") == "2023-09-23"  # the same instant, naive UTC
    assert yesterday_of(datetime(2023, 9, 23, 21, 30), "UTC") == "2023-09-22"
    assert daily_schedule.execution_timezone == get_settings().timezone


def test_the_nightly_job_waits_for_the_broadcast_day_to_end():
    """Yesterday's broadcast day ends at today's TVP_BROADCAST_DAY_START: the nightly job runs half an hour later
    (05:30 for Mediascope's 05:00, 00:30 for calendar days), the analyses two hours after it."""
    from tv_platform.schedules import analytics_schedule, after_broadcast_day, daily_schedule
    from tv_platform.settings import get_settings

    assert after_broadcast_day(30, "05:00") == "30 5 * * *" and after_broadcast_day(150, "05:00") == "30 7 * * *"
    assert after_broadcast_day(30, "00:00") == "30 0 * * *" and after_broadcast_day(150, "00:00") == "30 2 * * *"
    assert after_broadcast_day(30, "06:45") == "15 7 * * *" and after_broadcast_day(30, "23:45") == "15 0 * * *"
    start = get_settings().broadcast_day_start
    assert daily_schedule.cron_schedule == after_broadcast_day(30, start)
    assert analytics_schedule.cron_schedule == after_broadcast_day(150, start)


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
    """The sensor lands a range of today -> the Hive partition is registered -> sessions -> aggregates -> marts; the
    sessions of yesterday are paired again (they read today's events), and a late range of an earlier day within the
    horizon rebuilds that day; a day older than the horizon is left to a backfill."""
    from datetime import date, timedelta

    from tv_platform.dates import today as local_today
    from tv_platform.definitions import defs
    from tv_platform.settings import get_settings

    today = local_today()
    iso = lambda d: d.isoformat()  # noqa: E731
    instance = dg.DagsterInstance.ephemeral()
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    cursor = result.cursor

    def landed(asset: str, day: date = today):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=asset, partition=iso(day)))

    def requested(cursor):
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        names = {r.key.to_user_string(): set(r.true_subset.expensively_compute_partition_keys())
                 for r in result.results if r.true_subset.size}
        return names, result.cursor

    names, cursor = requested(cursor)
    assert names == {}, "nothing runs before data lands"

    landed("tv_stream_snapshot")
    names, cursor = requested(cursor)
    chain = {"hive_tv_stream", "viewing_sessions", "session_anomalies", "daily_viewing", "channel_rating",
             "hourly_activity", "greenplum/sessions", "clickhouse/sessions", "clickhouse/daily_viewing"}
    assert chain <= set(names)
    assert not set(names) & {"tv_dataset", "hive_tv_dataset", "channels", "users", "tv_stream_snapshot"}
    assert names["hive_tv_stream"] == {iso(today)}
    # today's events close yesterday's sessions: yesterday is paired again (and tomorrow reads today as its D-1)
    assert names["viewing_sessions"] == {iso(today - timedelta(days=1)), iso(today), iso(today + timedelta(days=1))}

    def settle(names):
        for name, keys in names.items():
            for key in keys:
                landed(name, date.fromisoformat(key))

    settle(names)
    names, cursor = requested(cursor)
    assert names == {}, "nothing new upstream, nothing requested"

    # a late event for D-3: D-3 is rebuilt (and its neighbours, whose sessions / in-day measures read it)
    late = today - timedelta(days=3)
    landed("tv_stream_snapshot", late)
    names, cursor = requested(cursor)
    assert names["hive_tv_stream"] == {iso(late)}
    assert iso(late) in names["greenplum/daily_viewing"] and iso(late) in names["clickhouse/sessions"]
    settle(names)
    assert requested(cursor)[0] == {}

    # older than the horizon: landed, not rebuilt by automation
    old = today - timedelta(days=get_settings().late_horizon_days + 3)
    landed("tv_stream_snapshot", old)
    names, cursor = requested(cursor)
    assert names == {}


def test_reference_data_materialized_again_requests_no_automation():
    """Every backfill materializes the reference data again; that must not make automation rebuild the whole horizon
    beside the backfill (it did: a second backfill of every daily asset for the last 9 days, competing for the run
    slots and the clickhouse pool). Only the stream's days do."""
    from tv_platform.automation import REFERENCE_DATA
    from tv_platform.dates import today as local_today
    from tv_platform.definitions import defs

    instance = dg.DagsterInstance.ephemeral()
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    for name in REFERENCE_DATA:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
    assert {r.key.to_user_string() for r in result.results if r.true_subset.size} == set()
    # the stream still drives the chain (hive_users being updated too does not hide it)
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="tv_stream_snapshot",
                                                                partition=local_today().isoformat()))
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
    assert {"hive_tv_stream", "viewing_sessions"} <= {r.key.to_user_string() for r in result.results
                                                      if r.true_subset.size}


def test_marts_declare_freshness():
    from tv_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    marts = [k for k in graph.get_all_asset_keys() if k.path[0] in ("greenplum", "clickhouse")]
    assert len(marts) >= 14
    assert all(graph.get(k).freshness_policy is not None for k in marts)


def test_a_landing_run_size_below_one_record_is_refused(monkeypatch):
    """TVP_LANDING_RUN_RECORDS bounds every landing run the Kafka sensor requests: 0 would request no run at all."""
    from tv_platform.settings import Settings

    monkeypatch.setenv("TVP_LANDING_RUN_RECORDS", "0")
    with pytest.raises(ValueError, match="TVP_LANDING_RUN_RECORDS must be at least 1"):
        Settings.from_env()
