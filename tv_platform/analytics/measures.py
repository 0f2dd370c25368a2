"""Viewing measures as pure pandas functions of the lake's small daily aggregates (pulled from Spark with toPandas
after aggregation). Inputs are the tables' columns (docs/lake.md); ``dt`` is an ISO date string.

The audience measures (TVR, AMA, reach, share, ATS on the broadcast day, over a declared universe) are not here: they
are Spark functions in tv_platform/lake/aggregates.py, defined in docs/measures.md. This module keeps the service's
descriptive analyses: leaders, weekday profiles, the hourly load and **prime time** — 19:00–23:00 by default
(``PRIME_HOURS``); concentration = share of the day's minutes in it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PRIME_HOURS = (19, 20, 21, 22)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def n_days(frame: pd.DataFrame) -> int:
    return int(frame["dt"].nunique()) if len(frame) else 0


# ---- leaders and outsiders -----------------------------------------------------------------------------------------
def channel_leaders(rating: pd.DataFrame, min_views: int = 10) -> pd.DataFrame:
    """Per channel over the window (channel_rating rows: channel_id, channel_name, hours, views, dt): hours, views,
    minutes per view (the seed's "rating" of length) and the three ranks (1 = most). Channels with fewer than
    ``min_views`` views get no minutes-per-view rank (one long view would top it)."""
    g = (rating.groupby("channel_id", as_index=False)
         .agg(channel_name=("channel_name", "max"), hours=("hours", "sum"), views=("views", "sum")))
    g["minutes_per_view"] = np.where(g["views"] > 0, g["hours"] * 60.0 / g["views"].clip(lower=1), np.nan)
    g["hours_share_pct"] = 100.0 * g["hours"] / max(float(g["hours"].sum()), 1e-12)
    g["rank_hours"] = g["hours"].rank(ascending=False, method="first").astype(int)
    g["rank_views"] = g["views"].rank(ascending=False, method="first").astype(int)
    mpv = g["minutes_per_view"].where(g["views"] >= min_views)
    g["rank_minutes_per_view"] = mpv.rank(ascending=False, method="first").astype("Int64")
    return g.sort_values("rank_hours").reset_index(drop=True)


def top_bottom(table: pd.DataFrame, column: str, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    t = table.dropna(subset=[column]).sort_values([column, "channel_id"], ascending=[False, True])
    return t.head(n), t.tail(n).iloc[::-1]


# ---- weekday vs weekend ----------------------------------------------------------------------------------------------
def with_weekday(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    wd = pd.to_datetime(out["dt"]).dt.day_of_week
    out["weekday"] = wd.map(dict(enumerate(WEEKDAYS)))
    out["weekday_num"] = wd + 1
    out["is_weekend"] = wd >= 5
    return out


def weekday_profile(daily: pd.DataFrame) -> pd.DataFrame:
    """Mean per day of each weekday (daily_viewing rows): hours in day, views, active users, minutes per user."""
    d = with_weekday(daily)
    g = (d.groupby(["weekday_num", "weekday"], as_index=False)
         .agg(days=("dt", "nunique"), hours=("hours_in_day", "mean"), views=("views", "mean"),
              active_users=("active_users", "mean")))
    g["minutes_per_active_user"] = g["hours"] * 60.0 / g["active_users"].clip(lower=1)
    return g.sort_values("weekday_num").reset_index(drop=True)


def weekend_vs_weekday(daily: pd.DataFrame) -> dict[str, float]:
    d = with_weekday(daily)
    wk, we = d[~d["is_weekend"]], d[d["is_weekend"]]
    out = {
        "weekday_hours_per_day": float(wk["hours_in_day"].mean()) if len(wk) else float("nan"),
        "weekend_hours_per_day": float(we["hours_in_day"].mean()) if len(we) else float("nan"),
        "weekday_views_per_day": float(wk["views"].mean()) if len(wk) else float("nan"),
        "weekend_views_per_day": float(we["views"].mean()) if len(we) else float("nan"),
    }
    out["weekend_to_weekday_hours"] = out["weekend_hours_per_day"] / out["weekday_hours_per_day"] \
        if out["weekday_hours_per_day"] else float("nan")
    return out


def hourly_profile(hourly: pd.DataFrame) -> pd.DataFrame:
    """Average minutes per hour of day on weekdays and on weekends (hourly_activity rows): 24 rows, columns
    ``weekday`` and ``weekend`` = AMA (average concurrent viewers) in that hour."""
    h = with_weekday(hourly)
    h["kind"] = np.where(h["is_weekend"], "weekend", "weekday")
    days = h.groupby("kind")["dt"].nunique()
    m = h.pivot_table(index="hour", columns="kind", values="minutes", aggfunc="sum").reindex(range(24)).fillna(0.0)
    for k in m.columns:
        m[k] = m[k] / (60.0 * days[k])
    return m


# ---- prime time -------------------------------------------------------------------------------------------------------
def prime_time(hourly: pd.DataFrame, prime: tuple[int, ...] = PRIME_HOURS) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per day: the share of minutes in the prime hours; summary: its mean, the peak hour, and how many of the busiest
    hours hold half of all minutes (fewer = more concentrated), plus a Herfindahl index of the hourly shares."""
    h = hourly.copy()
    h["prime"] = h["hour"].isin(prime)
    per_day = h.groupby("dt").apply(
        lambda g: pd.Series({"minutes": g["minutes"].sum(),
                             "prime_minutes": g.loc[g["prime"], "minutes"].sum()}), include_groups=False)
    per_day["prime_share_pct"] = 100.0 * per_day["prime_minutes"] / per_day["minutes"].where(per_day["minutes"] > 0)
    per_day = with_weekday(per_day.reset_index())
    by_hour = h.groupby("hour")["minutes"].sum().reindex(range(24), fill_value=0.0)
    shares = by_hour / max(float(by_hour.sum()), 1e-12)
    cum = np.cumsum(np.sort(shares.to_numpy())[::-1])
    summary = {
        "prime_hours": f"{prime[0]:02d}:00–{prime[-1] + 1:02d}:00",
        "prime_share_pct": round(100.0 * float(shares[list(prime)].sum()), 2),
        "prime_share_of_clock_pct": round(100.0 * len(prime) / 24, 2),
        "peak_hour": int(shares.idxmax()),
        "peak_hour_share_pct": round(100.0 * float(shares.max()), 2),
        "hours_holding_half_of_minutes": int(np.searchsorted(cum, 0.5) + 1),
        "herfindahl_hours": round(float((shares ** 2).sum()), 4),
    }
    return per_day, summary


# ---- retention ----------------------------------------------------------------------------------------------------------
def return_pairs(user_days: pd.DataFrame, max_lag: int = 7) -> pd.DataFrame:
    """(dt, lag, base, returned) from one row per (user_id, dt) active: of the users active on dt, how many are
    active again lag days later. The Spark asset computes the same counts with SQL (no user rows leave Spark)."""
    ud = user_days[["user_id", "dt"]].drop_duplicates().copy()
    ud["d"] = pd.to_datetime(ud["dt"])
    base = ud.groupby("dt").size()
    out = []
    last = ud["d"].max()
    active = set(zip(ud["user_id"], ud["d"]))
    for dt, n in base.items():
        d = pd.Timestamp(dt)
        users = ud.loc[ud["dt"] == dt, "user_id"]
        for lag in range(1, max_lag + 1):
            t = d + pd.Timedelta(days=lag)
            if t > last:
                break
            out.append((dt, lag, int(n), int(sum((u, t) in active for u in users))))
    return pd.DataFrame(out, columns=["dt", "lag", "base", "returned"])


def retention_curve(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pooled over the start days: returned / base for each lag (days later), in percent."""
    g = pairs.groupby("lag", as_index=False)[["base", "returned"]].sum()
    g["retention_pct"] = 100.0 * g["returned"] / g["base"].clip(lower=1)
    return g
