"""Benchmark: the audience measures of one broadcast day (channel × daypart, programme airings, series), this
revision against a yardstick revision's ``tv_platform/lake/aggregates.py``, in one run on the same lake tables.

    .venv/bin/python bench/bench_audience.py                      # 10,000 subscribers, yardstick 7089e6f
    .venv/bin/python bench/bench_audience.py --users 10000 100000 --baseline HEAD~3 --repeat 3

For each number of subscribers the simulator makes D-1, D and D+1 (history) and the guide of D and D+1; they go to a
lake root and Hive database of this run only (dropped at the end unless --keep) and are materialized as a user would:
the raw tables, the sessions of the three days, the guide, then ``audience_daily`` of D (its universe and credited
minutes are what both revisions start from). Then, on the stack's Spark Connect server, each revision computes
``audience_channel``, ``audience_programme`` and ``audience_series`` of D to pandas, one after the other, ``--repeat``
times (the best is reported): the yardstick as it was (each output from the minutes), this revision as the asset
does it (the day's minutes cut into viewing pieces once, shared by the three). The outputs must be equal — the bench
fails otherwise. Needs the local stack (`tv-platform stack up hdfs spark`). Results go to stdout — copy them into
docs/benchmarks.md with the date.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def baseline_module(rev: str):
    """``tv_platform/lake/aggregates.py`` as it was at ``rev``, importable beside this revision's."""
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:tv_platform/lake/aggregates.py"],
                            check=True, capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="tvp_bench_")) / "baseline_aggregates.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("baseline_aggregates", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outputs(A, minutes, universe, guide, cal, threshold, d, shared: bool) -> tuple[dict[str, pd.DataFrame], dict]:
    """The three outputs of day ``d`` to pandas and the seconds of each (``pieces`` = cutting the day once)."""
    seconds, out = {}, {}
    extra = {}
    if shared:
        t0 = time.monotonic()
        extra = {"pieces": A.viewing_pieces(minutes).localCheckpoint()}
        seconds["pieces"] = time.monotonic() - t0
    t0 = time.monotonic()
    out["audience_channel"] = A.audience_channel(minutes, universe, cal, threshold, d, **extra).toPandas()
    seconds["audience_channel"] = time.monotonic() - t0
    t0 = time.monotonic()
    programmes = A.audience_programme(minutes, universe, guide, cal, threshold, d, **extra)
    out["audience_programme"] = programmes.toPandas()
    seconds["audience_programme"] = time.monotonic() - t0
    t0 = time.monotonic()
    out["audience_series"] = A.audience_series(programmes.localCheckpoint(), minutes, universe, threshold, d,
                                               **extra).toPandas()
    seconds["audience_series"] = time.monotonic() - t0
    return out, seconds


def same(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if sorted(a.columns) != sorted(b.columns) or len(a) != len(b):
        return False
    cols = sorted(a.columns)
    keys = [c for c in cols if a[c].dtype == object or str(a[c].dtype).startswith(("int", "Int", "str", "bool"))]
    a, b = (f[cols].sort_values(keys).reset_index(drop=True) for f in (a, b))
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9)
        return True
    except AssertionError:
        return False


