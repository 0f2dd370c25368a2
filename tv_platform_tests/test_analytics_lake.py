"""Analytics on the real stack.

* A small simulated lake (2 000 users, Fri..Sun) built by the lake's own assets; every analytics asset but the forecast
  materialized on it through Spark Connect; k-means stability; the seed-analysis notebook executed headless on it.
* The forecast on 28 days of daily tables with a planted +1 %/day trend and the simulator's weekly cycle, written
  straight into the three tables it reads (building 28 days through the lake graph takes ~18 s a day here)."""

import os
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from tv_platform.analytics import segments as SG
from tv_platform.engines.hdfs import frame_to_csv_bytes
from tv_platform.simulator import SimulationParams, load_channels, simulate_day, simulate_sessions

pytestmark = pytest.mark.services
from tv_platform_tests.conftest import broadcast_day  # noqa: E402

calendar_day = broadcast_day("00:00")
"""Expected values here are on the calendar day (the seed's day): TVP_BROADCAST_DAY_START=00:00 (docs/measures.md)."""

FIRST = date(2024, 3, 8)  # a Friday: one weekday, two weekend days
DAYS = 3
FORECAST_FIRST = date(2024, 3, 4)  # a Monday
FORECAST_DAYS = 28
USERS = 2_000
TREND = 0.01  # +1 % sessions per day
LAST = FIRST + timedelta(days=DAYS - 1)
NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "seed_analysis.ipynb"
FORECAST_MAPE_BOUND = 5.0
"""The calendar model's MAPE on the held-out week of the simulated lake stays below this (measured ≈ 1–3 %; the
seasonal-naive forecast misses the week's growth, ≈ 7 %)."""


def params(i: int) -> SimulationParams:
    return SimulationParams(users=USERS, seed=11, sessions_per_user=1.0 + TREND * i)


LAKE_PARAMS = SimulationParams(users=USERS, seed=11)


@pytest.fixture(scope="module")
def env(stack, spark, lake):
    from tv_platform.engines.spark import HiveIOManager, HiveResource

    suffix = uuid.uuid4().hex[:8]
    root = f"/tv_platform_test_analytics_{suffix}"
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_test_analytics_{suffix}",
                        lake_url=stack.hdfs_url, lake_root=root, webhdfs_url=stack.webhdfs_url,
                        hdfs_user=stack.hdfs_user)
    resources = {"hive": hive, "hive_io_manager": HiveIOManager(
        spark_remote=stack.spark_remote, database=hive.database, database_location=hive.resolved_database_location())}
    channels = load_channels()
    lake.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(channels))
    users = pd.DataFrame({"user_id": range(1, USERS + 1)})
    users["user_name"] = "user " + users["user_id"].astype(str)
    lake.write_bytes(f"{root}/reference/users/users.csv", frame_to_csv_bytes(users))
    for i in range(DAYS):
        day = FIRST + timedelta(days=i)
        ev = simulate_day(day, LAKE_PARAMS)
        ev = ev.assign(timer=ev["timer"].dt.strftime("%Y-%m-%d %H:%M:%S"))
        lake.write_bytes(f"{root}/raw/tv_dataset/dt={day}/events.csv", frame_to_csv_bytes(ev))
    yield {"hive": hive, "resources": resources, "root": root}
    try:
        hive.catalog().drop_database()
    finally:
        lake.delete(root)


@pytest.fixture(scope="module")
def built(env):
    """The lake's graph over the days in one run (a partition range)."""
    from tv_platform.assets import lake as L

    t0 = time.time()
    assert dg.materialize([L.hive_channels, L.hive_users], resources=env["resources"]).success
    from tv_platform.assets import analytics as AN

    lake_assets = [L.hive_tv_dataset, L.sessionize_assets, L.daily_viewing, L.channel_rating, L.hourly_activity,
                   L.channel_weekday_hour, L.user_activity, AN.audience_daily]
    res = dg.materialize(lake_assets, resources=env["resources"],
                         tags={"dagster/asset_partition_range_start": str(FIRST),
                               "dagster/asset_partition_range_end": str(LAST)})
    assert res.success
    print(f"lake built in {time.time() - t0:.0f} s")
    return env


@pytest.fixture(scope="module")
def analytics_run(built):
    from tv_platform.assets import analytics as AN

    res = dg.materialize([a for a in AN.assets if a is not AN.viewing_forecast], resources=built["resources"])
    assert res.success
    out = {}
    for event in res.get_asset_materialization_events():
        m = event.event_specific_data.materialization
        out[m.asset_key.to_user_string()] = m.metadata
    return out


