"""One long-lived Spark Connect server, run from pyspark's own jars, holding the Hive metastore.

Every Dagster step is a thin Spark Connect client (``sc://127.0.0.1:15002``); the one server owns the driver, the
``local[2]`` executors and the Hive catalog. The catalog lives in embedded Derby under ``<state_dir>/data/spark``
(Derby admits one JVM, which is why there is exactly one server), or in an external Hive Metastore when
``TVP_HIVE_METASTORE_URI`` is set. Managed tables go to ``<TVP_HDFS_URL>/user/hive/warehouse``.

The server is started in the foreground through ``bin/spark-submit`` (``sbin/start-connect-server.sh`` daemonizes,
which would hide the process from the stack); ``spark-class`` ends in ``exec``, so the recorded pid is the JVM.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from tv_platform.stack.base import Service, StackError, java_bin, log4j2_console, port_open

#: the Hive metastore client Spark loads in the cluster profile (the server: hive-standalone-metastore-server 4.0.1)
HIVE_CLIENT_VERSION = "4.0.1"
CONNECT_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"
SPARK_LOG_PATTERN = "%d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex"  # the Spark daemons' log lines (to stderr)

_LOG4J2 = log4j2_console("tv_platform.stack.spark", SPARK_LOG_PATTERN, {
    "org.apache.spark.sql.connect.service.SparkConnectServer": "info",
    "org.apache.hadoop.hive.metastore.ObjectStore": "error"}, stderr=True)

# Runs in a child interpreter so that a client that retries (the Connect client's default policy waits for minutes)
# or hangs can be killed by a timeout without touching the calling process.
_PROBE = """\
import sys
from pyspark.sql import SparkSession
from pyspark.sql.connect.client.retries import DefaultPolicy
spark = SparkSession.builder.remote(sys.argv[1]).getOrCreate()
try:
    spark.client.set_retry_policies([DefaultPolicy(max_retries=2, max_backoff=1000)])
except Exception:
    pass
for statement in sys.argv[2:]:
    spark.sql(statement).collect()
# stop() releases the session before the asynchronous ReleaseExecute calls finish, which makes the server log
# INVALID_HANDLE.SESSION_CLOSED stack traces; wait for them first
import concurrent.futures
concurrent.futures.wait(getattr(spark.client, "_release_futures", ()), timeout=10)
spark.stop()
"""


_ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception)\b[^:]*: ")


def spark_home() -> Path:
    """The pyspark installation, which is a complete Spark distribution (bin/, jars/)."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or not spec.origin:
        raise StackError("spark", "pyspark is not installed in this environment: pip install 'pyspark[connect]'")
    return Path(spec.origin).parent


