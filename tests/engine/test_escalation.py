"""Escalation: the pure planner, and the service running policies on a controlled clock."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from device.protocol import Topics, new_alarm
from hub.core.escalation import attempt, plan, recipients
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm, Channel, Delivery, PageKey
from hub.engine.service import LEASE_MS, AlarmService
from hub.config.site import Step

T0 = 1_780_000_000.0  # a Thursday, 2026-05-28 20:26:40 UTC (13:26 in Los Angeles)


class Clock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recorder:
    name = "recorder"

    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []  # (channel, to, text)

    def send_sms(self, to, body, *, status_url=None):
        self.sent.append(("sms", to, body))
        return Delivery.sent(f"SM{len(self.sent)}")

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        self.sent.append(("call", to, text))
        return Delivery.sent(f"CA{len(self.sent)}")


class InlinePool(ThreadPoolExecutor):
    """Runs attempts and sends at once on the caller's thread: deterministic tests."""

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import Future
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future


@pytest.fixture
def rig(sample_site, fake_store):
    clock, notifier, pool = Clock(), Recorder(), InlinePool()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, pool,
                           escalators=pool, clock=clock)
    return service, clock, notifier, fake_store


def raise_alarm(service, device="main-circ-01", kind="emergency"):
    msg = new_alarm(device, kind, service.clock())
    service.handle(Topics().alarm(device), msg.to_json())
    return msg.alarm_id


def phones(site, *names):
    return {c.phone for c in site.contacts if c.name.split(" (")[0] in names}


def test_attempts_unroll_steps_and_repeat_the_last_forever():
    steps = (Step(("a",), repeat=2), Step(("b",)), Step(("c",), repeat=3))
    got = [(attempt(steps, n).step_index, attempt(steps, n).round) for n in range(8)]
    assert got == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1), (2, 2), (2, 3), (2, 4)]


def test_an_emergency_escalates_step_by_step_until_acknowledged(rig, sample_site):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service)
    first = {(ch, to) for ch, to, _ in notifier.sent}
    step1 = phones(sample_site, "Main circulation desk", "Dana Ortiz", "Police dispatch")
    assert first == {(ch, p) for ch in ("call", "sms") for p in step1}
    assert [ch for ch, _, _ in notifier.sent[:3]] == ["call"] * 3  # calls go out first
    notifier.sent.clear()

    clock.now = T0 + 59.9
    assert service.run_due() == 0 and notifier.sent == []
    clock.now = T0 + 60
    assert service.run_due() == 1
    step2 = step1 | phones(sample_site, "Security desk")
    assert {to for _, to, _ in notifier.sent} == step2
    notifier.sent.clear()
    clock.now = T0 + 120
    assert service.run_due() == 1 and {to for _, to, _ in notifier.sent} == step2  # repeats
    notifier.sent.clear()

    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=int(clock.now * 1000))
    clock.now = T0 + 600
    assert service.run_due() == 0 and notifier.sent == []
    events = [e["event"] for e in store.timeline(alarm_id)]
    assert events.count("escalation") == 3 and events[-1] == "acknowledged"


def test_a_drill_never_calls_the_police(rig, sample_site):
    service, clock, notifier, store = rig
    store.branches.set_branch_switches("main", by="Dana", now_ms=int(T0 * 1000),
                                       drill_until_ms=int((T0 + 3600) * 1000))
    raise_alarm(service)
    clock.now = T0 + 60
    service.run_due()
    police = phones(sample_site, "Police dispatch")
    assert police and not police & {to for _, to, _ in notifier.sent}
    assert phones(sample_site, "Drill coordinator") <= {to for _, to, _ in notifier.sent}
    assert all(text.startswith(("DRILL", "This is a drill")) for _, _, text in notifier.sent)


