"""The platform's command line: ``tv-platform <command>``.

    stack up|down|status|logs   the local stack of real services (Kafka, HDFS, Spark Connect + Hive, PostgreSQL, ClickHouse)
    dev                         the Dagster UI + daemon on the code location, instance storage in the stack's PostgreSQL
    demo                        the whole platform on local defaults
    test [--fast|--services|--cluster]  the test suite: a fast tier without services, the services, lifecycle, cluster
    produce                     publish simulated (or recorded, --replay) viewing events to Kafka
    superset up|down|status     Superset (own virtualenv) with the dashboards of superset_exports/ on 127.0.0.1:8088
    settings                    the effective settings and every environment variable that sets them
    quarantine list|replay      quarantined messages and dead-lettered ranges of the live stream; land them again
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from tv_platform.settings import get_settings, settings_table, shown_value

REPO_ROOT = Path(__file__).resolve().parent.parent


def _say(msg: str) -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------------------------------
# stack
# ---------------------------------------------------------------------------------------------------------------------
def stack_up(only: list[str] | None = None, quiet: bool = False) -> dict[str, float]:
    """Bring the stack up (idempotent). Returns seconds spent per service."""
    from tv_platform.stack import services

    settings = get_settings()
    say = (lambda _m: None) if quiet else _say
    timings: dict[str, float] = {}
    chosen = [s for s in services(settings) if not only or s.name in only]
    for svc in chosen:
        t0 = time.monotonic()
        svc.install(say)
        state = "running" if svc.running() else "starting"
        if state == "starting" or svc.embedded():
            say(f"{svc.name}: {state}")
        svc.start()
        timings[svc.name] = time.monotonic() - t0
    if not quiet:
        _print_endpoints(chosen)
    return timings


def _print_endpoints(svcs) -> None:
    rows = [(svc.name, k, v) for svc in svcs for k, v in svc.endpoints().items()]
    if rows:
        _say("\nendpoints:")
        for name, key, value in rows:
            _say(f"  {key:<30} {value}")


def stack_down(only: list[str] | None = None) -> list[str]:
    from tv_platform.stack import services

    stopped = []
    for svc in reversed(services(get_settings())):
        if only and svc.name not in only:
            continue
        if svc.stop():
            stopped.append(svc.name)
            _say(f"{svc.name}: stopped")
    return stopped


def stack_status() -> int:
    from tv_platform.stack import services

    code = 0
    settings = get_settings()
    if settings.profile:
        _say(f"profile {settings.profile}: state {settings.state_dir}")
    _say(f"{'service':<18}{'state':<10}{'pid':>8}{'RSS MiB':>10}  endpoint")
    for svc in services(get_settings()):
        pid = svc.recorded_pid()
        if svc.embedded():
            try:
                ok = svc.ready()
            except Exception:  # noqa: BLE001
                ok = False
            state = "embedded" if ok else "down"
        else:
            state = "up" if pid else "down"
        if state == "down":
            code = 3
        endpoint = next(iter(svc.endpoints().values()), "")
        _say(f"{svc.name:<18}{state:<10}{pid or '-':>8}{svc.memory_mb():>10.0f}  {endpoint}")
    return code


def stack_logs(name: str | None, lines: int, follow: bool) -> int:
    from tv_platform.stack import services

    svcs = [s for s in services(get_settings()) if name in (None, s.name)]
    if not svcs:
        _say(f"no such service: {name}")
        return 2
    files = [str(s.log_file) for s in svcs if s.log_file.exists()]
    if not files:
        _say("no logs yet")
        return 0
    return subprocess.call(["tail", f"-n{lines}", *(["-F"] if follow else []), *files])


# ---------------------------------------------------------------------------------------------------------------------
# dagster
# ---------------------------------------------------------------------------------------------------------------------
def dagster_env() -> dict[str, str]:
    """Environment for Dagster processes: DAGSTER_HOME with the PostgreSQL-backed instance, and every TVP_* setting."""
    settings = get_settings()
    env = dict(os.environ)
    env.setdefault("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    exported = {
        "TVP_DAGSTER_PG_HOST": settings.dagster_pg_host,
        "TVP_DAGSTER_PG_PORT": str(settings.dagster_pg_port),
        "TVP_DAGSTER_PG_DATABASE": settings.dagster_pg_database,
        "TVP_DAGSTER_PG_USER": settings.dagster_pg_user,
        "TVP_DAGSTER_PG_PASSWORD": settings.dagster_pg_password,
    }
    for key, value in exported.items():
        env.setdefault(key, value)
    return env


def initialize_pools() -> None:
    """Create the concurrency pools the assets use (``marts.POOLS``) with the instance's default limit, once, before
    any run starts. Dagster creates a pool lazily, when a step first claims it, without a lock: two run workers
    claiming a new pool at the same moment both find no slots and each adds one, so the `clickhouse` pool briefly has
    two slots and two steps open the embedded engine at once (seen once in three daemon backfills of a week). Made
    here, serially, the pool exists before the daemon launches anything. A pool that exists is left as it is (on
    PostgreSQL Dagster's initialization of an existing pool fails: its INSERT aborts the transaction its UPDATE
    needs)."""
    import dagster as dg

    from tv_platform.assets.marts import POOLS

    added = {k: v for k, v in dagster_env().items() if k not in os.environ}
    os.environ.update(added)  # the instance's dagster.yaml reads its storage settings from the environment
    try:
        with dg.DagsterInstance.get() as instance:
            storage = instance.event_log_storage
            if not storage.supports_global_concurrency_limits:
                return
            if instance.get_concurrency_config().pool_config.default_pool_limit is None:
                return
            existing = {limit.name for limit in storage.get_pool_limits()}
            for pool in sorted({p for p in POOLS.values() if p} - existing):
                storage.initialize_concurrency_limit_to_default(pool)
    finally:
        for k in added:
            os.environ.pop(k, None)


def dagster_dev(port: int, host: str) -> int:
    stack_up(quiet=True)
    initialize_pools()
    cmd = [str(Path(sys.executable).with_name("dagster")), "dev", "-w", str(REPO_ROOT / "workspace.yaml"),
           "-h", host, "-p", str(port)]
    _say(f"Dagster UI on http://{host}:{port}  (Ctrl-C stops it; the stack keeps running)")
    return subprocess.call(cmd, env=dagster_env(), cwd=REPO_ROOT)


# ---------------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------------
#: the tiers of the suite, in the order ``tv-platform test`` runs them (pytest marker expressions)
TEST_TIERS = {
    "fast": "not services and not lifecycle and not long and not cluster",  # no services: logic, definitions, snapshot
    "services": "services and not lifecycle and not long and not cluster",  # the real local stack (`stack` fixture)
    "lifecycle": "lifecycle and not long and not cluster",  # stops and restarts services, in a process of its own
    "cluster": "cluster",  # the cluster profile brought up beside the local stack: its engines, the seed day, faults
    "long": "long",  # whole-platform proofs (a daemon backfill of a week three times, the demo in a browser): opt-in
}


def run_tests(pytest_args: list[str]) -> int:
    """``test`` runs every tier in order, stopping at the first that fails; ``test --fast`` only the fast tier,
    ``test --services`` the service and lifecycle tiers; any other arguments go to one pytest run as they are."""
    env = dagster_env()
    tests = str(REPO_ROOT / "tv_platform_tests")
    flags = {"--fast": ["fast"], "--services": ["services", "lifecycle"], "--cluster": ["cluster"], "--long": ["long"]}
    if pytest_args[:1] and pytest_args[0] not in flags:
        return subprocess.call([sys.executable, "-m", "pytest", *pytest_args], env=env, cwd=REPO_ROOT)
    tiers = flags[pytest_args[0]] if pytest_args else ["fast", "services", "lifecycle", "cluster"]
    extra = pytest_args[1:]
    for tier in tiers:
        _say(f"== tests: {tier} tier (-m '{TEST_TIERS[tier]}')")
        code = subprocess.call([sys.executable, "-m", "pytest", tests, "-m", TEST_TIERS[tier], *extra],
                               env=env, cwd=REPO_ROOT)
        if code not in (0, 5):  # 5: the tier selected no test
            return code
    return 0


# ---------------------------------------------------------------------------------------------------------------------
# quarantine
# ---------------------------------------------------------------------------------------------------------------------
def quarantine_command(args) -> int:
    """``list``: what is set aside, per day; ``replay``: land what is good now, record it in Dagster (exit 1 while a
    dead letter of the day could not be landed)."""
    import dagster as dg

    from tv_platform import quarantine
    from tv_platform.resources import kafka_resource, lake_resource

    settings = get_settings()
    lake = lake_resource(settings)
    if args.action == "list":
        letters = quarantine.dead_letters(lake, args.date)
        days = [args.date] if args.date else quarantine.quarantine_days(lake)
        if not days:
            _say("nothing quarantined, no dead letters")
        for day in days:
            q = quarantine.quarantine_summary(lake, day)
            _say(f"{day}: {q['quarantined']} quarantined, {q['replayed']} replayed, "
                 f"{q['still_quarantined']} still quarantined")
            for reason, n in sorted(q["reasons"].items(), key=lambda kv: -kv[1]):
                _say(f"    {n:>8}  {reason}")
            for x in (x for x in letters if x["day"] == day):
                ranges = " ".join(f"{p}:{s}-{e}" for p, s, e in x["ranges"])
                _say(f"  dead letter {x['topic']} {ranges} after {x['attempts']} attempts: {x['reason']}")
        return 0
    for key, value in dagster_env().items():
        os.environ.setdefault(key, value)
    summary = quarantine.replay_quarantine(lake, args.date)
    with dg.DagsterInstance.get() as instance:
        letters = quarantine.replay_dead_letters(lake, kafka_resource(settings), args.date, instance)
        summary["dead_letters_landed"] = sum(1 for x in letters if x["landed"])
        quarantine.record_replay(instance, lake, args.date, summary)
    _say(f"{args.date}: {summary['replayed']} quarantined messages landed, {summary['still_quarantined']} still "
         f"quarantined; {summary['dead_letters_landed']} of {len(letters)} dead letters landed")
    for x in letters:
        if not x["landed"]:
            _say(f"  still a dead letter: {x['path']}: {x['error']}")
    return 0 if all(x["landed"] for x in letters) else 1


# ---------------------------------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------------------------------
def _profile_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", choices=["default", "cluster"],
                        help="`cluster`: the multi-node profile on this machine, own ports and state (TVP_PROFILE)")


def use_profile(profile: str | None) -> None:
    """Select a profile for this process and every process it starts (TVP_PROFILE); None keeps the environment's."""
    if profile is None:
        return
    if profile == "cluster":
        os.environ["TVP_PROFILE"] = "cluster"
    else:
        os.environ.pop("TVP_PROFILE", None)
    get_settings.cache_clear()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tv-platform", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    st = sub.add_parser("stack", help="the local stack of real services")
    st_sub = st.add_subparsers(dest="action", required=True)
    up = st_sub.add_parser("up", help="install what is missing, start every service, wait until each answers")
    up.add_argument("services", nargs="*", help="only these (default: all)")
    up.add_argument("--kafka-brokers", type=int, help="run Kafka as a KRaft cluster of N nodes (TVP_KAFKA_BROKERS)")
    _profile_arg(up)
    down = st_sub.add_parser("down", help="stop exactly the processes the stack started")
    down.add_argument("services", nargs="*")
    _profile_arg(down)
    _profile_arg(st_sub.add_parser("status", help="state, pid and memory of each service"))
    lg = st_sub.add_parser("logs", help="tail the services' logs")
    _profile_arg(lg)
    lg.add_argument("service", nargs="?")
    lg.add_argument("-n", "--lines", type=int, default=50)
    lg.add_argument("-f", "--follow", action="store_true")

    dv = sub.add_parser("dev", help="Dagster UI and daemon (dagster dev) on the stack")
    dv.add_argument("--port", type=int, default=3000)
    dv.add_argument("--host", default="127.0.0.1")
    _profile_arg(dv)

    ts = sub.add_parser("test", help="run the test suite: fast tier, service tier (brings the stack up), lifecycle")
    ts.add_argument("pytest_args", nargs=argparse.REMAINDER)

    dm = sub.add_parser("demo", help="the whole platform on local defaults")
    dm.add_argument("--days", type=int, default=7, help="days of history to backfill (default 7)")
    dm.add_argument("--events", type=int, default=20_000, help="live events to produce for today (default 20000)")
    dm.add_argument("--port", type=int, default=3000, help="Dagster UI port")
    dm.add_argument("--exit", action="store_true", help="stop the UI after the summary instead of waiting for Ctrl-C")
    _profile_arg(dm)
    sub.add_parser("settings", help="effective settings and the environment variables behind them")

    bf = sub.add_parser("backfill", help="backfill whole weeks of history through the lake and marts: a Dagster "
                                         "backfill run by the daemon (start it with `tv-platform dev`)")
    bf.add_argument("--weeks", type=int, default=1)
    bf.add_argument("--end", help="last day (default: yesterday in the operator's zone)")
    bf.add_argument("--start", help="first day: the days --start .. --end (default --end: --start) instead of whole "
                                    "weeks; `--start D --end D` rebuilds day D (a day the stream owns from what landed)")
    bf.add_argument("--url", default="http://127.0.0.1:3000", help="the Dagster webserver (default: tv-platform dev's)")
    bf.add_argument("--no-wait", action="store_true", help="submit and return; follow it in the UI")

    qu = sub.add_parser("quarantine", help="quarantined messages and dead letters of the live stream")
    qu_sub = qu.add_subparsers(dest="action", required=True)
    ql = qu_sub.add_parser("list", help="per day: quarantined, replayed, still quarantined (by reason), dead letters")
    ql.add_argument("--date", help="one day (default: every day with any)")
    qr = qu_sub.add_parser("replay", help="re-validate a day's quarantine and re-land its dead letters, exactly once")
    qr.add_argument("--date", required=True)

    from tv_platform.engines.kafka import add_produce_parser
    from tv_platform.superset_cli import add_superset_parser

    add_produce_parser(sub)
    add_superset_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from tv_platform.stack.base import StackError

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["test"]:  # everything after `test` goes to pytest as it is (-k, -x, paths ...)
        return run_tests(argv[1:])
    args = build_parser().parse_args(argv)
    use_profile(getattr(args, "profile", None))
    try:
        if args.command == "stack":
            if args.action == "up":
                if args.kafka_brokers:
                    os.environ["TVP_KAFKA_BROKERS"] = str(args.kafka_brokers)
                    get_settings.cache_clear()
                stack_up(args.services or None)
                return 0
            if args.action == "down":
                stopped = stack_down(args.services or None)
                if not stopped:
                    _say("nothing was running")
                return 0
            if args.action == "status":
                return stack_status()
            if args.action == "logs":
                return stack_logs(args.service, args.lines, args.follow)
        if args.command == "dev":
            return dagster_dev(args.port, args.host)
        if args.command == "test":
            return run_tests(args.pytest_args)
        if args.command == "demo":
            from tv_platform.demo import run_demo

            return run_demo(args)
        if args.command == "backfill":
            from tv_platform.ops import BackfillError, backfill

            try:
                backfill_id, days, status = backfill(args.url, args.weeks, args.end, wait=not args.no_wait,
                                                     start=args.start)
            except (BackfillError, ValueError) as exc:
                print(f"tv-platform: {exc}", file=sys.stderr)
                return 1
            where = f"{args.url.rstrip('/')}/runs/b/{backfill_id}"
            if status is None:
                _say(f"backfill {backfill_id} of {days[0]} .. {days[-1]} submitted: {where}")
                return 0
            _say(f"backfill {backfill_id} of {days[0]} .. {days[-1]} ({len(days)} days): {status} — {where}")
            return 0 if status in ("COMPLETED", "COMPLETED_SUCCESS") else 1
        if args.command == "settings":
            s = get_settings()
            for key, value in vars(s).items():
                _say(f"{key:<26} {shown_value(key, value)}")
            _say("\n" + settings_table())
            return 0
        if args.command == "superset":
            from tv_platform.superset_cli import superset_command

            return superset_command(args)
        if args.command == "produce":
            from tv_platform.engines.kafka import produce_command

            return produce_command(args)
        if args.command == "quarantine":
            return quarantine_command(args)
    except StackError as exc:
        print(f"tv-platform: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
