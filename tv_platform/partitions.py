"""Partitioning shared by every daily asset: static daily partitions (not dynamic: those hit SQLite limits around
36k keys and make backfills awkward)."""

from __future__ import annotations

import warnings

import dagster as dg

from tv_platform.location import settings

SKEW_DAYS = 1
"""Clock-skew tolerance: partitions exist up to tomorrow, so an event dated up to the end of tomorrow (a session
crossing midnight, a producer whose clock runs ahead, a day sent at once) lands in its own day as soon as it arrives;
a later date is quarantined with the reason."""

# The zone is read when the definitions load (a partitions definition is static): change TVP_TIMEZONE, reload the code
# location. Partition keys stay ISO dates; each is a calendar day of the operator's zone (23 or 25 hours on DST days).
daily = dg.DailyPartitionsDefinition(start_date=settings.start_date, timezone=settings.timezone, end_offset=1 + SKEW_DAYS)
"""One partition per calendar day of the operator's zone (TVP_TIMEZONE); ``end_offset`` includes today and tomorrow,
so the live stream lands as it comes."""

# backfill policies are a beta parameter of @asset; we rely on it knowingly (tested in test_backfill / test_dagster_ui)
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=dg.BetaWarning)
spark_range = dg.BackfillPolicy.single_run()
"""How a backfill runs a Spark asset: the whole range of days in one run (one Spark job over all days, partitions
overwritten exactly), not one run per day. The Spark assets read ``context.partition_keys`` and their checks cover
every day of the range. Python assets that write one CSV per day (``tv_dataset``, ``programme_guide``) and the
warehouse marts (one day replaced per load, checked per day) keep Dagster's default: one run per partition."""

# RAW_WINDOW: sessions of day D read the raw events of D-1..D+1 (a session crossing midnight ends the next day).
# BROADCAST_WINDOW: what is counted on broadcast day D (aggregates, programme attribution, audience measures) reads the
# sessions of calendar days D-1..D+1: D runs from D at TVP_BROADCAST_DAY_START to that time on D+1, sessions started
# the evening before run into it, and those started on D+1 before its end are its own. So D's aggregates are
# re-materialized when D+1's sessions change (within the late horizon, by automation).
# allow_nonexistent_upstream_partitions is "beta"; the first and the last partition need it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    RAW_WINDOW = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=1,
                                               allow_nonexistent_upstream_partitions=True)
    BROADCAST_WINDOW = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=1,
                                                     allow_nonexistent_upstream_partitions=True)
    GUIDE_DAYS = dg.TimeWindowPartitionMapping(start_offset=0, end_offset=1,
                                               allow_nonexistent_upstream_partitions=True)
    """Broadcast day D reads the guide of calendar days D and D+1."""
