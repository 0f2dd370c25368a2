"""The behavioural model of the simulator: one day of viewing sessions, vectorised.

A day is a **pure function of (date, params)**: its random generator is seeded from ``(params.seed, date ordinal)``,
so any past day regenerates bit-for-bit (same numpy version) and days are independent of each other and of the order
in which they are generated.

The model follows the seed generator (``make_tv_dataset_csv.py``) and fixes its bugs; docs/simulator.md has the
comparison. Per day:

1. **Sessions per channel.** A weekend day has ``round(users × sessions_per_user)`` sessions, apportioned to the
   channels in proportion to the *viewers* rating (largest-remainder rounding, deterministic — the seed's
   ``int(viewers_rating × 100)`` per channel, scaled by ``users / 10 000``). On weekdays each session is kept with
   probability ``weekday_keep`` (the seed dropped 1 in 5).
2. **Watch length.** Gamma-distributed (shape ``duration_shape``) around a per-channel mean chosen so that each
   channel's share of the viewing *time* equals its *time* rating, and the overall mean is ``mean_session_minutes``:
   ``mean_c = mean_session_minutes × (time_c / viewers_c) / (Σ time / Σ viewers)``. Capped at
   ``max_session_minutes``.
3. **Start time.** A share ``prime_share`` of the sessions is centred on prime time: their midpoint is
   ``prime_hour:30`` plus a normal offset (sd ``prime_spread_minutes``), so long sessions start earlier — the seed's
   ``start hour = 20 - round(minutes / 120)``. The others start uniformly at random in ``[00:00, 24:00 - length)``
   (the seed's ``random hour in [0, 23 - ceil(minutes / 60)]``), so they end by midnight.
   Prime-time sessions may end after midnight; they are kept (the lake assigns a session to the day it started).
4. **Users.** Each subscriber has a fixed activity weight (gamma, shape ``user_activity_shape``, drawn once per
   ``(seed, users)``); a session's ``user_id`` is drawn from 1..users with those weights, so heavy viewers stay heavy
   across days and about half of the subscribers watch on a given day.
5. **Session id.** 128 random bits from the day's generator, as 32 lowercase hex digits.

Events are the session's ``enabled`` (start) and ``disabled`` (end) rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date as Date, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
import pyarrow as pa

from tv_platform.dates import as_date as _as_date
from tv_platform.simulator.reference import load_channels

EVENT_COLUMNS = ("session_id", "user_id", "channel_id", "timer", "status")
SESSION_COLUMNS = ("session_id", "user_id", "channel_id", "start", "end")
STATUSES = ("enabled", "disabled")
DAY_SECONDS = 86_400

# Seed of a day's generator: SeedSequence([seed, date.toordinal(), stream]). Stream 0 is "the" day (batch history and,
# by default, the live producer); other values give independent realisations of the same model.
BATCH_STREAM = 0
_ACTIVITY_TAG = 0x4143_5456  # "ACTV": users' activity weights


@dataclass(frozen=True)
class SimulationParams:
    """Parameters of the model. Defaults reproduce the seed's volumes at ``users=10_000``: a weekend day has 10 000
    sessions and ≈16 170 viewing hours (seed: 9 990 views, 16 169 h), a weekday ≈8 000 sessions and ≈12 930 h
    (seed: 7 964–8 017 views, 12 864–12 940 h)."""

    users: int = 10_000
    """Subscribers; user ids are 1..users. Volumes scale linearly with it."""
    seed: int = 42
    """Seed of everything random; (seed, date) fixes a day."""
    sessions_per_user: float = 1.0
    """Sessions per subscriber on a weekend day (seed: Σ int(viewers_rating × 100) = 9 995 for 10 000 users)."""
    weekday_keep: float = 0.8
    """Share of the weekend volume watched on Monday–Friday (seed: each session dropped with probability 1/5)."""
    prime_share: float = 0.8
    """Share of sessions centred on prime time (seed: 4 in 5)."""
    prime_hour: int = 20
    """Prime-time hour: prime sessions are centred on prime_hour:30 (seed: 20). Sessions are clipped to start on their
    day, so a prime_hour before ~4 piles the early part of the prime-time bump up at 00:00."""
    prime_spread_minutes: float = 40.0
    """Standard deviation of a prime session's midpoint around prime_hour:30 (seed: ≈ 25 min, uniform minute + rounding)."""
    mean_session_minutes: float = 97.0
    """Mean watch length over all channels (seed weekend days: 16 169 h / 9 990 views = 97.1 min)."""
    duration_shape: float = 2.0
    """Gamma shape of watch lengths around the channel mean (1 = exponential; larger = more regular)."""
    max_session_minutes: float = 16 * 60.0
    """Watch lengths are capped here."""
    user_activity_shape: float = 1.0
    """Gamma shape of the subscribers' activity weights (smaller = a few heavy viewers watch most)."""
    rating_path: str | None = None
    """Channel rating CSV (default: the package's tv_rating.csv)."""

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> ValueError:
            return ValueError(f"SimulationParams.{name} {why}, got {getattr(self, name)!r}")

        if isinstance(self.users, bool) or not isinstance(self.users, (int, np.integer)) or self.users < 1:
            raise bad("users", "must be a positive integer")
        if self.users > np.iinfo(np.int32).max:
            raise bad("users", "must fit in int32")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise bad("seed", "must be a non-negative integer")
        for name in ("weekday_keep", "prime_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise bad(name, "must be in [0, 1]")
        if not 0 <= self.prime_hour <= 23:
            raise bad("prime_hour", "must be in 0..23")
        for name in ("sessions_per_user", "prime_spread_minutes"):
            if not getattr(self, name) >= 0:
                raise bad(name, "must be >= 0")
        for name in ("mean_session_minutes", "duration_shape", "max_session_minutes", "user_activity_shape"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        if self.max_session_minutes >= 24 * 60:
            raise bad("max_session_minutes", "must be below 24 h")

    def replace(self, **changes) -> "SimulationParams":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_settings(cls, settings=None, **overrides) -> "SimulationParams":
        """Params from the platform settings (``TVP_SIM_USERS``, ``TVP_SIM_SEED``), with keyword overrides."""
        if settings is None:
            from tv_platform.settings import get_settings

            settings = get_settings()
        values = {"users": settings.sim_users, "seed": settings.sim_seed}
        values.update(overrides)
        return cls(**values)


# ---- reference arrays (cached; the model stays a pure function of its inputs) -------------------------------------

@dataclass(frozen=True)
class _Channels:
    ids: np.ndarray          # int32
    viewers_share: np.ndarray  # float64, sums to 1
    time_share: np.ndarray     # float64, sums to 1
    length_factor: np.ndarray  # mean length of channel / overall mean


@lru_cache(maxsize=8)
def _channels(rating_path: str | None) -> _Channels:
    ch = load_channels(rating_path) if rating_path else load_channels()
    v = ch["viewers_rating"].to_numpy(dtype=float)
    t = ch["time_rating"].to_numpy(dtype=float)
    vs, ts = v / v.sum(), t / t.sum()
    factor = np.divide(ts, vs, out=np.zeros_like(ts), where=vs > 0)  # Σ vs × factor = 1
    return _Channels(ch["channel_id"].to_numpy(dtype=np.int32), vs, ts, factor)


@lru_cache(maxsize=16)
def _weekend_counts(rating_path: str | None, total: int) -> np.ndarray:
    """``total`` sessions apportioned to the channels by the viewers share (largest remainder; ties by channel order)."""
    share = _channels(rating_path).viewers_share
    quota = share * total
    base = np.floor(quota).astype(np.int64)
    short = total - int(base.sum())
    if short > 0:
        base[np.argsort(-(quota - base), kind="stable")[:short]] += 1
    base.flags.writeable = False
    return base


@lru_cache(maxsize=4)
def _activity_cdf(seed: int, users: int, shape: float) -> np.ndarray:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), _ACTIVITY_TAG])))
    weights = rng.gamma(shape, 1.0, size=users)
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    cdf.flags.writeable = False
    return cdf


