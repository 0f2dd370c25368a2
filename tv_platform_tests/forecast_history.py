"""A small real history for the forecast: daily tables of simulated days in a Hive database of their own, and the
real ``viewing_forecast`` asset run on them (used by the forecast marts' tests and the Superset fixture).

The forecast reads only ``daily_viewing.hours_in_day``, ``channel_rating (channel_name, hours)`` and
``hourly_activity (hour, minutes)``; building those through the lake graph takes ~18 s a day here, so they are
computed with pandas from the simulator's sessions (by start day), as ``test_analytics_lake.py`` does. The forecast
needs ``MIN_MODEL_DAYS + horizon + FOLDS - 1`` days (24 with the default horizon of 7 and 4 rolling origins)."""

import uuid
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from tv_platform.analytics import forecast as FC
from tv_platform.simulator import SimulationParams, load_channels, simulate_sessions

DAYS = FC.MIN_MODEL_DAYS + FC.HORIZON + FC.FOLDS - 1
USERS = 2_000
TREND = 0.01  # +1 % sessions a day: a history the calendar model can tell from last week's copy


@dataclass
class ForecastHistory:
    hive: object  # HiveResource of the database holding the daily tables and forecast_daily
    days: list[str]
    total_hours: pd.Series  # the history's total hours per day (what the forecast's 'actual' rows must equal)
    metadata: dict

    def cleanup(self) -> None:
        try:
            self.hive.catalog().drop_database()
        finally:
            self.hive.fs().delete(f"/{self.hive.lake_root.strip('/')}")


def build_forecast_history(settings, spark, last: date, days: int = DAYS, prefix: str = "forecast") -> ForecastHistory:
    """Simulated daily tables for ``days`` days ending on ``last`` in a fresh Hive database, then ``viewing_forecast``
    materialized on them (it writes ``forecast_daily`` there). The caller drops it with ``cleanup()``."""
    import dagster as dg

    from tv_platform.assets import analytics as AN
    from tv_platform.engines.spark import HiveResource

    suffix = uuid.uuid4().hex[:8]
    hive = HiveResource(spark_remote=settings.spark_remote, database=f"tv_test_{prefix}_{suffix}",
                        lake_url=settings.hdfs_url, lake_root=f"/tv_platform_test_{prefix}_{suffix}",
                        webhdfs_url=settings.webhdfs_url, hdfs_user=settings.hdfs_user)
    names = load_channels().set_index("channel_id")["channel_name"]
    first = last - timedelta(days=days - 1)
    daily, rating, hourly = [], [], []
    for i in range(days):
        day = first + timedelta(days=i)
        s = simulate_sessions(day, SimulationParams(users=USERS, seed=11, sessions_per_user=1.0 + TREND * i))
        sec = (s["end"] - s["start"]).dt.total_seconds()
        daily.append((str(day), float(sec.sum() / 3600)))
        per_channel = sec.groupby(s["channel_id"]).sum() / 3600
        rating += [(str(day), str(names[c]), float(h)) for c, h in per_channel.items()]
        per_hour = sec.groupby(s["start"].dt.hour).sum().reindex(range(24), fill_value=0.0) / 60
        hourly += [(str(day), int(h), float(v)) for h, v in per_hour.items()]
    cat = hive.catalog()
    keys = [d for d, _ in daily]
    try:
        cat.write("daily_viewing", spark.createDataFrame(daily, "dt string, hours_in_day double"), keys)
        cat.write("channel_rating", spark.createDataFrame(rating, "dt string, channel_name string, hours double"),
                  keys)
        cat.write("hourly_activity", spark.createDataFrame(hourly, "dt string, hour int, minutes double"), keys)
        res = dg.materialize([AN.viewing_forecast], resources={"hive": hive})
        assert res.success
    except BaseException:
        ForecastHistory(hive, keys, pd.Series(dtype=float), {}).cleanup()
        raise
    md = res.get_asset_materialization_events()[0].event_specific_data.materialization.metadata
    return ForecastHistory(hive, keys, pd.Series(dict(daily)), md)
