"""The hub's alarm service: a message from a device in, stored alarm and pages out.

Wiring: the MQTT adapter calls :meth:`AlarmService.handle` for every message
and acknowledges the message to the broker only after ``handle`` returns, so
an alarm is never acknowledged before it is stored. Sending is handed to a
thread pool: all notifications of a step go out concurrently, each claimed in
Redis first so it is sent at most once whatever the redeliveries or workers.

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
import time
from dataclasses import dataclass
from functools import partial
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from typing import Callable

from device.protocol import CMD_RECEIVED, Command, ProtocolError, Topics, decode_alarm

from .claimkeeper import ClaimKeeper
from .device_messages import DeviceMessagesMixin
from .escalation import PlannedNotification, attempt, plan, wait_after_ms
from .gate import Gate
from .followups import FollowupMixin
from .lifecycle import AlarmEvent
from .metrics import Metrics, channel_of
from .model import Alarm, AlarmState
from .notify import Notifier
from .outcome import Outcome
from .schedule import BranchState, Switches, on_duty
from .sending import LEASE_MS, SendingMixin
from .site import Site
from .store import Raised, RaiseRequest, Store
from .store_branches import parse_seen
from .tally import UNCHECKED, AttemptTally, FinishCheck, PageTicket

__all__ = ["AlarmService", "Outcome", "LEASE_MS", "TICK_S", "LATE_MS"]

log = logging.getLogger("haven.hub")

#: An alarm arriving this long after its press (device clock) is flagged as late, in ms:
#: it sat in a device's outbox while the network or broker was down.
LATE_MS = 30_000

#: How often the timer thread looks for due escalation attempts, in seconds.
TICK_S = 0.2

Publish = Callable[[str, bytes], None]


@dataclass(frozen=True)
class AttemptPlan:
    """One escalation attempt, planned: its pages, its timeline entry, and the wait (ms)
    before the next attempt."""

    number: int
    now: int
    planned: list[PlannedNotification]
    timeline: dict[str, object]
    wait_ms: int


@dataclass(frozen=True)
class _Intake:
    """An alarm message validated and placed, with its attempt 0 planned if possible, and
    the raise that will store it."""

    alarm: Alarm
    pre: AttemptPlan | None
    request: RaiseRequest


class AlarmService(SendingMixin, FollowupMixin, DeviceMessagesMixin):
    """Validates, places, stores and pages. ``clock`` returns Unix seconds."""

    def __init__(self, site: Site, store: Store, notifier: Notifier, publish: Publish,
                 senders: Executor, *, escalators: Executor | None = None,
                 topics: Topics = Topics(), clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, public_url: str | None = None,
                 confirm: Publish | None = None, send_ahead: bool = False):
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
        #: Hand a lone alarm's planned pages to the senders before its raise, behind a gate
        #: (hub.gate), so their requests are built during the round trip. Needs senders on
        #: threads of their own (an inline executor would wait at the gate it runs on).
        self.send_ahead = send_ahead
        # Attempts wait for their sends, so they must not run on the senders' own pool.
        self.escalators = escalators or ThreadPoolExecutor(4, thread_name_prefix="escalation")
        # Alarms outrank troubles: device-trouble texts queue on their own small pool,
        # never in front of an alarm's pages.
        self.trouble_senders = ThreadPoolExecutor(2, thread_name_prefix="trouble")
        #: Claims of pages waiting for a sender thread, renewed together on the timer.
        self.claims = ClaimKeeper(store.renew_claims)
        #: Each branch's switches and overrides as last read (flat), to plan an alarm's
        #: first attempt before raising it; the raise checks they are still current.
        self._branch_seen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

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
            elif channel == "status":
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

    def handle_batch(self, messages: list[tuple[str, bytes, bool]]) -> list[Outcome]:
        """:meth:`handle` for messages read from the broker together (``(topic, payload,
        retained)``), in order: consecutive alarms are stored in one Redis round trip, so a
        burst costs a round trip per read, not per alarm. Raises like :meth:`handle` (the
        caller then acknowledges none of them; the redelivered ones already stored are
        confirmed again, not paged again)."""
        outcomes: list[Outcome] = []
        intakes: list[tuple[int, "_Intake"]] = []
        for topic, payload, retained in messages:
            try:
                is_alarm = self.topics.parse(topic)[1] == "alarm"
            except ProtocolError:
                is_alarm = False
            if not is_alarm:  # events keep their place after the alarms before them
                self._raise_intakes(intakes, outcomes)
                outcomes.append(self.handle(topic, payload, retained=retained))
                continue
            try:
                intake = self._intake(topic, payload)
            except ProtocolError as exc:
                outcomes.append(self._reject(topic, str(exc)))
                continue
            if isinstance(intake, Outcome):
                outcomes.append(intake)
            else:
                intakes.append((len(outcomes), intake))
                outcomes.append(Outcome.IGNORED)  # replaced once raised
        self._raise_intakes(intakes, outcomes)
        return outcomes

    def _raise_intakes(self, intakes: list[tuple[int, "_Intake"]],
                       outcomes: list[Outcome]) -> None:
        """Raise the alarms gathered so far in one round trip, then confirm and page each."""
        if len(intakes) == 1:
            index, intake = intakes[0]
            outcomes[index] = self._raise_one(intake)
            self.metrics.message("alarm", outcomes[index])
        elif intakes:
            raised = self.store.raise_many([intake.request for _, intake in intakes])
            for (index, intake), result in zip(intakes, raised):
                outcomes[index] = self._raised(intake, result)
                self.metrics.message("alarm", outcomes[index])
        intakes.clear()

    def _alarm(self, topic: str, payload: bytes) -> Outcome:
        intake = self._intake(topic, payload)
        if isinstance(intake, Outcome):
            return intake
        return self._raise_one(intake)

    def _raise_one(self, intake: "_Intake") -> Outcome:
        """Raise one alarm, its planned pages already handed to senders behind a gate
        (hub.gate): their requests are built while the raise is on its way."""
        gate = self._pre_send(intake)
        try:
            raised = self.store.raise_many([intake.request])[0]
        except BaseException:
            if gate is not None:
                gate.close()
            raise
        return self._raised(intake, raised, gate)

    def _pre_send(self, intake: "_Intake") -> Gate | None:
        """Hand attempt 0's planned pages to the senders behind a gate the raise decides."""
        pre = intake.pre
        if not self.send_ahead or pre is None or not pre.planned:
            return None
        gate = Gate()
        tally = self._tally(intake.alarm, pre, len(pre.planned), pre.now + pre.wait_ms)
        try:
            for item in pre.planned:
                self.senders.submit(self._send_gated, item, pre.now, gate, tally.ticket())
        except RuntimeError:  # shutting down: the ordinary path (or the lease) takes over
            gate.close()
            return None
        return gate

    def _intake(self, topic: str, payload: bytes) -> "_Intake | Outcome":
        """Validate and place an alarm message, and plan its attempt 0 from the branch
        state this worker saw last (checked by the raise). Raises ProtocolError."""
        msg = decode_alarm(topic, payload, topics=self.topics, kinds=self.site.kinds.keys())
        place = self.site.locate(msg.device)
        if place is None:
            return self._reject(topic, f"topic {topic}: field 'device': {msg.device!r} is not "
                                       f"in the site config {self.site.source}; add a [[device]] "
                                       "entry with its branch and room")
        branch, room = place
        alarm = Alarm(id=msg.alarm_id, kind=msg.kind, device=msg.device, branch=branch.id,
                      room=room.id, pressed_at_ms=msg.pressed_at, received_at_ms=self._now_ms())
        escalate = bool(self.site.kinds[alarm.kind].steps)
        # One round trip stores the alarm, leases its attempt 0 to this worker and reads the
        # branch's state; attempt 0 is planned first from the state this worker saw last,
        # and if that is still current its pages are claimed in the same trip.
        seen = self._branch_seen.get(branch.id)
        pre = None
        if escalate and seen is not None:
            switches, overrides = parse_seen(branch.id, seen, alarm.received_at_ms)
            pre = self._plan_attempt(alarm, 0, switches, overrides, alarm.received_at_ms)
        request = RaiseRequest(
            alarm, escalate, LEASE_MS if escalate else 0,
            expect=seen if pre is not None else None,
            claims=tuple(item.key for item in pre.planned) if pre is not None else (),
            timeline=pre.timeline if pre is not None else None)
        return _Intake(alarm, pre, request)

    def _raised(self, intake: "_Intake", raised: Raised, gate: Gate | None = None
                ) -> Outcome:
        """The alarm is stored (or was known): page (a new alarm's pages leave first, so
        the sender works while the rest happens here), confirm it to the device, record.
        ``gate``: attempt 0's pages are waiting behind it (hub.gate), to go if claimed."""
        alarm = intake.alarm
        sent_ahead = gate is not None and raised.claimed
        if gate is not None:
            gate.open() if sent_ahead else gate.close()
        kind = self.site.kinds[alarm.kind]
        self._branch_seen[alarm.branch] = raised.seen
        if sent_ahead:
            self._log_attempt(alarm, intake.pre, new=True)
        elif raised.created and kind.steps:
            self._start_escalation(intake, raised)
        self._confirm(alarm)
        delay_ms = alarm.received_at_ms - alarm.pressed_at_ms
        if raised.created and delay_ms > LATE_MS:
            log.warning("alarm %s from %s is late: pressed %d s before it arrived (device "
                        "outbox or clock skew)", alarm.id, alarm.device, delay_ms // 1000)
            self.store.add_timeline(alarm.id, "late", delay_ms=delay_ms)
        if not raised.created:
            log.info("duplicate alarm %s from %s: confirmed again, not re-paged",
                     alarm.id, alarm.device)
            return Outcome.DUPLICATE
        self.metrics.alarm_stored(alarm.kind, delay_ms / 1000)
        if not kind.steps:
            # The daily test press (or any kind that pages no one): recorded, then closed at
            # once, so it never sits on the board as an alarm; the device hears "resolved".
            self.store.transition(alarm.id, AlarmEvent.RESOLVE, by="hub",
                                  now_ms=self._now_ms(),
                                  reason=f"{alarm.kind}: recorded, no one is paged")
            # The devices page and the stale-test flag read the last test press here.
            self.store.update_device(alarm.device, "test_press", test_ms=alarm.received_at_ms,
                                     test_alarm=alarm.id)
            log.info("%s from %s recorded", alarm.kind, alarm.device)
            return Outcome.STORED
        self.metrics.escalation_started(0.0)
        return Outcome.STORED

    def _start_escalation(self, intake: "_Intake", raised: Raised) -> None:
        """Run a new alarm's attempt 0 (leased to this worker by the raise): its pages as
        claimed by the raise, or planned and claimed now if the branch's state changed."""
        alarm, pre = intake.alarm, intake.pre
        try:
            if raised.claimed:
                self._dispatch(alarm, pre, [1] * len(pre.planned), wait_here=False)
            else:
                switches, overrides = parse_seen(alarm.branch, raised.seen,
                                                 alarm.received_at_ms)
                self._attempt(alarm, 0, switches, overrides, alarm.received_at_ms,
                              wait_here=False)
        except Exception:  # stored and leased: the lease runs out and a timer runs it
            log.exception("alarm %s: attempt 0 failed to start; the escalation timers will "
                          "run it within %d ms", alarm.id, LEASE_MS)

    def _confirm(self, alarm: Alarm) -> None:
        """Tell the device the hub has stored its alarm (a PUBACK only means the broker has)."""
        cmd = Command(cmd=CMD_RECEIVED, alarm_id=alarm.id, at=self._now_ms())
        self.confirm(self.topics.cmd(alarm.device), cmd.to_json())

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
        if alarm is None or alarm.state is not AlarmState.RAISED:
            self.store.stop_escalation(alarm_id)
            return
        now = self._now_ms()
        switches, overrides = self.store.branch_context(alarm.branch, now)
        self._attempt(alarm, number, switches, overrides, now, wait_here=True)

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

    def _plan_attempt(self, alarm: Alarm, number: int, switches: Switches, overrides: list,
                      now: int) -> "AttemptPlan | None":
        """Who attempt ``number`` pages, from the branch's state at ``now`` (pure but for
        stopping an escalation whose kind has no steps left in the config: ``None``)."""
        kind = self.site.kinds.get(alarm.kind)
        state = self.branch_state(alarm.branch, now, overrides, switches)
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
                       reply_hint=self.public_url is not None)
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
        if not ours:
            self._log_attempt(alarm, planned, new=not wait_here and number == 0)
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
        self._log_attempt(alarm, planned, new=not wait_here and number == 0)
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