def test_every_analytics_asset_attaches_a_chart_and_summary(analytics_run):
    from tv_platform.assets import analytics as AN

    assert set(analytics_run) == {a.key.to_user_string() for a in AN.assets} - {"viewing_forecast"}
    for key, md in analytics_run.items():
        text = md["summary"].value
        assert "![" in text and "data:image/png;base64," in text, key
        assert 0 < md["chart_png_bytes"].value <= 150_000, key
        assert str(md["chart_path"].value).endswith(f"/analytics/charts/{key}.png"), key


@pytest.fixture(scope="module")
def forecast_run(stack, spark):
    """28 days of daily_viewing / channel_rating / hourly_activity (the columns the forecast reads) computed with pandas
    from simulated sessions (by start day) in a database of their own, then the forecast asset on them."""
    from tv_platform.assets import analytics as AN
    from tv_platform.engines.spark import HiveResource

    suffix = uuid.uuid4().hex[:8]
    hive = HiveResource(spark_remote=stack.spark_remote, database=f"tv_test_forecast_{suffix}",
                        lake_url=stack.hdfs_url, lake_root=f"/tv_platform_test_forecast_{suffix}",
                        webhdfs_url=stack.webhdfs_url, hdfs_user=stack.hdfs_user)
    names = load_channels().set_index("channel_id")["channel_name"]
    daily, rating, hourly = [], [], []
    for i in range(FORECAST_DAYS):
        day = FORECAST_FIRST + timedelta(days=i)
        s = simulate_sessions(day, params(i))
        sec = (s["end"] - s["start"]).dt.total_seconds()
        daily.append((str(day), float(sec.sum() / 3600)))
        g = sec.groupby(s["channel_id"]).sum() / 3600
        rating += [(str(day), str(names[c]), float(h)) for c, h in g.items()]
        m = sec.groupby(s["start"].dt.hour).sum().reindex(range(24), fill_value=0.0) / 60
        hourly += [(str(day), int(h), float(v)) for h, v in m.items()]
    cat = hive.catalog()
    days = [d for d, _ in daily]
    cat.write("daily_viewing", spark.createDataFrame(daily, "dt string, hours_in_day double"), days)
    cat.write("channel_rating", spark.createDataFrame(rating, "dt string, channel_name string, hours double"), days)
    cat.write("hourly_activity", spark.createDataFrame(hourly, "dt string, hour int, minutes double"), days)
    res = dg.materialize([AN.viewing_forecast], resources={"hive": hive})
    assert res.success
    md = res.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    yield {"hive": hive, "metadata": md, "daily": pd.Series(dict(daily))}
    try:
        cat.drop_database()
    finally:
        hive.fs().delete(f"/tv_platform_test_forecast_{suffix}")


def test_forecast_backtest_on_a_planted_trend_and_weekly_cycle(forecast_run):
    md = forecast_run["metadata"]
    ridge, naive = md["mape_total_calendar_ridge"].value, md["mape_total_seasonal_naive"].value
    print(f"viewing_forecast backtest MAPE: total ridge {ridge:.2f} % vs naive {naive:.2f} %; "
          f"channels {md['mape_channels_calendar_ridge'].value:.2f} / {md['mape_channels_seasonal_naive'].value:.2f}; "
          f"hourly {md['mape_hourly_calendar_ridge'].value:.2f} / {md['mape_hourly_seasonal_naive'].value:.2f} "
          f"(WAPE {md['wape_hourly_calendar_ridge'].value:.2f} / {md['wape_hourly_seasonal_naive'].value:.2f})")
    assert ridge < FORECAST_MAPE_BOUND
    # a +1 %/day planted trend: last week's same weekday is ~7 % short; the trend model is not
    assert md["beats_baseline"].value is True and naive > ridge
    assert "data:image/png;base64," in md["summary"].value
    cat = forecast_run["hive"].catalog()
    rows = cat.read("forecast_daily").toPandas()
    total = rows[rows["series"] == "total"]
    assert set(total["kind"]) == {"actual", "backtest", "forecast"}
    assert len(total[total["kind"] == "forecast"]) == 2 * 7
    last = FORECAST_FIRST + timedelta(days=FORECAST_DAYS - 1)
    assert total[total["kind"] == "forecast"]["day"].min() == str(last + timedelta(days=1))
    assert {r for r in rows["series"] if r.startswith("hour:")} == {f"hour:{h:02d}" for h in range(24)}
    # the fitted trend recovers the planted one: +1 % of the mean weekday/weekend volume per day
    trend = md["model_coefficients_total"].value["trend_per_day"]
    level = forecast_run["daily"].iloc[:7].mean()
    assert trend == pytest.approx(TREND * level, rel=0.3)


