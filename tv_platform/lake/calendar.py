"""The broadcast day and the dayparts: which day and which daypart a viewing minute belongs to (docs/measures.md).

A **broadcast day** D runs from D at ``TVP_BROADCAST_DAY_START`` (default 05:00, Mediascope's day; Nielsen and BARB
start at 06:00, AGF at 03:00; ``00:00`` is the calendar day) to the same clock time on D+1. Its minutes are numbered
0..1439 from the start. Friday 01:30 belongs to Thursday's broadcast day with a 05:00 start, so weekday / weekend is
the broadcast day's weekday.

**Dayparts** are a table of ``name=HH:MM`` clock starts (``TVP_DAYPARTS``); each daypart runs from its start to the
next one's, the last one wrapping round to the first (so ``night=01:00`` … ``late=23:00`` makes ``late`` 23:00–01:00).
They are clock times, independent of where the broadcast day starts.

Pure functions of settings and days, plus the Spark column that maps a minute to its daypart; nothing here reads a
table. Wall-clock arithmetic without zones, like the rest of the lake (the operator's zone and daylight saving time
are the timestamps' business, see tv_platform/dates.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from tv_platform.dates import as_date

DAY_MINUTES = 1440
ALL_DAY = "all"
"""The daypart name of the whole broadcast day in the measures tables."""
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def clock_minutes(text: str, what: str = "time") -> int:
    """``HH:MM`` → minutes after midnight; ValueError with the offending text otherwise."""
    m = _HHMM.match((text or "").strip())
    if not m:
        raise ValueError(f"{what} must be HH:MM (00:00..23:59), got {text!r}")
    return int(m.group(1)) * 60 + int(m.group(2))


@dataclass(frozen=True)
class Daypart:
    name: str
    start: int  # clock minutes after midnight
    end: int  # clock minutes after midnight of the next daypart's start (may be < start: wraps past midnight)

    @property
    def minutes(self) -> int:
        return (self.end - self.start) % DAY_MINUTES or DAY_MINUTES

    def label(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}–{self.end // 60:02d}:{self.end % 60:02d}"


def parse_dayparts(text: str) -> tuple[Daypart, ...]:
    """``name=HH:MM,…`` → the dayparts in clock order. Names are lower-case identifiers, distinct and not ``all``;
    starts are distinct. One daypart alone covers the whole day."""
    items = [p.strip() for p in (text or "").split(",") if p.strip()]
    if not items:
        raise ValueError("TVP_DAYPARTS is empty: give at least one name=HH:MM")
    parsed: list[tuple[int, str]] = []
    for item in items:
        if "=" not in item:
            raise ValueError(f"TVP_DAYPARTS: {item!r} is not name=HH:MM")
        name, start = (x.strip() for x in item.split("=", 1))
        if not _NAME.match(name) or name == ALL_DAY:
            raise ValueError(f"TVP_DAYPARTS: daypart name {name!r} must be a lower-case identifier other than 'all'")
        parsed.append((clock_minutes(start, f"TVP_DAYPARTS start of {name}"), name))
    names = [n for _, n in parsed]
    starts = [s for s, _ in parsed]
    if len(set(names)) != len(names) or len(set(starts)) != len(starts):
        raise ValueError(f"TVP_DAYPARTS: names and starts must be distinct, got {text!r}")
    parsed.sort()
    return tuple(Daypart(n, s, parsed[(i + 1) % len(parsed)][0]) for i, (s, n) in enumerate(parsed))


@dataclass(frozen=True)
class BroadcastCalendar:
    """The broadcast-day start (clock minutes after midnight) and the dayparts."""

    start: int
    dayparts: tuple[Daypart, ...]

    @classmethod
    def from_settings(cls, settings=None) -> "BroadcastCalendar":
        if settings is None:
            from tv_platform.settings import get_settings

            settings = get_settings()
        return cls(clock_minutes(settings.broadcast_day_start, "TVP_BROADCAST_DAY_START"),
                   parse_dayparts(settings.dayparts))

    @classmethod
    def of(cls, start: str = "05:00", dayparts: str = "day=00:00") -> "BroadcastCalendar":
        return cls(clock_minutes(start, "broadcast day start"), parse_dayparts(dayparts))

    def window(self, day) -> tuple[datetime, datetime]:
        """[start, end) of broadcast day ``day`` as naive wall-clock datetimes."""
        d = as_date(day)
        lo = datetime.combine(d, time()) + timedelta(minutes=self.start)
        return lo, lo + timedelta(days=1)

    def day_of(self, moment: datetime) -> date:
        """The broadcast day a wall-clock instant belongs to."""
        return (moment - timedelta(minutes=self.start)).date()

    def clock_of(self, minute: int) -> int:
        """Clock minutes after midnight of minute ``minute`` (0..1439) of a broadcast day."""
        return (self.start + int(minute)) % DAY_MINUTES

    def daypart_of(self, minute: int) -> str:
        """The daypart of minute ``minute`` of a broadcast day."""
        c = self.clock_of(minute)
        best = self.dayparts[-1]  # before the first start: the last daypart (it wraps)
        for p in self.dayparts:
            if p.start <= c:
                best = p
        return best.name

    def daypart_minutes(self) -> dict[str, int]:
        """Minutes of each daypart in one broadcast day (and ``all`` = 1440)."""
        out: dict[str, int] = {p.name: 0 for p in self.dayparts}
        for m in range(DAY_MINUTES):
            out[self.daypart_of(m)] += 1
        out[ALL_DAY] = DAY_MINUTES
        return out

    def daypart_column(self, minute_col):
        """Spark column: the daypart name of a broadcast-day minute column (0..1439)."""
        from pyspark.sql import functions as F

        clock = (F.lit(self.start) + minute_col) % DAY_MINUTES
        expr = F.lit(self.dayparts[-1].name)
        for p in self.dayparts:  # ascending starts, each wrapping the last: the latest start <= clock wins
            expr = F.when(clock >= p.start, F.lit(p.name)).otherwise(expr)
        return expr

    def describe(self) -> str:
        h, m = divmod(self.start, 60)
        parts = ", ".join(f"{p.name} {p.label()}" for p in self.dayparts)
        return f"broadcast day {h:02d}:{m:02d}–{h:02d}:{m:02d}; dayparts: {parts}"


def weekday_of(day) -> tuple[int, str, bool]:
    """ISO weekday (1 = Monday), its name and whether it is Saturday or Sunday — of the broadcast day."""
    d = as_date(day)
    return d.isoweekday(), WEEKDAYS[d.weekday()], d.weekday() >= 5
