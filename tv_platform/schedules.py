"""Day-to-day operation: the daily schedule and the automation that lets the graph follow the live stream.

- ``daily_graph_job`` / ``daily_schedule``: every night (00:30) materializes *yesterday's* partition of every daily asset
  — the simulated history, the lake and the marts. The live snapshot is not in it: the kafka sensor drives that one.
- ``automation_sensor``: evaluates the assets' automation conditions, so the Hive registration, sessions, aggregates
  and marts follow newly landed stream partitions without anyone pressing a button.
"""

from datetime import datetime, timedelta

import dagster as dg

from tv_platform.partitions import daily

DAILY_GROUPS = ["ingest", "lake", "programmes", "marts"]

daily_graph_job = dg.define_asset_job(
    "daily_graph",
    selection=(
        dg.AssetSelection.groups(*DAILY_GROUPS)
        - dg.AssetSelection.assets("tv_stream_snapshot")
        - dg.AssetSelection.assets("channels", "users")
    ),
    partitions_def=None,
    description="One day across the graph: simulated history -> Hive -> sessions -> aggregates -> marts.",
)


@dg.schedule(job=daily_graph_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="At 00:30 every day, yesterday's partition of every daily asset.")
def daily_schedule(context: dg.ScheduleEvaluationContext):
    scheduled = context.scheduled_execution_time or datetime.now()
    yesterday = (scheduled - timedelta(days=1)).strftime("%Y-%m-%d")
    if yesterday not in daily.get_partition_keys():
        return dg.SkipReason(f"{yesterday} is before the first partition")
    return dg.RunRequest(run_key=f"daily:{yesterday}", partition_key=yesterday)


analytics_job = dg.define_asset_job(
    "analytics", selection=dg.AssetSelection.groups("analytics"),
    description="Analyses and the 7-day forecast over the lake's latest weeks.")

analytics_schedule = dg.ScheduleDefinition(
    job=analytics_job, cron_schedule="30 2 * * *", execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 02:30 every day, after the nightly partition: analyses and the forecast.")

automation_sensor = dg.AutomationConditionSensorDefinition(
    "automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Materializes assets whose automation condition is met (the lake and marts follow the live stream).",
)

schedules = [daily_schedule, analytics_schedule]
jobs = [daily_graph_job, analytics_job]
sensors = [automation_sensor]
