"""The alarm intake: a device's alarm message in, the alarm stored, confirmed and paged.

Part of :class:`hub.service.AlarmService` (a mixin sharing its ``site``, ``store``,
``metrics``, pools and planning). An alarm is validated and placed, its attempt 0 planned
from the branch state this worker saw last, then raised (stored, leased, its pages
claimed) in one Redis round trip; alarms read from the broker together share one
(:meth:`IntakeMixin.handle_batch`). Its pages go to the senders once it is stored, and
the device hears ``received`` then.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from device.protocol import CMD_RECEIVED, Command, ProtocolError, decode_alarm

from .colleagues import alert_colleagues
from .escalation import AttemptPlan
from .lifecycle import AlarmEvent
from .model import LATE_MS, SAFE_ROOM_KIND, Alarm, Shelter
from .outcome import Outcome
from .schedule import drill_in_force
from .sending import LEASE_MS
from .store import Raised, RaiseRequest
from .store_branches import parse_seen

log = logging.getLogger("haven.hub")


@dataclass(frozen=True)
class _Intake:
    """An alarm message validated and placed, with its attempt 0 planned if possible, and
    the raise that will store it."""

    alarm: Alarm
    pre: AttemptPlan | None
    request: RaiseRequest


class IntakeMixin:
    """Alarm messages in: validated, placed, raised, confirmed, paged."""

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
            self._heard([intake.alarm for (_, intake), result in zip(intakes, raised)
                         if result.created])
        intakes.clear()

    def _alarm(self, topic: str, payload: bytes) -> Outcome:
        intake = self._intake(topic, payload)
        if isinstance(intake, Outcome):
            return intake
        return self._raise_one(intake)

    def _raise_one(self, intake: "_Intake") -> Outcome:
        """Raise one alarm (its attempt 0's pages claimed in the same round trip), then page
        and confirm it."""
        raised = self.store.raise_many([intake.request])[0]
        outcome = self._raised(intake, raised)
        if raised.created:
            self._heard([intake.alarm])
        return outcome

    def _heard(self, alarms: list[Alarm]) -> None:
        """New alarms, once their pages have left: each is a sign of life of its device
        (hub.supervision), and a worn device's press answers its pending check-in
        (hub.checkins). One round trip for a burst."""
        self.store.heard([(alarm.device, "alarm_ms", alarm.received_at_ms,
                           self.site.devices[alarm.device].type == "wearable")
                          for alarm in alarms])

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
            # as the raise will decide it, if this state is still current (hub.drill)
            alarm = replace(alarm, drill=drill_in_force(switches, alarm.received_at_ms))
            pre = self._plan_attempt(alarm, 0, switches, overrides, alarm.received_at_ms)
        request = RaiseRequest(
            alarm, escalate, LEASE_MS if escalate else 0,
            expect=seen if pre is not None else None,
            claims=tuple(item.key for item in pre.planned) if pre is not None else (),
            timeline=pre.timeline if pre is not None else None)
        return _Intake(alarm, pre, request)

    def _raised(self, intake: "_Intake", raised: Raised) -> Outcome:
        """The alarm is stored (or was known): page (a new alarm's pages leave first, so
        the sender works while the rest happens here), confirm it to the device, record."""
        alarm = intake.alarm
        kind = self.site.kinds[alarm.kind]
        self._branch_seen[alarm.branch] = raised.seen
        if raised.created and kind.steps:
            self._start_escalation(intake, raised)
        drill = self._stored_as_drill(alarm, raised)
        self._confirm(alarm, drill=drill)
        if raised.created:  # colleagues' devices (hub.colleagues), after the presser's news
            self._alert_colleagues(replace(alarm, drill=drill), raised)
        if raised.created and self.arc is not None:  # the monitoring centre (hub.arc)
            self.arc.alarm_raised(replace(alarm, drill=drill))
        if raised.created and alarm.kind == SAFE_ROOM_KIND:
            self.store.shelter(alarm.branch, Shelter(alarm.room, alarm.told_pressed_ms,
                                                     alarm.id))
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
                alarm = replace(alarm, drill=drill_in_force(switches, alarm.received_at_ms))
                self._attempt(alarm, 0, switches, overrides, alarm.received_at_ms,
                              wait_here=False)
        except Exception:  # stored and leased: the lease runs out and a timer runs it
            log.exception("alarm %s: attempt 0 failed to start; the escalation timers will "
                          "run it within %d ms", alarm.id, LEASE_MS)

    def _alert_colleagues(self, alarm: Alarm, raised: Raised) -> None:
        """Alert the on-duty colleagues' devices (hub.colleagues); a failure is logged,
        never the intake's: the alarm is stored and its pages have left."""
        try:
            _, overrides = parse_seen(alarm.branch, raised.seen, alarm.received_at_ms)
            alert_colleagues(self.store, self.site, alarm, overrides, self._now_ms())
        except Exception:
            log.exception("alarm %s: alerting colleagues' devices failed", alarm.id)

    def _stored_as_drill(self, alarm: Alarm, raised: Raised) -> bool:
        """Whether the alarm is stored as a drill (hub.drill): for a new one, the raise's
        rule on the branch state it read; a redelivered one is read back (rare)."""
        if raised.created:
            switches, _ = parse_seen(alarm.branch, raised.seen, alarm.received_at_ms)
            return drill_in_force(switches, alarm.received_at_ms)
        stored = self.store.get_alarm(alarm.id)
        return stored is not None and stored.drill

    def _confirm(self, alarm: Alarm, *, drill: bool = False) -> None:
        """Tell the device the hub has stored its alarm (a PUBACK only means the broker has),
        and whether as a drill: police are not paged, and the device shows it."""
        cmd = Command(cmd=CMD_RECEIVED, alarm_id=alarm.id, at=self._now_ms(), drill=drill)
        self.confirm(self.topics.cmd(alarm.device), cmd.to_json())
