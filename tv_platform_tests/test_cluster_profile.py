"""The cluster profile (``tv-platform stack up --profile cluster``): every engine in its multi-node mode on this one
machine, on ports and a state directory of its own — checked from the engines' own views (the Kafka controller's topic
metadata, the NameNode's live DataNodes and a file's replication, the Spark master's workers and executors, the
metastore's PostgreSQL tables, the kernel's listening sockets), never from the platform's metadata.

The module brings the profile up with the command line (the same command an operator types) and, as its last test,
takes it down again with ``stack down --profile cluster``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tv_platform.settings import Settings, get_settings

pytestmark = [pytest.mark.services, pytest.mark.cluster]  # the last tier of `./tvp test` (`--cluster`): ~3 min warm, ~8 cold

CLI = [sys.executable, "-m", "tv_platform.cli"]


def cli(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "TVP_PROFILE": "cluster"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def profile() -> Settings:
    """The profile's settings, with the profile up (started by the CLI when it was not running)."""
    saved = os.environ.get("TVP_PROFILE")
    os.environ["TVP_PROFILE"] = "cluster"
    get_settings.cache_clear()
    try:
        settings = get_settings()
        up = cli("stack", "up", "--profile", "cluster")
        assert up.returncode == 0, up.stderr[-2000:] + up.stdout[-2000:]
        yield settings
    finally:
        if saved is None:
            os.environ.pop("TVP_PROFILE", None)
        else:
            os.environ["TVP_PROFILE"] = saved
        get_settings.cache_clear()


def _services(settings):
    from tv_platform.stack import services

    return services(settings)


def test_profile_has_its_own_ports_and_state(profile):
    saved = os.environ.pop("TVP_PROFILE")
    try:
        plain = Settings.from_env()
    finally:
        os.environ["TVP_PROFILE"] = saved
    assert profile.env == "cluster" and profile.profile == "cluster"
    assert profile.state_dir == plain.state_dir / "cluster"
    theirs = {plain.kafka_port, plain.kafka_controller_port, plain.hdfs_rpc_port, plain.webhdfs_port,
              plain.spark_port, plain.gp_port}
    ours = {p for svc in _services(profile) for p in svc.ports()}
    assert len(ours) >= 25 and not ours & theirs
    assert not ours & {9092, 9093, 8020, 9870, 15002, 5432, 3000, 19092, 19093, 18020, 19870, 25002, 15432}
    for svc in _services(profile):
        assert profile.state_dir in svc.log_file.parents and profile.state_dir in svc.pid_file.parents


def test_status_lists_every_service_up(profile):
    status = cli("stack", "status", "--profile", "cluster")
    assert status.returncode == 0, status.stdout
    rows = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()[2:] if line.strip()}
    names = ["postgres", "kafka", "kafka-2", "kafka-3", "hdfs-namenode", "hdfs-datanode-1", "hdfs-datanode-2",
             "hdfs-datanode-3", "hive-metastore", "spark-master", "spark-worker-1", "spark-worker-2", "spark"]
    assert all(rows.get(n) == "up" for n in names), status.stdout
    assert rows.get("clickhouse") == "embedded"


def _profile_pids(settings) -> set[int]:
    from tv_platform.stack.base import rss_mb_of_group  # noqa: F401 - same /proc walk, by group

    groups = {svc.recorded_pid() for svc in _services(settings)} - {None}
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) in groups:
                pids.add(int(entry.name))
    return pids


def test_every_process_listens_on_127_0_0_1_only(profile):
    out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True, check=True).stdout
    pids = _profile_pids(profile)
    mine = []
    for line in out.splitlines():
        cols = line.split()
        owners = {int(x) for x in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            mine.append(cols[3])
    assert len(mine) >= 25, out
    assert all(addr.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")) for addr in mine), mine


def test_kafka_three_brokers_topics_rf3_min_isr_2(profile):
    from confluent_kafka.admin import AdminClient, ConfigResource

    from tv_platform.resources import kafka_resource

    kafka = kafka_resource(profile).with_topic(f"rf_{uuid.uuid4().hex[:8]}")
    kafka.ensure_topic(partitions=3)
    admin = AdminClient(kafka.librdkafka_config())
    deadline = time.monotonic() + 60
    while True:
        meta = admin.list_topics(kafka.topic, timeout=15)
        parts = meta.topics[kafka.topic].partitions
        if (parts and all(p.leader >= 0 for p in parts.values())) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(meta.brokers) == [1, 2, 3]
    assert all(sorted(p.replicas) == [1, 2, 3] for p in parts.values())
    (future,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, kafka.topic)]).values()
    assert future.result(15)["min.insync.replicas"].value == "2"
    admin.delete_topics([kafka.topic])


