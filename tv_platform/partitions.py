"""Partitioning shared by every daily asset: static daily partitions (not dynamic: those hit SQLite limits around
36k keys and make backfills awkward)."""

from __future__ import annotations

import dagster as dg

from tv_platform.settings import get_settings

daily = dg.DailyPartitionsDefinition(start_date=get_settings().start_date, end_offset=1)
"""One partition per calendar day of events; ``end_offset=1`` includes today, so the live stream lands as it comes."""
