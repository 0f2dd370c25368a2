"""XMLTV importer: a real programme guide (the common IPTV/EPG exchange format) instead of the synthetic one.

    <tv>
      <channel id="russia24.ru"><display-name lang="ru">Россия 24</display-name></channel>
      <programme start="20230923200000 +0300" stop="20230923203000 +0300" channel="russia24.ru">
        <title lang="ru">Вести</title>
        <category lang="ru">Новости</category>
        <episode-num system="xmltv_ns">2.14.0/1</episode-num>   (zero-based: season 3, episode 15)
      </programme>
    </tv>

:func:`parse_xmltv` returns the guide frame (:data:`~tv_platform.epg.guide.GUIDE_COLUMNS`). Times are converted to
the operator's wall-clock time (``local_tz``, default Europe/Moscow) and stored without zone, like the events; a time
without an offset is the operator's wall-clock time already. XMLTV channels are mapped to the platform's ``channel_id``
by their id or any display name (``channel_map``); unmapped channels are skipped (listed in
``frame.attrs["skipped_channels"]``, their programmes counted in ``frame.attrs["counts"]``). Every programme of a mapped
channel is kept: a missing stop, clumps, same-minute starts and overlaps are resolved by :func:`resolve_channel` and
counted; unparseable times are counted as invalid with their reason.
The kind comes from the categories (Russian or English words); a programme with a sub-title, an episode number or a
``series`` category belongs to the strand ``series`` = its title. Run :func:`~tv_platform.epg.guide.normalize_day`
on the result to get one day exactly covered (gaps become ``unknown`` programmes).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from xml.etree import ElementTree
from zoneinfo import ZoneInfo

import pandas as pd

from tv_platform.epg.guide import empty_guide, programme_id, typed

CATEGORY_KINDS: list[tuple[str, str]] = [
    ("news", r"news|новост|информ"),
    ("sport", r"sport|спорт|футбол|хоккей"),
    ("kids", r"kids|child|детск|мульт|анимац|animation"),
    ("film", r"movie|film|фильм|кино"),
    ("series", r"series|сериал"),
    ("documentary", r"documentar|докум|познават|nature|природ|history|истор"),
    ("music", r"music|музык|концерт"),
]
_TIME = re.compile(r"^(\d{8,14})\s*([+-]\d{4})?")


def parse_time(text: str, local_tz: str = "Europe/Moscow") -> pd.Timestamp:
    """``20230923200000 +0300`` (seconds and the offset optional) → naive wall-clock time in ``local_tz``."""
    m = _TIME.match((text or "").strip())
    if not m:
        raise ValueError(f"not an XMLTV time: {text!r}")
    digits = m.group(1).ljust(14, "0")
    naive = datetime.strptime(digits, "%Y%m%d%H%M%S")
    if m.group(2):
        off = m.group(2)
        sign = 1 if off[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(off[1:3]), minutes=int(off[3:5])))
        naive = naive.replace(tzinfo=tz).astimezone(ZoneInfo(local_tz)).replace(tzinfo=None)
    return pd.Timestamp(naive)


def kind_of(categories: list[str]) -> str:
    text = " ".join(categories).lower()
    for kind, pattern in CATEGORY_KINDS:
        if re.search(pattern, text):
            return kind
    return "show"


def episode_of(elements) -> int:
    """Episode number (1-based) from ``<episode-num>``: ``xmltv_ns`` (zero-based ``season.episode.part``) first, then
    ``onscreen`` (``S01E05``, ``E5``, ``5``); 0 when none."""
    by_system = {(e.get("system") or "").lower(): (e.text or "").strip() for e in elements}
    ns = by_system.get("xmltv_ns")
    if ns:
        part = ns.split(".")[1].split("/")[0].strip() if "." in ns else ""
        if part.isdigit():
            return int(part) + 1
    for value in by_system.values():
        m = re.search(r"(?:E|Серия\s*|^)(\d+)\s*$", value, re.IGNORECASE)
        if m:
            return int(m.group(1))
    return 0


LAST_PROGRAMME_MINUTES = 60
"""A channel's last programme without ``stop`` (nothing after it ends it) is given this length."""


def _clump(text: str | None) -> tuple[int, int]:
    """``clumpidx="1/3"`` → (1, 3); absent or malformed → (0, 1)."""
    m = re.match(r"^\s*(\d+)\s*/\s*(\d+)\s*$", text or "")
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        return 0, 1
    return int(m.group(1)), int(m.group(2))


