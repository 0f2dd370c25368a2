"""How the graph follows the live stream, and how fresh the marts must be — applied to the layers in one place.

- **Follow the stream.** Every daily asset downstream of the landed stream (Hive registration, sessions, aggregates,
  marts) re-materializes the latest day when a parent partition of that day was updated — or will be in the same
  tick, so one landed range requests the whole chain, run parents-first. Unlike the stock ``eager()``, a missing parent
  does not block it (today's history partition is usually absent, and the next day never exists yet), and a missing
  partition alone does not trigger it (no empty runs at midnight).
- **Freshness.** The marts declare a time-window freshness policy: a mart not updated for 26 hours is failing (the
  nightly schedule runs at 00:30), after 25 hours it warns. The Dagster UI shows the state on every mart.
"""

from datetime import timedelta
from typing import Iterable

import dagster as dg

follow_stream = (
    dg.AutomationCondition.in_latest_time_window()
    & dg.AutomationCondition.any_deps_updated().since_last_handled()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("follows the stream")

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
