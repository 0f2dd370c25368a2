"""Pure logic of landing the Kafka stream: validating messages and cutting offset ranges by event date.

Nothing here talks to a service, so it is unit-tested directly; the sensor and the snapshot asset use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Iterable, Sequence

from tv_platform.layout import EVENT_COLUMNS, STATUSES

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
TIMER_FORMAT = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Message:
    """What the landing needs of a Kafka record."""

    partition: int
    offset: int
    value: bytes
    timestamp_ms: int = 0


@dataclass(frozen=True)
class Event:
    session_id: str
    user_id: int
    channel_id: int
    timer: datetime
    status: str

    def row(self) -> list:
        return [self.session_id, self.user_id, self.channel_id, self.timer.strftime(TIMER_FORMAT), self.status]


@dataclass(frozen=True)
class Rejected:
    message: Message
    reason: str


def _int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError(f"{name} is not an integer: {value!r}")
    return value


def parse_event(value: bytes) -> Event:
    """Parse and type-check one message value; ValueError with the reason when it is bad (the reason is kept)."""
    try:
        obj = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc.msg} at char {exc.pos}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"payload is a JSON {type(obj).__name__}, not an object")
    missing = [f for f in EVENT_COLUMNS if f not in obj]
    if missing:
        raise ValueError(f"missing fields: {', '.join(missing)}")
    extra = sorted(set(obj) - set(EVENT_COLUMNS))
    if extra:
        raise ValueError(f"unexpected fields: {', '.join(extra)}")
    session_id = obj["session_id"]
    if not isinstance(session_id, str) or not SESSION_ID.match(session_id):
        raise ValueError(f"session_id is not 32 lowercase hex digits: {session_id!r}")
    user_id = _int(obj["user_id"], "user_id")
    channel_id = _int(obj["channel_id"], "channel_id")
    if not isinstance(obj["timer"], str):
        raise ValueError(f"timer is not a string: {obj['timer']!r}")
    try:
        timer = datetime.strptime(obj["timer"], TIMER_FORMAT)
    except ValueError:
        raise ValueError(f"unparseable timer: {obj['timer']!r} (expected YYYY-MM-DD HH:MM:SS)") from None
    status = obj["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown status: {status!r}")
    return Event(session_id, user_id, channel_id, timer, status)


_TIMER_DATE = re.compile(rb'"timer"\s*:\s*"(\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}"')


def event_date(value: bytes) -> str | None:
    """The ISO date of a message's timer, or None when it has none readable (such a message is judged by the asset).

    A regular expression on the raw bytes, not a JSON parse: the sensor reads every new message, so this is its hot
    path. A payload it dates wrongly (say, a "timer" inside a nested object) is still fully validated by the asset."""
    found = _TIMER_DATE.search(value)
    if found is None:
        return None
    day = found.group(1).decode()
    try:
        date.fromisoformat(day)
    except ValueError:
        return None
    return day


@dataclass(frozen=True)
class DateRange:
    """A contiguous offset range [start, end) of one partition whose events belong to one day."""

    partition: int
    start: int
    end: int
    day: str

    def as_config(self) -> dict:
        return {"partition": self.partition, "start": self.start, "end": self.end}


def cut_by_date(partition: int, messages: Sequence[Message], end: int, valid_days: set[str] | None = None,
                fallback_day: str | None = None) -> list[DateRange]:
    """Cut the messages of one partition (in offset order, ending before ``end``) into contiguous ranges of one date.

    A message without a readable date — or with a date outside ``valid_days`` — joins the range it sits in (it will be
    quarantined there with its reason), so every offset belongs to exactly one range: no gaps, no overlaps.
    """
    if not messages:
        return []
    days: list[str | None] = []
    for m in messages:
        day = event_date(m.value)
        if day is not None and valid_days is not None and day not in valid_days:
            day = None
        days.append(day)
    # dateless messages take the day of the previous dated one, or of the next one at the start
    first_known = next((d for d in days if d is not None), None) or fallback_day
    if first_known is None:
        raise ValueError("no message in the batch has a usable date and no fallback day was given")
    current = first_known
    for i, d in enumerate(days):
        if d is None:
            days[i] = current
        else:
            current = d
    ranges: list[DateRange] = []
    start = messages[0].offset
    for i in range(1, len(messages)):
        if days[i] != days[i - 1]:
            ranges.append(DateRange(partition, start, messages[i].offset, days[i - 1]))  # type: ignore[arg-type]
            start = messages[i].offset
    ranges.append(DateRange(partition, start, end, days[-1]))  # type: ignore[arg-type]
    return ranges


@dataclass
class Landing:
    """The outcome of validating one range for one day."""

    rows: list[list]
    rejected: list[Rejected]

    @property
    def read(self) -> int:
        return len(self.rows) + len(self.rejected)


def validate(messages: Iterable[Message], day: str, channel_ids: set[int], user_ids: "set[int] | range") -> Landing:
    """Split a range's messages into good event rows and rejected messages, each with its reason."""
    rows: list[list] = []
    rejected: list[Rejected] = []
    for m in messages:
        try:
            ev = parse_event(m.value)
        except ValueError as exc:
            rejected.append(Rejected(m, str(exc)))
            continue
        if ev.channel_id not in channel_ids:
            rejected.append(Rejected(m, f"unknown channel_id {ev.channel_id}"))
        elif ev.user_id not in user_ids:
            rejected.append(Rejected(m, f"unknown user_id {ev.user_id}"))
        elif ev.timer.date().isoformat() != day:
            rejected.append(Rejected(m, f"event date {ev.timer.date().isoformat()} is outside the partition {day}"))
        else:
            rows.append(ev.row())
    return Landing(rows, rejected)
