"""The hub's alarm service: a message from a device in, stored alarm and pages out.

Wiring: the MQTT adapter calls :meth:`AlarmService.handle` (or ``handle_batch`` for
messages read together) for every message and acknowledges the message to the broker
only after it returns, so an alarm is never acknowledged before it is stored.

The service is a thin wiring of parts, each a class given what it uses:

- :class:`~hub.engine.intake.Intake`: an alarm message validated, placed, stored,
  confirmed to the device, and its attempt 0 started;
- :class:`~hub.engine.escalator.Escalator`: attempts planned (hub.core.escalation),
  leased, run and finished; later attempts on every worker's timer;
- :class:`~hub.engine.pager.Pager`: one page claimed, sent through the notifier and
  recorded; pages that failed retryably tried again from Redis;
- :class:`~hub.engine.followups.Followups`: follow-up calls, "is responding", the
  all-clear, nobody reached, staff leaving a safe room;
- :class:`~hub.engine.device_events.DeviceEvents`: statuses, heartbeats and events;
- :class:`~hub.engine.colleagues.Colleagues`: colleagues' devices alerted of a new alarm,
  their answers ("I'm responding") and their alerts cleared.

One alarm: MQTT edge -> ``handle`` -> ``Intake.read`` -> ``Intake.raise_all`` (one Redis
round trip) -> ``Escalator.dispatch`` -> ``Pager.send_claimed`` on a sender thread ->
notifier. The parts' entry points that the runner's timers, the device-command
forwarder and the dashboard's callbacks call are repeated here, one line each.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Callable

from device.protocol import ProtocolError, Topics

from hub.core.model import LATE_MS, Alarm
from hub.core.outcome import MessageOutcome
from hub.core.planlink import PlanLinks
from hub.core.schedule import BranchState, Switches
from hub.core.site import Site
from hub.edges.metrics import Metrics
from hub.edges.notify import Notifier
from hub.engine.colleagues import Colleagues
from hub.engine.device_events import DeviceEvents
from hub.engine.escalator import TICK_S, Escalator
from hub.engine.followups import Followups
from hub.engine.intake import Intake, ReadAlarm
from hub.engine.pager import LEASE_MS, Pager
from hub.engine.rejects import Rejects
from hub.engine.replication import Replication
from hub.store import Store

__all__ = ["AlarmService", "MessageOutcome", "LEASE_MS", "TICK_S", "LATE_MS"]

#: Sender threads warmed at hub start: an emergency's first step pages a few contacts by
#: SMS and call at once.
WARM_SENDERS = 8

Publish = Callable[[str, bytes], None]


class AlarmService:
    """Validates, places, stores and pages, by composing the engine's parts.

    ``publish`` sends a device command (QoS 1); ``confirm`` publishes the ``received``
    (default: ``publish``; the hub wires it to QoS 0: a device resends its alarm until
    confirmed, so a lost confirmation is asked for again, and a QoS 1 PUBACK from a
    broker that keeps Nagle on held the next alarm back by up to 40 ms). ``senders``
    runs pages (a :class:`~hub.engine.senders.PrioritySenders` sends the most urgent
    kind's first), ``escalators`` the escalation work off the timer (never the senders'
    own pool). ``clock`` returns Unix seconds. ``public_url``: the dashboard's public base
    URL for the provider's callbacks (keypress and SMS replies). ``replication``
    (hub.engine.replication): confirmations wait for a Redis replica (Intake).
    ``plan_links``: links to an alarm's floor plan in responders' texts
    (hub.core.planlink), or ``None``."""

    def __init__(self, site: Site, store: Store, notifier: Notifier, publish: Publish,
                 senders: Executor, *, escalators: Executor | None = None,
                 topics: Topics = Topics(), clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, public_url: str | None = None,
                 confirm: Publish | None = None, replication: Replication | None = None,
                 plan_links: PlanLinks | None = None):
        self.store, self.notifier, self.topics = store, notifier, topics
        self.publish, self.senders, self.clock = publish, senders, clock
        self.metrics = metrics or Metrics()
        self.public_url = public_url
        escalators = escalators or ThreadPoolExecutor(4, thread_name_prefix="escalation")
        self.pager = Pager(site, store, notifier, senders, clock=clock, metrics=self.metrics,
                           public_url=public_url)
        self.followups = Followups(site, store, self.pager, clock=clock)
        self.colleagues = Colleagues(site, store, clock=clock)
        self.escalator = Escalator(site, store, self.pager, self.followups, escalators,
                                   clock=clock, metrics=self.metrics, public_url=public_url,
                                   plan_links=plan_links, colleagues=self.colleagues)
        self.reject = Rejects(store, self.metrics, topics, clock=clock)
        self.intake = Intake(site, store, self.escalator, topics=topics,
                             confirm=confirm or publish, reject=self.reject, clock=clock,
                             metrics=self.metrics, replication=replication,
                             colleagues=self.colleagues)
        self.devices = DeviceEvents(site, store, self.followups, topics=topics,
                                    reject=self.reject, clock=clock, metrics=self.metrics,
                                    colleagues=self.colleagues)
        #: Claims of pages waiting for a sender thread (the runner's timer renews them).
        self.claims = self.pager.claims
        #: Pages' outcomes recorded together (hub.engine.groupcommit).
        self.records = self.pager.records

    @property
    def site(self) -> Site:
        """The site config every part works from."""
        return self.intake.site

    @site.setter
    def site(self, site: Site) -> None:
        """A reloaded site (SIGHUP, hub.app.runner): every part takes it at once."""
        for part in (self.pager, self.followups, self.escalator, self.intake, self.devices,
                     self.colleagues):
            part.site = site

    @property
    def arc(self):
        """The monitoring centre's queue (hub.arc.queue), or ``None``: set by the runner
        when the site has ``[arc]``; raised, acknowledged and resolved alarms queue their
        event, never waiting for it."""
        return self.intake.arc

    @arc.setter
    def arc(self, queue) -> None:
        self.intake.arc = self.escalator.arc = self.followups.arc = queue

    @property
    def push(self):
        """Web Push (hub.edges.push.PushNotifier), or ``None``: set by the runner when the
        site has push keys; the pager sends ``push`` pages and the second route with it."""
        return self.pager.push

    @push.setter
    def push(self, notifier) -> None:
        self.pager.push = notifier

    def warm_up(self, sender_threads: int) -> None:
        """Get ready for the first alarm (hub start, before subscribing): Pager.warm_up."""
        self.pager.warm_up(sender_threads)

    # --- messages from devices, routed by topic ---------------------------------------

    def handle(self, topic: str, payload: bytes, *, retained: bool = False) -> MessageOutcome:
        """Handle one MQTT message. Raises only when the store is unreachable
        (``redis.RedisError``): the caller must then not acknowledge the message.

        ``retained``: the broker replayed a stored message (on subscribe); a retained
        status says what the device last said, not that it is alive now."""
        try:
            _, channel = self.topics.parse(topic)
            if channel == "alarm":
                read = self.intake.read(topic, payload)
                outcome = (read if isinstance(read, MessageOutcome)
                           else self.intake.raise_all([read])[0])
            elif channel in ("status", "heartbeat"):
                outcome = self.devices.status(topic, payload, retained)
            elif channel == "event":
                outcome = self.devices.event(topic, payload)
            else:
                outcome = MessageOutcome.IGNORED
        except ProtocolError as exc:
            return self.reject(topic, str(exc))
        if outcome is not MessageOutcome.REJECTED:  # rejects count their own, with the reason
            self.metrics.message(channel, outcome)
        return outcome

    def handle_batch(self, messages: list[tuple[str, bytes, bool]]) -> list[MessageOutcome]:
        """:meth:`handle` for messages read from the broker together (``(topic, payload,
        retained)``), in order: consecutive alarms are stored in one Redis round trip, so a
        burst costs a round trip per read, not per alarm. Raises like :meth:`handle` (the
        caller then acknowledges none of them)."""
        outcomes: list[MessageOutcome] = []
        reads: list[tuple[int, ReadAlarm]] = []
        for topic, payload, retained in messages:
            try:
                is_alarm = self.topics.parse(topic)[1] == "alarm"
            except ProtocolError:
                is_alarm = False
            if not is_alarm:  # events keep their place after the alarms before them
                self._raise_reads(reads, outcomes)
                outcomes.append(self.handle(topic, payload, retained=retained))
                continue
            try:
                read = self.intake.read(topic, payload)
            except ProtocolError as exc:
                outcomes.append(self.reject(topic, str(exc)))
                continue
            if isinstance(read, MessageOutcome):
                outcomes.append(read)
            else:
                reads.append((len(outcomes), read))
                outcomes.append(MessageOutcome.IGNORED)  # replaced once raised
        self._raise_reads(reads, outcomes)
        return outcomes

    def _raise_reads(self, reads: list[tuple[int, ReadAlarm]],
                     outcomes: list[MessageOutcome]) -> None:
        """Raise the alarms gathered so far in one round trip; their outcomes in place."""
        raised = self.intake.raise_all([read for _, read in reads])
        for (index, _), outcome in zip(reads, raised):
            outcomes[index] = outcome
            self.metrics.message("alarm", outcome)
        reads.clear()

    def handle_statuses(self, messages: list[tuple[str, bytes, bool]]) -> list[MessageOutcome]:
        """Statuses and heartbeats read together, stored in one round trip
        (DeviceEvents.statuses)."""
        return self.devices.statuses(messages)

    # --- entry points of the parts, for the runner, the checks and the dashboard -------

    def raise_from_hub(self, alarm: Alarm) -> bool:
        """An alarm the hub raises itself (a missed check-in): Intake.raise_from_hub."""
        return self.intake.raise_from_hub(alarm)

    def branch_state(self, branch_id: str, now_ms: int, overrides: list | None = None,
                     switches: Switches | None = None) -> BranchState:
        """A branch's state now (Escalator.branch_state)."""
        return self.escalator.branch_state(branch_id, now_ms, overrides, switches)

    def run_due(self, alarm_id: str | None = None) -> int:
        """The escalation attempts due now (timer thread): Escalator.run_due."""
        return self.escalator.run_due(alarm_id)

    def run_attempt(self, alarm_id: str, number: int) -> None:
        """Start a leased attempt, its last page finishing it: Escalator.run_attempt."""
        self.escalator.run_attempt(alarm_id, number)

    def run_page_retries(self) -> int:
        """Pages due to be tried again (timer thread): Pager.run_page_retries."""
        return self.pager.run_page_retries()

    def run_call_retries(self) -> int:
        """Call retries that are due (timer thread): Followups.run_call_retries."""
        return self.followups.run_call_retries()

    def followup(self, key_text: str, status: str) -> bool:
        """A page's final delivery report (Twilio's status callback): Followups.followup."""
        return self.followups.followup(key_text, status)

    def command_forwarded(self, fields: dict[str, str]) -> None:
        """A device command forwarded (hub.engine.commands): Followups.command_forwarded
        (the texts first), then the colleagues' alerts clear (Colleagues.command_forwarded)."""
        self.followups.command_forwarded(fields)
        self.colleagues.command_forwarded(fields)

    def send_responding(self, alarm_id: str) -> int:
        """"X is responding" to the others reached: Followups.send_responding."""
        return self.followups.send_responding(alarm_id)

    def send_all_clear(self, alarm_id: str) -> int:
        """The all-clear to everyone reached: Followups.send_all_clear."""
        return self.followups.send_all_clear(alarm_id)

    def safe_room_left(self, device_id: str, event_at: int, now_ms: int) -> int:
        """A safe-room door opened: Followups.safe_room_left."""
        return self.followups.safe_room_left(device_id, event_at, now_ms)
