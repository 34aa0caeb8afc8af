"""The hub's wall clock steps an hour (NTP after a dead RTC battery, a VM resumed):
escalation timers must neither all fire at once nor wait for the hour to pass.

Only the hub process's clock moves (see tests/faults/clockshift); Redis and this test
keep real time."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hub.store.alarms import Store
from tests.faults.harness import (WAIT_S, assert_none_lost, assert_nothing_paged_twice,
                                  assert_resumed, attempts_run, fast_site, pages, publisher,
                                  stop, wait_until, worker)
from tests.faults.test_hub_kill import attempt_done, raise_alarms

pytestmark = pytest.mark.faults

CLOCKSHIFT = Path(__file__).parent / "clockshift"
HOUR_S = 3600


def shifted_worker(tmp_path, site, mosquitto, redis_service, fake_twilio):
    """A hub worker whose ``time.time()`` is shifted by the seconds in the returned file."""
    shift = tmp_path / "clock-shift"
    shift.write_text("0")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(CLOCKSHIFT),
                                                        os.environ.get("PYTHONPATH")])),
           "HAVEN_TEST_CLOCK_SHIFT_FILE": str(shift)}
    proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio,
                       extra_env=env)
    return proc, log, shift


def attempt_times(fake_twilio, alarm_id: str) -> dict[int, float]:
    """Each attempt's first page, monotonic."""
    first: dict[int, float] = {}
    for p in pages(fake_twilio):
        if p.alarm_id == alarm_id:
            first[p.attempt] = min(first.get(p.attempt, p.at), p.at)
    return first


@pytest.mark.parametrize("step_s", [
    HOUR_S,
    -HOUR_S,  # hub/engine/clockwatch.py: the schedule moves with the step
], ids=["forward", "back"])
def test_a_clock_step_neither_bunches_nor_stalls_escalation(
        tmp_path, mosquitto, redis_service, fake_twilio, step_s):
    site = fast_site(tmp_path)
    proc, log, shift = shifted_worker(tmp_path, site, mosquitto, redis_service, fake_twilio)
    store = Store.from_url(redis_service.url)
    client = publisher(mosquitto)
    try:
        ids = raise_alarms(client, 3)
        wait_until(lambda: all(attempt_done(store, a, 0) for a in ids), 10, "attempt 0 of all")
        first_due = {a: attempt_times(fake_twilio, a)[0] + WAIT_S for a in ids}
        shift.write_text(str(step_s))
        stepped = time.monotonic()
        for a in ids:  # the next attempt comes on time: not at the step, nor an hour late
            assert_resumed(fake_twilio, a, stepped, due=first_due[a])
            early = first_due[a] - attempt_times(fake_twilio, a)[1]
            assert early < 1.0, f"attempt 1 came {early:.1f} s before it was due"
        # two attempts after the step: enough to see the pace (a bunched pair shows as a gap
        # under WAIT_S), waited for rather than slept through
        wait_until(lambda: all(len([t for t in attempt_times(fake_twilio, a).values()
                                    if t > stepped]) >= 2 for a in ids),
                   4 * WAIT_S, "two attempts of every alarm after the step")
        for a in ids:
            ran = attempts_run(store, a)
            assert ran == sorted(set(ran)), ran  # no attempt twice
            times = attempt_times(fake_twilio, a)
            after = sorted(t for t in times.values() if t > stepped)
            # After the step the pace is the policy's.
            gaps = [b - a_ for a_, b in zip(after, after[1:])]
            assert len(after) >= 2 and min(gaps) >= WAIT_S - 0.5, (after, gaps)
        assert_none_lost(store, fake_twilio, ids)
        assert_nothing_paged_twice(fake_twilio)
    finally:
        client.loop_stop()
        client.disconnect()
        stop(proc)
        store.r.close()
