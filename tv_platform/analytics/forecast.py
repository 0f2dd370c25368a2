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

Backtest on **rolling origins** (:func:`backtest`): ``FOLDS`` (≥ 4) origins, each fold fitted only on the days before
its origin and scored on the ``horizon`` days after it; the MAPE is the mean over folds with a 95 % interval (Student
t over the fold MAPEs). **Missing days stay missing** (NaN, never 0): the models fit on the days observed and the
errors skip days without an actual. **Series chosen by volume** (the top channels) are chosen on each fold's training
days only (:func:`backtest_selected`), never with the days they are scored on. The caller drops an **unfinished day**
(:func:`finished_days`) before any of this.
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
FOLDS = 4
"""Rolling origins of the backtest (at least 4)."""
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def finished_days(days, now=None, cal=None) -> list[str]:
    """The days that are over at ``now`` (default: now on the operator's clock, TVP_TIMEZONE; a naive ``now`` is a
    wall-clock time of that zone): a day is a broadcast day (``cal``, default the settings' TVP_BROADCAST_DAY_START),
    finished once the next one has begun — with 05:00, D is over at D+1 05:00 — so the running day's partition
    (sessions still open, events still arriving) is left out."""
    from datetime import datetime, timezone

    from tv_platform.dates import zone
    from tv_platform.lake.calendar import BroadcastCalendar

    cal = cal or BroadcastCalendar.from_settings()
    if now is None:
        now = datetime.now(timezone.utc)
    wall = now if now.tzinfo is None else now.astimezone(zone()).replace(tzinfo=None)
    running = cal.day_of(wall).isoformat()
    return [d for d in days if str(d)[:10] < running]


def _dates(series: pd.Series) -> pd.DatetimeIndex:
    idx = pd.DatetimeIndex(pd.to_datetime(series.index))
    if len(idx) > 1 and not ((idx[1:] - idx[:-1]) == pd.Timedelta(days=1)).all():
        raise ValueError("the series must be daily with consecutive dates (fill missing days first)")
    return idx


def future_dates(series: pd.Series, horizon: int = HORIZON) -> pd.DatetimeIndex:
    last = _dates(series)[-1]
    return pd.date_range(last + pd.Timedelta(days=1), periods=horizon, freq="D")


def seasonal_naive(series: pd.Series, horizon: int = HORIZON) -> pd.Series:
    """Same weekday of the last week in which that weekday was observed (a missing day is skipped, not read as 0)."""
    if len(series) < 7:
        raise ValueError(f"seasonal naive needs at least 7 days of history, got {len(series)}")
    values = series.to_numpy(dtype=float)
    out = []
    for h in range(horizon):
        i = len(values) - 7 + (h % 7)
        while i >= 0 and np.isnan(values[i]):
            i -= 7
        out.append(values[i] if i >= 0 else np.nan)
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
    """Least squares on the observed days (missing ones, NaN, are left out of the fit)."""
    dates = _dates(series)
    y = series.to_numpy(dtype=float)
    seen = ~np.isnan(y)
    if seen.sum() < MIN_MODEL_DAYS:
        raise ValueError(f"the calendar model needs at least {MIN_MODEL_DAYS} observed days of history, got "
                         f"{int(seen.sum())}")
    x = calendar_design(dates, dates[0])[seen]
    y = y[seen]
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
    ok = (a > 0) & np.isfinite(f)  # a missing actual (NaN) is not > 0: skipped
    if not ok.any():
        return float("nan")
    return float(np.mean(np.abs(a[ok] - f[ok]) / a[ok]) * 100.0)


@dataclass
class Backtest:
    """Both models scored on rolling origins, then refitted on everything for the next ``horizon`` days.

    ``backtest[m]``: the folds' forecasts (the latest fold wins where folds overlap — for the chart and the table);
    ``mape[m]``: mean of the folds' MAPEs; ``mape_folds[m]``: each fold's; ``interval[m]``: 95 % interval of the mean
    (Student t over the folds); ``origins``: the first scored day of each fold."""

    actual: pd.Series
    backtest: dict[str, pd.Series]
    future: dict[str, pd.Series]
    mape: dict[str, float]
    coefficients: dict[str, float] = field(default_factory=dict)
    mape_folds: dict[str, list[float]] = field(default_factory=dict)
    interval: dict[str, tuple[float, float]] = field(default_factory=dict)
    origins: list[pd.Timestamp] = field(default_factory=list)

    @property
    def beats_baseline(self) -> bool:
        return bool(self.mape["calendar_ridge"] < self.mape["seasonal_naive"])


def days_needed(horizon: int = HORIZON, folds: int = FOLDS) -> int:
    """Finished days of history the backtest needs: ``MIN_MODEL_DAYS`` of training, the held-out ``horizon`` and one
    day more per further rolling origin."""
    return MIN_MODEL_DAYS + horizon + folds - 1


