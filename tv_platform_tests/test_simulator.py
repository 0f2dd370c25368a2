"""The simulator: pure functions, no services. Tolerances are stated next to each check."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tv_platform.simulator import (SimulationParams, iter_events, live_events, live_frame, load_channels, make_users,
                                   read_recorded, simulate_day, simulate_range, simulate_sessions)
from tv_platform.simulator.reference import RATING_FILE

FIXTURES = Path(__file__).parent / "fixtures"
SATURDAY = date(2023, 9, 16)  # the seed's first day
MONDAY = date(2023, 9, 18)


@pytest.fixture(scope="module")
def channels() -> pd.DataFrame:
    return load_channels()


@pytest.fixture(scope="module")
def big_weekend() -> pd.DataFrame:
    return simulate_sessions(SATURDAY, SimulationParams(users=100_000, seed=7))


# ---- reference data --------------------------------------------------------------------------------------------

def test_channels_loaded_and_joined_by_name(channels):
    assert len(channels) == 148
    assert channels["channel_id"].is_unique and channels["channel_name"].is_unique
    assert channels["channel_id"].dtype == np.int32
    assert channels["channel_id"].tolist() == list(range(1, 149))
    assert abs(channels["time_rating"].sum() - 100) < 0.1 and abs(channels["viewers_rating"].sum() - 100) < 0.1
    # the dimension's ids are not the ranks: ratings follow the name
    row = channels.set_index("channel_name").loc["Россия 24"]
    assert (row["rank"], row["time_rating"], row["viewers_rating"]) == (8, 2.68, 2.38)
    assert channels.set_index("channel_id").loc[8, "channel_name"] == "5 Канал"


def _write_rating(tmp_path: Path, mutate) -> Path:
    lines = RATING_FILE.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "tv_rating.csv"
    path.write_text("\n".join(mutate(lines)) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda ls: [ls[0].rsplit(",", 1)[0]] + [l.rsplit(",", 1)[0] for l in ls[1:]], "expected 4 columns"),
    (lambda ls: ls[:1] + [ls[1].replace("7.98", "seven")] + ls[2:], "not numeric"),
    (lambda ls: ls[:-1], "expected 148 channels"),
    (lambda ls: ls[:2] + [ls[1].replace("1,", "2,", 1)] + ls[3:], "duplicate"),
    (lambda ls: ls[:1] + [ls[1].replace("4.04", "40.4")] + ls[2:], "must sum to 100"),
    (lambda ls: ["a,b,c,d"] + ls[1:], "unexpected header"),
    (lambda ls: ls[:1] + [ls[1].replace("4.04", "-4.04")] + ls[2:], "negative"),
    (lambda ls: [], "empty"),
])
def test_bad_rating_file_is_a_clear_error(tmp_path, mutate, message):
    path = _write_rating(tmp_path, mutate)
    with pytest.raises(ValueError, match=message) as err:
        load_channels(path)
    assert str(path) in str(err.value)


def test_missing_rating_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_channels(tmp_path / "nope.csv")


def test_users_deterministic_unique_and_prefix_stable():
    a, b = make_users(5_000, seed=3), make_users(5_000, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert a["user_id"].tolist() == list(range(1, 5_001)) and a["user_id"].dtype == np.int32
    assert a["user_name"].str.split().str.len().isin([3, 4]).all()  # Фамилия Имя Отчество, 2 % with "г-н"/"тов."
    assert a["user_name"].nunique() > 4_900
    pd.testing.assert_frame_equal(make_users(1_000, seed=3), a.iloc[:1_000])
    assert (make_users(1_000, seed=4)["user_name"] != a["user_name"].iloc[:1_000]).mean() > 0.99
    faker_names = make_users(50, seed=3, engine="faker")
    pd.testing.assert_frame_equal(faker_names, make_users(50, seed=3, engine="faker"))
    assert make_users(0).empty


# ---- the day model ---------------------------------------------------------------------------------------------

def test_day_is_a_pure_function_of_date_and_params():
    p = SimulationParams(users=20_000, seed=11)
    first = simulate_day(MONDAY, p)
    simulate_day(SATURDAY, p)  # generating other days in between changes nothing
    pd.testing.assert_frame_equal(first, simulate_day("2023-09-18", SimulationParams(users=20_000, seed=11)))
    other_day = simulate_day(MONDAY + timedelta(days=7), p)
    other_seed = simulate_day(MONDAY, p.replace(seed=12))
    assert not set(first["session_id"]) & set(other_day["session_id"])
    assert not set(first["session_id"]) & set(other_seed["session_id"])
    # a range is its days
    week = simulate_range(SATURDAY, 3, p)
    assert week["timer"].is_monotonic_increasing
    for d in range(3):
        day = simulate_day(SATURDAY + timedelta(days=d), p)
        got = week[week["session_id"].isin(set(day["session_id"]))].reset_index(drop=True)
        pd.testing.assert_frame_equal(got.sort_values(["timer", "status"], kind="stable").reset_index(drop=True),
                                      day.sort_values(["timer", "status"], kind="stable").reset_index(drop=True))


def test_events_are_well_formed_sessions(channels):
    p = SimulationParams(users=30_000, seed=5)
    ev = simulate_day(SATURDAY, p)
    assert list(ev.columns) == ["session_id", "user_id", "channel_id", "timer", "status"]
    assert [str(t) for t in ev.dtypes] == ["str", "int32", "int32", "datetime64[s]", "str"]
    assert ev["timer"].is_monotonic_increasing
    assert ev["session_id"].str.fullmatch(r"[0-9a-f]{32}").all()
    assert set(ev["status"]) == {"enabled", "disabled"}
    per = ev.groupby(["session_id", "status"]).size().unstack()
    assert (per == 1).all().all() and list(per.columns) == ["disabled", "enabled"]
    on = ev[ev["status"] == "enabled"].set_index("session_id")
    off = ev[ev["status"] == "disabled"].set_index("session_id").loc[on.index]
    assert (off["timer"] >= on["timer"]).all()
    assert (off[["user_id", "channel_id"]] == on[["user_id", "channel_id"]]).all().all()
    assert (on["timer"].dt.date == SATURDAY).all()  # every session starts on its day...
    assert (off["timer"].dt.date > SATURDAY).any()  # ...and a few end after midnight
    assert on["user_id"].between(1, p.users).all()
    assert set(on["channel_id"]) <= set(channels["channel_id"])
    assert on.index.is_unique


def test_channel_shares_follow_the_ratings(big_weekend, channels):
    """Views per channel follow the viewers rating, viewing time the time rating: Pearson r > 0.99 over all
    channels and < 0.5 percentage points off for each of the top 20."""
    s = big_weekend
    hours = (s["end"] - s["start"]).dt.total_seconds() / 3600
    got = pd.DataFrame({"views": s.groupby("channel_id").size(), "hours": hours.groupby(s["channel_id"]).sum()})
    ref = channels.set_index("channel_id")
    got = got.reindex(ref.index, fill_value=0)
    view_share = 100 * got["views"] / got["views"].sum()
    time_share = 100 * got["hours"] / got["hours"].sum()
    want_views = 100 * ref["viewers_rating"] / ref["viewers_rating"].sum()
    want_time = 100 * ref["time_rating"] / ref["time_rating"].sum()
    assert np.corrcoef(view_share, want_views)[0, 1] > 0.99
    assert np.corrcoef(time_share, want_time)[0, 1] > 0.99
    top = ref.nsmallest(20, "rank").index
    assert (view_share[top] - want_views[top]).abs().max() < 0.5
    assert (time_share[top] - want_time[top]).abs().max() < 0.5
    assert time_share.idxmax() == ref["rank"].idxmin()  # Россия 1 leads by viewing time


@pytest.mark.parametrize("prime_share", [0.8, 0.5])
def test_prime_time_profile(prime_share):
    """Most sessions start in the hour before prime time; the share starting in the window [prime-4 h, prime+2 h)
    is prime_share (prime sessions fall in it unless longer than ~8 h: 99.2 %) plus the any-time sessions that happen
    to (6 h of 24), ± 0.03."""
    p = SimulationParams(users=50_000, seed=2, prime_share=prime_share)
    s = simulate_sessions(SATURDAY, p)
    hour = s["start"].dt.hour
    assert 18 <= hour.value_counts().idxmax() <= 21
    in_window = hour.between(p.prime_hour - 4, p.prime_hour + 1).mean()
    expected = prime_share + (1 - prime_share) * 6 / 24
    assert abs(in_window - expected) < 0.03, (in_window, expected)
    # the viewing peak (sessions on air) is at prime time, as in the seed's hourly histogram
    on_air = [((s["start"] <= pd.Timestamp(datetime.combine(SATURDAY, time(h, 30))))
               & (s["end"] > pd.Timestamp(datetime.combine(SATURDAY, time(h, 30))))).sum() for h in range(24)]
    assert int(np.argmax(on_air)) in (p.prime_hour - 1, p.prime_hour, p.prime_hour + 1)


@pytest.mark.parametrize("keep", [0.8, 0.6])
def test_weekdays_have_weekday_keep_of_the_weekend_volume(keep):
    p = SimulationParams(users=20_000, seed=9, weekday_keep=keep)
    sizes = {d: len(simulate_sessions(SATURDAY + timedelta(days=d), p)) for d in range(7)}
    weekend = np.mean([sizes[0], sizes[1]])
    weekday = np.mean([sizes[d] for d in range(2, 7)])
    assert sizes[0] == sizes[1] == 20_000
    assert abs(weekday / weekend - keep) < 0.03


def test_calibrated_to_the_seed_volumes():
    """users=10 000 gives the seed generator's volumes: weekend 9 990 views / 16 169 h, weekday ~8 000 / ~12 930 h
    (±1 % views, ±3 % hours)."""
    p = SimulationParams()
    for day, views, hours in ((SATURDAY, 9_990, 16_169), (MONDAY, 8_002, 12_935)):
        s = simulate_sessions(day, p)
        h = (s["end"] - s["start"]).dt.total_seconds().sum() / 3600
        assert abs(len(s) / views - 1) < 0.01, (day, len(s))
        assert abs(h / hours - 1) < 0.03, (day, h)
    # about half of the subscribers watch on a given day, heavy viewers more than once
    assert 0.4 < simulate_sessions(SATURDAY, p)["user_id"].nunique() / p.users < 0.6


def test_scales_with_users():
    small = simulate_sessions(SATURDAY, SimulationParams(users=1_000))
    big = simulate_sessions(SATURDAY, SimulationParams(users=100_000))
    assert len(small) == 1_000 and len(big) == 100_000


def test_params_are_validated():
    for bad in ({"users": 0}, {"prime_share": 1.5}, {"weekday_keep": -0.1}, {"prime_hour": 24},
                {"mean_session_minutes": 0}, {"max_session_minutes": 24 * 60}, {"seed": -1}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SimulationParams(**bad)


# ---- live and recorded streams ---------------------------------------------------------------------------------

def test_live_events_are_the_day_in_timer_order():
    p = SimulationParams(users=2_000, seed=1)
    day = simulate_day(SATURDAY, p)
    events = list(live_events(SATURDAY, p))
    assert len(events) == len(day)
    assert events[0] == {"session_id": day["session_id"][0], "user_id": int(day["user_id"][0]),
                         "channel_id": int(day["channel_id"][0]),
                         "timer": day["timer"][0].strftime("%Y-%m-%d %H:%M:%S"), "status": day["status"][0]}
    assert [e["timer"] for e in events] == sorted(e["timer"] for e in events)
    assert all(type(e["user_id"]) is int and type(e["channel_id"]) is int for e in events)
    assert list(live_events(SATURDAY, p, count=10)) == events[:10]
    window = live_frame(SATURDAY, p, since=time(19, 0), until="2023-09-16 20:00:00")
    assert window["timer"].min() > pd.Timestamp("2023-09-16 19:00:00")
    assert window["timer"].max() <= pd.Timestamp("2023-09-16 20:00:00")
    assert len(window) == ((day["timer"] > "2023-09-16 19:00:00") & (day["timer"] <= "2023-09-16 20:00:00")).sum()
    other = live_frame(SATURDAY, p, stream=1)
    assert not set(other["session_id"]) & set(day["session_id"])
    assert abs(len(other) - len(day)) <= 0.01 * len(day)


def test_read_recorded_sorts_the_fixture_stably():
    frame = read_recorded(FIXTURES / "tv_stream.csv")
    assert len(frame) == 20_000 and frame["timer"].is_monotonic_increasing
    assert [str(t) for t in frame.dtypes] == ["str", "int32", "int32", "datetime64[s]", "str"]
    raw = pd.read_csv(FIXTURES / "tv_stream.csv", header=None)
    # stable: among equal timers the file order is kept
    expected = raw.assign(t=pd.to_datetime(raw[3])).sort_values("t", kind="stable")[0].tolist()
    assert frame["session_id"].tolist() == expected
    first = next(iter_events(frame))
    assert first["timer"] == frame["timer"][0].strftime("%Y-%m-%d %H:%M:%S")


def test_read_recorded_rejects_bad_files(tmp_path):
    good = (FIXTURES / "tv_stream.csv").read_text().splitlines()[:4]
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(good[:2] + [good[2].replace("enabled", "on")]) + "\n")
    with pytest.raises(ValueError, match="status"):
        read_recorded(bad)
    bad.write_text("\n".join(good[:2] + [good[2].replace("2023-09-23", "23.09.2023")]) + "\n")
    with pytest.raises(ValueError, match="timer"):
        read_recorded(bad)
    headed = tmp_path / "headed.csv"
    headed.write_text("session_id,user_id,channel_id,timer,status\n" + "\n".join(good) + "\n")
    assert len(read_recorded(headed)) == 4
