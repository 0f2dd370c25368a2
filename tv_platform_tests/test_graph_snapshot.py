"""The definitions load without any service, and the graph is what the snapshot says: every asset key with its
partitioning, group, kinds and IO manager, every check, schedule, sensor and job (fast tier: no services).

When the graph changes on purpose (an asset added, a check renamed, a new sensor), regenerate the snapshot and review
its diff with the change:

    .venv/bin/python -m tv_platform_tests.test_graph_snapshot
"""

from __future__ import annotations

import json
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"


def graph_snapshot() -> dict:
    """The graph's shape as plain data (sorted, stable)."""
    from tv_platform.definitions import defs

    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = node.partitions_def
        assets[key.to_user_string()] = {
            "materializable": node.is_materializable,
            "partitions": None if partitions is None else f"{type(partitions).__name__}({partitions.cron_schedule})"
            if hasattr(partitions, "cron_schedule") else type(partitions).__name__,
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "parents": sorted(p.to_user_string() for p in node.parent_keys),
            "automated": node.automation_condition is not None,
        }
    checks = sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys)
    return {
        "assets": assets,
        "checks": checks,
        "schedules": sorted(s.name for s in defs.schedules or []),
        "sensors": sorted(s.name for s in defs.sensors or []),
        "jobs": sorted(j.name for j in defs.jobs or []),
    }


def test_definitions_load_without_services():
    import dagster as dg

    from tv_platform.definitions import defs

    dg.Definitions.validate_loadable(defs)


def test_the_asset_graph_is_the_snapshot():
    expected = json.loads(SNAPSHOT.read_text())
    actual = graph_snapshot()
    for part in ("checks", "schedules", "sensors", "jobs"):
        assert actual[part] == expected[part], f"{part} changed: regenerate the snapshot (see this module's docstring)"
    assert sorted(actual["assets"]) == sorted(expected["assets"]), "asset keys changed: regenerate the snapshot"
    for key, shape in expected["assets"].items():
        assert actual["assets"][key] == shape, f"{key} changed: regenerate the snapshot (see this module's docstring)"


if __name__ == "__main__":
    SNAPSHOT.parent.mkdir(exist_ok=True)
    snapshot = graph_snapshot()
    lines = [f" {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in snapshot.pop("assets").items()]
    text = '{\n"assets": {\n' + ",\n".join(lines) + "\n},\n"
    text += ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in snapshot.items()) + "\n}\n"
    SNAPSHOT.write_text(text)
    print(f"wrote {SNAPSHOT}")
