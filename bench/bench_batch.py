"""Batch speed (issue #19): history backfilled through every layer as a user launches it — the UI's "Materialize" over
a range (``launchPartitionBackfill``, what ``tv-platform backfill`` sends) run by the daemon — timed whole and
broken down from the instance's event log.

    .venv/bin/python bench/bench_batch.py                           # one week x 10,000 subscribers
    .venv/bin/python bench/bench_batch.py --days 1 --users 1000000  # one day x 1 M subscribers
    .venv/bin/python bench/bench_batch.py --days 7 --users 10000 --days 28 --users 100000   # several, one table

Each case gets an instance of its own (``dagster dev`` on a free port, a DAGSTER_HOME with the shipped dagster.yaml
and a PostgreSQL database of its own) and a lake root, Hive database, Greenplum schema, chDB directory and Kafka topic
of its own, all dropped at the end; the stack of the environment (``TVP_*``) must be up. The backfill builds what
``tv-platform backfill`` builds: reference data, the simulated history, the lake, programmes, the audience measures and
every mart in both warehouses, with every check.

The breakdown (per case): runs and their launch latency (created -> started: the queue and the run worker's
start-up), per layer (asset group) the steps and their seconds, the checks' seconds, and what is left of the runs'
wall time outside any step (Dagster's per-run overhead: loading the code, resources, the event log). The Spark
server's peak resident memory over the case is sampled every second.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

END = "2023-09-16"  # the last day of the case's range (the seed's week ends on the 16th)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peak(threading.Thread):
    """The peak resident memory (MiB) of a process group, sampled every second."""

    def __init__(self, pgid: int | None):
        super().__init__(daemon=True)
        self.pgid, self.peak, self._done = pgid, 0.0, threading.Event()

    def run(self) -> None:
        from tv_platform.stack.base import rss_mb_of_group

        while self.pgid and not self._done.wait(1.0):
            self.peak = max(self.peak, rss_mb_of_group(self.pgid))

    def stop(self) -> float:
        self._done.set()
        if self.is_alive():
            self.join(timeout=5)
        return self.peak


class Sandbox:
    """Names, databases and a DAGSTER_HOME of one case; ``env`` is what its ``dagster dev`` runs with."""

    def __init__(self, users: int):
        from tv_platform.cli import dagster_env

        tag = uuid.uuid4().hex[:8]
        self.home = Path(tempfile.mkdtemp(prefix="tvp-bench-home-"))
        shutil.copy(ROOT / "dagster_home" / "dagster.yaml", self.home / "dagster.yaml")
        self.instance_db, self.schema, self.hive = f"dagster_bench_{tag}", f"bench_{tag}", f"tv_bench_{tag}"
        self.root, self.chdb = f"/bench/batch_{tag}", self.home / "chdb"
        self.env = {**dagster_env(), "DAGSTER_HOME": str(self.home), "TVP_DAGSTER_PG_DATABASE": self.instance_db,
                    "TVP_LAKE_ROOT": self.root, "TVP_HIVE_DATABASE": self.hive, "TVP_GP_SCHEMA": self.schema,
                    "TVP_CLICKHOUSE_URL": f"chdb://{self.chdb}", "TVP_CLICKHOUSE_DATABASE": self.schema,
                    "TVP_KAFKA_TOPIC": f"tv_events_bench_{tag}", "TVP_SIM_USERS": str(users)}

    def _sql(self, database: str, statement: str) -> None:
        from tv_platform.settings import get_settings
        from tv_platform.stack.postgres import PostgresService

        conn = PostgresService(get_settings()).admin_connect(database)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def create(self) -> None:
        from tv_platform.settings import get_settings

        s = get_settings()
        self._sql("postgres", f'CREATE DATABASE "{self.instance_db}" OWNER "{s.dagster_pg_user}"')
        self._sql(s.gp_database, f'CREATE SCHEMA "{self.schema}" AUTHORIZATION "{s.gp_loader_user}"')

    def drop(self) -> None:
        from pyspark.sql import SparkSession

        from tv_platform.engines.hdfs import lake_fs
        from tv_platform.settings import get_settings

        s = get_settings()
        SparkSession.builder.remote(s.spark_remote).getOrCreate().sql(f"DROP DATABASE IF EXISTS {self.hive} CASCADE")
        fs = lake_fs(s)
        if fs.exists(self.root):
            fs.delete(self.root)
        self._sql(s.gp_database, f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        self._sql("postgres", f'DROP DATABASE IF EXISTS "{self.instance_db}" WITH (FORCE)')
        shutil.rmtree(self.home, ignore_errors=True)


def profile(instance, backfill_id: str) -> dict:
    """The breakdown of one backfill from its runs' event logs (see the module docstring)."""
    import dagster as dg

    from tv_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    layer_of = {k.to_python_identifier(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    for assets_def in graph.assets_defs:  # a multi-asset's step is named after its op
        if assets_def.is_executable and assets_def.group_names_by_key:
            layer_of.setdefault(assets_def.node_def.name, sorted(set(assets_def.group_names_by_key.values()))[0])

    def layer(step: str) -> str:
        """The asset group of a step's asset; a check step (``<asset>_<check name>``) counts as its group's checks."""
        if step in layer_of:
            return layer_of[step]
        owner = max((a for a in layer_of if step.startswith(a + "_")), key=len, default=None)
        return f"{layer_of[owner]} checks" if owner else step

    runs = instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    out = {"runs": len(runs), "launch": [], "overhead": 0.0, "steps": defaultdict(lambda: [0, 0.0]),
           "first": None, "last": None}
    kinds = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}
    for run in runs:
        record = instance.get_run_record_by_id(run.run_id)
        if record.start_time is None or record.end_time is None:
            continue
        out["launch"].append(record.start_time - record.create_timestamp.timestamp())
        out["first"] = min(out["first"] or record.create_timestamp.timestamp(), record.create_timestamp.timestamp())
        out["last"] = max(out["last"] or record.end_time, record.end_time)
        starts, in_steps = {}, 0.0
        for event in instance.all_logs(run.run_id, of_type=kinds):
            step = event.step_key or ""
            if event.dagster_event_type == dg.DagsterEventType.STEP_START:
                starts[step] = event.timestamp
            elif step in starts:
                seconds = event.timestamp - starts.pop(step)
                in_steps += seconds
                group = layer(step.split("[")[0])
                out["steps"][group][0] += 1
                out["steps"][group][1] += seconds
        out["overhead"] += max(0.0, (record.end_time - record.start_time) - in_steps)
    return out


def run_case(days: int, users: int, timeout: float) -> dict:
    import dagster as dg

    from tv_platform.demo import start_dagster, stop_dagster
    from tv_platform.ops import backfill
    from tv_platform.settings import get_settings
    from tv_platform.stack.spark import SparkConnectService

    box = Sandbox(users)
    saved = dict(os.environ)
    box.create()
    os.environ.update(box.env)
    peak = Peak(SparkConnectService(get_settings()).recorded_pid())
    proc = None
    try:
        proc = start_dagster(free_port())
        url = f"http://127.0.0.1:{proc.args[proc.args.index('-p') + 1]}"
        last = date.fromisoformat(END)
        first = (last - timedelta(days=days - 1)).isoformat()
        peak.start()
        t0 = time.monotonic()
        backfill_id, _, status = backfill(url, 1, END, start=first, progress=False, timeout=timeout)
        wall = time.monotonic() - t0
        with dg.DagsterInstance.get() as instance:
            result = profile(instance, backfill_id)
        result.update(days=days, users=users, wall=wall, status=status, spark_peak_mb=peak.stop())
        return result
    finally:
        peak.stop()
        if proc is not None:
            stop_dagster(proc)
        os.environ.clear()
        os.environ.update(saved)
        box.drop()


def report(r: dict) -> str:
    launch = sorted(r["launch"]) or [0.0]
    lines = [f"{r['days']} day(s) x {r['users']:,} subscribers: {r['status']} in {r['wall']:.0f} s — {r['runs']} runs "
             f"(launch median {launch[len(launch) // 2]:.1f} s, max {launch[-1]:.1f} s), Dagster outside steps "
             f"Σ {r['overhead']:.0f} s, Spark server peak {r['spark_peak_mb']:,.0f} MiB",
             "| layer | steps | Σ seconds |", "|---|---|---|"]
    for layer, (n, seconds) in sorted(r["steps"].items(), key=lambda kv: -kv[1][1]):
        lines.append(f"| {layer} | {n} | {seconds:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, action="append", help="days of each case (default 7)")
    parser.add_argument("--users", type=int, action="append", help="subscribers of each case (default 10000)")
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    days, users = args.days or [7], args.users or [10_000]
    if len(days) != len(users):
        parser.error("give --days and --users once per case")
    for d, u in zip(days, users):
        print(report(run_case(d, u, args.timeout)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
