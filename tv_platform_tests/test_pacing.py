"""The live producer's pacing (#15): ``--speed N`` sends a day as it runs, N times real time."""

import numpy as np
import pytest

from tv_platform.engines.kafka import pace_schedule


def test_pace_schedule_follows_the_days_clock():
    hour = 3_600_000
    stamps = np.array([0, 0, hour, 2 * hour, 24 * hour]) + 1_700_000_000_000
    assert pace_schedule(stamps, 1).tolist() == [0, 0, 3600, 7200, 86400]
    assert pace_schedule(stamps, 60).tolist() == [0, 0, 60, 120, 1440]
    # today's clock starts now: what is past goes at once
    assert pace_schedule(stamps, 1, start_ms=int(stamps[0]) + 90 * 60_000).tolist() == [0, 0, 0, 1800, 81000]
    with pytest.raises(ValueError):
        pace_schedule(stamps, 0)


def test_produce_accepts_speed():
    from tv_platform.cli import build_parser

    args = build_parser().parse_args(["produce", "--speed", "120", "--date", "2023-09-23"])
    assert args.speed == 120
