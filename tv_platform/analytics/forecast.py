"""Daily forecasting: a seasonal-naive baseline and a calendar-feature regression, with a held-out-week backtest.

Models (both on one daily series ``y`` indexed by consecutive dates):

* **seasonal naive** — ``ŷ(d) = y(d − 7k)`` for the smallest k ≥ 1 that lands in the history (same weekday last week).
* **calendar ridge** — ordinary least squares with a small ridge penalty on

      y(t) = a + b·t + Σ_{w=Mon..Sat} γ_w·[weekday(t) = w] + ε

  (``t`` in days, Sunday the reference level; the penalty ``λ`` applies to b and γ, not the intercept). It is the
  additive "trend + day-of-week" decomposition fitted by least squares: it learns the weekly cycle from every past week
  at once (so noise averages out) and extrapolates a linear trend, which the seasonal-naive forecast cannot. Needs at
  least ``MIN_MODEL_DAYS`` days of history (8 coefficients).

Accuracy: MAPE = mean over days with actual > 0 of |actual − forecast| / actual, in percent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

HORIZON = 7
MIN_MODEL_DAYS = 14
"""History the calendar model needs (two full weeks: every weekday seen twice)."""
RIDGE = 1e-3
MODELS = ("seasonal_naive", "calendar_ridge")


def _dates(series: pd.Series) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(series.index))
    if len(idx) > 1 and not ((idx[1:] - idx[:-1]) == pd.Timedelta(days=1)).all():
        raise ValueError("the series must be daily with consecutive dates (fill missing days first)")
    return idx


def future_dates(series: pd.Series, horizon: int = HORIZON) -> pd.DatetimeIndex:
    last = _dates(series)[-1]
    return pd.date_range(last + pd.Timedelta(days=1), periods=horizon, freq="D")


def seasonal_naive(series: pd.Series, horizon: int = HORIZON) -> pd.Series:
    """Same weekday of the last observed week."""
    if len(series) < 7:
        raise ValueError(f"seasonal naive needs at least 7 days of history, got {len(series)}")
    values = series.to_numpy(dtype=float)
    out = [values[len(values) - 7 + (h % 7)] for h in range(horizon)]
    return pd.Series(out, index=future_dates(series, horizon), name="seasonal_naive")


def calendar_design(dates: pd.DatetimeIndex, origin: pd.Timestamp) -> np.ndarray:
    """[1, t, Mon..Sat dummies] for each date; t = days since ``origin``."""
    t = ((dates - origin) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    dow = dates.day_of_week.to_numpy()
    dummies = np.stack([(dow == w).astype(float) for w in range(6)], axis=1)
    return np.column_stack([np.ones_like(t), t, dummies])


@dataclass
class RidgeFit:
    origin: pd.Timestamp
    coef: np.ndarray
    names: tuple = ("intercept", "trend_per_day", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")

    def predict(self, dates: pd.DatetimeIndex) -> np.ndarray:
        return calendar_design(dates, self.origin) @ self.coef

    def coefficients(self) -> dict[str, float]:
        return {n: round(float(c), 4) for n, c in zip(self.names, self.coef)}


def fit_calendar(series: pd.Series, ridge: float = RIDGE) -> RidgeFit:
    if len(series) < MIN_MODEL_DAYS:
        raise ValueError(f"the calendar model needs at least {MIN_MODEL_DAYS} days of history, got {len(series)}")
    dates = _dates(series)
    y = series.to_numpy(dtype=float)
    x = calendar_design(dates, dates[0])
    # relative ridge: each coefficient's penalty is λ × its column's sum of squares (scale-free); intercept free
    gram = x.T @ x
    penalty = ridge * np.diag(np.diag(gram))
    penalty[0, 0] = 0.0
    coef = np.linalg.solve(gram + penalty, x.T @ y)
    return RidgeFit(origin=dates[0], coef=coef)


def calendar_ridge(series: pd.Series, horizon: int = HORIZON, ridge: float = RIDGE) -> pd.Series:
    fit = fit_calendar(series, ridge)
    dates = future_dates(series, horizon)
    return pd.Series(fit.predict(dates), index=dates, name="calendar_ridge")


FORECASTERS = {"seasonal_naive": seasonal_naive, "calendar_ridge": calendar_ridge}


def mape(actual, forecast) -> float:
    """Mean absolute percentage error over the points with actual > 0, in percent (NaN if there are none)."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    ok = a > 0
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(a[ok] - f[ok]) / a[ok]) * 100.0)


