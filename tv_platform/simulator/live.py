"""Events for the Kafka producer: a simulated live day, or a recorded stream replayed.

The live day is drawn from the same model as the history (``model.simulate_day``): same channel choice by rating,
same time-of-day profile, same users. By default (``stream=0``) it is *exactly* ``simulate_day(day, params)`` in timer
order — so a day that was streamed and later back-filled is the same set of sessions, and the lake can de-duplicate
by ``session_id``. Pass another ``stream`` for an independent realisation of the same model (e.g. to stream a day
whose history already exists without duplicating it).

Events are yielded in timer order: a session's ``enabled`` comes at its start and its ``disabled`` later, interleaved
with the other sessions (the seed producer sent both rows of a session back to back). ``count`` takes the first N
events, ``since``/``until`` a time window, so a producer can follow the wall clock::

    last = None
    while True:
        now = datetime.now()
        for event in live_events(now.date(), params, since=last, until=now):
            send(event)
        last = now
        time.sleep(1)

A cut stream ends with sessions that have started and not yet ended, as a real one does.
"""

from __future__ import annotations

from datetime import datetime, time as Time
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from tv_platform.dates import timer_texts
from tv_platform.simulator.model import (BATCH_STREAM, EVENT_COLUMNS, STATUSES, SimulationParams, _as_date,
                                         _draw_sessions, _events)
from tv_platform.streaming import MAX_ID

TIMER_FORMAT = "%Y-%m-%d %H:%M:%S"


def live_frame(day, params: SimulationParams | None = None, count: int | None = None, since=None, until=None,
               stream: int = BATCH_STREAM) -> pd.DataFrame:
    """The events of ``day`` in timer order (the frame ``live_events`` iterates), restricted to
    ``since < timer <= until`` (either may be None; a datetime, a pandas Timestamp or an ISO string; a bare time is on
    ``day``) and then to the first ``count`` events."""
    day = _as_date(day)
    frame = _events(_draw_sessions(day, params or SimulationParams(), stream))
    if since is not None or until is not None:
        ts = frame["timer"].to_numpy()
        keep = np.ones(len(frame), dtype=bool)
        if since is not None:
            keep &= ts > _as_instant(since, day)
        if until is not None:
            keep &= ts <= _as_instant(until, day)
        lo, hi = (np.flatnonzero(keep)[[0, -1]] if keep.any() else (0, -1))
        frame = frame.iloc[lo:hi + 1]  # timer is sorted, so the window is one slice
    if count is not None:
        if count < 0:
            raise ValueError(f"count must be >= 0, got {count}")
        frame = frame.iloc[:count]
    return frame.reset_index(drop=True)


def live_events(day, params: SimulationParams | None = None, count: int | None = None, since=None, until=None,
                stream: int = BATCH_STREAM) -> Iterator[dict]:
    """Yield the events of ``day`` in timer order as JSON-ready dicts
    ``{"session_id": str, "user_id": int, "channel_id": int, "timer": "YYYY-MM-DD HH:MM:SS", "status": str}``.
    ``count``, ``since``, ``until`` and ``stream`` as in ``live_frame``. The day is generated up front (vectorised,
    well under a second per million events); the dicts are made lazily, chunk by chunk."""
    yield from iter_events(live_frame(day, params, count=count, since=since, until=until, stream=stream))


def iter_events(frame: pd.DataFrame, chunk: int = 50_000) -> Iterator[dict]:
    """Yield the rows of an event frame (``simulate_day``, ``live_frame`` or ``read_recorded``) as wire dicts, in
    frame order."""
    missing = [c for c in EVENT_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"event frame lacks columns {missing}")
    for lo in range(0, len(frame), chunk):
        part = frame.iloc[lo:lo + chunk]
        timer = part["timer"]
        if pd.api.types.is_datetime64_any_dtype(timer):
            timers = timer_texts(timer).to_pylist()
        else:
            timers = timer.astype(str).tolist()
        columns = (part["session_id"].astype(str).tolist(), part["user_id"].astype("int64").tolist(),
                   part["channel_id"].astype("int64").tolist(), timers, part["status"].astype(str).tolist())
        for sid, uid, cid, ts, st in zip(*columns):
            yield {"session_id": sid, "user_id": uid, "channel_id": cid, "timer": ts, "status": st}


def read_recorded(path: str | Path) -> pd.DataFrame:
    """A recorded stream CSV (no header; ``session_id,user_id,channel_id,timer,status``, as the seed's consumer wrote
    ``tv_stream.csv``) as an event frame with ``simulate_day``'s dtypes, sorted by ``timer`` (stable: rows with equal
    timers keep their file order), for replay. A header line, if present, is skipped. Raises ``ValueError`` on a
    malformed file."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"recorded stream {path}: no such file")
    try:
        raw = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raw = pd.DataFrame(columns=range(len(EVENT_COLUMNS)))
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"recorded stream {path}: not a UTF-8 CSV ({exc})") from exc
    if raw.shape[1] != len(EVENT_COLUMNS):
        raise ValueError(f"recorded stream {path}: expected {len(EVENT_COLUMNS)} columns {EVENT_COLUMNS}, "
                         f"got {raw.shape[1]}")
    raw.columns = list(EVENT_COLUMNS)
    if len(raw) and raw.iloc[0].tolist() == list(EVENT_COLUMNS):
        raw = raw.iloc[1:]

    def bad(mask: pd.Series, what: str) -> None:
        if mask.any():
            rows = raw.index[np.asarray(mask)][:3].tolist()
            raise ValueError(f"recorded stream {path}: {what} on line(s) {[r + 1 for r in rows]}: "
                             f"{raw.loc[rows].to_dict('records')}")

    bad(~raw["session_id"].str.fullmatch(r"[0-9a-f]{32}"), "session_id is not 32 lowercase hex digits")
    bad(~raw["status"].isin(STATUSES), f"status is not one of {STATUSES}")
    ints = {}
    for col in ("user_id", "channel_id"):
        values = pd.to_numeric(raw[col], errors="coerce")
        bad(values.isna() | (values != values.round()), f"{col} is not an integer")
        # checked before the cast: astype would wrap 4294967297 round to 1, silently another subscriber
        bad((values < 1) | (values > MAX_ID), f"{col} is out of range 1..{MAX_ID}")
        ints[col] = values.astype("int32")
    timer = pd.to_datetime(raw["timer"], format=TIMER_FORMAT, errors="coerce")
    bad(timer.isna(), f"timer is not {TIMER_FORMAT}")
    frame = pd.DataFrame({
        "session_id": raw["session_id"].astype("str"),
        "user_id": ints["user_id"],
        "channel_id": ints["channel_id"],
        "timer": timer.astype("datetime64[s]"),
        "status": raw["status"].astype("str"),
    })
    return frame.sort_values("timer", kind="stable").reset_index(drop=True)


def _as_instant(value, day) -> np.datetime64:
    if isinstance(value, Time):
        value = datetime.combine(day, value)
    ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        raise ValueError(f"timers are naive local times; got a timezone-aware bound {value!r}")
    return np.datetime64(ts.to_datetime64(), "s")
