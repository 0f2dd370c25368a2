"""The one place where local and cluster deployments differ: resources and executor per ``TVP_ENV``.

Both deployments read their endpoints from the same settings (environment variables). What differs is spelled out
here, one function per deployment, and nowhere else:

=================  ==========================================  ===================================================
resource           local (``tv-platform stack up``)            cluster
=================  ==========================================  ===================================================
``clickhouse``     chDB embedded under the state directory     a ClickHouse server, URL from ``EnvVar`` (secret);
                                                               chDB in the one-machine cluster profile
``greenplum``      PostgreSQL plays it (``postgres`` dialect)  Greenplum (``DISTRIBUTED BY``), password ``EnvVar``
executor           in-process (two cores, Spark elsewhere)     multiprocess
=================  ==========================================  ===================================================

Kafka, the lake (HDFS), Hive (Spark Connect) are built alike from the settings in both. The definitions pass the
settings of the code location (``tv_platform/location.py``, read once when it loads); this module never reads them at
import time. Engine modules know nothing of deployments and never import ``tv_platform.stack``
(``tv_platform_tests/test_import_rules.py``).
"""

from __future__ import annotations

import os
from typing import Any, Callable

import dagster as dg

from tv_platform.engines.clickhouse import ClickHouseIOManager, ClickHouseWarehouse
from tv_platform.engines.greenplum import GreenplumIOManager, GreenplumWarehouse
from tv_platform.engines.hdfs import HdfsCsvIOManager, LakeResource
from tv_platform.engines.kafka import KafkaResource
from tv_platform.engines.spark import lake_resources
from tv_platform.settings import Settings, get_settings


def _secret(var: str, value: str) -> Any:
    """``EnvVar(var)`` when the environment sets it (Dagster then never shows the value), else the value itself."""
    return dg.EnvVar(var) if var in os.environ else value


def kafka_resource(settings: Settings) -> KafkaResource:
    return KafkaResource(bootstrap_servers=settings.kafka_bootstrap, topic=settings.kafka_topic,
                         partitions=settings.kafka_partitions,
                         security_protocol=settings.kafka_security_protocol,
                         sasl_mechanism=settings.kafka_sasl_mechanism, sasl_username=settings.kafka_sasl_username,
                         sasl_password=settings.kafka_sasl_password, ssl_cafile=settings.kafka_ssl_cafile,
                         ssl_certfile=settings.kafka_ssl_certfile, ssl_keyfile=settings.kafka_ssl_keyfile,
                         compression=settings.kafka_compression)


def lake_resource(settings: Settings) -> LakeResource:
    return LakeResource(hdfs_url=settings.hdfs_url, webhdfs_url=settings.webhdfs_url, user=settings.hdfs_user,
                        lake_root=settings.lake_root)


def hdfs_io_manager(settings: Settings) -> HdfsCsvIOManager:
    return HdfsCsvIOManager(hdfs_url=settings.hdfs_url, webhdfs_url=settings.webhdfs_url, user=settings.hdfs_user,
                            lake_root=settings.lake_root)


def greenplum_warehouse(settings: Settings, dialect: str) -> GreenplumWarehouse:
    """The loader role's warehouse; SELECT is granted to the reader role."""
    return GreenplumWarehouse(
        host=settings.gp_host, port=settings.gp_port, database=settings.gp_database, schema_name=settings.gp_schema,
        user=settings.gp_loader_user, password=_secret("TVP_GP_LOADER_PASSWORD", settings.gp_loader_password),
        reader_role=settings.gp_reader_user, dialect=dialect,
    )


def warehouse_resources(greenplum: GreenplumWarehouse, clickhouse: ClickHouseWarehouse) -> dict[str, Any]:
    """The warehouses' resources (what checks query) and the marts' IO managers built on them."""
    return {
        "greenplum": greenplum,
        "clickhouse": clickhouse,
        "greenplum_io_manager": GreenplumIOManager(warehouse=greenplum),
        "clickhouse_io_manager": ClickHouseIOManager(warehouse=clickhouse),
    }


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "kafka": kafka_resource(settings),
        "lake": lake_resource(settings),
        "hdfs_io_manager": hdfs_io_manager(settings),
        **lake_resources(settings),  # "hive" (catalog) and "hive_io_manager"
    }


def local_resources(settings: Settings) -> dict[str, Any]:
    """One machine: PostgreSQL in Greenplum's role, ClickHouse embedded (chDB, the default URL) in the run's process."""
    if settings.gp_dialect != "postgres":
        raise ValueError("TVP_ENV=local runs PostgreSQL in the Greenplum role: set TVP_GP_DIALECT=postgres")
    clickhouse = ClickHouseWarehouse(url=settings.clickhouse_url, database=settings.clickhouse_database)
    return {**_common(settings), **warehouse_resources(greenplum_warehouse(settings, "postgres"), clickhouse)}


def cluster_resources(settings: Settings) -> dict[str, Any]:
    """A cluster: Greenplum's dialect, a ClickHouse server whose URL (it may carry a password) stays an ``EnvVar``."""
    if settings.clickhouse_url.startswith("chdb://"):
        # the cluster profile on one machine keeps ClickHouse embedded: no ClickHouse server can be installed there
        if settings.profile != "cluster":
            raise ValueError("TVP_ENV=cluster needs a ClickHouse server: set TVP_CLICKHOUSE_URL=http(s)://host:8123")
        clickhouse = ClickHouseWarehouse(url=settings.clickhouse_url, database=settings.clickhouse_database)
    else:
        clickhouse = ClickHouseWarehouse(url=_secret("TVP_CLICKHOUSE_URL", settings.clickhouse_url),
                                         database=settings.clickhouse_database)
    return {**_common(settings), **warehouse_resources(greenplum_warehouse(settings, settings.gp_dialect), clickhouse)}


RESOURCES_BY_ENV: dict[str, Callable[[Settings], dict[str, Any]]] = {
    "local": local_resources,
    "cluster": cluster_resources,
}


def get_resources(settings: Settings | None = None) -> dict[str, Any]:
    settings = settings or get_settings()
    return RESOURCES_BY_ENV[settings.env](settings)


EXECUTOR_BY_ENV: dict[str, dg.ExecutorDefinition] = {
    # one laptop, two cores: every step of a run in the run's own process, one after the other. The Spark work happens
    # in the one Connect server anyway, and a process per step (Dagster's default) costs seconds of start-up each —
    # most of a small run such as "today's partition from sessions to the marts".
    "local": dg.in_process_executor,
    # a cluster: steps in parallel processes (the clickhouse pool still serializes ClickHouse steps)
    "cluster": dg.multiprocess_executor,
}


def get_executor(settings: Settings | None = None) -> dg.ExecutorDefinition:
    settings = settings or get_settings()
    return EXECUTOR_BY_ENV[settings.env]
