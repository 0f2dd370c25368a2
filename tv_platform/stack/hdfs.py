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


# ---------------------------------------------------------------------------------------------------------------------
# the cluster profile: a NameNode and three DataNodes, each its own JVM (``hdfs namenode`` / ``hdfs datanode`` from the
# same Hadoop jars the mini cluster uses), replication 3
# ---------------------------------------------------------------------------------------------------------------------
DATANODES = 3


def _site_xml(props: dict[str, str]) -> str:
    from xml.sax.saxutils import escape

    body = "".join(f"  <property><name>{escape(k)}</name><value>{escape(str(v))}</value></property>\n"
                   for k, v in props.items())
    return f'<?xml version="1.0"?>\n<!-- written by tv_platform/stack/hdfs.py at every start -->\n<configuration>\n{body}</configuration>\n'


def cluster_hdfs_conf(settings) -> dict[str, str]:
    """What the NameNode, every DataNode and every client of the cluster profile agree on."""
    return {
        "fs.defaultFS": settings.hdfs_url.rstrip("/"),
        "dfs.replication": str(DATANODES),
        "dfs.namenode.replication.min": "1",
        "dfs.permissions.enabled": "false",
        "dfs.webhdfs.enabled": "true",
        "hadoop.http.staticuser.user": settings.hdfs_user,
        "dfs.namenode.datanode.registration.ip-hostname-check": "false",
        "dfs.datanode.hostname": "127.0.0.1",
        "dfs.client.use.datanode.hostname": "false",
        # a killed DataNode is declared dead after 2 x recheck + 10 x heartbeat = 60 s (default 10.5 min) and its
        # blocks are re-replicated to the others; a write pipeline that loses one goes on with the rest
        "dfs.heartbeat.interval": "3",
        "dfs.namenode.heartbeat.recheck-interval": "15000",
        "dfs.client.block.write.replace-datanode-on-failure.best-effort": "true",
        "dfs.namenode.safemode.extension": "0",
        "dfs.blockreport.initialDelay": "0",
        "dfs.namenode.handler.count": "10",
        "dfs.datanode.handler.count": "4",
        "dfs.datanode.max.transfer.threads": "256",
        "dfs.datanode.du.reserved": "0",
        "dfs.namenode.resource.du.reserved": str(256 * 1024 * 1024),
        "dfs.namenode.checkpoint.period": "600",
    }


@dataclass
class _HdfsDaemon(Service):
    """One Hadoop daemon of the cluster profile: its own conf dir (core-site.xml + hdfs-site.xml) first on the class
    path, log4j to stdout (the service log)."""

    heap: str = "256m"

    @property
    def conf_dir(self) -> Path:
        return self.data_dir / "conf"

    def install(self, progress: Callable[[str], None] = print) -> None:
        ensure_jars(self.settings, "hdfs", progress)

    def own_conf(self) -> dict[str, str]:
        return {}

    def prepare(self) -> None:
        if not self.settings.hdfs_url.startswith("hdfs://"):
            raise StackError(self.name, f"TVP_HDFS_URL is {self.settings.hdfs_url!r}: the local stack serves hdfs:// only")
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "tmp").mkdir(exist_ok=True)
        conf = {**cluster_hdfs_conf(self.settings), "hadoop.tmp.dir": str(self.data_dir / "tmp"), **self.own_conf()}
        core = {k: v for k, v in conf.items() if k.startswith(("fs.", "hadoop."))}
        (self.conf_dir / "core-site.xml").write_text(_site_xml(core))
        (self.conf_dir / "hdfs-site.xml").write_text(_site_xml({k: v for k, v in conf.items() if k not in core}))
        (self.conf_dir / "log4j.properties").write_text(LOG4J)
        (self.conf_dir / "jul.properties").write_text(JUL)

    def java(self, main: str, *args: str) -> list[str]:
        return [
            java_bin(), f"-Xmx{self.heap}", f"-Xms{min(heap_mb(self.heap, self.name), 64)}m",
            "-XX:+UseSerialGC", "-XX:MaxMetaspaceSize=128m", "-XX:ReservedCodeCacheSize=48m",
            "-XX:MaxDirectMemorySize=128m", "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j.configuration=file:{self.conf_dir / 'log4j.properties'}",
            f"-Djava.util.logging.config.file={self.conf_dir / 'jul.properties'}",
            f"-Djava.io.tmpdir={self.data_dir / 'tmp'}",
            "-cp", classpath(self.settings, "hdfs", [self.conf_dir]), main, *args,
        ]

    def _jmx(self, port: int, query: str) -> dict:
        import requests

        r = requests.get(f"http://127.0.0.1:{port}/jmx", params={"qry": query}, timeout=5)
        r.raise_for_status()
        beans = r.json().get("beans") or []
        return beans[0] if beans else {}

    def live_datanodes(self) -> dict[str, dict]:
        """The NameNode's live DataNodes, keyed ``host:xferPort``."""
        import json

        info = self._jmx(self.settings.webhdfs_port, "Hadoop:service=NameNode,name=NameNodeInfo")
        return json.loads(info.get("LiveNodes") or "{}")


