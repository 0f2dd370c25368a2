"""Benchmark: landing under the real Dagster daemon — events/s from the first event produced to the last one landed.

    python bench/bench_landing_daemon.py [--events 1000000] [--rate R] [--plot FILE.png] [--users 100000] [--port 3123]
                                         [--brokers 3]

`bench_ingest.py` runs the sensor and the landing asset in its own processes; this one measures what an operator
gets: `dagster dev` (webserver + daemon, the platform's instance in PostgreSQL, `QueuedRunCoordinator` with three runs
at a time) with the Kafka sensor ticking every 15 s and every landing run started as its own process. It uses a fresh
topic and lake root (set through TVP_KAFKA_TOPIC / TVP_LAKE_ROOT for `dagster dev`), events dated a day beyond the
late-data horizon (so automation, which rebuilds days within it, stays out of it), and counts the landed events from the runs'
materializations. A burst (default) shows what one tick's wait and the run start-up cost; ``--rate`` produces at a
steady rate, as a live stream arrives, and shows whether landing keeps up (the drain time after the producer stops
stays about one tick and one run, however long it ran) and at what rate it lands in the steady state (the slope of
the landed events while the producer runs, and the lag at its start and end). ``--brokers 3`` runs it against a 3-broker KRaft cluster of
its own (RF 3, min.insync.replicas=2, free ports, a temporary state directory) instead of the stack's broker. Needs the local stack (`tv-platform stack up`) and a free port; results go to stdout — copy them
into docs/benchmarks.md with the date.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from datetime import date, timedelta
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rate", type=float, default=None, help="events/s to produce at (default: as fast as it goes)")
    ap.add_argument("--port", type=int, default=3123)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--plot", metavar="FILE.png", help="draw produced and landed events over time into FILE.png")
    ap.add_argument("--brokers", type=int, default=1, help="1: the stack's broker; 3: a cluster of its own")
    args = ap.parse_args()
    if args.brokers > 1:
        import tempfile

        from tv_platform.settings import get_settings
        from tv_platform.stack.kafka import own_kafka

        with tempfile.TemporaryDirectory(prefix="tvp-bench-kafka-") as tmp, \
                own_kafka(get_settings(), Path(tmp) / "state", brokers=args.brokers) as own:
            os.environ["TVP_KAFKA_BOOTSTRAP"] = own.kafka_bootstrap  # for this process and `dagster dev`
            get_settings.cache_clear()
            run(args)
    else:
        run(args)


def run(args) -> None:
    run_id = uuid.uuid4().hex[:6]
    os.environ["TVP_KAFKA_TOPIC"] = f"bench_daemon_{run_id}"
    os.environ["TVP_LAKE_ROOT"] = f"/bench/daemon_{run_id}/lake"

    import dagster as dg
    from tqdm import tqdm

    from cpu import CpuByRole
    from streams import busy_stream, land_reference_data
    from tv_platform.cli import dagster_env
    from tv_platform.demo import start_dagster, stop_dagster
    from tv_platform.engines.kafka import publish_frame
    from tv_platform.resources import kafka_resource
    from tv_platform.settings import get_settings

    settings = get_settings()
    for key, value in dagster_env().items():
        os.environ.setdefault(key, value)
    kafka = kafka_resource(settings)
    kafka.ensure_topic(partitions=args.partitions)
    land_reference_data(settings, args.users)
    # a day beyond the late-data horizon: automation does not rebuild it (no Spark runs side by side with landing)
    events, _ = busy_stream(date.today() - timedelta(days=settings.late_horizon_days + 2), args.users, args.events)

    ui = start_dagster(args.port)
    try:
        instance = dg.DagsterInstance.get()
        time.sleep(20)  # the daemon's first sensor tick: the topic is empty, the cursor starts
        t0 = time.time()
        producing: dict = {}

        def produce() -> None:
            producing["sent"] = publish_frame(kafka, events, rate=args.rate, progress=False)
            producing["s"] = time.time() - t0

        with CpuByRole() as cpu:  # every process on the machine, by role
            producer = threading.Thread(target=produce, daemon=True)
            producer.start()
            key = dg.AssetKey("tv_stream_snapshot")
            landed, last, runs, samples = 0, t0, set(), []
            bar = tqdm(total=len(events), unit="ev", desc="landed")
            deadline = time.monotonic() + args.timeout
            while (producer.is_alive() or landed < producing.get("sent", 0)) and time.monotonic() < deadline:
                time.sleep(1)
                records = instance.fetch_materializations(
                    dg.AssetRecordsFilter(asset_key=key, after_timestamp=t0), limit=1000).records
                mine = [r for r in records if r.asset_materialization.metadata["topic"].value == kafka.topic]
                landed = sum(r.asset_materialization.metadata["events_read"].value for r in mine)
                last = max((r.timestamp for r in mine), default=t0)
                runs = {r.run_id for r in mine}
                samples.append((time.time() - t0, sum(kafka.offsets()[1].values()), landed))
                bar.update(landed - bar.n)
            bar.close()
    finally:
        stop_dagster(ui)
    sent, produced_s = producing.get("sent", 0), producing.get("s", float("nan"))
    if not sent or landed < sent:
        raise SystemExit(f"only {landed:,} of {sent:,} events landed within {args.timeout:.0f} s")
    total_s = last - t0
    print(f"\nproduced {sent:,} events in {produced_s:.1f} s ({sent / produced_s:,.0f} events/s)")
    print(f"landed under the daemon: {landed:,} events in {len(runs)} runs, {total_s:.1f} s from the first event "
          f"produced to the last landed = {landed / total_s:,.0f} events/s (sensor every 15 s, "
          f"runs as processes, three at a time); the last landed {total_s - produced_s:.1f} s after the producer "
          "stopped")
    steady = steady_rate(samples, produced_s)
    if steady:
        print(f"steady state (runs overlapping ticks, while the producer ran): landed at {steady[0]:,.0f} events/s; "
              f"lag {steady[1]:,.0f} events at the first run landed, {steady[2]:,.0f} when the producer stopped")
    print(cpu.report(landed))
    if args.plot:
        plot(samples, args.rate, produced_s, args.plot)
        print(f"plot: {args.plot}")


def steady_rate(samples: list[tuple[float, int, int]], produced_s: float) -> tuple[float, int, int] | None:
    """Landing's rate once the pipeline is full: the slope of the landed events (a least-squares line) from the
    first run landed to the producer's stop, and the lag at both ends (flat: landing keeps up with the stream;
    growing: it does not). None when fewer than two runs landed while producing (a burst: see the whole time)."""
    import numpy as np

    during = [(t, p, n) for t, p, n in samples if t <= produced_s]
    first = next((i for i, (_, _, n) in enumerate(during) if n), None)
    if first is None or len({n for _, _, n in during[first:]}) < 2:
        return None
    t, produced, landed = (np.array(x, dtype=float) for x in zip(*during[first:]))
    slope = float(np.polyfit(t, landed, 1)[0])
    return slope, int(produced[0] - landed[0]), int(produced[-1] - landed[-1])


def plot(samples: list[tuple[float, int, int]], rate: float | None, produced_s: float, path: str) -> None:
    """Events in Kafka and events landed over time, and the lag between them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, produced, landed = (list(x) for x in zip(*samples))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, height_ratios=[2, 1])
    top.plot(t, [p / 1e6 for p in produced], label="in Kafka (produced)")
    top.step(t, [n / 1e6 for n in landed], where="post", label="landed in HDFS (runs finished)")
    top.axvline(produced_s, color="grey", linestyle=":", label="producer stops")
    top.set_ylabel("million events")
    top.set_title("Landing under the Dagster daemon" + (f" — stream at {rate / 1000:.0f} k events/s asked" if rate else ""))
    top.legend(loc="upper left")
    bottom.fill_between(t, [(p - n) / 1e6 for p, n in zip(produced, landed)], step="post", alpha=0.4)
    bottom.set_ylabel("lag, million events")
    bottom.set_xlabel("seconds since the first event was produced")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
