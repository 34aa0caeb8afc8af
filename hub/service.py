"""The hub's alarm service: a message from a device in, stored alarm and pages out.

Wiring: the MQTT adapter calls :meth:`AlarmService.handle` for every message
and acknowledges the message to the broker only after ``handle`` returns, so
an alarm is never acknowledged before it is stored. Sending is handed to a
thread pool: all notifications of a step go out concurrently, each claimed in
Redis first so it is sent at most once whatever the redeliveries or workers.

The intake (alarm messages, alone or as read together) is :mod:`hub.intake`; sending
one page is :mod:`hub.sending`; follow-ups and device statuses/events have mixins too.

Escalation: a new alarm's escalation (attempt 0, due at once) is stored with it
in one step; the intake leases and runs attempt 0 straight away, and a timer
thread (:meth:`AlarmService.run_due`, every ``TICK_S``) leases and runs later
attempts when due. An attempt pages its step's contacts concurrently (calls
first), then schedules the next attempt; an acknowledgement removes the timer.
Leases of ``LEASE_MS`` make a killed worker's attempt run again elsewhere, and
notification claims make that re-run send only what had not gone out.

The decisions (who gets what, when) are pure: :mod:`hub.escalation`.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from functools import partial
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import Callable

import redis

from device.protocol import ProtocolError, Topics

from .claimkeeper import ClaimKeeper
from .drill import pages_after_acknowledge
from .device_messages import DeviceMessagesMixin
from .intake import LATE_MS, IntakeMixin
from .escalation import AttemptPlan, PlannedNotification, attempt, plan, wait_after_ms
from .followups import FollowupMixin
from .groupcommit import GroupCommit
from .metrics import Metrics, channel_of
from .model import Alarm, AlarmState
from .notify import Notifier
from .outcome import Outcome
from .planlink import plan_url
from .schedule import BranchState, Switches, on_duty
from .sending import LEASE_MS, SendingMixin
from .site import Site
from .store import Store
from .tally import UNCHECKED, AttemptTally, FinishCheck, PageTicket

__all__ = ["AlarmService", "Outcome", "LEASE_MS", "TICK_S", "LATE_MS"]

log = logging.getLogger("haven.hub")

#: How often the timer thread looks for due escalation attempts, in seconds.
TICK_S = 0.2
#: How long a warming sender thread waits for the others to start, in seconds.
WARM_WAIT_S = 2.0
#: Sender threads warmed at hub start: an emergency's first step pages a few contacts by
#: SMS and call at once.
WARM_SENDERS = 8

Publish = Callable[[str, bytes], None]


class AlarmService(IntakeMixin, SendingMixin, FollowupMixin, DeviceMessagesMixin):
    """Validates, places, stores and pages. ``clock`` returns Unix seconds."""

    def __init__(self, site: Site, store: Store, notifier: Notifier, publish: Publish,
                 senders: Executor, *, escalators: Executor | None = None,
                 topics: Topics = Topics(), clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, public_url: str | None = None,
                 confirm: Publish | None = None):
        self.site, self.store, self.notifier = site, store, notifier
        self.metrics = metrics or Metrics()
        #: The dashboard's public base URL for Twilio callbacks (keypress and SMS replies).
        self.public_url = public_url
        self.publish, self.senders, self.topics, self.clock = publish, senders, topics, clock
        #: Publishes the ``received`` confirmation (default: ``publish``). The hub wires it
        #: to QoS 0: a device resends its alarm until confirmed, so a lost confirmation is
        #: asked for again, and a QoS 1 PUBACK from a broker that keeps Nagle on held the
        #: next alarm back by up to 40 ms (p99 47 ms through the peers harness, 3 ms without).
        self.confirm = confirm or publish
        # Attempts wait for their sends, so they must not run on the senders' own pool.
        self.escalators = escalators or ThreadPoolExecutor(4, thread_name_prefix="escalation")
        #: Claims of pages waiting for a sender thread, renewed together on the timer.
        self.claims = ClaimKeeper(store.renew_claims)
        #: Pages' outcomes recorded by their sender threads, those recording at the same
        #: time in one round trip (hub.groupcommit).
        self.records = GroupCommit(store.record_notifications)
        #: Each branch's switches and overrides as last read (flat), to plan an alarm's
        #: first attempt before raising it; the raise checks they are still current.
        self._branch_seen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        #: The monitoring centre's queue (hub.arc.queue), set by the runner when the site
        #: has ``[arc]``: raised alarms queue their ARC event, never waiting for it.
        self.arc = None
        #: Links to an alarm's floor plan for responders' texts (hub.planlink), set by the
        #: runner when HAVEN_PLAN_LINK_* are.
        self.plan_links = None

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

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> Outcome:
        """Handle one MQTT message. Raises only when the store is unreachable
        (``redis.RedisError``): the caller must then not acknowledge the message.

        ``retained``: the broker replayed a stored message (on subscribe); a retained
        status says what the device last said, not that it is alive now."""
        try:
            _, channel = self.topics.parse(topic)
            if channel == "alarm":
                outcome = self._alarm(topic, payload)
            elif channel in ("status", "heartbeat"):
                outcome = self._status(topic, payload, retained)
            elif channel == "event":
                outcome = self._event(topic, payload)
            else:
                outcome = Outcome.IGNORED
        except ProtocolError as exc:
            return self._reject(topic, str(exc))
        if outcome is not Outcome.REJECTED:  # _reject counts its own, with the reason
            self.metrics.message(channel, outcome)
        return outcome

    def _reject(self, topic: str, reason: str) -> Outcome:
        log.warning("rejected message: %s", reason)
        self.store.record_rejected(topic, reason, self._now_ms())
        self.metrics.message(channel_of(topic, self.topics), Outcome.REJECTED, reason,
                             topic=topic)
        return Outcome.REJECTED

    def raise_from_hub(self, alarm: Alarm) -> bool:
        """An alarm the hub raises itself (a missed check-in): stored and escalated like a
        press, minus the device confirmation. ``False`` if it already existed."""
        kind = self.site.kinds.get(alarm.kind)
        if kind is None:
            log.error("cannot raise %s: kind %r is not in the site config %s; add it",
                      alarm.id, alarm.kind, self.site.source)
            return False
        created = self.store.raise_alarm(alarm, escalate=bool(kind.steps))
        if created:
            self.metrics.alarm_stored(alarm.kind)
        if created and kind.steps:
            self.escalators.submit(self.run_due, alarm.id)
        return created

    # --- escalation -------------------------------------------------------------------

    def branch_state(self, branch_id: str, now_ms: int, overrides: list | None = None,
                     switches: Switches | None = None) -> BranchState:
        """Drill or lone worker by switch, else lone worker when at most one staff member
        is on duty by schedule (and ad-hoc ``overrides``, read from the store if not given)."""
        from .schedule import branch_state
        now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
        staff = [c for c in self.site.contacts if branch_id in c.branches and "staff" in c.roles]
        if overrides is None:
            overrides = self.store.overrides(branch_id, now_ms)
        if any(c.shifts for c in staff) or overrides:
            count = sum(1 for c in staff
                        if on_duty(c.phone, c.shifts, branch_id, now, overrides))
        else:
            # No schedule for this branch's staff (a desk phone, say): it counts as staffed
            # unless a switch says otherwise.
            count = max(2, len(staff))
        if switches is None:
            switches = self.store.branch_switches(branch_id)
        return branch_state(count, switches, now_ms)

    def run_due(self, alarm_id: str | None = None) -> int:
        """Lease and run the escalation attempts due now (or just ``alarm_id``'s); returns
        how many ran. Never raises but for an unreachable store."""
        now = self._now_ms()
        due = self.store.claim_due(now, LEASE_MS, alarm_id=alarm_id)
        for due_id, number, due_ms in due:
            self.metrics.escalation_started((now - due_ms) / 1000)
            try:
                self.run_attempt(due_id, number)
            except Exception:  # the lease runs out and the attempt is tried again
                log.exception("escalation attempt %d of alarm %s failed", number, due_id)
        return len(due)

    def run_attempt(self, alarm_id: str, number: int) -> None:
        """Run a leased attempt and wait for its pages (a timer thread)."""
        alarm = self.store.get_alarm(alarm_id)
        once = alarm is not None and pages_after_acknowledge(alarm)  # made real after an ack
        if alarm is None or (alarm.state is not AlarmState.RAISED and not once):
            self.store.stop_escalation(alarm_id)
            return
        now = self._now_ms()
        switches, overrides = self.store.branch_context(alarm.branch, now)
        self._attempt(alarm, number, switches, overrides, now, wait_here=True)
        if once:
            self.store.stop_escalation(alarm_id)

    def _attempt(self, alarm: Alarm, number: int, switches: Switches, overrides: list,
                 now: int, *, wait_here: bool) -> None:
        """Plan attempt ``number`` (leased by this worker), claim its pages with its timeline
        entry in one round trip, and send them concurrently (calls first). The rest (waiting
        for the sends, delivery failure, scheduling the next attempt) runs here with
        ``wait_here``, else on the escalation pool, so the intake returns at once."""
        planned = self._plan_attempt(alarm, number, switches, overrides, now)
        if planned is None:
            return
        # The timeline says which attempt ran before it lists that attempt's pages.
        claimed = self.store.claim_notifications(
            alarm.id, [item.key for item in planned.planned], now, LEASE_MS,
            timeline=planned.timeline)
        self._dispatch(alarm, planned, claimed, wait_here=wait_here)
        if self.arc is not None:  # queued once per alarm: a re-run or a later attempt (or
            self.arc.alarm_raised(alarm)  # a drill made real) finds it queued or queues it

    def _plan_attempt(self, alarm: Alarm, number: int, switches: Switches, overrides: list,
                      now: int) -> "AttemptPlan | None":
        """Who attempt ``number`` pages, from the branch's state at ``now`` (pure but for
        stopping an escalation whose kind has no steps left in the config: ``None``)."""
        kind = self.site.kinds.get(alarm.kind)
        # A drill is the alarm's own, decided when it was raised (hub.drill), not the branch's.
        state = BranchState.DRILL if alarm.drill else self.branch_state(
            alarm.branch, now, overrides, replace(switches, drill_until_ms=None))
        steps = kind.policy(lone_worker=state is BranchState.LONE_WORKER) if kind else ()
        if not steps:
            log.error("alarm %s: kind %r has no escalation steps in the site config now; "
                      "it stays on the board for an operator", alarm.id, alarm.kind)
            self.store.stop_escalation(alarm.id)
            return None
        current = attempt(steps, number)
        when = datetime.fromtimestamp(now / 1000, timezone.utc)
        planned = plan(self.site, alarm, steps, number, drill=state is BranchState.DRILL,
                       on_duty=lambda c: on_duty(c.phone, c.shifts, alarm.branch, when,
                                                 overrides),
                       reply_hint=self.public_url is not None, now_ms=now,
                       shelters=switches.shelters,
                       plan_url=plan_url(self.plan_links, self.site, alarm))
        timeline = {"event": "escalation", "at_ms": now, "attempt": number,
                    "step": current.step_index + 1, "round": current.round + 1,
                    "branch_state": state, "notifications": len(planned)}
        return AttemptPlan(number, now, planned, timeline, wait_after_ms(steps, number))

    def _dispatch(self, alarm: Alarm, planned: "AttemptPlan", claimed: list[int], *,
                  wait_here: bool) -> None:
        """Send the pages this worker claimed (``claimed[i]`` for ``planned.planned[i]``:
        0 not ours, 1 ours, > 1 a dead worker's claim taken over), then finish: here with
        ``wait_here``, else on the sender thread that completes the last page (no thread
        sits waiting for an attempt's pages)."""
        number, now = planned.number, planned.now
        ours = [(item, claim) for item, claim in zip(planned.planned, claimed) if claim]
        for item, claim in zip(planned.planned, claimed):
            if not claim:
                log.info("notification %s already claimed: not sent again", item.key)
                self.metrics.notification(str(item.key.channel), "skipped_claimed")
        started = now
        if planned.planned and not ours:
            # A re-run after its worker died: every page had gone out already. The next
            # attempt keeps the pace of when they went out, not of this re-run's lease.
            started = self.store.attempt_paged_at(alarm.id, number) or now
        next_due_ms = max(now, started + planned.wait_ms)
        new = not wait_here and number == 0
        if not ours:
            self._log_attempt(alarm, planned, new=new)
            finish = partial(self._finish_attempt, alarm, number, planned.planned, next_due_ms)
            return finish() if wait_here else self.escalators.submit(finish)
        tally = None if wait_here else self._tally(alarm, planned, len(ours), next_due_ms)
        futures = []
        for item, claim in ours:  # kept alive while they wait for a sender (hub.claimkeeper)
            self.claims.hold(item.key, now)
            try:
                futures.append(self.senders.submit(self._send_ticketed, item, now, claim,
                                                   tally.ticket() if tally else None))
            except RuntimeError:  # shutting down: left to lapse to another worker
                self.claims.take(item.key, now)
                raise
        self._log_attempt(alarm, planned, new=new)
        if wait_here:
            wait(futures)
            self._finish_attempt(alarm, number, planned.planned, next_due_ms)

    def _tally(self, alarm: Alarm, planned: "AttemptPlan", pages: int,
               next_due_ms: int) -> AttemptTally:
        """Counts the attempt's ``pages`` as senders finish them; the last one finishes the
        attempt (hub.tally)."""
        finish = partial(self._finish_attempt, alarm, planned.number, planned.planned,
                         next_due_ms)
        return AttemptTally(pages, FinishCheck(alarm.id, planned.number, next_due_ms,
                                               tuple(item.key for item in planned.planned)),
                            finish)

    @staticmethod
    def _log_attempt(alarm: Alarm, planned: "AttemptPlan", *, new: bool) -> None:
        """One line per attempt; a new alarm's attempt 0 also says where it came from."""
        t = planned.timeline
        if new:
            log.info("alarm %s %s at %s/%s from %s: escalating, attempt 0 (step %s, round %s, "
                     "%s): %d notification(s)", alarm.id, alarm.kind, alarm.branch, alarm.room,
                     alarm.device, t["step"], t["round"], t["branch_state"],
                     len(planned.planned))
        else:
            log.info("alarm %s attempt %d (step %s, round %s, %s): %d notification(s)",
                     alarm.id, planned.number, t["step"], t["round"], t["branch_state"],
                     len(planned.planned))

    def _send_ticketed(self, item: PlannedNotification, claimed_ms: int, claim: int,
                       ticket: PageTicket | None) -> None:
        try:
            self._send_claimed(item, claimed_ms, claim, ticket)
        finally:
            if ticket is not None:
                ticket.done()

    def _finish_attempt(self, alarm: Alarm, number: int, planned: list[PlannedNotification],
                        next_due_ms: int, checked: object = UNCHECKED) -> None:
        """Once the attempt's sends are done: a delivery failure if none got through, then
        the next attempt is scheduled (unless someone acknowledged meanwhile). ``checked``:
        what the last page's record answered when it finished the attempt already
        (hub.tally), ``None`` meaning every page failed and nothing was finished."""
        try:
            if checked is UNCHECKED:
                checked = self.store.finish_unless_all_failed(
                    alarm.id, number, next_due_ms, [item.key for item in planned])
            if checked is None:
                self._delivery_failed(alarm, number, planned)
                self.store.finish_attempt(alarm.id, number, next_due_ms)
        except Exception:  # the lease runs out and the attempt is run again (claims hold)
            log.exception("escalation attempt %d of alarm %s failed", number, alarm.id)


