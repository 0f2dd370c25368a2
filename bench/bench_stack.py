"""Benchmark: cold and warm `tv-platform stack up`, and each service's memory once everything is up.

    python bench/bench_stack.py [--state-dir DIR] [--cold-cache]

cold  = a new state directory (HDFS formatted, Kafka storage formatted, initdb, Derby created); jars come from the
        cache unless --cold-cache points TVP_CACHE_DIR at an empty directory too (then Maven downloads them);
warm  = `down` then `up` again on the same state.
Uses non-default ports? No: run it with the default stack down (it refuses taken ports).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent


def cli(env, *args) -> float:
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "tv_platform.cli", *args], env=env, check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def memory(env) -> dict[str, float]:
    code = ("from tv_platform.stack import services; from tv_platform.settings import Settings; "
            "import json; print(json.dumps({s.name: s.memory_mb() for s in services(Settings.from_env())}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True, cwd=ROOT)
    import json

    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state-dir", default=None)
    ap.add_argument("--cold-cache", action="store_true")
    args = ap.parse_args()
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="tvp-bench-"))
    env = dict(os.environ, TVP_STATE_DIR=str(state))
    if args.cold_cache:
        env["TVP_CACHE_DIR"] = str(state / "cache")
    results = {}
    steps = ["cold up", "down", "warm up", "memory", "down"]
    with tqdm(total=len(steps), desc="stack bench") as bar:
        results["cold"] = cli(env, "stack", "up"); bar.update()
        cli(env, "stack", "down"); bar.update()
        results["warm"] = cli(env, "stack", "up"); bar.update()
        mem = memory(env); bar.update()
        cli(env, "stack", "down"); bar.update()
    print(f"\nstack up: cold {results['cold']:.1f} s, warm {results['warm']:.1f} s")
    print("RSS once up (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in mem.items()))
    print(f"total {sum(mem.values()):.0f} MiB of {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
