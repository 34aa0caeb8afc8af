"""Rounds on time under load (issue 17, item 3): a worker's timer starts every due
attempt at once instead of one per API round trip, an attempt stays leased while its
pages wait for a sender, and emergencies' pages leave before assists' when the senders
are the limit. A simulated clock and a notifier that holds every page until released:
nothing here depends on timing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hub.core.model import Alarm, Delivery
from hub.core.urgency import KIND_RANKS, OTHER_RANK, kind_rank
from hub.engine.senders import PrioritySenders
from hub.engine.escalator import DEFER_MS
from hub.engine.service import LEASE_MS, AlarmService
from tests.engine.test_claimkeeper import HeldPool
from tests.engine.test_escalation import T0, Clock, InlinePool, Recorder

#: How long a test waits for something that happens at once with the new behaviour (the
#: old serial one never gets there while pages are held), in seconds.
PATIENCE_S = 10


class GateNotifier:
    """Holds every page until :meth:`release`, counting the pages in flight at once."""

    name = "gate"

    def __init__(self):
        self.sent: list[tuple[str, str, str]] = []
        self.in_flight = self.most_in_flight = 0
        self._cond = threading.Condition()
        self._open = threading.Event()

    def _page(self, channel: str, to: str, text: str) -> Delivery:
        with self._cond:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self._cond.notify_all()
        self._open.wait(PATIENCE_S)
        with self._cond:
            self.in_flight -= 1
            self.sent.append((channel, to, text))
            return Delivery.sent(f"SM{len(self.sent)}")

    def send_sms(self, to, body, *, status_url=None):
        return self._page("sms", to, body)

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        return self._page("call", to, text)

    def wait_in_flight(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.in_flight >= n, PATIENCE_S)

    def release(self) -> None:
        self._open.set()


def alarm(n: int, kind: str = "assist", at_s: float = T0) -> Alarm:
    return Alarm(f"{n:08d}-0000-4000-8000-000000000000", kind, "main-circ-01", "main",
                 "circulation", int(at_s * 1000), int(at_s * 1000))


def run_due(service) -> int:
    """The timer's ``run_due`` on a thread of its own: how many attempts it started, once
    it returns (it used to wait for each attempt's pages, held here: an AssertionError)."""
    started: list[int] = []
    timer = threading.Thread(target=lambda: started.append(service.run_due()), daemon=True)
    timer.start()
    timer.join(PATIENCE_S)
    assert started, "run_due waited for a round's pages"
    return started[0]


def planned_pages(store, alarm_id: str, attempt: int) -> int:
    """How many pages the attempt planned, from its timeline entry."""
    return sum(int(e["notifications"]) for e in store.timeline(alarm_id)
               if e["event"] == "escalation" and e["attempt"] == str(attempt))


def test_a_timer_starts_every_due_round_at_once_not_one_per_api_round_trip(sample_site,
                                                                           store):
    """20 alarms' rounds due together: run_due returns with all their pages in flight at
    once (it used to wait for each round's pages before starting the next: one round per
    API round trip); the last page of each finishes its round, the next due a wait later."""
    clock, notifier = Clock(), GateNotifier()
    senders, escalators = PrioritySenders(64), ThreadPoolExecutor(2)
    service = AlarmService(sample_site, store, notifier, lambda t, p: None, senders,
                           escalators=escalators, clock=clock)
    alarms = [alarm(n) for n in range(20)]
    for a in alarms:
        store.raise_alarm(a, escalate=True)  # attempt 0 due now, for the timers
    try:
        assert run_due(service) == len(alarms)
        pages = sum(planned_pages(store, a.id, 0) for a in alarms)
        assert pages >= 20 and notifier.wait_in_flight(pages)
        assert notifier.most_in_flight == pages
        # Meanwhile another worker's timer, a lease later: nothing due (still leased).
        clock.now += 2 * LEASE_MS / 1000
        service.claims.renew(int(clock() * 1000))
        assert store.claim_due(int(clock() * 1000), LEASE_MS) == []
    finally:
        notifier.release()
        senders.shutdown(wait=True)  # the last page of each round finishes it
        escalators.shutdown(wait=True)
    wait_ms = int(sample_site.kinds["assist"].steps[0].wait_s * 1000)
    for a in alarms:
        assert store.pages.escalation_attempt(a.id) == 1
        assert store.escalation_due(a.id) == int(T0 * 1000) + wait_ms


def test_a_round_whose_pages_wait_past_its_lease_is_neither_re_run_nor_finished_early(
        sample_site, fake_store):
    """Without its lease renewed, another worker's timer would re-run the round, find
    every page claimed, finish it before its pages left, and make the next round due a
    wait after that re-run: seconds late."""
    clock, notifier, senders = Clock(), Recorder(), HeldPool()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=InlinePool(), clock=clock)
    a = alarm(1)
    fake_store.raise_alarm(a, escalate=True)
    assert run_due(service) == 1 and senders.queue and notifier.sent == []
    for _ in range(5):  # 10 s in the queue, the keeper renewing on the hub's timer
        clock.now += 2
        service.claims.renew(int(clock() * 1000))
        assert fake_store.claim_due(int(clock() * 1000), LEASE_MS) == []  # the other worker
    assert fake_store.pages.escalation_attempt(a.id) == 0  # not finished before its pages
    senders.run_all()
    wait_ms = int(sample_site.kinds["assist"].steps[0].wait_s * 1000)
    assert fake_store.pages.escalation_attempt(a.id) == 1
    assert fake_store.escalation_due(a.id) == int(T0 * 1000) + wait_ms
    assert service.claims.attempts() == 0 and service.claims.waiting() == 0
    rounds = [e for e in fake_store.timeline(a.id) if e["event"] == "escalation"]
    assert len(rounds) == 1