def test_after_the_drill_expires_police_are_called_again(rig, sample_site):
    service, clock, notifier, store = rig
    store.branches.set_branch_switches("main", by="Dana", now_ms=int(T0 * 1000),
                                       drill_until_ms=int(T0 * 1000))  # ends exactly now
    raise_alarm(service)
    assert phones(sample_site, "Police dispatch") <= {to for _, to, _ in notifier.sent}


def test_a_lone_worker_switch_sends_an_assist_to_police_first(rig, sample_site):
    service, clock, notifier, store = rig
    raise_alarm(service, kind="assist")
    staffed = {to for _, to, _ in notifier.sent}
    assert staffed == phones(sample_site, "Main circulation desk", "Security desk")
    notifier.sent.clear()
    store.branches.set_branch_switches("main", by="Dana", now_ms=int(T0 * 1000), lone_worker=True)
    raise_alarm(service, device="main-ref-01", kind="assist")
    assert {to for _, to, _ in notifier.sent} == phones(
        sample_site, "Police dispatch", "Security desk", "Dana Ortiz")


def test_westside_by_schedule_has_a_lone_worker(rig, sample_site):
    service, clock, notifier, store = rig
    assert str(service.branch_state("westside", int(T0 * 1000))) == "lone_worker"
    assert str(service.branch_state("main", int(T0 * 1000))) == "staffed"
    raise_alarm(service, device="west-front-01", kind="assist")
    assert phones(sample_site, "Police dispatch") <= {to for _, to, _ in notifier.sent}


def test_off_duty_staff_are_not_paged_for_staff_steps(sample_site):
    alarm = Alarm("a1", "assist", "west-front-01", "westside", "front-desk", 0, 0)
    step = Step(("staff", "security"))
    on = recipients(sample_site, alarm, step, drill=False, on_duty=lambda c: True)
    # as schedule.on_duty answers off shift: a contact without shifts is always on duty
    off = recipients(sample_site, alarm, step, drill=False, on_duty=lambda c: not c.shifts)
    assert "Sam Lee (westside supervisor)" in {c.name for c in on}
    assert {c.name for c in off} == {"Security desk"}


@pytest.mark.parametrize("kind", ["missed_checkin", "emergency", "safe_room"])
def test_a_staff_step_never_pages_an_off_duty_contact_whatever_else_they_hold(sample_site,
                                                                               kind):
    """Sam Lee holds staff and manager: off duty, a step naming staff skips him."""
    alarm = Alarm("a1", kind, "west-front-01", "westside", "front-desk", 0, 0)
    step = sample_site.kinds[kind].steps[0]
    assert "staff" in step.notify and "manager" in step.notify
    off = recipients(sample_site, alarm, step, drill=False, on_duty=lambda c: not c.shifts)
    on = recipients(sample_site, alarm, step, drill=False, on_duty=lambda c: True)
    assert "Sam Lee (westside supervisor)" in {c.name for c in on}
    assert "Sam Lee (westside supervisor)" not in {c.name for c in off}


def test_a_step_without_staff_pages_its_roles_on_duty_or_not(sample_site):
    alarm = Alarm("a1", "assist", "west-front-01", "westside", "front-desk", 0, 0)
    step = Step(("police", "manager"))
    off = recipients(sample_site, alarm, step, drill=False, on_duty=lambda c: not c.shifts)
    assert {c.name for c in off} == {"Sam Lee (westside supervisor)",
                                     "Police dispatch (non-emergency line)"}


def test_a_missed_check_in_at_night_does_not_page_the_off_duty_supervisor(rig, sample_site):
    """02:11 at Westside (Sam Lee on duty Mon-Sat 12:00-21:00): the missed check-in pages
    security, not Sam."""
    service, clock, notifier, store = rig
    clock.now = T0 - (20 * 3600 + 26 * 60 + 40) + (9 * 3600 + 11 * 60)  # 09:11 UTC = 02:11 PDT
    now_ms = int(clock.now * 1000)
    alarm = Alarm("0b6f2a7e-5c1d-4c55-9d0e-2f7f6f1c9a11", "missed_checkin", "west-front-01",
                  "westside", "front-desk", now_ms, now_ms)
    assert service.raise_from_hub(alarm) is True
    paged = {to for _, to, _ in notifier.sent}
    assert paged == phones(sample_site, "Security desk")
    assert phones(sample_site, "Sam Lee") & paged == set()


