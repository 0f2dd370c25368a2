"""The local stack: every engine the platform needs, running for real on one machine (no Docker).

``tv-platform stack up | down | status | logs`` drives it; :func:`services` lists the services in start order.
"""

from __future__ import annotations

from tv_platform.settings import Settings
from tv_platform.stack.base import Service, StackError


def services(settings: Settings) -> list[Service]:
    """All local services, in the order they start (HDFS before Spark, whose warehouse lives on it)."""
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


__all__ = ["Service", "StackError", "services"]
