"""Apache Kafka 4.1 as a single KRaft node (broker and controller in one JVM), run from Maven jars.

Layout under ``<state_dir>/data/kafka/``: ``server.properties`` and ``log4j2.properties`` (rewritten at every start
from the settings), ``kraft-logs/`` (topic partitions and the metadata log; ``meta.properties`` there marks the
storage as formatted — it is formatted once, never again, so topics and messages survive a restart).

The controller quorum is static (``controller.quorum.voters=1@127.0.0.1:<controller port>``), so the storage is
formatted without ``--standalone``.

``TVP_KAFKA_BROKERS=3`` (``stack up --kafka-brokers 3``) runs a KRaft cluster of three such nodes from the same jars —
node n (``kafka``, ``kafka-2``, ``kafka-3``: a service each, with its own data directory, log and pid file) on the
bootstrap and controller ports + 2(n-1), one static quorum of the three controllers, one cluster id; topics get
replication factor 3 and ``min.insync.replicas=2``.

``TVP_KAFKA_SASL_SSL_PORT`` adds a SASL_SSL listener (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512): a CA and the brokers'
certificate are made with openssl at the first start and put in a keystore with keytool (``<state_dir>/data/kafka-tls``:
``ca.pem`` is what clients trust, ``TVP_KAFKA_SSL_CAFILE``); the SCRAM user ``TVP_KAFKA_SASL_USERNAME`` is created with
the broker's own ``kafka-configs`` (``kafka.admin.ConfigCommand``) over the PLAINTEXT listener, which stays the
inter-broker one.
"""

from __future__ import annotations

import base64
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from tv_platform.engines.kafka import FUTURE_TIMESTAMP_MS
from tv_platform.stack.base import Service, StackError, java_bin, log4j2_console, port_open, run_checked
from tv_platform.stack.maven import classpath, ensure_jars

# the request log, the state change log and the cleaner are very chatty at INFO/TRACE; ``shutdownHook = disable``
# keeps logging while Kafka shuts down (its own hook runs after log4j's otherwise)
LOG4J2 = log4j2_console("tv_platform/stack/kafka.py", "[%d] %p %m (%c)%n", {
    "kafka": "INFO", "org.apache.kafka": "INFO", "kafka.request.logger": "WARN", "state.change.logger": "WARN",
    "kafka.log.LogCleaner": "WARN"}, root="INFO", extra="shutdownHook = disable")


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


KEYSTORE_PASSWORD = "tv_platform-local"  # guards a keystore of a throw-away local CA, nothing else


