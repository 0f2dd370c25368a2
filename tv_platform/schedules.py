"""Day-to-day operation: the daily schedule and the automation that lets the graph follow the live stream.

- ``daily_graph_job`` / ``daily_schedule``: every night, half an hour after yesterday's broadcast day has ended
  (TVP_BROADCAST_DAY_START + 30 min in the operator's zone, TVP_TIMEZONE: 05:30 by default, 00:30 for calendar days),
  materializes *yesterday's* partition of every daily asset — the simulated history, the lake and the marts; the
  analyses and the forecast follow two hours later. The live snapshot is
  not in it: the kafka sensor drives that one. A day the stream owns (landed) is not simulated: ``tv_dataset`` writes
  its partition empty (``stream_owns``), so the day's lake is what landed.
- ``automation_sensor``: evaluates the assets' automation conditions, so the Hive registration, sessions, aggregates
  and marts follow newly landed stream partitions without anyone pressing a button.
"""

from datetime import timedelta

import dagster as dg

from tv_platform.assets.ingest import stream_owns
from tv_platform.dates import today as local_today
from tv_platform.lake.calendar import clock_minutes
from tv_platform.partitions import daily
from tv_platform.location import settings

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


def after_broadcast_day(minutes: int, start: str | None = None) -> str:
    """A daily cron ``minutes`` after a broadcast day ends (it ends when the next starts: ``start``, HH:MM; default
    TVP_BROADCAST_DAY_START). Built at 00:30 a broadcast day starting at 05:00 would still have 4½ hours to run."""
    at = (clock_minutes(start or settings.broadcast_day_start, "TVP_BROADCAST_DAY_START") + minutes) % (24 * 60)
    return f"{at % 60} {at // 60} * * *"


NIGHTLY_CRON = after_broadcast_day(30)
ANALYTICS_CRON = after_broadcast_day(150)


@dg.schedule(job=daily_graph_job, cron_schedule=NIGHTLY_CRON, execution_timezone=settings.timezone,
             default_status=dg.DefaultScheduleStatus.RUNNING,
             description="Every day half an hour after yesterday's broadcast day ended (TVP_BROADCAST_DAY_START + 30 "
                         "min, the operator's zone), yesterday's partition of every daily asset; a day the live stream "
                         "owns is built from what landed (nothing simulated).")
def daily_schedule(context: dg.ScheduleEvaluationContext):
    return nightly_request(yesterday_of(context.scheduled_execution_time), context.instance)


def yesterday_of(scheduled, tz: str | None = None) -> str:
    """The day before ``scheduled`` (an aware datetime; naive = UTC; None = now) in the operator's zone (``tz``)."""
    return (local_today(tz, now=scheduled) - timedelta(days=1)).isoformat()


def nightly_request(day: str, instance: dg.DagsterInstance) -> dg.RunRequest | dg.SkipReason:
    if day not in daily.get_partition_keys():
        return dg.SkipReason(f"{day} is before the first partition")
    # one owner per day: on a day the stream landed, tv_dataset simulates nothing (it checks, whoever runs it)
    owner = "stream" if stream_owns(instance, day) else "history"
    return dg.RunRequest(run_key=f"daily:{day}", partition_key=day, tags={"tv_platform/owner": owner})


analytics_job = dg.define_asset_job(
    "analytics", selection=dg.AssetSelection.groups("analytics"),
    description="Analyses and the 7-day forecast over the lake's latest weeks.")

analytics_schedule = dg.ScheduleDefinition(
    job=analytics_job, cron_schedule=ANALYTICS_CRON, execution_timezone=settings.timezone,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day two hours after the nightly partition: analyses and the forecast.")

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
