"""The distributed deployment (docker/compose.yaml), validated without a Docker engine, against the cluster profile.

Debian's ``docker-compose`` (1.29, Python) parses, merges and interpolates the file with ``config`` without talking
to an engine; it is installed with apt-get once when missing (these machines have the Docker CLI but neither an
engine nor the compose plugin). The rendered model is then checked for what the platform needs: every engine is a
service, the platform's containers run with ``TVP_ENV=cluster`` and every ``TVP_*`` setting pointing at the services
of the file, with sizes equal to what the services get; secrets come from the env file, never a default; stateful
services have healthchecks that ``depends_on`` waits for.

The file has the shape the cluster profile (``TVP_PROFILE=cluster``, ``tv-platform stack up --profile cluster``) runs
and tests on one machine, and the same engine settings, compared with the profile's own code rather than repeated
here: 3 KRaft nodes in combined mode with ``KafkaService.server_properties()`` (RF 3, ``min.insync.replicas=2``,
``message.timestamp.after.max.ms`` = ``FUTURE_TIMESTAMP_MS``); a NameNode and ``DATANODES`` (3) DataNodes with
``cluster_hdfs_conf()`` (replication 3); the Hive Metastore built from the profile's pom
(``hive-standalone-metastore-server`` = ``HIVE_CLIENT_VERSION``, 4.0.1) with ``HiveMetastoreService.site()``; Spark
Connect with ``SparkConnectService.spark_conf()``, i.e. a ``HIVE_CLIENT_VERSION`` metastore client whose jars the
platform image builds from the profile's hive-client pom. Only addresses, paths and sizes may differ, and those are
listed below. No image is built and no container runs here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tv_platform.engines.kafka import FUTURE_TIMESTAMP_MS
from tv_platform.settings import ENV_VARS, Settings, _profile_overrides
from tv_platform.stack.hdfs import DATANODES, cluster_hdfs_conf
from tv_platform.stack.spark import HIVE_CLIENT_VERSION

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
JVM = REPO / "tv_platform" / "stack" / "jvm"

KAFKA_NODES = ["kafka-1", "kafka-2", "kafka-3"]
DATANODE_SERVICES = ["datanode-1", "datanode-2", "datanode-3"]
#: role -> services that must exist
REQUIRED = {
    "kafka": KAFKA_NODES,
    "hdfs namenode": ["namenode"],
    "hdfs datanodes": DATANODE_SERVICES,
    "hive metastore": ["hive-metastore", "hive-metastore-db"],
    "spark": ["spark-master", "spark-worker-1", "spark-worker-2", "spark-connect"],
    "greenplum": ["greenplum"],
    "clickhouse": ["clickhouse"],
    "dagster storage": ["dagster-postgres"],
    "dagster": ["dagster-code", "dagster-webserver", "dagster-daemon"],
    "superset": ["superset", "superset-db"],
}
#: containers that run the platform's code and read its settings
PLATFORM_SERVICES = ["dagster-code", "dagster-webserver", "dagster-daemon", "superset-import"]
#: setting -> the value every platform container must carry
CLUSTER_ENDPOINTS = {
    "TVP_ENV": "cluster",
    "TVP_KAFKA_BOOTSTRAP": "kafka-1:9092,kafka-2:9092,kafka-3:9092",
    "TVP_HDFS_URL": "hdfs://namenode:8020",
    "TVP_WEBHDFS_URL": "http://namenode:9870",
    "TVP_SPARK_REMOTE": "sc://spark-connect:15002",
    "TVP_SPARK_MASTER": "spark://spark-master:7077",
    "TVP_HIVE_METASTORE_URI": "thrift://hive-metastore:9083",
    "TVP_GP_HOST": "greenplum",
    "TVP_GP_PORT": "5432",
    "TVP_GP_DIALECT": "greenplum",
}
#: services that keep data (named volume + healthcheck)
STATEFUL = [*KAFKA_NODES, "namenode", *DATANODE_SERVICES, "hive-metastore-db", "greenplum", "clickhouse",
            "dagster-postgres", "superset-db"]
#: services others wait for (healthcheck)
HEALTHCHECKED = [*STATEFUL, "hive-metastore", "spark-master", "spark-connect", "dagster-code", "dagster-webserver",
                 "superset"]
#: the containers that read docker/hadoop/*.xml through HADOOP_CONF_DIR (HDFS clients other than the Hadoop ones)
HADOOP_CONF_CLIENTS = ["hive-metastore", "spark-connect", "spark-worker-1", "spark-worker-2"]

# ---- where the compose file may differ from the profile: addresses, paths, sizes (everything else must be equal) ---
#: server.properties of the profile's brokers: per node / per machine ...
KAFKA_ADDRESS_KEYS = {"node.id", "controller.quorum.voters", "listeners", "advertised.listeners",
                      "listener.security.protocol.map", "log.dirs"}
#: ... and the profile's small-machine thread and buffer sizes (the compose brokers keep Kafka's defaults)
KAFKA_SIZING_KEYS = {"num.network.threads", "num.io.threads", "num.recovery.threads.per.data.dir", "background.threads",
                     "log.cleaner.threads", "log.cleaner.dedupe.buffer.size", "socket.request.max.bytes",
                     "offsets.topic.num.partitions", "transaction.state.log.num.partitions"}
#: apache/kafka image variables that are not server.properties
KAFKA_IMAGE_VARS = {"KAFKA_HEAP_OPTS"}
#: cluster_hdfs_conf keys that name the machine: the profile registers DataNodes as 127.0.0.1, the compose file by
#: their container host names
HDFS_ADDRESS_KEYS = {"fs.defaultFS", "dfs.datanode.hostname", "dfs.client.use.datanode.hostname"}
#: what docker/hadoop/*.xml add: addresses, storage paths, host-name registration
HDFS_COMPOSE_ONLY = {"dfs.namenode.rpc-address", "dfs.namenode.rpc-bind-host", "dfs.namenode.http-address",
                     "dfs.namenode.http-bind-host", "dfs.namenode.name.dir", "dfs.datanode.data.dir",
                     "dfs.datanode.http.address", "dfs.datanode.use.datanode.hostname",
                     "hadoop.proxyuser.root.hosts", "hadoop.proxyuser.root.groups"}
#: HiveMetastoreService.site() keys that name the machine (the password is added at start, never in the file)
HMS_ADDRESS_KEYS = {"metastore.thrift.port", "metastore.thrift.bind.host", "javax.jdo.option.ConnectionURL",
                    "javax.jdo.option.ConnectionPassword", "metastore.warehouse.dir", "fs.defaultFS"}
#: SparkConnectService.spark_conf() keys that name the machine or size it
SPARK_ADDRESS_KEYS = {"spark.driver.host", "spark.driver.bindAddress", "spark.connect.grpc.binding.address",
                      "spark.connect.grpc.binding.port", "spark.sql.warehouse.dir", "spark.hadoop.fs.defaultFS",
                      "spark.hadoop.hive.metastore.uris", "spark.sql.hive.metastore.jars.path"}
SPARK_SIZING_KEYS = {"spark.sql.shuffle.partitions", "spark.executor.memory", "spark.cores.max"}
#: what the compose Connect server adds: fixed driver ports (executors in other containers connect back to them)
SPARK_COMPOSE_ONLY = {"spark.driver.port", "spark.blockManager.port"}
#: profile settings the compose file sets differently on purpose: the profile stands PostgreSQL in for Greenplum and
#: embeds ClickHouse (chDB); the compose file has both servers
PROFILE_SUBSTITUTES = {"TVP_GP_DIALECT": ("postgres", "greenplum"), "TVP_CLICKHOUSE_URL": ("chdb", "http")}


def _docker_compose() -> str:
    """Path of docker-compose, installing Debian's package once when it is missing."""
    found = shutil.which("docker-compose")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        pytest.skip("docker-compose is not installed and apt-get is not available to install it")
    if os.geteuid() != 0:
        pytest.skip("docker-compose is not installed and installing it with apt-get needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run([apt, "install", "-y", "--no-install-recommends", "docker-compose"],
                          capture_output=True, text=True, env=env, timeout=600)
    if proc.returncode != 0:  # stale package lists: refresh once
        subprocess.run([apt, "update"], capture_output=True, text=True, env=env, timeout=600)
        proc = subprocess.run([apt, "install", "-y", "--no-install-recommends", "docker-compose"],
                              capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, f"apt-get install docker-compose failed: {proc.stderr.strip()[-500:]}"
    found = shutil.which("docker-compose")
    assert found, "docker-compose installed but not on PATH"
    return found


def _clean_env() -> dict[str, str]:
    # variables of the calling shell win over the env file in compose interpolation: leave TVP_* and friends out
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}


