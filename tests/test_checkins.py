"""Lone-worker check-ins on a controlled clock (fakeredis): request, answer, miss, once."""

from __future__ import annotations

import uuid

from hub.checkins import MISSED_NAMESPACE, CheckinScheduler
from hub.schedule import BranchState

T0 = 1_780_000_000_000  # ms


def scheduler(site, store, state=BranchState.LONE_WORKER):
    raised = []
    sched = CheckinScheduler(site, store, branch_state=lambda branch, now: (
        state if branch == "westside" else BranchState.STAFFED), raise_alarm=raised.append)
    return sched, raised


def commands(store):
    return [(f["device"], f["cmd"]) for _, f in store.read_device_commands("t", block_ms=5)]


def test_a_lone_worker_is_asked_to_check_in_and_an_answer_raises_nothing(sample_site,
                                                                        fake_store):
    sched, raised = scheduler(sample_site, fake_store)
    sched.tick(T0)
    assert commands(fake_store) == [("west-front-01", "checkin_request")]  # only wearables
    sched.answered("west-front-01", T0 + 30_000)
    sched.tick(T0 + 200_000)  # past the grace: answered, so nothing
    assert raised == [] and commands(fake_store) == []
    sched.tick(T0 + 1_800_000)  # every 30 min
    assert commands(fake_store) == [("west-front-01", "checkin_request")]


def test_a_missed_check_in_raises_one_alarm_from_the_wearers_room(sample_site, fake_store):
    sched, raised = scheduler(sample_site, fake_store)
    other, _ = scheduler(sample_site, fake_store)  # a second hub worker
    sched.tick(T0)
    sched.tick(T0 + 119_999)
    assert raised == []
    sched.tick(T0 + 120_000)
    other.tick(T0 + 120_500)
    sched.tick(T0 + 121_000)
    [alarm] = raised
    assert (alarm.kind, alarm.device, alarm.branch, alarm.room) == (
        "missed_checkin", "west-front-01", "westside", "front-desk")
    # the id derives from device and request time: a retried raise is a duplicate
    assert alarm.id == str(uuid.uuid5(MISSED_NAMESPACE, f"west-front-01:{T0}"))


def test_a_staffed_branch_is_never_asked(sample_site, fake_store):
    sched, raised = scheduler(sample_site, fake_store, state=BranchState.STAFFED)
    for minute in range(0, 120, 5):
        sched.tick(T0 + minute * 60_000)
    assert commands(fake_store) == [] and raised == []
