"""Benchmark: one day's partition of the lake, raw CSV -> Hive -> sessions -> the six aggregates, at growing scale.

    python bench/bench_lake.py [--users 10000 100000 1000000] [--day 2023-09-23] [--seed 42] [--keep]

For each number of users the simulator makes the day before, the day and the day after (history, ``tv_dataset``) and
they are written to the lake as CSV per the layout, under a lake root and a Hive database of this run only (dropped at
the end unless --keep). Then, through ``dg.materialize`` with the real resources on the stack's Spark Connect server:

    register    hive_channels, hive_users, hive_tv_dataset/hive_tv_stream for D-1, D, D+1
    warm-up     viewing_sessions of D-1 (so that D's in-day aggregates have the sessions carried over midnight)
    sessions    viewing_sessions + session_anomalies of D (reads raw D-1..D+1 of both sources)
    aggregates  daily_viewing, channel_rating, hourly_activity, channel_weekday_hour, duration_histogram,
                user_activity of D (one run, steps in sequence; per-step times from the event log)

Wall times are per stage; "raw -> aggregates" = register + sessions + aggregates of D. Peak memory is the resident
size of the Spark Connect server's process group (polled every 0.2 s; the JVM keeps what it grew to, so a stage's
peak includes earlier stages') and of this client. Needs the local stack (`tv-platform stack up hdfs spark`).
Results go to stdout — copy them into docs/lake.md with the date.
"""

import argparse
import resource
import threading
import time
import uuid
from datetime import date, timedelta

import dagster as dg
import pandas as pd
from tqdm import tqdm


