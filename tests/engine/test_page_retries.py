"""Pages that failed retryably are tried again every few seconds, not at the next round
(hub.engine.pager): a provider outage at the press ends with every person paged once within
seconds of its end, and the device that pressed hears "not delivered", then "paging".

The service runs on a controlled clock against a real redis-server (the retry queue and
its claims are Lua scripts), with senders inline: minutes of outage take a second.
"""

from __future__ import annotations

import pytest

from hub.core.model import AlarmState, Delivery
from hub.core.lifecycle import AlarmEvent
from hub.engine.pager import PAGE_RETRY_MAX_S, page_retry_pause_s
from tests.engine.test_escalation import Clock, InlinePool, Recorder, phones, raise_alarm
from hub.engine.service import AlarmService

#: The simulated timer's tick, in seconds (the hub's is hub.engine.service.TICK_S, 0.2 s).
TICK_S = 0.1
#: Recovery promise: every waiting page out within this of the provider's return, in s.
RECOVERY_S = 5.0


class Outage(Recorder):
    """Refuses every request (a retryable failure, as a refused connection is) while the
    clock is before ``back_at``; then accepts, recording when (clock seconds)."""

    def __init__(self, clock: Clock, back_at: float):
        super().__init__()
        self.clock, self.back_at = clock, back_at
        self.refused = 0
        self.at: list[float] = []

    def _down(self) -> Delivery | None:
        if self.clock() < self.back_at:
            self.refused += 1
            return Delivery.failed("API unreachable: connection refused", retryable=True)
        self.at.append(self.clock())
        return None

    def send_sms(self, to, body, *, status_url=None):
        return self._down() or super().send_sms(to, body)

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        return self._down() or super().place_call(to, text)


def run_until(service: AlarmService, clock: Clock, until: float) -> None:
    """The hub's timer, on the controlled clock: due attempts, then due page retries."""
    while clock.now < until:
        clock.now = round(clock.now + TICK_S, 3)
        while service.run_due():
            pass
        service.run_page_retries()


def device_commands(store) -> list[str]:
    return [f["cmd"] for _, f in store.devices.read_device_commands("test", block_ms=5)]


@pytest.fixture
def outage_rig(sample_site, store):
    clock = Clock()

    def make(down_s: float):
        notifier = Outage(clock, clock.now + down_s)
        pool = InlinePool()
        service = AlarmService(sample_site, store, notifier, lambda t, p: None, pool,
                               escalators=pool, clock=clock)
        return service, notifier
    return clock, make


@pytest.mark.parametrize("down_s", [2.0, 30.0, 300.0])
def test_an_outage_at_the_press_ends_with_each_person_paged_once_within_seconds(
        outage_rig, sample_site, store, down_s):
    clock, make = outage_rig
    service, notifier = make(down_s)
    back_at = notifier.back_at
    alarm_id = raise_alarm(service, kind="assist")  # staff and security, by SMS, every 120 s
    people = phones(sample_site, "Main circulation desk", "Security desk")
    assert not notifier.sent and notifier.refused

    run_until(service, clock, back_at + RECOVERY_S)

    after = [(to, text) for (_, to, text), at in zip(notifier.sent, notifier.at)
             if at <= back_at + RECOVERY_S]
    # Every person of the policy paged within seconds of the return, once each.
    assert sorted(to for to, _ in after if to in people) == sorted(people)
    assert max(notifier.at) - back_at <= RECOVERY_S
    # A page that waited through several rounds is the latest round's, and says so.
    rounds_missed = int(down_s // 120)
    if rounds_missed:
        texts = [text for to, text in after if to in people]
        assert all(f"Ref {alarm_id[:8]}-{rounds_missed + 1}" in t for t in texts), texts
    # The device heard "not delivered" (use the phone), then "paging" (help is being
    # called), each once per outage.
    commands = [c for c in device_commands(store) if c in ("not_delivered", "paging")]
    assert commands[0] == "not_delivered" and commands[-1] == "paging"
    assert commands.count("paging") == 1
    timeline = store.timeline(alarm_id)
    events = [e["event"] for e in timeline]
    assert "delivery_failed" in events
    resumed = [e for e in timeline if e["event"] == "paging_resumed"]
    assert len(resumed) == 1
    assert abs(int(resumed[0]["after_ms"]) / 1000 - down_s) <= RECOVERY_S
    # Retries are not written to the timeline one by one: one failure per person per round.
    failed = [e for e in timeline if e["event"] == "notify_failed"]
    assert len(failed) <= len(people) * (rounds_missed + 1) + 2  # + the fallback contact
    assert not store.pages.pending_page_retries(alarm_id)


def test_an_acknowledgement_ends_the_retries(outage_rig, store):
    clock, make = outage_rig
    service, notifier = make(600.0)
    alarm_id = raise_alarm(service, kind="assist")
    run_until(service, clock, clock.now + 10)
    assert store.pages.pending_page_retries(alarm_id)
    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana Ortiz",
                     now_ms=int(clock() * 1000))
    refused = notifier.refused
    run_until(service, clock, clock.now + 10)
    assert notifier.refused == refused  # nothing tried once someone acknowledged
    assert not store.pages.pending_page_retries(alarm_id)
    assert store.get_alarm(alarm_id).state is AlarmState.ACKNOWLEDGED


def test_a_permanent_failure_is_not_tried_again(sample_site, store):
    clock = Clock()

    class Invalid(Recorder):
        def send_sms(self, to, body, *, status_url=None):
            return Delivery.failed("HTTP 400: invalid 'To'", code=21211, retryable=False)

    pool = InlinePool()
    service = AlarmService(sample_site, store, Invalid(), lambda t, p: None, pool,
                           escalators=pool, clock=clock)
    alarm_id = raise_alarm(service, kind="assist")
    assert not store.pages.pending_page_retries(alarm_id)


def test_the_backoff_grows_to_a_few_seconds_and_is_jittered():
    low, high = (lambda a, b: a), (lambda a, b: b)
    assert [page_retry_pause_s(n, high) for n in (1, 2, 3, 4, 5, 9)] == [
        0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert page_retry_pause_s(1, low) == 0.375
    assert all(page_retry_pause_s(n) <= PAGE_RETRY_MAX_S for n in range(1, 30))
