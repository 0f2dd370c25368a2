"""The local stack: every engine answers its own protocol and keeps its data (issue #2)."""

from __future__ import annotations

import json
from datetime import date

import psycopg2
import pytest

pytestmark = pytest.mark.services


def test_kafka_message_produced_and_consumed(stack, unique):
    from tv_platform.engines.kafka import publish
    from tv_platform.resources import kafka_resource

    kafka = kafka_resource(stack).with_topic(f"test_roundtrip_{unique}")
    kafka.ensure_topic(partitions=1)
    payload = {"session_id": unique * 4, "user_id": 7, "channel_id": 3, "timer": "2023-09-23 20:00:00", "status": "enabled"}
    assert publish(kafka, [payload], raw=True, progress=False) == 1

    begin, end = kafka.offsets()
    assert begin == {0: 0} and end == {0: 1}
    records = kafka.read_range(0, 0, 1)
    assert len(records) == 1
    assert records[0].key == payload["session_id"].encode()
    assert json.loads(records[0].value) == payload


def test_hdfs_file_through_webhdfs_and_spark(stack, lake, spark, unique):
    assert stack.hdfs_url.startswith("hdfs://"), "the local stack's lake is HDFS"
    path = f"/tmp/tests/{unique}/hello.txt"
    lake.write_text(path, "привет\nhdfs\n")
    assert lake.read_text(path) == "привет\nhdfs\n"
    assert lake.listdir(f"/tmp/tests/{unique}") == ["hello.txt"]  # the temporary name is gone after the rename

    # Spark reads what WebHDFS wrote, and writes something WebHDFS reads back
    lines = [r.value for r in spark.read.text(lake.uri(path)).collect()]
    assert lines == ["привет", "hdfs"]
    out = lake.uri(f"/tmp/tests/{unique}/from_spark")
    spark.createDataFrame([(1, "a"), (2, "b")], "id int, name string").coalesce(1).write.mode("overwrite").csv(out)
    parts = [n for n in lake.listdir(f"/tmp/tests/{unique}/from_spark") if n.startswith("part-")]
    assert len(parts) == 1
    assert lake.read_text(f"/tmp/tests/{unique}/from_spark/{parts[0]}").splitlines() == ["1,a", "2,b"]
    lake.delete(f"/tmp/tests/{unique}")
    assert not lake.exists(f"/tmp/tests/{unique}")


def test_postgres_roles_loader_writes_reader_reads(stack, unique):
    table = f"{stack.gp_schema}.roundtrip_{unique}"
    with psycopg2.connect(stack.gp_dsn("loader")) as conn, conn.cursor() as cur:
        cur.execute(f"create table {table} (id int primary key, name text)")
        cur.execute(f"insert into {table} values (1, 'Первый канал'), (2, 'СТС')")
    with psycopg2.connect(stack.gp_dsn("reader")) as conn, conn.cursor() as cur:
        cur.execute(f"select id, name from {table} order by id")
        assert cur.fetchall() == [(1, "Первый канал"), (2, "СТС")]
        with pytest.raises(psycopg2.errors.InsufficientPrivilege):
            cur.execute(f"insert into {table} values (3, 'x')")
    with psycopg2.connect(stack.gp_dsn("loader")) as conn, conn.cursor() as cur:
        cur.execute(f"drop table {table}")


def test_clickhouse_rows_round_trip(stack, unique):
    from tv_platform.stack.clickhouse import clickhouse_client

    table = f"{stack.clickhouse_database}.roundtrip_{unique}"
    with clickhouse_client(stack) as client:
        client.command(f"create table {table} (day Date, channel LowCardinality(String), minutes UInt32) "
                       "engine = MergeTree order by (day, channel)")
        day = date(2023, 9, 23)
        client.insert(table, [[day, "Россия 1", 120], [day, "НТВ", 45]],
                      column_names=["day", "channel", "minutes"])
    with clickhouse_client(stack) as client:  # a new client sees what the closed one wrote
        result = client.query(f"select channel, minutes from {table} order by minutes desc").result_rows
        assert result == [("Россия 1", 120), ("НТВ", 45)]
        client.command(f"drop table {table}")


def test_dagster_instance_storage_is_the_stacks_postgres(stack, monkeypatch):
    from dagster import DagsterInstance
    from dagster_postgres import PostgresRunStorage

    from tv_platform.cli import dagster_env

    for key, value in dagster_env().items():
        if key.startswith(("TVP_", "DAGSTER_HOME")):
            monkeypatch.setenv(key, value)
    instance = DagsterInstance.get()
    try:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert instance.get_runs_count() >= 0  # the storage answers
    finally:
        instance.dispose()


def test_code_location_loads_through_workspace(stack):
    import subprocess
    import sys
    from pathlib import Path

    from tv_platform.cli import REPO_ROOT, dagster_env

    dagster = str(Path(sys.executable).with_name("dagster"))
    proc = subprocess.run([dagster, "definitions", "validate", "-w", str(REPO_ROOT / "workspace.yaml")],
                          capture_output=True, text=True, env=dagster_env(), cwd=REPO_ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
