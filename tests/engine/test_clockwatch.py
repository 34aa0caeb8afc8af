"""hub/engine/clockwatch.py and Store.shift_schedule: a wall-clock step moves the schedule once."""

from __future__ import annotations

import pytest

from hub.engine.clockwatch import ClockWatch
from hub.core.model import Channel, PageKey


class Clocks:
    def __init__(self):
        self.wall, self.mono = 1_800_000_000.0, 100.0

    def tick(self, seconds: float, *, step: float = 0.0):
        self.mono += seconds
        self.wall += seconds + step


@pytest.mark.parametrize("step_s", [3600.0, -3600.0, 2.5, -2.5])
def test_a_step_is_reported_once_with_its_size(step_s):
    clocks = Clocks()
    watch = ClockWatch(lambda: clocks.wall, lambda: clocks.mono)
    clocks.tick(0.2)
    assert watch.step() == 0
    clocks.tick(0.2, step=step_s)
    assert watch.step() == pytest.approx(step_s * 1000, abs=1)
    clocks.tick(0.2)
    assert watch.step() == 0  # reported once


def test_slewing_and_scheduling_noise_are_not_steps():
    clocks = Clocks()
    watch = ClockWatch(lambda: clocks.wall, lambda: clocks.mono)
    for _ in range(100):  # NTP slewing: 0.5 ms per tick, 50 ms in all
        clocks.tick(0.2, step=0.0005)
        assert watch.step() == 0
    clocks.tick(0.2, step=1.9)  # below the 2 s tolerance
    assert watch.step() == 0


def test_the_schedule_moves_once_per_step_across_workers(fake_store):
    fake_store.r.zadd(f"{fake_store.prefix}:escalations", {"a1": 10_000, "a2": 20_000})
    key = PageKey("a1", 3_000_001, "+12065550101", Channel.CALL)
    fake_store.pages.schedule_call_retry(key, 30_000)
    assert fake_store.shift_schedule(-3_600_000, step_id="42") == 3
    assert fake_store.shift_schedule(-3_600_000, step_id="42") is None  # the other worker
    assert fake_store.escalation_due("a1") == 10_000 - 3_600_000
    assert fake_store.escalation_due("a2") == 20_000 - 3_600_000
    assert fake_store.pages.lease_call_retries(30_000 - 3_600_000, 4000) == [str(key)]
