"""Days as the platform passes them around: one coercion shared by the simulator, the lake and the programme guide."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

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


# ---- the operator's calendar -----------------------------------------------------------------------------------------
# A day is a calendar day of the operator's time zone (TVP_TIMEZONE, an IANA name; default UTC). An event's timer is a
# wall-clock time of that zone without an offset ("YYYY-MM-DD HH:MM:SS"); a timer sent with an explicit offset
# ("…+03:00", "…Z") is converted to it on landing. The producer stamps each record with its timer's instant (epoch ms)
# and the Kafka sensor maps record timestamps back to the zone's days — so a record's day is its timer's date. On a
# DST day the zone's clock skips or repeats an hour: a naive timer inside a skipped hour reads as the instant after the
# gap, one inside a repeated hour as its first occurrence. The functions below are the only place that rule lives.
_MS_PER_DAY = 86_400_000
TIMER_FORMAT = "%Y-%m-%d %H:%M:%S"
_TIMER = re.compile(r"^(?P<wall>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?P<offset>Z|[+-]\d{2}:?\d{2})?$")


def zone_name(tz: str | None = None) -> str:
    """``tz``, else the operator's time zone (the TVP_TIMEZONE setting)."""
    if tz:
        return tz
    from tv_platform.settings import get_settings

    return get_settings().timezone


def zone(tz: str | None = None) -> ZoneInfo:
    return ZoneInfo(zone_name(tz))


def today(tz: str | None = None, now: datetime | None = None) -> date:
    """Today in the operator's zone (``now``: an aware datetime, or a naive one read as UTC)."""
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    return now.astimezone(zone(tz)).date()


def local_timer(text: str, tz: str | None = None) -> datetime:
    """A wire timer as the operator's naive wall-clock time: ``YYYY-MM-DD HH:MM:SS`` as it is; with an explicit offset
    (``+03:00``, ``+0300``, ``Z``; a ``T`` may separate date and time) converted to the zone. ValueError otherwise."""
    m = _TIMER.match(text) if isinstance(text, str) else None
    if m is None or (m.group("offset") is None and "T" in m.group("wall")):
        raise ValueError(f"unparseable timer: {text!r}")
    wall = datetime.strptime(m.group("wall").replace("T", " "), TIMER_FORMAT)
    offset = m.group("offset")
    if offset is None:
        return wall
    if offset == "Z":
        delta = timedelta(0)
    else:
        digits = offset[1:].replace(":", "")
        delta = timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        if delta >= timedelta(hours=24):
            raise ValueError(f"unparseable timer: {text!r} (offset out of range)")
        delta = -delta if offset[0] == "-" else delta
    return wall.replace(tzinfo=timezone(delta)).astimezone(zone(tz)).replace(tzinfo=None)


def timer_texts(values):
    """Naive wall-clock times (datetime64 of any unit, a Series or an array; NaT allowed) as timer text
    ``YYYY-MM-DD HH:MM:SS`` (fractions of a second dropped, as strftime drops them), an Arrow string array with nulls
    for NaT. Arrow's timestamp-to-text cast: 15× faster than ``strftime`` over a day of events."""
    import pyarrow as pa

    seconds = np.asarray(values).astype("datetime64[s]")
    return pa.array(seconds, mask=np.isnat(seconds)).cast(pa.string())


def timer_ms(timers, tz: str | None = None) -> "np.ndarray":
    """Record timestamps (epoch ms, int64) of event timers: datetime64 values or strings, naive (the operator's wall
    clock) or with an explicit offset."""
    name = zone_name(tz)
    series = pd.Series(timers)
    if not pd.api.types.is_datetime64_any_dtype(series):
        text = series.astype(str)
        aware = text.str.contains(r"(?:Z|[+-]\d{2}:?\d{2})$", regex=True)
        if aware.any():
            out = np.empty(len(series), dtype=np.int64)
            instants = pd.to_datetime(text[aware], format="ISO8601", utc=True)
            out[aware.to_numpy()] = _epoch_ms(instants.dt.tz_localize(None))
            if (~aware).any():
                out[~aware.to_numpy()] = timer_ms(text[~aware].to_numpy(), name)
            return out
        series = pd.to_datetime(text, format="ISO8601")
    elif series.dt.tz is not None:
        return _epoch_ms(series.dt.tz_convert("UTC").dt.tz_localize(None))
    if name != "UTC":
        local = series.dt.tz_localize(name, ambiguous=np.ones(len(series), dtype=bool), nonexistent="shift_forward")
        series = local.dt.tz_convert("UTC").dt.tz_localize(None)
    return _epoch_ms(series)


def _epoch_ms(naive_utc: "pd.Series") -> "np.ndarray":
    return np.asarray(naive_utc.to_numpy(), dtype="datetime64[ms]").astype(np.int64)


def record_day(timestamp_ms: int, tz: str | None = None) -> str:
    """The ISO date (operator's zone) a record with this timestamp belongs to."""
    name = zone_name(tz)
    if name == "UTC":
        return str(np.datetime64(int(timestamp_ms) // _MS_PER_DAY, "D"))
    return datetime.fromtimestamp(int(timestamp_ms) / 1000, ZoneInfo(name)).date().isoformat()


def day_start_ms(day, tz: str | None = None) -> int:
    """The first record timestamp (epoch ms) of ``day``: its local midnight (or, where the zone skips midnight, the
    first instant of the day)."""
    name = zone_name(tz)
    if name == "UTC":
        return int(np.datetime64(as_date(day), "D").astype(np.int64)) * _MS_PER_DAY
    midnight = datetime.combine(as_date(day), datetime.min.time(), tzinfo=ZoneInfo(name))
    return int(round(midnight.timestamp() * 1000))


def day_hours(day, tz: str | None = None) -> float:
    """How long ``day`` is in the operator's zone, in hours: 24, or 23 / 25 on a DST day."""
    following = as_date(day) + timedelta(days=1)
    return (day_start_ms(following, tz) - day_start_ms(day, tz)) / 3_600_000
