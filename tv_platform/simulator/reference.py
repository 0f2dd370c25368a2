"""Reference data of the simulator: the channel list with its two ratings, and the subscribers.

Channels
    ``tv_platform/data/tv_rating.csv`` is the rating table the original generator read (powernet.com.ru channel
    statistics): ``Место`` (rank), ``Телеканал`` (name), ``Рейтинг по времени просмотра %`` (share of the total
    viewing *time*) and ``Рейтинг по количеству зрителей %`` (share of the *viewers*). ``tv_platform/data/tv_channels.csv``
    is the channel dimension (``channel_id,channel_name``) that the lake and the marts join to.

    The two files list the same 148 names, but **not in the same order**: for 128 channels ``channel_id`` differs from
    the rank (e.g. id 8 is "5 Канал", rank 8 is "Россия 24"). The seed generator used the rank as the id; here the ids
    come from the dimension and the ratings are joined **by name**, so that every event's ``channel_id`` resolves, in the
    warehouse, to the channel whose rating produced it.

Users
    ``make_users`` names subscribers 1..n with Russian full names built from Faker's ``ru_RU`` person provider (its
    name-part lists and its weighted name formats, e.g. "Фамилия Имя Отчество" / "Имя Отчество Фамилия"). Calling
    ``Faker.name()`` once per user runs at ~90k names/s (11 s for a million users), so the default engine draws the
    format and the parts with numpy and joins them with pyarrow (≈1 s per million); ``engine="faker"`` is the literal
    per-user ``Faker.name()`` after ``Faker.seed_instance(seed)``, for small pools or exact fidelity to the seed.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
RATING_FILE = DATA_DIR / "tv_rating.csv"
CHANNELS_FILE = DATA_DIR / "tv_channels.csv"
N_CHANNELS = 148

RATING_COLUMNS = ("rank", "channel_name", "time_rating", "viewers_rating")
# Header of the original file, checked loosely (the generator read the columns by position).
RATING_HEADER_RU = ("Место", "Телеканал", "Рейтинг по времени просмотра %", "Рейтинг по количеству зрителей %")
# Each rating column is a percentage share; the file's sums are 100.01 and 99.99 (rounding).
RATING_SUM_TOLERANCE = 1.0

# Stream tag of the users' random draws (see model.py for the other tags).
_USERS_TAG = 0x5553_4552  # "USER"


def load_channels(rating_path: str | Path | None = None, channels_path: str | Path | None = None,
                  expected: int | None = N_CHANNELS) -> pd.DataFrame:
    """The channels with both ratings, ordered by ``channel_id``.

    Columns: ``channel_id`` int32, ``channel_name`` str, ``time_rating`` float64 (% of viewing time),
    ``viewers_rating`` float64 (% of viewers), ``rank`` int64 (``Место`` in the rating file).

    ``rating_path`` / ``channels_path`` default to the package data files. ``expected`` is the number of channels
    both files must have (``None``: any). Raises ``ValueError`` naming the file and the problem on a bad file.
    The default files are parsed once per process (the result is a fresh copy each call)."""
    rating = Path(rating_path) if rating_path is not None else RATING_FILE
    channels = Path(channels_path) if channels_path is not None else CHANNELS_FILE
    return _load_channels_cached(str(rating.resolve()), str(channels.resolve()), expected).copy()


@lru_cache(maxsize=8)
def _load_channels_cached(rating_path: str, channels_path: str, expected: int | None) -> pd.DataFrame:
    rating = _read_rating(Path(rating_path), expected)
    dim = _read_dimension(Path(channels_path), expected)
    missing = sorted(set(rating["channel_name"]) - set(dim["channel_name"]))
    extra = sorted(set(dim["channel_name"]) - set(rating["channel_name"]))
    if missing or extra:
        raise ValueError(f"{rating_path} and {channels_path} list different channels: "
                         f"only in the rating {missing[:5]}, only in the dimension {extra[:5]}")
    out = dim.merge(rating, on="channel_name", how="left", validate="one_to_one")
    out = out.sort_values("channel_id", kind="stable").reset_index(drop=True)
    out = out[["channel_id", "channel_name", "time_rating", "viewers_rating", "rank"]]
    return out


def _fail(path: Path, problem: str) -> ValueError:
    return ValueError(f"bad channel rating file {path}: {problem}")


def _read_rating(path: Path, expected: int | None) -> pd.DataFrame:
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        raw = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise _fail(path, "empty file") from exc
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise _fail(path, f"not a UTF-8 CSV ({exc})") from exc
    if raw.shape[1] != 4:
        raise _fail(path, f"expected 4 columns {RATING_HEADER_RU}, got {raw.shape[1]}: {list(raw.columns)}")
    header = tuple(str(c).strip() for c in raw.columns)
    if header != RATING_HEADER_RU and header != RATING_COLUMNS:
        raise _fail(path, f"unexpected header {header}; expected {RATING_HEADER_RU}")
    raw.columns = list(RATING_COLUMNS)
    if expected is not None and len(raw) != expected:
        raise _fail(path, f"expected {expected} channels, got {len(raw)}")
    if len(raw) == 0:
        raise _fail(path, "no channels")
    df = pd.DataFrame({"channel_name": raw["channel_name"].str.strip()})
    if (df["channel_name"] == "").any():
        raise _fail(path, f"empty channel name on line(s) {_lines(df['channel_name'] == '')}")
    for col in ("rank", "time_rating", "viewers_rating"):
        values = pd.to_numeric(raw[col].str.strip(), errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            raise _fail(path, f"column {col!r} is not numeric on line(s) {_lines(bad)}: "
                              f"{raw.loc[bad, col].head(3).tolist()}")
        if (values < 0).any():
            raise _fail(path, f"column {col!r} is negative on line(s) {_lines(values < 0)}")
        df[col] = values.astype(float)
    if (df["rank"] != df["rank"].round()).any():
        raise _fail(path, "rank (Место) must be an integer")
    df["rank"] = df["rank"].astype("int64")
    for col in ("rank", "channel_name"):
        dup = df[col].duplicated(keep=False)
        if dup.any():
            raise _fail(path, f"duplicate {col}: {sorted(df.loc[dup, col].astype(str).unique())[:5]}")
    for col in ("time_rating", "viewers_rating"):
        total = float(df[col].sum())
        if abs(total - 100.0) > RATING_SUM_TOLERANCE:
            raise _fail(path, f"{col} is a percentage share and must sum to 100 ± {RATING_SUM_TOLERANCE}, "
                              f"sums to {total:.2f}")
    orphan = (df["viewers_rating"] == 0) & (df["time_rating"] > 0)
    if orphan.any():
        raise _fail(path, f"viewing time without viewers (viewers_rating 0, time_rating > 0): "
                          f"{df.loc[orphan, 'channel_name'].tolist()[:5]}")
    return df[["channel_name", "time_rating", "viewers_rating", "rank"]]


def _read_dimension(path: Path, expected: int | None) -> pd.DataFrame:
    if not path.is_file():
        raise ValueError(f"bad channel dimension file {path}: no such file")
    try:
        raw = pd.read_csv(path, encoding="utf-8", dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"bad channel dimension file {path}: empty file") from exc
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ValueError(f"bad channel dimension file {path}: not a UTF-8 CSV ({exc})") from exc
    if list(raw.columns) != ["channel_id", "channel_name"]:
        raise ValueError(f"bad channel dimension file {path}: header must be channel_id,channel_name, "
                         f"got {list(raw.columns)}")
    ids = pd.to_numeric(raw["channel_id"], errors="coerce")
    if ids.isna().any() or (ids != ids.round()).any() or (ids <= 0).any():
        raise ValueError(f"bad channel dimension file {path}: channel_id must be positive integers "
                         f"(line(s) {_lines(ids.isna() | (ids <= 0))})")
    out = pd.DataFrame({"channel_id": ids.astype("int32"), "channel_name": raw["channel_name"].str.strip()})
    if expected is not None and len(out) != expected:
        raise ValueError(f"bad channel dimension file {path}: expected {expected} channels, got {len(out)}")
    for col in ("channel_id", "channel_name"):
        dup = out[col].duplicated(keep=False)
        if dup.any():
            raise ValueError(f"bad channel dimension file {path}: duplicate {col}: "
                             f"{sorted(out.loc[dup, col].astype(str).unique())[:5]}")
    return out


def _lines(mask: pd.Series) -> list[int]:
    """1-based file line numbers (the header is line 1) of the rows in ``mask``, at most five."""
    return [int(i) + 2 for i in np.flatnonzero(np.asarray(mask))[:5]]


# ---- users -----------------------------------------------------------------------------------------------------

def make_users(n_users: int, seed: int = 42, engine: Literal["parts", "faker"] = "parts") -> pd.DataFrame:
    """Subscribers ``user_id`` 1..n_users (int32) with a Russian full ``user_name`` (str).

    Deterministic for ``(n_users, seed, engine)``; with the default ``engine="parts"`` it is also *prefix stable*:
    ``make_users(n)`` is the first n rows of ``make_users(m)`` for any m > n, so growing the subscriber base never
    renames existing users.

    ``engine="parts"`` (default, ~1 s per million users): Faker ``ru_RU`` name formats and part lists, drawn with
    numpy (one independent stream per attribute, seeded from ``seed``) and joined with pyarrow.
    ``engine="faker"``: ``Faker('ru_RU')`` seeded with ``Faker.seed_instance(seed)``, one ``name()`` per user — the
    seed generator's exact method, ~90k names/s."""
    if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 0:
        raise ValueError(f"n_users must be a non-negative integer, got {n_users!r}")
    n = int(n_users)
    ids = np.arange(1, n + 1, dtype=np.int32)
    if engine == "faker":
        from faker import Faker

        fake = Faker("ru_RU")
        fake.seed_instance(seed)
        names = pd.array([fake.name() for _ in range(n)], dtype="str")
    elif engine == "parts":
        names = _names_from_parts(n, seed)
    else:
        raise ValueError(f"engine must be 'parts' or 'faker', got {engine!r}")
    return pd.DataFrame({"user_id": ids, "user_name": names})


