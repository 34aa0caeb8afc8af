"""The escalator: an alarm's escalation attempts planned, leased, paged and finished.

An attempt is one round of one step of the alarm's policy (hub.core.escalation numbers
them from 0). A new alarm's attempt 0 is leased by the raise and run by the intake at once
(:meth:`Escalator.dispatch`); later attempts are leased and run by every worker's timer
(:meth:`Escalator.run_due`, every ``TICK_S``). An attempt pages its step's contacts
concurrently (calls first) through the :class:`~hub.engine.pager.Pager`, then schedules
the next attempt; an acknowledgement removes the timer. Leases of ``LEASE_MS`` make a
killed worker's attempt run again elsewhere, and page claims make that re-run send only
what had not gone out.

No thread waits for an attempt's pages: the timer starts every due attempt at once, its
pages queue for the sender threads (the most urgent kind first: hub.core.urgency,
hub.engine.senders), and the last page's record finishes it (hub.core.tally). So many
alarms' rounds keep time together, as far as the API connections allow
(``connections / API latency`` pages a second); a worker used to run one attempt per
API round trip, and 20 alarms' second rounds went out up to 5 s late. While its pages
wait, the attempt's lease is renewed with their claims (hub.engine.claimkeeper).

Wiring: given the site, the store, the pager, the follow-ups (told when the provider
refused every page of an attempt), a pool for the escalation work off the timer (a
missed check-in's first attempt, finishing a re-run that found every page sent), the
clock and the metrics. The decisions (who gets what, when) are pure: hub.core.escalation.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Executor
from dataclasses import replace
from datetime import datetime, timezone
from functools import partial
from typing import Callable

from hub.core.drill import pages_after_acknowledge
from hub.core.escalation import AttemptPlan, PlannedPage, attempt, plan, wait_after_ms
from hub.core.model import Alarm, AlarmState
from hub.core.planlink import PlanLinks, plan_url
from hub.core.schedule import BranchState, Switches, on_duty
from hub.core.schedule import branch_state as state_of_branch
from hub.core.site import Site
from hub.core.tally import UNCHECKED, AttemptTally, FinishCheck, PageTicket
from hub.core.urgency import kind_rank
from hub.edges.metrics import Metrics
from hub.engine.colleagues import Colleagues
from hub.engine.followups import Followups
from hub.engine.pager import LEASE_MS, Pager
from hub.engine.push_route import reached_other_way
from hub.engine.senders import submit_ranked
from hub.store import Store

log = logging.getLogger("haven.hub")

#: How often the timer thread looks for due escalation attempts, in seconds.
TICK_S = 0.2
#: A worker with more pages waiting for a sender than another worker leaves a due
#: attempt to that one's timer for this long, in ms (then takes it if still due): the
#: workers share a burst's rounds by how busy they are, not by whose timer ticks first
#: (one worker took 137 of 200 alarms' second rounds, and paged seconds behind the other).
#: Two ticks: a round still starts well within a second of its due time.
DEFER_MS = 2 * int(TICK_S * 1000)


class Escalator:
    """Plans and runs escalation attempts. ``escalators`` runs the escalation work off the
    timer (a missed check-in's first attempt, finishing a re-run that found every page
    sent), never on the senders' own pool; ``clock`` returns Unix seconds; ``public_url``
    (the dashboard's public base URL) makes texts offer a reply to acknowledge;
    ``plan_links`` (hub.core.planlink) end responders' texts with a link to the alarm's
    floor plan. ``arc``: the monitoring centre's queue (hub.arc.queue), set by the runner
    when the site has ``[arc]``."""

    def __init__(self, site: Site, store: Store, pager: Pager, followups: Followups,
                 escalators: Executor, *, clock: Callable[[], float], metrics: Metrics,
                 public_url: str | None, plan_links: PlanLinks | None = None,
                 colleagues: Colleagues | None = None):
        self.site, self.store, self.pager, self.followups = site, store, pager, followups
        self.escalators, self.clock, self.metrics = escalators, clock, metrics
        self.public_url, self.plan_links = public_url, plan_links
        #: Alerts colleagues' devices when an attempt 0 is run again (its intake died).
        self.colleagues = colleagues
        self.arc = None
        #: This worker's id among those sharing the store's escalations (balancing).
        self.worker = uuid.uuid4().hex[:12]

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def branch_state(self, branch_id: str, now_ms: int, overrides: list | None = None,
                     switches: Switches | None = None) -> BranchState:
        """Drill or lone worker by switch, else lone worker when at most one staff member
        is on duty by schedule (and ad-hoc ``overrides``, read from the store if not given)."""
        now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
        staff = [c for c in self.site.contacts if branch_id in c.branches and "staff" in c.roles]
        if overrides is None:
            overrides = self.store.branches.overrides(branch_id, now_ms)
        if any(c.shifts for c in staff) or overrides:
            count = sum(1 for c in staff
                        if on_duty(c.phone, c.shifts, branch_id, now, overrides))
        else:
            # No schedule for this branch's staff (a desk phone, say): it counts as staffed
            # unless a switch says otherwise.
            count = max(2, len(staff))
        if switches is None:
            switches = self.store.branches.branch_switches(branch_id)
        return state_of_branch(count, switches, now_ms)

    def run_due(self, alarm_id: str | None = None) -> int:
        """Lease and start the escalation attempts due now (or just ``alarm_id``'s), at
        most 50 a call; returns how many started. Their pages go out on the sender
        threads, which finish each attempt; nothing here waits for them. Never raises but
        for an unreachable store."""
        now = self._now_ms()
        if alarm_id is None:  # the timer: the less busy worker takes new rounds first
            due = self.store.claim_due(now, LEASE_MS, worker=self.worker,
                                       backlog=self.pager.claims.waiting(), defer_ms=DEFER_MS)
        else:
            due = self.store.claim_due(now, LEASE_MS, alarm_id=alarm_id)
        for due_id, number, due_ms in due:
            self.metrics.escalation_started((now - due_ms) / 1000)
            try:
                self.run_attempt(due_id, number)
            except Exception:  # the lease runs out and the attempt is tried again
                log.exception("escalation attempt %d of alarm %s failed", number, due_id)
        return len(due)

    def run_attempt(self, alarm_id: str, number: int) -> None:
        """Start a leased attempt (a timer thread): its pages queued for the senders, the
        last of them finishing it."""
        alarm = self.store.get_alarm(alarm_id)
        once = alarm is not None and pages_after_acknowledge(alarm)  # made real after an ack
        if alarm is None or (alarm.state is not AlarmState.RAISED and not once):
            self.store.stop_escalation(alarm_id)
            return
        now = self._now_ms()
        switches, overrides = self.store.branches.branch_context(alarm.branch, now)
        self.start_attempt(alarm, number, switches, overrides, now)
        if number == 0 and self.colleagues is not None:
            self._alert_colleagues(alarm, overrides)
        if once:
            self.store.stop_escalation(alarm_id)

    def _alert_colleagues(self, alarm: Alarm, overrides: list) -> None:
        """Attempt 0 run again: the worker that raised the alarm died before it finished,
        maybe before it alerted the colleagues' devices (Colleagues.alert: once per alarm,
        so nothing goes twice). A failure is logged: the pages have left."""
        try:
            self.colleagues.alert(alarm, overrides)
        except Exception:
            log.exception("alarm %s: alerting colleagues' devices failed", alarm.id)

    def start_attempt(self, alarm: Alarm, number: int, switches: Switches, overrides: list,
                 now: int, *, new: bool = False) -> None:
        """Plan attempt ``number`` (leased by this worker), claim its pages with its timeline
        entry in one round trip, and queue them for the senders (calls first); the last of
        them finishes the attempt (delivery failure, the next attempt scheduled), so
        neither the intake nor the timer waits. ``new``: a new alarm's attempt 0 (its log
        line says where the alarm came from)."""
        planned = self.plan_attempt(alarm, number, switches, overrides, now)
        if planned is None:
            return
        # The timeline says which attempt ran before it lists that attempt's pages.
        claimed = self.store.pages.claim_many(
            alarm.id, [item.key for item in planned.planned], now, LEASE_MS,
            timeline=planned.timeline)
        self.dispatch(alarm, planned, claimed, new=new)
        if self.arc is not None:  # queued once per alarm: a re-run or a later attempt (or
            self.arc.alarm_raised(alarm)  # a drill made real) finds it queued or queues it

    def plan_attempt(self, alarm: Alarm, number: int, switches: Switches, overrides: list,
                      now: int) -> "AttemptPlan | None":
        """Who attempt ``number`` pages, from the branch's state at ``now`` (pure but for
        stopping an escalation whose kind has no steps left in the config: ``None``)."""
        kind = self.site.kinds.get(alarm.kind)
        # A drill is the alarm's own, decided when it was raised (hub.core.drill), not the branch's.
        state = BranchState.DRILL if alarm.drill else self.branch_state(
            alarm.branch, now, overrides, replace(switches, drill_until_ms=None))
        steps = kind.policy(lone_worker=state is BranchState.LONE_WORKER) if kind else ()
        if not steps:
            log.error("alarm %s: kind %r has no escalation steps in the site config now; "
                      "it stays on the board for an operator", alarm.id, alarm.kind)
            self.store.stop_escalation(alarm.id)
            return None
        current = attempt(steps, number)
        push = self.pager.push  # Web Push (hub.edges.push): who has a browser subscribed
        pushable = push.subs.contacts() if push is not None and "push" in \
            current.step.channels else set()
        when = datetime.fromtimestamp(now / 1000, timezone.utc)
        planned = plan(self.site, alarm, steps, number, drill=state is BranchState.DRILL,
                       on_duty=lambda c: on_duty(c.phone, c.shifts, alarm.branch, when,
                                                 overrides),
                       reply_hint=self.public_url is not None, now_ms=now,
                       shelters=switches.shelters, push_to=lambda c: c.phone in pushable,
                       plan_url=plan_url(self.plan_links, self.site, alarm))
        timeline = {"event": "escalation", "at_ms": now, "attempt": number,
                    "step": current.step_index + 1, "round": current.round + 1,
                    "branch_state": state, "notifications": len(planned)}
        return AttemptPlan(number, now, planned, timeline, wait_after_ms(steps, number))

    def dispatch(self, alarm: Alarm, planned: "AttemptPlan", claimed: list[int], *,
                 new: bool = False) -> None:
        """Queue the pages this worker claimed (``claimed[i]`` for ``planned.planned[i]``:
        0 not ours, 1 ours, > 1 a dead worker's claim taken over) at the rank of the
        alarm's kind (hub.core.urgency); the sender thread that completes the last page
        finishes the attempt (no thread sits waiting for an attempt's pages), and until
        then the attempt's lease is renewed with the pages' claims (claimkeeper). With
        none of them ours, the attempt is finished on the escalation pool."""
        number, now = planned.number, planned.now
        ours = [(item, claim) for item, claim in zip(planned.planned, claimed) if claim]
        for item, claim in zip(planned.planned, claimed):
            if not claim:
                log.info("page %s already claimed: not sent again", item.key)
                self.metrics.page(str(item.key.channel), "skipped_claimed")
        started = now
        if planned.planned and not ours:
            # A re-run after its worker died: every page had gone out already. The next
            # attempt keeps the pace of when they went out, not of this re-run's lease.
            started = self.store.attempt_paged_at(alarm.id, number) or now
        next_due_ms = max(now, started + planned.wait_ms)
        if not ours:
            self._log_attempt(alarm, planned, new=new)
            finish = partial(self._finish_attempt, alarm, number, planned.planned, next_due_ms)
            self.escalators.submit(finish)
            return
        tally = self._tally(alarm, planned, len(ours), next_due_ms)
        self.pager.claims.hold_attempt(alarm.id, number, now)  # until its last page is done
        rank = kind_rank(alarm.kind)
        for item, claim in ours:  # kept alive while they wait for a sender (hub.engine.claimkeeper)
            self.pager.claims.hold(item.key, now)
            try:
                submit_ranked(self.pager.senders, rank, self._send_ticketed, item, now, claim,
                              tally.ticket())
            except RuntimeError:  # shutting down: left to lapse to another worker
                self.pager.claims.take(item.key, now)
                self.pager.claims.release_attempt(alarm.id, number)
                raise
        self._log_attempt(alarm, planned, new=new)

    def _tally(self, alarm: Alarm, planned: "AttemptPlan", pages: int,
               next_due_ms: int) -> AttemptTally:
        """Counts the attempt's ``pages`` as senders finish them; the last one finishes the
        attempt (hub.core.tally)."""
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
                     "%s): %d page(s)", alarm.id, alarm.kind, alarm.branch, alarm.room,
                     alarm.device, t["step"], t["round"], t["branch_state"],
                     len(planned.planned))
        else:
            log.info("alarm %s attempt %d (step %s, round %s, %s): %d page(s)",
                     alarm.id, planned.number, t["step"], t["round"], t["branch_state"],
                     len(planned.planned))

    def _send_ticketed(self, item: PlannedPage, claimed_ms: int, claim: int,
                       ticket: PageTicket | None) -> None:
        try:
            self.pager.send_claimed(item, claimed_ms, claim, ticket)
        finally:
            if ticket is not None:
                ticket.done()

    def _finish_attempt(self, alarm: Alarm, number: int, planned: list[PlannedPage],
                        next_due_ms: int, checked: object = UNCHECKED) -> None:
        """Once the attempt's sends are done: a delivery failure if none got through, then
        the next attempt is scheduled (unless someone acknowledged meanwhile). ``checked``:
        what the last page's record answered when it finished the attempt already
        (hub.core.tally), ``None`` meaning every page failed and nothing was finished."""
        self.pager.claims.release_attempt(alarm.id, number)
        try:
            if checked is UNCHECKED:
                checked = self.store.finish_unless_all_failed(
                    alarm.id, number, next_due_ms, [item.key for item in planned])
            if checked is None and not reached_other_way(self.store, planned):
                self.followups.delivery_failed(alarm, number, planned)
                self.store.finish_attempt(alarm.id, number, next_due_ms)
        except Exception:  # the lease runs out and the attempt is run again (claims hold)
            log.exception("escalation attempt %d of alarm %s failed", number, alarm.id)


