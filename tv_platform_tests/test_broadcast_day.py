"""The broadcast day decides the day of every viewing minute (issue #16 point 4) and days have their real length across
a DST change (issue #15 point 1), on the real Spark: hand-made sessions whose expected values are worked out by hand
in the comments — never by calling the code under test.

Week of the hand-made sessions: Thu 2023-09-21, Fri 09-22, Sat 09-23, Sun 09-24 (UTC). Broadcast day 05:00:

    s_late   u1 ch1  Fri 22:00 → 23:00   Friday's
    s_night  u1 ch1  Sat 01:30 → 02:00   Friday's (Saturday on the calendar)
    s_edge   u2 ch2  Fri 04:00 → 06:00   starts on Thursday's broadcast day, crosses 05:00: 60 min Thu + 60 min Fri
    s_sat    u3 ch1  Sat 20:00 → 21:00   Saturday's

Sunday's broadcast day is empty, and so is Saturday's tail (Sun 00:00 → 05:00).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from tv_platform.lake import aggregates as A
from tv_platform.lake.calendar import BroadcastCalendar

pytestmark = pytest.mark.services

B5 = BroadcastCalendar.of("05:00", "night=01:00,day=06:00")
B0 = BroadcastCalendar.of("00:00", "night=01:00,day=06:00")
THU, FRI, SAT, SUN = "2023-09-21", "2023-09-22", "2023-09-23", "2023-09-24"


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _sessions(spark, spec: list[tuple[str, int, int, str, str]], first: str, last: str):
    """Sessions (viewing_sessions rows) of calendar days first..last from (id, user, channel, start, end) — paired by
    the lake's own sessionizer from enabled/disabled events, as the graph does."""
    from pyspark.sql import functions as F

    from tv_platform.lake.sessions import sessionize, union_sources

    rows = []
    for sid, user, channel, start, end in spec:
        rows.append((sid, user, channel, start, "enabled", start[:10]))
        rows.append((sid, user, channel, end, "disabled", end[:10]))
    events = spark.createDataFrame(rows, "session_id string, user_id int, channel_id int, timer string, "
                                         "status string, dt string").withColumn(
        "timer", F.col("timer").cast("timestamp_ntz"))
    channels = spark.createDataFrame([(1, "one"), (2, "two")], "channel_id int, channel_name string")
    users = spark.createDataFrame([(u, f"user {u}") for u in (1, 2, 3)], "user_id int, user_name string")
    return sessionize(union_sources({"stream": events}), first, last, channels=channels, users=users).sessions.cache()


WEEK = [
    ("s_late", 1, 1, "2023-09-22 22:00:00", "2023-09-22 23:00:00"),
    ("s_night", 1, 1, "2023-09-23 01:30:00", "2023-09-23 02:00:00"),
    ("s_edge", 2, 2, "2023-09-22 04:00:00", "2023-09-22 06:00:00"),
    ("s_sat", 3, 1, "2023-09-23 20:00:00", "2023-09-23 21:00:00"),
]


@pytest.fixture(scope="module")
def week(spark):
    return _sessions(spark, WEEK, "2023-09-20", "2023-09-25")


def _one(frame):
    rows = frame.toPandas()
    assert len(rows) == 1
    return rows.iloc[0]


def test_saturday_night_is_fridays_and_a_session_across_0500_is_split(week):
    # Thursday's broadcast day (Thu 05:00 → Fri 05:00): s_edge started in it (04:00), 60 of its 120 min inside
    thu = _one(A.daily_viewing(week, THU, B5))
    assert (thu.views, thu.viewers, thu.active_users) == (1, 1, 1)
    assert thu.hours_by_start == pytest.approx(2.0) and thu.hours_in_day == pytest.approx(1.0)
    assert thu.hours_after_day == pytest.approx(1.0) and thu.hours_carried_in == 0
    assert thu.sessions_crossing_midnight == 1  # it crosses the broadcast day's end
    # Friday's: s_late (60) + s_night (30) started in it; s_edge carried in for 05:00 → 06:00 (60)
    fri = _one(A.daily_viewing(week, FRI, B5))
    assert (fri.views, fri.viewers, fri.active_users) == (2, 1, 2)
    assert fri.hours_by_start == pytest.approx(1.5) and fri.hours_in_day == pytest.approx(2.5)
    assert fri.hours_carried_in == pytest.approx(1.0) and fri.hours_after_day == 0
    assert fri.avg_view_minutes == pytest.approx(45.0)
    sat = _one(A.daily_viewing(week, SAT, B5))
    assert (sat.views, sat.hours_in_day) == (1, pytest.approx(1.0))
    # the empty tail: Sunday's broadcast day has a row of zeros
    sun = _one(A.daily_viewing(week, SUN, B5))
    assert (sun.views, sun.active_users, sun.hours_in_day, sun.hours_by_start) == (0, 0, 0, 0)
    # on the calendar day (00:00, the seed's day) Saturday 01:30 is Saturday's and s_edge is Friday's, whole
    fri0, sat0 = _one(A.daily_viewing(week, FRI, B0)), _one(A.daily_viewing(week, SAT, B0))
    assert (fri0.views, fri0.hours_in_day) == (2, pytest.approx(3.0))
    assert (sat0.views, sat0.hours_in_day) == (2, pytest.approx(1.5))