def test_hdfs_namenode_three_datanodes_replication_three(profile):
    from tv_platform.stack.hdfs import HdfsNameNodeService

    nn = HdfsNameNodeService(profile)
    assert sorted(nn.live_datanodes()) == [f"127.0.0.1:{profile.cluster_port('datanode', i)}" for i in range(3)]
    base = f"{profile.webhdfs_url}/webhdfs/v1/tmp/replication_{uuid.uuid4().hex[:8]}"
    user = {"user.name": profile.hdfs_user}
    r = requests.put(base, params={"op": "CREATE", **user}, allow_redirects=False, timeout=10)
    r = requests.put(r.headers["Location"], data=b"x" * 100_000, timeout=30)
    assert r.status_code == 201, r.text
    status = requests.get(base, params={"op": "GETFILESTATUS", **user}, timeout=10).json()["FileStatus"]
    assert status["replication"] == 3 and status["length"] == 100_000
    deadline = time.monotonic() + 60
    while True:  # the pipeline acknowledges once every replica has the block; locations show all three
        blocks = requests.get(base, params={"op": "GETFILEBLOCKLOCATIONS", "offset": 0, "length": 100_000, **user},
                              timeout=10).json()["BlockLocations"]["BlockLocation"]
        if len(blocks[0]["names"]) == 3 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert sorted(int(n.rsplit(":", 1)[1]) for n in blocks[0]["names"]) == \
        [profile.cluster_port("datanode", i) for i in range(3)]
    requests.delete(base, params={"op": "DELETE", **user}, timeout=10)


@pytest.fixture(scope="module")
def spark(profile):
    from pyspark.sql import SparkSession

    from tv_platform.stack.base import port_open

    session = SparkSession.builder.remote(profile.spark_remote).create()
    yield session
    if port_open(profile.cluster_port("spark_connect")):  # after test_zz_down the server is gone: nothing to release
        session.stop()


def test_spark_connect_runs_on_the_standalone_workers(profile, spark):
    from tv_platform.stack.spark_standalone import SparkMasterService

    master = SparkMasterService(profile).state()
    workers = {w["port"]: w for w in master["workers"] if w["state"] == "ALIVE"}
    assert sorted(workers) == [profile.cluster_port("spark_worker", i) for i in range(2)]
    (app,) = [a for a in master["activeapps"] if a["name"] == "tv_platform Spark Connect"]
    assert app["state"] == "RUNNING" and app["cores"] == 2
    assert spark.conf.get("spark.master") == profile.spark_master
    # a job of four tasks, counted by the executors, and each worker runs an executor of the app
    assert spark.range(0, 100_000, 1, 4).selectExpr("sum(id) s").collect()[0]["s"] == sum(range(100_000))
    for w in workers.values():
        page = requests.get(f"http://127.0.0.1:{w['port'] + 1}/json/", timeout=5).json()
        assert [e["appid"] for e in page["executors"]] == [app["id"]], page


def test_spark_catalog_lives_in_the_metastore_service_on_postgresql(profile, spark):
    import psycopg2

    from tv_platform.stack.hive_metastore import DATABASE, ROLE, HiveMetastoreService

    db = f"probe_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE DATABASE {db}")
    try:
        spark.sql(f"CREATE TABLE {db}.t (n INT) STORED AS PARQUET")
        spark.sql(f"INSERT INTO {db}.t VALUES (1), (2), (3)")
        assert spark.sql(f"SELECT sum(n) FROM {db}.t").collect()[0][0] == 6
        hms = HiveMetastoreService(profile)
        conn = psycopg2.connect(host="127.0.0.1", port=profile.gp_port, dbname=DATABASE, user=ROLE,
                                password=hms.db_password())
        try:
            with conn.cursor() as cur:
                cur.execute('SELECT t."TBL_NAME", s."INPUT_FORMAT" FROM "TBLS" t JOIN "DBS" d ON t."DB_ID" = d."DB_ID" '
                            'JOIN "SDS" s ON t."SD_ID" = s."SD_ID" WHERE d."NAME" = %s', (db,))
                assert cur.fetchall() == [("t", "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")]
        finally:
            conn.close()
    finally:
        spark.sql(f"DROP DATABASE {db} CASCADE")