def _compose(binary: str, *args: str, env_file: Path | None = ENV_EXAMPLE) -> subprocess.CompletedProcess:
    argv = [binary, "-f", str(COMPOSE_FILE)]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    return subprocess.run([*argv, *args], capture_output=True, text=True, env=_clean_env(), timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def docker_compose() -> str:
    return _docker_compose()


@pytest.fixture(scope="module")
def model(docker_compose) -> dict:
    quiet = _compose(docker_compose, "config", "-q")
    assert quiet.returncode == 0, f"docker-compose config -q rejected docker/compose.yaml: {quiet.stderr.strip()}"
    rendered = _compose(docker_compose, "config")
    assert rendered.returncode == 0, rendered.stderr
    return yaml.safe_load(rendered.stdout)


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _host_port(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"tcp://{url}")
    return parsed.hostname or "", parsed.port or 0



def _platform(model) -> dict[str, str]:
    return _env(model["services"]["dagster-code"])


def _spark_confs(command: list[str]) -> dict[str, str]:
    return dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "--conf")


def _site(path: Path) -> dict[str, str]:
    """name -> value of a Hadoop-style configuration XML."""
    return {prop.findtext("name").strip(): (prop.findtext("value") or "").strip()
            for prop in ET.parse(path).getroot().iter("property")}