def test_a_finished_or_stopped_round_is_no_longer_leased(sample_site, fake_store):
    clock, notifier, senders = Clock(), Recorder(), HeldPool()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=InlinePool(), clock=clock)
    a = alarm(1)
    fake_store.raise_alarm(a, escalate=True)
    assert run_due(service) == 1 and service.claims.attempts() == 1
    fake_store.stop_escalation(a.id)  # acknowledged meanwhile
    clock.now += 1
    service.claims.renew(int(clock() * 1000))
    assert service.claims.attempts() == 0 and fake_store.escalation_due(a.id) is None


def test_emergencies_pages_leave_before_assists_when_the_senders_are_the_limit(
        sample_site, fake_store):
    """One sender thread, busy: an assist's round then an emergency's are due; the
    emergency's pages go first (a first-in, first-out pool sent the assist's first)."""
    clock, notifier = Clock(), Recorder()
    senders = PrioritySenders(1)
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=InlinePool(), clock=clock)
    busy, go = threading.Event(), threading.Event()
    senders.submit(lambda: (busy.set(), go.wait(PATIENCE_S)))
    assert busy.wait(PATIENCE_S)
    assist, emergency = alarm(1, "assist"), alarm(2, "emergency", T0 + 0.001)
    for a in (assist, emergency):
        fake_store.raise_alarm(a, escalate=True)
    clock.now += 0.01
    assert run_due(service) == 2  # the assist was due first, and started first
    go.set()
    senders.shutdown(wait=True)
    order = [text for _, _, text in notifier.sent]
    firsts = [i for i, text in enumerate(order) if "EMERGENCY" in text.upper()]
    assists = [i for i, text in enumerate(order) if "EMERGENCY" not in text.upper()]
    assert firsts and assists and max(firsts) < min(assists)


def test_the_sender_pool_runs_the_lowest_rank_first_and_in_order_within_a_rank():
    senders = PrioritySenders(1)
    busy, go, ran = threading.Event(), threading.Event(), []
    senders.submit(lambda: (busy.set(), go.wait(PATIENCE_S)))
    assert busy.wait(PATIENCE_S)
    for rank, name in [(3, "assist-1"), (4, "test"), (0, "emergency-1"), (3, "assist-2"),
                       (0, "emergency-2"), (1, "safe-room")]:
        senders.submit_ranked(rank, ran.append, name)
    senders.submit(ran.append, "plain")  # OTHER_RANK, after the assists queued before it
    failed = senders.submit_ranked(0, lambda: 1 / 0)
    go.set()
    senders.shutdown(wait=True)  # queued work still runs
    assert ran == ["emergency-1", "emergency-2", "safe-room", "assist-1", "assist-2",
                   "plain", "test"]
    assert isinstance(failed.exception(), ZeroDivisionError)
    with pytest.raises(RuntimeError):
        senders.submit(ran.append, "late")