@dataclass
class KafkaService(Service):
    name: str = "kafka"
    start_timeout: float = 120.0
    node: int = 1
    nodes: int = 0  # 0: TVP_KAFKA_BROKERS

    def __post_init__(self):
        self.nodes = self.nodes or max(1, self.settings.kafka_brokers)
        if self.node > 1:
            self.name = f"kafka-{self.node}"

    def _port(self, base: int, node: int | None = None) -> int:
        return base + 2 * ((node or self.node) - 1)

    @property
    def port(self) -> int:
        return self._port(self.settings.kafka_port)

    @property
    def controller_port(self) -> int:
        return self._port(self.settings.kafka_controller_port)

    @property
    def sasl_ssl_port(self) -> int:
        return self._port(self.settings.kafka_sasl_ssl_port) if self.settings.kafka_sasl_ssl_port else 0

    @property
    def tls_dir(self) -> Path:
        return self.settings.state_dir / "data" / "kafka-tls"

    @property
    def ca_file(self) -> Path:
        return self.tls_dir / "ca.pem"

    @property
    def cluster_id_file(self) -> Path:
        return self.settings.state_dir / "data" / "kafka-cluster.id"

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
        return f"127.0.0.1:{self.port}"

    def ports(self) -> list[int]:
        return [self.port, self.controller_port] + ([self.sasl_ssl_port] if self.sasl_ssl_port else [])

    def endpoints(self) -> dict[str, str]:
        out = {self.name: self.bootstrap}
        if self.sasl_ssl_port:
            out[f"{self.name} (SASL_SSL, CA {self.ca_file})"] = f"127.0.0.1:{self.sasl_ssl_port}"
        return out

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
        port, cport = self.port, self.controller_port
        replicas, min_isr = min(self.nodes, 3), 2 if self.nodes >= 3 else 1
        voters = ",".join(f"{n}@127.0.0.1:{self._port(s.kafka_controller_port, n)}" for n in range(1, self.nodes + 1))
        listeners, advertised = f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}", f"PLAINTEXT://127.0.0.1:{port}"
        protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        if self.sasl_ssl_port:
            listeners += f",SASL_SSL://127.0.0.1:{self.sasl_ssl_port}"
            advertised += f",SASL_SSL://127.0.0.1:{self.sasl_ssl_port}"
            protocols += ",SASL_SSL:SASL_SSL"
        props = {
            "process.roles": "broker,controller",
            "node.id": self.node,
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocols,
            "log.dirs": self.log_dir,
            "num.partitions": s.kafka_partitions,
            "default.replication.factor": replicas,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replicas,
            "offsets.topic.num.partitions": 3,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 3,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            # topics are created explicitly (the events topic by after_ready)
            "auto.create.topics.enable": "false",
            "log.message.timestamp.after.max.ms": FUTURE_TIMESTAMP_MS,  # a day produced at once (engines/kafka.py)
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
            **self._sasl_ssl_properties(),
        }
        lines = ["# Written by tv_platform/stack/kafka.py at every start; edit the settings, not this file."]
        lines += [f"{k}={v}" for k, v in props.items()]
        return "\n".join(lines) + "\n"

    def _sasl_ssl_properties(self) -> dict:
        if not self.sasl_ssl_port:
            return {}
        user, password = self.settings.kafka_sasl_username, self.settings.kafka_sasl_password
        return {
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
            "listener.name.sasl_ssl.ssl.keystore.type": "PKCS12",
            "listener.name.sasl_ssl.ssl.keystore.location": self.tls_dir / "broker.keystore.p12",
            "listener.name.sasl_ssl.ssl.keystore.password": KEYSTORE_PASSWORD,
            "listener.name.sasl_ssl.ssl.key.password": KEYSTORE_PASSWORD,
            "listener.name.sasl_ssl.plain.sasl.jaas.config":
                f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{user}="{password}";',
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        }

    def make_certificates(self) -> None:
        """A local CA (openssl) and the brokers' certificate signed by it for 127.0.0.1/localhost, in a PKCS12
        keystore made with keytool. Made once; kept across restarts."""
        from shutil import which

        keystore = self.tls_dir / "broker.keystore.p12"
        if keystore.exists() and self.ca_file.exists():
            return
        self.tls_dir.mkdir(parents=True, exist_ok=True)
        keytool = Path(java_bin()).with_name("keytool")
        keytool = str(keytool) if keytool.exists() else which("keytool") or "keytool"
        d, log = self.tls_dir, self.log_file
        (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run_checked(self.name, ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                                "-subj", "/CN=tv_platform local CA", "-keyout", str(d / "ca.key"),
                                "-out", str(self.ca_file)], log)
        run_checked(self.name, ["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                                "-keyout", str(d / "broker.key"), "-out", str(d / "broker.csr")], log)
        run_checked(self.name, ["openssl", "x509", "-req", "-in", str(d / "broker.csr"), "-CA", str(self.ca_file),
                                "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "3650",
                                "-extfile", str(d / "san.ext"), "-out", str(d / "broker.pem")], log)
        run_checked(self.name, ["openssl", "pkcs12", "-export", "-in", str(d / "broker.pem"),
                                "-inkey", str(d / "broker.key"), "-certfile", str(self.ca_file), "-name", "broker",
                                "-out", str(d / "broker.openssl.p12"), "-passout", f"pass:{KEYSTORE_PASSWORD}"], log)
        run_checked(self.name, [keytool, "-importkeystore", "-noprompt",
                                "-srckeystore", str(d / "broker.openssl.p12"), "-srcstoretype", "PKCS12",
                                "-srcstorepass", KEYSTORE_PASSWORD, "-destkeystore", str(keystore),
                                "-deststoretype", "PKCS12", "-deststorepass", KEYSTORE_PASSWORD], log)

    def cluster_id(self) -> str:
        """The cluster id every node is formatted with (made by the first node formatted)."""
        if not self.cluster_id_file.exists():
            self.cluster_id_file.parent.mkdir(parents=True, exist_ok=True)
            self.cluster_id_file.write_text(_cluster_id())
        return self.cluster_id_file.read_text().strip()

    def formatted(self) -> bool:
        return (self.log_dir / "meta.properties").exists()

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.properties_file.write_text(self.server_properties())
        self.log4j_file.write_text(LOG4J2)
        if self.sasl_ssl_port:
            self.make_certificates()
        if self.formatted():
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            java_bin(), *self._jvm_flags("256m", "32m"), "-cp", self._classpath(),
            "kafka.tools.StorageTool", "format",
            "-t", self.cluster_id(), "-c", str(self.properties_file), "--ignore-formatted",
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
        if self.node < self.nodes:  # the quorum forms when the last node is up: an earlier node waits for its turn
            return port_open(self.controller_port)
        if not port_open(self.port):
            return False
        admin = self._admin()
        try:
            cluster = admin.describe_cluster()
            brokers = cluster.get("brokers") or []
            live = {int(b.get("broker_id", b.get("node_id", -1))) for b in brokers if not b.get("is_fenced", False)}
            return live >= set(range(1, self.nodes + 1)) and cluster.get("controller_id", -1) not in (-1, None)
        finally:
            admin.close()

    def after_ready(self) -> None:
        if self.node < self.nodes:
            return
        if self.sasl_ssl_port:
            self.create_scram_user()
        self.ensure_topic(self.settings.kafka_topic, self.settings.kafka_partitions)

    def create_scram_user(self) -> None:
        """The SCRAM user (both hashes), with the broker's own tool: ``kafka-configs --alter --add-config``."""
        s = self.settings
        password = s.kafka_sasl_password  # kafka-configs reads "[password=…]": no commas or brackets in it
        for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):  # one credential a request
            run_checked(self.name, [
                java_bin(), *self._jvm_flags("256m", "32m"), "-cp", self._classpath(), "kafka.admin.ConfigCommand",
                "--bootstrap-server", self.bootstrap, "--alter", "--entity-type", "users",
                "--entity-name", s.kafka_sasl_username, "--add-config", f"{mechanism}=[password={password}]",
            ], self.log_file, cwd=self.data_dir)

    def ensure_topic(self, topic: str, partitions: int) -> None:
        """Create ``topic`` with ``partitions`` partitions unless it exists (idempotent)."""
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = self._admin()
        try:
            if topic in admin.list_topics():
                return
            try:
                admin.create_topics([NewTopic(topic, partitions, min(self.nodes, 3))], timeout_ms=15000)
            except TopicAlreadyExistsError:
                pass
        except Exception as exc:  # noqa: BLE001
            raise StackError(self.name, f"cannot create topic {topic!r}: {type(exc).__name__}: {exc}", self.log_file)
        finally:
            admin.close()


def kafka_nodes(settings) -> list[KafkaService]:
    """The local Kafka nodes: TVP_KAFKA_BROKERS of them, and any more a `stack up --kafka-brokers N` left running
    (so `stack down` and `status` see them without the setting)."""
    recorded = [int(p.stem.split("-")[1]) for p in settings.run_dir.glob("kafka-*.pid") if p.stem.split("-")[1].isdigit()]
    nodes = max([max(1, settings.kafka_brokers), *recorded])
    return [KafkaService(settings, node=n, nodes=nodes) for n in range(1, nodes + 1)]


@contextmanager
def own_kafka(settings, state_dir: Path, brokers: int = 1, sasl_ssl: bool = False, base_port: int = 0):
    """A Kafka of its own — ``brokers`` KRaft nodes (and a SASL_SSL listener) on free ports from ``base_port`` (or
    found), under ``state_dir`` — for tests and benchmarks that must not touch the stack's broker; yields its
    settings (the bootstrap lists every node) and stops it, state and all, afterwards."""
    import dataclasses
    import shutil

    base = base_port or free_base_port(2 * brokers + 2)
    own = dataclasses.replace(
        settings, state_dir=state_dir,
        kafka_bootstrap=",".join(f"127.0.0.1:{base + 2 * n}" for n in range(brokers)),
        kafka_controller_port=base + 1, kafka_brokers=brokers,
        kafka_sasl_ssl_port=base + 2 * brokers if sasl_ssl else 0, kafka_heap="384m")
    nodes = kafka_nodes(own)
    try:
        for node in nodes:
            node.install(lambda _m: None)
            node.start()
        yield own
    finally:
        for node in reversed(nodes):
            node.stop(timeout=15)
        shutil.rmtree(state_dir, ignore_errors=True)


def free_base_port(span: int, low: int = 29_100, high: int = 39_000) -> int:
    """A port p such that p .. p+span-1 are all free."""
    import os

    for base in range(low + (os.getpid() % 97) * 50, high, 50):
        if not any(port_open(p) for p in range(base, base + span)):
            return base
    raise StackError("kafka", "no free ports for a Kafka of its own")


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
