"""The broadcast day and the dayparts: which day and which daypart a viewing minute belongs to (docs/measures.md).

A **broadcast day** D runs from D at ``TVP_BROADCAST_DAY_START`` (default 05:00, Mediascope's day; Nielsen and BARB
start at 06:00, AGF at 03:00; ``00:00`` is the calendar day) to the same clock time on D+1. Its minutes are numbered
from the start (0..1439 on an ordinary day, see *Real time*). Friday 01:30 belongs to Thursday's broadcast day with a 05:00 start, so weekday / weekend is
the broadcast day's weekday.

**Dayparts** are a table of ``name=HH:MM`` clock starts (``TVP_DAYPARTS``); each daypart runs from its start to the
next one's, the last one wrapping round to the first (so ``night=01:00`` … ``late=23:00`` makes ``late`` 23:00–01:00).
They are clock times, independent of where the broadcast day starts.

**The broadcast day decides the day of every viewing minute**: the lake's daily aggregates, the programme attribution
and the audience measures all partition by it (partition D = broadcast day D). Hours stay clock hours.

**Real time.** A broadcast day is as long as the operator's clock makes it (TVP_TIMEZONE): 24 hours, or 23 / 25 on the
day that holds a DST change. Its seconds and minutes are real elapsed time from its start (minute 0..1379 / 1439 /
1499); the clock time of a minute — and so its daypart and clock hour — is read from the wall clock
(:meth:`BroadcastCalendar.clock_segments`), so the hour a spring change skips has no minute and the hour an autumn
change repeats has two hours of them.

Pure functions of settings and days, plus the Spark columns that map a minute to its clock time and daypart; nothing
here reads a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from tv_platform.dates import as_date, timer_ms

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
        """Clock minutes after midnight of minute ``minute`` (0..1439) of a 24-hour broadcast day (a DST day:
        :meth:`clock_segments`)."""
        return (self.start + int(minute)) % DAY_MINUTES

    def daypart_of(self, minute: int) -> str:
        """The daypart of minute ``minute`` of a 24-hour broadcast day."""
        return self.daypart_of_clock(self.clock_of(minute))

    def daypart_of_clock(self, clock: int) -> str:
        """The daypart of clock minute ``clock`` (minutes after midnight)."""
        best = self.dayparts[-1]  # before the first start: the last daypart (it wraps)
        for p in self.dayparts:
            if p.start <= clock:
                best = p
        return best.name

    def daypart_minutes(self, day=None) -> dict[str, int]:
        """Minutes of each daypart in broadcast day ``day`` (and ``all`` = the day's minutes): real minutes, so on a
        DST day the daypart holding the change has 60 minutes less or more. Without a day: a 24-hour day."""
        out: dict[str, int] = {p.name: 0 for p in self.dayparts}
        if day is None:
            for m in range(DAY_MINUTES):
                out[self.daypart_of(m)] += 1
            out[ALL_DAY] = DAY_MINUTES
            return out
        segments = self.clock_segments(day)
        n = self.day_minutes(day)
        bounds = [f for f, _ in segments[1:]] + [n]
        for (first, clock), end in zip(segments, bounds):
            for m in range(first, end):
                out[self.daypart_of_clock((clock + m - first) % DAY_MINUTES)] += 1
        out[ALL_DAY] = n
        return out

    def daypart_column(self, minute_col, day=None):
        """Spark column: the daypart name of a broadcast-day minute column (real minutes of ``day``; no day: 24 h)."""
        from pyspark.sql import functions as F

        clock = self.clock_column(minute_col, day)
        expr = F.lit(self.dayparts[-1].name)
        for p in self.dayparts:  # ascending starts, each wrapping the last: the latest start <= clock wins
            expr = F.when(clock >= p.start, F.lit(p.name)).otherwise(expr)
        return expr

    # ---- real time (the operator's zone) ------------------------------------------------------------------------
    def start_wall(self, day) -> datetime:
        """The wall-clock start of broadcast day ``day`` (naive, the operator's zone)."""
        return self.window(day)[0]

    def bounds_ms(self, day, tz: str | None = None) -> tuple[int, int]:
        """[start, end) of broadcast day ``day`` as epoch ms (the operator's zone, TVP_TIMEZONE, or ``tz``)."""
        lo, hi = self.window(day)
        a, b = timer_ms([lo.strftime("%Y-%m-%d %H:%M:%S"), hi.strftime("%Y-%m-%d %H:%M:%S")], tz)
        return int(a), int(b)

    def day_seconds(self, day, tz: str | None = None) -> int:
        """The real length of broadcast day ``day`` in seconds: 86 400, or 82 800 / 90 000 across a DST change."""
        a, b = self.bounds_ms(day, tz)
        return (b - a) // 1000

    def day_minutes(self, day=None, tz: str | None = None) -> int:
        """The real length of broadcast day ``day`` in minutes: 1440, or 1380 / 1500 (1440 without a day)."""
        return DAY_MINUTES if day is None else self.day_seconds(day, tz) // 60

    def hour_segments(self, day, tz: str | None = None) -> list[tuple[int, int, int]]:
        """The clock hours of broadcast day ``day``: ``(hour, lo_s, hi_s)`` in real seconds from its start, in time
        order. Cut at every whole wall-clock hour; the first and last pieces are partial when the day starts off the
        hour (so one clock hour may appear twice). The hour a spring DST change skips has no piece, the hour an
        autumn change repeats is one piece of two hours."""
        lo, hi = self.window(day)
        walls = [lo]
        t = lo.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        while t < hi:
            walls.append(t)
            t += timedelta(hours=1)
        walls.append(hi)
        ms = [int(x) for x in timer_ms([w.strftime("%Y-%m-%d %H:%M:%S") for w in walls], tz)]
        out = []
        for w, a, b in zip(walls, ms, ms[1:]):
            if b > a:
                out.append((w.hour, (a - ms[0]) // 1000, (b - ms[0]) // 1000))
        return out

    def clock_segments(self, day, tz: str | None = None) -> list[tuple[int, int]]:
        """Where the wall clock of broadcast day ``day`` jumps: ``(first_minute, clock_minute)`` pairs — from real minute
        ``first_minute`` on, minute m is at clock minute ``(clock_minute + m - first_minute) % 1440``. One pair on an
        ordinary day, two across a DST change."""
        from datetime import timezone as _tz

        from tv_platform.dates import zone

        z = zone(tz)
        lo_ms, _ = self.bounds_ms(day, tz)
        out: list[tuple[int, int]] = []
        for m in range(self.day_minutes(day, tz)):
            wall = datetime.fromtimestamp(lo_ms / 1000 + 60 * m, _tz.utc).astimezone(z)
            clock = wall.hour * 60 + wall.minute
            if not out or (out[-1][1] + m - out[-1][0]) % DAY_MINUTES != clock:
                out.append((m, clock))
        return out

    def clock_column(self, minute_col, day=None):
        """Spark column: the clock minute (0..1439) of a real minute of broadcast day ``day`` (no day: 24 h)."""
        from pyspark.sql import functions as F

        segments = [(0, self.start)] if day is None else self.clock_segments(day)
        expr = None
        for first, clock in segments:
            value = (F.lit(clock - first) + minute_col + F.lit(DAY_MINUTES)) % DAY_MINUTES
            expr = value if expr is None else F.when(minute_col >= first, value).otherwise(expr)
        return expr

    def describe(self) -> str:
        h, m = divmod(self.start, 60)
        parts = ", ".join(f"{p.name} {p.label()}" for p in self.dayparts)
        return f"broadcast day {h:02d}:{m:02d}–{h:02d}:{m:02d}; dayparts: {parts}"


def weekday_of(day) -> tuple[int, str, bool]:
    """ISO weekday (1 = Monday), its name and whether it is Saturday or Sunday — of the broadcast day."""
    d = as_date(day)
    return d.isoweekday(), WEEKDAYS[d.weekday()], d.weekday() >= 5
