"""Throughput of the simulator: events per second of simulated history, of a big day, of the live generator.

    .venv/bin/python bench/bench_simulator.py            # measure, print the table, update docs/simulator.md
    .venv/bin/python bench/bench_simulator.py --no-doc   # measure and print only

Each case runs once untimed (warm-up: reference data and the users' activity table are cached per process), then
``--repeat`` timed runs; the table shows the best and the median run. Only the simulator is timed (no I/O).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tqdm import tqdm  # noqa: E402

from tv_platform.simulator import SimulationParams, live_events, make_users, simulate_day  # noqa: E402

DOC = ROOT / "docs" / "simulator.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Case:
    name: str
    unit: str
    steps: int  # progress-bar steps per run
    run: Callable[[Callable[[], None]], int]  # (tick) -> items produced
    best: float = float("nan")
    median: float = float("nan")
    items: int = 0


def history(users: int, start: date, days: int, seed: int) -> Callable:
    params = SimulationParams(users=users, seed=seed)

    def run(tick) -> int:
        n = 0
        for d in range(days):
            n += len(simulate_day(start + timedelta(days=d), params))
            tick()
        return n

    return run


def live(users: int, day: date, seed: int) -> Callable:
    params = SimulationParams(users=users, seed=seed)

    def run(tick) -> int:
        n = sum(1 for _ in live_events(day, params))
        tick()
        return n

    return run


def users_table(n: int, seed: int) -> Callable:
    def run(tick) -> int:
        out = len(make_users(n, seed))
        tick()
        return out

    return run


def measure(cases: list[Case], repeat: int, progress: bool) -> None:
    total = sum(c.steps * (repeat + 1) for c in cases)
    with tqdm(total=total, unit="step", disable=not progress, desc="bench") as bar:
        for case in cases:
            bar.set_postfix_str(case.name)
            case.run(lambda: bar.update(1))  # warm-up
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                case.items = case.run(lambda: bar.update(1))
                times.append(time.perf_counter() - t0)
            case.best, case.median = min(times), statistics.median(times)


def table(cases: list[Case]) -> str:
    rows = ["| case | items | best s | median s | items/s (best) | items/s (median) |",
            "|---|---:|---:|---:|---:|---:|"]
    for c in cases:
        rows.append(f"| {c.name} | {c.items:,} {c.unit} | {c.best:.3f} | {c.median:.3f} | "
                    f"{c.items / c.best:,.0f} | {c.items / c.median:,.0f} |")
    return "\n".join(rows)


def machine() -> str:
    import numpy
    import pandas

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} CPUs; Python {platform.python_version()}, numpy {numpy.__version__}, "
            f"pandas {pandas.__version__}")


def write_doc(path: Path, text: str) -> None:
    doc = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{text}\n{END}"
    if BEGIN in doc and END in doc:
        doc = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip() + "\n\n## Benchmark\n\n" + block + "\n"
    path.write_text(doc, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small-users", type=int, default=10_000, help="users of the history case (default 10 000)")
    ap.add_argument("--days", type=int, default=7, help="days of the history case (default 7)")
    ap.add_argument("--large-users", type=int, default=1_000_000, help="users of the one-day case (default 1M)")
    ap.add_argument("--live-users", type=int, default=100_000, help="users of the live-generator case (default 100k)")
    ap.add_argument("--start", type=date.fromisoformat, default=date(2023, 9, 16),
                    help="first day (default 2023-09-16, a Saturday: the weekend day is the largest)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case (default 3)")
    ap.add_argument("--doc", type=Path, default=DOC, help=f"markdown file to update (default {DOC.relative_to(ROOT)})")
    ap.add_argument("--no-doc", action="store_true", help="do not update the doc")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)

    cases = [
        Case(f"simulate_day × {args.days} days, {args.small_users:,} users", "events", args.days,
             history(args.small_users, args.start, args.days, args.seed)),
        Case(f"simulate_day × 1 day, {args.large_users:,} users", "events", 1,
             history(args.large_users, args.start, 1, args.seed)),
        Case(f"live_events (dicts) × 1 day, {args.live_users:,} users", "events", 1,
             live(args.live_users, args.start, args.seed)),
        Case(f"make_users({args.large_users:,})", "users", 1, users_table(args.large_users, args.seed)),
    ]
    measure(cases, args.repeat, progress=not args.no_progress)
    result = table(cases)
    stamp = datetime.now().strftime("%Y-%m-%d %H:%M")
    header = (f"Measured {stamp} with `bench/bench_simulator.py` (best and median of {args.repeat} runs after a "
              f"warm-up; first day {args.start.isoformat()}, seed {args.seed}) on {machine()}.")
    print(header + "\n\n" + result)
    if not args.no_doc:
        write_doc(args.doc, header + "\n\n" + result)
        print(f"\nupdated {args.doc}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