def expected_sessions(day, params: SimulationParams) -> float:
    """Expected number of sessions of ``day`` (exact on weekends)."""
    total = round(params.users * params.sessions_per_user)
    return total * (params.weekday_keep if _as_date(day).weekday() < 5 else 1.0)


# ---- one day ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Sessions:
    day: Date
    hex_ids: np.ndarray   # (n, 32) uint8, ASCII hex
    user_id: np.ndarray   # int32
    channel_id: np.ndarray  # int32
    start: np.ndarray     # int64 seconds since the day's midnight
    end: np.ndarray       # int64 seconds since the day's midnight (may exceed 86 400)

    def __len__(self) -> int:
        return len(self.start)

    @property
    def epoch(self) -> np.int64:
        return np.datetime64(self.day, "s").astype(np.int64)


_HEX_PAIRS = np.array([int.from_bytes(f"{i:02x}".encode(), "little") for i in range(256)], dtype="<u2")


def _hex_ids(rng: np.random.Generator, n: int) -> np.ndarray:
    """n random 128-bit ids as an (n, 32) array of ASCII hex digits."""
    raw = rng.bit_generator.random_raw(2 * n).astype("<u8", copy=False)
    return _HEX_PAIRS[raw.view(np.uint8)].view(np.uint8).reshape(n, 32)


