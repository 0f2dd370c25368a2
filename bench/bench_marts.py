"""Warehouse marts: load throughput (rows/s) into PostgreSQL (Greenplum's stand-in) and ClickHouse (chDB), and the
latency of the dashboards' queries on both.

    .venv/bin/python bench/bench_marts.py             # measure, print, update docs/marts.md
    .venv/bin/python bench/bench_marts.py --no-doc    # measure and print only
    .venv/bin/python bench/bench_marts.py --rows 200000 --days 30 --query-runs 20    # a quick run

Loads go through the real IO managers (``write_frame``: declared types -> Arrow -> COPY / staging + REPLACE PARTITION,
including the row-count check), with the real mart declarations of ``tv_platform/assets/marts.py``:

* a sessions-mart-like frame of ``--rows`` rows for one day, loaded once into an empty table ("first load") and then
  ``--repeat`` times over itself ("partition replace": the previous rows are deleted / swapped out in the same load);
* ``--days`` days of daily aggregates (daily_viewing, channel_rating, hourly_activity, channel_weekday_hour) for the
  dashboards, one load per table.

Dashboard queries run ``--query-runs`` times after one warm-up, as a dashboard would: PostgreSQL as the read-only
role over one open connection; ClickHouse through one open chDB client. Everything lives in a PostgreSQL schema and a
chDB directory of the bench only (dropped at the end), so nobody else's data or engine lock is touched.
"""

import argparse
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from tqdm import tqdm  # noqa: E402

from tv_platform.assets.marts import MARTS  # noqa: E402
from tv_platform.engines.clickhouse import ClickHouseWarehouse  # noqa: E402
from tv_platform.engines.greenplum import GreenplumWarehouse  # noqa: E402
from tv_platform.engines.warehouse import TableSpec  # noqa: E402
from tv_platform.settings import get_settings  # noqa: E402

DOC = ROOT / "docs" / "marts.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
CHANNELS = [f"Канал {i:03d}" for i in range(1, 149)]
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


