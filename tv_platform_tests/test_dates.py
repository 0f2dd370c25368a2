"""The operator's calendar (#15): timers -> record timestamps -> days in a time zone, DST days, offsets on the wire.
Expected instants are computed by hand (UTC offsets of the zones' history), not with the platform's functions."""

from datetime import datetime, timedelta, timezone

import pytest

from tv_platform.dates import day_hours, day_start_ms, local_timer, record_day, timer_ms, today
from tv_platform.streaming import Message, validate

MS_H = 3_600_000


def utc_ms(*args) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp() * 1000)


def test_utc_is_the_default_rule():
    assert timer_ms(["2023-09-23 00:30:00"], "UTC").tolist() == [utc_ms(2023, 9, 23, 0, 30)]
    assert day_start_ms("2023-09-23", "UTC") == utc_ms(2023, 9, 23)
    assert record_day(utc_ms(2023, 9, 23) - 1, "UTC") == "2023-09-22"
    assert day_hours("2023-03-26", "UTC") == 24


def test_moscow_days_start_at_21_utc():
    """Moscow is UTC+3 since 2014-10-26: 00:30 local is 21:30 UTC the evening before, and belongs to the local day."""
    stamp = timer_ms(["2023-09-23 00:30:00"], "Europe/Moscow").tolist()[0]
    assert stamp == utc_ms(2023, 9, 22, 21, 30)
    assert record_day(stamp, "Europe/Moscow") == "2023-09-23"
    assert record_day(stamp, "UTC") == "2023-09-22"
    assert day_start_ms("2023-09-23", "Europe/Moscow") == utc_ms(2023, 9, 22, 21)
    assert record_day(day_start_ms("2023-09-23", "Europe/Moscow") - 1, "Europe/Moscow") == "2023-09-22"
    assert day_hours("2023-09-23", "Europe/Moscow") == 24
    assert today("Europe/Moscow", now=datetime(2023, 9, 22, 21, 30)).isoformat() == "2023-09-23"  # naive = UTC
    assert today("UTC", now=datetime(2023, 9, 22, 21, 30)).isoformat() == "2023-09-22"


@pytest.mark.parametrize("zone, day, hours, midnight_utc", [
    # Moscow's history: summer time until 2010 (last Sunday of March 02:00 -> 03:00, of October 03:00 -> 02:00),
    # permanent UTC+4 from 2011-03-27, back to UTC+3 on 2014-10-26 (02:00 -> 01:00)
    ("Europe/Moscow", "2010-03-28", 23, (2010, 3, 27, 21)),   # MSK +3 at midnight
    ("Europe/Moscow", "2010-10-31", 25, (2010, 10, 30, 20)),  # MSD +4 at midnight
    ("Europe/Moscow", "2011-03-27", 23, (2011, 3, 26, 21)),   # to permanent +4
    ("Europe/Moscow", "2011-10-30", 24, (2011, 10, 29, 20)),  # no change that autumn
    ("Europe/Moscow", "2014-10-26", 25, (2014, 10, 25, 20)),  # +4 -> +3
    # a zone with DST today: US Eastern, second Sunday of March / first Sunday of November at 02:00
    ("America/New_York", "2026-03-08", 23, (2026, 3, 8, 5)),
    ("America/New_York", "2026-11-01", 25, (2026, 11, 1, 4)),
    ("America/New_York", "2026-07-01", 24, (2026, 7, 1, 4)),
])
def test_dst_days_have_23_or_25_hours(zone, day, hours, midnight_utc):
    assert day_hours(day, zone) == hours
    assert day_start_ms(day, zone) == utc_ms(*midnight_utc)
    following = (datetime.fromisoformat(day) + timedelta(days=1)).date().isoformat()
    assert day_start_ms(following, zone) - day_start_ms(day, zone) == hours * MS_H
    # the last millisecond of the day is still the day, the next one is the next day
    assert record_day(day_start_ms(following, zone) - 1, zone) == day
    assert record_day(day_start_ms(following, zone), zone) == following