@lru_cache(maxsize=1)
def _faker_name_model() -> tuple[list[list[str]], np.ndarray, dict[str, tuple[str, ...]]]:
    """Faker ru_RU's person formats as token lists, their cumulative weights, and the part lists per token."""
    import re

    from faker import Faker

    fake = Faker("ru_RU")
    provider = next(p for p in fake.providers if type(p).__module__.startswith("faker.providers.person"))
    formats = provider.formats
    if isinstance(formats, dict):
        patterns, weights = list(formats.keys()), np.array(list(formats.values()), dtype=float)
    else:
        patterns, weights = list(formats), np.ones(len(formats))
    token_lists: list[list[str]] = []
    parts: dict[str, tuple[str, ...]] = {}
    for pattern in patterns:
        tokens = re.findall(r"{{\s*(\w+)\s*}}", pattern)
        if re.sub(r"{{\s*\w+\s*}}", "", pattern).strip(" ") != "":
            raise RuntimeError(f"unsupported Faker name format {pattern!r}")
        for token in tokens:
            attr = token.replace("_name_", "_names_").replace("prefix_", "prefixes_")
            values = getattr(provider, attr, None)
            if not values:
                raise RuntimeError(f"Faker ru_RU provider has no list {attr!r} for token {token!r}")
            parts[token] = tuple(values.keys() if isinstance(values, dict) else values)
        token_lists.append(tokens)
    cdf = np.cumsum(weights) / weights.sum()
    return token_lists, cdf, parts