# ---- frames ---------------------------------------------------------------------------------------------------------------
def sessions_frame(day: str, n: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp(day) + pd.to_timedelta(rng.integers(0, 86_400, n), unit="s")
    seconds = np.minimum(rng.gamma(1.5, 3_600.0, n), 40_000).astype("int64")
    channel = rng.integers(1, 149, n)
    user = rng.integers(1, 1_000_001, n)
    end = start + pd.to_timedelta(seconds, unit="s")
    return pd.DataFrame({
        "dt": day,
        "session_id": pd.Series(rng.integers(0, 2**63 - 1, n, dtype="int64")).map("{:032x}".format),
        "user_id": user,
        "user_name": pd.Series(user).map("Абонент {}".format),
        "channel_id": channel,
        "channel_name": np.array(CHANNELS, dtype=object)[channel - 1],
        "time_start": start.astype("datetime64[s]"),
        "time_end": end.astype("datetime64[s]"),
        "duration_s": seconds,
        "is_zero_length": seconds == 0,
        "crosses_midnight": end.normalize() > start.normalize(),
        "source": np.where(rng.random(n) < 0.9, "history", "stream"),
    })


def aggregate_frames(first: date, days: int, seed: int = 2) -> dict[str, pd.DataFrame]:
    """``days`` days of the four dashboard aggregates, shaped like the lake's (148 channels, 24 hours)."""
    rng = np.random.default_rng(seed)
    dates = [(first + timedelta(days=i)) for i in range(days)]
    dts = [d.isoformat() for d in dates]
    views = rng.integers(8_000, 10_000, days)
    daily = pd.DataFrame({
        "dt": dts, "views": views, "viewers": (views * 0.45).astype("int64"), "active_users": (views * 0.5).astype("int64"),
        "hours_by_start": views * 1.6, "hours_in_day": views * 1.58, "hours_after_day": views * 0.03,
        "hours_carried_in": views * 0.01, "sessions_crossing_midnight": rng.integers(10, 40, days),
        "zero_length_views": rng.integers(30, 60, days), "avg_view_minutes": rng.uniform(90, 100, days),
    })
    c = len(CHANNELS)
    rating = pd.DataFrame({
        "dt": np.repeat(dts, c), "rank": np.tile(np.arange(1, c + 1), days), "channel_id": np.tile(np.arange(1, c + 1), days),
        "channel_name": np.tile(CHANNELS, days), "hours": rng.gamma(2.0, 50.0, days * c),
        "views": rng.integers(1, 500, days * c), "viewers": rng.integers(1, 300, days * c),
        "hours_share": rng.uniform(0, 2, days * c), "viewers_share": rng.uniform(0, 2, days * c),
        "reach_pct": rng.uniform(0, 10, days * c), "avg_view_minutes": rng.uniform(10, 200, days * c),
    })
    hourly = pd.DataFrame({
        "dt": np.repeat(dts, 24), "hour": np.tile(np.arange(24), days), "sessions_active": rng.integers(100, 3_000, days * 24),
        "sessions_started": rng.integers(50, 1_500, days * 24), "viewers": rng.integers(50, 2_000, days * 24),
        "minutes": rng.uniform(1e3, 1e5, days * 24), "avg_concurrent": rng.uniform(10, 1_500, days * 24),
    })
    cells = c * 24
    heat = pd.DataFrame({
        "dt": np.repeat(dts, cells),
        "weekday": np.repeat([d.isoweekday() for d in dates], cells),
        "weekday_name": np.repeat([WEEKDAYS[d.weekday()] for d in dates], cells),
        "hour": np.tile(np.repeat(np.arange(24), c), days), "channel_id": np.tile(np.arange(1, c + 1), 24 * days),
        "channel_name": np.tile(CHANNELS, 24 * days), "minutes": rng.gamma(1.5, 40.0, days * cells),
        "sessions_active": rng.integers(0, 60, days * cells), "viewers": rng.integers(0, 50, days * cells),
    })
    return {"daily_viewing": daily, "channel_rating": rating, "hourly_activity": hourly, "channel_weekday_hour": heat}


# ---- dashboard queries ----------------------------------------------------------------------------------------------------
def dashboard_queries(first: date, days: int, session_day: str) -> dict[str, tuple[str, str, str]]:
    """name -> (what, PostgreSQL SQL, ClickHouse SQL); {s} is the schema / database."""
    last = (first + timedelta(days=days - 1)).isoformat()
    month = (first + timedelta(days=max(days - 30, 0))).isoformat()
    rng = f"dt BETWEEN '{month}' AND '{last}'"
    quarter = f"dt BETWEEN '{first.isoformat()}' AND '{last}'"
    same = lambda sql: (sql, sql)  # noqa: E731
    return {
        "daily_hours_views": ("views and hours per day, last 30 days", *same(
            f"SELECT dt, views, hours_in_day FROM {{s}}.daily_viewing WHERE {rng} ORDER BY dt")),
        "top_channels": ("top 10 channels by hours, last 30 days", *same(
            f"SELECT channel_name, sum(hours) AS h, sum(views) AS v FROM {{s}}.channel_rating WHERE {rng} "
            "GROUP BY channel_name ORDER BY h DESC LIMIT 10")),
        "hourly_activity": ("average concurrent viewers per hour, last 30 days", *same(
            f"SELECT hour, avg(avg_concurrent) AS c FROM {{s}}.hourly_activity WHERE {rng} GROUP BY hour ORDER BY hour")),
        "heatmap": (f"weekday × hour heatmap over all {days} days", *same(
            f"SELECT weekday, hour, sum(minutes) AS m FROM {{s}}.channel_weekday_hour WHERE {quarter} "
            "GROUP BY weekday, hour ORDER BY weekday, hour")),
        "heatmap_channel": ("one channel's weekday × hour heatmap, all days", *same(
            f"SELECT weekday, hour, sum(minutes) AS m FROM {{s}}.channel_weekday_hour WHERE {quarter} AND channel_id = 7 "
            "GROUP BY weekday, hour ORDER BY weekday, hour")),
        "sessions_top_channels": ("drill-down: top channels of one day from the sessions mart", (
            f"SELECT channel_name, count(*) AS views, sum(duration_s) / 3600.0 AS h FROM {{s}}.sessions "
            f"WHERE dt = '{session_day}' GROUP BY channel_name ORDER BY h DESC LIMIT 10"), (
            f"SELECT channel_name, count() AS views, sum(duration_s) / 3600.0 AS h FROM {{s}}.sessions "
            f"WHERE dt = '{session_day}' GROUP BY channel_name ORDER BY h DESC LIMIT 10")),
    }


def time_queries(run, sql: str, runs: int) -> tuple[float, float]:
    run(sql)  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(sql)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


# ---- main ---------------------------------------------------------------------------------------------------------------
def machine() -> str:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f", {kb / 1024 / 1024:.0f} GB RAM"
    except (OSError, AttributeError):
        pass
    return f"{cpu}, {os.cpu_count()} CPUs{mem}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the sessions-mart frame (default 1 000 000)")
    ap.add_argument("--repeat", type=int, default=3, help="partition-replace loads per warehouse (default 3)")
    ap.add_argument("--days", type=int, default=90, help="days of aggregates behind the dashboards (default 90)")
    ap.add_argument("--query-runs", type=int, default=30, help="timed runs per dashboard query (default 30)")
    ap.add_argument("--clickhouse-url", default="", help="ClickHouse to use (default: a temporary chDB directory)")
    ap.add_argument("--no-doc", action="store_true", help=f"do not update {DOC.relative_to(ROOT)}")
    args = ap.parse_args(argv)

    import psycopg2

    from tv_platform.stack.postgres import PostgresService

    s = get_settings()
    suffix = uuid.uuid4().hex[:8]
    schema = f"bench_marts_{suffix}"
    admin = PostgresService(s).admin_connect(s.gp_database)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}" AUTHORIZATION "{s.gp_loader_user}"')
        cur.execute("SELECT version()")
        pg_version = cur.fetchone()[0].split(" on ")[0]
    tmp = Path(tempfile.mkdtemp(prefix="bench_marts_"))
    ch_url = args.clickhouse_url or f"chdb://{tmp / 'chdb'}"
    gp = GreenplumWarehouse(host=s.gp_host, port=s.gp_port, database=s.gp_database, schema_name=schema,
                            user=s.gp_loader_user, password=s.gp_loader_password, reader_role=s.gp_reader_user,
                            dialect=s.gp_dialect)
    ch = ClickHouseWarehouse(url=ch_url, database=schema)
    io = {"greenplum": gp, "clickhouse": ch}
    day = "2023-09-23"
    first = date(2023, 7, 1)
    results: dict = {"load": {}, "history": {}, "queries": {}}
    try:
        # ---- loads --------------------------------------------------------------------------------------------------
        with ch.client():  # a new chDB directory is initialised once (system tables): not part of any load
            pass
        frame = sessions_frame(day, args.rows)
        steps = 2 * (1 + args.repeat)
        with tqdm(total=steps, desc="sessions loads", unit="load") as bar:
            for name, manager in io.items():
                spec = TableSpec.from_metadata("sessions", MARTS["sessions"].metadata(name))
                runs = []
                for i in range(1 + args.repeat):
                    t0 = time.perf_counter()
                    meta = manager.write_frame(spec, frame, [day])
                    wall = time.perf_counter() - t0
                    assert meta["rows"].value == len(frame)
                    runs.append(wall)
                    bar.update()
                results["load"][name] = {"first": runs[0], "replace": statistics.median(runs[1:]) if args.repeat else None,
                                         "replace_best": min(runs[1:]) if args.repeat else None}
        aggregates = aggregate_frames(first, args.days)
        keys = [(first + timedelta(days=i)).isoformat() for i in range(args.days)]
        with tqdm(total=2 * len(aggregates), desc=f"{args.days} days of aggregates", unit="table") as bar:
            for name, manager in io.items():
                total_rows, total_s = 0, 0.0
                for table, agg in aggregates.items():
                    spec = TableSpec.from_metadata(table, MARTS[table].metadata(name))
                    t0 = time.perf_counter()
                    manager.write_frame(spec, agg, keys)
                    total_s += time.perf_counter() - t0
                    total_rows += len(agg)
                    bar.update()
                results["history"][name] = (total_rows, total_s)
        with admin.cursor() as cur:  # what autovacuum would do: fresh statistics for the planner
            for table in ["sessions", *aggregates]:
                cur.execute(f'VACUUM ANALYZE "{schema}"."{table}"')

        # ---- dashboard queries -------------------------------------------------------------------------------------------
        queries = dashboard_queries(first, args.days, day)
        reader = psycopg2.connect(s.gp_dsn("reader"))
        reader.autocommit = True
        try:
            with reader.cursor() as cur, ch.client() as client:
                def run_pg(sql):
                    cur.execute(sql.format(s=f'"{schema}"'))
                    return cur.fetchall()

                def run_ch(sql):
                    return client.query(sql.format(s=schema)).result_rows

                for name, (what, pg_sql, ch_sql) in tqdm(queries.items(), desc="dashboard queries", unit="query"):
                    a, b = run_pg(pg_sql), run_ch(ch_sql)
                    assert len(a) == len(b), (name, len(a), len(b))
                    results["queries"][name] = (what, time_queries(run_pg, pg_sql, args.query_runs),
                                                time_queries(run_ch, ch_sql, args.query_runs))
        finally:
            reader.close()
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
        if args.clickhouse_url:
            try:
                with ch.client() as client:
                    client.command(f"DROP DATABASE IF EXISTS `{schema}`")
            except Exception:  # noqa: BLE001
                pass
        shutil.rmtree(tmp, ignore_errors=True)

    import chdb

    versions = f"{pg_version}; chDB {chdb.__version__} ({'embedded' if ch_url.startswith('chdb:') else 'server'})"
    text = report(args, results, versions)
    print(text)
    if not args.no_doc:
        update_doc(text)
        print(f"\nupdated {DOC.relative_to(ROOT)}")
    return 0


