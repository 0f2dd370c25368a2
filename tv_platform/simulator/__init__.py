"""Simulated IPTV viewing: reference data (channels, users), the day model, and the live/recorded event streams.

    from tv_platform.simulator import SimulationParams, simulate_day
    events = simulate_day("2023-09-16", SimulationParams(users=10_000, seed=42))

See docs/simulator.md for the model and how it relates to the seed generator.
"""

from tv_platform.simulator.live import iter_events, live_events, live_frame, read_recorded
from tv_platform.simulator.model import (EVENT_COLUMNS, SimulationParams, expected_sessions, simulate_day,
                                         simulate_range, simulate_sessions)
from tv_platform.simulator.reference import load_channels, make_users

__all__ = [
    "EVENT_COLUMNS",
    "SimulationParams",
    "expected_sessions",
    "iter_events",
    "live_events",
    "live_frame",
    "load_channels",
    "make_users",
    "read_recorded",
    "simulate_day",
    "simulate_range",
    "simulate_sessions",
]
