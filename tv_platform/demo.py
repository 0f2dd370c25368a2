"""`tv-platform demo`: the whole platform on local defaults, on one machine.

1. brings the local stack up (Kafka, HDFS, Spark Connect + Hive, PostgreSQL, ClickHouse);
2. starts Dagster (webserver + daemon, instance storage in PostgreSQL) so the kafka sensor runs;
3. materializes the reference data and backfills the last week of simulated history;
4. produces today's live viewing events through Kafka and waits until the sensor has landed them in HDFS;
5. builds the lake, the programme attribution and the marts for those days;
6. brings Superset up with the dashboards, prints where to look and a summary, then keeps the UI up until Ctrl-C
   (``--exit`` stops instead).
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import requests

from tv_platform.cli import REPO_ROOT, dagster_env, stack_up
from tv_platform.settings import get_settings


def _say(msg: str) -> None:
    print(msg, flush=True)


def start_dagster(port: int) -> subprocess.Popen:
    settings = get_settings()
    log = settings.logs_dir / "dagster-dev.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
           "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, env=dagster_env(), cwd=REPO_ROOT, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dagster dev exited with code {proc.returncode} (log: {log})")
        try:
            if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                return proc
        except requests.RequestException:
            pass
        time.sleep(2)
    raise RuntimeError(f"the Dagster UI did not answer within 180 s (log: {log})")


def run_demo(args) -> int:
    """``args``: days, events, port, exit (see ``tv-platform demo --help``)."""
    t_start = time.monotonic()
    settings = get_settings()
    _say("== 1/6 local stack")
    stack_up()
    for key, value in dagster_env().items():
        os.environ.setdefault(key, value)

    _say(f"\n== 2/6 Dagster UI on http://127.0.0.1:{args.port}")
    ui = start_dagster(args.port)
    try:
        import dagster as dg

        from tv_platform.definitions import defs

        instance = dg.DagsterInstance.get()
        today = date.today()
        days = [(today - timedelta(days=i)).isoformat() for i in range(args.days, 0, -1)]

        _say(f"\n== 3/6 reference data and {len(days)} days of history ({days[0]} .. {days[-1]})")
        from tv_platform.ops import materialize_partitions

        materialize_partitions(defs, instance, ["channels", "users"], None)
        materialize_partitions(defs, instance, ["tv_dataset"], days)

        _say(f"\n== 4/6 {args.events:,} live events for {today} through Kafka; the sensor lands them")
        from tv_platform.engines.kafka import publish_frame
        from tv_platform.resources import kafka_resource, lake_resource
        from tv_platform.simulator.live import live_frame
        from tv_platform.simulator.model import SimulationParams

        kafka = kafka_resource(settings)
        kafka.ensure_topic()
        t_produce = time.monotonic()
        events = live_frame(today, SimulationParams(users=settings.sim_users, seed=settings.sim_seed),
                            count=args.events)
        sent = publish_frame(kafka, events)
        landed = wait_for_landing(lake_resource(settings), set(events["timer"].dt.strftime("%Y-%m-%d")),
                                  set(events["session_id"]), sent, timeout=300)
        freshness = time.monotonic() - t_produce
        _say(f"landed {landed:,} of {sent:,} events in {freshness:.0f} s (produce -> HDFS)")

        _say("\n== 5/6 lake and marts")
        lake_days = sorted(set(days) | {today.isoformat()})
        built = materialize_partitions(defs, instance, "lake+programmes+marts", lake_days)
        _say(f"built {built} asset partitions")

        _say("\n== 6/6 dashboards and summary")
        from tv_platform.engines.superset import superset_up

        try:
            superset_up(settings)
            superset_url = "http://127.0.0.1:8088  (admin / TVP_SUPERSET_ADMIN_PASSWORD, default admin)"
        except Exception as exc:  # noqa: BLE001 - the platform works without dashboards; say why they are missing
            superset_url = f"not started: {exc}"
        print_summary(settings, lake_days)
        _say(f"\nDagster UI:  http://127.0.0.1:{args.port}   (asset graph: /asset-groups, runs: /runs)")
        _say(f"Superset:    {superset_url}")
        _say(f"lake:        {settings.webhdfs_url}/explorer.html#{settings.lake_root}")
        _say(f"demo took {time.monotonic() - t_start:.0f} s")
        if not args.exit:
            _say("\nCtrl-C stops the UI (the stack keeps running: `tv-platform stack down` stops it).")
            ui.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_dagster(ui)
    return 0


def stop_dagster(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Stop a `dagster dev` started by :func:`start_dagster` (its whole process group: webserver, daemon, runs)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def wait_for_landing(lake, days: set[str], session_ids: set[str], expected: int, timeout: float) -> int:
    """Poll the lake until every produced event is in a landed file (the sensor ticks every 15 s)."""
    import pandas as pd

    from tv_platform import layout

    fs = lake.fs()
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = 0
        for day in days:
            base = layout.partition_dir(layout.raw_dir("tv_stream"), day)
            for name in fs.listdir(base):
                if name.endswith(".csv") and not name.startswith("."):
                    frame = pd.read_csv(io.BytesIO(fs.read_bytes(f"{base}/{name}")), usecols=["session_id"])
                    count += int(frame["session_id"].isin(session_ids).sum())
        if count >= expected:
            return count
        time.sleep(3)
    raise RuntimeError(f"only {count} of {expected} events landed within {timeout:.0f} s: is the kafka sensor running? "
                       "(see the Dagster UI, Automation tab)")


def print_summary(settings, days: list[str]) -> None:
    from tv_platform.ops import summary_tables

    for title, table in summary_tables(settings, days):
        _say(f"\n{title}\n{table}")