def test_a_re_run_attempt_sends_only_what_had_not_gone_out(rig, sample_site):
    """A worker died mid-attempt: some pages were sent, one was claimed and never sent."""
    service, clock, notifier, store = rig
    msg = new_alarm("main-circ-01", "assist", T0)
    alarm = Alarm(msg.alarm_id, "assist", msg.device, "main", "circulation", msg.pressed_at,
                  int(T0 * 1000))
    store.raise_alarm(alarm, escalate=True)
    [desk, security] = sorted(phones(sample_site, "Main circulation desk", "Security desk"))
    done = PageKey(alarm.id, 0, desk, Channel.SMS)
    store.pages.claim(done, int(T0 * 1000), LEASE_MS)
    store.pages.record(done, "desk", Delivery.sent("SM0"), int(T0 * 1000))
    store.pages.claim(PageKey(alarm.id, 0, security, Channel.SMS),
                      int(T0 * 1000), LEASE_MS)
    store.claim_due(int(T0 * 1000), LEASE_MS)  # the dead worker's lease
    clock.now = T0 + 1
    assert service.run_due() == 0  # its lease still holds
    clock.now = T0 + LEASE_MS / 1000 + 0.1
    assert service.run_due() == 1
    assert [(ch, to) for ch, to, _ in notifier.sent] == [("sms", security)]


def test_a_re_run_that_finds_every_page_sent_keeps_the_pace_of_those_pages(rig, sample_site):
    """The worker died after its pages went out but before scheduling the next attempt: the
    re-run sends nothing, and the next attempt is due a wait after the pages, not after
    the re-run (which came a lease later)."""
    service, clock, notifier, store = rig
    msg = new_alarm("main-circ-01", "assist", T0)
    alarm = Alarm(msg.alarm_id, "assist", msg.device, "main", "circulation", msg.pressed_at,
                  int(T0 * 1000))
    store.raise_alarm(alarm, escalate=True)
    store.claim_due(int(T0 * 1000), LEASE_MS)  # the dead worker's lease
    for phone in phones(sample_site, "Main circulation desk", "Security desk"):
        key = PageKey(alarm.id, 0, phone, Channel.SMS)
        store.pages.claim(key, int(T0 * 1000), LEASE_MS)
        store.pages.record(key, "x", Delivery.sent("SM"), int(T0 * 1000) + 300)
    clock.now = T0 + LEASE_MS / 1000 + 0.1
    assert service.run_due() == 1 and notifier.sent == []
    wait_ms = int(sample_site.kinds["assist"].steps[0].wait_s * 1000)
    assert store.escalation_due(alarm.id) == int(T0 * 1000) + 300 + wait_ms


def test_an_attempt_for_a_resolved_alarm_stops_quietly(rig):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service)
    store.transition(alarm_id, AlarmEvent.RESOLVE, by="Dana", reason="left",
                     now_ms=int(T0 * 1000))
    notifier.sent.clear()
    clock.now = T0 + 3600
    assert service.run_due() == 0 and notifier.sent == []
    assert store.escalation_due(alarm_id) is None


def test_plan_orders_calls_before_texts(sample_site):
    alarm = Alarm("a1", "emergency", "main-circ-01", "main", "circulation", 0, 0)
    planned = plan(sample_site, alarm, sample_site.kinds["emergency"].steps, 0, drill=False)
    channels = [p.key.channel for p in planned]
    assert channels == sorted(channels, key=lambda c: c is not Channel.CALL)
    assert {p.key.step for p in planned} == {0}