def _pom_version(pom: Path, artifact: str) -> str:
    """The version a pom gives ``artifact`` (its first dependency of that id), properties resolved."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    root = ET.parse(pom).getroot()
    props = {el.tag.split("}", 1)[1]: (el.text or "").strip() for el in root.find("m:properties", ns)}
    for dep in root.iter(f"{{{ns['m']}}}dependency"):
        if dep.findtext("m:artifactId", namespaces=ns) == artifact:
            version = dep.findtext("m:version", namespaces=ns)
            return re.sub(r"\$\{([^}]+)\}", lambda m: props[m.group(1)], version)
    raise AssertionError(f"{pom} has no dependency {artifact}")


def _stages(dockerfile: Path) -> dict[str, str]:
    """Stage name (or 'final' for the last) -> its text."""
    parts = re.split(r"^(?=FROM\s)", dockerfile.read_text(), flags=re.M)[1:]
    out = {}
    for i, part in enumerate(parts):
        m = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", part, re.I)
        out["final" if i == len(parts) - 1 else (m.group(1) or str(i))] = part
    return out


def _volumes(service: dict) -> list[dict[str, str]]:
    """A service's volumes as {type, source, target}, whichever syntax compose renders (1.29: short strings)."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            out.append({"type": volume.get("type", "volume"), "source": volume.get("source", ""),
                        "target": volume["target"]})
        else:
            source, target = volume.split(":")[:2]
            out.append({"type": "bind" if source.startswith(("/", ".")) else "volume", "source": source,
                        "target": target})
    return out


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's bind mounts, sources relative to docker/."""
    return {v["target"]: Path(os.path.relpath((DOCKER / v["source"]).resolve(), DOCKER)).as_posix()
            for v in _volumes(service) if v["type"] == "bind"}


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> tuple[Settings, dict[str, str]]:
    """The cluster profile's settings and the variables it forces, as ``TVP_PROFILE=cluster`` gives them (state in a
    temporary directory: building a service's configuration may write its generated password there)."""
    tmp = tmp_path_factory.mktemp("profile")
    with pytest.MonkeyPatch.context() as mp:
        for var in list(os.environ):
            if var.startswith("TVP_"):
                mp.delenv(var)
        mp.setenv("TVP_PROFILE", "cluster")
        mp.setenv("TVP_STATE_DIR", str(tmp / "state"))
        mp.setenv("TVP_CACHE_DIR", str(tmp / "cache"))
        return Settings.from_env(), _profile_overrides()

# ---- the file parses -------------------------------------------------------------------------------------------------
def test_compose_config_validates(docker_compose):
    version = subprocess.run([docker_compose, "version", "--short"], capture_output=True, text=True,
                             env=_clean_env()).stdout.strip()
    proc = _compose(docker_compose, "config", "-q")
    assert proc.returncode == 0, f"docker-compose {version} rejected docker/compose.yaml: {proc.stderr.strip()}"


