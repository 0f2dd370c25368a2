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