def test_weekday_weekend_and_prime_time_find_the_planted_pattern(analytics_run):
    # the simulator keeps 80 % of the weekend volume on weekdays (the Friday also lacks Thursday's carry-in)
    ratio = analytics_run["weekday_weekend"]["weekend_to_weekday_hours"].value
    assert 1.15 < ratio < 1.45
    pt = analytics_run["prime_time"]
    assert pt["peak_hour"].value in (19, 20, 21, 22)
    assert pt["prime_share_pct"].value > 50  # 80 % of sessions are centred on 20:30


def test_audience_and_leaders_are_consistent(analytics_run, built):
    cat = built["hive"].catalog()
    aud = cat.read("analytics_audience").toPandas()
    whole = aud[aud["daypart"] == "all"]
    assert whole["share_pct"].sum() == pytest.approx(100.0, abs=1e-6)
    assert (aud["reach_pct"] <= 100).all() and (whole.loc[whole["minutes"] > 0, "reach_pct"] > 0).all()
    assert set(whole["days"]) == {DAYS} and set(whole["universe"]) == {USERS}  # 3 calendar days, the 2 000 users
    # AMA over every minute of the window: Σ minutes / (3 × 1440); TVR = AMA / universe
    assert np.allclose(whole["ama"], whole["minutes"] / (DAYS * 1440))
    assert np.allclose(whole["tvr_pct"], 100 * whole["minutes"] / (DAYS * 1440 * USERS))
    md = analytics_run["audience_measures"]
    assert md["ats_per_member_day_weekend"].value > 0 and md["ats_per_member_day_weekday"].value > 0
    lead = cat.read("analytics_channel_leaders").toPandas().sort_values("rank_hours")
    assert analytics_run["channel_leaders"]["leader_by_hours"].value == lead.iloc[0]["channel_name"]


def test_kmeans_segments_are_stable_for_a_fixed_seed(built):
    cat = built["hive"].catalog()
    profiles = SG.user_hour_profiles(cat.read("viewing_sessions"))
    a, ca, _ = SG.kmeans_segments(profiles, k=4, seed=7)
    b, cb, _ = SG.kmeans_segments(profiles, k=4, seed=7)
    pa = a.toPandas().set_index("user_id")["segment"].sort_index()
    pb = b.toPandas().set_index("user_id")["segment"].sort_index()
    assert len(pa) > 0.5 * USERS  # users active in the 3 days (1 449 of 2 000 with seed 11)
    assert (pa == pb).all()
    np.testing.assert_allclose(ca, cb)


def test_kmeans_recovers_planted_morning_and_evening_viewers(spark):
    """Users 1..50 watch 07:00–09:00, users 51..100 watch 20:00–22:00: two segments, exactly these."""
    rows = []
    for u in range(1, 101):
        h = 7 if u <= 50 else 20
        for d in range(3):
            start = pd.Timestamp("2024-03-04") + pd.Timedelta(days=d, hours=h, minutes=(u * 7) % 40)
            rows.append((u, start.to_pydatetime(), 3600 + 60 * (u % 30)))
    sessions = spark.createDataFrame(rows, "user_id int, time_start timestamp, duration_s bigint")
    assigned, centers, _ = SG.kmeans_segments(SG.user_hour_profiles(sessions), k=2, seed=1)
    seg = assigned.toPandas().set_index("user_id")["segment"].sort_index()
    assert (seg.loc[1:50] == 0).all() and (seg.loc[51:100] == 1).all()  # canonical order: morning peak first
    assert [int(np.argmax(c)) for c in centers][0] in (7, 8) and int(np.argmax(centers[1])) in (20, 21)


def test_seed_notebook_runs_headless_on_the_lake(built, stack, monkeypatch, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("TVP_HIVE_DATABASE", built["hive"].database)
    monkeypatch.setenv("TVP_SPARK_REMOTE", stack.spark_remote)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": tmp_path}})
    client.execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.output_type == "stream")
    assert "days:" in text and "least watched" in text
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.output_type == "display_data" and "image/png" in o.get("data", {})]
    assert len(images) >= 3
    assert os.environ["TVP_HIVE_DATABASE"] == built["hive"].database