def test_secrets_are_required_not_defaulted(docker_compose, tmp_path):
    """With an empty env file the passwords are missing and compose refuses, naming the variable."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    proc = _compose(docker_compose, "config", "-q", env_file=empty)
    assert proc.returncode != 0
    assert "PASSWORD" in proc.stderr or "SECRET" in proc.stderr, proc.stderr


def test_env_example_holds_no_real_secret():
    values = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
                  if line.strip() and not line.lstrip().startswith("#"))
    secrets = {k: v for k, v in values.items() if re.search(r"PASSWORD|SECRET", k)}
    assert secrets, "the env example lists no passwords"
    for key, value in secrets.items():
        assert value.startswith("CHANGE_ME"), f"{key} in docker/.env.example must be a CHANGE_ME placeholder"
    assert (DOCKER / ".gitignore").read_text().split().count(".env") == 1


# ---- services -----------------------------------------------------------------------------------------------------------
def test_every_engine_is_a_service(model):
    services = model["services"]
    missing = {role: [s for s in names if s not in services] for role, names in REQUIRED.items()}
    assert not {r: m for r, m in missing.items() if m}, f"missing services: {missing}"


def test_images(model):
    s = model["services"]
    for name in KAFKA_NODES:
        assert s[name]["image"] == s[KAFKA_NODES[0]]["image"] and s[name]["image"].startswith("apache/kafka:4")
    assert s["namenode"]["image"].startswith("apache/hadoop:3")
    for name in DATANODE_SERVICES:
        assert s[name]["image"] == s["namenode"]["image"], name
    assert s["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert "greenplum" in s["greenplum"]["image"]
    for name in ("dagster-code", "dagster-webserver", "dagster-daemon", "spark-master", "spark-worker-1",
                 "spark-worker-2", "spark-connect"):
        assert s[name]["build"]["dockerfile"] == "docker/Dockerfile", name
        assert Path(s[name]["build"]["context"]).resolve() == REPO, name
    # built from the repository root: the image resolves the profile's pom
    assert s["hive-metastore"]["build"]["dockerfile"] == "docker/hive/Dockerfile"
    assert Path(s["hive-metastore"]["build"]["context"]).resolve() == REPO


def test_no_default_passwords():
    """No ${..PASSWORD..:-default} or ${..SECRET..:-default} anywhere in the file: a secret is required (`:?`) or,
    for an optional one, empty."""
    for m in re.finditer(r"\$\{(\w*(?:PASSWORD|SECRET)\w*)(:?[-?])([^}]*)\}", COMPOSE_FILE.read_text()):
        assert m.group(2).endswith("?") or m.group(3) == "", f"{m.group(1)} defaults to {m.group(3)!r}"


# ---- Kafka: 3 KRaft nodes with the profile's broker settings ------------------------------------------------------
def test_kafka_is_three_kraft_nodes_in_combined_mode(model, profile):
    settings, forced = profile
    services, platform = model["services"], _platform(model)
    kafka = sorted(n for n, s in services.items() if s.get("image", "").startswith("apache/kafka:"))
    assert kafka == KAFKA_NODES
    assert len(kafka) == int(platform["TVP_KAFKA_BROKERS"]) == settings.kafka_brokers == int(forced["TVP_KAFKA_BROKERS"])
    assert sorted(_host_port(b)[0] for b in platform["TVP_KAFKA_BOOTSTRAP"].split(",")) == kafka
    assert len(platform["TVP_KAFKA_BOOTSTRAP"].split(",")) == len(forced["TVP_KAFKA_BOOTSTRAP"].split(","))
    envs = {name: _env(services[name]) for name in kafka}
    ids = {env["KAFKA_NODE_ID"]: name for name, env in envs.items()}
    assert len(ids) == 3, "node ids must be unique"
    voters = {f"{i}@{name}:{platform['TVP_KAFKA_CONTROLLER_PORT']}" for i, name in ids.items()}
    host_ports = set()
    for name, env in envs.items():
        # combined mode (as the profile): every node is a broker and a voter of the static quorum
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}, name
        assert set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == voters, name
        assert f"CONTROLLER://0.0.0.0:{platform['TVP_KAFKA_CONTROLLER_PORT']}" in env["KAFKA_LISTENERS"].split(",")
        assert f"PLAINTEXT://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(","), name
        assert env["CLUSTER_ID"] == envs[kafka[0]]["CLUSTER_ID"], "one cluster id"
        assert "zookeeper" not in " ".join(env).lower()
        host_ports |= {p["published"] for p in services[name].get("ports", [])}
        assert any(v["type"] == "volume" and v["target"] == env["KAFKA_LOG_DIRS"] for v in _volumes(services[name])), name
    assert len(host_ports) == 3, "each node publishes its own host port"


def test_kafka_settings_are_the_profiles(model, profile):
    """Every broker property of the profile (KafkaService.server_properties for 3 nodes) is set to the same value on
    every compose node, but addresses and the small machine's thread/buffer sizes; and nothing else is set."""
    from tv_platform.stack.kafka import KafkaService

    settings, _ = profile
    text = KafkaService(settings, node=1).server_properties()
    theirs = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert (theirs["default.replication.factor"], theirs["min.insync.replicas"]) == ("3", "2")
    assert theirs["log.message.timestamp.after.max.ms"] == str(FUTURE_TIMESTAMP_MS)
    for name in KAFKA_NODES:
        env = _env(model["services"][name])
        ours = {k[len("KAFKA_"):].lower().replace("_", "."): v for k, v in env.items()
                if k.startswith("KAFKA_") and k not in KAFKA_IMAGE_VARS}
        for key, value in theirs.items():
            if key not in KAFKA_ADDRESS_KEYS | KAFKA_SIZING_KEYS:
                assert ours.get(key) == value, f"{name}: {key}={ours.get(key)!r}, the profile has {value!r}"
        assert set(ours) - set(theirs) == set(), f"{name}: settings the profile does not run"
        assert (ours["default.replication.factor"], ours["min.insync.replicas"]) == ("3", "2")
        assert ours["log.message.timestamp.after.max.ms"] == str(FUTURE_TIMESTAMP_MS)


# ---- HDFS: a NameNode and 3 DataNodes, replication 3 ----------------------------------------------------------------
def test_hdfs_is_three_datanodes_with_replication_3(model, profile):
    settings, _ = profile
    services, platform = model["services"], _platform(model)
    datanodes = sorted(n for n, s in services.items() if s.get("command") == ["hdfs", "datanode"])
    assert datanodes == DATANODE_SERVICES and len(datanodes) == DATANODES
    conf = {**_site(DOCKER / "hadoop" / "core-site.xml"), **_site(DOCKER / "hadoop" / "hdfs-site.xml")}
    assert conf["dfs.replication"] == str(len(datanodes)) == cluster_hdfs_conf(settings)["dfs.replication"]
    volumes = set()
    for name in ["namenode", *datanodes]:
        mounts = _mounts(services[name])
        conf_dir = _env(services[name])["HADOOP_CONF_DIR"]
        assert mounts.get(f"{conf_dir}/core-site.xml") == "hadoop/core-site.xml", name
        assert mounts.get(f"{conf_dir}/hdfs-site.xml") == "hadoop/hdfs-site.xml", name
        volumes |= {v["source"] for v in _volumes(services[name]) if v["type"] == "volume"}
    assert len(volumes) == 1 + len(datanodes), "each node its own named volume"


