"""Days as the platform passes them around: one coercion shared by the simulator, the lake and the programme guide."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
import pandas as pd


def as_date(day) -> date:
    """A date from a date, a datetime (or pandas Timestamp), a numpy datetime64 or an ISO string ('YYYY-MM-DD',
    anything after the day is ignored); TypeError otherwise."""
    if isinstance(day, datetime):
        return day.date()
    if isinstance(day, date):
        return day
    if isinstance(day, np.datetime64):
        return pd.Timestamp(day).date()
    if isinstance(day, str):
        return date.fromisoformat(day[:10])
    raise TypeError(f"expected a date, datetime or 'YYYY-MM-DD', got {day!r}")


# ---- which day a Kafka record belongs to ---------------------------------------------------------------------------
# An event's timer is a wall-clock time without a zone ("YYYY-MM-DD HH:MM:SS"). The producer stamps each record with
# its timer read as UTC, and the Kafka sensor maps record timestamps back to days with the same rule — so a record's
# day is its timer's date. These three functions are the only place that rule lives.
_MS_PER_DAY = 86_400_000


def timer_ms(timers) -> "np.ndarray":
    """Record timestamps (epoch ms, int64) of event timers (datetime64 values or 'YYYY-MM-DD HH:MM:SS' strings)."""
    values = np.asarray(pd.to_datetime(pd.Series(timers), format="ISO8601").to_numpy(), dtype="datetime64[ms]")
    return values.astype(np.int64)


def record_day(timestamp_ms: int) -> str:
    """The ISO date a record with this timestamp belongs to."""
    return str(np.datetime64(int(timestamp_ms) // _MS_PER_DAY, "D"))


def day_start_ms(day: str) -> int:
    """The first record timestamp (epoch ms) of ``day``."""
    return int(np.datetime64(as_date(day), "D").astype(np.int64)) * _MS_PER_DAY
