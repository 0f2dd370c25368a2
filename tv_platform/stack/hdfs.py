"""Single-node HDFS: the Hadoop 3.4 mini cluster (NameNode + one DataNode in one JVM), run from Maven jars.

``org.apache.hadoop.mapreduce.MiniHadoopClusterManager -nomr`` starts a ``MiniDFSCluster`` whose storage lives under
``hdfs.minidfs.basedir`` (``<state_dir>/data/hdfs/cluster``): ``name-0-*`` for the NameNode, ``data/data*`` for
the DataNode. ``-format`` is passed only while the NameNode has never been formatted (no ``current/VERSION``);
without it the manager builds the cluster with ``format(false)`` and ``StartupOption.REGULAR``, so files survive a
restart. The NameNode leaves safe mode as soon as the DataNode has reported its blocks (extension 0).

The DataNode binds 127.0.0.1 on ephemeral ports and registers as ``127.0.0.1`` (``dfs.datanode.hostname``), so the
WebHDFS CREATE/OPEN redirects of the NameNode point at an address a client on this machine can reach.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tv_platform.stack.base import Service, StackError, java_bin, port_open
from tv_platform.stack.kafka import heap_mb
from tv_platform.stack.maven import classpath, ensure_jars

LOG4J = """\
# Written by tv_platform/stack/hdfs.py: everything to stdout (the service log file).
log4j.rootLogger=INFO,stdout
log4j.threshold=ALL
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} %-5p %c{2} (%F:%M(%L)) - %m%n
# per-request and per-block chatter
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode.clienttrace=WARN
log4j.logger.org.apache.hadoop.hdfs.server.namenode.FSNamesystem.audit=WARN
log4j.logger.org.apache.hadoop.hdfs.StateChange=WARN
log4j.logger.BlockStateChange=WARN
log4j.logger.org.apache.hadoop.hdfs.server.datanode.DataNode=WARN
log4j.logger.org.apache.hadoop.hdfs.server.blockmanagement=WARN
log4j.logger.org.apache.hadoop.metrics2=WARN
log4j.logger.org.apache.hadoop.util.NativeCodeLoader=ERROR
log4j.logger.org.eclipse.jetty=WARN
log4j.logger.http.requests=WARN
log4j.logger.datanode.webhdfs=WARN
"""

# Jersey (WebHDFS) logs its resource-model warnings through java.util.logging at every start.
JUL = """\
handlers=java.util.logging.ConsoleHandler
.level=WARNING
com.sun.jersey.level=SEVERE
"""


@dataclass
class HdfsService(Service):
    name: str = "hdfs"
    start_timeout: float = 180.0

    # ---- paths / addresses ---------------------------------------------------------------------------------------
    @property
    def base_dir(self) -> Path:
        """``hdfs.minidfs.basedir``: NameNode and DataNode storage."""
        return self.data_dir / "cluster"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j.properties"

    @property
    def jul_file(self) -> Path:
        return self.data_dir / "jul.properties"

    @property
    def client_config_file(self) -> Path:
        """The effective configuration, written by the mini cluster once it runs (handy for Hadoop clients)."""
        return self.data_dir / "hdfs-client-site.xml"

    @property
    def webhdfs(self) -> str:
        return f"http://127.0.0.1:{self.settings.webhdfs_port}/webhdfs/v1"

    def ports(self) -> list[int]:
        return [self.settings.hdfs_rpc_port, self.settings.webhdfs_port]

    def endpoints(self) -> dict[str, str]:
        return {"hdfs": self.settings.hdfs_url, "webhdfs": self.settings.webhdfs_url}

    def formatted(self) -> bool:
        return any(self.base_dir.glob("name-*/current/VERSION"))

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    def install(self, progress: Callable[[str], None] = print) -> None:
        ensure_jars(self.settings, "hdfs", progress)

    def prepare(self) -> None:
        if not self.settings.hdfs_url.startswith("hdfs://"):
            raise StackError(self.name, f"TVP_HDFS_URL is {self.settings.hdfs_url!r}: the local stack serves hdfs:// only")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "tmp").mkdir(exist_ok=True)
        self.log4j_file.write_text(LOG4J)
        self.jul_file.write_text(JUL)

    def hadoop_conf(self) -> dict[str, str]:
        return {
            "hdfs.minidfs.basedir": str(self.base_dir),
            "hadoop.tmp.dir": str(self.data_dir / "tmp"),
            "dfs.permissions.enabled": "false",
            "dfs.replication": "1",
            "dfs.namenode.replication.min": "1",
            # leave safe mode as soon as the one DataNode has reported
            "dfs.namenode.safemode.extension": "0",
            "dfs.namenode.safemode.min.datanodes": "1",
            # WebHDFS redirects go to the DataNode's registered host name: make it reachable
            "dfs.datanode.hostname": "127.0.0.1",
            "dfs.client.use.datanode.hostname": "false",
            "dfs.namenode.datanode.registration.ip-hostname-check": "false",
            "dfs.webhdfs.enabled": "true",
            "hadoop.http.staticuser.user": self.settings.hdfs_user,
            # a single small node
            "dfs.namenode.handler.count": "10",
            "dfs.namenode.service.handler.count": "4",
            "dfs.datanode.handler.count": "4",
            "dfs.datanode.max.transfer.threads": "256",
            "dfs.datanode.du.reserved": "0",
            "dfs.namenode.resource.du.reserved": str(256 * 1024 * 1024),
            "dfs.blockreport.initialDelay": "0",
            "dfs.heartbeat.interval": "3",
            # keep edits small: checkpoint (fsimage save) more often than the default hourly
            "dfs.namenode.checkpoint.period": "600",
        }

    def command(self) -> tuple[list[str], dict[str, str]]:
        s = self.settings
        argv = [
            java_bin(),
            f"-Xmx{s.hdfs_heap}", f"-Xms{min(heap_mb(s.hdfs_heap, self.name), 128)}m",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=100",
            "-XX:MaxMetaspaceSize=160m", "-XX:ReservedCodeCacheSize=64m", "-XX:MaxDirectMemorySize=128m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j.configuration=file:{self.log4j_file}",
            f"-Djava.util.logging.config.file={self.jul_file}",
            f"-Dtest.build.data={self.base_dir}",
            f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
            "-cp", classpath(s, "hdfs"),
            "org.apache.hadoop.mapreduce.MiniHadoopClusterManager",
            "-nomr", "-datanodes", "1",
            "-nnport", str(s.hdfs_rpc_port), "-nnhttpport", str(s.webhdfs_port),
            "-writeConfig", str(self.client_config_file),
        ]
        if not self.formatted():
            argv.append("-format")
        for key, value in self.hadoop_conf().items():
            argv += ["-D", f"{key}={value}"]
        return argv, {"HADOOP_USER_NAME": s.hdfs_user}

    # ---- protocol ----------------------------------------------------------------------------------------------
    def _request(self, method: str, path: str, op: str, timeout: float = 5.0, **params):
        import requests

        url = f"{self.webhdfs}/{path.strip('/')}"
        return requests.request(
            method, url, params={"op": op, "user.name": self.settings.hdfs_user, **params}, timeout=timeout,
            allow_redirects=False,
        )

    def safe_mode(self) -> bool | None:
        """True while the NameNode is in safe mode (from its JMX servlet); None when it does not say."""
        import requests

        r = requests.get(
            f"http://127.0.0.1:{self.settings.webhdfs_port}/jmx",
            params={"qry": "Hadoop:service=NameNode,name=NameNodeInfo"}, timeout=5,
        )
        r.raise_for_status()
        beans = r.json().get("beans") or []
        if not beans:
            return None
        return bool(beans[0].get("Safemode"))

    def ready(self) -> bool:
        if not port_open(self.settings.webhdfs_port):
            return False
        r = self._request("GET", "/", "LISTSTATUS")
        if r.status_code != 200 or "FileStatuses" not in r.json():
            return False
        if self.safe_mode():
            return False
        # the DataNode must be registered for writes to succeed
        return self._live_datanodes() >= 1

    def _live_datanodes(self) -> int:
        import requests

        r = requests.get(
            f"http://127.0.0.1:{self.settings.webhdfs_port}/jmx",
            params={"qry": "Hadoop:service=NameNode,name=FSNamesystemState"}, timeout=5,
        )
        r.raise_for_status()
        beans = r.json().get("beans") or []
        return int(beans[0].get("NumLiveDataNodes", 0)) if beans else 0

    def after_ready(self) -> None:
        for path in (self.settings.lake_root, "/user/hive/warehouse", "/tmp"):
            self._ok(self._request("PUT", path, "MKDIRS", permission="777"), f"mkdir {path}")
            self._ok(self._request("PUT", path, "SETPERMISSION", permission="777"), f"chmod 777 {path}")

    def _ok(self, response, what: str) -> None:
        if response.status_code != 200:
            detail = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
            raise StackError(self.name, f"WebHDFS {what} failed: HTTP {response.status_code} {detail}", self.log_file)