def test_a_missed_check_in_alarm_from_the_hub_escalates(rig, sample_site):
    service, clock, notifier, store = rig
    alarm = Alarm("0b6f2a7e-5c1d-4c55-9d0e-2f7f6f1c9a10", "missed_checkin", "west-front-01",
                  "westside", "front-desk", int(T0 * 1000), int(T0 * 1000))
    assert service.raise_from_hub(alarm) is True
    assert service.raise_from_hub(alarm) is False  # another worker raised it too
    paged = {to for _, to, _ in notifier.sent}
    assert paged == {c.phone for c in sample_site.recipients("missed_checkin", "westside")}
    assert all("Lone worker missed check-in" in text for _, _, text in notifier.sent)


def test_an_override_takes_the_only_desk_off_duty_and_the_branch_becomes_lone(rig,
                                                                             sample_site):
    service, clock, notifier, store = rig
    now = int(T0 * 1000)
    assert str(service.branch_state("main", now)) == "staffed"
    store.branches.set_override("main", "+12065550101", on_duty=False, until_ms=now + 60_000, by="Dana")
    assert str(service.branch_state("main", now)) == "lone_worker"
    raise_alarm(service, kind="assist")
    paged = {to for _, to, _ in notifier.sent}
    assert "+12065550101" not in paged  # off duty: not paged for a staff step
    assert phones(sample_site, "Police dispatch") <= paged  # lone worker: police first
    assert store.branches.overrides("main", now + 60_000) == []  # it ran out
    assert str(service.branch_state("main", now + 60_000)) == "staffed"


def test_with_a_public_url_calls_take_keypresses_and_texts_invite_a_reply(sample_site,
                                                                        fake_store):
    urls = []

    class UrlRecorder(Recorder):
        def place_call(self, to, text, *, voice_url=None, status_url=None):
            urls.append(voice_url)
            return super().place_call(to, text)

    notifier, pool = UrlRecorder(), InlinePool()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, pool,
                           escalators=pool, clock=Clock(),
                           public_url="https://haven.example.org")
    alarm_id = raise_alarm(service)
    assert urls and set(urls) == {
        f"https://haven.example.org/twilio/voice/say?alarm={alarm_id}"}
    texts = [text for ch, _, text in notifier.sent if ch == "sms"]
    assert texts and all(t.endswith("Reply 1 if you are responding.") for t in texts)
    assert all(len(t) <= 160 for t in texts)


class Flaky(Recorder):
    """Fails each number's first ``failures`` sends with ``delivery``, then accepts."""

    def __init__(self, delivery: Delivery, failures: int | None):
        super().__init__()
        self.delivery, self.failures, self.tries = delivery, failures, {}

    def _maybe_fail(self, to):
        self.tries[to] = self.tries.get(to, 0) + 1
        if self.failures is None or self.tries[to] <= self.failures:
            return self.delivery
        return None

    def send_sms(self, to, body, *, status_url=None):
        return self._maybe_fail(to) or super().send_sms(to, body)

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        return self._maybe_fail(to) or super().place_call(to, text)


def service_with(site, store, notifier):
    pool = InlinePool()
    return AlarmService(site, store, notifier, lambda t, p: None, pool, escalators=pool,
                        clock=Clock())


def test_a_rate_limited_send_is_retried_at_once_and_goes_through(sample_site, fake_store):
    notifier = Flaky(Delivery.failed("HTTP 429: Too Many Requests", code=20429,
                                     retryable=True), failures=1)
    alarm_id = raise_alarm(service_with(sample_site, fake_store, notifier), kind="assist")
    assert set(notifier.tries.values()) == {2}
    assert {to for _, to, _ in notifier.sent} == phones(sample_site, "Main circulation desk",
                                                       "Security desk")
    events = [e["event"] for e in fake_store.timeline(alarm_id)]
    assert "notify_failed" not in events and "delivery_failed" not in events


def test_a_permanent_failure_is_not_retried(sample_site, fake_store):
    notifier = Flaky(Delivery.failed("HTTP 400: invalid To", code=21211, retryable=False),
                     failures=1)
    raise_alarm(service_with(sample_site, fake_store, notifier), kind="assist")
    assert set(notifier.tries.values()) == {1}