def report(args, results, versions: str) -> str:
    n = args.rows
    load1, load5, _ = os.getloadavg()
    lines = [
        f"Measured {datetime.now():%Y-%m-%d %H:%M} with `bench/bench_marts.py --rows {n} --repeat {args.repeat} "
        f"--days {args.days} --query-runs {args.query_runs}` on {machine()}; {versions}. The local stack (Kafka, "
        f"HDFS, Spark, PostgreSQL) was running alongside; load average at the end {load1:.1f} (1 min) / {load5:.1f} "
        "(5 min) on 2 cores — other work was sharing the machine, so treat the numbers as lower bounds.",
        "",
        f"**Loads** — a sessions-mart frame of {n:,} rows (12 columns) for one day through `write_frame` (declared "
        "types → Arrow → load → row-count check → commit/swap); wall-clock time including the conversion:",
        "",
        "| warehouse | first load (create + load) | partition replace (median) | best replace | aim |",
        "|---|---|---|---|---|",
    ]
    aims = {"greenplum": "≥ 200 000 rows/s", "clickhouse": "≥ 1 000 000 rows/s"}
    labels = {"greenplum": "PostgreSQL 15 (Greenplum dialect off): DELETE + COPY in one transaction",
              "clickhouse": "ClickHouse (chDB): staging table + REPLACE PARTITION"}
    for name, r in results["load"].items():
        rep = f"{n / r['replace']:,.0f} rows/s ({r['replace']:.2f} s)" if r["replace"] else "–"
        best = f"{n / r['replace_best']:,.0f} rows/s" if r["replace_best"] else "–"
        lines.append(f"| {labels[name]} | {n / r['first']:,.0f} rows/s ({r['first']:.2f} s) | {rep} | {best} | {aims[name]} |")
    lines += ["", f"Dashboard history: {args.days} days of daily_viewing, channel_rating, hourly_activity and "
              "channel_weekday_hour (" + ", ".join(
                  f"{name}: {rows:,} rows in {secs:.1f} s" for name, (rows, secs) in results["history"].items()) + ").",
              "", f"**Dashboard queries** — milliseconds, median / p95 of {args.query_runs} runs after a warm-up "
              "(PostgreSQL as the read-only role over one connection, after the VACUUM ANALYZE autovacuum would do; "
              "ClickHouse over one open chDB client). Aim: under 100 ms.", "",
              "| query | PostgreSQL median / p95 | ClickHouse median / p95 |", "|---|---|---|"]
    for name, (what, (pg_med, pg_95), (ch_med, ch_95)) in results["queries"].items():
        lines.append(f"| `{name}` — {what} | {pg_med:.1f} / {pg_95:.1f} | {ch_med:.1f} / {ch_95:.1f} |")
    return "\n".join(lines)


def update_doc(text: str) -> None:
    doc = DOC.read_text() if DOC.exists() else f"# Marts\n\n{BEGIN}\n{END}\n"
    if BEGIN not in doc or END not in doc:
        doc = doc.rstrip() + f"\n\n## Benchmark\n\n{BEGIN}\n{END}\n"
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
