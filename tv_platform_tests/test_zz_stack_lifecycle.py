"""Runs last (file order): `down` stops exactly what `up` started; `up` afterwards restores the stack."""

from __future__ import annotations

import pytest

from tv_platform.stack.base import group_alive

pytestmark = pytest.mark.services


def test_down_leaves_no_process_and_up_restores(stack):
    from tv_platform.cli import stack_down, stack_up
    from tv_platform.stack import services

    svcs = [s for s in services(stack) if not s.embedded()]
    pids = {s.name: s.recorded_pid() for s in svcs}
    assert all(pids.values()), pids

    stack_down()
    for name, pid in pids.items():
        assert not group_alive(pid), f"{name}: process group {pid} still alive after down"
    assert all(not s.running() for s in svcs)

    stack_up(quiet=True)
    assert all(s.running() for s in svcs)
