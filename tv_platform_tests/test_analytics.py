"""Analytics logic without Spark: forecasts on series whose right answer is known (a planted trend and weekly
cycle, and the simulator's own volumes with a planted trend), the measures on hand-made frames, charts' labels."""

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest

from tv_platform.analytics import charts as C
from tv_platform.analytics import forecast as FC
from tv_platform.analytics import measures as audience
from tv_platform.analytics import segments as SG
from tv_platform.simulator import SimulationParams, simulate_sessions

MODEL_MAPE_BOUND = 3.0
"""On 6 weeks of level 1 000 + 10/day trend + 300 on weekends + N(0, 20) noise, the calendar model's held-out MAPE
stays below 3 % (the noise alone is ~1.5 %); seasonal naive misses the week's trend (~70 h, ~5 %)."""


def planted(days=42, trend=10.0, weekend=300.0, noise=20.0, seed=1) -> pd.Series:
    idx = pd.date_range("2024-01-01", periods=days, freq="D")
    rng = np.random.default_rng(seed)
    y = 1000.0 + trend * np.arange(days) + np.where(idx.day_of_week >= 5, weekend, 0.0) + rng.normal(0, noise, days)
    return pd.Series(y, index=idx)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_calendar_model_beats_seasonal_naive_on_a_planted_trend(seed):
    bt = FC.backtest(planted(seed=seed))
    assert bt.mape["calendar_ridge"] < MODEL_MAPE_BOUND
    assert bt.mape["seasonal_naive"] > bt.mape["calendar_ridge"]
    assert bt.beats_baseline
    coef = bt.coefficients
    assert coef["trend_per_day"] == pytest.approx(10.0, abs=2.0)
    assert coef["Mon"] == pytest.approx(-300.0, abs=40.0)  # weekdays vs Sunday
    assert coef["Sat"] == pytest.approx(0.0, abs=40.0)


def test_without_trend_or_noise_the_baseline_is_exact_and_not_beaten():
    """A pure weekly cycle: last week's same weekday is the truth; the model is only as good, so it does not beat
    the baseline — the metadata must say so."""
    bt = FC.backtest(planted(trend=0.0, noise=0.0))
    assert bt.mape["seasonal_naive"] == pytest.approx(0.0, abs=1e-9)
    assert bt.mape["calendar_ridge"] < 0.5
    assert not bt.beats_baseline


def test_forecast_dates_follow_the_history():
    s = planted(days=21)
    f = FC.seasonal_naive(s)
    assert list(f.index) == list(pd.date_range("2024-01-22", periods=7))
    assert f.iloc[0] == s.iloc[-7] and f.iloc[6] == s.iloc[-1]
    with pytest.raises(ValueError):
        FC.backtest(planted(days=20))
    with pytest.raises(ValueError):
        FC.backtest(planted(days=30).drop(pd.Timestamp("2024-01-10")))


def test_simulator_with_a_planted_trend_is_forecast_within_bound():
    """The simulator's weekly cycle (weekdays keep 80 %) with sessions growing 1 %/day, 2 000 users, 5 weeks."""
    first = date(2024, 1, 1)
    hours = {}
    for i in range(42):
        day = first + timedelta(days=i)
        s = simulate_sessions(day, SimulationParams(users=2_000, seed=3, sessions_per_user=1.0 + 0.01 * i))
        hours[pd.Timestamp(day)] = (s["end"] - s["start"]).dt.total_seconds().sum() / 3600
    bt = FC.backtest(pd.Series(hours))
    assert bt.mape["calendar_ridge"] < 4.0  # measured 2.3 %
    assert bt.mape["seasonal_naive"] > 5.0  # a week of +1 %/day growth: measured 6.1 %
    assert bt.beats_baseline


def test_rows_for_the_forecast_table():
    bt = FC.backtest(planted(days=28))
    rows = FC.rows("total", bt)
    assert list(rows.columns) == ["day", "series", "kind", "model", "hours"]
    assert (rows["kind"] == "actual").sum() == 28
    assert ((rows["kind"] == "forecast") & (rows["model"] == "calendar_ridge")).sum() == 7
    assert rows.loc[rows["kind"] == "forecast", "day"].min() == "2024-01-29"
    pooled = FC.pooled_errors({"a": bt, "b": bt})
    held = bt.backtest["calendar_ridge"]
    assert pooled["mape"]["calendar_ridge"] == pytest.approx(FC.mape(bt.actual.reindex(held.index), held))


