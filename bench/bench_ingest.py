"""Benchmark: producer events/s into Kafka, and sensor-to-HDFS landing events/s — on the stack's single broker and on
a 3-broker KRaft cluster of its own (RF 3, min.insync.replicas=2), side by side in one run.

    python bench/bench_ingest.py [--events 1000000] [--users 100000] [--runners 2] [--brokers 1,3] [--sustained N]

Needs the local stack (`tv-platform stack up`). Uses a fresh topic per run; the cluster is started on free ports under
a temporary state directory and stopped afterwards; results go to stdout — copy them into docs/benchmarks.md with the
date.

* the yardstick: the seed's producer (``tx_kafka_json.py``: kafka-python, ``json.dumps`` per event, one ``send`` per
  event), on the single broker;
* producer: ``publish_frame`` (JSON and murmur2 partitions computed column-wise, then librdkafka: idempotent,
  ``acks=all``, lz4);
* landing: one sensor tick (it reads no payload: ranges are cut from record timestamps), then the
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
    from tv_platform.engines.kafka import KafkaResource
    from tv_platform.resources import lake_resource
    from tv_platform.settings import get_settings

    kafka_config, partition_key, run_config = args
    kafka, lake = KafkaResource(**kafka_config), lake_resource(get_settings())
    res = dg.materialize([ingest.tv_stream_snapshot], partition_key=partition_key, run_config=run_config,
                         resources={"kafka": kafka, "lake": lake}, instance=dg.DagsterInstance.ephemeral(),
                         raise_on_error=True)
    return res.asset_materializations_for_node("tv_stream_snapshot")[0].metadata["events_landed"].value


def seed_producer(kafka, events) -> float:
    """The seed's producer, as ``tx_kafka_json.py`` wrote it: kafka-python, a dict and a ``send`` per event. Returns
    events/s (until every send is acknowledged)."""
    import json

    from kafka import KafkaProducer

    from tv_platform.engines.kafka import event_to_json

    rows = [event_to_json(e) for e in events.to_dict("records")]
    producer = KafkaProducer(**kafka.kafka_python_config(), value_serializer=lambda v: json.dumps(v).encode("utf-8"),
                             key_serializer=lambda v: v.encode("utf-8"))
    t0 = time.monotonic()
    for data in rows:
        producer.send(kafka.topic, key=data["session_id"], value=data)
    producer.flush()
    elapsed = time.monotonic() - t0
    producer.close()
    return len(rows) / elapsed


def measure(label: str, kafka, args, events, more) -> dict:
    """Producer, one tick, landing runs serially and in parallel (and sustained) against one Kafka."""
    from tv_platform.engines.kafka import publish_frame
    from tv_platform.resources import lake_resource
    from tv_platform.sensors import kafka_events_sensor
    from tv_platform.settings import get_settings

    settings = get_settings()
    out: dict = {"kafka": label}
    kafka.ensure_topic(partitions=args.partitions)
    t0 = time.monotonic()
    sent = publish_frame(kafka, events, progress=False)
    out["producer"] = sent / (time.monotonic() - t0)

    t0 = time.monotonic()
    instance = dg.DagsterInstance.ephemeral()
    result = kafka_events_sensor(dg.build_sensor_context(instance=instance, resources={"kafka": kafka, "lake": lake_resource(settings)}))
    tick_s = time.monotonic() - t0
    out["tick"] = f"{tick_s:.2f} s"
    config = kafka.model_dump()
    jobs = [(config, rr.partition_key, rr.run_config) for rr in result.run_requests]

    t0 = time.monotonic()
    landed = sum(_land(job) for job in jobs)
    out["serial"] = landed / (tick_s + time.monotonic() - t0)
    t0 = time.monotonic()
    with ProcessPoolExecutor(args.runners, mp_context=mp.get_context("fork")) as pool:
        landed_again = sum(pool.map(_land, jobs))
    out["parallel"] = landed / (tick_s + time.monotonic() - t0)
    assert landed_again == landed == sent, (sent, landed, landed_again)

    if more is not None:
        publish_frame(kafka, more, progress=False)
        cursor, futures = result.cursor, []
        t0 = time.monotonic()
        with ProcessPoolExecutor(args.runners, mp_context=mp.get_context("fork")) as pool:
            while True:
                tick = kafka_events_sensor(dg.build_sensor_context(instance=instance, resources={"kafka": kafka, "lake": lake_resource(settings)},
                                                                    cursor=cursor))
                cursor = tick.cursor
                if not tick.run_requests:  # (no retries: the runs are not recorded in this instance)
                    break
                futures += [pool.submit(_land, (config, rr.partition_key, rr.run_config)) for rr in tick.run_requests]
            landed_more = sum(f.result() for f in futures)
        assert landed_more == len(more), (landed_more, len(more))
        out["sustained"] = landed_more / (time.monotonic() - t0)
    return out


def main() -> None:
    import tempfile
    from pathlib import Path

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runners", type=int, default=2, help="landing runs at a time for the parallel measurement")
    ap.add_argument("--brokers", default="1,3", help="Kafkas to measure: 1 = the stack's broker, 3 = a cluster")
    ap.add_argument("--sustained", type=int, default=0, metavar="N",
                    help="also measure overlapping ticks and runs over N more events (e.g. 600000)")
    ap.add_argument("--yardstick", type=int, default=200_000, metavar="N",
                    help="events for the seed's kafka-python producer (0: skip)")
    args = ap.parse_args()

    from streams import busy_stream, land_reference_data
    from tv_platform.resources import kafka_resource
    from tv_platform.settings import get_settings
    from tv_platform.stack.kafka import own_kafka

    settings = get_settings()
    land_reference_data(settings, args.users)
    events, seed = busy_stream(date(2023, 10, 10), args.users, args.events)
    more = busy_stream(date(2023, 10, 10), args.users, args.sustained, first_seed=seed)[0] if args.sustained else None
    columns = ["kafka", "seed producer", "producer", "tick", "serial", "parallel", "sustained"]
    print(f"\n{len(events):,} events, {args.partitions} partitions, landing runs {args.runners} at a time; events/s")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))

    def report(row: dict) -> None:  # a row as soon as it is measured
        print("| " + " | ".join(f"{row[c]:,.0f}" if isinstance(row.get(c), float) else str(row.get(c, ""))
                                for c in columns) + " |", flush=True)

    if args.yardstick:
        kafka = kafka_resource(settings).with_topic(f"bench_seed_{uuid.uuid4().hex[:6]}")
        kafka.ensure_topic(partitions=args.partitions)
        report({"kafka": "1 broker", "seed producer": seed_producer(kafka, events.iloc[:args.yardstick])})
    for brokers in [int(b) for b in args.brokers.split(",")]:
        topic = f"bench_{uuid.uuid4().hex[:6]}"
        if brokers == 1:
            report(measure("1 broker", kafka_resource(settings).with_topic(topic), args, events, more))
            continue
        with tempfile.TemporaryDirectory(prefix="tvp-bench-kafka-") as tmp, \
                own_kafka(settings, Path(tmp) / "state", brokers=brokers) as own:
            report(measure(f"{brokers} brokers (RF {min(brokers, 3)}, min ISR {2 if brokers >= 3 else 1})",
                          kafka_resource(own).with_topic(topic), args, events, more))


if __name__ == "__main__":
    main()
