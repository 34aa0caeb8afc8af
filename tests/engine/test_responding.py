"""Once someone acknowledges, everyone else who was paged hears who is responding: once
each, by SMS (a call in progress hears it when it asks again), across hub workers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dashboard import create_app
from hub.core.lifecycle import AlarmEvent
from hub.engine.service import AlarmService
from hub.store.alarms import Store
from tests.engine.test_escalation import T0, Clock, InlinePool, Recorder, phones, raise_alarm
from tests.dashboard.test_twilio_hooks import CIRC, DANA, TOKEN, alarm, post, raise_paged, said, twiml

RESPONDING = ("HAVEN: Dana Ortiz (branch manager) is responding to EMERGENCY at Main "
              "Library, Circulation Desk.")


def acknowledged(store: Store, alarm_id: str, by: str) -> dict[str, str]:
    """Acknowledge as ``by`` and return the device command the forwarder would see."""
    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by=by, now_ms=int(T0 * 1000) + 5000)
    [(_, fields)] = [(i, f) for i, f in store.devices.read_device_commands("t", block_ms=5)
                     if f["cmd"] == "acknowledged"]
    return fields


@pytest.fixture
def rig(sample_site, fake_store):
    pool, notifier = InlinePool(), Recorder()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, pool,
                           escalators=pool, clock=Clock())
    return service, notifier, fake_store


def test_everyone_else_paged_is_texted_who_is_responding_once(rig, sample_site):
    service, notifier, store = rig
    alarm_id = raise_alarm(service)  # emergency: desk, Dana and police, by call and SMS
    paged = {to for _, to, _ in notifier.sent}
    notifier.sent.clear()
    command = acknowledged(store, alarm_id, "Dana Ortiz (branch manager)")

    service.command_forwarded(command)
    service.command_forwarded(command)  # redelivered to another worker: claimed, skipped

    others = paged - phones(sample_site, "Dana Ortiz")
    assert others == phones(sample_site, "Main circulation desk", "Police dispatch")
    assert sorted(to for _, to, _ in notifier.sent) == sorted(others)  # once each
    assert {(ch, text) for ch, _, text in notifier.sent} == {("sms", RESPONDING)}


def test_a_dashboard_acknowledgement_tells_everyone_paged(rig, sample_site):
    service, notifier, store = rig
    alarm_id = raise_alarm(service, kind="assist")
    paged = {to for _, to, _ in notifier.sent}
    notifier.sent.clear()
    service.command_forwarded(acknowledged(store, alarm_id, "admin"))  # not a paged contact
    assert {to for _, to, _ in notifier.sent} == paged
    assert all(text.startswith("HAVEN: admin is responding to Assistance needed at Main "
                               "Library, Circulation Desk") for _, _, text in notifier.sent)


def test_nobody_is_told_about_an_alarm_closed_before_the_command_was_forwarded(rig):
    service, notifier, store = rig
    alarm_id = raise_alarm(service)
    notifier.sent.clear()
    command = acknowledged(store, alarm_id, "Dana Ortiz (branch manager)")
    store.transition(alarm_id, AlarmEvent.RESOLVE, by="Dana", reason="patron left",
                     now_ms=int(T0 * 1000) + 6000)
    service.command_forwarded(command)
    assert notifier.sent == []  # the all-clear says it instead


def test_two_workers_forwarding_the_same_acknowledgement_text_each_contact_once(
        sample_site, redis_service):
    """Two hub workers on one real redis-server: a command a worker took but did not
    acknowledge is handed to another (the consumer group), so both may act on it."""
    stores = [Store.from_url(redis_service.url) for _ in range(2)]
    notifiers = [Recorder(), Recorder()]
    workers = [AlarmService(sample_site, store, notifier, lambda t, p: None, InlinePool(),
                            escalators=InlinePool(), clock=Clock())
               for store, notifier in zip(stores, notifiers)]
    alarm_id = raise_alarm(workers[0])
    paged = {to for _, to, _ in notifiers[0].sent}
    notifiers[0].sent.clear()
    command = acknowledged(stores[0], alarm_id, "Dana Ortiz (branch manager)")
    start = threading.Barrier(2)

    def forward(service):
        with ThreadPoolExecutor(4) as senders:  # sends on threads, as in a hub
            service.senders = senders
            start.wait(5)
            service.command_forwarded(command)
    threads = [threading.Thread(target=forward, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    sent = [to for notifier in notifiers for _, to, _ in notifier.sent]
    assert sorted(sent) == sorted(paged - phones(sample_site, "Dana Ortiz"))
    for store in stores:
        store.r.close()


# --- a call in progress ------------------------------------------------------------

@pytest.fixture
def client(sample_site, fake_store):
    return create_app(sample_site, fake_store, twilio_auth_token=TOKEN).test_client()


def test_a_call_that_asks_again_after_an_acknowledgement_hears_who_is_responding(
        client, fake_store):
    raise_paged(fake_store, alarm(), CIRC, DANA)
    fake_store.transition("a1", AlarmEvent.ACKNOWLEDGE, by=DANA[1], now_ms=2_000)

    root = twiml(post(client, "/twilio/voice/say?alarm=a1", {"To": CIRC[0]}))

    assert root.find("Gather") is None  # nothing left to acknowledge
    assert said(root).startswith("Dana Ortiz (branch manager) is responding to EMERGENCY "
                                 "at Main Library, Circulation Desk.")
    assert root.find("Hangup") is not None


@pytest.mark.parametrize("by, same", [
    ("Dana Ortiz (branch manager)", True), ("Dana Ortiz", True), ("dana ortiz", True),
    (" Dana Ortiz ", True), ("Dana", False), ("", False), ("Sam Lee", False)])
def test_who_acknowledged_is_not_told_they_are_responding(by, same):
    from hub.engine.followups import same_person
    assert same_person("Dana Ortiz (branch manager)", by) is same
