"""The broadcast day and the dayparts (docs/measures.md), pure logic: expected values by hand."""

from datetime import date, datetime

import pytest

from tv_platform.lake.calendar import BroadcastCalendar, clock_minutes, parse_dayparts
from tv_platform.settings import ENV_VARS


def test_default_dayparts_and_broadcast_day():
    class S:  # the documented defaults
        broadcast_day_start = ENV_VARS["TVP_BROADCAST_DAY_START"][0]
        dayparts = ENV_VARS["TVP_DAYPARTS"][0]

    cal = BroadcastCalendar.from_settings(S)
    assert cal.start == 300  # 05:00
    # night 01:00–06:00 (300), morning 06:00–12:00 (360), daytime 12:00–17:00 (300), early_evening 17:00–19:00 (120),
    # prime 19:00–23:00 (240), late 23:00–01:00 (120)
    assert cal.daypart_minutes() == {"night": 300, "morning": 360, "daytime": 300, "early_evening": 120,
                                     "prime": 240, "late": 120, "all": 1440}
    assert cal.daypart_of(0) == "night"  # 05:00
    assert cal.daypart_of(60) == "morning"  # 06:00
    assert cal.daypart_of(1140) == "late"  # 00:00 of the next calendar day
    assert cal.daypart_of(1439) == "night"  # 04:59
    # Saturday 01:30 belongs to Friday's broadcast day; 05:00 starts Saturday's
    assert cal.day_of(datetime(2024, 3, 2, 1, 30)) == date(2024, 3, 1)
    assert cal.day_of(datetime(2024, 3, 2, 5, 0)) == date(2024, 3, 2)
    assert cal.window("2024-03-01") == (datetime(2024, 3, 1, 5), datetime(2024, 3, 2, 5))


def test_midnight_is_the_calendar_day():
    cal = BroadcastCalendar.of("00:00", "day=06:00,evening=18:00")
    assert cal.day_of(datetime(2024, 3, 2, 0, 0)) == date(2024, 3, 2)
    assert cal.daypart_minutes() == {"day": 720, "evening": 720, "all": 1440}
    assert cal.daypart_of(0) == "evening" and cal.daypart_of(360) == "day"


@pytest.mark.parametrize("bad", ["", "prime", "prime=25:00", "all=06:00", "a=06:00,a=07:00", "a=06:00,b=06:00",
                                 "Prime=06:00"])
def test_bad_dayparts_are_refused(bad):
    with pytest.raises(ValueError):
        parse_dayparts(bad)


def test_bad_start_is_refused():
    with pytest.raises(ValueError, match="HH:MM"):
        clock_minutes("5:00", "TVP_BROADCAST_DAY_START")
