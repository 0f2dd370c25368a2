"""One settings object for the whole platform.

Every value comes from a documented environment variable (``TVP_*``) with a local default, so pointing the platform at a
real cluster is a matter of exporting variables, never of editing code. ``docs/configuration.md`` lists them all; the
table there is generated from ``ENV_VARS`` below (``tv-platform settings``).

``TVP_ENV`` selects the deployment: ``local`` (the one-machine stack that ``tv-platform stack up`` runs) or ``cluster``
(external services reached through the same variables). Resources are keyed by it in ``tv_platform/resources.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path

# name -> (default, description). Defaults may reference {state_dir}, {cache_dir}, {gp_host} and {gp_port}.
ENV_VARS: dict[str, tuple[str, str]] = {
    "TVP_ENV": ("local", "deployment: `local` (stack on this machine) or `cluster` (external services)"),
    "TVP_PROFILE": ("", "`cluster`: the multi-node profile on this machine (3 Kafka brokers, NameNode + 3 DataNodes, Spark standalone master + 2 workers, Hive Metastore on PostgreSQL, TVP_ENV=cluster) with its own ports (TVP_CLUSTER_PORT_BASE) and state (`<TVP_STATE_DIR>/cluster`); it overrides the endpoint variables it derives. Empty = the default profile"),
    "TVP_CLUSTER_PORT_BASE": ("31000", "cluster profile: first of the ~60 ports it uses (docs/deployment.md lists the layout)"),
    "TVP_STATE_DIR": ("~/.tv_platform", "data, logs and pid files of the local stack"),
    "TVP_CACHE_DIR": ("~/.cache/tv_platform", "downloaded jars (Maven repository) and the Superset virtualenv"),
    # Kafka
    "TVP_KAFKA_BOOTSTRAP": ("127.0.0.1:9092", "Kafka bootstrap servers (comma separated)"),
    "TVP_KAFKA_CONTROLLER_PORT": ("9093", "local KRaft controller port"),
    "TVP_KAFKA_TOPIC": ("tv_events", "topic of live viewing events"),
    "TVP_KAFKA_PARTITIONS": ("3", "partitions of the events topic when the platform creates it"),
    "TVP_KAFKA_HEAP": ("512m", "JVM heap of the local Kafka broker"),
    "TVP_KAFKA_SENSOR_INTERVAL": ("15", "seconds between the Kafka sensor's ticks: lower lands sooner, with more runs"),
    "TVP_KAFKA_SECURITY_PROTOCOL": ("PLAINTEXT", "how every Kafka client connects: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL`"),
    "TVP_KAFKA_SASL_MECHANISM": ("SCRAM-SHA-512", "SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`) with `SASL_*` protocols"),
    "TVP_KAFKA_SASL_USERNAME": ("tv_platform", "SASL user (the local stack creates it on its SASL_SSL listener)"),
    "TVP_KAFKA_SASL_PASSWORD": ("tv_platform", "its password"),
    "TVP_KAFKA_SSL_CAFILE": ("", "PEM file of the CA that signed the brokers' certificates (`SSL`, `SASL_SSL`); empty = the system's CAs"),
    "TVP_KAFKA_SSL_CERTFILE": ("", "PEM client certificate for mutual TLS (empty = none)"),
    "TVP_KAFKA_SSL_KEYFILE": ("", "PEM private key of that certificate"),
    "TVP_KAFKA_COMPRESSION": ("lz4", "producer compression: `none`, `gzip`, `snappy`, `lz4` or `zstd`"),
    "TVP_KAFKA_BROKERS": ("1", "brokers of the local KRaft cluster (`stack up --kafka-brokers 3`: RF 3, min.insync.replicas 2); node n listens on the bootstrap and controller ports + 2(n-1)"),
    "TVP_KAFKA_SASL_SSL_PORT": ("0", "local stack: port of an extra SASL_SSL listener (certificates and SCRAM user made at `stack up`); 0 = none"),
    "TVP_LANDING_MAX_ATTEMPTS": ("5", "landing runs of one offset range before it becomes a dead letter"),
    "TVP_LANDING_RETRY_BACKOFF": ("30", "seconds before the first retry of a failed landing run (doubling, at most 15 min)"),
    "TVP_LANDING_MAX_RUNTIME": ("600", "seconds a landing run may take before run monitoring fails it (and it is retried)"),
    "TVP_LANDING_RUN_RECORDS": ("1000000", "records one landing run lands at most (a backlog is split into runs of this size): a run costs seconds to start, so larger runs cost less per event; a run holds its records in memory, ≈ 1.2 GB at 1 M (0.7 GB at 500 k)"),
    # HDFS
    "TVP_HDFS_URL": ("hdfs://127.0.0.1:8020", "Hadoop-compatible file system URL of the lake (hdfs://, file://)"),
    "TVP_WEBHDFS_URL": ("http://127.0.0.1:9870", "WebHDFS endpoint of the NameNode"),
    "TVP_HDFS_USER": ("tv_platform", "user name sent to WebHDFS"),
    "TVP_LAKE_ROOT": ("/tv_platform", "directory of the lake inside the file system"),
    "TVP_HDFS_HEAP": ("768m", "JVM heap of the local HDFS mini cluster"),
    # Spark / Hive
    "TVP_SPARK_REMOTE": ("sc://127.0.0.1:15002", "Spark Connect URL every Dagster step uses"),
    "TVP_SPARK_DRIVER_MEMORY": ("3g", "driver memory of the local Spark Connect server"),
    "TVP_SPARK_SHUFFLE_PARTITIONS": ("4", "spark.sql.shuffle.partitions of the local server (2 cores)"),
    "TVP_HIVE_METASTORE_URI": ("", "thrift://host:9083 of a Hive Metastore (cluster); empty = embedded Derby"),
    "TVP_HIVE_DATABASE": ("tv", "Hive database of the lake tables"),
    "TVP_SPARK_MASTER": ("local[2]", "master of the local Spark Connect server: `local[N]`, or `spark://host:port` of a standalone master (the cluster profile's)"),
    "TVP_SPARK_EXECUTOR_MEMORY": ("1g", "cluster profile: memory of each executor on a standalone worker"),
    "TVP_SPARK_DAEMON_HEAP": ("256m", "cluster profile: heap of the standalone master and worker daemons"),
    "TVP_HIVE_METASTORE_HEAP": ("512m", "cluster profile: heap of the Hive Metastore service"),
    # Greenplum (PostgreSQL locally)
    "TVP_GP_HOST": ("127.0.0.1", "Greenplum / PostgreSQL host"),
    "TVP_GP_PORT": ("5432", "Greenplum / PostgreSQL port"),
    "TVP_GP_DATABASE": ("tv_warehouse", "warehouse database"),
    "TVP_GP_SCHEMA": ("tv_marts", "schema of the marts"),
    "TVP_GP_LOADER_USER": ("tv_loader", "role that loads marts"),
    "TVP_GP_LOADER_PASSWORD": ("tv_loader", "its password"),
    "TVP_GP_READER_USER": ("tv_reader", "read-only role for dashboards"),
    "TVP_GP_READER_PASSWORD": ("tv_reader", "its password"),
    "TVP_GP_DIALECT": ("postgres", "`greenplum` adds DISTRIBUTED BY to DDL; `postgres` for plain PostgreSQL"),
    "TVP_PG_ADMIN_USER": ("postgres", "superuser of the local PostgreSQL (creates roles and databases)"),
    # Dagster instance storage
    "TVP_DAGSTER_PG_HOST": ("{gp_host}", "PostgreSQL host of Dagster's storage (default: the warehouse's, as in the stack)"),
    "TVP_DAGSTER_PG_PORT": ("{gp_port}", "its port (default: the warehouse's)"),
    "TVP_DAGSTER_PG_DATABASE": ("dagster", "database of Dagster's run/event/schedule storage"),
    "TVP_DAGSTER_PG_USER": ("dagster", "its owner"),
    "TVP_DAGSTER_PG_PASSWORD": ("dagster", "its password"),
    # ClickHouse
    "TVP_CLICKHOUSE_URL": ("chdb://{state_dir}/clickhouse", "chdb:///path (embedded engine) or http(s)://user:pw@host:port"),
    "TVP_CLICKHOUSE_DATABASE": ("tv_marts", "ClickHouse database of the marts"),
    # Simulation
    "TVP_SIM_USERS": ("10000", "simulated subscribers"),
    "TVP_SIM_SEED": ("42", "simulator seed; a (seed, users, date) triple always gives the same day"),
    "TVP_START_DATE": ("2023-09-01", "first daily partition"),
    # The operator's calendar (docs/operations.md, "Days and the operator's clock")
    "TVP_TIMEZONE": ("UTC", "the operator's time zone (IANA name, e.g. `Europe/Moscow`): daily partitions, the schedules, \"today\" and the reading of naive event timers use it; read when the definitions load"),
    "TVP_LATE_HORIZON_DAYS": ("7", "late data: an event landed for a day up to this many days back re-materializes that day through automation; older days are landed, reported and rebuilt with `tv-platform backfill --start D --end D`"),
    # Audience measures (docs/measures.md)
    "TVP_BROADCAST_DAY_START": ("05:00", "HH:MM at which a broadcast day starts (Mediascope's 05:00; `00:00` = calendar day, the seed's); decides the day of every viewing minute: partition D of the lake's aggregates, the programme attribution and the audience measures is broadcast day D (docs/measures.md)"),
    "TVP_REACH_THRESHOLD_MINUTES": ("1", "consecutive credited minutes on a channel / programme a universe member needs to count as reached"),
    "TVP_DAYPARTS": ("night=01:00,morning=06:00,daytime=12:00,early_evening=17:00,prime=19:00,late=23:00", "dayparts as name=HH:MM (clock start; each runs to the next start, the last wraps to the first)"),
}


def _default(name: str) -> str:
    return ENV_VARS[name][0]


def _get(name: str) -> str:
    forced = _profile_overrides()
    if name in forced:
        return forced[name]
    if name in os.environ:
        return os.environ[name]
    return (PROFILE_DEFAULTS if os.environ.get("TVP_PROFILE") else {}).get(name, _default(name))


#: defaults of the cluster profile where they differ from the default profile's (the environment still wins): the
#: work runs in executors on the workers, so the driver and every JVM get a smaller heap (24 GB shared machine)
PROFILE_DEFAULTS: dict[str, str] = {
    "TVP_KAFKA_HEAP": "256m",
    "TVP_HDFS_HEAP": "384m",
    "TVP_SPARK_DRIVER_MEMORY": "1g",
}


#: the cluster profile's ports, as offsets from TVP_CLUSTER_PORT_BASE (docs/deployment.md shows the table)
CLUSTER_PORTS: dict[str, int] = {
    "kafka": 0,  # node n: broker base+2(n-1), controller base+2(n-1)+1 (n = 1..3)
    "namenode": 10, "namenode_http": 11,
    "datanode": 12,  # DataNode n: data transfer base+12+3(n-1), http +1, ipc +2 (n = 1..3)
    "spark_connect": 21, "spark_master": 22, "spark_master_ui": 23,
    "spark_worker": 24,  # worker n: port base+24+2(n-1), web UI +1 (n = 1..2)
    "spark_thrift": 28,  # Spark's Thrift (HiveServer2) server, started by the Hive-client test
    "hive_metastore": 30,
    "postgres": 40,
    "dagster_ui": 50,
}


def _profile_overrides() -> dict[str, str]:
    """The variables a profile (TVP_PROFILE) sets, which win over the environment's: its own ports and state."""
    profile = os.environ.get("TVP_PROFILE", "")
    if not profile:
        return {}
    if profile != "cluster":
        raise ValueError(f"TVP_PROFILE must be empty or 'cluster', got {profile!r}")
    raw_base = os.environ.get("TVP_CLUSTER_PORT_BASE", _default("TVP_CLUSTER_PORT_BASE"))
    try:
        base = int(raw_base)
    except ValueError:
        raise ValueError(f"TVP_CLUSTER_PORT_BASE must be an integer, got {raw_base!r}") from None
    root = Path(os.path.expanduser(os.environ.get("TVP_STATE_DIR", _default("TVP_STATE_DIR")))).resolve()
    state = root if root.name == "cluster" else root / "cluster"
    port = {k: base + v for k, v in CLUSTER_PORTS.items()}
    return {
        "TVP_ENV": "cluster",
        "TVP_STATE_DIR": str(state),
        "TVP_KAFKA_BOOTSTRAP": ",".join(f"127.0.0.1:{port['kafka'] + 2 * i}" for i in range(3)),
        "TVP_KAFKA_CONTROLLER_PORT": str(port["kafka"] + 1),
        "TVP_KAFKA_BROKERS": "3",
        "TVP_KAFKA_SASL_SSL_PORT": "0",
        "TVP_HDFS_URL": f"hdfs://127.0.0.1:{port['namenode']}",
        "TVP_WEBHDFS_URL": f"http://127.0.0.1:{port['namenode_http']}",
        "TVP_SPARK_REMOTE": f"sc://127.0.0.1:{port['spark_connect']}",
        "TVP_SPARK_MASTER": f"spark://127.0.0.1:{port['spark_master']}",
        "TVP_HIVE_METASTORE_URI": f"thrift://127.0.0.1:{port['hive_metastore']}",
        "TVP_GP_HOST": "127.0.0.1",
        "TVP_GP_PORT": str(port["postgres"]),
        "TVP_GP_DIALECT": "postgres",
        "TVP_DAGSTER_PG_HOST": "127.0.0.1",
        "TVP_DAGSTER_PG_PORT": str(port["postgres"]),
        # no ClickHouse server can be installed here (Debian's 18.16 is too old for clickhouse-connect): embedded
        "TVP_CLICKHOUSE_URL": f"chdb://{state}/clickhouse",
    }