def test_clock_hours_and_the_weekday_heatmap_on_the_broadcast_day(week):
    fri = A.hourly_activity(week, FRI, B5).toPandas().set_index("hour")
    assert len(fri) == 24 and fri["minutes"].sum() == pytest.approx(150.0)
    assert fri.loc[5, "minutes"] == pytest.approx(60) and fri.loc[5, "sessions_started"] == 0  # s_edge, carried in
    assert fri.loc[22, "minutes"] == pytest.approx(60) and fri.loc[22, "sessions_started"] == 1
    assert fri.loc[1, "minutes"] == pytest.approx(30) and fri.loc[1, "sessions_started"] == 1  # Sat 01:30
    assert fri.loc[4, "minutes"] == 0  # Fri 04:00 → 05:00 is Thursday's
    thu = A.hourly_activity(week, THU, B5).toPandas().set_index("hour")
    assert thu.loc[4, "minutes"] == pytest.approx(60) and thu.loc[4, "sessions_started"] == 1
    assert thu["minutes"].sum() == pytest.approx(60)
    # Saturday's tail (Sunday 00:00 → 05:00) is empty: hours 0..4 are zero rows
    sat = A.hourly_activity(week, SAT, B5).toPandas().set_index("hour")
    assert list(sat.loc[0:4, "minutes"]) == [0, 0, 0, 0, 0] and sat.loc[20, "minutes"] == pytest.approx(60)
    cells = A.channel_weekday_hour(week, FRI, B5).toPandas()
    got = {(int(r.channel_id), int(r.hour)): r.minutes for r in cells.itertuples()}
    assert got == {(1, 22): pytest.approx(60), (1, 1): pytest.approx(30), (2, 5): pytest.approx(60)}
    assert set(cells["weekday"]) == {5} and set(cells["weekday_name"]) == {"Fri"}  # Saturday 01:30 counts on Friday
    sat0 = A.channel_weekday_hour(week, SAT, B0).toPandas()
    assert {(int(r.hour), int(r.weekday)) for r in sat0.itertuples()} == {(1, 6), (20, 6)}  # the calendar day's
    assert A.channel_weekday_hour(week, SUN, B5).count() == 0


def test_session_measures_use_the_broadcast_day_of_the_start(week):
    hist = A.duration_histogram(week, FRI, B5).toPandas().set_index("bucket")
    assert hist["sessions"].sum() == 2 and hist.loc["30-60m", "sessions"] == 1 and hist.loc["1-2h", "sessions"] == 1
    assert A.duration_histogram(week, THU, B5).toPandas().set_index("bucket").loc["2-3h", "sessions"] == 1
    rating = A.channel_rating(week, FRI, B5).toPandas().set_index("channel_id")
    assert list(rating.index) == [1] and rating.loc[1, "views"] == 2 and rating.loc[1, "hours"] == pytest.approx(1.5)
    users = A.user_activity(week, FRI, B5).toPandas().set_index("user_id")
    assert sorted(users.index) == [1, 2]
    u1, u2 = users.loc[1], users.loc[2]
    assert (u1.sessions, u1.minutes_by_start, u1.minutes_in_day) == (2, pytest.approx(90), pytest.approx(90))
    assert (u1.night_minutes, u1.evening_minutes, u1.segment) == (pytest.approx(30), pytest.approx(60), "evening")
    assert (u2.sessions, u2.minutes_in_day, u2.night_minutes, u2.segment) == (0, pytest.approx(60),
                                                                              pytest.approx(60), "night")


