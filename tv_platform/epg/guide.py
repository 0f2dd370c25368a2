"""The guide's frame contract, shared by the generator and the XMLTV importer, and the normalization of one day.

A guide is a pandas DataFrame with :data:`GUIDE_COLUMNS` (pandas dtypes, as declared to the CSV IO manager). Times are
the operator's wall-clock local time without zone (like the events' ``timer``). ``series`` is the name of the
recurring strand a programme belongs to (a series, a recurring show, a documentary cycle, an animated series) and
``episode`` its number in it; both are empty ("" / 0) for one-off programmes (films, news bulletins, sport events).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from tv_platform.dates import as_date  # noqa: F401 - re-exported for the guide modules

GUIDE_COLUMNS: dict[str, str] = {
    "channel_id": "int32",
    "programme_id": "str",
    "title": "str",
    "kind": "str",
    "genre": "str",
    "series": "str",
    "episode": "int32",
    "start": "datetime64[s]",
    "end": "datetime64[s]",
}
KINDS = ("news", "series", "film", "show", "sport", "kids", "documentary", "music", "unknown")
"""``unknown``: a gap in an imported guide (no data), filled so that every second of the day is covered."""
GAP_TITLE = "Нет данных EPG"




def programme_id(channel_id: int, start: pd.Timestamp | datetime) -> str:
    """Deterministic id: channel and start minute, e.g. ``10-202309232000``."""
    return f"{int(channel_id)}-{pd.Timestamp(start):%Y%m%d%H%M}"


def empty_guide() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in GUIDE_COLUMNS.items()})


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[list(GUIDE_COLUMNS)].copy()
    out["series"] = out["series"].fillna("")
    out["episode"] = out["episode"].fillna(0)
    for c, t in GUIDE_COLUMNS.items():
        out[c] = out[c].astype(t)
    return out.sort_values(["channel_id", "start"], kind="stable").reset_index(drop=True)


def normalize_day(guide: pd.DataFrame, day, channel_ids=None) -> pd.DataFrame:
    """The guide of calendar day D, exactly covering [D 00:00, D+1 00:00) per channel, gap-free and without overlaps:

    * programmes are clipped to the day (one straddling midnight keeps its id and is cut at 00:00);
    * an overlap is resolved by ending the earlier programme where the next one starts (the XMLTV importer has
      resolved them already, see xmltv.resolve_channel; this keeps the synthetic guide's contract);
    * a gap (and a whole day of a channel in ``channel_ids`` without any programme) becomes an ``unknown`` programme
      titled :data:`GAP_TITLE`.

    A guide that already covers the day (the synthetic one) comes back unchanged."""
    d = as_date(day)
    lo, hi = pd.Timestamp(d), pd.Timestamp(d + timedelta(days=1))
    g = guide[(guide["end"] > lo) & (guide["start"] < hi)].copy()
    g["start"] = g["start"].clip(lower=lo)
    g["end"] = g["end"].clip(upper=hi)
    g = g.sort_values(["channel_id", "start", "end"], kind="stable")
    g = g.drop_duplicates(["channel_id", "start"], keep="first")
    nxt = g.groupby("channel_id")["start"].shift(-1)
    g["end"] = g["end"].where(nxt.isna() | (g["end"] <= nxt), nxt)
    g = g[g["end"] > g["start"]]
    ids = sorted(set(g["channel_id"].astype(int)) | set(int(c) for c in (channel_ids if channel_ids is not None else [])))
    fill = []
    for cid in ids:
        rows = g[g["channel_id"] == cid]
        starts = [lo, *rows["end"].tolist()]
        ends = [*rows["start"].tolist(), hi]
        for a, b in zip(starts, ends):
            if b > a:
                fill.append({"channel_id": cid, "programme_id": programme_id(cid, a), "title": GAP_TITLE,
                             "kind": "unknown", "genre": "", "series": "", "episode": 0, "start": a, "end": b})
    if fill:
        g = pd.concat([g, pd.DataFrame(fill)], ignore_index=True)
    out = empty_guide() if g.empty else typed(g)
    out.attrs.update(guide.attrs)  # the importer's counts (xmltv.parse_xmltv) stay with the guide
    return out


def coverage_problems(guide: pd.DataFrame, day) -> list[str]:
    """What keeps ``guide`` from covering day D exactly per channel (empty list: it does)."""
    d = as_date(day)
    lo, hi = np.datetime64(pd.Timestamp(d), "s"), np.datetime64(pd.Timestamp(d + timedelta(days=1)), "s")
    problems = []
    for cid, rows in guide.sort_values(["channel_id", "start"]).groupby("channel_id"):
        s = rows["start"].to_numpy("datetime64[s]")
        e = rows["end"].to_numpy("datetime64[s]")
        if s[0] != lo:
            problems.append(f"channel {cid}: starts at {s[0]}")
        if e[-1] != hi:
            problems.append(f"channel {cid}: ends at {e[-1]}")
        if (e <= s).any():
            problems.append(f"channel {cid}: empty programme")
        if (s[1:] != e[:-1]).any():
            problems.append(f"channel {cid}: gap or overlap")
    return problems
