"""Audience measures (docs/measures.md) on a small hand-made set of sessions, on the real Spark.

Every expected number below is worked out by hand from the written definitions, in the comments next to it — never
by calling the code under test. The calendar: broadcast day 05:00–05:00, dayparts morning 05:00–19:00 (840 min),
prime 19:00–23:00 (240), night 23:00–05:00 (360). The window is broadcast days Fri 1, Sat 2, Sun 3 March 2024.

    reference subscribers 1, 2, 3, 4 (4 never watches); 7 watches on Sun 3 without being in the reference (inferred);
    8 watches only on Thu 29 Feb, not in the reference: outside the window's universes.

    D1 Fri 1  u1 ch1 20:00–21:00                  60 min prime
              u1 ch2 22:00:10–22:00:50 (40 s), then ch1 22:00:50–22:02:00: minute 22:00 → ch2 (40 s > 10 s),
                 minute 22:01 → ch1 (60 s)        ch2 1 min, ch1 1 min, prime
              u2 ch1 20:30–20:45, ch2 20:45–21:15 15 + 30 min prime
              u3 ch1 Thu 29 04:00 → Fri 1 05:10   carried in from the day before the window: 10 min morning of D1
                 (and 04:00–05:00 of Fri 1 is broadcast day Thu 29)
              u1 ch2 10:00:00 zero-length; u2 ch2 12:00:00–12:00:20 (20 s, below half a minute): nothing credited
    D2 Sat 2  ch1 quiet (no viewing at all)
              u1 ch2 20:00–20:30                  30 min prime
              u2 ch2 Sun 3 04:50–05:20            across the broadcast-day boundary: 10 min night of D2, 20 min
                                                  morning of D3 (both on calendar day Sun 3)
    D3 Sun 3  u7 ch1 19:00–19:30                  30 min prime (inferred member)
              u1 ch1 23:30 → Mon 4 00:30          60 min night (crosses midnight, one broadcast day)
              u3 ch2 Mon 4 02:00–02:10            10 min night of D3 (a session of calendar day Mon 4)
    D0 Thu 29 u8 ch1 20:00–21:00                  not in the window

Guide (ch1): series "Saga" 20:00–20:30 on Fri 1 and on Sat 2 (empty airing: ch1 is quiet) and 19:00–19:30 on Sun 3;
"News" 20:30–21:00 on Fri 1. Everything else on ch1 / ch2 has no guide (pseudo programmes ``<ch>-none``).
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from tv_platform.lake import aggregates as A
from tv_platform.lake.calendar import BroadcastCalendar

pytestmark = pytest.mark.services

CAL = BroadcastCalendar.of("05:00", "morning=05:00,prime=19:00,night=23:00")
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03"]
SESSION_SCHEMA = ("session_id string, user_id int, user_name string, channel_id int, channel_name string, "
                  "time_start timestamp, time_end timestamp, duration_s bigint, is_zero_length boolean, "
                  "crosses_midnight boolean, source string, dt string")
GUIDE_SCHEMA = ("channel_id int, programme_id string, title string, kind string, genre string, series string, "
                "episode int, start timestamp, end timestamp, dt string")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _session(sid, user, channel, start, end):
    s, e = t(start), t(end)
    return (sid, user, f"u{user}", channel, f"ch{channel}", s, e, int((e - s).total_seconds()), s == e,
            s.date() != e.date(), "history", s.date().isoformat())


SESSIONS = [
    _session("a1", 1, 1, "2024-03-01 20:00:00", "2024-03-01 21:00:00"),
    _session("a2", 1, 2, "2024-03-01 22:00:10", "2024-03-01 22:00:50"),
    _session("a3", 1, 1, "2024-03-01 22:00:50", "2024-03-01 22:02:00"),
    _session("b1", 2, 1, "2024-03-01 20:30:00", "2024-03-01 20:45:00"),
    _session("b2", 2, 2, "2024-03-01 20:45:00", "2024-03-01 21:15:00"),
    _session("c1", 3, 1, "2024-03-01 04:00:00", "2024-03-01 05:10:00"),
    _session("z1", 1, 2, "2024-03-01 10:00:00", "2024-03-01 10:00:00"),
    _session("z2", 2, 2, "2024-03-01 12:00:00", "2024-03-01 12:00:20"),
    _session("d1", 1, 2, "2024-03-02 20:00:00", "2024-03-02 20:30:00"),
    _session("d2", 2, 2, "2024-03-03 04:50:00", "2024-03-03 05:20:00"),
    _session("e1", 7, 1, "2024-03-03 19:00:00", "2024-03-03 19:30:00"),
    _session("e2", 1, 1, "2024-03-03 23:30:00", "2024-03-04 00:30:00"),
    _session("e3", 3, 2, "2024-03-04 02:00:00", "2024-03-04 02:10:00"),
    _session("o1", 8, 1, "2024-02-29 20:00:00", "2024-02-29 21:00:00"),
]
USERS = [(1, "u1"), (2, "u2"), (3, "u3"), (4, "u4")]


def _prog(pid, title, series, start, end):
    return (1, pid, title, "series" if series else "news", "", series, 1 if series else 0, t(start), t(end),
            start[:10])


GUIDE = [
    _prog("1-saga-1", "Saga", "Saga", "2024-03-01 20:00:00", "2024-03-01 20:30:00"),
    _prog("1-news-1", "News", "", "2024-03-01 20:30:00", "2024-03-01 21:00:00"),
    _prog("1-saga-2", "Saga", "Saga", "2024-03-02 20:00:00", "2024-03-02 20:30:00"),
    _prog("1-saga-3", "Saga", "Saga", "2024-03-03 19:00:00", "2024-03-03 19:30:00"),
]


@pytest.fixture(scope="module")
def built(spark):
    sessions = spark.createDataFrame(SESSIONS, SESSION_SCHEMA)
    users = spark.createDataFrame(USERS, "user_id int, user_name string")
    guide = spark.createDataFrame(GUIDE, GUIDE_SCHEMA)
    universe = {d: A.audience_universe(sessions, users, CAL, d).toPandas() for d in DAYS}
    minutes_df = {d: A.credited_minutes(sessions, CAL, d, guide).cache() for d in DAYS}
    universe_df = {d: spark.createDataFrame(universe[d]) for d in DAYS}
    return sessions, users, guide, universe, universe_df, minutes_df


def _union(frames):
    out = frames[0]
    for f in frames[1:]:
        out = out.unionByName(f)
    return out


def _rows(frame, *keys):
    pdf = frame.toPandas()
    return {(r[keys[0]] if len(keys) == 1 else tuple(r[k] for k in keys)): r for _, r in pdf.iterrows()}


def test_universe_per_day_counts_inferred_members_and_not_outsiders(built):
    universe = built[3]
    # D1, D2: the four reference subscribers; D3: plus user 7 (inferred). User 8 never.
    assert {d: len(u) for d, u in universe.items()} == {"2024-03-01": 4, "2024-03-02": 4, "2024-03-03": 5}
    d3 = dict(zip(universe["2024-03-03"]["user_id"], universe["2024-03-03"]["member"]))
    assert d3 == {1: "reference", 2: "reference", 3: "reference", 4: "reference", 7: "inferred"}
    assert all(8 not in set(u["user_id"]) for u in universe.values())


def test_minute_crediting_and_the_broadcast_day(built):
    m = {d: f.toPandas() for d, f in built[5].items()}
    d1 = m["2024-03-01"]
    # minute 22:00 of D1 is 17 h = 1020 min after 05:00: ch2 (40 s) beats ch1 (10 s); 22:01 → ch1
    u1 = d1[d1["user_id"] == 1].set_index("minute")
    assert u1.loc[1020, "channel_id"] == 2 and u1.loc[1020, "seconds"] == 40
    assert u1.loc[1021, "channel_id"] == 1 and u1.loc[1021, "seconds"] == 60
    # user 3 carried in: minutes 0..9 of D1 (05:00–05:10), morning
    u3 = d1[d1["user_id"] == 3]
    assert sorted(u3["minute"]) == list(range(10)) and set(u3["daypart"]) == {"morning"}
    # zero-length (10:00 = minute 300) and 20-second (12:00 = minute 420) sessions credit nothing
    assert not ((d1["minute"] == 300) | (d1["minute"] == 420)).any()
    # per user per minute at most one channel
    assert not d1.duplicated(["user_id", "minute"]).any()
    # the boundary session: 10 min at the end of D2 (night), 20 at the start of D3 (morning)
    d2, d3 = m["2024-03-02"], m["2024-03-03"]
    b2 = d2[d2["user_id"] == 2]
    assert sorted(b2["minute"]) == list(range(1430, 1440)) and set(b2["daypart"]) == {"night"}
    b3 = d3[d3["user_id"] == 2]
    assert sorted(b3["minute"]) == list(range(20)) and set(b3["daypart"]) == {"morning"}
    # Mon 4 02:00–02:10 belongs to D3 (night); Sun 3 23:30 → Mon 00:30 is 60 minutes of D3
    assert len(d3[d3["user_id"] == 3]) == 10 and len(d3[d3["user_id"] == 1]) == 60
    # totals: D1 = 86 (ch1) + 31 (ch2); D2 = 40; D3 = 120
    assert [len(m[d]) for d in DAYS] == [117, 40, 120]
    # programmes: minutes 900..929 of D1 on ch1 are "Saga"
    saga = d1[(d1["programme_id"] == "1-saga-1")]
    assert len(saga) == 30 and set(saga["user_id"]) == {1} and set(saga["series"]) == {"Saga"}


def test_channel_measures_of_one_day(built):
    universe_df, minutes_df = built[4], built[5]
    d = "2024-03-01"
    rows = _rows(A.audience_channel(minutes_df[d], universe_df[d], CAL, 1, d), "daypart", "channel_id")
    ch1, ch2 = rows[("all", 1)], rows[("all", 2)]
    # ch1: 60 + 1 + 15 + 10 = 86 min; ch2: 30 + 1 = 31; all 117; universe 4; reached ch1: 1, 2, 3; ch2: 1, 2
    assert (ch1["minutes"], ch1["universe"], ch1["period_minutes"], ch1["reach"]) == (86, 4, 1440, 3)
    assert ch1["ama"] == pytest.approx(86 / 1440)
    assert ch1["tvr_pct"] == pytest.approx(100 * 86 / (1440 * 4))
    assert ch1["reach_pct"] == pytest.approx(75.0)
    assert ch1["share_pct"] == pytest.approx(100 * 86 / 117)
    assert ch1["ats_universe_min"] == pytest.approx(86 / 4)
    assert ch1["ats_viewer_min"] == pytest.approx(86 / 3)
    assert (ch2["minutes"], ch2["reach"]) == (31, 2) and ch2["share_pct"] == pytest.approx(100 * 31 / 117)
    assert ch1["weekday"] == 5 and not ch1["is_weekend"]
    # prime (240 min): ch1 60 + 1 + 15 = 76, ch2 31; morning (840): ch1 10 (user 3), ch2 nothing
    p1 = rows[("prime", 1)]
    assert (p1["minutes"], p1["period_minutes"]) == (76, 240)
    assert p1["ama"] == pytest.approx(76 / 240) and p1["share_pct"] == pytest.approx(100 * 76 / 107)
    m1 = rows[("morning", 1)]
    assert (m1["minutes"], m1["reach"], m1["share_pct"]) == (10, 1, 100.0)
    # every channel in every daypart, zeros included (so warehouse sums over days stay right on quiet days)
    assert rows[("morning", 2)]["minutes"] == 0 and rows[("night", 1)]["minutes"] == 0
    assert rows[("night", 1)]["ama"] == 0.0 and pd.isna(rows[("night", 1)]["share_pct"])
    assert ch1["all_minutes"] == 117


def test_reach_threshold(built):
    universe_df, minutes_df = built[4], built[5]
    d = "2024-03-01"
    rows = _rows(A.audience_channel(minutes_df[d], universe_df[d], CAL, 2, d), "daypart", "channel_id")
    # with 2 consecutive minutes user 1's single minute of ch2 no longer reaches; ch1 still 1, 2, 3
    assert rows[("all", 2)]["reach"] == 1 and rows[("all", 1)]["reach"] == 3
    assert rows[("all", 2)]["ats_viewer_min"] == pytest.approx(31 / 1)


def test_reach_runs_cross_programmes_and_midnight_but_not_series(built):
    _, _, guide, _, universe_df, minutes_df = built
    d1, d3 = "2024-03-01", "2024-03-03"
    fri = _rows(A.audience_channel(minutes_df[d1], universe_df[d1], CAL, 45, d1), "daypart", "channel_id")
    # 45 minutes: u1's 20:00–21:00 on ch1 is one run of 60 across the Saga/News boundary; u2 (15), u3 (10) too short
    assert (fri[("all", 1)]["reach"], fri[("prime", 1)]["reach"], fri[("all", 2)]["reach"]) == (1, 1, 0)
    for threshold, reach in ((60, 1), (61, 0)):
        # Sun: u1's 23:30 → Mon 00:30 on ch1 is 60 consecutive minutes of one broadcast day across midnight
        sun = _rows(A.audience_channel(minutes_df[d3], universe_df[d3], CAL, threshold, d3), "daypart", "channel_id")
        assert (sun[("all", 1)]["reach"], sun[("night", 1)]["reach"]) == (reach, reach), threshold
    programmes = _union([A.audience_programme(minutes_df[d], universe_df[d], guide, CAL, 1, d) for d in DAYS])
    minutes, universe = _union(list(minutes_df.values())), _union(list(universe_df.values()))
    for threshold, reach in ((30, 2), (31, 0)):
        # Saga: u1 30 min on Fri (the run goes on into News: not Saga's), u7 30 min on Sun
        rows = _rows(A.series_measures(programmes, minutes, universe, threshold), "series", "daypart")
        assert rows[("Saga", "all")]["reach"] == reach, threshold


def test_window_measures_count_quiet_days_as_zero(built):
    universe_df, minutes_df = built[4], built[5]
    minutes = _union([minutes_df[d] for d in DAYS])
    universe = _union([universe_df[d] for d in DAYS])
    rows = _rows(A.channel_measures(minutes, universe, CAL, 1), "daypart", "channel_id")
    ch1 = rows[("all", 1)]
    # the quiet Saturday in one day's table: ch1 has its row of zeros
    names = built[0].select("channel_id", "channel_name")
    sat = _rows(A.audience_channel(minutes_df[DAYS[1]], universe_df[DAYS[1]], CAL, 1, DAYS[1], names),
                "daypart", "channel_id")
    assert (sat[("all", 1)]["minutes"], sat[("all", 1)]["reach"], sat[("all", 1)]["tvr_pct"]) == (0, 0, 0.0)
    assert sat[("all", 1)]["is_weekend"] and sat[("all", 1)]["weekday"] == 6
    # ch1: 86 + 0 (Sat quiet) + 90 (u7 30, u1 60) = 176 over 3 × 1440 minutes; universes 4 + 4 + 5 member-days;
    # distinct members over the window 1, 2, 3, 4, 7 = 5; reached 1, 2, 3, 7; all minutes 117 + 40 + 120 = 277
    assert (ch1["days"], ch1["minutes"], ch1["period_minutes"], ch1["universe"], ch1["reach"]) == (3, 176, 4320, 5, 4)
    assert ch1["ama"] == pytest.approx(176 / 4320)
    assert ch1["tvr_pct"] == pytest.approx(100 * 176 / (1440 * 13))
    assert ch1["reach_pct"] == pytest.approx(80.0)
    assert ch1["share_pct"] == pytest.approx(100 * 176 / 277)
    assert ch1["ats_universe_min"] == pytest.approx(176 / 5)
    assert ch1["ats_viewer_min"] == pytest.approx(176 / 4)


def test_programme_and_series_measures(built):
    _, _, guide, _, universe_df, minutes_df = built
    progs = {d: A.audience_programme(minutes_df[d], universe_df[d], guide, CAL, 1, d) for d in DAYS}
    p1 = _rows(progs["2024-03-01"], "programme_id")
    saga1, news = p1["1-saga-1"], p1["1-news-1"]
    # Saga Fri: 30 min airtime, u1 30 min; all channels during it: 30 → AMA 1, TVR 25 %, share 100 %
    assert (saga1["airtime_min"], saga1["minutes"], saga1["all_minutes"], saga1["reach"]) == (30, 30, 30, 1)
    assert saga1["ama"] == pytest.approx(1.0) and saga1["tvr_pct"] == pytest.approx(25.0)
    assert saga1["share_pct"] == pytest.approx(100.0) and saga1["daypart"] == "prime"
    # News 20:30–21:00: u1 30 + u2 15 = 45; all channels: ch1 45 + u2's ch2 20:45–21:00 15 = 60
    assert (news["minutes"], news["all_minutes"], news["reach"]) == (45, 60, 2)
    assert news["ama"] == pytest.approx(1.5) and news["share_pct"] == pytest.approx(75.0)
    saga2 = _rows(progs["2024-03-02"], "programme_id")["1-saga-2"]
    # the empty airing: no minutes, but 30 of airtime and u1's 30 minutes of ch2 during it
    assert (saga2["airtime_min"], saga2["minutes"], saga2["all_minutes"]) == (30, 0, 30)
    programmes = _union(list(progs.values()))
    rows = _rows(A.series_measures(programmes, _union(list(minutes_df.values())),
                                   _union(list(universe_df.values())), 1), "series", "daypart")
    series = rows[("Saga", "all")]
    # every airing is in prime: the prime row is the same; no other daypart has one
    assert rows[("Saga", "prime")]["minutes"] == 60 and rows[("Saga", "prime")]["reach"] == 2
    assert {k for k in rows if k[0] == "Saga"} == {("Saga", "all"), ("Saga", "prime")}
    # Saga: 3 airings, 90 min airtime, 30 + 0 + 30 = 60 min; all channels during them 30 + 30 + 30 = 90;
    # TVR = 60 / (30×4 + 30×4 + 30×5); reach u1, u7 of 5 members; share 60 / 90 (not 60 / 60: the empty airing counts)
    assert (series["airings"], series["airtime_min"], series["minutes"], series["all_minutes"]) == (3, 90, 60, 90)
    assert series["ama"] == pytest.approx(60 / 90)
    assert series["tvr_pct"] == pytest.approx(100 * 60 / 390)
    assert (series["reach"], series["universe"]) == (2, 5) and series["reach_pct"] == pytest.approx(40.0)
    assert series["share_pct"] == pytest.approx(100 * 60 / 90)
    assert series["ats_universe_min"] == pytest.approx(12.0) and series["ats_viewer_min"] == pytest.approx(30.0)
