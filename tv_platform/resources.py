"""The one place where local and cluster deployments differ: resources keyed by ``TVP_ENV``.

Both deployments read their endpoints from the same settings (environment variables); what the key decides is how a
resource is built — e.g. ClickHouse embedded (chdb) on a laptop but a server on a cluster, PostgreSQL playing Greenplum
locally but the Greenplum dialect (``DISTRIBUTED BY``) on a cluster — and how a run executes its steps.
"""

from __future__ import annotations

from typing import Any, Callable

import dagster as dg

from dagster_pyspark import PySparkResource

from tv_platform.engines.clickhouse import clickhouse_io_manager
from tv_platform.engines.greenplum import greenplum_io_manager
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.kafka import KafkaResource
from tv_platform.engines.spark import lake_resources
from tv_platform.settings import Settings, get_settings


def kafka_resource(settings: Settings) -> KafkaResource:
    return KafkaResource(bootstrap_servers=settings.kafka_bootstrap, topic=settings.kafka_topic,
                         partitions=settings.kafka_partitions,
                         security_protocol=settings.kafka_security_protocol,
                         sasl_mechanism=settings.kafka_sasl_mechanism, sasl_username=settings.kafka_sasl_username,
                         sasl_password=settings.kafka_sasl_password, ssl_cafile=settings.kafka_ssl_cafile,
                         ssl_certfile=settings.kafka_ssl_certfile, ssl_keyfile=settings.kafka_ssl_keyfile,
                         compression=settings.kafka_compression)


def spark_resource(settings: Settings) -> PySparkResource:
    """Every Dagster step talks to the one Spark Connect server (which owns the Hive metastore)."""
    return PySparkResource(spark_config={"spark.remote": settings.spark_remote})


def lake_resource(settings: Settings) -> LakeResource:
    return LakeResource(hdfs_url=settings.hdfs_url, webhdfs_url=settings.webhdfs_url, user=settings.hdfs_user,
                        lake_root=settings.lake_root)


def hdfs_io_manager(settings: Settings) -> HdfsCsvIOManager:
    return HdfsCsvIOManager(hdfs_url=settings.hdfs_url, webhdfs_url=settings.webhdfs_url, user=settings.hdfs_user,
                            lake_root=settings.lake_root)


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "kafka": kafka_resource(settings),
        "lake": lake_resource(settings),
        "hdfs_io_manager": hdfs_io_manager(settings),
        "pyspark": spark_resource(settings),
        **lake_resources(settings),  # "hive" (catalog) and "hive_io_manager"
        "greenplum_io_manager": greenplum_io_manager(settings),
        "clickhouse_io_manager": clickhouse_io_manager(settings),
    }


def _local(settings: Settings) -> dict[str, Any]:
    if settings.gp_dialect != "postgres":
        raise ValueError("TVP_ENV=local runs PostgreSQL in the Greenplum role: set TVP_GP_DIALECT=postgres")
    return _common(settings)


def _cluster(settings: Settings) -> dict[str, Any]:
    if settings.clickhouse_url.startswith("chdb://"):
        raise ValueError("TVP_ENV=cluster needs a ClickHouse server: set TVP_CLICKHOUSE_URL=http(s)://host:8123")
    return _common(settings)


RESOURCES_BY_ENV: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "local": _local,
    "cluster": _cluster,
}


def get_resources(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    return RESOURCES_BY_ENV[settings.env](settings)


EXECUTOR_BY_ENV: dict[str, dg.ExecutorDefinition] = {
    # one laptop, two cores: every step of a run in the run's own process, one after the other. The Spark work happens
    # in the one Connect server anyway, and a process per step (Dagster's default) costs seconds of start-up each —
    # most of a small run such as "today's partition from sessions to the marts".
    "local": dg.in_process_executor,
    # a cluster: steps in parallel processes (the ClickHouse pool still serializes chDB steps where it applies)
    "cluster": dg.multiprocess_executor,
}


def get_executor(settings: Settings | None = None) -> dg.ExecutorDefinition:
    settings = settings or get_settings()
    return EXECUTOR_BY_ENV[settings.env]