def test_weekday_weekend_split_follows_the_broadcast_day(week):
    from tv_platform.analytics import measures as audience

    def split(cal):
        daily = pd.concat([A.daily_viewing(week, d, cal).toPandas() for d in (THU, FRI, SAT, SUN)])
        return audience.weekend_vs_weekday(daily)

    # 05:00: weekdays Thu 1.0 h, Fri 2.5 h → 1.75 h/day; weekend Sat 1.0 h, Sun 0 → 0.5 h/day
    b5 = split(B5)
    assert b5["weekday_hours_per_day"] == pytest.approx(1.75) and b5["weekend_hours_per_day"] == pytest.approx(0.5)
    # calendar day: Thu 0, Fri 3.0 → 1.5; Sat 1.5, Sun 0 → 0.75
    b0 = split(B0)
    assert b0["weekday_hours_per_day"] == pytest.approx(1.5) and b0["weekend_hours_per_day"] == pytest.approx(0.75)


GUIDE = [
    # channel, id, title, series, start, end, guide day
    (2, "p_morning", "Morning", "Morning show", "2023-09-22 03:00:00", "2023-09-22 07:00:00", FRI),
    (1, "p_cross", "Evening film", "", "2023-09-22 21:30:00", "2023-09-23 00:00:00", FRI),
    (1, "p_cross", "Evening film", "", "2023-09-23 00:00:00", "2023-09-23 00:30:00", SAT),  # the same airing
    (1, "p_film", "Late film", "Late film", "2023-09-23 00:30:00", "2023-09-23 02:30:00", SAT),
]


def _guide(spark, rows):
    from pyspark.sql import functions as F

    frame = spark.createDataFrame(
        [(c, i, t, "film", "drama", s, 0, a, b, d) for c, i, t, s, a, b, d in rows],
        "channel_id int, programme_id string, title string, kind string, genre string, series string, episode int, "
        "start string, end string, dt string")
    return frame.withColumn("start", F.col("start").cast("timestamp_ntz").cast("timestamp")) \
        .withColumn("end", F.col("end").cast("timestamp_ntz").cast("timestamp"))


