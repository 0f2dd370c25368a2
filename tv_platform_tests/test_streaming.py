"""Unit tests of the landing logic (no services): message validation and cutting offset ranges by event date."""

import json
from datetime import date, timedelta

import pytest

from tv_platform.streaming import Message, parse_event, validate

SID = "0123456789abcdef0123456789abcdef"


def msg(offset, **overrides):
    event = {"session_id": SID, "user_id": 7, "channel_id": 3, "timer": "2023-09-23 20:00:00", "status": "enabled"}
    event.update(overrides)
    event = {k: v for k, v in event.items() if v is not ...}
    return Message(0, offset, json.dumps(event).encode())


def test_good_event_parses_to_typed_row():
    ev = parse_event(msg(0).value)
    assert ev.row() == [SID, 7, 3, "2023-09-23 20:00:00", "enabled"]


@pytest.mark.parametrize(
    "value, reason",
    [
        (b"{not json", "malformed JSON"),
        (b"\xff\xfe", "payload is not UTF-8"),
        (b"[1, 2]", "payload is a JSON list"),
        (msg(0, status=...).value, "missing fields: status"),
        (msg(0, extra=1).value, "unexpected fields: extra"),
        (msg(0, user_id="abc").value, "user_id is not an integer"),
        (msg(0, channel_id=1.5).value, "channel_id is not an integer"),
        (msg(0, timer="23/09/2023 20:00").value, "unparseable timer"),
        (msg(0, status="paused").value, "unknown status: 'paused'"),
        (msg(0, session_id="xyz").value, "session_id is not 32 lowercase hex"),
    ],
)
def test_bad_messages_are_rejected_with_their_reason(value, reason):
    with pytest.raises(ValueError) as err:
        parse_event(value)
    assert reason in str(err.value)


def test_validate_splits_good_and_rejected_and_conserves_counts():
    messages = [msg(0), msg(1, channel_id=999), msg(2, user_id=10**9), msg(3, timer="2023-09-24 00:10:00"),
                Message(0, 4, b"garbage"), msg(5, status="disabled", timer="2023-09-23 21:00:00")]
    landing = validate(messages, "2023-09-23", channel_ids=set(range(1, 149)), user_ids=range(1, 10_001))
    # ids missing from the reference data land (inferred members), and are named
    assert [(r[1], r[2], r[4]) for r in landing.rows] == [(7, 3, "enabled"), (7, 999, "enabled"), (10**9, 3, "enabled"),
                                                          (7, 3, "disabled")]
    assert (landing.new_channels, landing.new_users) == ([999], [10**9])
    assert [(x.message.offset, x.reason.split(" ")[0]) for x in landing.rejected] == [(3, "event"), (4, "malformed")]
    assert landing.read == len(messages)


def _one_by_one(messages, day, channel_ids, user_ids, days=None):
    """The reference: every message through parse_event, then the same checks in the same order."""
    good, bad = [], []
    for m in messages:
        try:
            ev = parse_event(m.value)
        except ValueError as exc:
            bad.append((m.offset, str(exc)))
            continue
        d = ev.timer.date().isoformat()
        if days is not None and d not in days:
            late = " (after tomorrow in the operator's zone: beyond the clock-skew tolerance)" if d > max(days) else ""
            bad.append((m.offset, f"event date {d} is outside the partitions {min(days)}..{max(days)}{late}"))
        elif days is None and d != day:
            bad.append((m.offset, f"event date {ev.timer.date().isoformat()} is outside the partition {day}"))
        else:
            good.append([str(x) for x in ev.row()])
    return good, bad


