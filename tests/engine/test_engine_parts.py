"""The engine's parts stand alone: each is built from what its constructor names, with no
AlarmService around it (hub.engine.pager, .followups, .escalator, .rejects)."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from hub.core.escalation import ALL_CLEAR_ATTEMPT, PlannedPage
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm, Channel, Delivery, PageKey
from hub.core.outcome import MessageOutcome
from hub.edges.metrics import Metrics
from hub.engine.escalator import Escalator
from hub.engine.followups import Followups
from hub.engine.pager import Pager
from hub.engine.rejects import Rejects
from device.protocol import Topics
from tests.engine.test_service import RecordingNotifier

NOW = 1763840000.0  # 2025-11-22 19:33:20 UTC


class InlinePool:
    """Runs each task at once, on the caller's thread: the parts' order is then the test's."""

    def submit(self, fn, *args, **kwargs):
        future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


def alarm(kind: str = "emergency") -> Alarm:
    return Alarm(id="a1", kind=kind, device="main-circ-01", branch="main", room="circ",
                 pressed_at_ms=int(NOW * 1000) - 500, received_at_ms=int(NOW * 1000))


@pytest.fixture
def pager(sample_site, fake_store):
    return Pager(sample_site, fake_store, RecordingNotifier(), InlinePool(),
                 clock=lambda: NOW, metrics=Metrics(), public_url=None)


def test_the_pager_alone_claims_sends_and_records_a_page_once(pager, fake_store, sample_site):
    fake_store.raise_alarm(alarm())
    contact = sample_site.contacts[0]
    key = PageKey("a1", 0, contact.phone, Channel.SMS)
    first = pager.submit(PlannedPage(key, contact, "HAVEN EMERGENCY test")).result()
    again = pager.submit(PlannedPage(key, contact, "HAVEN EMERGENCY test")).result()
    assert first == Delivery.sent("SM1") and again is None  # claimed: never twice
    assert pager.notifier.sent == [(contact.phone, "HAVEN EMERGENCY test")]
    assert fake_store.pages.outcome(key).startswith("sent")
    assert [e["event"] for e in fake_store.timeline("a1")] == ["raised", "notified"]


def test_the_followups_alone_send_the_all_clear_to_everyone_reached(pager, fake_store,
                                                                    sample_site):
    followups = Followups(sample_site, fake_store, pager, clock=lambda: NOW)
    fake_store.raise_alarm(alarm())
    reached = sample_site.contacts[:2]
    for contact in reached:
        pager.submit(PlannedPage(PageKey("a1", 0, contact.phone, Channel.SMS), contact, "x"))
    fake_store.transition("a1", AlarmEvent.RESOLVE, by="Dana", now_ms=int(NOW * 1000) + 1,
                          reason="handled_by_staff")
    assert followups.send_all_clear("a1") == 2
    told = [to for to, body in pager.notifier.sent if "ALL CLEAR" in body.upper()]
    assert sorted(told) == sorted(c.phone for c in reached)
    keys = [PageKey("a1", ALL_CLEAR_ATTEMPT, c.phone, Channel.SMS) for c in reached]
    assert all(fake_store.pages.outcome(k).startswith("sent") for k in keys)


def test_the_escalator_alone_runs_a_due_attempt_through_the_pager(pager, fake_store,
                                                                  sample_site):
    followups = Followups(sample_site, fake_store, pager, clock=lambda: NOW)
    escalator = Escalator(sample_site, fake_store, pager, followups, InlinePool(),
                          clock=lambda: NOW, metrics=Metrics(), public_url=None)
    fake_store.raise_alarm(alarm(), escalate=True)
    assert escalator.run_due() == 1  # attempt 0, due at once
    assert pager.notifier.sent or pager.notifier.calls
    assert escalator.run_due() == 0  # the next attempt waits for its step's delay
    assert fake_store.pages.escalation_attempt("a1") == 1
    assert fake_store.escalation_due("a1") > NOW * 1000


def test_rejects_name_the_topic_and_keep_the_message_for_the_devices_page(fake_store):
    rejects = Rejects(fake_store, Metrics(), Topics(), clock=lambda: NOW)
    topic = Topics().alarm("nobody")
    assert rejects(topic, f"topic {topic}: field 'device': 'nobody' is not in the site "
                          "config") is MessageOutcome.REJECTED
    [kept] = fake_store.devices.rejected()
    assert kept["topic"] == topic and "'nobody'" in kept["reason"]