def test_the_sender_pool_runs_up_to_its_threads_at_once_and_can_cancel_its_queue():
    senders = PrioritySenders(4)
    assert senders.submit(lambda: 7).result(PATIENCE_S) == 7
    assert senders.submit(lambda: 8).result(PATIENCE_S) == 8
    hold = threading.Event()
    blockers = [senders.submit(hold.wait, PATIENCE_S) for _ in range(4)]
    queued = senders.submit(lambda: "never")
    senders.shutdown(wait=False, cancel_futures=True)
    hold.set()
    assert all(b.result(PATIENCE_S) for b in blockers)
    assert queued.cancelled()


def test_kinds_rank_emergency_first_and_test_last():
    assert kind_rank("emergency") < kind_rank("safe_room") < kind_rank("welfare")
    assert kind_rank("missed_checkin") == kind_rank("welfare") < kind_rank("assist")
    assert kind_rank("a_kind_of_our_own") == OTHER_RANK == kind_rank("assist")
    assert kind_rank("test") == max(KIND_RANKS.values())


def test_the_less_busy_worker_takes_new_rounds_first(fake_store):
    """Workers shared a burst's rounds by whose timer ticked first (137 of 200 to one);
    a worker with a longer queue than another leaves new rounds to it for a while."""
    now = int(T0 * 1000)
    for n, due_ago_ms in enumerate((100, DEFER_MS + 100)):
        fake_store.raise_alarm(alarm(n, at_s=(now - due_ago_ms) / 1000), escalate=True)
    fresh, overdue = alarm(0).id, alarm(1).id
    # The idle worker's timer reported its (empty) queue a moment ago.
    assert fake_store.claim_due(now - 1_000, LEASE_MS, worker="idle", backlog=0,
                                defer_ms=DEFER_MS) == []
    got = fake_store.claim_due(now, LEASE_MS, worker="busy", backlog=40, defer_ms=DEFER_MS)
    assert [alarm_id for alarm_id, _, _ in got] == [overdue]  # only what waited too long
    got = fake_store.claim_due(now, LEASE_MS, worker="idle", backlog=0, defer_ms=DEFER_MS)
    assert [alarm_id for alarm_id, _, _ in got] == [fresh]
    # Alone (the other not heard from for 2 s), a busy worker takes everything due.
    fake_store.raise_alarm(alarm(2, at_s=(now - 100) / 1000), escalate=True)
    got = fake_store.claim_due(now + 2_500, LEASE_MS, worker="busy", backlog=40,
                               defer_ms=DEFER_MS)
    assert alarm(2).id in [alarm_id for alarm_id, _, _ in got]


def test_a_call_retry_does_not_hold_the_timer_and_is_placed_once(sample_site, fake_store):
    """The timer used to wait for each retried call, queued behind a burst's pages, before
    the next due round or retry; now the call's placing finishes the retry."""
    clock, notifier, senders = Clock(), Recorder(), HeldPool()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=InlinePool(), clock=clock)
    a = alarm(1)
    fake_store.raise_alarm(a, escalate=False)
    desk = "+12065550101"
    assert service.followup(f"{a.id}:3000000:{desk}:call", "busy") is True
    clock.now += sample_site.call_retry_after_s

    def call_retries() -> int:
        done: list[int] = []
        timer = threading.Thread(target=lambda: done.append(service.run_call_retries()),
                                 daemon=True)
        timer.start()
        timer.join(PATIENCE_S)
        assert done, "the timer waited for a call"
        return done[0]

    assert call_retries() == 1 and senders.queue and notifier.sent == []
    clock.now += LEASE_MS / 1000 + 1  # still queued when its lease ran out: leased again
    assert call_retries() == 1
    senders.run_all()
    assert [(ch, to) for ch, to, _ in notifier.sent] == [("call", desk)]  # once
    clock.now += 60
    assert call_retries() == 0  # done with