@dataclass
class SparkConnectService(Service):
    name: str = "spark"
    start_timeout: float = 180.0
    #: seconds one protocol probe (a child interpreter running SQL over Spark Connect) may take
    probe_timeout: float = 60.0

    # ---- paths -------------------------------------------------------------------------------------------------
    @property
    def metastore_db(self) -> Path:
        return self.data_dir / "metastore_db"

    @property
    def warehouse_dir(self) -> str:
        return self.settings.hdfs_url.rstrip("/") + "/user/hive/warehouse"

    def ports(self) -> list[int]:
        return [self.settings.spark_port]

    def endpoints(self) -> dict[str, str]:
        catalog = self.settings.hive_metastore_uri or f"embedded Derby {self.metastore_db}"
        return {"spark connect": self.settings.spark_remote, "spark master": self.settings.spark_master, "hive metastore": catalog, "hive warehouse": self.warehouse_dir}

    # ---- install -----------------------------------------------------------------------------------------------
    def install(self, progress: Callable[[str], None]) -> None:
        home = spark_home()
        if not list((home / "jars").glob("spark-connect_*.jar")):
            raise StackError(self.name, f"pyspark at {home} has no spark-connect jar: pip install 'pyspark[connect]'")
        for module in ("grpc", "pyarrow", "google.protobuf"):
            if importlib.util.find_spec(module) is None:
                raise StackError(self.name, f"the Spark Connect client needs {module!r}: pip install 'pyspark[connect]'")
        java_bin()
        if self.settings.profile == "cluster":
            from tv_platform.stack.maven import ensure_jars

            ensure_jars(self.settings, "hive-client", progress)

    # ---- run -----------------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("conf", "derby", "local"):
            (self.data_dir / sub).mkdir(exist_ok=True)
        (self.data_dir / "conf" / "log4j2.properties").write_text(_LOG4J2)
        url = urlparse(self.settings.hdfs_url)
        if url.scheme == "file":
            # Hive creates the warehouse directory itself on HDFS, but make the local case obvious and early
            Path(urlparse(self.warehouse_dir).path).mkdir(parents=True, exist_ok=True)
        elif url.scheme == "hdfs" and url.port and not port_open(url.port, url.hostname or "127.0.0.1", timeout=2.0):
            # the warehouse lives there; without it the catalog would only fail after minutes of client retries
            raise StackError(
                self.name, f"HDFS is not reachable at {self.settings.hdfs_url} (the Hive warehouse lives there): "
                "start it first (tv-platform stack up starts hdfs before spark)",
            )

    def spark_conf(self) -> dict[str, str]:
        s = self.settings
        conf = {
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(s.spark_port),
            "spark.connect.grpc.port.maxRetries": "0",  # fail on a taken port instead of silently moving
            "spark.sql.shuffle.partitions": str(s.spark_shuffle_partitions),
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.catalogImplementation": "hive",
            "spark.sql.warehouse.dir": self.warehouse_dir,
            "spark.sql.sources.partitionOverwriteMode": "dynamic",
            "spark.hadoop.hive.exec.dynamic.partition": "true",
            "spark.hadoop.hive.exec.dynamic.partition.mode": "nonstrict",
        }
        if s.hdfs_url.startswith("hdfs://"):
            conf["spark.hadoop.fs.defaultFS"] = s.hdfs_url.rstrip("/")
        if s.spark_master.startswith("spark://"):
            # a standalone master (the cluster profile): one single-core executor per worker
            conf.update({
                "spark.executor.memory": s.spark_executor_memory,
                "spark.executor.cores": "1",
                "spark.cores.max": "2",
                # a lost executor (its worker killed) is not a reason to fail the application
                "spark.deploy.maxExecutorRetries": "-1",
            })
        if s.profile == "cluster":
            from tv_platform.stack.hdfs import cluster_hdfs_conf

            for key, value in cluster_hdfs_conf(s).items():
                conf[f"spark.hadoop.{key}"] = value
        if s.profile == "cluster":
            # the metastore service is Hive 4.0.1; pyspark's built-in 2.3.10 client calls thrift methods it no
            # longer has (get_table), so Spark loads a 4.0.1 client (stack/jvm/hive-client) in its isolated loader
            from tv_platform.stack.maven import jars_dir

            conf["spark.sql.hive.metastore.version"] = HIVE_CLIENT_VERSION
            conf["spark.sql.hive.metastore.jars"] = "path"
            conf["spark.sql.hive.metastore.jars.path"] = f"file://{jars_dir(s, 'hive-client')}/*.jar"
        if s.hive_metastore_uri:
            conf["spark.hadoop.hive.metastore.uris"] = s.hive_metastore_uri
            # fail a statement within a minute when the metastore service is down (the default retries ~10 min)
            conf["spark.hadoop.hive.metastore.failure.retries"] = "2"
            conf["spark.hadoop.hive.metastore.client.connect.retry.delay"] = "2s"
            conf["spark.hadoop.hive.metastore.client.socket.timeout"] = "60s"
        else:
            conf["spark.hadoop.javax.jdo.option.ConnectionURL"] = (
                f"jdbc:derby:;databaseName={self.metastore_db};create=true"
            )
        return conf

    def command(self) -> tuple[list[str], dict[str, str]]:
        home = spark_home()
        java = Path(os.path.realpath(java_bin()))
        argv = [
            # a SPARK_REMOTE in the caller's environment would turn spark-submit into a Connect *client*
            "env", "-u", "SPARK_REMOTE",
            str(home / "bin" / "spark-submit"),
            "--class", CONNECT_SERVER_CLASS,
            "--name", "tv_platform Spark Connect",
            "--master", self.settings.spark_master,
            "--driver-memory", self.settings.spark_driver_memory,
            "--driver-java-options", f"-Dderby.system.home={self.data_dir / 'derby'}",
        ]
        for key, value in self.spark_conf().items():
            argv += ["--conf", f"{key}={value}"]
        env = {
            "SPARK_HOME": str(home),
            "SPARK_CONF_DIR": str(self.data_dir / "conf"),  # holds only our log4j2.properties
            "JAVA_HOME": str(java.parent.parent),
            "SPARK_CONNECT_MODE": "0",
            "PYSPARK_PYTHON": sys.executable,
            "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOCAL_DIRS": str(self.data_dir / "local"),  # shuffle and spill files
        }
        return argv, env

    # ---- protocol ------------------------------------------------------------------------------------------------
    def probe(self, *statements: str, timeout: float | None = None) -> None:
        """Run SQL over Spark Connect in a child interpreter; raise with the client's last line on failure."""
        # a different SPARK_REMOTE in the environment makes the builder refuse .remote(url)
        env = {k: v for k, v in os.environ.items() if k != "SPARK_REMOTE"}
        try:
            proc = subprocess.run(
                [sys.executable, "-W", "ignore", "-c", _PROBE, self.settings.spark_remote, *statements],
                capture_output=True, text=True, timeout=timeout or self.probe_timeout, env=env,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"Spark Connect did not answer {statements!r} within {timeout or self.probe_timeout:.0f}s") from None
        if proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            telling = [ln for ln in lines if _ERROR_LINE.match(ln)] or lines or ["no output"]
            details = [ln for ln in lines if ln.startswith("details = ")]  # gRPC failures put the cause there
            raise RuntimeError(" ".join([telling[-1], *details[-1:]])[:300])

    def ready(self) -> bool:
        if not port_open(self.settings.spark_port):
            return False
        self.probe("select 1")
        return True

    def after_ready(self) -> None:
        """Touch the catalog once, so a broken metastore or warehouse shows at start rather than in the first run."""
        try:
            self.probe("show databases")
        except Exception as exc:  # noqa: BLE001
            raise StackError(self.name, f"the Hive catalog does not answer: {exc}".splitlines()[0], self.log_file) from None
