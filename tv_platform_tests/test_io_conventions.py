"""The conventions the IO managers and the embedded ClickHouse rely on, checked on the definitions (fast: no services).

- Every asset stored by one of the four IO managers (HDFS, Hive, Greenplum, ClickHouse) declares the same metadata
  keys: ``dagster/column_schema`` and, when partitioned, ``partition_expr`` (``engines/metadata.py``).
- chDB admits one process at a time: every ClickHouse step — mart assets and their checks — is in the ``clickhouse``
  pool, and every Dagster instance config the project ships limits pools to one step at a time.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

REPO = Path(__file__).resolve().parent.parent
STORING = {"hdfs_io_manager", "hive_io_manager", "greenplum_io_manager", "clickhouse_io_manager"}
INSTANCE_CONFIGS = [REPO / "dagster_home" / "dagster.yaml", REPO / "docker" / "dagster.yaml"]


def _stored_specs():
    from tv_platform.definitions import defs

    for assets_def in defs.assets or []:
        if not isinstance(assets_def, dg.AssetsDefinition):
            continue
        for key in assets_def.keys:
            io_manager = assets_def.get_io_manager_key_for_asset_key(key)
            if io_manager in STORING:
                yield io_manager, assets_def.specs_by_key[key]


def test_every_stored_asset_declares_the_shared_metadata_keys():
    from tv_platform.engines.metadata import COLUMN_SCHEMA, PARTITION_EXPR

    seen, missing = set(), []
    for io_manager, spec in _stored_specs():
        seen.add(io_manager)
        metadata = spec.metadata or {}
        if not isinstance(metadata.get(COLUMN_SCHEMA), dg.TableSchema):
            missing.append(f"{spec.key.to_user_string()} ({io_manager}): {COLUMN_SCHEMA}")
        if spec.partitions_def is not None and not metadata.get(PARTITION_EXPR):
            missing.append(f"{spec.key.to_user_string()} ({io_manager}): {PARTITION_EXPR}")
    assert seen == STORING
    assert not missing


def test_every_clickhouse_step_is_in_the_clickhouse_pool():
    from tv_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    marts = [k for k in graph.get_all_asset_keys() if k.path[0] == "clickhouse"]
    assert len(marts) >= 14
    assert all(graph.get(k).pools == {"clickhouse"} for k in marts), [k for k in marts if not graph.get(k).pools]
    checks = [c for c in defs.asset_checks or [] if any(k.asset_key.path[0] == "clickhouse" for k in c.check_keys)]
    assert checks and all(c.node_def.pool == "clickhouse" for c in checks)
    others = [k for k in graph.get_all_asset_keys() if k.path[0] != "clickhouse" and graph.get(k).pools]
    assert not others, "only ClickHouse steps need the pool"


def test_every_shipped_instance_config_runs_one_clickhouse_step_at_a_time():
    for path in INSTANCE_CONFIGS:
        pools = yaml.safe_load(path.read_text())["concurrency"]["pools"]
        assert pools["default_limit"] == 1 and pools.get("granularity", "op") == "op", path