def resolve_channel(rows: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """One channel's programmes (sorted by start, then clump index, then document order) made a sequence without
    overlaps, keeping every programme (docs/programmes.md, "XMLTV import"):

    1. a missing ``stop`` ends at the next programme's start (the last one: :data:`LAST_PROGRAMME_MINUTES`);
    2. programmes sharing a start (a ``clumpidx`` clump, or several programmes given the same slot) share their slot:
       it is cut into equal parts in clump / document order — the XMLTV DTD says a clump's programmes cannot be told
       apart in time, so none is preferred;
    3. a programme still overlapping the next one ends where the next starts (the later start wins).

    Exact duplicates (same start, stop and title) are one programme. Returns the rows and the counts of each rule."""
    counts = {"stop_from_next_start": 0, "stop_defaulted": 0, "shared_slots": 0, "overlaps_trimmed": 0,
              "duplicates": 0}
    rows = rows.sort_values(["start", "clump", "order"], kind="stable").reset_index(drop=True)
    dup = rows.duplicated(["start", "end", "title"]) & rows["end"].notna()
    counts["duplicates"] = int(dup.sum())
    rows = rows[~dup].reset_index(drop=True)
    starts = rows["start"].drop_duplicates().tolist()
    nxt_start = {a: b for a, b in zip(starts, starts[1:])}
    for i in rows.index[rows["end"].isna()]:
        after = nxt_start.get(rows.at[i, "start"])
        if after is not None:
            rows.at[i, "end"] = after
            counts["stop_from_next_start"] += 1
        else:
            rows.at[i, "end"] = rows.at[i, "start"] + pd.Timedelta(minutes=LAST_PROGRAMME_MINUTES)
            counts["stop_defaulted"] += 1
    out = []
    for start, group in rows.groupby("start", sort=True):
        if len(group) == 1:
            out.append(group)
            continue
        counts["shared_slots"] += 1
        end = group["end"].max()
        step = (end - start) / len(group)
        g = group.copy()
        g["start"] = [start + k * step for k in range(len(group))]
        g["end"] = [start + (k + 1) * step for k in range(len(group))]
        g["start"] = g["start"].dt.floor("s")
        g["end"] = g["end"].dt.floor("s")
        g.iloc[-1, g.columns.get_loc("end")] = end
        out.append(g)
    rows = pd.concat(out, ignore_index=True).sort_values(["start", "clump", "order"], kind="stable") \
        .reset_index(drop=True)
    nxt = rows["start"].shift(-1)
    over = nxt.notna() & (rows["end"] > nxt)
    counts["overlaps_trimmed"] = int(over.sum())
    rows.loc[over, "end"] = nxt[over]
    return rows, counts


def unique_ids(frame: pd.DataFrame) -> pd.Series:
    """``programme_id`` per row: channel + start minute (:func:`~tv_platform.epg.guide.programme_id`); programmes
    whose ids collide (same-minute starts, clumps) get ``~2``, ``~3``… in start order, the first keeps the plain id."""
    base = pd.Series([programme_id(c, s) for c, s in zip(frame["channel_id"], frame["xml_start"])],
                     index=frame.index)
    nth = base.groupby(base).cumcount()
    return base.where(nth == 0, base + "~" + (nth + 1).astype(str))


def parse_xmltv(data: bytes, channel_map: dict[str, int], local_tz: str = "Europe/Moscow") -> pd.DataFrame:
    """The programmes of an XMLTV document as a guide frame, every programme kept (see :func:`resolve_channel`).
    ``channel_map``: XMLTV channel id or display name → ``channel_id``. ``frame.attrs``: ``skipped_channels`` (XMLTV
    ids not mapped), ``counts`` (programmes read, kept, skipped for an unmapped channel, invalid, and each rule of
    :func:`resolve_channel`) and ``invalid`` (the first reasons). A time without an offset is the operator's
    wall-clock time (``local_tz``)."""
    root = ElementTree.fromstring(data)
    ids: dict[str, int] = {}
    for ch in root.iter("channel"):
        xid = ch.get("id") or ""
        names = [xid] + [(n.text or "").strip() for n in ch.findall("display-name")]
        found = next((channel_map[n] for n in names if n in channel_map), None)
        if found is not None:
            ids[xid] = int(found)
    rows, skipped, invalid = [], {}, []
    read = 0
    for order, p in enumerate(root.iter("programme")):
        read += 1
        xid = p.get("channel") or ""
        cid = ids.get(xid, channel_map.get(xid))
        if cid is None:
            skipped[xid] = skipped.get(xid, 0) + 1
            continue
        try:
            start = parse_time(p.get("start"), local_tz)
            stop = p.get("stop")
            end = parse_time(stop, local_tz) if stop else pd.NaT
        except ValueError as exc:
            invalid.append(f"programme #{order} on {xid}: {exc}")
            continue
        if pd.notna(end) and end <= start:
            invalid.append(f"programme #{order} on {xid}: stop {stop!r} is not after start {p.get('start')!r}")
            continue
        title = (p.findtext("title") or "").strip()
        categories = [(c.text or "").strip() for c in p.findall("category")]
        kind = kind_of(categories)
        episode = episode_of(p.findall("episode-num"))
        recurring = kind == "series" or episode > 0 or p.find("sub-title") is not None
        clump, _ = _clump(p.get("clumpidx"))
        rows.append({"channel_id": int(cid), "title": title, "kind": kind,
                     "genre": categories[-1].lower() if categories else "", "series": title if recurring else "",
                     "episode": episode, "start": start, "end": end, "xml_start": start, "clump": clump,
                     "order": order})
    counts = {"programmes_read": read, "skipped_unmapped_channel": sum(skipped.values()), "invalid": len(invalid),
              "stop_from_next_start": 0, "stop_defaulted": 0, "shared_slots": 0, "overlaps_trimmed": 0,
              "duplicates": 0}
    if not rows:
        out = empty_guide()
    else:
        parts = []
        for _, group in pd.DataFrame(rows).groupby("channel_id", sort=True):
            resolved, c = resolve_channel(group)
            parts.append(resolved)
            for k, v in c.items():
                counts[k] += v
        frame = pd.concat(parts, ignore_index=True)
        frame["programme_id"] = unique_ids(frame)
        out = typed(frame)
    counts["programmes_kept"] = len(out)
    out.attrs["skipped_channels"] = sorted(skipped)
    out.attrs["counts"] = counts
    out.attrs["invalid"] = invalid[:20]
    return out