def test_hdfs_settings_are_the_profiles(model, profile):
    """docker/hadoop/*.xml carry cluster_hdfs_conf() of the profile, but the keys that name the machine, and only
    addresses/paths besides; every other HDFS client reads them through HADOOP_CONF_DIR."""
    settings, _ = profile
    services, platform = model["services"], _platform(model)
    conf = {**_site(DOCKER / "hadoop" / "core-site.xml"), **_site(DOCKER / "hadoop" / "hdfs-site.xml")}
    theirs = cluster_hdfs_conf(settings)
    for key, value in theirs.items():
        if key not in HDFS_ADDRESS_KEYS:
            assert conf.get(key) == value, f"{key}={conf.get(key)!r}, the profile has {value!r}"
    assert set(conf) - set(theirs) <= HDFS_COMPOSE_ONLY, set(conf) - set(theirs) - HDFS_COMPOSE_ONLY
    assert conf["fs.defaultFS"] == platform["TVP_HDFS_URL"]
    assert conf["hadoop.http.staticuser.user"] == platform["TVP_HDFS_USER"]
    # containers register and are reached by host name, not the profile's 127.0.0.1
    assert "dfs.datanode.hostname" not in conf and conf["dfs.client.use.datanode.hostname"] == "true"
    assert _host_port(conf["dfs.namenode.http-address"]) == _host_port(platform["TVP_WEBHDFS_URL"])
    for name in HADOOP_CONF_CLIENTS:
        conf_dir = _env(services[name]).get("HADOOP_CONF_DIR")
        assert conf_dir, f"{name} sets no HADOOP_CONF_DIR"
        mounts = _mounts(services[name])
        for xml in ("core-site.xml", "hdfs-site.xml"):
            assert mounts.get(f"{conf_dir}/{xml}") == f"hadoop/{xml}", f"{name} does not mount {xml} at {conf_dir}"


# ---- Hive Metastore 4.0.1 on PostgreSQL ---------------------------------------------------------------------------
def test_hive_metastore_is_the_profiles_4_0_1_on_postgres(model):
    from tv_platform.stack.hive_metastore import MAIN

    services = model["services"]
    service = services["hive-metastore"]
    dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
    stages = _stages(dockerfile)
    pom = JVM / "hive-metastore" / "pom.xml"
    version = _pom_version(pom, "hive-standalone-metastore-server")
    # server and Spark's client are the same Hive release, as in the profile
    assert version == HIVE_CLIENT_VERSION
    assert service["image"].endswith(f":{version}")
    (builder,) = [s for s in stages.values() if f"COPY {pom.relative_to(REPO)} " in s]
    assert "dependency:copy-dependencies" in builder, "the jars are resolved by Maven from the profile's pom"
    assert "repo1.maven.org" not in dockerfile.read_text() and "apache/hive:" not in builder
    entrypoint = (DOCKER / "hive" / "metastore-entrypoint.sh").read_text()
    assert MAIN in entrypoint
    assert re.search(r"MetastoreSchemaTool\b.*\n(?:.*\n)*.*-initSchema -dbType postgres", entrypoint)
    db = _env(services["hive-metastore-db"])
    assert db and services["hive-metastore-db"]["image"].startswith("postgres:")
    assert _env(service)["HIVE_METASTORE_DB_PASSWORD"] == db["POSTGRES_PASSWORD"]
    assert services["hive-metastore"]["depends_on"]["hive-metastore-db"]["condition"] == "service_healthy"
    assert "health.sh" in " ".join(service["healthcheck"]["test"])


def test_hive_metastore_settings_are_the_profiles(model, profile):
    """docker/hive/metastore-site.xml is HiveMetastoreService.site() of the profile with this file's addresses, and
    holds no password (the entrypoint adds it from the environment)."""
    from tv_platform.stack.hive_metastore import HiveMetastoreService

    settings, _ = profile
    services, platform = model["services"], _platform(model)
    site = _site(DOCKER / "hive" / "metastore-site.xml")
    theirs = HiveMetastoreService(settings).site()
    for key, value in theirs.items():
        if key not in HMS_ADDRESS_KEYS:
            assert site.get(key) == value, f"{key}={site.get(key)!r}, the profile has {value!r}"
    assert set(site) <= set(theirs), f"settings the profile does not run: {set(site) - set(theirs)}"
    assert "javax.jdo.option.ConnectionPassword" not in site, "the password belongs in the env file"
    db = _env(services["hive-metastore-db"])
    assert site["javax.jdo.option.ConnectionURL"] == f"jdbc:postgresql://hive-metastore-db:5432/{db['POSTGRES_DB']}"
    assert site["javax.jdo.option.ConnectionUserName"] == db["POSTGRES_USER"]
    assert site["metastore.thrift.port"] == str(_host_port(platform["TVP_HIVE_METASTORE_URI"])[1])
    assert site["fs.defaultFS"] == platform["TVP_HDFS_URL"]
    assert site["metastore.warehouse.dir"] == platform["TVP_HDFS_URL"] + "/user/hive/warehouse"


