"""Benchmark: producer events/s into the local Kafka, and sensor-to-HDFS landing events/s.

    python bench/bench_ingest.py [--events 200000] [--users 100000]

Needs the local stack (`tv-platform stack up`). Uses a fresh topic per run; results go to stdout — copy them into
docs/benchmarks.md with the date.
"""

from __future__ import annotations

import argparse
import time
import uuid
from datetime import date

import dagster as dg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args()

    from tv_platform.assets import ingest
    from tv_platform.engines.kafka import publish
    from tv_platform.resources import hdfs_io_manager, kafka_resource, lake_resource
    from tv_platform.sensors import kafka_events_sensor
    from tv_platform.settings import get_settings
    from tv_platform.simulator.live import live_events
    from tv_platform.simulator.model import SimulationParams

    settings = get_settings()
    kafka = kafka_resource(settings).with_topic(f"bench_{uuid.uuid4().hex[:6]}")
    kafka.ensure_topic(partitions=args.partitions)
    lake = lake_resource(settings)
    dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": hdfs_io_manager(settings)},
                   run_config={"ops": {"users": {"config": {"users": args.users}}}})

    events = list(live_events(date(2023, 10, 10), SimulationParams(users=args.users), count=args.events))
    t0 = time.monotonic()
    sent = publish(kafka, events, total=len(events))
    produce_s = time.monotonic() - t0

    t0 = time.monotonic()
    instance = dg.DagsterInstance.ephemeral()
    result = kafka_events_sensor(dg.build_sensor_context(instance=instance, resources={"kafka": kafka}))
    tick_s = time.monotonic() - t0
    landed = 0
    for rr in result.run_requests:
        res = dg.materialize([ingest.tv_stream_snapshot], partition_key=rr.partition_key, run_config=rr.run_config,
                             resources={"kafka": kafka, "lake": lake}, instance=instance)
        landed += res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata["events_landed"].value
    land_s = time.monotonic() - t0

    print(f"\nproducer: {sent:,} events in {produce_s:.1f} s = {sent / produce_s:,.0f} events/s (acks=all, JSON)")
    print(f"sensor tick: {tick_s:.1f} s for {len(result.run_requests)} run requests")
    print(f"landing (tick + runs, in-process): {landed:,} events in {land_s:.1f} s = {landed / land_s:,.0f} events/s")


if __name__ == "__main__":
    main()
