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
    for i in range(35):
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
    assert pooled["mape"]["calendar_ridge"] == pytest.approx(bt.mape["calendar_ridge"])


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


def test_audience_reach_share_and_ama():
    cwh = pd.DataFrame({"dt": ["2024-01-01", "2024-01-01", "2024-01-02"], "hour": [20, 21, 20],
                        "channel_id": [1, 2, 1], "channel_name": ["A", "B", "A"], "minutes": [120.0, 60.0, 60.0]})
    viewers = pd.DataFrame({"channel_id": [1, 2], "viewers": [5, 1]})
    per, ama = audience.audience(cwh, viewers, user_base=10)
    per = per.set_index("channel_name")
    assert per.loc["A", "reach_pct"] == 50 and per.loc["B", "reach_pct"] == 10
    assert per.loc["A", "share_pct"] == pytest.approx(75.0)
    assert ama.loc[1, 20] == pytest.approx(180.0 / (60 * 2))  # 1.5 users watching an average minute 20:00–21:00
    assert per.loc["A", "ama"] == pytest.approx(180.0 / (60 * 24 * 2))


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
