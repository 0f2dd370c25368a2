"""Pure logic of landing the Kafka stream: validating messages and the offset ranges a landing run reads.

Nothing here talks to a service, so it is unit-tested directly; the sensor and the snapshot asset use it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Collection, NamedTuple, Sequence

from tv_platform.dates import local_timer
from tv_platform.layout import EVENT_COLUMNS, STATUSES

if TYPE_CHECKING:
    import pandas as pd

SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
TIMER_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_PAYLOAD_BYTES = 64 * 1024  # an event is ~130 bytes; anything this big is not one (and is not parsed)
MAX_ID = 2**31 - 1  # user and channel ids are Hive INT columns: a bigger one would be read back as NULL


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
        if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) <= 40:
            value = int(value)
        else:
            raise ValueError(f"{name} is not an integer: {_short(value)}")
    if not 0 < value <= MAX_ID:
        raise ValueError(f"{name} out of range: {_short(value)} (ids are 1..{MAX_ID})")
    return value


def _short(value, most: int = 60) -> str:
    """``repr(value)`` for a reason, cut to ``most`` characters (a huge int or a deep value cannot make it raise)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):
        text = f"<{type(value).__name__} too large to show>"
    return text if len(text) <= most else text[:most] + f"… ({len(text)} chars)"


def parse_event(value: bytes | None) -> Event:
    """Parse and type-check one message value; ValueError with the reason when it is bad (the reason is kept)."""
    if value is None:
        raise ValueError("no payload (a null value)")
    if len(value) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload too large: {len(value)} bytes (an event has at most {MAX_PAYLOAD_BYTES})")
    try:
        obj = json.loads(value.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"payload is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"malformed JSON: {exc.msg} at char {exc.pos}") from None
    except RecursionError:
        raise ValueError("malformed event: JSON nested too deeply") from None
    except ValueError as exc:  # e.g. an integer literal of thousands of digits
        raise ValueError(f"malformed JSON: {exc}") from None
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
        raise ValueError(f"session_id is not 32 lowercase hex digits: {_short(session_id)}")
    user_id = _int(obj["user_id"], "user_id")
    channel_id = _int(obj["channel_id"], "channel_id")
    if not isinstance(obj["timer"], str):
        raise ValueError(f"timer is not a string: {_short(obj['timer'])}")
    try:
        timer = local_timer(obj["timer"])
    except ValueError:
        raise ValueError(f"unparseable timer: {_short(obj['timer'])} (expected YYYY-MM-DD HH:MM:SS, "
                         "or with an offset: YYYY-MM-DD HH:MM:SS+03:00)") from None
    status = obj["status"]
    if status not in STATUSES:
        raise ValueError(f"unknown status: {_short(status)}")
    return Event(session_id, user_id, channel_id, timer, status)


@dataclass(frozen=True)
class DateRange:
    """A contiguous offset range [start, end) of one partition whose events belong to one day."""

    partition: int
    start: int
    end: int
    day: str


@dataclass
class Landing:
    """The outcome of validating one range for one day: the good events (a frame with ``EVENT_COLUMNS``, timer as
    ``YYYY-MM-DD HH:MM:SS`` text, in message order) and the rejected messages with their reasons."""

    good: "pd.DataFrame"
    rejected: list[Rejected]
    new_channels: list[int] = field(default_factory=list)
    new_users: list[int] = field(default_factory=list)

    def by_day(self) -> "dict[str, pd.DataFrame]":
        """The good events grouped by their date (message order kept within a day), dates in order."""
        if not len(self.good):
            return {}
        dates = self.good["timer"].str.slice(0, 10)
        return {d: self.good[dates == d].reset_index(drop=True) for d in sorted(dates.unique())}

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

_COMPACT = (
    r'^\{"session_id":"[0-9a-f]{32}","user_id":' + f"(?P<user_id>{_INT})" + ',"channel_id":' + f"(?P<channel_id>{_INT})"
    + ',"timer":"(?P<tail>[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}","status":"'
    + f'(?:{"|".join(STATUSES)}))' + r'"\}$'
)
"""The canonical event without whitespace, as the platform's producer writes it: the session id is bytes 15..47,
``tail`` is the timer (its first 19 characters) and, from character 31, the status."""


def validate(messages: "Records | Sequence[Message]", day: str, channel_ids: "set[int] | None" = None,
             user_ids: "set[int] | range | None" = None, days: "Collection[str] | None" = None) -> Landing:
    """Split a range's messages into good events and rejected messages, each with its reason; total — no message can
    make it raise (a payload that breaks the parser is rejected with the reason, the rest of the range is decided).

    Bulk: the common, canonical message is parsed and checked with Arrow kernels over the whole range; the rest with
    ``parse_event``. Reasons, in the order they are tried: the payload itself (``parse_event``: size, UTF-8, JSON,
    fields, types, id range, timer, status), then the event date outside the partition. ``days``: the dates an event
    may carry (every partition, for the landing: each event then lands in its own day, ``Landing.by_day``); None =
    ``day`` only. A timer with an explicit offset is converted to the operator's wall clock. Ids missing from the
    reference data (``channel_ids``/``user_ids``) do not reject an event: it lands, and the ids are returned in
    ``new_channels``/``new_users`` (inferred dimension members, docs/lake.md)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    records = Records.of(messages)
    n = len(records)
    accepted, outside = _date_rule(day, days)
    columns = {c: [] for c in EVENT_COLUMNS}
    index: list[int] = []
    rejected: dict[int, Rejected] = {}

    # 1. canonical messages, column-wise (a failure of a kernel on odd bytes sends the whole range one by one)
    fast = np.zeros(n, dtype=bool)
    try:
        fast_columns = _canonical_columns(records, day, rejected, days) if n else None
    except (pa.ArrowException, ValueError, OverflowError):
        rejected.clear()
        fast_columns = None
    if fast_columns is not None:
        rows, ok_rows, found = fast_columns
        fast[rows] = True

    # 2. everything else, one by one, with the reason parse_event gives; nothing one message does may escape
    for at in np.flatnonzero(~fast).tolist():
        m = records[at]
        try:
            ev = parse_event(m.value)
        except ValueError as exc:
            rejected[at] = Rejected(m, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - RecursionError, MemoryError …: this message, not the range
            rejected[at] = Rejected(m, f"unreadable event: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if not accepted(ev.timer.date().isoformat()):
            rejected[at] = Rejected(m, outside(ev.timer.date().isoformat()))
        else:
            index.append(at)
            for c, v in zip(EVENT_COLUMNS, ev.row()):
                columns[c].append(v)

    if fast_columns is not None and not index:  # every good event came the bulk way: its Arrow columns, no copy
        good = pa.table({c: found[c] for c in EVENT_COLUMNS}).to_pandas()
    else:
        if fast_columns is not None:
            index[:0] = ok_rows.tolist()
            for c in EVENT_COLUMNS:
                columns[c][:0] = found[c].tolist() if isinstance(found[c], np.ndarray) else found[c].to_pylist()
        good = pd.DataFrame({c: pd.Series(v, dtype="int64" if c in ("user_id", "channel_id") else "str")
                             for c, v in columns.items()}, columns=list(EVENT_COLUMNS))
        if len(good):
            good.index = index
            good = good.sort_index().reset_index(drop=True)  # message order
    if len(good) + len(rejected) != n:
        raise AssertionError(f"validation lost messages: {n} read, {len(good)} good + {len(rejected)} rejected")
    return Landing(good, [rejected[k] for k in sorted(rejected)],
                   new_channels=_unknown(good["channel_id"], channel_ids),
                   new_users=_unknown(good["user_id"], user_ids))


def _unknown(ids: "pd.Series", known: "set[int] | range | None") -> list[int]:
    """The distinct ids not in ``known`` (sorted; none when nothing is known to compare with)."""
    import numpy as np

    if known is None or not len(ids):
        return []
    distinct = np.unique(ids.to_numpy(dtype=np.int64))
    if isinstance(known, range) and known.step == 1:
        inside = (distinct >= known.start) & (distinct < known.stop)
    else:
        inside = np.isin(distinct, np.fromiter(known, dtype=np.int64, count=len(known)))
    return distinct[~inside].tolist()


def _date_rule(day: str, days: "Collection[str] | None"):
    """(accepted(date) -> bool, outside(date) -> reason) for an event date."""
    if days is None:
        return (lambda d: d == day), (lambda d: f"event date {d} is outside the partition {day}")
    days = days if isinstance(days, (set, frozenset)) else set(days)
    first, last = min(days), max(days)

    def outside(d: str) -> str:
        if d > last:
            return (f"event date {d} is outside the partitions {first}..{last} (after tomorrow in the operator's "
                    "zone: beyond the clock-skew tolerance)")
        return f"event date {d} is outside the partitions {first}..{last}"

    return days.__contains__, outside


def _canonical_columns(records: Records, day: str, rejected: dict, days: "Collection[str] | None" = None):
    """The bulk path of :func:`validate`: (rows decided here, rows that are good — ascending —, their columns: Arrow
    text, numpy ids); the rejected ones (events of another date) are put in ``rejected``."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    small = pc.fill_null(pc.less_equal(pc.binary_length(records.values), MAX_PAYLOAD_BYTES), False)
    values = pc.if_else(small, records.values, pa.scalar(b"", pa.binary()))
    # the producers' compact form first: three captures (RE2's cost grows with them), the rest at fixed places
    compact = pc.extract_regex(values, _COMPACT)
    quick = pc.is_valid(compact).to_numpy(zero_copy_only=False)
    others = np.flatnonzero(~quick)  # anything else that may still be canonical (whitespace): the general pattern
    full = pc.extract_regex(values.take(pa.array(others, type=pa.int64())), _CANONICAL) if len(others) else None
    slow = pc.is_valid(full).to_numpy(zero_copy_only=False) if full is not None else np.zeros(0, dtype=bool)
    rows_q, rows_s = np.flatnonzero(quick), others[slow]
    empty = {c: [] for c in EVENT_COLUMNS}
    if not len(rows_q) + len(rows_s):
        return rows_q, rows_q, empty
    q = compact.filter(pa.array(quick))
    tail = q.field("tail").cast(pa.string())
    field = {"session_id": pc.binary_slice(values.filter(pa.array(quick)), 15, 47).cast(pa.string()),
             "user_id": q.field("user_id").cast(pa.string()), "channel_id": q.field("channel_id").cast(pa.string()),
             "timer": pc.utf8_slice_codeunits(tail, 0, 19), "status": pc.utf8_slice_codeunits(tail, 31)}
    rows = rows_q
    if len(rows_s):
        sub = full.filter(pa.array(slow))
        both = np.concatenate([rows_q, rows_s])
        order = pa.array(np.argsort(both, kind="stable"))
        field = {c: pa.concat_arrays([field[c], sub.field(c).cast(pa.string())]).take(order) for c in EVENT_COLUMNS}
        rows = both[order.to_numpy()]
    timers = field["timer"]
    parsed = pc.strptime(timers, format=TIMER_FORMAT, unit="s", error_is_null=True)
    # Arrow rolls 2023-02-30 over to 03-02: a timer is good only if its date reads back the same (an ISO date cast,
    # much cheaper than strftime), its clock is in range and its year is one Python's datetime has (1..9999)
    def part(lo: int, hi: int):
        return pc.utf8_slice_codeunits(timers, lo, hi).cast(pa.int16()).to_numpy()

    same_date = pc.equal(pc.cast(pc.cast(parsed, pa.date32()), pa.string()), pc.utf8_slice_codeunits(timers, 0, 10))
    real = (pc.fill_null(same_date, False).to_numpy(zero_copy_only=False) & (part(0, 4) >= 1)
            & (part(11, 13) < 24) & (part(14, 16) < 60) & (part(17, 19) < 60))
    user = field["user_id"].cast(pa.int64()).to_numpy()
    channel = field["channel_id"].cast(pa.int64()).to_numpy()
    # an id out of range goes the slow way, for parse_event's reason
    real &= (user > 0) & (user <= MAX_ID) & (channel > 0) & (channel <= MAX_ID)
    rows, user, channel = rows[real], user[real], channel[real]
    field = {c: a.filter(pa.array(real)) for c, a in field.items()}
    dates = pc.utf8_slice_codeunits(field["timer"], 0, 10)
    _, outside = _date_rule(day, days)
    # a hash lookup in Arrow: the landing passes every partition's date (a thousand and more), and numpy's isin over
    # Python strings took a second per 100 k events
    allowed = pa.array([day] if days is None else sorted(set(days)), type=pa.string())
    in_day = pc.fill_null(pc.is_in(dates, value_set=allowed), False).to_numpy(zero_copy_only=False)
    out_rows = np.flatnonzero(~in_day)
    for i, d in zip(out_rows.tolist(), dates.take(pa.array(out_rows, type=pa.int64())).to_pylist()):
        at = int(rows[i])
        rejected[at] = Rejected(records[at], outside(d))
    keep = pa.array(in_day)
    out = {"session_id": field["session_id"].filter(keep), "user_id": user[in_day], "channel_id": channel[in_day],
           "timer": field["timer"].filter(keep), "status": field["status"].filter(keep)}
    return rows, rows[in_day], out