# ---- Spark: the profile's Connect server configuration, a 4.0.1 metastore client -----------------------------------
def test_spark_connect_is_configured_as_the_profile(model, profile):
    from tv_platform.stack.spark import SparkConnectService

    settings, _ = profile
    services, platform = model["services"], _platform(model)
    command = services["spark-connect"]["command"]
    ours = _spark_confs(command)
    theirs = SparkConnectService(settings).spark_conf()
    hdfs_keys = {f"spark.hadoop.{k}" for k in cluster_hdfs_conf(settings)} - {"spark.hadoop.fs.defaultFS"}
    assert theirs["spark.sql.hive.metastore.version"] == HIVE_CLIENT_VERSION
    for key, value in theirs.items():
        if key in SPARK_ADDRESS_KEYS | SPARK_SIZING_KEYS:
            assert key in ours, f"{key} is not set"
        elif key in hdfs_keys:
            continue  # from HADOOP_CONF_DIR: test_hdfs_settings_are_the_profiles
        else:
            assert ours.get(key) == value, f"{key}={ours.get(key)!r}, the profile has {value!r}"
    assert set(ours) - set(theirs) <= SPARK_COMPOSE_ONLY, f"settings the profile does not run: {set(ours) - set(theirs)}"
    assert not set(ours) & hdfs_keys, "HDFS client settings come from docker/hadoop/*.xml, not the command"
    # a HIVE_CLIENT_VERSION metastore client of the file's metastore, the warehouse on the file's HDFS
    assert ours["spark.sql.hive.metastore.version"] == HIVE_CLIENT_VERSION and ours["spark.sql.hive.metastore.jars"] == "path"
    assert ours["spark.hadoop.hive.metastore.uris"] == platform["TVP_HIVE_METASTORE_URI"]
    assert ours["spark.sql.catalogImplementation"] == "hive"
    assert ours["spark.sql.warehouse.dir"] == _site(DOCKER / "hive" / "metastore-site.xml")["metastore.warehouse.dir"]
    assert ours["spark.hadoop.fs.defaultFS"] == platform["TVP_HDFS_URL"]
    assert ours["spark.driver.host"] == services["spark-connect"]["hostname"]
    assert ours["spark.connect.grpc.binding.port"] == str(_host_port(platform["TVP_SPARK_REMOTE"])[1])
    assert "org.apache.spark.sql.connect.service.SparkConnectServer" in command
    assert command[command.index("--master") + 1] == platform["TVP_SPARK_MASTER"]
    assert "javax.jdo.option.ConnectionURL" not in " ".join(ours), "no embedded Derby on the cluster"
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert platform["TVP_SPARK_MASTER"] in services[worker]["command"]


def test_platform_image_carries_the_hive_client(model):
    """The jars spark.sql.hive.metastore.jars.path names are built into the platform image by Maven from the pom
    the profile resolves (stack/jvm/hive-client), whose Hive is HIVE_CLIENT_VERSION."""
    ours = _spark_confs(model["services"]["spark-connect"]["command"])
    m = re.fullmatch(r"file://(/\S+)/\*\.jar", ours["spark.sql.hive.metastore.jars.path"])
    assert m, ours["spark.sql.hive.metastore.jars.path"]
    target = m.group(1)
    pom = JVM / "hive-client" / "pom.xml"
    assert _pom_version(pom, "hive-metastore") == HIVE_CLIENT_VERSION
    stages = _stages(DOCKER / "Dockerfile")
    (name,) = [n for n, s in stages.items() if f"COPY {pom.relative_to(REPO)} " in s]
    out = re.search(r"dependency:copy-dependencies\s+-DoutputDirectory=(\S+)", stages[name]).group(1)
    assert re.search(rf"^COPY --from={re.escape(name)} {re.escape(out)} {re.escape(target)}$", stages["final"], re.M), (
        f"the final stage does not copy {out} of stage {name} to {target}")


