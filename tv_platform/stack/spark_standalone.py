"""The cluster profile's Spark: a standalone Master and two Workers, started from pyspark's own jars.

``bin/spark-class org.apache.spark.deploy.master.Master`` / ``...deploy.worker.Worker`` run in the foreground (the
``sbin/start-*.sh`` scripts daemonize, which would hide the process from the stack; ``spark-class`` ends in
``exec``, so the recorded pid is the JVM). Every daemon binds and advertises 127.0.0.1 only (``--host``,
``SPARK_LOCAL_IP``); the executors a worker launches inherit ``SPARK_LOCAL_IP`` and bind there too. The Spark Connect
server (``stack/spark.py``) submits to this master (``TVP_SPARK_MASTER=spark://127.0.0.1:<port>``): its executors
run on the workers.

Each worker offers one core (the machine has two) and enough memory for one executor of
``TVP_SPARK_EXECUTOR_MEMORY``; work files and executor logs live in ``<state_dir>/data/spark-worker-<n>/work``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tv_platform.stack.base import Service, StackError, java_bin, log4j2_console, port_open
from tv_platform.stack.kafka import heap_mb
from tv_platform.stack.spark import SPARK_LOG_PATTERN

WORKERS = 2
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"

_LOG4J2 = log4j2_console("tv_platform.stack.spark_standalone", SPARK_LOG_PATTERN, {"org.apache.spark.deploy": "info"},
                         stderr=True)


def master_port(settings) -> int:
    url = settings.spark_master
    if not url.startswith("spark://"):
        raise StackError("spark-master", f"TVP_SPARK_MASTER is {url!r}, not spark://host:port")
    return int(url.rsplit(":", 1)[1])


@dataclass
class _SparkDaemon(Service):
    def install(self, progress: Callable[[str], None]) -> None:
        from tv_platform.stack.spark import spark_home

        spark_home()
        java_bin()

    def prepare(self) -> None:
        for sub in ("conf", "work", "local", "tmp"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.data_dir / "conf" / "log4j2.properties").write_text(_LOG4J2)
        # read by the daemons from SPARK_CONF_DIR: no REST submission server (it would take the fixed port 6066)
        (self.data_dir / "conf" / "spark-defaults.conf").write_text(
            "# written by tv_platform.stack.spark_standalone at every start\nspark.master.rest.enabled false\n")

    def daemon_env(self) -> dict[str, str]:
        from tv_platform.stack.spark import spark_home

        java = Path(os.path.realpath(java_bin()))
        return {
            "SPARK_HOME": str(spark_home()),
            "SPARK_CONF_DIR": str(self.data_dir / "conf"),
            "JAVA_HOME": str(java.parent.parent),
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.data_dir / "local"),
            "SPARK_DAEMON_MEMORY": self.settings.spark_daemon_heap,
            "SPARK_DAEMON_JAVA_OPTS": f"-Djava.io.tmpdir={self.data_dir / 'tmp'} -XX:+UseSerialGC -Djava.net.preferIPv4Stack=true",
            "PYSPARK_PYTHON": sys.executable,
        }

    def spark_class(self, main: str, *args: str) -> list[str]:
        from tv_platform.stack.spark import spark_home

        return ["env", "-u", "SPARK_REMOTE", str(spark_home() / "bin" / "spark-class"), main, *args]

    def _json(self, port: int) -> dict:
        import requests

        r = requests.get(f"http://127.0.0.1:{port}/json/", timeout=5)
        r.raise_for_status()
        return r.json()


@dataclass
class SparkMasterService(_SparkDaemon):
    name: str = "spark-master"
    start_timeout: float = 90.0

    @property
    def ui_port(self) -> int:
        return self.settings.cluster_port("spark_master_ui")

    def ports(self) -> list[int]:
        return [master_port(self.settings), self.ui_port]

    def endpoints(self) -> dict[str, str]:
        return {"spark master": self.settings.spark_master, "spark master UI": f"http://127.0.0.1:{self.ui_port}"}

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = self.spark_class(MASTER_CLASS, "--host", "127.0.0.1", "--port", str(master_port(self.settings)),
                                "--webui-port", str(self.ui_port))
        return argv, self.daemon_env()

    def state(self) -> dict:
        """The master's view (``/json/``): status, workers (with their state), applications."""
        return self._json(self.ui_port)

    def alive_workers(self) -> list[dict]:
        return [w for w in self.state().get("workers", []) if w.get("state") == "ALIVE"]

    def ready(self) -> bool:
        return port_open(master_port(self.settings)) and self.state().get("status") == "ALIVE"


@dataclass
class SparkWorkerService(_SparkDaemon):
    node: int = 1
    start_timeout: float = 90.0

    def __post_init__(self):
        self.name = f"spark-worker-{self.node}"

    @property
    def port(self) -> int:
        return self.settings.cluster_port("spark_worker", self.node - 1)

    @property
    def ui_port(self) -> int:
        return self.port + 1

    def ports(self) -> list[int]:
        return [self.port, self.ui_port]

    def endpoints(self) -> dict[str, str]:
        return {self.name: f"127.0.0.1:{self.port} (UI http://127.0.0.1:{self.ui_port})"}

    def command(self) -> tuple[list[str], dict[str, str]]:
        # room for one executor and its overhead (max(384 MiB, 10 %))
        mem = heap_mb(self.settings.spark_executor_memory, self.name)
        mem += max(384, mem // 10)
        argv = self.spark_class(WORKER_CLASS, "--host", "127.0.0.1", "--port", str(self.port),
                                "--webui-port", str(self.ui_port), "--cores", "1", "--memory", f"{mem}m",
                                "--work-dir", str(self.data_dir / "work"), self.settings.spark_master)
        return argv, self.daemon_env()

    def ready(self) -> bool:
        if not port_open(self.ui_port):
            return False
        me = f"127.0.0.1:{self.port}"
        return any(w.get("state") == "ALIVE" and me in (w.get("host", "") + ":" + str(w.get("port", "")))
                   for w in SparkMasterService(self.settings).state().get("workers", []))
