"""Benchmark: producer events/s into the local Kafka, and sensor-to-HDFS landing events/s.

    python bench/bench_ingest.py [--events 200000] [--users 100000] [--runners 2]

Needs the local stack (`tv-platform stack up`). Uses a fresh topic per run; results go to stdout — copy them into
docs/benchmarks.md with the date.

* producer: ``publish_frame`` (JSON built column-wise, murmur2 partitions computed up front, record batches built
  column-wise and sent as Produce requests), ``acks=all``;
* landing: one sensor tick (it reads every new message once, with the range reader, to cut the offset ranges by
  event date), then the
  landing runs it requests — first one after the other in this process, then again (a re-run: the same files are
  rewritten) with ``--runners`` runs at a time in separate processes, as the Dagster daemon launches them;
* sustained landing (``--sustained N``): N more events produced, then ticks and runs overlapping as under the daemon —
  a tick hands its runs to ``--runners`` worker processes and the next tick reads on while they land — until all N
  are landed.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import date

import dagster as dg


def _land(args) -> int:
    """One landing run (in a worker process): the number of events it landed."""
    from tv_platform.assets import ingest
    from tv_platform.resources import kafka_resource, lake_resource
    from tv_platform.settings import get_settings

    topic, partition_key, run_config = args
    kafka, lake = kafka_resource(get_settings()).with_topic(topic), lake_resource(get_settings())
    res = dg.materialize([ingest.tv_stream_snapshot], partition_key=partition_key, run_config=run_config,
                         resources={"kafka": kafka, "lake": lake}, instance=dg.DagsterInstance.ephemeral(),
                         raise_on_error=True)
    return res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata["events_landed"].value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runners", type=int, default=2, help="landing runs at a time for the parallel measurement")
    ap.add_argument("--sustained", type=int, default=0, metavar="N",
                    help="also measure overlapping ticks and runs over N more events (e.g. 600000)")
    args = ap.parse_args()

    from streams import busy_stream, land_reference_data
    from tv_platform.engines.kafka import publish_frame
    from tv_platform.resources import kafka_resource, lake_resource
    from tv_platform.sensors import kafka_events_sensor
    from tv_platform.settings import get_settings

    settings = get_settings()
    kafka = kafka_resource(settings).with_topic(f"bench_{uuid.uuid4().hex[:6]}")
    kafka.ensure_topic(partitions=args.partitions)
    land_reference_data(settings, args.users)
    events, seed = busy_stream(date(2023, 10, 10), args.users, args.events)
    t0 = time.monotonic()
    sent = publish_frame(kafka, events)
    produce_s = time.monotonic() - t0

    t0 = time.monotonic()
    instance = dg.DagsterInstance.ephemeral()
    result = kafka_events_sensor(dg.build_sensor_context(instance=instance, resources={"kafka": kafka, "lake": lake_resource(settings)}))
    tick_s = time.monotonic() - t0
    jobs = [(kafka.topic, rr.partition_key, rr.run_config) for rr in result.run_requests]

    t0 = time.monotonic()
    landed = sum(_land(job) for job in jobs)
    serial_s = time.monotonic() - t0

    t0 = time.monotonic()
    with ProcessPoolExecutor(args.runners, mp_context=mp.get_context("fork")) as pool:
        landed_again = sum(pool.map(_land, jobs))
    parallel_s = time.monotonic() - t0
    assert landed_again == landed, (landed, landed_again)

    print(f"\nproducer: {sent:,} events in {produce_s:.1f} s = {sent / produce_s:,.0f} events/s "
          f"(acks=all, JSON, {args.partitions} partitions)")
    print(f"sensor tick: {tick_s:.1f} s for {len(jobs)} run requests = {sent / tick_s:,.0f} events/s read and dated")
    print(f"landing runs one by one: {landed:,} events in {serial_s:.1f} s = {landed / serial_s:,.0f} events/s; "
          f"with the tick: {landed / (tick_s + serial_s):,.0f} events/s")
    print(f"landing runs {args.runners} at a time: {parallel_s:.1f} s = {landed / parallel_s:,.0f} events/s; "
          f"with the tick: {landed / (tick_s + parallel_s):,.0f} events/s")

    if args.sustained:
        more, _ = busy_stream(date(2023, 10, 10), args.users, args.sustained, first_seed=seed)
        publish_frame(kafka, more, progress=False)
        cursor, ticks, futures = result.cursor, 0, []
        t0 = time.monotonic()
        with ProcessPoolExecutor(args.runners, mp_context=mp.get_context("fork")) as pool:
            while True:
                tick = kafka_events_sensor(dg.build_sensor_context(instance=instance, resources={"kafka": kafka, "lake": lake_resource(settings)},
                                                                    cursor=cursor))
                cursor, ticks = tick.cursor, ticks + 1
                new = tick.run_requests  # (no retries: the runs are not recorded in this instance, so stay pending)
                if not new:
                    break
                futures += [pool.submit(_land, (kafka.topic, rr.partition_key, rr.run_config)) for rr in new]
            landed_more = sum(f.result() for f in futures)
        sustained_s = time.monotonic() - t0
        print(f"sustained (ticks overlapping {args.runners} runs at a time): {landed_more:,} events in "
              f"{sustained_s:.1f} s over {ticks} ticks = {landed_more / sustained_s:,.0f} events/s")


if __name__ == "__main__":
    main()
