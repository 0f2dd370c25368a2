"""ClickHouse: the embedded chDB engine locally, a ClickHouse server in a cluster.

``TVP_CLICKHOUSE_URL`` decides:

* ``chdb:///abs/path`` — chDB (ClickHouse as a library) through clickhouse-connect's chdb backend. There is no daemon:
  whichever process opens a client *is* the server for as long as it holds one. A chDB data directory can be open in one
  process at a time (it takes a file lock on ``<path>/status``, which holds the owner's PID); closing the last client
  of that process releases it. :func:`clickhouse_client` therefore opens, waits politely while another process holds the
  path, and always closes.
* ``http(s)://user:password@host:port`` — an external ClickHouse server; nothing to start, ``ready`` pings it.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from tv_platform.settings import Settings
from tv_platform.stack.base import Service, StackError, pid_alive

#: how long clickhouse_client waits for another process to let go of a chDB path
LOCK_WAIT_SECONDS = 30.0

_KEEP = object()


def is_chdb(url: str) -> bool:
    return url.startswith("chdb:")


def chdb_path(url: str) -> Path | None:
    """The data directory of a ``chdb:///abs/path`` URL (None for http(s) or in-memory chDB)."""
    if not is_chdb(url):
        return None
    parsed = urlparse(url)
    location = parsed.path if not parsed.netloc else parsed.netloc
    if location in ("", "memory", ":memory:"):
        return None
    return Path(os.path.realpath(location))


def chdb_holder(path: Path) -> int | None:
    """PID of the process that holds a chDB data directory, from the ``status`` file the engine keeps while open."""
    try:
        for line in (path / "status").read_text().splitlines():
            if line.startswith("PID:"):
                pid = int(line.split(":", 1)[1])
                return pid if pid_alive(pid) else None
    except (OSError, ValueError):
        pass
    return None


def _open(url: str, **kwargs: Any):
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=url, **kwargs)


@contextmanager
def clickhouse_client(
    settings: Settings, database: Any = _KEEP, timeout: float = LOCK_WAIT_SECONDS, **kwargs: Any
) -> Iterator[Any]:
    """A clickhouse-connect client for ``TVP_CLICKHOUSE_URL``, closed on exit.

    ``database`` defaults to ``TVP_CLICKHOUSE_DATABASE`` (``None`` = the server default). With chDB the database is
    created if missing (the engine is ours), and opening waits — with backoff, up to ``timeout`` seconds — while another
    process holds the data directory. Extra keyword arguments go to ``clickhouse_connect.get_client``.
    """
    url = settings.clickhouse_url
    db = settings.clickhouse_database if database is _KEEP else database
    if not is_chdb(url):
        client = _open(url, **({"database": db} if db else {}), **kwargs)
        try:
            yield client
        finally:
            client.close()
        return

    path = chdb_path(url)
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        # Wait on the lock first: a failed open makes the engine print "Cannot lock file" to stderr at every try.
        busy = path is not None and chdb_locked_by_other(path)
        if not busy:
            try:
                client = _open(url, **kwargs)
                break
            except Exception:  # noqa: BLE001 - clickhouse_connect ProgrammingError "Unable to open the chdb engine"
                busy = path is not None and chdb_locked_by_other(path)
                if not busy or time.monotonic() + delay > deadline:
                    if busy:
                        _raise_busy(path, timeout)
                    raise
        elif time.monotonic() + delay > deadline:
            _raise_busy(path, timeout)
        time.sleep(delay)
        delay = min(delay * 2, 3.0)
    try:
        if db:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
            client.database = db
        yield client
    finally:
        client.close()


def chdb_locked_by_other(path: Path) -> bool:
    """True while another process holds the chDB directory (the engine keeps an flock on ``<path>/status``)."""
    try:
        fd = os.open(path / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return chdb_holder(path) != os.getpid()  # our own process holding it can open more clients
    finally:
        os.close(fd)


def _raise_busy(path: Path, timeout: float) -> None:
    holder = chdb_holder(path)
    raise StackError(
        "clickhouse", f"the chDB directory {path} is held by process {holder} ({_cmdline(holder)}); "
        f"only one process may open it at a time — gave up after {timeout:.0f}s",
    )


def _cmdline(pid: int | None) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return "?"


@dataclass
class ClickHouseService(Service):
    name: str = "clickhouse"
    start_timeout: float = 45.0

    @property
    def chdb_dir(self) -> Path | None:
        return chdb_path(self.settings.clickhouse_url)

    def embedded(self) -> bool:
        return is_chdb(self.settings.clickhouse_url)

    def endpoints(self) -> dict[str, str]:
        return {"clickhouse": self.settings.clickhouse_url}

    def install(self, progress) -> None:
        import importlib.util

        if importlib.util.find_spec("clickhouse_connect") is None:
            raise StackError(self.name, "clickhouse-connect is not installed: pip install 'clickhouse-connect[chdb]'")
        if self.embedded() and importlib.util.find_spec("chdb") is None:
            raise StackError(self.name, "the chdb engine is not installed: pip install 'clickhouse-connect[chdb]'")

    def prepare(self) -> None:
        if self.chdb_dir is not None:
            self.chdb_dir.mkdir(parents=True, exist_ok=True)

    def ready(self) -> bool:
        if self.embedded():
            with clickhouse_client(self.settings, database=None) as client:
                if client.command("SELECT 1") != 1:
                    return False
                client.command(f"CREATE DATABASE IF NOT EXISTS `{self.settings.clickhouse_database}`")
            return True
        client = _open(self.settings.clickhouse_url, connect_timeout=5, send_receive_timeout=10)
        try:
            return bool(client.ping())
        finally:
            client.close()

    # An external server or an engine inside the client processes: nothing for the stack to run or stop.
    def start(self) -> None:
        self.prepare()
        self.wait_ready()

    def stop(self, timeout: float = 30.0) -> bool:
        return False

    def command(self) -> tuple[list[str], dict[str, str]]:
        raise StackError(self.name, "ClickHouse is not a process of the local stack (chDB is embedded; http(s) is external)")
