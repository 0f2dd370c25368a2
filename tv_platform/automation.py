"""How the graph follows the live stream, and how fresh the marts must be — applied to the layers in one place.

- **Follow the stream.** Every daily asset downstream of the landed stream (Hive registration, sessions, aggregates,
  marts) re-materializes a day within the late-data horizon (``TVP_LATE_HORIZON_DAYS`` back, today and tomorrow) when
  a parent partition of that day was updated — or will be in the same tick, so one landed range requests the whole
  chain, run parents-first. Late data for an earlier day rebuilds that day; a day older than the horizon is rebuilt
  on request (``tv-platform backfill --start D --end D``). Unlike the stock ``eager()``, a missing parent
  does not block it (today's history partition is usually absent, and the next day never exists yet), and a missing
  partition alone does not trigger it (no empty runs at midnight).
  Reference data (``channels``, ``users`` and their Hive tables) are not the stream: every backfill materializes them
  again (unchanged: they are deterministic for their config), and if their update counted, each backfill of history
  would make automation rebuild every daily asset of the whole horizon beside it — a second backfill competing for the
  run slots and the ``clickhouse`` pool. A real change of reference data is rebuilt by a backfill of the days it
  concerns.
- **Freshness.** The marts declare a time-window freshness policy: a mart not updated for 26 hours is failing (the
  nightly schedule runs at 00:30), after 25 hours it warns. The Dagster UI shows the state on every mart.
"""

from datetime import timedelta
from typing import Iterable

import dagster as dg

from tv_platform.location import settings
from tv_platform.partitions import SKEW_DAYS

REFERENCE_DATA = ("channels", "users", "hive_channels", "hive_users")
"""Unpartitioned reference data: their updates do not trigger automation (see the module doc)."""


def follow_stream_condition(horizon_days: int) -> dg.AutomationCondition:
    """Follow the stream over the last ``horizon_days`` days (and today and tomorrow): a partition of any of those
    days is re-materialized when a parent partition of it was updated — a late event for D-3 rebuilds D-3, and the
    events of D+1 re-pair D's sessions (they read D+1's raw events)."""
    lookback = timedelta(days=horizon_days + 1 + SKEW_DAYS)
    return (
        dg.AutomationCondition.in_latest_time_window(lookback_delta=lookback)
        & dg.AutomationCondition.any_deps_updated().ignore(dg.AssetSelection.assets(*REFERENCE_DATA))
        .since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"follows the stream (the last {horizon_days} days, today and tomorrow)")


# the horizon (TVP_LATE_HORIZON_DAYS) is read when the definitions load, like the zone of the partitions
follow_stream = follow_stream_condition(settings.late_horizon_days)

mart_freshness = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))

# the history, reference data and the snapshot itself are driven by the schedule, backfills and the sensor
NOT_AUTOMATED = {"channels", "users", "tv_dataset", "tv_stream_snapshot", "hive_channels", "hive_users", "hive_tv_dataset",
                 "programme_guide", "hive_programme_guide"}


def _follow(spec: dg.AssetSpec) -> dg.AssetSpec:
    name = spec.key.to_user_string()
    if spec.partitions_def is None or name in NOT_AUTOMATED or spec.automation_condition is not None:
        return spec
    return spec.replace_attributes(automation_condition=follow_stream)


def follows_stream(assets: Iterable) -> list:
    return dg.map_asset_specs(_follow, list(assets))


def fresh_marts(assets: Iterable) -> list:
    return dg.map_asset_specs(lambda spec: spec.replace_attributes(freshness_policy=mart_freshness), list(assets))
