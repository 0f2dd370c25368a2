"""Tests that stop services (marker ``lifecycle``: ``./tvp test`` runs them last, in a pytest run of their own) — a
Spark Connect restart (which leaves every Spark session of the process dead, so no later test may hold one), then
`down` stopping exactly what `up` started and `up` restoring the stack."""

from __future__ import annotations

import pytest

from tv_platform.stack.base import group_alive

pytestmark = [pytest.mark.services, pytest.mark.lifecycle]


def test_hive_table_on_hdfs_survives_spark_restart(stack, spark, unique):
    from tv_platform.stack.spark import SparkConnectService

    table = f"default.restart_{unique}"
    spark.sql(f"create table {table} (id int, name string) stored as parquet partitioned by (dt string)")
    spark.sql(f"insert into {table} partition (dt='2023-09-23') values (1, 'Россия 1'), (2, 'НТВ')")
    location = spark.sql(f"describe formatted {table}").where("col_name = 'Location'").collect()[0].data_type
    assert location.startswith(stack.hdfs_url), location

    service = SparkConnectService(stack)
    service.stop()
    service.start()

    from pyspark.sql import SparkSession

    SparkSession.builder.remote(stack.spark_remote).getOrCreate().stop()  # drop the dead channel
    fresh = SparkSession.builder.remote(stack.spark_remote).getOrCreate()
    rows = fresh.sql(f"select id, name, dt from {table} order by id").collect()
    assert [(r.id, r.name, r.dt) for r in rows] == [(1, "Россия 1", "2023-09-23"), (2, "НТВ", "2023-09-23")]
    fresh.sql(f"drop table {table}")


def test_down_leaves_no_process_and_up_restores(stack):
    from tv_platform.cli import stack_down, stack_up
    from tv_platform.stack import services

    svcs = [s for s in services(stack) if not s.embedded()]
    pids = {s.name: s.recorded_pid() for s in svcs}
    assert all(pids.values()), pids

    stack_down()
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name}: process group {pid} still alive after down"
    assert all(not s.running() for s in svcs)

    stack_up(quiet=True)
    assert all(s.running() for s in svcs)
