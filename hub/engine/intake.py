"""The alarm intake: a device's alarm message in, the alarm stored, confirmed and paged.

An alarm is validated and placed (:meth:`Intake.read`), its attempt 0 planned by the
escalator from the branch state this worker saw last, then raised (stored, leased, its
pages claimed) in one Redis round trip; alarms read from the broker together share one
(:meth:`Intake.raise_all`). Its pages go to the pager once it is stored, and the device
hears ``received`` then.

Wiring: given the site, the store, the :class:`~hub.engine.escalator.Escalator` and, as
keywords, the topics, ``confirm`` (publishes a device command: the ``received``), the
service's :class:`~hub.engine.rejects.Rejects`, the clock and the metrics. The service
routes alarm messages here by topic.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import Callable

from device.protocol import CMD_RECEIVED, Command, Topics, decode_alarm

from hub.core.escalation import AttemptPlan
from hub.core.lifecycle import AlarmEvent
from hub.core.model import LATE_MS, SAFE_ROOM_KIND, Alarm, Shelter
from hub.core.outcome import MessageOutcome
from hub.core.schedule import drill_in_force
from hub.core.site import Site
from hub.edges.metrics import Metrics
from hub.engine.colleagues import Colleagues
from hub.engine.escalator import Escalator
from hub.engine.pager import LEASE_MS
from hub.engine.rejects import Rejects
from hub.engine.replication import Replication
from hub.store import Store
from hub.store.alarms import Raised, RaiseRequest
from hub.store.branches import parse_seen

log = logging.getLogger("haven.hub")


@dataclass(frozen=True)
class ReadAlarm:
    """An alarm message validated and placed, with its attempt 0 planned if possible, and
    the raise that will store it."""

    alarm: Alarm
    pre: AttemptPlan | None
    request: RaiseRequest


Publish = Callable[[str, bytes], None]


class Intake:
    """Alarm messages in: validated, placed, raised, confirmed, paged. ``clock`` returns
    Unix seconds. ``arc``: the monitoring centre's queue (hub.arc.queue), set by the
    runner when the site has ``[arc]``: raised alarms queue their event, never waiting.
    ``replication`` (hub.engine.replication): with Redis replicas, alarms are raised
    through it and their confirmations wait for a replica; ``None``: raised on ``store``,
    confirmed at once."""

    def __init__(self, site: Site, store: Store, escalator: Escalator, *, topics: Topics,
                 confirm: Publish, reject: Rejects, clock: Callable[[], float],
                 metrics: Metrics, replication: Replication | None = None,
                 colleagues: Colleagues | None = None):
        self.site, self.store, self.escalator = site, store, escalator
        self.topics, self.confirm, self.reject = topics, confirm, reject
        self.clock, self.metrics, self.replication = clock, metrics, replication
        self.arc = None
        #: Alerts the colleagues' devices of each new alarm (None: none are alerted).
        self.colleagues = colleagues
        #: Each branch's switches and overrides as last read (flat), to plan an alarm's
        #: first attempt before raising it; the raise checks they are still current.
        self._branch_seen: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def raise_all(self, reads: list["ReadAlarm"]) -> list[MessageOutcome]:
        """Raise the alarms read together in one round trip, then page and confirm each;
        their outcomes in order. Raises ``redis.RedisError`` for an unreachable store (the
        caller then acknowledges none of them; the redelivered ones already stored are
        confirmed again, not paged again)."""
        if not reads:
            return []
        with self._replicated() as store:  # confirmations held until a replica has them
            raised = store.raise_many([read.request for read in reads])
            outcomes = [self._raised(read, result) for read, result in zip(reads, raised)]
        self._heard([read.alarm for read, result in zip(reads, raised) if result.created])
        return outcomes

    def _replicated(self):
        """A context yielding the store to raise on (see ``replication``)."""
        return nullcontext(self.store) if self.replication is None else self.replication.batch()

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
            self.escalator.escalators.submit(self.escalator.run_due, alarm.id)
        return created

    def _heard(self, alarms: list[Alarm]) -> None:
        """New alarms, once their pages have left: each is a sign of life of its device
        (hub.engine.supervision), and a worn device's press answers its pending check-in
        (hub.engine.checkins). One round trip for a burst."""
        self.store.devices.heard([(alarm.device, "alarm_ms", alarm.received_at_ms,
                                   self.site.devices[alarm.device].type == "wearable")
                                  for alarm in alarms])

    def read(self, topic: str, payload: bytes) -> "ReadAlarm | MessageOutcome":
        """Validate and place an alarm message, and plan its attempt 0 from the branch
        state this worker saw last (checked by the raise). Raises ProtocolError."""
        msg = decode_alarm(topic, payload, topics=self.topics, kinds=self.site.kinds.keys())
        place = self.site.locate(msg.device)
        if place is None:
            return self.reject(topic, f"topic {topic}: field 'device': {msg.device!r} is not "
                                       f"in the site config {self.site.source}; add a [[device]] "
                                       "entry with its branch and room")
        branch, room = place
        now = self._now_ms()
        escalate = bool(self.site.kinds[msg.kind].steps)
        # One round trip stores the alarm, leases its attempt 0 to this worker and reads the
        # branch's state; attempt 0 is planned first from the state this worker saw last,
        # and if that is still current its pages are claimed in the same trip.
        seen = self._branch_seen.get(branch.id) if escalate else None
        switches, overrides = parse_seen(branch.id, seen, now) if seen is not None else (None, [])
        alarm = Alarm(id=msg.alarm_id, kind=msg.kind, device=msg.device, branch=branch.id,
                      room=room.id, pressed_at_ms=msg.pressed_at, received_at_ms=now,
                      # as the raise will decide it, if this state is still current
                      drill=switches is not None and drill_in_force(switches, now))
        pre = None
        if switches is not None:
            pre = self.escalator.plan_attempt(alarm, 0, switches, overrides, now)
        request = RaiseRequest(
            alarm, escalate, LEASE_MS if escalate else 0,
            expect=seen if pre is not None else None,
            claims=tuple(item.key for item in pre.planned) if pre is not None else (),
            timeline=pre.timeline if pre is not None else None)
        return ReadAlarm(alarm, pre, request)

    def _raised(self, read: "ReadAlarm", raised: Raised) -> MessageOutcome:
        """The alarm is stored (or was known): page (a new alarm's pages leave first, so
        the sender works while the rest happens here), confirm it to the device, record."""
        alarm = read.alarm
        kind = self.site.kinds[alarm.kind]
        self._branch_seen[alarm.branch] = raised.seen
        if raised.created and kind.steps:
            self._start_escalation(read, raised)
        drill = self._stored_as_drill(alarm, raised)
        self._confirm(alarm, drill=drill)
        if drill != alarm.drill:
            alarm = replace(alarm, drill=drill)  # as stored
        if raised.created and self.colleagues is not None:  # after the presser's news
            self._alert_colleagues(alarm, raised)
        if raised.created and self.arc is not None:  # the monitoring centre (hub.arc)
            self.arc.alarm_raised(alarm)
        if raised.created and alarm.kind == SAFE_ROOM_KIND:
            self.store.branches.shelter(alarm.branch, Shelter(alarm.room, alarm.told_pressed_ms,
                                                              alarm.id))
        delay_ms = alarm.received_at_ms - alarm.pressed_at_ms
        if raised.created and delay_ms > LATE_MS:
            log.warning("alarm %s from %s is late: pressed %d s before it arrived (device "
                        "outbox or clock skew)", alarm.id, alarm.device, delay_ms // 1000)
            self.store.add_timeline(alarm.id, "late", delay_ms=delay_ms)
        if not raised.created:
            log.info("duplicate alarm %s from %s: confirmed again, not re-paged",
                     alarm.id, alarm.device)
            return MessageOutcome.DUPLICATE
        self.metrics.alarm_stored(alarm.kind, delay_ms / 1000)
        if not kind.steps:
            # The daily test press (or any kind that pages no one): recorded, then closed at
            # once, so it never sits on the board as an alarm; the device hears "resolved".
            self.store.transition(alarm.id, AlarmEvent.RESOLVE, by="hub",
                                  now_ms=self._now_ms(),
                                  reason=f"{alarm.kind}: recorded, no one is paged")
            # The devices page and the stale-test flag read the last test press here.
            self.store.devices.update_device(alarm.device, "test_press",
                                             test_ms=alarm.received_at_ms,
                                             test_alarm=alarm.id)
            log.info("%s from %s recorded", alarm.kind, alarm.device)
            return MessageOutcome.STORED
        self.metrics.escalation_started(0.0)
        return MessageOutcome.STORED

    def _start_escalation(self, read: "ReadAlarm", raised: Raised) -> None:
        """Run a new alarm's attempt 0 (leased to this worker by the raise): its pages as
        claimed by the raise, or planned and claimed now if the branch's state changed."""
        alarm, pre = read.alarm, read.pre
        try:
            if raised.claimed:
                self.escalator.dispatch(alarm, pre, [1] * len(pre.planned), new=True)
            else:
                switches, overrides = parse_seen(alarm.branch, raised.seen,
                                                 alarm.received_at_ms)
                alarm = replace(alarm, drill=drill_in_force(switches, alarm.received_at_ms))
                self.escalator.start_attempt(alarm, 0, switches, overrides, alarm.received_at_ms,
                                             new=True)
        except Exception:  # stored and leased: the lease runs out and a timer runs it
            log.exception("alarm %s: attempt 0 failed to start; the escalation timers will "
                          "run it within %d ms", alarm.id, LEASE_MS)

    def _alert_colleagues(self, alarm: Alarm, raised: Raised) -> None:
        """Alert the on-duty colleagues' devices (hub.engine.colleagues); a failure is
        logged, never the intake's: the alarm is stored and its pages have left."""
        try:
            _, overrides = parse_seen(alarm.branch, raised.seen, alarm.received_at_ms)
            self.colleagues.alert(alarm, overrides)
        except Exception:
            log.exception("alarm %s: alerting colleagues' devices failed", alarm.id)

    def _stored_as_drill(self, alarm: Alarm, raised: Raised) -> bool:
        """Whether the alarm is stored as a drill (hub.core.drill): for a new one, the raise's
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