def test_when_nobody_can_be_reached_the_device_is_told_and_fallback_is_texted(sample_site,
                                                                           fake_store):
    notifier = Flaky(Delivery.failed("HTTP 503", code=20503, retryable=True), failures=None)
    alarm_id = raise_alarm(service_with(sample_site, fake_store, notifier))  # an emergency
    events = [e["event"] for e in fake_store.timeline(alarm_id)]
    assert "delivery_failed" in events
    commands = [(f["cmd"], f.get("alarm_id")) for _, f in
                fake_store.devices.read_device_commands("t", block_ms=5)]
    assert ("not_delivered", alarm_id) in commands
    security = phones(sample_site, "Security desk")  # the fallback contact, not in step 1
    assert security <= set(notifier.tries)


def test_resolving_sends_one_all_clear_to_everyone_reached(rig, sample_site):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service)  # emergency: calls and texts to step 1
    reached = {to for _, to, _ in notifier.sent}
    notifier.sent.clear()
    store.transition(alarm_id, AlarmEvent.RESOLVE, by="Dana", reason="patron left",
                     now_ms=int(T0 * 1000) + 5000)
    assert service.send_all_clear(alarm_id) == len(reached)
    assert service.send_all_clear(alarm_id) == len(reached)  # a second worker: claimed, skipped
    assert [ch for ch, _, _ in notifier.sent] == ["sms"] * len(reached)
    assert {to for _, to, _ in notifier.sent} == reached
    assert all(text == "HAVEN all clear: EMERGENCY at Main Library, Circulation Desk "
                       "resolved by Dana: patron left. No need to come."
               for _, _, text in notifier.sent)


def test_no_all_clear_while_an_alarm_is_still_active(rig):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service)
    notifier.sent.clear()
    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=int(T0 * 1000))
    assert service.send_all_clear(alarm_id) == 0 and notifier.sent == []


def test_an_undelivered_sms_becomes_a_call_and_an_unanswered_call_is_tried_twice_more(
        rig, sample_site):
    service, clock, notifier, store = rig
    assert (sample_site.call_retries, sample_site.call_retry_after_s) == (2, 30.0)
    alarm_id = raise_alarm(service, kind="assist")  # SMS only
    notifier.sent.clear()
    desk = "+12065550101"
    assert service.followup(f"{alarm_id}:0:{desk}:sms", "undelivered") is True
    assert service.followup(f"{alarm_id}:0:{desk}:sms", "undelivered") is True  # redelivered
    assert [(ch, to) for ch, to, _ in notifier.sent] == [("call", desk)]  # ... called once
    call_key = 3_000_000  # FOLLOWUP_CALL_BASE + 10 x attempt 0 + 0
    for n, status in ((1, "no-answer"), (2, "busy")):
        assert service.followup(f"{alarm_id}:{call_key + n - 1}:{desk}:call", status) is True
        clock.now += 29
        assert service.run_call_retries() == 0  # not before call_retry_after_s
        assert len(notifier.sent) == n
        clock.now += 1
        assert service.run_call_retries() == 1
        assert service.run_call_retries() == 0  # placed once, not again
        assert [ch for ch, _, _ in notifier.sent] == ["call"] * (n + 1)
    assert service.followup(f"{alarm_id}:{call_key + 2}:{desk}:call", "no-answer") is False
    assert service.followup(f"{alarm_id}:0:{desk}:sms", "delivered") is False


def test_a_call_retry_due_after_the_alarm_was_acknowledged_is_dropped(rig):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service, kind="assist")
    assert service.followup(f"{alarm_id}:3000000:+12065550101:call", "no-answer") is True
    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=int(clock() * 1000))
    notifier.sent.clear()
    clock.now += 31
    assert service.run_call_retries() == 1 and notifier.sent == []
    assert service.run_call_retries() == 0  # done with, not retried forever


