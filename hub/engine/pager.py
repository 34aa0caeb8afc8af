"""The pager: one page claimed, sent (with quick retries) and its outcome recorded.

Wiring: :class:`Pager` is given the store, the notifier, the sender threads and the clock
(see its constructor); the escalator hands it an attempt's pages, the follow-ups their
texts and calls, and every worker's timer calls :meth:`Pager.run_page_retries`. A claim
in Redis makes each page go out at most once whatever the redeliveries or workers; a failure that is worth retrying (429, 5xx,
connection) is sent again after a short, growing, jittered pause, but only while the
retry still fits in the claim's lease, so no other worker takes the claim over meanwhile.

Past that, a page that still failed retryably waits in Redis to be tried again
(:meth:`Pager.run_page_retries`, on every worker's timer) every few seconds
(``PAGE_RETRY_FIRST_S`` doubling to ``PAGE_RETRY_MAX_S``, jittered) until the provider
accepts it, a later attempt's page to the same person replaces it, or its alarm is
acknowledged, resolved or cancelled: paging never waits for the policy's next round
because the provider blinked.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import Executor, Future
from functools import partial
from typing import Callable
from urllib.parse import quote

import redis

from hub.engine.claimkeeper import LOST
from hub.core.escalation import FALLBACK_ATTEMPT_BASE, PlannedPage
from hub.core.site import Site
from hub.edges.metrics import Metrics, delivery_outcome
from hub.core.model import AlarmState, Channel, Delivery, PageKey
from hub.edges.notify import TWILIO_TIMEOUT_S, Notifier
from hub.engine.claimkeeper import ClaimKeeper
from hub.engine.groupcommit import GroupCommit
from hub.engine.senders import submit_ranked
from hub.core.urgency import OTHER_RANK, kind_rank
from hub.store import Store
from hub.engine.push_route import deliver_push, other_route
from hub.store.pages import PageRecord, PageRetry
from hub.core.tally import PageTicket

log = logging.getLogger("haven.hub")

#: How long a worker holds an escalation attempt or a page claim, in ms. A worker
#: killed mid-attempt is replaced after this; sends time out before it (TWILIO_TIMEOUT_S).
LEASE_MS = 4000
#: First pause before resending a retryable failure (429, 5xx, connection), in seconds;
#: doubled each time, jittered, and only while the retry still fits in the lease.
RETRY_FIRST_S = 0.2
#: The part of a lease a send may use, in ms: the rest is slack for clocks and scheduling.
LEASE_USABLE_MS = int(LEASE_MS * 0.9)
#: A claimed page older than this when a sender picks it up renews its claim first, in ms,
#: so the first send fits in the lease (the claim keeper, hub.engine.claimkeeper, renews queued
#: claims every timer tick; this is for when it fell behind).
PICKUP_RENEW_MS = LEASE_USABLE_MS - int(TWILIO_TIMEOUT_S * 1000)
#: How long a warming sender thread waits for the others to start, in seconds.
WARM_WAIT_S = 2.0
#: The longest pause before a retry, in seconds: one that fits in a fresh lease.
MAX_PAUSE_S = LEASE_USABLE_MS / 1000 - TWILIO_TIMEOUT_S
#: Slack when asking the provider what was sent since a claim, in seconds: hub workers'
#: clocks and the provider's differ a little. A text is found by its page reference, so
#: this only bounds how far back the list is read; a call has no text to match, so any
#: call to the person since the claim (less this) counts: kept small, so that the person's
#: call of the previous attempt (a policy's wait earlier) is not mistaken for it.
CLOCK_SKEW_S = 2
#: First pause before a page that failed retryably is tried again from Redis, in seconds;
#: doubled each time up to ``PAGE_RETRY_MAX_S``, and jittered (x 0.75-1).
PAGE_RETRY_FIRST_S = 0.5
#: Longest pause between tries of a page, in seconds: a provider back from an outage has
#: every waiting page tried within this (plus a timer tick).
PAGE_RETRY_MAX_S = 4.0


def page_retry_pause_s(tries: int, uniform=random.uniform) -> float:
    """Seconds before try ``tries + 1`` of a page whose ``tries`` tries failed (>= 1);
    ``uniform(a, b)`` draws the jitter."""
    return min(PAGE_RETRY_MAX_S, PAGE_RETRY_FIRST_S * 2 ** (tries - 1)) * uniform(0.75, 1.0)


class Pager:
    """Claims, sends and records pages, on the ``senders`` threads.

    ``site`` names the contact of a page tried again; ``store`` holds claims, records and
    the pages waiting to be tried again; ``notifier`` sends (SMS, call); ``senders`` runs
    each page on a thread of its own; ``clock`` returns Unix seconds; ``public_url`` is
    the dashboard's public base URL for the provider's status and voice callbacks
    (``None``: none asked for). ``claims`` keeps queued claims alive (renewed by the
    runner's timer); ``records`` writes the outcomes of pages finishing together in one
    round trip."""

    def __init__(self, site: Site, store: Store, notifier: Notifier, senders: Executor, *,
                 clock: Callable[[], float], metrics: Metrics, public_url: str | None):
        self.site, self.store, self.notifier, self.senders = site, store, notifier, senders
        self.clock, self.metrics, self.public_url = clock, metrics, public_url
        #: Web Push (hub.edges.push.PushNotifier), set by the runner when the site has push
        #: keys: ``push`` pages, and the second route when a text fails (hub.engine.push_route).
        self.push = None
        #: Claims of pages waiting for a sender thread, renewed together on the timer.
        self.claims = ClaimKeeper(partial(store.renew_leases, lease_ms=LEASE_MS))
        #: Pages' outcomes recorded by their sender threads, those recording at the same
        #: time in one round trip (hub.engine.groupcommit).
        self.records = GroupCommit(store.pages.record_many)

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def warm_up(self, sender_threads: int) -> None:
        """Get ready for the first alarm (hub start, before subscribing): the store's
        scripts and connections now, and in the background ``sender_threads`` sender
        threads, each with its SDK client and API connection. A cold hub's first alarm
        took ~40 ms to its first request, against ~1 ms warm (the peer harness). An
        unreachable store or API is logged and left to the first alarm's own retries."""
        try:
            self.store.warm_up()
        except redis.RedisError as exc:
            log.warning("store not reachable at start (%s); alarms will retry it", exc)
        warm = getattr(self.notifier, "warm_up", None)
        if warm is None or sender_threads < 1:
            return
        # Each task holds its thread until all have started, so each gets a thread of its
        # own (the pool starts a new thread only when none is idle).
        started = threading.Barrier(sender_threads, timeout=WARM_WAIT_S)

        def warm_one() -> None:
            warm()
            try:
                started.wait()
            except threading.BrokenBarrierError:
                pass
        for _ in range(sender_threads):
            self.senders.submit(warm_one)

    def submit(self, item: PlannedPage, rank: int = OTHER_RANK) -> Future:
        """Claim, send and record ``item`` on a sender thread (a follow-up's page), queued
        at ``rank`` (its alarm's kind's: hub.core.urgency)."""
        return submit_ranked(self.senders, rank, self.send, item)

    def send(self, item: PlannedPage) -> Delivery | None:
        """Claim, send, record. Runs on a sender thread; never raises."""
        try:
            claimed_ms = self._now_ms()
            claim = self.store.pages.claim(item.key, claimed_ms, LEASE_MS)
            if not claim:
                log.info("page %s already claimed: not sent again", item.key)
                self.metrics.page(str(item.key.channel), "skipped_claimed")
                return None
        except Exception:
            log.exception("claiming %s failed", item.key)
            return None
        return self.send_claimed(item, claimed_ms, claim)

    def send_claimed(self, item: PlannedPage, claimed_ms: int,
                      claim: int = 1, ticket: PageTicket | None = None) -> Delivery | None:
        """Send a page this worker claimed at ``claimed_ms``, and record the
        outcome. ``claim`` > 1 is the ms of a dead worker's claim taken over: the provider
        is asked first whether that worker's page got through. ``ticket``: the page's
        place in its attempt (hub.core.tally): the last page's record finishes the attempt.
        Runs on a sender thread; never raises."""
        try:
            now = self._now_ms()
            claimed_ms = self.claims.take(item.key, claimed_ms)
            if claimed_ms == LOST:
                return self._taken_over(item, "waited for a sender and")
            if claim > 1:
                sid = self._already_sent(item, since_ms=claim)
                if sid is not None:
                    delivery = Delivery.sent(sid)
                    self._record(item, delivery, now, ticket)
                    self.metrics.page(str(item.key.channel), "reconciled")
                    log.warning("%s to %s for alarm %s: a dead worker's page had reached the "
                                "API (%s): recorded, not sent again", item.key.channel,
                                item.contact.name, item.key.alarm_id, sid)
                    return delivery
            if now - claimed_ms > PICKUP_RENEW_MS:  # the keeper fell behind: renew it here
                if not self.store.pages.renew_claim(item.key, claimed_ms, now):
                    return self._taken_over(item, f"waited {now - claimed_ms} ms and")
                claimed_ms = now
            delivery = self._deliver(item, claimed_ms)
            self._record(item, delivery, self._now_ms(), ticket)
            self.metrics.page(str(item.key.channel), delivery_outcome(delivery))
            if delivery.ok:
                log.info("%s to %s for alarm %s: accepted (%s)%s", item.key.channel,
                         item.contact.name, item.key.alarm_id, delivery.sid,
                         f" at try {item.tries + 1}" if item.tries else "")
            elif item.tries:  # its first failure was logged as an error; these are not news
                log.info("%s to %s for alarm %s: try %d failed too (%s)", item.key.channel,
                         item.contact.name, item.key.alarm_id, item.tries + 1, delivery.error)
            else:
                log.error("%s to %s for alarm %s FAILED (%s, code %s, %s)", item.key.channel,
                          item.contact.name, item.key.alarm_id, delivery.error, delivery.code,
                          "retryable" if delivery.retryable else "permanent")
            return delivery
        except Exception:  # a sender thread must not die silently
            log.exception("sending %s failed", item.key)
            self.metrics.page(str(item.key.channel), "error")
            return None

    def _taken_over(self, item: PlannedPage, how: str) -> None:
        log.warning("page %s %s was taken over by another worker: not sent here",
                    item.key, how)
        self.metrics.page(str(item.key.channel), "skipped_claimed")
        return None

    def _record(self, item: PlannedPage, delivery: Delivery, at_ms: int,
                ticket: PageTicket | None) -> None:
        """Record a page's outcome (with other senders' records of the moment, in one round
        trip: hub.engine.groupcommit); if it is its attempt's last page out, finish the attempt
        in the same round trip. A retryable failure waits in Redis to be tried again
        (:meth:`run_page_retries`); an accepted page ends its person's wait."""
        check = ticket.claim_last() if ticket is not None else None
        retry = None
        if item.retry and not delivery.ok and delivery.retryable:
            tries = item.tries + 1
            retry = PageRetry(item.key, item.ref, item.contact.name, item.text, tries,
                              at_ms + int(page_retry_pause_s(tries) * 1000))
        checked = self.records.call(PageRecord(
            item.key, item.contact.name, delivery, at_ms, check,
            slot=item.key.slot if item.retry else "", retry=retry,
            quiet=item.tries > 0 and not delivery.ok))
        if retry is not None and item.tries == 0:
            log.warning("%s to %s for alarm %s: trying again every few seconds until the "
                        "provider takes it", item.key.channel, item.contact.name,
                        item.key.alarm_id)
        if check is not None:
            ticket.finished(checked)

    def _already_sent(self, item: PlannedPage, since_ms: int) -> str | None:
        """The provider's id of this page if a worker that died after claiming it at
        ``since_ms`` got it accepted; ``None`` if not, or if the provider cannot tell (then
        the page goes out again: twice is better than never, and the metric
        ``haven_page_lookups_total{result="unavailable"}`` counts it)."""
        try:
            sid = self.notifier.find_sent(str(item.key.channel), item.contact.phone,
                                          ref=item.ref, text=item.text,
                                          since_s=since_ms / 1000 - CLOCK_SKEW_S)
        except Exception as exc:  # the lookup is best effort; the page itself is not
            log.warning("could not ask the provider whether %s went out (%s): sending it, "
                        "maybe twice", item.key, exc)
            self.metrics.page_lookup("unavailable")
            return None
        self.metrics.page_lookup("found" if sid is not None else "not_found")
        return sid

    def run_page_retries(self) -> int:
        """Try again the pages that are due to be (timer thread): each is claimed, then
        handed to a sender; one superseded by a later attempt's page to the same person, or
        whose alarm no longer waits for a person, is dropped. Returns how many were sent."""
        now = self._now_ms()
        sent = 0
        for slot, retry in self.store.pages.lease_page_retries(now, LEASE_MS):
            key = retry.key
            alarm = self.store.get_alarm(key.alarm_id)
            if alarm is None or alarm.state is not AlarmState.RAISED:
                self.store.pages.drop_page_retry(slot, key.step)
                continue
            later = []
            current = self.store.pages.escalation_attempt(key.alarm_id)
            if key.step < FALLBACK_ATTEMPT_BASE and current is not None:
                later = [PageKey(key.alarm_id, n, key.contact, key.channel)
                         for n in range(key.step + 1, current + 1)]
            claim = self.store.pages.reclaim_page(key, later, now, LEASE_MS)
            if claim < 0:  # a later attempt paged the person, or it went out meanwhile
                self.store.pages.drop_page_retry(slot, key.step)
                self.metrics.page(str(key.channel), "superseded")
                continue
            if claim == 0:  # another worker is sending it now; its record decides
                continue
            item = PlannedPage(key, self.site.contact(key.contact, retry.contact_name),
                                       retry.text, retry.ref, tries=retry.tries)
            self.claims.hold(key, now)
            self.metrics.page_retried(str(key.channel))
            try:
                submit_ranked(self.senders, kind_rank(alarm.kind), self.send_claimed, item,
                              now, claim)
            except RuntimeError:  # shutting down: its claim lapses to another worker
                self.claims.take(key, now)
                raise
            sent += 1
        return sent

    def _deliver(self, item: PlannedPage, lease_from_ms: int) -> Delivery:
        """Send once, and again after a short, growing, jittered pause while the failure is
        retryable and another try fits in the claim's lease (from ``lease_from_ms``),
        renewed for it if need be, so no other worker can take the claim over meanwhile.
        Retries stop once they would take longer than a fresh lease allows (a send that
        timed out is not tried again: the API may have taken it). What still failed
        retryably is tried again from Redis (:meth:`run_page_retries`), once per try."""
        started, pause = time.monotonic(), RETRY_FIRST_S
        status_url = (f"{self.public_url}/twilio/status?key={quote(str(item.key), safe='')}"
                      if self.public_url else None)
        first = True
        while True:
            if item.key.channel is Channel.PUSH:
                delivery = deliver_push(self, item)
            elif item.key.channel is Channel.CALL:
                voice_url = (f"{self.public_url}/twilio/voice/say?alarm={item.key.alarm_id}"
                             if self.public_url else None)
                delivery = self.notifier.place_call(item.contact.phone, item.text,
                                                    voice_url=voice_url, status_url=status_url)
            else:
                delivery = self.notifier.send_sms(item.contact.phone, item.text,
                                                  status_url=status_url)
            if first and not delivery.ok and not item.tries:
                other_route(self, item)  # push for a failed SMS or call, SMS for a push
            first = False
            if (delivery.ok or not delivery.retryable or item.tries
                    or pause > MAX_PAUSE_S - (time.monotonic() - started)):
                return delivery  # a page tried again from Redis has its own backoff
            now = self._now_ms()
            if pause > (lease_from_ms + LEASE_USABLE_MS - now) / 1000 - TWILIO_TIMEOUT_S:
                if not self.store.pages.renew_claim(item.key, lease_from_ms, now):
                    return delivery  # taken over meanwhile: that worker sends it
                lease_from_ms = now
            log.warning("%s to %s for alarm %s: %s; retrying in %.1f s", item.key.channel,
                        item.contact.name, item.key.alarm_id, delivery.error, pause)
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause *= 2