class PeakSampler:
    """Polls a function returning MiB in a thread and keeps the maximum since the last reset."""

    def __init__(self, sample, every: float = 0.2):
        self.sample, self.every = sample, every
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.sample())
            except Exception:  # noqa: BLE001 - a vanished process reads as nothing
                pass
            time.sleep(self.every)

    def reset(self) -> float:
        value = self.sample()
        self.peak = value
        return value

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Wall time of each step of a run, from its event log."""
    starts, out = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not ev.step_key:
            continue
        if ev.event_type_value == "STEP_START":
            starts[ev.step_key] = entry.timestamp
        elif ev.event_type_value == "STEP_SUCCESS" and ev.step_key in starts:
            out[ev.step_key] = entry.timestamp - starts[ev.step_key]
    return out


def prepare_lake(fs, root: str, day: date, users: int, seed: int, progress: tqdm) -> dict[str, int]:
    """Simulated history of D-1..D+1 and the reference data, written as the ingest layer writes them."""
    from tv_platform.engines.hdfs import frame_to_csv_bytes
    from tv_platform.simulator.model import SimulationParams, simulate_day
    from tv_platform.simulator.reference import load_channels, make_users

    counts = {}
    params = SimulationParams(users=users, seed=seed)
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        progress.set_postfix_str(f"simulate {d}")
        events = simulate_day(d, params)
        counts[d.isoformat()] = len(events)
        progress.set_postfix_str(f"write {d}: {len(events):,} events")
        fs.write_bytes(f"{root}/raw/tv_dataset/dt={d.isoformat()}/events.csv", frame_to_csv_bytes(events))
    channels = load_channels()[["channel_id", "channel_name", "time_rating", "viewers_rating", "rank"]]
    fs.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(channels))
    fs.write_bytes(f"{root}/reference/users/users.csv", frame_to_csv_bytes(make_users(users, seed)))
    return counts


def bench_one(users: int, args, settings, server_mb, fs) -> dict:
    from tv_platform.assets import lake as L
    from tv_platform.engines.spark import HiveIOManager, HiveResource

    suffix = uuid.uuid4().hex[:6]
    root = f"/tv_platform_bench_{suffix}"
    hive = HiveResource(spark_remote=settings.spark_remote, database=f"tv_bench_{suffix}", lake_url=settings.hdfs_url,
                        lake_root=root, webhdfs_url=settings.webhdfs_url, hdfs_user=settings.hdfs_user)
    resources = {"hive": hive, "hive_io_manager": HiveIOManager(
        spark_remote=settings.spark_remote, database=hive.database, database_location=hive.resolved_database_location())}
    day = date.fromisoformat(args.day)
    d, prev, nxt = day.isoformat(), (day - timedelta(days=1)).isoformat(), (day + timedelta(days=1)).isoformat()
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    row: dict = {"users": users}
    stages = ["prepare", "register", "warm-up", "sessions", "aggregates"]
    with tqdm(total=len(stages), desc=f"{users:>9,} users", unit="stage", leave=True) as bar, \
            PeakSampler(server_mb) as sampler:
        try:
            t0 = time.monotonic()
            counts = prepare_lake(fs, root, day, users, args.seed, bar)
            row["events_D"] = counts[d]
            row["prepare_s"] = time.monotonic() - t0
            bar.update()

            def run(assets, partition_key=None, selection=None):
                result = dg.materialize(assets, partition_key=partition_key, selection=selection,
                                        resources=resources, instance=instance, run_config=quiet)
                assert result.success
                return result

            row["server_mb_before"] = sampler.reset()
            t0 = time.monotonic()
            bar.set_postfix_str("register")
            run([L.hive_channels, L.hive_users])
            for p in (prev, d, nxt):
                run([L.hive_tv_dataset, L.hive_tv_stream], p)
            row["register_s"] = time.monotonic() - t0
            bar.update()

            bar.set_postfix_str(f"sessions {prev}")
            t0 = time.monotonic()
            run([L.sessionize_assets], prev)
            row["warmup_s"] = time.monotonic() - t0
            bar.update()

            bar.set_postfix_str(f"sessions {d}")
            t0 = time.monotonic()
            res = run([L.sessionize_assets], d)
            row["sessions_s"] = time.monotonic() - t0
            mat = [e.materialization for e in res.get_asset_materialization_events()
                   if e.materialization.asset_key == dg.AssetKey("viewing_sessions")][0]
            row["sessions"] = mat.metadata["rows"].value
            bar.update()

            bar.set_postfix_str(f"aggregates {d}")
            t0 = time.monotonic()
            res = run([L.sessionize_assets, *L.AGGREGATES], d, selection=L.AGGREGATES)
            row["aggregates_s"] = time.monotonic() - t0
            row["steps"] = step_seconds(instance, res.run_id)
            bar.update()
            row["raw_to_aggregates_s"] = row["register_s"] + row["sessions_s"] + row["aggregates_s"]
            row["server_peak_mb"] = sampler.peak
            row["client_peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            dv = hive.catalog().read("daily_viewing", [d]).toPandas().iloc[0]
            row["views"], row["hours_by_start"] = int(dv["views"]), float(dv["hours_by_start"])
        finally:
            if not args.keep:
                try:
                    hive.catalog().drop_database()
                finally:
                    fs.delete(root)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--day", default="2023-09-23", help="the partition D (a Saturday: the heavier weekend volume)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--keep", action="store_true", help="keep the bench database and lake files")
    args = ap.parse_args()

    from tv_platform.engines.hdfs import lake_fs
    from tv_platform.settings import get_settings
    from tv_platform.stack.spark import SparkConnectService

    settings = get_settings()
    service = SparkConnectService(settings)
    if not service.running():
        raise SystemExit("the Spark Connect server of the stack is not running: tv-platform stack up hdfs spark")
    fs = lake_fs(settings)
    rows = [bench_one(n, args, settings, service.memory_mb, fs) for n in args.users]

    print(f"\nlake bench {time.strftime('%Y-%m-%d')}: day {args.day}, history only, Spark Connect local[2], "
          f"driver {settings.spark_driver_memory}, shuffle partitions {settings.spark_shuffle_partitions}\n")
    table = pd.DataFrame([{
        "users": f"{r['users']:,}",
        "events D": f"{r['events_D']:,}",
        "sessions D": f"{r['sessions']:,}",
        "register s": f"{r['register_s']:.1f}",
        "sessions s": f"{r['sessions_s']:.1f}",
        "aggregates s": f"{r['aggregates_s']:.1f}",
        "raw->aggregates s": f"{r['raw_to_aggregates_s']:.1f}",
        "server RSS MiB (before -> peak)": f"{r['server_mb_before']:.0f} -> {r['server_peak_mb']:.0f}",
        "client peak MiB": f"{r['client_peak_mb']:.0f}",
    } for r in rows])
    try:
        print(table.to_markdown(index=False))
    except ImportError:  # tabulate is optional
        print(table.to_string(index=False))
    print("\nper aggregate step (s):")
    steps = pd.DataFrame({f"{r['users']:,}": r["steps"] for r in rows}).round(1)
    print(steps.to_string())
    base = rows[0]
    for r in rows[1:]:
        ratio = r["raw_to_aggregates_s"] / base["raw_to_aggregates_s"]
        print(f"{r['users'] / base['users']:.0f}x users -> {ratio:.1f}x time")
    for r in rows:
        print(f"check {r['users']:,} users: views {r['views']:,}, hours by start {r['hours_by_start']:,.0f}")


if __name__ == "__main__":
    main()
