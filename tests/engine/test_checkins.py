"""Lone-worker check-ins on a controlled clock (fakeredis): request, answer, miss, once."""

from __future__ import annotations

import uuid

import pytest

from device.protocol import Topics, new_alarm
from hub.engine.checkins import MISSED_NAMESPACE, CheckinScheduler
from hub.core.schedule import BranchState
from hub.engine.service import AlarmService
from tests.engine.test_escalation import Clock, InlinePool, Recorder

T0 = 1_780_000_000_000  # ms


def scheduler(site, store, state=BranchState.LONE_WORKER):
    raised = []
    sched = CheckinScheduler(site, store, branch_state=lambda branch, now: (
        state if branch == "westside" else BranchState.STAFFED), raise_alarm=raised.append)
    return sched, raised


def commands(store):
    return [(f["device"], f["cmd"]) for _, f in store.devices.read_device_commands("t", block_ms=5)]


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


#: Thursday 2026-05-28 02:11 in Los Angeles (09:11 UTC): Sam Lee, Westside's only staff
#: member (Mon-Sat 12:00-21:00), is off duty; the branch is closed.
NIGHT = T0 - (20 * 3600 + 26 * 60 + 40) * 1000 + (9 * 3600 + 11 * 60) * 1000


def test_nobody_on_duty_means_nobody_is_asked_to_check_in(sample_site, fake_store):
    """Zero staff on duty is a lone-worker state (alarms page police first), but there is
    nobody at work to check on: no request, and so no missed_checkin at 02:13."""
    sched, raised = scheduler(sample_site, fake_store)
    for minute in range(0, 60, 1):
        sched.tick(NIGHT + minute * 60_000)
    assert commands(fake_store) == [] and raised == []
    sched.tick(T0)  # 13:26: Sam is on duty, alone
    assert commands(fake_store) == [("west-front-01", "checkin_request")]


def test_a_contact_put_on_duty_at_night_is_asked_to_check_in(sample_site, fake_store):
    sched, raised = scheduler(sample_site, fake_store)
    fake_store.branches.set_override("westside", "+12065550104", on_duty=True,
                                     until_ms=NIGHT + 3_600_000, by="Dana")
    sched.tick(NIGHT)
    assert commands(fake_store) == [("west-front-01", "checkin_request")]


@pytest.mark.parametrize("kind", ["assist", "emergency", "test"])
def test_any_press_of_the_wearer_answers_a_pending_check_in(sample_site, fake_store, kind):
    """The firmware sends a check-in event only for a single press while asked; an assist
    (three presses) sent instead is an answer too: the wearer is there and pressing."""
    sched, raised = scheduler(sample_site, fake_store)
    clock = Clock(T0 / 1000)
    service = AlarmService(sample_site, fake_store, Recorder(), lambda t, p: None,
                           InlinePool(), escalators=InlinePool(), clock=clock)
    sched.tick(T0)
    assert commands(fake_store) == [("west-front-01", "checkin_request")]
    clock.now = (T0 + 30_000) / 1000
    msg = new_alarm("west-front-01", kind, clock.now)
    service.handle(Topics().alarm("west-front-01"), msg.to_json())
    sched.tick(T0 + 200_000)  # past the grace
    assert raised == []


def test_a_wall_buttons_press_answers_nothing(sample_site, fake_store):
    sched, raised = scheduler(sample_site, fake_store)
    clock = Clock(T0 / 1000)
    service = AlarmService(sample_site, fake_store, Recorder(), lambda t, p: None,
                           InlinePool(), escalators=InlinePool(), clock=clock)
    sched.tick(T0)
    msg = new_alarm("main-circ-01", "assist", clock.now)
    service.handle(Topics().alarm("main-circ-01"), msg.to_json())
    sched.tick(T0 + 200_000)
    assert [a.kind for a in raised] == ["missed_checkin"]


def test_a_request_made_just_before_the_shift_ends_is_followed_through(sample_site,
                                                                      fake_store):
    """Asked at 20:59 (Sam on duty until 21:00), unanswered: the alarm comes at 21:01,
    though nobody is on duty by then."""
    sched, raised = scheduler(sample_site, fake_store)
    at_2059 = T0 + (7 * 3600 + 32 * 60 + 20) * 1000  # 13:26:40 + 7:32:20
    sched.tick(at_2059)
    assert commands(fake_store) == [("west-front-01", "checkin_request")]
    sched.tick(at_2059 + 61_000)  # 21:00:01: off shift, nobody asked again
    sched.tick(at_2059 + 120_000)
    [alarm] = raised
    assert alarm.id == str(uuid.uuid5(MISSED_NAMESPACE, f"west-front-01:{at_2059}"))
    assert commands(fake_store) == []


def test_a_stale_request_raises_nothing(sample_site, fake_store):
    """A request older than grace + period (every hub down meanwhile) is not judged."""
    sched, raised = scheduler(sample_site, fake_store)
    fake_store.r.hset("haven:checkin:west-front-01", "requested_ms", NIGHT - 3 * 3_600_000)
    sched.tick(NIGHT)
    assert raised == []
