"""The local stack: every engine the platform needs, running for real on one machine (no Docker).

``tv-platform stack up | down | status | logs`` drives it; :func:`services` lists the services in start order.
"""

from __future__ import annotations

from tv_platform.settings import Settings
from tv_platform.stack.base import Service, StackError


def services(settings: Settings) -> list[Service]:
    """All local services, in the order they start (HDFS before Spark, whose warehouse lives on it)."""
    if settings.profile == "cluster":
        return cluster_services(settings)
    from tv_platform.stack.clickhouse import ClickHouseService
    from tv_platform.stack.hdfs import HdfsService
    from tv_platform.stack.kafka import kafka_nodes
    from tv_platform.stack.postgres import PostgresService
    from tv_platform.stack.spark import SparkConnectService

    return [
        PostgresService(settings),
        *kafka_nodes(settings),
        HdfsService(settings),
        SparkConnectService(settings),
        ClickHouseService(settings),
    ]


def cluster_services(settings: Settings) -> list[Service]:
    """The cluster profile (TVP_PROFILE=cluster): every engine in its multi-node mode on this one machine — three
    KRaft brokers, a NameNode and three DataNodes, a Hive Metastore service on PostgreSQL, a standalone Spark master
    and two workers with the Connect server submitting to it; ClickHouse stays embedded (chDB)."""
    from tv_platform.stack.clickhouse import ClickHouseService
    from tv_platform.stack.hdfs import DATANODES, HdfsDataNodeService, HdfsNameNodeService
    from tv_platform.stack.hive_metastore import HiveMetastoreService
    from tv_platform.stack.kafka import kafka_nodes
    from tv_platform.stack.postgres import PostgresService
    from tv_platform.stack.spark import SparkConnectService
    from tv_platform.stack.spark_standalone import WORKERS, SparkMasterService, SparkWorkerService

    return [
        PostgresService(settings),
        *kafka_nodes(settings),
        HdfsNameNodeService(settings),
        *(HdfsDataNodeService(settings, node=n) for n in range(1, DATANODES + 1)),
        HiveMetastoreService(settings),
        SparkMasterService(settings),
        *(SparkWorkerService(settings, node=n) for n in range(1, WORKERS + 1)),
        SparkConnectService(settings),
        ClickHouseService(settings),
    ]


__all__ = ["Service", "StackError", "services"]