def test_a_day_rewritten_empty_loses_its_rows_on_the_hive_4_metastore(profile, spark):
    """Hive 4's metastore keeps the tables Spark creates as EXTERNAL (``TRANSLATED_TO_EXTERNAL``, purge on), where
    Spark refuses TRUNCATE: a day whose output becomes empty must still lose its rows and its files — counted from
    the table and from HDFS's own listing of the partition's directory."""
    from tv_platform.engines.spark import HiveCatalog

    db = f"probe_{uuid.uuid4().hex[:8]}"
    cat = HiveCatalog(spark, db)
    cat.ensure_database()
    try:
        rows = spark.createDataFrame([(1, "2024-03-01"), (2, "2024-03-01"), (5, "2024-03-02")], "n int, dt string")
        cat.write("t", rows, ["2024-03-01", "2024-03-02"])
        kind, props = cat.table_kind("t")
        assert kind == "EXTERNAL" and props.get("external.table.purge", "").upper() == "TRUE", (kind, props)
        cat.write("t", spark.createDataFrame([], "n int, dt string"), ["2024-03-01"])
        got = {r["dt"]: (r["c"], r["s"]) for r in spark.sql(
            f"SELECT dt, count(*) AS c, sum(n) AS s FROM {db}.t GROUP BY dt").collect()}
        assert got == {"2024-03-02": (1, 5)}
        assert "dt=2024-03-01" in [r[0] for r in spark.sql(f"SHOW PARTITIONS {db}.t").collect()]
        location = [r["data_type"] for r in spark.sql(f"DESCRIBE TABLE EXTENDED {db}.t").collect()
                    if r["col_name"] == "Location"][0]
        path = location.split("://", 1)[1].split("/", 1)[1]
        listing = requests.get(f"{profile.webhdfs_url.rstrip('/')}/webhdfs/v1/{path}/dt=2024-03-01",
                               params={"op": "LISTSTATUS", "user.name": profile.hdfs_user}, timeout=10)
        files = [f["pathSuffix"] for f in listing.json().get("FileStatuses", {}).get("FileStatus", [])
                 if f["type"] == "FILE"] if listing.status_code == 200 else []
        assert not [f for f in files if f.endswith(".parquet")], files
    finally:
        spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")


def test_metastore_stopped_steps_fail_naming_it_and_succeed_once_it_is_back(profile, spark):
    """Stop the metastore service (1) while a lake write runs on the workers: the write fails as
    MetastoreUnavailable, naming the service, and once it is back the same write gives exactly its rows, once;
    (2) before a run: the step fails at once naming it (Spark alone says "Failed to find the data source: parquet"
    after ~30 s of retries), and the run launched again after the restart succeeds — its table's rows counted
    against the CSV read with pandas."""
    import threading

    import dagster as dg
    import pandas as pd

    from tv_platform.assets import lake as L
    from tv_platform.engines.hdfs import frame_to_csv_bytes, lake_fs
    from tv_platform.engines.spark import HiveCatalog, HiveResource, MetastoreUnavailable
    from tv_platform.stack.hive_metastore import HiveMetastoreService

    hms = HiveMetastoreService(profile)
    suffix = uuid.uuid4().hex[:8]
    db, root = f"probe_hms_{suffix}", f"/probe_hms_{suffix}"
    cat = HiveCatalog(spark, db, metastore_uri=profile.hive_metastore_uri)
    cat.ensure_database()
    fs = lake_fs(profile)
    try:
        frame = (spark.range(0, 24_000_000, 1, 16).selectExpr("id % 1000 AS n", "length(sha2(CAST(id AS STRING), 256)) AS l")
                 .groupBy("n").agg({"l": "sum"}).withColumnRenamed("sum(l)", "l").selectExpr("n", "l", "'2024-03-01' AS dt"))
        outcome = {}

        def write():
            try:
                outcome["meta"] = cat.write("t", frame, ["2024-03-01"])
            except Exception as e:  # noqa: BLE001 - examined below
                outcome["error"] = e

        running = threading.Thread(target=write)
        running.start()
        time.sleep(3)  # the job is computing on the workers
        assert running.is_alive(), "the write finished before the metastore could be stopped: make it longer"
        assert hms.stop()
        running.join(timeout=600)
        assert isinstance(outcome.get("error"), MetastoreUnavailable), outcome
        assert profile.hive_metastore_uri in str(outcome["error"])
        hms.start()
        meta = cat.write("t", frame, ["2024-03-01"])
        row = spark.sql(f"SELECT count(*) AS c, count(DISTINCT n) AS k, sum(l) AS s FROM {db}.t").collect()[0]
        assert (row["c"], row["k"], row["s"], meta["rows"]) == (1000, 1000, 64 * 24_000_000, 1000)

        channels = pd.read_csv(Path(__import__("tv_platform").__path__[0]) / "data" / "tv_channels.csv")
        fs.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(
            channels.assign(time_rating=0.0, viewers_rating=0.0, rank=channels["channel_id"])))
        hive = HiveResource(spark_remote=profile.spark_remote, database=db, lake_url=profile.hdfs_url, lake_root=root,
                            webhdfs_url=profile.webhdfs_url, hdfs_user=profile.hdfs_user,
                            metastore_uri=profile.hive_metastore_uri)
        assert hms.stop()
        t0 = time.monotonic()
        failed = dg.materialize([L.hive_channels], resources={"hive": hive}, raise_on_error=False)
        assert not failed.success and time.monotonic() - t0 < 20
        error, message = failed.get_step_failure_events()[0].event_specific_data.error, ""
        while error is not None:  # Dagster's step error wraps the asset's
            message, error = message + error.message, error.cause
        assert "Hive metastore" in message and profile.hive_metastore_uri in message, message
        hms.start()
        again = dg.materialize([L.hive_channels], resources={"hive": hive})
        assert again.success
        assert spark.sql(f"SELECT count(*) FROM {db}.tv_channels").collect()[0][0] == len(channels)
    finally:
        if not hms.running():
            hms.start()
        spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")
        fs.delete(root)