def test_bulk_validation_decides_every_message_as_parse_event_does():
    import random

    rng = random.Random(5)
    tricky = [
        b'{"session_id": "' + SID.encode() + b'", "user_id": 7, "channel_id": 3, "timer": "2023-09-23 20:00:00", '
        b'"status": "enabled"}',  # the seed producer's separators
        b' {"session_id":"' + SID.encode() + b'","user_id":7,"channel_id":3,"timer":"2023-09-23 20:00:00",'
        b'"status":"enabled"}\n',
        b'{"session_id":"' + SID.encode() + b'","user_id":007,"channel_id":3,"timer":"2023-09-23 20:00:00",'
        b'"status":"enabled"}',  # leading zeros: not JSON
        b'{"session_id":"' + SID.encode() + b'","user_id":-0,"channel_id":3,"timer":"2023-09-23 20:00:00",'
        b'"status":"enabled"}',
        b'{"session_id":"' + SID.encode() + b'","user_id":7,"channel_id":3,"timer":"2023-09-23 20:00:00",'
        b'"status":"enabled"}\x0c',  # form feed is not JSON whitespace
        b'{"status":"enabled","session_id":"' + SID.encode() + b'","user_id":7,"channel_id":3,'
        b'"timer":"2023-09-23 20:00:00"}',  # another field order
        msg(0, timer="2023-02-30 10:00:00").value,  # Arrow would roll this over to March
        msg(0, timer="2023-09-23 24:00:00").value,
        msg(0, timer="2023-09-23 23:60:00").value, msg(0, timer="2023-09-23 23:59:60").value,
        msg(0, timer="2023-02-29 10:00:00").value, msg(0, timer="2023-13-01 10:00:00").value,
        msg(0, timer="2023-00-10 10:00:00").value, msg(0, timer="0000-01-01 00:00:00").value,
        msg(0, timer="9999-12-31 23:59:59").value, msg(0, timer="2023-09-31 10:00:00").value,
        msg(0, user_id="12").value, msg(0, channel_id=True).value, msg(0, user_id=10**20).value,
        msg(0, session_id=SID.upper()).value, msg(0, status="enabled\\u0000").value,
        "{\"session_id\":\"é\"}".encode(), b"\xff", b"", b"null",
    ]
    messages = []
    for offset in range(3000):
        if rng.random() < 0.2:
            value = rng.choice(tricky)
        else:
            value = msg(0, user_id=rng.choice([1, 7, 10_000, 10_001, 0, -3]), channel_id=rng.choice([1, 148, 149, 55]),
                        timer=rng.choice(["2023-09-23 00:00:00", "2023-09-23 23:59:59", "2023-09-24 00:00:00",
                                          "2023-09-22 12:00:00"]),
                        status=rng.choice(["enabled", "disabled"])).value
            if rng.random() < 0.3:
                value = json.dumps(json.loads(value), separators=(",", ":")).encode()
        messages.append(Message(0, offset, value))
    channels, users = set(range(1, 149)), range(1, 10_001)
    landing = validate(messages, "2023-09-23", channels, users)
    want_good, want_bad = _one_by_one(messages, "2023-09-23", channels, users)
    assert [[str(x) for x in row] for row in landing.rows] == want_good
    assert [(x.message.offset, x.reason) for x in landing.rejected] == want_bad
    assert landing.read == len(messages) and len(want_good) > 400 and len(want_bad) > 1000
    assert landing.new_users == sorted({int(r[1]) for r in want_good} - set(users))
    assert landing.new_channels == sorted({int(r[2]) for r in want_good} - channels) == [149]
    # a set of user ids (not a range) decides the same
    again = validate(messages, "2023-09-23", channels, set(users))
    assert again.good.equals(landing.good) and again.new_users == landing.new_users
    # as the landing calls it: every partition's date allowed (over a thousand), each event to its own day
    days = {(date(2023, 9, 23) + timedelta(days=n)).isoformat() for n in range(-1200, 1)}
    landing = validate(messages, "2023-09-23", channels, users, days=days)
    want_good, want_bad = _one_by_one(messages, "2023-09-23", channels, users, days=days)
    assert [[str(x) for x in row] for row in landing.rows] == want_good
    assert [(x.message.offset, x.reason) for x in landing.rejected] == want_bad
    assert any("2023-09-24" in reason for _, reason in want_bad) and any(r[3][:10] == "2023-09-22" for r in want_good)