def test_rolling_origins_at_least_four_with_an_interval():
    assert FC.fold_origins(42) == [35, 28, 21, 14]  # a week apart, 14 training days before the earliest
    assert FC.fold_origins(28) == [21, 19, 17, 15]  # closer when the history is short
    with pytest.raises(ValueError):
        FC.fold_origins(23)  # 14 + 7 + 3 = 24 days at least
    with pytest.raises(ValueError):
        FC.fold_origins(60, folds=3)
    bt = FC.backtest(planted(seed=4))
    assert len(bt.origins) == 4 and all(len(v) == 4 for v in bt.mape_folds.values())
    for m in FC.MODELS:
        lo, hi = bt.interval[m]
        assert lo <= bt.mape[m] <= hi
        assert bt.mape[m] == pytest.approx(np.mean(bt.mape_folds[m]))
    # each fold's forecast uses only the days before its origin: changing a later day leaves it unchanged
    s = planted(seed=4)
    first = bt.origins[0]
    changed = s.copy()
    changed[changed.index >= first + pd.Timedelta(days=7)] += 500.0
    again = FC.backtest(changed)
    assert again.mape_folds["calendar_ridge"][0] == pytest.approx(bt.mape_folds["calendar_ridge"][0])


def test_missing_days_are_missing_not_zero():
    s = planted(days=42, trend=0.0, noise=0.0)  # 1000 on weekdays, 1300 on weekends
    gap = s.copy()
    gap.iloc[-7] = np.nan  # the last Monday is missing (2024-02-05)
    f = FC.seasonal_naive(gap)
    assert f.iloc[0] == 1000.0  # the Monday before, not 0 and not NaN
    fit = FC.fit_calendar(gap)
    assert fit.predict(pd.DatetimeIndex([pd.Timestamp("2024-02-12")]))[0] == pytest.approx(1000.0, abs=1.0)
    zero = FC.complete_days(pd.DataFrame({"v": [1.0, 2.0]}, index=["2024-01-01", "2024-01-03"]),
                            "2024-01-01", "2024-01-03")
    assert np.isnan(zero.loc["2024-01-02", "v"])
    assert FC.mape([100, np.nan], [110, 0]) == pytest.approx(10.0)  # the missing actual is skipped
    assert FC.wape([100, np.nan], [110, 0]) == pytest.approx(10.0)


def test_unfinished_day_is_left_out():
    from datetime import datetime

    days = ["2024-03-01", "2024-03-02", "2024-03-03"]
    from tv_platform.lake.calendar import BroadcastCalendar

    midnight, five = BroadcastCalendar.of("00:00"), BroadcastCalendar.of("05:00")
    assert FC.finished_days(days, now=datetime(2024, 3, 3, 23, 59), cal=midnight) == ["2024-03-01", "2024-03-02"]
    assert FC.finished_days(days, now=datetime(2024, 3, 4, 0, 0), cal=midnight) == days
    # a 05:00 broadcast day: 2024-03-03 runs until 2024-03-04 05:00
    assert FC.finished_days(days, now=datetime(2024, 3, 4, 4, 59), cal=five) == ["2024-03-01", "2024-03-02"]
    assert FC.finished_days(days, now=datetime(2024, 3, 4, 5, 0), cal=five) == days


def test_top_series_are_chosen_on_training_days_only():
    idx = pd.date_range("2024-01-01", periods=42, freq="D")
    frame = pd.DataFrame({f"c{i}": 100.0 - i for i in range(5)}, index=idx)
    frame["late"] = 0.0
    frame.loc[idx[-7:], "late"] = 10_000.0  # huge only in the last week: the last fold's test days
    out = FC.backtest_selected(frame, 2)
    assert all("late" not in cols for cols in out["selected_per_fold"])  # never chosen with its test week
    assert out["selected_per_fold"][0] == ["c0", "c1"]
    assert "late" in out["selected"]  # for the next week, chosen on every day
    assert len(out["mape_folds"]["calendar_ridge"]) == 4


def test_mape_and_wape():
    assert FC.mape([100, 200, 0], [110, 180, 5]) == pytest.approx(10.0)
    assert FC.wape([100, 300], [110, 270]) == pytest.approx(10.0)