def test_seed_day_through_the_graph_on_the_profile(profile):
    """The seed's recorded day end to end (test_end_to_end: produce --replay -> 3 brokers -> sensor -> HDFS with three
    DataNodes -> Hive tables in the metastore service -> sessions and daily viewing on the standalone workers), run
    on the profile: the seed's published 10,000 views and 19,882 hours, counted from the CSV with pandas."""
    env = {**os.environ, "TVP_PROFILE": "cluster"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
                          str(Path(__file__).with_name("test_end_to_end.py"))],
                         capture_output=True, text=True, timeout=900, env=env, stdin=subprocess.DEVNULL)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-3000:]


def test_datanode_sigkilled_during_landing_on_the_profile(profile):
    """test_ingest.py's DataNode fault (it needs the profile's three DataNodes), run on the profile; afterwards all
    three are live again for the NameNode."""
    from tv_platform.stack.hdfs import HdfsNameNodeService

    env = {**os.environ, "TVP_PROFILE": "cluster"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore", "-k",
                          "datanode_killed", str(Path(__file__).with_name("test_ingest.py"))],
                         capture_output=True, text=True, timeout=900, env=env, stdin=subprocess.DEVNULL)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-3000:]
    deadline = time.monotonic() + 120
    while len(HdfsNameNodeService(profile).live_datanodes()) < 3 and time.monotonic() < deadline:
        time.sleep(2)
    assert len(HdfsNameNodeService(profile).live_datanodes()) == 3


def test_spark_worker_sigkilled_during_a_job_the_job_completes_and_the_worker_rejoins(profile, spark):
    """SIGKILL worker 1 (its JVM and the executor it launched: one process group) while a job of 16 tasks runs: the
    tasks it held are rerun on worker 2's executor and the sum is exact; restarted, the worker registers again."""
    import signal
    import threading

    from tv_platform.stack.spark_standalone import SparkMasterService, SparkWorkerService

    worker = SparkWorkerService(profile, node=1)
    pgid = worker.recorded_pid()
    assert pgid
    n = 24_000_000
    result = {}

    def job():  # sha2 keeps each task busy for seconds; every digest has 64 hex digits
        result["sum"] = spark.range(0, n, 1, 16).selectExpr("sum(length(sha2(cast(id AS STRING), 256))) s") \
            .collect()[0]["s"]

    running = threading.Thread(target=job)
    running.start()
    time.sleep(4)  # the executors have their first tasks
    assert running.is_alive(), "the job finished before the worker could be killed: make it longer"
    os.killpg(pgid, signal.SIGKILL)
    running.join(timeout=600)
    assert result.get("sum") == 64 * n
    worker.start()
    deadline = time.monotonic() + 90
    while len(SparkMasterService(profile).alive_workers()) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(SparkMasterService(profile).alive_workers()) == 2


