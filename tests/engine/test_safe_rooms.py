"""Safe rooms in what responders hear (issue 15, item 6): the hub records who shelters
where when a safe room's alarm is raised, names it in responders' pages of every alarm
of the branch, and tells everyone paged when the door opens. fakeredis, a recording
notifier, and executors that run each task at once (no thread to wait for)."""

from concurrent.futures import Executor, Future

import pytest

from dashboard import create_app
from device.protocol import EVENT_SAFE_ROOM_LEFT, DeviceEvent, Topics, new_alarm
from hub.core.lifecycle import AlarmEvent
from hub.engine.service import AlarmService, MessageOutcome
from tests.engine.test_service import RecordingNotifier
from tests.dashboard.test_twilio_hooks import TOKEN, post, said, twiml

NOW = 1763840000.0  # 2025-11-22 19:33:20 UTC, 11:33 in Los Angeles
POLICE, CIRC, DANA = "+12065550199", "+12065550101", "+12065550102"
SHELTER_LINE = "Staff sheltering in Safe Room since 11:33 PST"


class Inline(Executor):
    """Runs each task in the caller's thread: when ``handle`` returns, every page is sent."""

    def submit(self, fn, /, *args, **kwargs):
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool would
            future.set_exception(exc)
        return future


@pytest.fixture
def hub(sample_site, fake_store):
    clock = [NOW]
    notifier = RecordingNotifier()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, Inline(),
                           escalators=Inline(), clock=lambda: clock[0])
    return service, notifier, clock


def press(service, device, kind, at_s):
    msg = new_alarm(device, kind, at_s)
    assert service.handle(Topics().alarm(device), msg.to_json()) is MessageOutcome.STORED
    return msg.alarm_id


def door_opens(service, at_ms):
    event = DeviceEvent(device="main-safe-01", event=EVENT_SAFE_ROOM_LEFT, at=at_ms)
    return service.handle(Topics().event("main-safe-01"), event.to_json())


def texts_to(notifier, phone):
    return [body for to, body in notifier.sent if to == phone]


def test_an_emergency_tells_police_and_staff_that_staff_shelter_in_the_safe_room(hub):
    service, notifier, clock = hub
    press(service, "main-safe-01", "safe_room", NOW)
    clock[0] += 60
    notifier.sent.clear()
    press(service, "main-circ-01", "emergency", clock[0])
    [police] = texts_to(notifier, POLICE)
    [desk] = texts_to(notifier, CIRC)
    [manager] = texts_to(notifier, DANA)
    assert police.startswith("HAVEN EMERGENCY: Main Library, Circulation Desk. Pressed 11:34 PST.")
    assert SHELTER_LINE in police and SHELTER_LINE in desk
    assert "shelter" not in manager
    calls = dict(notifier.calls)
    assert "Staff are sheltering in Safe Room since 11:33 AM" in calls[POLICE]
    assert "shelter" not in calls[DANA]


def test_the_door_opening_is_told_to_everyone_paged_once_and_ends_the_shelter(hub,
                                                                            fake_store):
    service, notifier, clock = hub
    safe = press(service, "main-safe-01", "safe_room", NOW)
    clock[0] += 60
    emergency = press(service, "main-circ-01", "emergency", clock[0])
    paged = {to for to, _ in notifier.sent}
    notifier.sent.clear()
    clock[0] += 60
    assert door_opens(service, 1_000_123) is MessageOutcome.EVENT
    told = {to: body for to, body in notifier.sent}
    assert set(told) == paged and len(notifier.sent) == len(paged)   # each once
    assert all("Safe Room door opened 11:35 PST: staff have LEFT the safe room" in body
               for body in told.values())
    for alarm_id in (safe, emergency):
        assert "safe_room_left" in [e["event"] for e in fake_store.timeline(alarm_id)]
    door_opens(service, 1_000_123)            # the same event, redelivered
    assert len(notifier.sent) == len(paged)
    # nobody shelters now: the next alarm's pages say nothing of it
    notifier.sent.clear()
    press(service, "main-ref-01", "assist", clock[0])
    assert notifier.sent and not any("shelter" in body for _, body in notifier.sent)


def test_resolving_the_safe_room_alarm_ends_the_shelter(hub, fake_store):
    service, notifier, clock = hub
    safe = press(service, "main-safe-01", "safe_room", NOW)
    assert fake_store.branches.branch_switches("main").shelters
    fake_store.transition(safe, AlarmEvent.RESOLVE, by="dana", now_ms=int(NOW * 1000) + 1,
                          reason="Police attended")
    assert fake_store.branches.branch_switches("main").shelters == ()
    notifier.sent.clear()
    press(service, "main-circ-01", "emergency", NOW + 60)
    assert not any("shelter" in body for _, body in notifier.sent)


def test_a_call_answered_through_the_dashboard_names_the_shelter_to_police_only(
        hub, sample_site, fake_store):
    service, notifier, clock = hub
    press(service, "main-safe-01", "safe_room", NOW)
    emergency = press(service, "main-circ-01", "emergency", NOW + 60)
    client = create_app(sample_site, fake_store, twilio_auth_token=TOKEN).test_client()
    path = f"/twilio/voice/say?alarm={emergency}"
    to_police = said(twiml(post(client, path, {"To": POLICE})))
    to_manager = said(twiml(post(client, path, {"To": DANA})))
    assert "Staff are sheltering in Safe Room since 11:33 AM" in to_police
    assert "shelter" not in to_manager and "Circulation Desk" in to_manager


def test_a_door_opening_with_nobody_recorded_inside_does_not_claim_staff_left(hub):
    service, notifier, clock = hub
    press(service, "main-circ-01", "emergency", NOW)
    notifier.sent.clear()
    door_opens(service, 2_000_000)
    assert notifier.sent
    assert all(body.startswith("HAVEN: Main Library: Safe Room door opened 11:33 PST. Ref ")
               for _, body in notifier.sent)
