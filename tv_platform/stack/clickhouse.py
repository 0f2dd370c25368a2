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

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from tv_platform.engines.clickhouse import (  # noqa: F401 - re-exported: the stack's view of the engine
    LOCK_WAIT_SECONDS,
    ChdbBusy,
    chdb_holder,
    chdb_locked_by_other,
    chdb_path,
    is_chdb,
    open_client,
)
from tv_platform.settings import Settings
from tv_platform.stack.base import Service, StackError

_KEEP = object()


def _open(url: str, **kwargs: Any):
    import clickhouse_connect

    return clickhouse_connect.get_client(dsn=url, **kwargs)


@contextmanager
def clickhouse_client(
    settings: Settings, database: Any = _KEEP, timeout: float = LOCK_WAIT_SECONDS, **kwargs: Any
) -> Iterator[Any]:
    """A clickhouse-connect client for ``TVP_CLICKHOUSE_URL``, closed on exit (:func:`open_client`: with chDB it waits,
    with backoff, up to ``timeout`` seconds while another process holds the data directory).

    ``database`` defaults to ``TVP_CLICKHOUSE_DATABASE`` (``None`` = the server default); it is created if missing.
    """
    db = settings.clickhouse_database if database is _KEEP else database
    try:
        manager = open_client(settings.clickhouse_url, timeout=timeout, **kwargs)
        client = manager.__enter__()
    except ChdbBusy as exc:
        raise StackError("clickhouse", str(exc)) from exc
    try:
        if db:
            client.command(f"CREATE DATABASE IF NOT EXISTS `{db}`")
            client.database = db
        yield client
    finally:
        manager.__exit__(None, None, None)


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