def test_programmes_on_the_broadcast_day(spark, week):
    from pyspark.sql import functions as F

    from tv_platform.epg import attribution as EA

    guide = _guide(spark, GUIDE)

    def viewing(day):
        nxt = (pd.Timestamp(day) + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
        return EA.attribute(week, guide.where(F.col("dt").isin(day, nxt)), day, B5), guide.where(
            F.col("dt").isin(day, nxt))

    fri, fri_guide = viewing(FRI)
    got = {(r.session_id, r.programme_id): r.seconds for r in fri.toPandas().itertuples()}
    # s_edge 05:00–06:00 on p_morning; s_late on the film across midnight (one airing); Sat 01:30–02:00 on p_film
    assert got == {("s_edge", "p_morning"): 3600, ("s_late", "p_cross"): 3600, ("s_night", "p_film"): 1800}
    thu, _ = viewing(THU)
    t = thu.toPandas()
    assert list(zip(t.session_id, t.programme_id, t.seconds)) == [("s_edge", "p_morning", 3600)]
    assert str(t.watch_start.iloc[0]) == "2023-09-22 04:00:00" and str(t.watch_end.iloc[0]) == "2023-09-22 05:00:00"
    pop = EA.programme_popularity(fri, fri_guide, FRI, cal=B5).toPandas().set_index("programme_id")
    # airtime inside Friday's broadcast day: p_cross 21:30–00:30 = 180, p_morning 05:00–07:00 = 120, p_film 120
    assert pop.loc["p_cross", "duration_min"] == pytest.approx(180) and pop.loc["p_cross", "minutes"] == 60
    assert pop.loc["p_morning", "duration_min"] == pytest.approx(120) and pop.loc["p_film", "minutes"] == 30
    cells = EA.series_weekday_hour(fri, FRI, B5).toPandas()
    assert {(r.series, int(r.hour), int(r.weekday)): r.minutes for r in cells.itertuples()} == {
        ("Morning show", 5, 5): pytest.approx(60), ("Late film", 1, 5): pytest.approx(30)}


# ---------------------------------------------------------------------------------------------------------------------
# DST days: 23 and 25 hours (Europe/Berlin: 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 → 02:00)
# ---------------------------------------------------------------------------------------------------------------------
def test_dst_broadcast_days_in_the_lake(spark, zone):
    """Broadcast day 05:00 of Sat 2026-03-28 runs to Sun 05:00 and holds the spring change: 23 hours. A session
    01:30 → 03:30 on the wall clock lasted 60 minutes: 30 in hour 1, none in the skipped hour 2, 30 in hour 3."""
    zone("Europe/Berlin")
    assert B5.day_seconds("2026-03-28") == 23 * 3600 and B5.day_seconds("2026-03-29") == 24 * 3600
    assert B5.day_seconds("2026-10-24") == 25 * 3600 and B0.day_seconds("2026-10-25") == 25 * 3600
    s = _sessions(spark, [("a", 1, 1, "2026-03-29 01:30:00", "2026-03-29 03:30:00"),
                          ("b", 2, 1, "2026-10-25 01:30:00", "2026-10-25 03:30:00")], "2026-03-27", "2026-10-26")
    spring = _one(A.daily_viewing(s, "2026-03-28", B5))
    assert spring.views == 1 and spring.hours_in_day == pytest.approx(1.0)
    hours = A.hourly_activity(s, "2026-03-28", B5).toPandas().set_index("hour")
    assert (hours.loc[1, "minutes"], hours.loc[2, "minutes"], hours.loc[3, "minutes"]) == (30, 0, 30)
    # autumn, Saturday 2026-10-24's broadcast day (25 h): 01:30 → 03:30 lasted 3 hours, hour 2 held two of them
    autumn = A.hourly_activity(s, "2026-10-24", B5).toPandas().set_index("hour")
    assert (autumn.loc[1, "minutes"], autumn.loc[2, "minutes"], autumn.loc[3, "minutes"]) == (30, 120, 30)
    assert _one(A.daily_viewing(s, "2026-10-24", B5)).hours_in_day == pytest.approx(3.0)


def test_dst_days_in_the_audience_measures(spark, zone):
    """Calendar broadcast day (00:00), dayparts night 01:00–06:00 and day 06:00–01:00, universe of 2.

    Spring, 2026-03-29: 1 380 minutes; night 01:00–06:00 less the skipped hour = 240, day = 1 140. Viewer 1 on
    channel 1 01:30 → 03:30 wall = 60 real minutes, numbered 90..149 (03:00 is minute 120). Night: AMA 60/240,
    TVR 100 × 60 / (240 × 2) = 12.5 %; whole day: AMA 60/1380, TVR 100 × 60 / 2760.
    Autumn, 2026-10-25: 1 500 minutes; night 360, day 1 140. 01:30 → 03:30 wall = 180 minutes (90..269). Night: AMA
    0.5, TVR 25 %; whole day TVR 100 × 180 / 3000 = 6 %. A programme 01:45 → 03:15 wall on channel 1 owns minutes
    105..254 (150 minutes: 15 + 60 + 60 + 15), all watched: AMA 1, TVR 50 %."""
    zone("Europe/Berlin")
    s = _sessions(spark, [("a", 1, 1, "2026-03-29 01:30:00", "2026-03-29 03:30:00"),
                          ("b", 1, 1, "2026-10-25 01:30:00", "2026-10-25 03:30:00")], "2026-03-28", "2026-10-26")
    users = spark.createDataFrame([(1,), (2,)], "user_id int")
    guide = _guide(spark, [(1, "p_dst", "Night", "Night", "2026-10-25 01:45:00", "2026-10-25 03:15:00",
                            "2026-10-25")])
    for day, n, night, watched in (("2026-03-29", 1380, 240, 60), ("2026-10-25", 1500, 360, 180)):
        assert B0.day_minutes(day) == n and B0.daypart_minutes(day) == {"night": night, "day": 1140, "all": n}
        minutes = A.credited_minutes(s, B0, day, guide).cache()
        got = sorted(int(r["minute"]) for r in minutes.collect())
        assert got == list(range(90, 90 + watched))
        assert {r["daypart"] for r in minutes.collect()} == {"night"}
        universe = A.audience_universe(s, users, B0, day)
        rows = A.audience_channel(minutes, universe, B0, 1, day).toPandas().set_index(["daypart", "channel_id"])
        r = rows.loc[("night", 1)]
        assert (r.period_minutes, r.minutes) == (night, watched)
        assert r.ama == pytest.approx(watched / night) and r.tvr_pct == pytest.approx(100 * watched / (night * 2))
        a = rows.loc[("all", 1)]
        assert a.period_minutes == n and a.tvr_pct == pytest.approx(100 * watched / (n * 2))
    minutes = A.credited_minutes(s, B0, "2026-10-25", guide)
    universe = A.audience_universe(s, users, B0, "2026-10-25")
    prog = A.audience_programme(minutes, universe, guide, B0, 1, "2026-10-25").toPandas().set_index("programme_id")
    p = prog.loc["p_dst"]
    assert (p.airtime_min, p.minutes) == (150, 150) and p.ama == pytest.approx(1.0)
    assert p.tvr_pct == pytest.approx(50.0) and str(p.programme_start) == "2026-10-25 01:45:00"
    # the rest of channel 1's viewing (minutes 90..104 and 255..269) is on its pseudo programme, a 1 500-minute day
    assert prog.loc["1-none", "minutes"] == 30 and prog.loc["1-none", "airtime_min"] == 1500


def test_dst_days_in_the_programme_attribution(spark, zone):
    """2026-10-25 (Berlin, 25 h, calendar day): channel 1 shows p1 00:00–01:45, p2 01:45–03:15, p3 03:15–24:00;
    01:30 → 03:30 wall is 15 min of p1, 150 of p2 (15 + the repeated hour twice + 15), 15 of p3. p1 lasts 105
    minutes, p2 150, p3 (03:15 → 24:00 after the change) 1 245: 105 + 150 + 1 245 = 1 500, the 25-hour day.
    Spring, 2026-03-29 (23 h): one programme 00:00–24:00 lasts 1 380 minutes."""
    from tv_platform.epg import attribution as EA

    zone("Europe/Berlin")
    s = _sessions(spark, [("a", 1, 1, "2026-10-25 01:30:00", "2026-10-25 03:30:00"),
                          ("b", 1, 1, "2026-03-29 01:30:00", "2026-03-29 03:30:00")], "2026-03-28", "2026-10-26")
    autumn = _guide(spark, [(1, "p1", "One", "", "2026-10-25 00:00:00", "2026-10-25 01:45:00", "2026-10-25"),
                            (1, "p2", "Two", "Two", "2026-10-25 01:45:00", "2026-10-25 03:15:00", "2026-10-25"),
                            (1, "p3", "Three", "", "2026-10-25 03:15:00", "2026-10-26 00:00:00", "2026-10-25")])
    v = EA.attribute(s, autumn, "2026-10-25", B0).cache()
    rows = v.toPandas().set_index("programme_id")
    assert dict(rows["seconds"]) == {"p1": 900, "p2": 9000, "p3": 900}
    assert str(rows.loc["p2", "watch_start"]) == "2026-10-25 01:45:00"
    assert str(rows.loc["p2", "watch_end"]) == "2026-10-25 03:15:00"  # the wall clock, after the change
    pop = EA.programme_popularity(v, autumn, "2026-10-25", cal=B0).toPandas().set_index("programme_id")
    # p3: 03:15 CET → 24:00 CET = 20 h 45 min = 1 245 minutes
    assert dict(pop["duration_min"]) == {"p1": pytest.approx(105), "p2": pytest.approx(150),
                                         "p3": pytest.approx(1245)}
    cells = EA.series_weekday_hour(v, "2026-10-25", B0).toPandas().set_index("hour")
    assert dict(cells["minutes"]) == {1: pytest.approx(15), 2: pytest.approx(120), 3: pytest.approx(15)}
    spring = _guide(spark, [(1, "q", "All day", "", "2026-03-29 00:00:00", "2026-03-30 00:00:00", "2026-03-29")])
    w = EA.attribute(s, spring, "2026-03-29", B0)
    assert [int(r["seconds"]) for r in w.collect()] == [3600]
    pop = EA.programme_popularity(w, spring, "2026-03-29", cal=B0).toPandas()
    assert pop["duration_min"].tolist() == [pytest.approx(1380)] and pop["minutes"].tolist() == [pytest.approx(60)]