# ---- the platform's settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", PLATFORM_SERVICES)
def test_platform_container_settings(model, name):
    env = _env(model["services"][name])
    unset = [var for var in ENV_VARS if var not in env]
    assert not unset, f"{name}: TVP_* settings not set: {unset}"
    for var, value in CLUSTER_ENDPOINTS.items():
        assert env[var] == value, f"{name}: {var}={env[var]!r}, expected {value!r}"
    ch = urlparse(env["TVP_CLICKHOUSE_URL"])
    assert ch.scheme == "http" and ch.hostname == "clickhouse" and ch.port == 8123 and ch.password
    assert ch.password == _env(model["services"]["clickhouse"])["CLICKHOUSE_PASSWORD"]
    assert ch.username == _env(model["services"]["clickhouse"])["CLICKHOUSE_USER"]
    gp = _env(model["services"]["greenplum"])
    assert env["TVP_GP_DATABASE"] == gp["GREENPLUM_DATABASE_NAME"]
    for var in ("TVP_GP_SCHEMA", "TVP_GP_LOADER_USER", "TVP_GP_LOADER_PASSWORD", "TVP_GP_READER_USER",
                "TVP_GP_READER_PASSWORD"):
        assert env[var] == gp[var], f"{name}: {var} differs from what greenplum provisions"
    dpg = _env(model["services"]["dagster-postgres"])
    assert (env["TVP_DAGSTER_PG_DATABASE"], env["TVP_DAGSTER_PG_USER"], env["TVP_DAGSTER_PG_PASSWORD"]) == (
        dpg["POSTGRES_DB"], dpg["POSTGRES_USER"], dpg["POSTGRES_PASSWORD"])
    assert env["TVP_DAGSTER_PG_HOST"] == "dagster-postgres"


def test_every_setting_the_profile_forces_is_set_alike(model, profile):
    """The variables TVP_PROFILE=cluster forces are set in the containers to the same kind of value: the same
    deployment, broker count, no SASL_SSL listener of the local stack, URLs of the same scheme — but Greenplum and
    ClickHouse, which the profile substitutes (PostgreSQL with the postgres dialect, embedded chDB)."""
    _, forced = profile
    env = _platform(model)
    for var, value in forced.items():
        assert var in env, f"{var} (forced by the profile) is not set"
        if var in PROFILE_SUBSTITUTES:
            theirs, ours = PROFILE_SUBSTITUTES[var]
            assert value.startswith(theirs) and env[var].startswith(ours), (var, value, env[var])
        elif "://" in value:
            assert urlparse(env[var]).scheme == urlparse(value).scheme, (var, value, env[var])
    for var in ("TVP_ENV", "TVP_KAFKA_BROKERS", "TVP_KAFKA_SASL_SSL_PORT"):
        assert env[var] == forced[var], var
    assert env["TVP_PROFILE"] == "", "the containers are the cluster, not the one-machine profile"


def test_sizes_in_the_settings_are_what_the_services_get(model):
    """The heap/memory/partition settings the platform containers report (`tv-platform settings`) are the values the
    services of the file run with (the same env-file variables)."""
    from tv_platform.stack.kafka import heap_mb

    services, env = model["services"], _platform(model)
    for name in KAFKA_NODES:
        kenv = _env(services[name])
        assert f"-Xmx{env['TVP_KAFKA_HEAP']}" in kenv["KAFKA_HEAP_OPTS"].split(), name
        assert kenv["KAFKA_NUM_PARTITIONS"] == env["TVP_KAFKA_PARTITIONS"], name
    assert _env(services["namenode"])["HADOOP_HEAPSIZE_MAX"] == env["TVP_HDFS_HEAP"]
    for name in ("spark-master", "spark-worker-1", "spark-worker-2"):
        assert _env(services[name])["SPARK_DAEMON_MEMORY"] == env["TVP_SPARK_DAEMON_HEAP"], name
    assert _env(services["hive-metastore"])["HMS_HEAP"] == env["TVP_HIVE_METASTORE_HEAP"]
    command = services["spark-connect"]["command"]
    confs = _spark_confs(command)
    assert command[command.index("--driver-memory") + 1] == env["TVP_SPARK_DRIVER_MEMORY"]
    assert confs["spark.executor.memory"] == env["TVP_SPARK_EXECUTOR_MEMORY"]
    assert confs["spark.sql.shuffle.partitions"] == env["TVP_SPARK_SHUFFLE_PARTITIONS"]
    for name in ("spark-connect", "hive-metastore"):
        assert _env(services[name])["HADOOP_USER_NAME"] == env["TVP_HDFS_USER"], name
    for var in ("TVP_KAFKA_HEAP", "TVP_HDFS_HEAP", "TVP_SPARK_DAEMON_HEAP", "TVP_HIVE_METASTORE_HEAP",
                "TVP_SPARK_DRIVER_MEMORY", "TVP_SPARK_EXECUTOR_MEMORY"):
        heap_mb(env[var], var)  # a size the JVM flags accept


def test_endpoints_name_services_of_the_file(model):
    services = model["services"]
    env = _env(services["dagster-code"])
    for var in ("TVP_KAFKA_BOOTSTRAP", "TVP_HDFS_URL", "TVP_WEBHDFS_URL", "TVP_SPARK_REMOTE", "TVP_HIVE_METASTORE_URI",
                "TVP_CLICKHOUSE_URL"):
        for endpoint in env[var].split(","):
            host, port = _host_port(endpoint)
            assert host in services, f"{var} points at {host!r}, which is not a service"
            assert port, f"{var} has no port"
    assert _host_port(env["TVP_GP_HOST"] + ":" + env["TVP_GP_PORT"])[0] in services


