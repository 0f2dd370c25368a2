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
without an offset is taken as local already. XMLTV channels are mapped to the platform's ``channel_id`` by their id or
any display name (``channel_map``); unmapped channels are skipped (and counted in ``frame.attrs["skipped_channels"]``).
The kind comes from the categories (Russian or English words); a programme with a sub-title, an episode number or a
``series`` category belongs to the strand ``series`` = its title. Run :func:`~tv_platform.epg.guide.normalize_day`
on the result to get one day exactly covered (gaps become ``unknown`` programmes).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
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


def parse_xmltv(data: bytes, channel_map: dict[str, int], local_tz: str = "Europe/Moscow") -> pd.DataFrame:
    """The programmes of an XMLTV document as a guide frame. ``channel_map``: XMLTV channel id or display name →
    ``channel_id``."""
    root = ET.fromstring(data)
    ids: dict[str, int] = {}
    for ch in root.iter("channel"):
        xid = ch.get("id") or ""
        names = [xid] + [(n.text or "").strip() for n in ch.findall("display-name")]
        found = next((channel_map[n] for n in names if n in channel_map), None)
        if found is not None:
            ids[xid] = int(found)
    rows, skipped = [], set()
    for p in root.iter("programme"):
        xid = p.get("channel") or ""
        cid = ids.get(xid, channel_map.get(xid))
        if cid is None:
            skipped.add(xid)
            continue
        start = parse_time(p.get("start"), local_tz)
        stop = p.get("stop")
        end = parse_time(stop, local_tz) if stop else pd.NaT
        title = (p.findtext("title") or "").strip()
        categories = [(c.text or "").strip() for c in p.findall("category")]
        kind = kind_of(categories)
        episode = episode_of(p.findall("episode-num"))
        recurring = kind == "series" or episode > 0 or p.find("sub-title") is not None
        rows.append({"channel_id": int(cid), "programme_id": programme_id(cid, start), "title": title, "kind": kind,
                     "genre": categories[-1].lower() if categories else "", "series": title if recurring else "",
                     "episode": episode, "start": start, "end": end})
    if not rows:
        out = empty_guide()
    else:
        frame = pd.DataFrame(rows).sort_values(["channel_id", "start"], kind="stable")
        # a programme without stop ends where the next one of its channel starts
        nxt = frame.groupby("channel_id")["start"].shift(-1)
        frame["end"] = frame["end"].fillna(nxt)
        frame = frame[frame["end"].notna()]
        out = typed(frame)
    out.attrs["skipped_channels"] = sorted(skipped)
    return out
