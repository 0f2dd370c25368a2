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