def _draw_sessions(day, params: SimulationParams, stream: int = BATCH_STREAM) -> _Sessions:
    day = _as_date(day)
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(params.seed), day.toordinal(), int(stream)])))
    ch = _channels(params.rating_path)

    # 1. sessions per channel
    counts = _weekend_counts(params.rating_path, round(params.users * params.sessions_per_user))
    if day.weekday() < 5 and params.weekday_keep < 1.0:
        counts = rng.binomial(counts, params.weekday_keep)
    n = int(counts.sum())
    channel_id = np.repeat(ch.ids, counts)

    # 2. watch length (seconds)
    mean_s = np.repeat(ch.length_factor * (params.mean_session_minutes * 60.0), counts)
    length = rng.gamma(params.duration_shape, 1.0, size=n) * (mean_s / params.duration_shape)
    length = np.clip(np.rint(length), 1, params.max_session_minutes * 60.0).astype(np.int64)

    # 3. start (seconds since midnight)
    prime = rng.random(n) < params.prime_share
    centre = (params.prime_hour * 3600 + 1800) + rng.normal(0.0, params.prime_spread_minutes * 60.0, size=n)
    anytime = rng.random(n) * np.maximum(DAY_SECONDS - length, 0)
    start = np.where(prime, centre - length / 2.0, anytime)
    start = np.clip(np.floor(start), 0, DAY_SECONDS - 1).astype(np.int64)

    # 4. users, 5. ids
    # Searching sorted draws is ~2x faster (cache friendly); the permutation then hands them out at random, which is
    # the same distribution as searching unsorted draws.
    cdf = _activity_cdf(params.seed, params.users, params.user_activity_shape)
    picked = np.searchsorted(cdf, np.sort(rng.random(n)), side="right").astype(np.int32)
    user_id = picked[rng.permutation(n)]
    np.minimum(user_id + 1, params.users, out=user_id)
    hex_ids = _hex_ids(rng, n)
    return _Sessions(day, hex_ids, user_id, channel_id, start, start + length)


def _str_column(hex_ids: np.ndarray) -> pd.api.extensions.ExtensionArray:
    n = len(hex_ids)
    offsets = np.arange(0, 32 * (n + 1), 32, dtype=np.int32)
    data = np.ascontiguousarray(hex_ids)
    arrow = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))
    return pd.array(arrow, dtype="str")


def _status_column(disabled: np.ndarray) -> pd.api.extensions.ExtensionArray:
    arrow = pa.DictionaryArray.from_arrays(pa.array(disabled.astype(np.int8)), pa.array(STATUSES)).cast(pa.string())
    return pd.array(arrow, dtype="str")


def _stable_argsort(keys: np.ndarray) -> np.ndarray:
    """Stable argsort of non-negative int64 keys below 2**32 as two 16-bit radix passes (numpy radix-sorts 16-bit
    types only; this is ~4x faster than a stable sort of the int64 keys)."""
    low = (keys & 0xFFFF).astype(np.uint16)
    order = np.argsort(low, kind="stable")
    if keys.size and int(keys.max()) >= 1 << 16:
        high = (keys >> 16).astype(np.uint16)
        order = order[np.argsort(high[order], kind="stable")]
    return order


def _events(s: _Sessions) -> pd.DataFrame:
    n = len(s)
    times = np.concatenate([s.start, s.end])
    order = _stable_argsort(times)  # stable: a 0-length session's enabled row stays first
    disabled = order >= n
    idx = np.where(disabled, order - n, order)
    timer = (times[order] + s.epoch).astype("datetime64[s]")
    hex_rows = np.take(s.hex_ids.view(np.uint64), idx, axis=0).view(np.uint8)  # row gather, 4 words per id
    return pd.DataFrame({
        "session_id": _str_column(hex_rows),
        "user_id": s.user_id[idx],
        "channel_id": s.channel_id[idx],
        "timer": timer,
        "status": _status_column(disabled),
    })


def simulate_day(day, params: SimulationParams | None = None) -> pd.DataFrame:
    """The events of one day, sorted by ``timer`` (stable: enabled before disabled on ties).

    Columns: ``session_id`` str (32 hex), ``user_id`` int32, ``channel_id`` int32, ``timer`` datetime64[s],
    ``status`` str ('enabled' | 'disabled'). Every session started on ``day``; its disabled row may fall on the next
    day. ``day`` is a date, a datetime (its date is used) or an ISO string."""
    return _events(_draw_sessions(day, params or SimulationParams()))


def simulate_sessions(day, params: SimulationParams | None = None) -> pd.DataFrame:
    """The same day as ``simulate_day`` as one row per session: session_id, user_id, channel_id, start, end
    (datetime64[s]), in generation order (by channel, not by time)."""
    s = _draw_sessions(day, params or SimulationParams())
    epoch = s.epoch
    return pd.DataFrame({
        "session_id": _str_column(s.hex_ids),
        "user_id": s.user_id,
        "channel_id": s.channel_id,
        "start": (s.start + epoch).astype("datetime64[s]"),
        "end": (s.end + epoch).astype("datetime64[s]"),
    })


def simulate_range(start, days: int, params: SimulationParams | None = None) -> pd.DataFrame:
    """``days`` consecutive days from ``start`` as one event frame, sorted by ``timer`` (stable). Each day is exactly
    ``simulate_day`` of that day."""
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    first = _as_date(start)
    frames = [simulate_day(first + timedelta(days=d), params) for d in range(days)]
    if not frames:
        return simulate_day(first, params).iloc[:0]
    out = pd.concat(frames, ignore_index=True)
    # Each day is sorted; only the after-midnight tails of a day overlap the next one, so this is a cheap merge.
    order = np.argsort(out["timer"].to_numpy().view(np.int64), kind="stable")
    return out.take(order).reset_index(drop=True)