def _names_from_parts(n: int, seed: int):
    import pyarrow as pa
    import pyarrow.compute as pc

    formats, cdf, parts = _faker_name_model()
    max_tokens = max(len(t) for t in formats)
    # One stream for the format and one per token slot: each is consumed one double per user, in user order, so the
    # first k users never depend on n.
    streams = [np.random.Generator(np.random.PCG64(s))
               for s in np.random.SeedSequence([int(seed), _USERS_TAG]).spawn(1 + max_tokens)]
    fmt = np.searchsorted(cdf, streams[0].random(n), side="right").clip(0, len(formats) - 1)
    slots = [s.random(n) for s in streams[1:]]
    pools = {token: pa.array(values, type=pa.string()) for token, values in parts.items()}
    out = [None] * len(formats)
    order = []
    for f, tokens in enumerate(formats):
        rows = np.flatnonzero(fmt == f)
        order.append(rows)
        columns = []
        for k, token in enumerate(tokens):
            pool = pools[token]
            idx = np.minimum((slots[k][rows] * len(pool)).astype(np.int64), len(pool) - 1)
            columns.append(pool.take(pa.array(idx)))
        out[f] = pc.binary_join_element_wise(*columns, " ") if columns else pa.nulls(len(rows), pa.string())
    names = pa.concat_arrays(out)
    inverse = np.empty(n, dtype=np.int64)
    inverse[np.concatenate(order) if order else np.array([], dtype=np.int64)] = np.arange(n)
    return pd.array(names.take(pa.array(inverse)), dtype="str") if n else pd.array([], dtype="str")