def test_naive_timers_in_skipped_and_repeated_hours():
    """New York, 2026-03-08: 02:00-03:00 does not exist (a timer in it reads as after the gap); 2026-11-01: 01:00-02:00
    happens twice (a timer in it reads as the first, daylight-time occurrence)."""
    gap, repeated, after = timer_ms(["2026-03-08 02:30:00", "2026-11-01 01:30:00", "2026-11-01 02:30:00"],
                                    "America/New_York").tolist()
    assert gap == utc_ms(2026, 3, 8, 7)  # shifted to 03:00 EDT
    assert repeated == utc_ms(2026, 11, 1, 5, 30)  # 01:30 EDT (-4)
    assert after == utc_ms(2026, 11, 1, 7, 30)  # 02:30 EST (-5): two hours later, not one


def test_timers_with_an_explicit_offset_are_converted():
    assert local_timer("2023-09-23 00:30:00", "Europe/Moscow") == datetime(2023, 9, 23, 0, 30)
    assert local_timer("2023-09-22T21:30:00Z", "Europe/Moscow") == datetime(2023, 9, 23, 0, 30)
    assert local_timer("2023-09-23 00:30:00+03:00", "UTC") == datetime(2023, 9, 22, 21, 30)
    assert local_timer("2023-09-23 00:30:00-0500", "Europe/Moscow") == datetime(2023, 9, 23, 8, 30)
    for bad in ("2023-09-23T00:30:00", "2023-09-23 00:30", "2023-09-23 00:30:00+25:00", "23/09/2023 00:30:00"):
        with pytest.raises(ValueError):
            local_timer(bad, "UTC")
    assert timer_ms(["2023-09-23 00:30:00+03:00", "2023-09-23 00:30:00"], "UTC").tolist() == [
        utc_ms(2023, 9, 22, 21, 30), utc_ms(2023, 9, 23, 0, 30)]


def _msg(offset: int, timer: str, status: str = "enabled") -> Message:
    sid = f"{offset:032x}"
    return Message(0, offset, (f'{{"session_id":"{sid}","user_id":1,"channel_id":1,"timer":"{timer}",'
                               f'"status":"{status}"}}').encode())


def test_landing_puts_every_event_in_its_own_day():
    """One range, cut for 2023-09-23: events of the 22nd and the 24th land in their own days; a date outside the
    partitions is quarantined with the reason; an offset timer lands converted (UTC here: the default zone)."""
    days = {"2023-09-22", "2023-09-23", "2023-09-24"}
    messages = [_msg(0, "2023-09-23 23:59:00"), _msg(1, "2023-09-24 00:10:00", "disabled"),
                _msg(2, "2023-09-22 22:00:00"), _msg(3, "2023-09-26 00:00:00"),
                _msg(4, "2023-09-24 02:00:00+03:00"), _msg(5, "2023-09-20 10:00:00")]
    landing = validate(messages, "2023-09-23", days=days)
    assert landing.read == 6
    by_day = landing.by_day()
    assert {d: len(f) for d, f in by_day.items()} == {"2023-09-22": 1, "2023-09-23": 2, "2023-09-24": 1}
    assert by_day["2023-09-23"]["timer"].tolist() == ["2023-09-23 23:59:00", "2023-09-23 23:00:00"]
    reasons = {x.message.offset: x.reason for x in landing.rejected}
    assert set(reasons) == {3, 5}
    assert "after tomorrow" in reasons[3] and "clock-skew" in reasons[3]
    assert "outside the partitions 2023-09-22..2023-09-24" in reasons[5]
    # without the partitions, the old rule: one day only
    assert len(validate(messages, "2023-09-23").good) == 2


def test_timer_texts_are_what_strftime_writes():
    """The Arrow cast behind every timer the platform writes (producer, live replay, lake CSV) gives strftime's text:
    seconds truncated, NaT as a null, any datetime64 unit, dates before 1970 and after 2038."""
    import pandas as pd

    from tv_platform.dates import timer_texts

    values = pd.Series(pd.to_datetime(["2023-10-10 01:02:03.7", None, "1969-12-31 23:59:59", "2099-02-28 00:00:00",
                                       "2024-02-29 12:00:00"], format="ISO8601"))
    want = [None if pd.isna(v) else v for v in values.dt.strftime("%Y-%m-%d %H:%M:%S")]
    for unit in ("s", "ms", "us", "ns"):
        assert timer_texts(values.astype(f"datetime64[{unit}]")).to_pylist() == want