def fold_origins(n: int, horizon: int = HORIZON, folds: int = FOLDS) -> list[int]:
    """Positions of the first scored day of each fold, latest first: spaced ``horizon`` days apart when the history
    allows, closer (down to 1 day, overlapping test weeks) when it does not; each fold keeps ``MIN_MODEL_DAYS`` of
    training. ValueError when even that cannot give ``folds`` folds."""
    if folds < 4:
        raise ValueError(f"the backtest needs at least 4 rolling origins, got {folds}")
    last = n - horizon
    room = last - MIN_MODEL_DAYS
    if room < folds - 1:
        raise ValueError(f"backtest needs {days_needed(horizon, folds)} days (training {MIN_MODEL_DAYS}, "
                         f"held-out {horizon}, {folds} origins), got {n}")
    step = max(1, min(horizon, room // (folds - 1)))
    return [last - k * step for k in range(folds)]


def interval95(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) < 2:
        return (float("nan"), float("nan"))
    half = _T975.get(len(v) - 1, 1.96) * float(v.std(ddof=1)) / np.sqrt(len(v))
    return (float(v.mean() - half), float(v.mean() + half))


def backtest(series: pd.Series, horizon: int = HORIZON, folds: int = FOLDS) -> Backtest:
    series = series.astype(float)
    _dates(series)
    origins = fold_origins(len(series), horizon, folds)
    per: dict[str, list[float]] = {m: [] for m in MODELS}
    held: dict[str, pd.Series] = {m: pd.Series(dtype=float, index=pd.DatetimeIndex([])) for m in MODELS}
    for o in sorted(origins):
        train, test = series.iloc[:o], series.iloc[o:o + horizon]
        for m, f in FORECASTERS.items():
            fc = f(train, horizon)
            per[m].append(mape(test.to_numpy(), fc.to_numpy()))
            held[m] = pd.concat([held[m][held[m].index < fc.index[0]], fc])
    scores = {m: float(np.nanmean(per[m])) if np.isfinite(per[m]).any() else float("nan") for m in MODELS}
    future = {m: f(series, horizon) for m, f in FORECASTERS.items()}
    return Backtest(actual=series, backtest={m: held[m].rename(m) for m in MODELS}, future=future, mape=scores,
                    coefficients=fit_calendar(series).coefficients(), mape_folds=per,
                    interval={m: interval95(per[m]) for m in MODELS},
                    origins=[series.index[o] for o in sorted(origins)])


def backtest_many(frame: pd.DataFrame, horizon: int = HORIZON) -> dict[str, Backtest]:
    """One backtest per column of a wide daily frame (index dates, one column per series)."""
    return {str(c): backtest(frame[c], horizon) for c in frame.columns}


def top_columns(frame: pd.DataFrame, n: int) -> list[str]:
    """The ``n`` columns with the largest sums (ties: name order)."""
    sums = frame.sum(skipna=True)
    return sorted(sums.index, key=lambda c: (-float(sums[c]), str(c)))[:n]


def backtest_selected(frame: pd.DataFrame, n: int, horizon: int = HORIZON, folds: int = FOLDS) -> dict:
    """Pooled errors of the top-``n`` series where each fold chooses its top ``n`` from its own training days only.
    Returns ``{"mape": {m: %}, "wape": {m: %}, "mape_folds": {m: [...]}, "interval": {m: (lo, hi)},
    "selected_per_fold": [[...], ...], "selected": [...] (chosen on all days: the series forecast next)}``."""
    origins = sorted(fold_origins(len(frame), horizon, folds))
    a_all: dict[str, list] = {m: [] for m in MODELS}
    f_all: dict[str, list] = {m: [] for m in MODELS}
    per: dict[str, list[float]] = {m: [] for m in MODELS}
    chosen = []
    for o in origins:
        train = frame.iloc[:o]
        cols = top_columns(train, n)
        chosen.append(cols)
        fa: dict[str, list] = {m: [] for m in MODELS}
        aa = []
        for c in cols:
            test = frame[c].iloc[o:o + horizon].to_numpy(dtype=float)
            aa.append(test)
            for m, f in FORECASTERS.items():
                fa[m].append(f(train[c].astype(float), horizon).to_numpy())
        for m in MODELS:
            a, f = np.concatenate(aa), np.concatenate(fa[m])
            per[m].append(mape(a, f))
            a_all[m].append(a)
            f_all[m].append(f)
    out: dict = {"mape": {}, "wape": {}, "mape_folds": per, "interval": {m: interval95(per[m]) for m in MODELS},
                 "selected_per_fold": chosen, "selected": top_columns(frame, n)}
    for m in MODELS:
        a, f = np.concatenate(a_all[m]), np.concatenate(f_all[m])
        out["mape"][m] = mape(a, f)
        out["wape"][m] = wape(a, f)
    return out


def wape(actual, forecast) -> float:
    """Weighted absolute percentage error Σ|actual − forecast| / Σ actual, in percent: small series (night hours,
    minor channels) weigh by their volume instead of blowing MAPE up."""
    a = np.asarray(actual, dtype=float)
    f = np.asarray(forecast, dtype=float)
    ok = np.isfinite(a) & np.isfinite(f)
    total = float(np.abs(a[ok]).sum())
    return float(np.abs(a[ok] - f[ok]).sum() / total * 100.0) if total > 0 else float("nan")


def pooled_errors(results: dict[str, Backtest]) -> dict[str, dict[str, float]]:
    """MAPE and WAPE over every (series, held-out day) point of several backtests pooled together:
    ``{"mape": {model: %}, "wape": {model: %}}``."""
    out: dict[str, dict[str, float]] = {"mape": {}, "wape": {}}
    for m in MODELS:
        a = np.concatenate([r.actual.reindex(r.backtest[m].index).to_numpy() for r in results.values()])
        f = np.concatenate([r.backtest[m].to_numpy() for r in results.values()])
        out["mape"][m] = mape(a, f)
        out["wape"][m] = wape(a, f)
    return out


def complete_days(frame: pd.DataFrame, first, last, fill: float = np.nan) -> pd.DataFrame:
    """Reindex a date-indexed frame onto every day first..last (missing days → ``fill``: NaN, missing — not 0)."""
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