@dataclass(frozen=True)
class Settings:
    env: str
    state_dir: Path
    cache_dir: Path
    kafka_bootstrap: str
    kafka_controller_port: int
    kafka_topic: str
    kafka_partitions: int
    kafka_heap: str
    kafka_sensor_interval: int
    kafka_security_protocol: str
    kafka_sasl_mechanism: str
    kafka_sasl_username: str
    kafka_sasl_password: str
    kafka_ssl_cafile: str
    kafka_ssl_certfile: str
    kafka_ssl_keyfile: str
    kafka_compression: str
    kafka_brokers: int
    kafka_sasl_ssl_port: int
    landing_max_attempts: int
    landing_retry_backoff: int
    landing_max_runtime: int
    landing_run_records: int
    hdfs_url: str
    webhdfs_url: str
    hdfs_user: str
    lake_root: str
    hdfs_heap: str
    spark_remote: str
    spark_driver_memory: str
    spark_shuffle_partitions: int
    hive_metastore_uri: str
    hive_database: str
    spark_master: str
    spark_executor_memory: str
    spark_daemon_heap: str
    hive_metastore_heap: str
    profile: str
    cluster_port_base: int
    gp_host: str
    gp_port: int
    gp_database: str
    gp_schema: str
    gp_loader_user: str
    gp_loader_password: str
    gp_reader_user: str
    gp_reader_password: str
    gp_dialect: str
    pg_admin_user: str
    dagster_pg_host: str
    dagster_pg_port: int
    dagster_pg_database: str
    dagster_pg_user: str
    dagster_pg_password: str
    clickhouse_url: str
    clickhouse_database: str
    sim_users: int
    sim_seed: int
    start_date: str
    timezone: str
    late_horizon_days: int
    broadcast_day_start: str
    reach_threshold_minutes: int
    dayparts: str

    @classmethod
    def from_env(cls) -> "Settings":
        state_dir = Path(os.path.expanduser(_get("TVP_STATE_DIR"))).resolve()
        cache_dir = Path(os.path.expanduser(_get("TVP_CACHE_DIR"))).resolve()
        values: dict[str, object] = {}
        for f in fields(cls):
            var = "TVP_" + f.name.upper()
            raw = _get(var).format(state_dir=state_dir, cache_dir=cache_dir, gp_host=_get("TVP_GP_HOST"),
                                    gp_port=_get("TVP_GP_PORT"))
            values[f.name] = raw
        values["state_dir"] = state_dir
        values["cache_dir"] = cache_dir
        for f in fields(cls):
            if f.type == "int":
                try:
                    values[f.name] = int(values[f.name])  # type: ignore[arg-type]
                except ValueError as exc:
                    raise ValueError(f"TVP_{f.name.upper()} must be an integer, got {values[f.name]!r}") from exc
        if values["profile"] not in ("", "cluster"):
            raise ValueError(f"TVP_PROFILE must be empty or 'cluster', got {values['profile']!r}")
        if values["env"] not in ("local", "cluster"):
            raise ValueError(f"TVP_ENV must be 'local' or 'cluster', got {values['env']!r}")
        if values["gp_dialect"] not in ("postgres", "greenplum"):
            raise ValueError(f"TVP_GP_DIALECT must be 'postgres' or 'greenplum', got {values['gp_dialect']!r}")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(str(values["timezone"]))
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(f"TVP_TIMEZONE must be an IANA time zone name (e.g. Europe/Moscow), "
                             f"got {values['timezone']!r}") from exc
        if int(values["late_horizon_days"]) < 1:  # type: ignore[call-overload]
            raise ValueError(f"TVP_LATE_HORIZON_DAYS must be at least 1, got {values['late_horizon_days']!r}")
        if int(values["landing_run_records"]) < 1:  # type: ignore[call-overload]
            raise ValueError(f"TVP_LANDING_RUN_RECORDS must be at least 1, got {values['landing_run_records']!r}")
        return cls(**values)  # type: ignore[arg-type]

    # ---- derived endpoints -------------------------------------------------------------------------------------
    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @property
    def hdfs_rpc_port(self) -> int:
        return int(self.hdfs_url.rsplit(":", 1)[1]) if self.hdfs_url.startswith("hdfs://") else 8020

    @property
    def webhdfs_port(self) -> int:
        return int(self.webhdfs_url.rsplit(":", 1)[1])

    @property
    def spark_port(self) -> int:
        return int(self.spark_remote.rsplit(":", 1)[1].split("/")[0])

    @property
    def lake_url(self) -> str:
        """Root of the lake as a Hadoop URL, e.g. hdfs://127.0.0.1:8020/tv_platform."""
        return self.hdfs_url.rstrip("/") + "/" + self.lake_root.strip("/")

    def cluster_port(self, name: str, index: int = 0) -> int:
        """A port of the cluster profile (``CLUSTER_PORTS``); ``index`` steps within a group (node n: n-1)."""
        step = {"kafka": 2, "datanode": 3, "spark_worker": 2}.get(name, 1)
        return self.cluster_port_base + CLUSTER_PORTS[name] + step * index

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    def gp_dsn(self, role: str = "loader") -> str:
        user, password = {
            "loader": (self.gp_loader_user, self.gp_loader_password),
            "reader": (self.gp_reader_user, self.gp_reader_password),
        }[role]
        return f"host={self.gp_host} port={self.gp_port} dbname={self.gp_database} user={user} password={password}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (read once). Tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings.from_env()


def make_state_dir(settings: Settings) -> Path:
    """The state directory, created owner-only (mode 0700) when missing: it holds the services' data and the secrets
    the platform generates (Superset's admin password and key)."""
    if not settings.state_dir.exists():
        settings.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(settings.state_dir, 0o700)  # mkdir's mode is filtered by the umask
    return settings.state_dir


SECRET_WORDS = ("password", "secret")


def shown_value(name: str, value) -> str:
    """A setting as ``tv-platform settings`` prints it: passwords and secrets masked, so is a password inside a URL."""
    import re

    text = str(value)
    if any(w in name.lower() for w in SECRET_WORDS):
        return "********" if text else ""
    return re.sub(r"(://[^:/@\s]*:)[^@/\s]*@", r"\1********@", text)


def settings_table() -> str:
    """Markdown table of every variable, its default and meaning (docs/configuration.md is made from it)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, (default, doc) in ENV_VARS.items():
        rows.append(f"| `{name}` | `{default}` | {doc} |")
    return "\n".join(rows)