def test_a_null_value_is_quarantined_with_its_reason():
    landing = validate([msg(0), Message(0, 1, None)], "2023-09-23", set(range(1, 149)), range(1, 10_001))
    assert len(landing.good) == 1 and [x.reason for x in landing.rejected] == ["no payload (a null value)"]


def test_runs_pack_one_day_each_and_stay_under_the_limit():
    from tv_platform.sensors import load_cursor, pack_runs
    from tv_platform.streaming import DateRange

    ranges = [DateRange(0, 0, 60, "2023-09-23"), DateRange(0, 60, 70, "2023-09-24"), DateRange(1, 0, 50, "2023-09-23"),
              DateRange(2, 0, 40, "2023-09-23"), DateRange(2, 40, 45, "2023-09-24")]
    assert pack_runs(ranges, most=100) == [("2023-09-23", [[0, 0, 60]]), ("2023-09-24", [[0, 60, 70], [2, 40, 45]]),
                                           ("2023-09-23", [[1, 0, 50], [2, 0, 40]])]
    assert pack_runs(ranges, most=1_000) == [("2023-09-23", [[0, 0, 60], [1, 0, 50], [2, 0, 40]]),
                                             ("2023-09-24", [[0, 60, 70], [2, 40, 45]])]
    # a cursor written before runs carried several ranges reads as one range a run (same run keys as then)
    old = load_cursor('{"topic": "t", "epoch": "e", "next": {"0": 9}, "pending": [[0, 0, 9, "2023-09-23", 1]]}')
    assert old["pending"] == [[[[0, 0, 9]], "2023-09-23", 1, 0]]


def test_a_ticks_budget_is_shared_fairly_between_partitions():
    from tv_platform.sensors import share_budget

    assert share_budget({0: 10, 1: 500, 2: 1_000, 3: 0}, 900) == {3: 0, 0: 10, 1: 445, 2: 445}
    assert share_budget({0: 10, 1: 20}, 900) == {0: 10, 1: 20}
    assert sum(share_budget({p: 10**6 for p in range(7)}, 2_000_000).values()) <= 2_000_000


def test_the_sensor_ticks_at_the_configured_interval():
    import os
    import subprocess
    import sys

    probe = "from tv_platform.sensors import kafka_events_sensor as s; print(s.minimum_interval_seconds)"
    for setting, want in (({}, "15"), ({"TVP_KAFKA_SENSOR_INTERVAL": "7"}, "7")):
        env = {k: v for k, v in os.environ.items() if k != "TVP_KAFKA_SENSOR_INTERVAL"} | setting
        out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.split()[-1] == want


@pytest.mark.parametrize("frame", [
    {"a": [1, 2], "b": ["x", "y"]},  # landed events' kind: Arrow writes it
    {"a": [1, 2], "b": ["x,1", 'y"q']},  # a value that needs quoting
    {"a": [1.0, None], "b": ["x", None]},  # floats and missing values
    {"b": ["a\nb", "é"]},  # a line break inside a value, non-ASCII text
    {"o": [1, "x"]},  # mixed objects
    {"b": []},
])
def test_csv_bytes_are_what_pandas_writes(frame):
    """``frame_to_csv_bytes`` (Arrow for plain integer/text frames) writes byte for byte what ``DataFrame.to_csv``
    writes, with and without the header."""
    import io

    import pandas as pd

    from tv_platform.engines.hdfs import frame_to_csv_bytes

    frame = pd.DataFrame(frame)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    want = buf.getvalue().encode("utf-8")
    assert frame_to_csv_bytes(frame) == want
    assert frame_to_csv_bytes(frame, header=False) == want.split(b"\n", 1)[1]


def test_landed_events_are_written_as_pandas_writes_them():
    """A validated range's good events (the landing's frames) through the fast writer: the same bytes."""
    import io

    from tv_platform.engines.hdfs import frame_to_csv_bytes

    good = validate([msg(i, user_id=i + 1) for i in range(50)], "2023-09-23").good
    buf = io.StringIO()
    good.to_csv(buf, index=False, lineterminator="\n")
    assert frame_to_csv_bytes(good) == buf.getvalue().encode("utf-8") and len(good) == 50