@dataclass
class Backtest:
    """Both models fitted on all but the last ``horizon`` days and scored on them; then refitted on everything for
    the next ``horizon`` days."""

    actual: pd.Series
    backtest: dict[str, pd.Series]
    future: dict[str, pd.Series]
    mape: dict[str, float]
    coefficients: dict[str, float] = field(default_factory=dict)

    @property
    def beats_baseline(self) -> bool:
        return bool(self.mape["calendar_ridge"] < self.mape["seasonal_naive"])


def backtest(series: pd.Series, horizon: int = HORIZON) -> Backtest:
    series = series.astype(float)
    _dates(series)
    if len(series) < MIN_MODEL_DAYS + horizon:
        raise ValueError(f"backtest needs {MIN_MODEL_DAYS + horizon} days (history {MIN_MODEL_DAYS} + held-out "
                         f"{horizon}), got {len(series)}")
    train, test = series.iloc[:-horizon], series.iloc[-horizon:]
    held = {m: f(train, horizon) for m, f in FORECASTERS.items()}
    scores = {m: mape(test.to_numpy(), held[m].to_numpy()) for m in MODELS}
    future = {m: f(series, horizon) for m, f in FORECASTERS.items()}
    return Backtest(actual=series, backtest=held, future=future, mape=scores,
                    coefficients=fit_calendar(series).coefficients())


def backtest_many(frame: pd.DataFrame, horizon: int = HORIZON) -> dict[str, Backtest]:
    """One backtest per column of a wide daily frame (index dates, one column per series)."""
    return {str(c): backtest(frame[c], horizon) for c in frame.columns}


def wape(actual, forecast) -> float:
    """Weighted absolute percentage error Σ|actual − forecast| / Σ actual, in percent: small series (night hours,
    minor channels) weigh by their volume instead of blowing MAPE up."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    total = float(np.abs(a).sum())
    return float(np.abs(a - f).sum() / total * 100.0) if total > 0 else float("nan")


def pooled_errors(results: dict[str, Backtest]) -> dict[str, dict[str, float]]:
    """MAPE and WAPE over every (series, held-out day) point of several backtests pooled together:
    ``{"mape": {model: %}, "wape": {model: %}}``."""
    out: dict[str, dict[str, float]] = {"mape": {}, "wape": {}}
    for m in MODELS:
        a = np.concatenate([r.actual.iloc[-len(r.backtest[m]):].to_numpy() for r in results.values()])
        f = np.concatenate([r.backtest[m].to_numpy() for r in results.values()])
        out["mape"][m] = mape(a, f)
        out["wape"][m] = wape(a, f)
    return out


def complete_days(frame: pd.DataFrame, first, last, fill: float = 0.0) -> pd.DataFrame:
    """Reindex a date-indexed frame onto every day first..last (missing days → ``fill``)."""
    idx = pd.date_range(pd.Timestamp(first), pd.Timestamp(last), freq="D")
    out = frame.copy()
    out.index = pd.to_datetime(out.index)
    return out.reindex(idx, fill_value=fill)


def rows(name: str, result: Backtest) -> pd.DataFrame:
    """Long rows for the forecast table: actuals, held-out-week forecasts and the future forecasts of one series.
    Columns: day, series, kind ('actual' | 'backtest' | 'forecast'), model ('actual' | a model name), hours."""
    parts = [pd.DataFrame({"day": result.actual.index, "series": name, "kind": "actual", "model": "actual",
                           "hours": result.actual.to_numpy()})]
    for m in MODELS:
        for kind, s in (("backtest", result.backtest[m]), ("forecast", result.future[m])):
            parts.append(pd.DataFrame({"day": s.index, "series": name, "kind": kind, "model": m,
                                       "hours": s.to_numpy()}))
    out = pd.concat(parts, ignore_index=True)
    out["day"] = pd.to_datetime(out["day"]).dt.strftime("%Y-%m-%d")
    return out
