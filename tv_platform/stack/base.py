"""The machinery shared by every local service: install, start in the background, wait for the protocol, stop.

A service lives under ``<state_dir>``: ``data/<name>/`` for its data, ``logs/<name>.log`` for its output and
``run/<name>.pid`` for the process group the stack started. ``down`` only ever signals process groups recorded there,
so it stops exactly what ``up`` started and nothing else on the machine.

Failures are reported as :class:`StackError` — one line naming the service, the cause and the log file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tv_platform import processes
from tv_platform.processes import StackError, run_checked  # noqa: F401 - the stack's names for them
from tv_platform.settings import Settings, make_state_dir


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


pid_alive = processes.pid_alive


def rss_mb_of_group(pgid: int) -> float:
    """Resident memory of every process in a process group, in MiB (from /proc)."""
    total_kb = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat.rsplit(") ", 1)[1].split()
            if int(fields[2]) != pgid:  # field 5 (pgrp) is index 2 after the comm
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_kb / 1024


@dataclass
class Service:
    """A local service. Subclasses fill in ``install``, ``command``, ``ready`` and ``endpoints``."""

    settings: Settings
    name: str = "service"
    #: seconds to wait for the protocol to answer after start
    start_timeout: float = 120.0

    # ---- paths -------------------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.settings.state_dir / "data" / self.name

    @property
    def log_file(self) -> Path:
        return self.settings.logs_dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.settings.run_dir / f"{self.name}.pid"

    # ---- to be provided ----------------------------------------------------------------------------------------
    def ports(self) -> list[int]:
        """Ports the service listens on (checked to be free before start)."""
        return []

    def install(self, progress: Callable[[str], None]) -> None:
        """Make sure everything the service needs is on the machine (idempotent)."""

    def prepare(self) -> None:
        """One-time initialisation of the data directory (format, initdb...), idempotent."""

    def command(self) -> tuple[list[str], dict[str, str]]:
        """The foreground command that runs the service, and extra environment."""
        raise NotImplementedError

    def ready(self) -> bool:
        """True when the service answers its own protocol (not merely an open port)."""
        raise NotImplementedError

    def after_ready(self) -> None:
        """Provisioning once the service answers (topics, roles, databases)."""

    def endpoints(self) -> dict[str, str]:
        return {}

    def stop_signal(self) -> int:
        return signal.SIGTERM

    def embedded(self) -> bool:
        """True for engines that run inside the client process (no daemon to start)."""
        return False

    # ---- lifecycle ---------------------------------------------------------------------------------------------
    def recorded_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def running(self) -> bool:
        return self.recorded_pid() is not None

    def start(self) -> None:
        """Start in the background and wait until the protocol answers."""
        make_state_dir(self.settings)
        if self.embedded():
            self.prepare()
            self.wait_ready()
            return
        if self.running():
            self.wait_ready()
            self.after_ready()  # idempotent: provisioning a start that timed out but left the service up
            return
        for port in self.ports():
            if port_open(port):
                raise StackError(self.name, f"port {port} is already taken by another process", self.log_file)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv, extra_env = self.command()
        env = {**os.environ, **extra_env}
        with open(self.log_file, "ab") as log:
            log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting: {' '.join(argv)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, cwd=self.data_dir, start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise StackError(self.name, f"cannot run {argv[0]!r}: {exc.strerror}", self.log_file) from None
        self.pid_file.write_text(str(proc.pid))
        self.wait_ready(proc)
        self.after_ready()

    def wait_ready(self, proc: subprocess.Popen | None = None) -> None:
        deadline = time.monotonic() + self.start_timeout
        last_error = ""
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise StackError(
                    self.name, f"exited with code {proc.returncode} before answering{self._log_hint()}", self.log_file
                )
            try:
                if self.ready():
                    return
            except Exception as exc:  # noqa: BLE001 - any protocol error means "not ready yet"
                last_error = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            time.sleep(1.0)
        raise StackError(
            self.name, f"did not answer within {self.start_timeout:.0f}s ({last_error or 'no answer'})", self.log_file
        )

    def _log_hint(self) -> str:
        """The most telling line of the log, to put in the one-line error."""
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-200:]
        except OSError:
            return ""
        for line in reversed(lines):
            low = line.lower()
            if any(k in low for k in ("exception", "error", "address already in use", "fatal")):
                return f": {line.strip()[:240]}"
        return ""

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the recorded process group; True if something was stopped."""
        if self.embedded():
            return False
        pid = self.recorded_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        try:
            os.killpg(pid, self.stop_signal())
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and group_alive(pid):
            time.sleep(0.3)
        if group_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # a killed JVM with gigabytes of heap takes a moment to go, and its sockets with it: wait for both, so that
        # a `start` right after `stop` never finds its own port taken
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and (group_alive(pid) or any(port_open(p) for p in self.ports())):
            time.sleep(0.2)
        self.pid_file.unlink(missing_ok=True)
        return True

    def memory_mb(self) -> float:
        pid = self.recorded_pid()
        return rss_mb_of_group(pid) if pid else 0.0


def group_alive(pgid: int) -> bool:
    """True while any non-zombie process of the group exists."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def apt_install(service: str, packages: list[str], log: Path) -> bool:
    """Install Debian packages when we may (root, apt-get present); False when we may not."""
    from shutil import which

    if os.geteuid() != 0 or which("apt-get") is None or os.environ.get("TVP_NO_APT"):
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_checked(service, ["apt-get", "update", "-q"], log, env=env)
    run_checked(service, ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages], log, env=env)
    return True


def java_bin() -> str:
    """The java executable (JAVA_HOME first); installs OpenJDK 17 from Debian when missing and allowed;
    StackError when there is none."""
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    from shutil import which

    found = which("java")
    if not found and not os.environ.get("TVP_NO_APT") and os.geteuid() == 0 and which("apt-get"):
        from tv_platform.settings import get_settings

        apt_install("java", ["openjdk-17-jre-headless"], get_settings().logs_dir / "java-apt.log")
        found = which("java")
    if not found:
        raise StackError("java", "no Java found: install OpenJDK 17 (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME")
    return found


def log4j2_console(writer: str, pattern: str, loggers: dict[str, str], root: str = "warn", stderr: bool = False,
                   extra: str = "") -> str:
    """A log4j2 properties file that sends everything to the console (the service's log file): the root level,
    ``loggers`` (name → level) and any ``extra`` lines verbatim. ``writer`` names the module that writes it at
    every start (edits are lost)."""
    lines = [f"# written by {writer} at every start; edits are lost", "status = warn", *extra.splitlines(),
             "appender.out.type = Console", "appender.out.name = out",
             *(["appender.out.target = SYSTEM_ERR"] if stderr else []),
             "appender.out.layout.type = PatternLayout", f"appender.out.layout.pattern = {pattern}",
             f"rootLogger.level = {root}", "rootLogger.appenderRef.out.ref = out"]
    for i, (name, level) in enumerate(loggers.items()):
        lines += [f"logger.l{i}.name = {name}", f"logger.l{i}.level = {level}"]
    return "\n".join(lines) + "\n"
