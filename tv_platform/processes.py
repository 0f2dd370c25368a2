"""Processes of this machine, as the stack, the engines and the CLI see them: the error every service reports, running
a setup command, whether a process is alive. A neutral module: ``tv_platform/stack/`` (the services' lifecycle) and
``tv_platform/engines/`` (clients of the services) both import it; engines never import the stack."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


class StackError(RuntimeError):
    """One clear line: which service, what went wrong, where to look."""

    def __init__(self, service: str, cause: str, log: Path | None = None):
        self.service, self.cause, self.log = service, cause, log
        where = f" (log: {log})" if log else ""
        super().__init__(f"{service}: {cause}{where}")


def run_checked(service: str, argv: list[str], log: Path, **kwargs) -> subprocess.CompletedProcess:
    """Run a setup command, appending its output to the service log; StackError on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} $ {' '.join(argv)}\n".encode())
        out.flush()
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
        except FileNotFoundError:
            raise StackError(service, f"{argv[0]!r} is not installed", log) from None
    if proc.returncode != 0:
        raise StackError(service, f"`{' '.join(argv[:3])} ...` failed with code {proc.returncode}", log)
    return proc


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True