def test_a_call_retry_leased_by_a_worker_that_died_is_placed_by_another(rig):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service, kind="assist")
    assert service.followup(f"{alarm_id}:3000000:+12065550101:call", "busy") is True
    clock.now += 30
    # a worker leases it and dies before placing the call
    assert len(store.pages.lease_call_retries(int(clock() * 1000), 4000)) == 1
    notifier.sent.clear()
    assert service.run_call_retries() == 0  # still leased
    clock.now += 4
    assert service.run_call_retries() == 1
    assert [(ch, to) for ch, to, _ in notifier.sent] == [("call", "+12065550101")]


def test_no_follow_up_call_once_someone_acknowledged(rig):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service, kind="assist")
    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=int(T0 * 1000))
    notifier.sent.clear()
    assert service.followup(f"{alarm_id}:0:+12065550101:sms", "undelivered") is False
    assert notifier.sent == []


def test_a_call_that_reached_voicemail_is_placed_again(rig):
    service, clock, notifier, store = rig
    alarm_id = raise_alarm(service)  # emergency: calls in attempt 0
    notifier.sent.clear()
    assert service.followup(f"{alarm_id}:0:+12065550199:call", "voicemail") is True
    clock.now += 30
    assert service.run_call_retries() == 1
    assert [(ch, to) for ch, to, _ in notifier.sent] == [("call", "+12065550199")]


def test_a_page_that_waited_for_a_sender_renews_its_claim_or_yields_to_a_takeover(rig):
    from hub.core.escalation import PlannedPage
    from hub.core.model import Channel, PageKey
    service, clock, notifier, store = rig
    contact = service.site.contacts[0]
    now = int(clock() * 1000)
    mine = PageKey("a1", 0, contact.phone, Channel.SMS)
    assert store.pages.claim(mine, now, LEASE_MS)
    clock.now += 3.9  # waited in a burst's queue: renewed, then sent
    assert service.pager.send_claimed(PlannedPage(mine, contact, "x"), now).ok
    taken = PageKey("a2", 0, contact.phone, Channel.SMS)
    assert store.pages.claim(taken, now, LEASE_MS)
    clock.now += 5  # the lease ran out and another worker took the page over ...
    assert store.pages.claim(taken, int(clock() * 1000), LEASE_MS)
    notifier.sent.clear()
    assert service.pager.send_claimed(PlannedPage(taken, contact, "x"), now) is None
    assert notifier.sent == []  # ... so this worker does not send it too


def test_attempt_0_is_claimed_with_the_alarm_while_the_branch_state_is_unchanged(rig):
    """The intake plans attempt 0 from the branch state it saw last and claims its pages in
    the raise itself; a switch changed since then is noticed and the plan made again."""
    service, clock, notifier, store = rig
    trips = []
    claim = store.pages.claim_many
    store.pages.claim_many = lambda *a, **k: trips.append(a) or claim(*a, **k)
    first = raise_alarm(service)
    assert len(trips) == 1  # nothing seen yet: planned after the raise, claimed apart
    paged = sorted(to for _, to, _ in notifier.sent)
    notifier.sent.clear()
    second = raise_alarm(service, device="main-ref-01")
    assert len(trips) == 1  # claimed with the raise
    assert sorted(to for _, to, _ in notifier.sent) == paged
    assert [e["event"] for e in store.timeline(second)][:2] == ["raised", "escalation"]
    assert store.raise_alarm(Alarm(second, "emergency", "main-ref-01", "main", "reference",
                                   1, 1)) is False  # the claims did not make it twice
    notifier.sent.clear()
    store.branches.set_branch_switches("main", by="Dana", now_ms=int(clock() * 1000),
                                       drill_until_ms=int(clock() * 1000) + 600_000)
    drill = raise_alarm(service, device="main-child-01")
    assert len(trips) == 2  # the drill switch changed the state: planned again
    assert notifier.sent and all("drill" in text.lower() for _, _, text in notifier.sent)
    assert first != second != drill
