"""Shared fixtures. Tests talk to the real services of the local stack; the ``stack`` fixture brings it up once per
session (or reuses a running one)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tv_platform.settings import Settings, get_settings

FIXTURES = Path(__file__).parent / "fixtures"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="session")
def settings() -> Settings:
    return get_settings()


@pytest.fixture(scope="session")
def stack(settings) -> Settings:
    """The whole local stack, up and answering its protocols."""
    from tv_platform.cli import stack_up

    stack_up(quiet=True)
    return settings


@pytest.fixture(scope="session")
def spark(stack):
    """A Spark Connect session on the stack's server (the same one every Dagster step uses)."""
    from pyspark.sql import SparkSession

    session = SparkSession.builder.remote(stack.spark_remote).getOrCreate()
    yield session
    session.stop()


@pytest.fixture(scope="session")
def lake(stack):
    from tv_platform.engines.hdfs import lake_fs

    return lake_fs(stack)


@pytest.fixture
def unique() -> str:
    """A short unique suffix so tests never see each other's topics, tables or paths."""
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def create_warehouse_schema(stack: Settings, schema: str) -> None:
    """A PostgreSQL/Greenplum schema of a test's own, owned by the loader role and readable by the reader role (the
    loader may not create schemas)."""
    from tv_platform.stack.postgres import PostgresService

    admin = PostgresService(stack).admin_connect(stack.gp_database)
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}" AUTHORIZATION "{stack.gp_loader_user}"')
            cur.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO "{stack.gp_reader_user}"')
    finally:
        admin.close()


def pytest_report_header(config):
    return f"tv_platform: TVP_ENV={os.environ.get('TVP_ENV', 'local')} state={get_settings().state_dir}"


def hive_resources(stack: Settings, root: str, database: str) -> dict:
    """``hive`` and ``hive_io_manager`` on the stack's Spark for a lake root and Hive database of a test's own."""
    from tv_platform.engines.spark import HiveIOManager, HiveResource

    hive = HiveResource(spark_remote=stack.spark_remote, database=database, lake_url=stack.hdfs_url, lake_root=root,
                        webhdfs_url=stack.webhdfs_url, hdfs_user=stack.hdfs_user)
    return {"hive": hive, "hive_io_manager": HiveIOManager(spark_remote=stack.spark_remote, database=database,
                                                           database_location=hive.resolved_database_location())}


def broadcast_day(start: str, scope: str = "module"):
    """An autouse fixture that runs a module (or a test) with ``TVP_BROADCAST_DAY_START=start`` — e.g. ``00:00`` for
    tests whose expected values are on the calendar day (the seed's day) while the default broadcast day is 05:00.
    Subprocesses started inside inherit it."""

    @pytest.fixture(autouse=True, scope=scope)
    def _broadcast_day():
        mp = pytest.MonkeyPatch()
        mp.setenv("TVP_BROADCAST_DAY_START", start)
        get_settings.cache_clear()
        try:
            yield start
        finally:
            mp.undo()
            get_settings.cache_clear()

    return _broadcast_day


@pytest.fixture
def zone(monkeypatch):
    """Switch the operator's zone for a test: ``zone("Europe/Berlin")`` (the calendar, the sensor's cuts, the lake and
    the attribution read it at call time)."""

    def use(name: str):
        monkeypatch.setenv("TVP_TIMEZONE", name)
        get_settings.cache_clear()

    yield use
    monkeypatch.undo()
    get_settings.cache_clear()
