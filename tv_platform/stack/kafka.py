"""Apache Kafka 4.1 as a single KRaft node (broker and controller in one JVM), run from Maven jars.

Layout under ``<state_dir>/data/kafka/``: ``server.properties`` and ``log4j2.properties`` (rewritten at every start
from the settings), ``kraft-logs/`` (topic partitions and the metadata log; ``meta.properties`` there marks the
storage as formatted — it is formatted once, never again, so topics and messages survive a restart).

The controller quorum is static (``controller.quorum.voters=1@127.0.0.1:<controller port>``), so the storage is
formatted without ``--standalone``.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tv_platform.stack.base import Service, StackError, java_bin, port_open, run_checked
from tv_platform.stack.maven import classpath, ensure_jars

NODE_ID = 1

LOG4J2 = """\
# Written by tv_platform/stack/kafka.py: everything to stdout (the service log file).
status = warn
# keep logging while Kafka shuts down (its own hook runs after log4j's otherwise)
shutdownHook = disable
appender.out.type = Console
appender.out.name = STDOUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
# the request log and the state change log are very chatty at INFO/TRACE
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


def _cluster_id() -> str:
    """A Kafka cluster id: a random UUID in URL-safe base64 without padding (as ``kafka-storage random-uuid``)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def heap_mb(heap: str, service: str = "kafka") -> int:
    """'512m' / '1g' / '786432k' -> MiB (StackError naming ``service`` when unreadable)."""
    h = heap.strip().lower()
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    try:
        if h[-1] in units:
            return max(1, int(float(h[:-1]) * units[h[-1]]))
        return max(1, int(h) // (1024 * 1024))
    except (ValueError, IndexError):
        raise StackError(service, f"cannot read heap size {heap!r} (use e.g. 512m or 1g)") from None


@dataclass
class KafkaService(Service):
    name: str = "kafka"
    start_timeout: float = 120.0

    # ---- paths / addresses ---------------------------------------------------------------------------------------
    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.data_dir / "log4j2.properties"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.settings.kafka_port}"

    def ports(self) -> list[int]:
        return [self.settings.kafka_port, self.settings.kafka_controller_port]

    def endpoints(self) -> dict[str, str]:
        return {"kafka": self.bootstrap}

    # ---- lifecycle -----------------------------------------------------------------------------------------------
    def install(self, progress: Callable[[str], None] = print) -> None:
        ensure_jars(self.settings, "kafka", progress)

    def _classpath(self) -> str:
        return classpath(self.settings, "kafka")

    def _jvm_flags(self, heap: str, initial: str) -> list[str]:
        return [
            f"-Xmx{heap}", f"-Xms{initial}",
            "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent", "-XX:MaxInlineLevel=15",
            "-XX:MaxMetaspaceSize=128m", "-XX:ReservedCodeCacheSize=64m", "-XX:MaxDirectMemorySize=128m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.data_dir}",
        ]

    def server_properties(self) -> str:
        s = self.settings
        port, cport = s.kafka_port, s.kafka_controller_port
        props = {
            "process.roles": "broker,controller",
            "node.id": NODE_ID,
            "controller.quorum.voters": f"{NODE_ID}@127.0.0.1:{cport}",
            "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": self.log_dir,
            "num.partitions": s.kafka_partitions,
            "default.replication.factor": 1,
            "min.insync.replicas": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 3,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "transaction.state.log.num.partitions": 3,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            # topics are created explicitly (the events topic by after_ready)
            "auto.create.topics.enable": "false",
            # events carry their own (possibly years old, simulated) timestamps: time retention would delete them
            "log.retention.ms": -1,
            "log.retention.bytes": -1,
            "group.initial.rebalance.delay.ms": 0,
            # small machine
            "num.network.threads": 2,
            "num.io.threads": 2,
            "num.recovery.threads.per.data.dir": 1,
            "background.threads": 2,
            "log.cleaner.threads": 1,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
            "socket.request.max.bytes": 104857600,
        }
        lines = ["# Written by tv_platform/stack/kafka.py at every start; edit the settings, not this file."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    def formatted(self) -> bool:
        return (self.log_dir / "meta.properties").exists()

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        self.log4j_file.write_text(LOG4J2)
        if self.formatted():
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            java_bin(), *self._jvm_flags("256m", "32m"), "-cp", self._classpath(),
            "kafka.tools.StorageTool", "format",
            "-t", _cluster_id(), "-c", str(self.properties_file), "--ignore-formatted",
        ]
        run_checked(self.name, argv, self.log_file, cwd=self.data_dir)
        if not self.formatted():
            raise StackError(self.name, f"storage format wrote no meta.properties in {self.log_dir}", self.log_file)

    def command(self) -> tuple[list[str], dict[str, str]]:
        heap = self.settings.kafka_heap
        initial = f"{min(heap_mb(heap), 128)}m"
        argv = [
            java_bin(), *self._jvm_flags(heap, initial), "-cp", self._classpath(),
            "kafka.Kafka", str(self.properties_file),
        ]
        return argv, {}

    # ---- protocol --------------------------------------------------------------------------------------------
    def _admin(self):
        return _admin_client(
            bootstrap_servers=self.bootstrap,
            client_id="tv-platform-stack",
            request_timeout_ms=5000,
            bootstrap_timeout_ms=3000,
            connections_max_idle_ms=10000,
        )

    def ready(self) -> bool:
        if not port_open(self.settings.kafka_port):
            return False
        admin = self._admin()
        try:
            cluster = admin.describe_cluster()
            brokers = cluster.get("brokers") or []
            live = [
                b for b in brokers
                if int(b.get("broker_id", b.get("node_id", -1))) == NODE_ID and not b.get("is_fenced", False)
            ]
            return bool(live) and cluster.get("controller_id", -1) not in (-1, None)
        finally:
            admin.close()

    def after_ready(self) -> None:
        self.ensure_topic(self.settings.kafka_topic, self.settings.kafka_partitions)

    def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions unless it exists (idempotent)."""
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = self._admin()
        try:
            if topic in admin.list_topics():
                return
            try:
                admin.create_topics([NewTopic(topic, partitions, 1)], timeout_ms=15000)
            except TopicAlreadyExistsError:
                pass
        except Exception as exc:  # noqa: BLE001
            raise StackError(self.name, f"cannot create topic {topic!r}: {type(exc).__name__}: {exc}", self.log_file)
        finally:
            admin.close()


def _admin_client(**config):
    """A KafkaAdminClient that does not leak its IO thread when the bootstrap in its constructor fails."""
    from kafka.admin import KafkaAdminClient

    class _Admin(KafkaAdminClient):
        def __init__(self, **cfg):
            try:
                super().__init__(**cfg)
            except BaseException:
                for obj, method in ((getattr(self, "_client", None), "close"), (getattr(self, "_net", None), "stop")):
                    try:
                        if obj is not None:
                            getattr(obj, method)()
                    except Exception:  # noqa: BLE001
                        pass
                raise

    return _Admin(**config)
