"""`tv-platform demo`: the whole platform on local defaults, on one machine.

1. brings the local stack up (Kafka, HDFS, Spark Connect + Hive, PostgreSQL, ClickHouse);
2. materializes the reference data, backfills the last week of simulated history and builds the lake, the programme
   attribution and the marts for those days — the lake for at least the days the forecast needs
   (:func:`forecast_history_days`: 24), so the forecast has its history whatever ``--days`` says — before the daemon
   runs: those days are within the late-data horizon, and automation must not rebuild them beside these runs;
3. starts Dagster (webserver + daemon, instance storage in PostgreSQL) so the kafka sensor and automation run;
4. builds today's programme guide (no sensor makes it: the guide is published ahead, not landed), produces today's
   live viewing events through Kafka, waits until the sensor has landed them in HDFS and the automation sensor has
   carried them through the lake and the programme attribution into the marts, and prints the end-to-end freshness
   (first event produced -> its day's sessions visible in ClickHouse) — today's partition is built by Dagster's own
   sensors and automation, as in production, not by the demo;
5. builds the analytics and the forecast (with its marts), so every dashboard chart has data;
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

from tv_platform.cli import REPO_ROOT, dagster_env, initialize_pools, stack_up
from tv_platform.dates import today as local_today
from tv_platform.settings import get_settings


def _say(msg: str) -> None:
    print(msg, flush=True)


def start_dagster(port: int) -> subprocess.Popen:
    settings = get_settings()
    log = settings.logs_dir / "dagster-dev.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    initialize_pools()
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


def forecast_history_days() -> int:
    """Days of lake history ``viewing_forecast`` needs (training, the held-out week, the further rolling origins)."""
    from tv_platform.analytics.forecast import days_needed
    from tv_platform.assets.analytics import ForecastConfig

    return days_needed(ForecastConfig().horizon)


def run_demo(args) -> int:
    """``args``: days, events, port, exit (see ``tv-platform demo --help``)."""
    t_start = time.monotonic()
    settings = get_settings()
    _say("== 1/6 local stack")
    stack_up()
    for key, value in dagster_env().items():
        os.environ.setdefault(key, value)

    ui = None
    try:
        import dagster as dg

        from tv_platform.definitions import defs

        instance = dg.DagsterInstance.get()
        today = local_today()  # the operator's (TVP_TIMEZONE)
        days = [(today - timedelta(days=i)).isoformat() for i in range(args.days, 0, -1)]
        # the forecast's history: the lake only (the marts and the programmes keep --days)
        lake_days = [(today - timedelta(days=i)).isoformat()
                     for i in range(max(args.days, forecast_history_days()), 0, -1)]

        # the history is built before the daemon starts: its days are within the late-data horizon, and automation
        # would otherwise rebuild them between the levels built here (one owner of a run at a time)
        _say(f"\n== 2/6 reference data and {len(days)} days of history ({days[0]} .. {days[-1]}): "
             f"lake (from {lake_days[0]}, the forecast's history), programmes, marts")
        from tv_platform.ops import materialize_partitions

        materialize_partitions(defs, instance, ["channels", "users"], None)
        materialize_partitions(defs, instance, ["tv_dataset"], lake_days)
        built = materialize_partitions(defs, instance, "lake", lake_days)
        built += materialize_partitions(defs, instance, "programmes+marts", days)
        _say(f"built {built} asset partitions (Spark assets one run per range of days)")

        _say(f"\n== 3/6 Dagster UI on http://127.0.0.1:{args.port} (webserver and daemon: the sensors run)")
        ui = start_dagster(args.port)

        _say(f"\n== 4/6 today's programme guide, {args.events:,} live events for {today} through Kafka -> sensor -> "
             "HDFS -> automation -> marts")
        materialize_partitions(defs, instance, ["programme_guide", "hive_programme_guide"], [today.isoformat()])
        from tv_platform.engines.kafka import publish_frame
        from tv_platform.resources import kafka_resource, lake_resource
        from tv_platform.simulator.live import live_frame
        from tv_platform.simulator.model import SimulationParams

        kafka = kafka_resource(settings)
        kafka.ensure_topic()
        events = live_frame(today, SimulationParams(users=settings.sim_users, seed=settings.sim_seed),
                            count=args.events)
        lake = lake_resource(settings)
        event_days = set(events["timer"].dt.strftime("%Y-%m-%d"))
        before = landed_files(lake, event_days)  # a re-run of the demo sends the same sessions again
        t_produce = time.time()
        sent = publish_frame(kafka, events)
        landed = wait_for_landing(lake, event_days, set(events["session_id"]), sent, timeout=300, skip=before)
        to_hdfs = time.time() - t_produce
        _say(f"landed {landed:,} of {sent:,} events (good ones in raw/, bad ones in quarantine/) {to_hdfs:.0f} s after "
             "the first was produced (produce -> HDFS)")
        sessions = complete_sessions(events, today.isoformat())
        try:
            to_mart = wait_for_mart(settings, instance, today.isoformat(), sessions, since=t_produce, timeout=600)
            _say(f"end-to-end freshness: {to_mart:.0f} s from the first event produced to all {sessions:,} of its "
                 f"finished sessions in ClickHouse ({settings.clickhouse_database}.sessions, built by the automation sensor)")
            # the dashboards read every mart of today, the programme guide's too: let the automation finish them
            wait_for_marts(defs, instance, today.isoformat(), since=t_produce, timeout=600)
        except TimeoutError as exc:
            _say(f"{exc}; building today's partition directly")
            materialize_partitions(defs, instance, "lake+programmes+marts", [today.isoformat()])
        summary_days = sorted(set(days) | {today.isoformat()})

        _say("\n== 5/6 analytics and the forecast (with its marts)")
        built = materialize_partitions(defs, instance, "analytics", None)
        _say(f"built {built} analytics assets")

        _say("\n== 6/6 dashboards and summary")
        from tv_platform.stack.superset import superset_up

        try:
            svc = superset_up(settings, progress=_say)
            superset_url = (f"{svc.conf.url}  (user {svc.conf.admin_user!r}; password: "
                            f"{'TVP_SUPERSET_ADMIN_PASSWORD' if svc.conf.admin_password_env else svc.conf.password_file})")
        except Exception as exc:  # noqa: BLE001 - the platform works without dashboards; say why they are missing
            superset_url = f"not started: {exc}"
        print_summary(settings, summary_days)
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
        if ui is not None:
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


def landed_files(lake, days: set[str]) -> set[str]:
    """Paths of the stream files of ``days``: landed events (raw/) and quarantined messages (quarantine/)."""
    from tv_platform import layout

    fs = lake.fs()
    out = set()
    for day in days:
        for base in (layout.partition_dir(layout.raw_dir("tv_stream", lake.lake_root), day),
                     layout.partition_dir(layout.quarantine_dir("tv_stream", lake.lake_root), day)):
            if fs.exists(base):
                out |= {f"{base}/{n}" for n in fs.listdir(base) if n.endswith(".csv") and not n.startswith(".")}
    return out


def wait_for_landing(lake, days: set[str], session_ids: set[str], expected: int, timeout: float,
                     skip: set[str] = frozenset()) -> int:
    """Poll the lake until ``expected`` messages are in stream files other than ``skip`` (the sensor ticks every
    15 s): events of ``session_ids`` landed, plus messages quarantined (e.g. events dated in a partition that does not
    exist yet)."""
    import pandas as pd

    from tv_platform import layout

    fs = lake.fs()
    quarantine = layout.quarantine_dir("tv_stream", lake.lake_root)
    deadline = time.monotonic() + timeout
    counted: dict[str, int] = {}  # a file is final once it appears (written aside, then renamed)
    count = 0
    while time.monotonic() < deadline:
        for path in landed_files(lake, days) - skip - set(counted):
            frame = pd.read_csv(io.BytesIO(fs.read_bytes(path)))
            counted[path] = len(frame) if path.startswith(quarantine) else int(frame["session_id"].isin(session_ids).sum())
        count = sum(counted.values())
        if count >= expected:
            return count
        time.sleep(3)
    raise RuntimeError(f"only {count} of {expected} events landed within {timeout:.0f} s: is the kafka sensor running? "
                       "(see the Dagster UI, Automation tab)")


def complete_sessions(events, day: str) -> int:
    """Sessions of ``events`` that start and end on ``day``. A cut stream ends with open sessions (anomalies, not
    sessions, until their end arrives); and a session ending after midnight is paired once its ``disabled`` event
    lands in the next day's partition — which the demo, producing the whole simulated day at once, sends before that
    day exists (such events are quarantined with their reason)."""
    on_day = events["timer"].dt.strftime("%Y-%m-%d") == day
    started = set(events.loc[(events["status"] == "enabled") & on_day, "session_id"])
    ended = set(events.loc[(events["status"] == "disabled") & on_day, "session_id"])
    return len(started & ended)


def wait_for_mart(settings, instance, day: str, sessions: int, since: float, timeout: float) -> float:
    """Seconds from ``since`` (wall clock) until the ClickHouse sessions mart has been materialized for ``day`` after
    ``since`` and holds at least ``sessions`` rows for it. Raises TimeoutError."""
    import dagster as dg

    from tv_platform.stack.clickhouse import clickhouse_client

    key = dg.AssetKey(["clickhouse", "sessions"])
    deadline = time.monotonic() + timeout
    rows = 0
    while time.monotonic() < deadline:
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=key, asset_partitions=[day], after_timestamp=since), limit=1).records
        if records:
            with clickhouse_client(settings) as client:
                rows = int(client.query("SELECT count() FROM sessions WHERE dt = {d:Date}",
                                        parameters={"d": day}).result_rows[0][0])
            if rows >= sessions:
                return records[0].timestamp - since
        time.sleep(3)
    raise TimeoutError(f"the ClickHouse sessions mart had {rows:,} of {sessions:,} sessions of {day} after "
                       f"{timeout:.0f} s (is the automation sensor running? Dagster UI, Automation tab)")


def wait_for_marts(defs, instance, day: str, since: float, timeout: float) -> None:
    """Wait until every mart (group ``marts``: the lake's and the programme guide's, both warehouses) has been
    materialized for ``day`` after ``since`` (wall clock) and no run is building one. Raises TimeoutError."""
    import dagster as dg

    from tv_platform.ops import resolve_selection

    keys = resolve_selection(defs, "marts")
    deadline = time.monotonic() + timeout
    missing = keys
    while time.monotonic() < deadline:
        missing = [k for k in keys if not instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=k, asset_partitions=[day], after_timestamp=since), limit=1).records]
        busy = instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTED,
                                                               dg.DagsterRunStatus.STARTING]))
        if not missing and not busy:
            return
        time.sleep(5)
    raise TimeoutError(f"{len(missing)} marts of {day} not built by the automation after {timeout:.0f} s "
                       f"(e.g. {missing[0].to_user_string() if missing else 'runs still going'})")


def print_summary(settings, days: list[str]) -> None:
    from tv_platform.ops import summary_tables

    for title, table in summary_tables(settings, days):
        _say(f"\n{title}\n{table}")