@dataclass
class HdfsNameNodeService(_HdfsDaemon, HdfsService):
    name: str = "hdfs-namenode"
    start_timeout: float = 120.0

    def __post_init__(self):
        self.heap = self.settings.hdfs_heap

    def ports(self) -> list[int]:
        return [self.settings.hdfs_rpc_port, self.settings.webhdfs_port]

    def endpoints(self) -> dict[str, str]:
        return {"hdfs (NameNode)": self.settings.hdfs_url, "webhdfs": self.settings.webhdfs_url}

    @property
    def name_dir(self) -> Path:
        return self.data_dir / "name"

    def formatted(self) -> bool:
        return (self.name_dir / "current" / "VERSION").exists()

    def own_conf(self) -> dict[str, str]:
        s = self.settings
        return {
            "dfs.namenode.name.dir": f"file://{self.name_dir}",
            "dfs.namenode.rpc-address": f"127.0.0.1:{s.hdfs_rpc_port}",
            "dfs.namenode.rpc-bind-host": "127.0.0.1",
            "dfs.namenode.http-address": f"127.0.0.1:{s.webhdfs_port}",
            "dfs.namenode.http-bind-host": "127.0.0.1",
            "dfs.namenode.secondary.http-address": "127.0.0.1:0",
            "dfs.namenode.servicerpc-bind-host": "127.0.0.1",
        }

    def prepare(self) -> None:
        _HdfsDaemon.prepare(self)
        if not self.formatted():
            from tv_platform.stack.base import run_checked

            run_checked(self.name, self.java("org.apache.hadoop.hdfs.server.namenode.NameNode", "-format",
                                             "-nonInteractive", "-force"),
                        self.log_file, env={**__import__("os").environ, "HADOOP_USER_NAME": self.settings.hdfs_user})

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self.java("org.apache.hadoop.hdfs.server.namenode.NameNode"), {"HADOOP_USER_NAME": self.settings.hdfs_user}

    def ready(self) -> bool:
        # answering is enough: safe mode ends when the DataNodes (started next) report their blocks
        if not port_open(self.settings.webhdfs_port):
            return False
        r = self._request("GET", "/", "LISTSTATUS")
        return r.status_code == 200 and "FileStatuses" in r.json()

    def after_ready(self) -> None:
        pass

    def provision(self, timeout: float = 120.0) -> None:
        """Once the DataNodes run: wait for the end of safe mode, then make the lake's directories."""
        import time

        deadline = time.monotonic() + timeout
        while self.safe_mode() and time.monotonic() < deadline:
            time.sleep(1)
        if self.safe_mode():
            raise StackError(self.name, f"still in safe mode after {timeout:.0f}s", self.log_file)
        HdfsService.after_ready(self)


@dataclass
class HdfsDataNodeService(_HdfsDaemon):
    node: int = 1
    start_timeout: float = 120.0

    def __post_init__(self):
        self.name = f"hdfs-datanode-{self.node}"
        self.heap = "192m"

    @property
    def xfer_port(self) -> int:
        return self.settings.cluster_port("datanode", self.node - 1)

    def ports(self) -> list[int]:
        return [self.xfer_port, self.xfer_port + 1, self.xfer_port + 2]

    def endpoints(self) -> dict[str, str]:
        return {self.name: f"127.0.0.1:{self.xfer_port}"}

    def own_conf(self) -> dict[str, str]:
        x = self.xfer_port
        return {
            "dfs.datanode.data.dir": f"file://{self.data_dir / 'data'}",
            "dfs.datanode.address": f"127.0.0.1:{x}",
            "dfs.datanode.http.address": f"127.0.0.1:{x + 1}",
            "dfs.datanode.ipc.address": f"127.0.0.1:{x + 2}",
        }

    def command(self) -> tuple[list[str], dict[str, str]]:
        return self.java("org.apache.hadoop.hdfs.server.datanode.DataNode"), {"HADOOP_USER_NAME": self.settings.hdfs_user}

    def ready(self) -> bool:
        return f"127.0.0.1:{self.xfer_port}" in self.live_datanodes()

    def after_ready(self) -> None:
        if self.node == DATANODES:
            HdfsNameNodeService(self.settings).provision()