# ---- measures ----------------------------------------------------------------------------------------------------------
def test_channel_leaders_ranks_hours_views_and_minutes_per_view():
    rating = pd.DataFrame({
        "dt": ["2024-01-01"] * 3 + ["2024-01-02"] * 3,
        "channel_id": [1, 2, 3, 1, 2, 3],
        "channel_name": ["A", "B", "C"] * 2,
        "hours": [10.0, 5.0, 1.0, 10.0, 5.0, 1.0],
        "views": [100, 20, 5, 100, 20, 5],
    })
    t = audience.channel_leaders(rating, min_views=20).set_index("channel_name")
    assert t.loc["A", "hours"] == 20 and t.loc["A", "rank_hours"] == 1 and t.loc["C", "rank_hours"] == 3
    assert t.loc["B", "minutes_per_view"] == pytest.approx(10 * 60 / 40)
    assert t.loc["B", "rank_minutes_per_view"] == 1  # 15 min/view beats A's 6; C has too few views
    assert pd.isna(t.loc["C", "rank_minutes_per_view"])
    assert t["hours_share_pct"].sum() == pytest.approx(100.0)


def test_weekday_weekend_and_prime_time():
    days = pd.date_range("2024-01-01", periods=14).strftime("%Y-%m-%d")
    daily = pd.DataFrame({"dt": days, "views": 10, "active_users": 10,
                          "hours_in_day": [100.0 if pd.Timestamp(d).day_of_week < 5 else 125.0 for d in days]})
    r = audience.weekend_vs_weekday(daily)
    assert r["weekend_to_weekday_hours"] == pytest.approx(1.25)
    prof = audience.weekday_profile(daily)
    assert list(prof["weekday"]) == list(audience.WEEKDAYS) and (prof["days"] == 2).all()
    hourly = pd.DataFrame([(d, h, 60.0 * (10 if h in audience.PRIME_HOURS else 1)) for d in days for h in range(24)],
                          columns=["dt", "hour", "minutes"])
    per_day, summ = audience.prime_time(hourly)
    assert summ["prime_share_pct"] == pytest.approx(100 * 40 / 60, abs=0.01)
    assert summ["peak_hour"] == 19 and summ["hours_holding_half_of_minutes"] == 3
    assert per_day["prime_share_pct"].round(6).nunique() == 1
    hp = audience.hourly_profile(hourly)
    assert hp.loc[20, "weekday"] == pytest.approx(10.0) and hp.loc[3, "weekend"] == pytest.approx(1.0)


def test_retention_pairs_and_curve():
    ud = pd.DataFrame({"user_id": [1, 1, 1, 2, 2, 3], "dt": ["2024-01-01", "2024-01-02", "2024-01-03",
                                                             "2024-01-01", "2024-01-03", "2024-01-02"]})
    pairs = audience.return_pairs(ud, max_lag=2)
    curve = audience.retention_curve(pairs).set_index("lag")
    # lag 1: day1 {1,2} -> day2 {1,3}: 1 of 2; day2 {1,3} -> day3 {1,2}: 1 of 2
    assert curve.loc[1, "retention_pct"] == pytest.approx(50.0)
    # lag 2: day1 {1,2} -> day3 {1,2}: 2 of 2
    assert curve.loc[2, "retention_pct"] == pytest.approx(100.0)


# ---- segments and charts --------------------------------------------------------------------------------------------------
def test_canonical_segment_order_is_by_peak_hour():
    centers = np.zeros((3, 24))
    centers[0, 21], centers[1, 8], centers[2, 14] = 1, 1, 1
    assert list(SG.canonical_order(centers)) == [2, 0, 1]
    assert SG.describe_center(centers[0]).startswith("evening (peak 21h")


def test_charts_need_axis_labels_and_stay_small():
    fig, axes = C.figure(1, 1)
    axes[0][0].plot([1, 2], [3, 4])
    with pytest.raises(ValueError, match="axis label"):
        C.to_png(fig)
    fig, axes = C.figure(2, 1)
    C.hbar(axes[0][0], ["a", "b"], [1, 2], "t", "hours, h")
    C.pie(axes[0][1], [1, 2], ["a", "b"], "pie")
    png = C.to_png(fig)
    assert png[:4] == b"\x89PNG" and len(png) < C.MAX_PNG_BYTES
    assert C.markdown_image(png).startswith("![chart](data:image/png;base64,")


def test_the_demo_builds_the_history_the_forecast_backtest_needs():
    """The demo's lake history (its finished days) is enough for the rolling-origin backtest: the demo's forecast
    once failed with 'needs 24 finished days … the window has 21' when the backtest gained its origins."""
    from tv_platform.analytics.forecast import FOLDS, days_needed, fold_origins
    from tv_platform.demo import forecast_history_days

    n = forecast_history_days()
    assert n == days_needed()
    assert len(fold_origins(n)) == FOLDS
    with pytest.raises(ValueError, match="needs"):
        fold_origins(n - 1)
