"""Pure logic of landing the Kafka stream: validating messages and cutting offset ranges by event date.

Nothing here talks to a service, so it is unit-tested directly; the sensor and the snapshot asset use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, NamedTuple, Sequence

from tv_platform.layout import EVENT_COLUMNS, STATUSES

if TYPE_CHECKING:
    import pandas as pd

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
TIMER_FORMAT = "%Y-%m-%d %H:%M:%S"


class Message(NamedTuple):
    """What the landing needs of a Kafka record (a tuple: the sensor and the landing make one per record)."""

    partition: int
    offset: int
    value: bytes
    timestamp_ms: int = 0
    key: bytes | None = None


class Records:
    """The records of one partition read from Kafka, column-wise: offsets and timestamps (numpy int64), keys and values
    (Arrow binary arrays; a null is a record without one). Iterating gives ``Message``s."""

    def __init__(self, partition: int, offsets, timestamps, values, keys=None):
        import numpy as np
        import pyarrow as pa

        self.partition = partition
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.timestamps = np.asarray(timestamps, dtype=np.int64)
        self.values = values if isinstance(values, pa.Array) else pa.array(values, type=pa.binary())
        self.keys = keys if keys is not None else pa.nulls(len(self.offsets), type=pa.binary())
        if not len(self.offsets) == len(self.timestamps) == len(self.values) == len(self.keys):
            raise ValueError("offsets, timestamps, values and keys differ in length")

    @classmethod
    def empty(cls, partition: int) -> "Records":
        return cls(partition, [], [], [])

    @classmethod
    def of(cls, messages: "Records | Sequence[Message]", partition: int = 0) -> "Records":
        """``messages`` as Records (they already are, or a list of Messages of one partition)."""
        if isinstance(messages, Records):
            return messages
        import pyarrow as pa

        messages = list(messages)
        return cls(messages[0].partition if messages else partition, [m.offset for m in messages],
                   [m.timestamp_ms for m in messages], [m.value for m in messages],
                   pa.array([m.key for m in messages], type=pa.binary()))

    @classmethod
    def concat(cls, partition: int, chunks: "Sequence[Records]") -> "Records":
        import numpy as np
        import pyarrow as pa

        if not chunks:
            return cls.empty(partition)
        if len(chunks) == 1:
            return chunks[0]
        return cls(partition, np.concatenate([c.offsets for c in chunks]),
                   np.concatenate([c.timestamps for c in chunks]),
                   pa.concat_arrays([c.values for c in chunks]), pa.concat_arrays([c.keys for c in chunks]))

    def __len__(self) -> int:
        return len(self.offsets)

    def __getitem__(self, i: int) -> Message:
        return Message(self.partition, int(self.offsets[i]), self.values[i].as_py(), int(self.timestamps[i]),
                       self.keys[i].as_py())

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


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


def parse_event(value: bytes | None) -> Event:
    """Parse and type-check one message value; ValueError with the reason when it is bad (the reason is kept)."""
    if value is None:
        raise ValueError("no payload (a null value)")
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


_TIMER_DATE_PATTERN = r'"timer"\s*:\s*"(?P<day>\d{4}-\d{2}-\d{2})[ T]\d{2}:\d{2}:\d{2}"'


def _real_day(day: str) -> bool:
    try:
        date.fromisoformat(day)
    except ValueError:
        return False
    return True


def event_dates(values, valid_days: set[str] | None = None):
    """The ISO date of every value's timer (an Arrow binary array, all at once — the sensor dates every new message,
    so this is its hot path): a numpy object array, None where a value has no readable, real date or one outside
    ``valid_days``.

    A regular expression on the raw bytes, not a JSON parse. A payload it dates wrongly (say, a "timer" inside a nested
    object) is still fully validated by the landing run, and quarantined there if it is bad."""
    import numpy as np
    import pyarrow.compute as pc

    found = pc.struct_field(pc.extract_regex(values, _TIMER_DATE_PATTERN), [0])
    days = found.cast("string").to_numpy(zero_copy_only=False)
    usable = [d for d in set(days.tolist()) - {None}
              if _real_day(d) and (valid_days is None or d in valid_days)]
    return np.where(np.isin(days, np.array(usable, dtype=object)), days, None)


@dataclass(frozen=True)
class DateRange:
    """A contiguous offset range [start, end) of one partition whose events belong to one day."""

    partition: int
    start: int
    end: int
    day: str


def cut_by_date(partition: int, messages: "Records | Sequence[Message]", end: int, valid_days: set[str] | None = None,
                fallback_day: str | None = None) -> list[DateRange]:
    """Cut the messages of one partition (in offset order, ending before ``end``) into contiguous ranges of one date.

    A message without a readable date — or with a date outside ``valid_days`` — joins the range it sits in (it will be
    quarantined there with its reason), so every offset belongs to exactly one range: no gaps, no overlaps.
    """
    import numpy as np
    import pandas as pd

    records = Records.of(messages, partition)
    if not len(records):
        return []
    # dateless messages take the day of the previous dated one, or of the next one at the start
    days = pd.Series(event_dates(records.values, valid_days), dtype=object).ffill().bfill()
    if days.isna().any():
        if fallback_day is None:
            raise ValueError("no message in the batch has a usable date and no fallback day was given")
        days = days.fillna(fallback_day)
    days = days.to_numpy()
    cuts = [0, *(np.flatnonzero(days[1:] != days[:-1]) + 1).tolist(), len(days)]
    offsets = records.offsets.tolist()
    return [DateRange(partition, offsets[a], offsets[b] if b < len(offsets) else end, days[a])
            for a, b in zip(cuts, cuts[1:])]


@dataclass
class Landing:
    """The outcome of validating one range for one day: the good events (a frame with ``EVENT_COLUMNS``, timer as
    ``YYYY-MM-DD HH:MM:SS`` text, in message order) and the rejected messages with their reasons."""

    good: "pd.DataFrame"
    rejected: list[Rejected]

    @property
    def rows(self) -> list[list]:
        return self.good.values.tolist()

    @property
    def read(self) -> int:
        return len(self.good) + len(self.rejected)


_JSON_WS = "[ \t\n\r]*"
_INT = "-?(?:0|[1-9][0-9]{0,17})"
_CANONICAL = (
    "^" + _JSON_WS + r"\{" + _JSON_WS
    + (_JSON_WS + "," + _JSON_WS).join([
        '"session_id"' + _JSON_WS + ":" + _JSON_WS + '"(?P<session_id>[0-9a-f]{32})"',
        '"user_id"' + _JSON_WS + ":" + _JSON_WS + f"(?P<user_id>{_INT})",
        '"channel_id"' + _JSON_WS + ":" + _JSON_WS + f"(?P<channel_id>{_INT})",
        '"timer"' + _JSON_WS + ":" + _JSON_WS
        + '"(?P<timer>[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})"',
        '"status"' + _JSON_WS + ":" + _JSON_WS + f'"(?P<status>{"|".join(STATUSES)})"',
    ])
    + _JSON_WS + r"\}" + _JSON_WS + "$"
)
"""A well-formed event as producers write it (fields in wire order, any JSON whitespace): such a message is decided
column-wise; any other message — other field order, escapes, strings for numbers, anything bad — goes through
``parse_event`` one by one, so both paths accept and reject exactly the same messages."""


def validate(messages: "Records | Sequence[Message]", day: str, channel_ids: set[int],
             user_ids: "set[int] | range") -> Landing:
    """Split a range's messages into good events and rejected messages, each with its reason.

    Bulk: the common, canonical message is parsed and checked with Arrow kernels over the whole range; the rest with
    ``parse_event``. Reasons, in the order they are tried: the payload itself (``parse_event``), unknown channel,
    unknown user, event date outside the partition."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    records = Records.of(messages)
    n = len(records)
    columns = {c: [] for c in EVENT_COLUMNS}
    index: list[int] = []
    rejected: dict[int, Rejected] = {}

    # 1. canonical messages, column-wise
    fast = np.zeros(n, dtype=bool)
    if n:
        found = pc.extract_regex(records.values, _CANONICAL)
        matched = pc.is_valid(found).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(matched)
        if len(rows):
            sub = found.filter(pa.array(matched))
            field = {c: sub.field(c).cast(pa.string()) for c in EVENT_COLUMNS}
            timers = field["timer"]
            parsed = pc.strptime(timers, format=TIMER_FORMAT, unit="s", error_is_null=True)
            # Arrow rolls 2023-02-30 over to 03-02; a timer is good only if it reads back the same
            real = pc.fill_null(pc.equal(pc.strftime(parsed, format=TIMER_FORMAT), timers), False).to_numpy(zero_copy_only=False)
            rows, field = rows[real], {c: a.filter(pa.array(real)) for c, a in field.items()}
            fast[rows] = True
            user = field["user_id"].cast(pa.int64()).to_numpy()
            channel = field["channel_id"].cast(pa.int64()).to_numpy()
            timer = field["timer"].to_numpy(zero_copy_only=False)
            known_channel = np.isin(channel, np.fromiter(channel_ids, dtype=np.int64, count=len(channel_ids)))
            if isinstance(user_ids, range) and user_ids.step == 1:
                known_user = (user >= user_ids.start) & (user < user_ids.stop)
            else:
                known_user = np.isin(user, np.fromiter(user_ids, dtype=np.int64, count=len(user_ids)))
            dates = pc.utf8_slice_codeunits(field["timer"], 0, 10).to_numpy(zero_copy_only=False)
            in_day = dates == day
            for i in np.flatnonzero(~(known_channel & known_user & in_day)):
                at = int(rows[i])
                if not known_channel[i]:
                    reason = f"unknown channel_id {channel[i]}"
                elif not known_user[i]:
                    reason = f"unknown user_id {user[i]}"
                else:
                    reason = f"event date {dates[i]} is outside the partition {day}"
                rejected[at] = Rejected(records[at], reason)
            ok = known_channel & known_user & in_day
            index.extend(rows[ok].tolist())
            columns["session_id"].extend(field["session_id"].filter(pa.array(ok)).to_pylist())
            columns["user_id"].extend(user[ok].tolist())
            columns["channel_id"].extend(channel[ok].tolist())
            columns["timer"].extend(timer[ok].tolist())
            columns["status"].extend(field["status"].filter(pa.array(ok)).to_pylist())

    # 2. everything else, one by one, with the reason parse_event gives
    for at in np.flatnonzero(~fast).tolist():
        m = records[at]
        try:
            ev = parse_event(m.value)
        except ValueError as exc:
            rejected[at] = Rejected(m, str(exc))
            continue
        if ev.channel_id not in channel_ids:
            rejected[at] = Rejected(m, f"unknown channel_id {ev.channel_id}")
        elif ev.user_id not in user_ids:
            rejected[at] = Rejected(m, f"unknown user_id {ev.user_id}")
        elif ev.timer.date().isoformat() != day:
            rejected[at] = Rejected(m, f"event date {ev.timer.date().isoformat()} is outside the partition {day}")
        else:
            index.append(at)
            for c, v in zip(EVENT_COLUMNS, ev.row()):
                columns[c].append(v)

    good = pd.DataFrame({c: pd.Series(v, dtype="int64" if c in ("user_id", "channel_id") else "str")
                         for c, v in columns.items()}, columns=list(EVENT_COLUMNS))
    if len(good):
        good.index = index
        good = good.sort_index().reset_index(drop=True)  # message order
    if len(good) + len(rejected) != n:
        raise AssertionError(f"validation lost messages: {n} read, {len(good)} good + {len(rejected)} rejected")
    return Landing(good, [rejected[k] for k in sorted(rejected)])
