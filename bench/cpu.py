"""Where the CPU goes during a benchmark: CPU seconds of every process on the machine, summed by role.

    with CpuByRole() as cpu:
        ...                      # the measured work
    print(cpu.report(events=n))  # a table: role, CPU s, share, µs per event

A thread samples every process's user + system time (psutil) twice a second and keeps, per process, the last value
it saw; a process that ends between two samples loses at most half a second (a landing run lives for seconds). Roles
come from a process's command line; anything not recognised is ``other``.
"""

from __future__ import annotations

import os
import threading
import time

ROLES = (  # (role, words of the command line that name it), first match wins
    # the code server starts each run in a process of its own (multiprocessing's spawn), `dagster api` otherwise
    ("runs", ("multiprocessing.spawn", "execute_run", "execute_step")),
    ("kafka broker", ("kafka.Kafka",)),
    ("hdfs", ("MiniHadoopClusterManager", "NameNode", "DataNode")),
    ("spark", ("SparkConnectServer", "org.apache.spark")),
    ("postgres", ("postgres",)),
    ("dagster daemon, webserver, code server", ("dagster", "dagster-webserver", "dagster-daemon", "api grpc")),
)


def role_of(cmdline: list[str], own_pid: int, pid: int) -> str:
    if pid == own_pid:
        return "benchmark (producer, polling)"
    text = " ".join(cmdline)
    for role, words in ROLES:
        if any(w in text for w in words):
            return role
    return "other"


class CpuByRole:
    def __init__(self, interval_s: float = 0.5):
        self.interval_s = interval_s
        self._seen: dict[int, tuple[str, float, float]] = {}  # pid → (role, CPU s at start, CPU s last seen)
        self._names: dict[int, str] = {}  # pid → its command (for ``other``)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.wall_s = 0.0

    def __enter__(self) -> "CpuByRole":
        self._t0 = time.monotonic()
        self._sample(first=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        self.wall_s = time.monotonic() - self._t0

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def _sample(self, first: bool = False) -> None:
        import psutil

        own = os.getpid()
        for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
            info = proc.info
            times = info.get("cpu_times")
            if times is None:
                continue
            used = times.user + times.system
            pid = info["pid"]
            if pid in self._seen:
                role, start, _ = self._seen[pid]
                if role == "other":  # seen between fork and exec: its command line may only now be its own
                    role = role_of(info.get("cmdline") or [], own, pid)
                self._seen[pid] = (role, start, used)
            else:
                # a process already running at the start counts from there; one born later counts from zero
                self._seen[pid] = (role_of(info.get("cmdline") or [], own, pid), used if first else 0.0, used)
                self._names[pid] = " ".join(info.get("cmdline") or [])[:80]

    def by_role(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for role, start, last in self._seen.values():
            totals[role] = totals.get(role, 0.0) + max(last - start, 0.0)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    def report(self, events: int) -> str:
        totals = self.by_role()
        cores = os.cpu_count() or 1
        whole = sum(totals.values())
        lines = [f"CPU by role over {self.wall_s:.1f} s of wall time ({cores} cores = {cores * self.wall_s:.0f} CPU s "
                 f"available; {whole:.0f} CPU s used, {100 * whole / (cores * self.wall_s):.0f} %):",
                 "| role | CPU s | share | µs per event |", "|---|---|---|---|"]
        for role, used in totals.items():
            if used >= 0.05:
                lines.append(f"| {role} | {used:.1f} | {100 * used / whole:.0f} % | {1e6 * used / max(events, 1):.1f} |")
        others: dict[str, float] = {}
        for pid, (role, start, last) in self._seen.items():
            if role == "other":
                others[self._names.get(pid, "?")] = others.get(self._names.get(pid, "?"), 0.0) + last - start
        top = sorted(others.items(), key=lambda kv: -kv[1])[:3]
        if top and top[0][1] >= 1:
            lines.append("| (other: " + "; ".join(f"`{n}` {s:.0f} s" for n, s in top) + ") | | | |")
        lines.append(f"| **all** | {whole:.1f} | 100 % | {1e6 * whole / max(events, 1):.1f} |")
        return "\n".join(lines)