def test_spark_worker_sigkilled_during_a_lake_range_run_sessions_identical(profile, spark):
    """Three days of simulated history through the lake as one range run (the backfill policy's), twice into two
    databases: undisturbed, and with Spark worker 1 SIGKILLed seconds into the run (if the run fails, it is launched
    again, as a retry would). Both give the same sessions and daily viewing, no session twice, and per day as many
    sessions as the simulator drew (counted with pandas from the raw files' events)."""
    import signal
    import threading
    from datetime import date, timedelta

    import dagster as dg
    import pandas as pd

    from tv_platform.assets import lake as L
    from tv_platform.engines.hdfs import frame_to_csv_bytes, lake_fs
    from tv_platform.engines.spark import HiveIOManager, HiveResource
    from tv_platform.simulator.model import SimulationParams, simulate_day
    from tv_platform.simulator.reference import load_channels, make_users
    from tv_platform.stack.spark_standalone import SparkMasterService, SparkWorkerService

    suffix = uuid.uuid4().hex[:8]
    root = f"/probe_range_{suffix}"
    fs = lake_fs(profile)
    days = [(date(2023, 9, 20) + timedelta(days=i)).isoformat() for i in range(3)]
    params = SimulationParams(users=3000, seed=5)
    drawn = {}
    for d in days:
        ev = simulate_day(d, params)
        drawn[d] = ev["session_id"].nunique()
        fs.write_bytes(f"{root}/raw/tv_dataset/dt={d}/events.csv",
                       frame_to_csv_bytes(ev.assign(timer=ev["timer"].dt.strftime("%Y-%m-%d %H:%M:%S"))))
    fs.write_bytes(f"{root}/reference/channels/channels.csv", frame_to_csv_bytes(
        load_channels()[["channel_id", "channel_name", "time_rating", "viewers_rating", "rank"]]))
    fs.write_bytes(f"{root}/reference/users/users.csv", frame_to_csv_bytes(make_users(3000, 5)))
    tags = {"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]}
    worker = SparkWorkerService(profile, node=1)
    out = {}

    def build(label: str, fault: bool):
        hive = HiveResource(spark_remote=profile.spark_remote, database=f"probe_range_{label}_{suffix}",
                            lake_url=profile.hdfs_url, lake_root=root, webhdfs_url=profile.webhdfs_url,
                            hdfs_user=profile.hdfs_user, metastore_uri=profile.hive_metastore_uri)
        resources = {"hive": hive, "hive_io_manager": HiveIOManager(
            spark_remote=profile.spark_remote, database=hive.database,
            database_location=hive.resolved_database_location(), metastore_uri=profile.hive_metastore_uri)}
        assert dg.materialize([L.hive_channels, L.hive_users], resources=resources).success
        selection = [L.hive_tv_dataset, L.sessionize_assets, L.daily_viewing]
        killer, finished, killed_mid_run = None, threading.Event(), []

        def kill(pgid):
            killed_mid_run.append(not finished.is_set())
            os.killpg(pgid, signal.SIGKILL)

        if fault:
            pgid = worker.recorded_pid()
            assert pgid
            killer = threading.Timer(6.0, kill, args=(pgid,))
            killer.start()
        result = dg.materialize(selection, resources=resources, tags=tags, raise_on_error=False)
        finished.set()
        if killer is not None:
            killer.join()
            assert killed_mid_run == [True] and not worker.running(), "the worker was not killed during the run"
        if not result.success:  # the retry of a run that lost its worker
            result = dg.materialize(selection, resources=resources, tags=tags)
        assert result.success
        cat = hive.catalog()
        sessions = cat.read("viewing_sessions", days).toPandas()
        daily = cat.read("daily_viewing", days).toPandas()
        out[label] = (sessions.sort_values("session_id").reset_index(drop=True),
                      daily.sort_values("dt").reset_index(drop=True))
        cat.drop_database()

    try:
        build("calm", fault=False)
        build("fault", fault=True)
    finally:
        if not worker.running():
            worker.start()
        fs.delete(root)
    sessions, daily = out["fault"]
    assert not sessions["session_id"].duplicated().any()
    assert sessions.groupby("dt")["session_id"].nunique().to_dict() == drawn
    pd.testing.assert_frame_equal(sessions, out["calm"][0])
    pd.testing.assert_frame_equal(daily, out["calm"][1])
    deadline = time.monotonic() + 90
    while len(SparkMasterService(profile).alive_workers()) < 2 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(SparkMasterService(profile).alive_workers()) == 2


def test_zz_down_stops_the_profile_and_only_it(profile):
    from tv_platform.stack.base import port_open

    ports = [p for svc in _services(profile) for p in svc.ports()]
    plain_pids = {p.name: p.read_text() for p in (profile.state_dir.parent / "run").glob("*.pid")}
    down = cli("stack", "down", "--profile", "cluster")
    assert down.returncode == 0, down.stderr
    assert not [p for p in ports if port_open(p)]
    status = cli("stack", "status", "--profile", "cluster")
    assert status.returncode == 3 and " up " not in status.stdout
    # the default profile's pid files (another stack under the same TVP_STATE_DIR) are untouched
    assert {p.name: p.read_text() for p in (profile.state_dir.parent / "run").glob("*.pid")} == plain_pids