def bench_one(users: int, args, settings, fs, baseline) -> list[dict]:
    from bench_lake import prepare_lake
    from tv_platform.assets import analytics as AN
    from tv_platform.assets import lake as L
    from tv_platform.assets import programmes as P
    from tv_platform.engines.hdfs import HdfsCsvIOManager
    from tv_platform.engines.spark import HiveIOManager, HiveResource
    from tv_platform.lake import aggregates as A
    from tv_platform.lake.calendar import BroadcastCalendar

    suffix = uuid.uuid4().hex[:6]
    root = f"/tv_platform_bench_{suffix}"
    hive = HiveResource(spark_remote=settings.spark_remote, database=f"tv_bench_{suffix}", lake_url=settings.hdfs_url,
                        lake_root=root, webhdfs_url=settings.webhdfs_url, hdfs_user=settings.hdfs_user)
    resources = {"hive": hive, "hive_io_manager": HiveIOManager(
        spark_remote=settings.spark_remote, database=hive.database, database_location=hive.resolved_database_location()),
        "hdfs_io_manager": HdfsCsvIOManager(hdfs_url=settings.hdfs_url, webhdfs_url=settings.webhdfs_url,
                                            user=settings.hdfs_user, lake_root=root)}
    day = date.fromisoformat(args.day)
    d = day.isoformat()
    around = [(day + timedelta(days=k)).isoformat() for k in (-1, 0, 1)]
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    rows = []

    def run(assets, partition_key=None, selection=None):
        result = dg.materialize(assets, partition_key=partition_key, selection=selection, resources=resources,
                                instance=instance, run_config=quiet)
        assert result.success
        return result

    with tqdm(total=3 + 2 * args.repeat, desc=f"{users:>9,} users", unit="step") as bar:
        try:
            prepare_lake(fs, root, day, users, args.seed, bar)
            bar.update()
            bar.set_postfix_str("lake")
            run([L.hive_channels, L.hive_users])
            for p in around:
                run([L.hive_tv_dataset, L.hive_tv_stream], p)
                run([L.sessionize_assets], p)
            for g in around[1:]:
                run([P.programme_guide, P.hive_programme_guide], g)
            bar.update()
            bar.set_postfix_str(f"audience_daily {d}")
            run([L.sessionize_assets, AN.audience_daily], d, selection=[AN.audience_daily])
            bar.update()
            cat = hive.catalog()
            cal = BroadcastCalendar.from_settings(settings)
            minutes = cat.read("audience_minutes", [d]).localCheckpoint()
            universe = cat.read("audience_universe", [d]).localCheckpoint()
            guide = cat.read("programme_guide", around[1:]).localCheckpoint()
            n_minutes = minutes.count()
            best: dict[str, dict[str, float]] = {"yardstick": {}, "this": {}}
            results = {}
            for _ in range(args.repeat):
                for name, module, shared in (("yardstick", baseline, False), ("this", A, True)):
                    bar.set_postfix_str(name)
                    out, seconds = outputs(module, minutes, universe, guide, cal, settings.reach_threshold_minutes,
                                           d, shared)
                    results[name] = out
                    for k, v in seconds.items():
                        best[name][k] = min(v, best[name].get(k, v))
                    bar.update()
            differ = [k for k in results["this"] if not same(results["this"][k], results["yardstick"][k])]
            if differ:
                raise SystemExit(f"{users:,} users: the outputs differ from the yardstick's: {differ}")
            for name in ("yardstick", "this"):
                rows.append({"users": users, "credited minutes": n_minutes, "revision": name, **best[name],
                             "total": sum(best[name].values())})
        finally:
            if not args.keep:
                try:
                    hive.catalog().drop_database()
                finally:
                    fs.delete(root)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, nargs="+", default=[10_000])
    ap.add_argument("--day", default="2023-09-23", help="the broadcast day D")
    ap.add_argument("--baseline", default="7089e6f", help="the yardstick revision (7089e6f: before the pieces)")
    ap.add_argument("--repeat", type=int, default=2, help="times each revision computes the day (best reported)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the bench database and lake files")
    args = ap.parse_args()

    from tv_platform.engines.hdfs import lake_fs
    from tv_platform.settings import get_settings
    from tv_platform.stack.spark import SparkConnectService

    settings = get_settings()
    if not SparkConnectService(settings).running():
        raise SystemExit("the Spark Connect server of the stack is not running: tv-platform stack up hdfs spark")
    baseline = baseline_module(args.baseline)
    rows = [r for n in args.users for r in bench_one(n, args, settings, lake_fs(settings), baseline)]
    print(f"\naudience bench {time.strftime('%Y-%m-%d %H:%M')}: broadcast day {args.day} "
          f"(start {settings.broadcast_day_start}), reach threshold {settings.reach_threshold_minutes} min, "
          f"yardstick {args.baseline}, best of {args.repeat}; outputs equal\n")
    order = ["users", "credited minutes", "revision", "pieces", "audience_channel", "audience_programme",
             "audience_series", "total"]
    table = pd.DataFrame(rows).reindex(columns=order).fillna(0.0)
    cells = [[f"{v:.1f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v) for v in r]
             for r in table.itertuples(index=False)]
    print("| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns))
    for r in cells:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
