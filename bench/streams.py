"""What the ingest benchmarks share: the reference data in the lake, and a busy stream of simulated events."""

from __future__ import annotations


def land_reference_data(settings, users: int) -> None:
    """``channels`` and ``users`` (``users`` subscribers) in the lake of ``settings``: the landing validates against
    them."""
    import dagster as dg

    from tv_platform.assets import ingest
    from tv_platform.resources import hdfs_io_manager

    result = dg.materialize([ingest.channels, ingest.users], resources={"hdfs_io_manager": hdfs_io_manager(settings)},
                            run_config={"ops": {"users": {"config": {"users": users}}}})
    assert result.success


def busy_stream(day, users: int, count: int, first_seed: int = 0):
    """``count`` live events of ``day`` in timer order: the simulated day repeats with seeds ``first_seed``,
    ``first_seed + 1``, … (new session ids each time) until there are enough. Returns (events, the next unused seed)."""
    import pandas as pd

    from tv_platform.simulator.live import live_frame
    from tv_platform.simulator.model import SimulationParams

    frames, seed = [], first_seed
    while sum(len(f) for f in frames) < count:
        frames.append(live_frame(day, SimulationParams(users=users, seed=seed)))
        seed += 1
    events = pd.concat(frames, ignore_index=True).sort_values("timer", kind="stable").iloc[:count]
    return events.reset_index(drop=True), seed
