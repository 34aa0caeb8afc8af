"""hub.engine.claimkeeper: claims of pages waiting for a sender are renewed together, so a live
worker's queue never outlives its leases, and a lost claim is never sent."""

from concurrent.futures import Executor, Future

import pytest

from device.protocol import Topics, new_alarm
from hub.engine.claimkeeper import LOST, MAX_HOLD_MS, ClaimKeeper
from hub.core.model import Channel, PageKey
from hub.engine.service import LEASE_MS, AlarmService
from tests.engine.test_escalation import Clock, InlinePool, Recorder

A, B, C = (PageKey("a1", 0, f"+1555000000{i}", Channel.SMS) for i in range(3))


class FakeRenewals:
    def __init__(self, lost=()):
        self.calls, self.attempt_calls, self.lost = [], [], set(lost)

    def __call__(self, pairs, attempts, now_ms):
        if pairs:
            self.calls.append((list(pairs), now_ms))
        if attempts:
            self.attempt_calls.append((list(attempts), now_ms))
        return ([key not in self.lost for key, _ in pairs],
                [attempt not in self.lost for attempt in attempts])


def test_only_claims_older_than_the_threshold_are_renewed_in_one_call():
    renewals = FakeRenewals()
    keeper = ClaimKeeper(renewals, renew_after_ms=250)
    keeper.hold(A, 1000)
    keeper.hold(B, 1200)
    assert keeper.renew(1300) == 1 and renewals.calls == [([(A, 1000)], 1300)]
    assert keeper.take(A, 1000) == 1300  # the sender learns the renewed claim
    assert keeper.take(B, 1200) == 1200
    assert keeper.waiting() == 0 and keeper.renew(9000) == 0
    assert keeper.take(C, 777) == 777  # never held: as given


def test_a_claim_taken_over_meanwhile_is_reported_lost_and_not_renewed_again():
    renewals = FakeRenewals(lost={A})
    keeper = ClaimKeeper(renewals, renew_after_ms=250)
    keeper.hold(A, 1000)
    keeper.renew(2000)
    keeper.renew(3000)
    assert len(renewals.calls) == 1
    assert keeper.take(A, 1000) == LOST


def test_a_claim_stuck_in_the_queue_too_long_is_left_to_lapse():
    renewals = FakeRenewals()
    keeper = ClaimKeeper(renewals, renew_after_ms=250)
    keeper.hold(A, 0)
    keeper.renew(MAX_HOLD_MS - 1)
    assert keeper.renew(MAX_HOLD_MS + 1) == 0 and keeper.waiting() == 0
    assert keeper.take(A, 0) == 0  # the original claim: the sender renews or yields it


def test_renewals_are_checked_in_redis(store):
    store.pages.claim_many("a1", [A, B], 1000, LEASE_MS)
    store.pages.claim_many("a1", [B], 6000, LEASE_MS)  # B's lease ran out: taken over
    assert store.pages.renew_claims([(A, 1000), (B, 1000)], 2000) == [True, False]
    assert store.pages.outcome(A) == "claimed:2000"
    assert store.pages.outcome(B) == "claimed:6000"


class HeldPool(Executor):
    """A sender pool whose work waits until ``run_all`` (a burst's queue)."""

    def __init__(self):
        self.queue = []

    def submit(self, fn, *args, **kwargs):
        future = Future()
        self.queue.append((future, fn, args, kwargs))
        return future

    def run_all(self):
        while self.queue:
            future, fn, args, kwargs = self.queue.pop(0)
            future.set_result(fn(*args, **kwargs))


@pytest.mark.parametrize("kept", [True, False], ids=["renewed", "not-renewed"])
def test_a_page_queued_past_its_lease_is_kept_or_yielded_never_sent_twice(
        sample_site, fake_store, kept):
    clock, notifier, senders = Clock(), Recorder(), HeldPool()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=InlinePool(), clock=clock)
    msg = new_alarm("main-circ-01", "assist", clock())
    service.handle(Topics().alarm(msg.device), msg.to_json())
    keys = [args[0].key for _, _, args, _ in senders.queue]
    assert keys and service.claims.waiting() == len(keys)
    for _ in range(3):  # 6 s in the queue, the keeper renewing on the hub's timer
        clock.now += 2
        if kept:
            # the pages' claims, and the lease of their attempt
            assert service.claims.renew(int(clock() * 1000)) == len(keys) + 1
    # Another worker's timer re-runs the attempt and tries to claim the same pages.
    other = fake_store.pages.claim_many(msg.alarm_id, keys, int(clock() * 1000), LEASE_MS)
    senders.run_all()
    sent_here = [to for _, to, _ in notifier.sent]
    if kept:
        assert other == [0] * len(keys)  # still this worker's: the other sends none
        assert sorted(sent_here) == sorted(k.contact for k in keys)
    else:
        assert all(x > 1 for x in other)  # lapsed and taken over: this worker sends none
        assert sent_here == []
    assert service.claims.waiting() == 0