def test_cluster_settings_build_the_cluster_resources(model, monkeypatch):
    """The container's environment is a valid cluster configuration: settings parse and the cluster resources build
    (nothing connects while building them)."""
    from tv_platform.resources import RESOURCES_BY_ENV

    for var in list(os.environ):
        if var.startswith("TVP_"):
            monkeypatch.delenv(var)
    for key, value in _env(model["services"]["dagster-code"]).items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env()
    assert settings.env == "cluster" and settings.gp_dialect == "greenplum"
    resources = RESOURCES_BY_ENV[settings.env](settings)
    assert {"kafka", "lake", "hive", "greenplum", "clickhouse", "greenplum_io_manager", "clickhouse_io_manager"} <= set(resources)


def test_dagster_instance_and_workspace(model):
    instance = yaml.safe_load((DOCKER / "dagster.yaml").read_text())
    pg = instance["storage"]["postgres"]["postgres_db"]
    assert pg["scheme"] == "postgresql+psycopg2"
    env = _env(model["services"]["dagster-daemon"])
    for key in ("hostname", "port", "db_name", "username", "password"):
        assert pg[key]["env"] in env, f"dagster.yaml reads {pg[key]['env']}, which the containers do not set"
    assert env[pg["hostname"]["env"]] == "dagster-postgres"

    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    code = model["services"][grpc["host"]]
    command = code["command"]
    assert command[:3] == ["dagster", "code-server", "start"]
    assert command[command.index("-p") + 1] == str(grpc["port"])
    assert command[command.index("-m") + 1] == "tv_platform.definitions"
    for name in ("dagster-webserver", "dagster-daemon"):
        assert "/opt/dagster/workspace.yaml" in " ".join(model["services"][name]["command"]).split()
    # the daemon makes the clickhouse pool before it launches any run (docs/marts.md)
    daemon = model["services"]["dagster-daemon"]["command"]
    assert daemon[:2] == ["bash", "-c"] and daemon[2].startswith("dagster instance concurrency set clickhouse 1 && ")


# ---- health and order ---------------------------------------------------------------------------------------------------
def test_stateful_services_have_healthchecks_and_volumes(model):
    services = model["services"]
    for name in HEALTHCHECKED:
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    for name in STATEFUL:
        assert any(v.get("type") == "volume" if isinstance(v, dict) else not v.startswith(("./", "/"))
                   for v in services[name].get("volumes", [])), f"{name} keeps its data in no named volume"


def test_depends_on_waits_for_health(model):
    services = model["services"]
    for name, service in services.items():
        for dep, cond in (service.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if cond.get("condition") == "service_healthy":
                assert services[dep].get("healthcheck"), f"{name} waits for {dep} healthy, which has no healthcheck"
    for name in ("dagster-code", "spark-connect", "hive-metastore"):
        conds = {c["condition"] for c in services[name]["depends_on"].values()}
        assert conds == {"service_healthy"}, name


def test_referenced_files_exist(model):
    for name, service in model["services"].items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if isinstance(volume, dict) and volume.get("type") != "bind":
                continue
            if not isinstance(volume, dict) and not source.startswith(("/", ".")):
                continue
            assert Path(source).exists(), f"{name}: bind mount {source} does not exist"
        if "build" in service:
            context = Path(service["build"]["context"])
            dockerfile = context / service["build"].get("dockerfile", "Dockerfile")
            assert dockerfile.exists(), f"{name}: {dockerfile} missing"
            for line in dockerfile.read_text().splitlines():
                m = re.match(r"COPY\s+(?!--from)(.+)\s+\S+$", line.strip())
                if m:
                    for src in m.group(1).split():
                        if not src.startswith("--"):
                            assert (context / src).exists(), f"{name}: {dockerfile.name} copies missing {src}"


def test_config_files_are_well_formed():
    from xml.etree import ElementTree

    for xml_file in DOCKER.rglob("*.xml"):
        ElementTree.parse(xml_file)  # raises on malformed XML
    for script in DOCKER.rglob("*.sh"):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
        assert script.read_text().startswith("#!/bin/bash"), script
    compile((DOCKER / "superset" / "superset_config.py").read_text(), "superset_config.py", "exec")


def test_superset_image_uses_the_platform_pins():
    """The Superset image installs what tv_platform/stack/superset.py measured (chDB aside: the server needs none)."""
    from tv_platform.stack.superset import PINS

    dockerfile = (DOCKER / "superset" / "Dockerfile").read_text()
    for pin in PINS:
        if not pin.startswith("chdb"):
            assert pin in dockerfile.split(), f"docker/superset/Dockerfile lacks {pin}"
