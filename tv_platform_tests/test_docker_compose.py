"""The distributed deployment (docker/compose.yaml), validated without a Docker engine.

Debian's ``docker-compose`` (1.29, Python) parses, merges and interpolates the file with ``config`` without talking
to an engine; it is installed with apt-get once when missing (these machines have the Docker CLI but neither an
engine nor the compose plugin). The rendered model is then checked for what the platform needs: every engine is a
service, the platform's containers run with ``TVP_ENV=cluster`` and every ``TVP_*`` setting pointing at the services
of the file, the Hive Metastore is 3.1.x, the Spark Connect server uses that metastore and the HDFS warehouse, and
stateful services have healthchecks that ``depends_on`` waits for. No image is built and no container runs here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tv_platform.settings import ENV_VARS, Settings

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"

#: role -> services that must exist
REQUIRED = {
    "kafka": ["kafka"],
    "hdfs namenode": ["namenode"],
    "hdfs datanodes": ["datanode-1", "datanode-2"],
    "hive metastore": ["hive-metastore", "hive-metastore-db"],
    "spark": ["spark-master", "spark-worker-1", "spark-connect"],
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
    "TVP_KAFKA_BOOTSTRAP": "kafka:9092",
    "TVP_HDFS_URL": "hdfs://namenode:8020",
    "TVP_WEBHDFS_URL": "http://namenode:9870",
    "TVP_SPARK_REMOTE": "sc://spark-connect:15002",
    "TVP_HIVE_METASTORE_URI": "thrift://hive-metastore:9083",
    "TVP_GP_HOST": "greenplum",
    "TVP_GP_PORT": "5432",
    "TVP_GP_DIALECT": "greenplum",
}
#: services that keep data (named volume + healthcheck)
STATEFUL = ["kafka", "namenode", "datanode-1", "datanode-2", "hive-metastore-db", "greenplum", "clickhouse",
            "dagster-postgres", "superset-db"]
#: services others wait for (healthcheck)
HEALTHCHECKED = [*STATEFUL, "hive-metastore", "spark-master", "spark-connect", "dagster-code", "dagster-webserver",
                 "superset"]


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
    assert s["kafka"]["image"].startswith("apache/kafka:")
    assert s["namenode"]["image"].startswith("apache/hadoop:3")
    assert s["datanode-1"]["image"] == s["namenode"]["image"] == s["datanode-2"]["image"]
    assert s["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    assert "greenplum" in s["greenplum"]["image"]
    for name in ("dagster-code", "dagster-webserver", "dagster-daemon", "spark-master", "spark-connect"):
        assert s[name]["build"]["dockerfile"] == "docker/Dockerfile", name
        assert Path(s[name]["build"]["context"]).resolve() == REPO, name


def test_kafka_is_kraft(model):
    env = _env(model["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "zookeeper" not in " ".join(env).lower()
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_LOG_RETENTION_MS"] == "-1"  # simulated events carry past timestamps


def test_hive_metastore_is_3_1_on_postgres(model):
    service = model["services"]["hive-metastore"]
    dockerfile = (Path(service["build"]["context"]) / service["build"]["dockerfile"]).read_text()
    base = re.search(r"^FROM\s+(\S+)", dockerfile, re.M).group(1)
    assert re.fullmatch(r"apache/hive:3\.1\.\d+", base), f"HMS must be 3.1.x for Spark 4's Hive 2.3 client, got {base}"
    assert re.search(r"3\.1\.\d+", service["image"])
    opts = _env(service)["SERVICE_OPTS"]
    assert "jdbc:postgresql://hive-metastore-db:5432/" in opts and "ConnectionPassword=" in opts
    site = (DOCKER / "hive" / "hive-site.xml").read_text()
    assert "org.postgresql.Driver" in site and "hdfs://namenode:8020/user/hive/warehouse" in site
    assert "<name>javax.jdo.option.ConnectionPassword</name>" not in site, "the metastore password belongs in the env file, not hive-site.xml"
    assert "postgresql" in dockerfile and "repo1.maven.org" in dockerfile  # the JDBC driver the image lacks


def test_spark_connect_uses_the_metastore_and_the_hdfs_warehouse(model):
    command = model["services"]["spark-connect"]["command"]
    confs = dict(command[i + 1].split("=", 1) for i, arg in enumerate(command) if arg == "--conf")
    platform = _env(model["services"]["dagster-code"])
    assert "org.apache.spark.sql.connect.service.SparkConnectServer" in command
    assert command[command.index("--master") + 1] == "spark://spark-master:7077"
    assert confs["spark.hadoop.hive.metastore.uris"] == platform["TVP_HIVE_METASTORE_URI"]
    assert confs["spark.sql.catalogImplementation"] == "hive"
    assert confs["spark.sql.warehouse.dir"].startswith(platform["TVP_HDFS_URL"] + "/")
    assert confs["spark.hadoop.fs.defaultFS"] == platform["TVP_HDFS_URL"]
    assert confs["spark.connect.grpc.binding.port"] == str(_host_port(platform["TVP_SPARK_REMOTE"])[1])
    assert confs["spark.sql.sources.partitionOverwriteMode"] == "dynamic"
    assert "javax.jdo.option.ConnectionURL" not in " ".join(confs), "no embedded Derby on the cluster"
    for worker in ("spark-worker-1", "spark-worker-2"):
        assert "spark://spark-master:7077" in model["services"][worker]["command"]


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
        assert "/opt/dagster/workspace.yaml" in model["services"][name]["command"]


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
