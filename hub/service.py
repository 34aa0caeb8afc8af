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
import random
import time
from concurrent.futures import Executor, ThreadPoolExecutor, wait
from datetime import datetime, timezone
from enum import StrEnum
from typing import Callable
from urllib.parse import quote

from device.protocol import (CMD_RECEIVED, EVENT_CANCEL, EVENT_CHECKIN, EVENT_SAFE_ROOM_LEFT,
                             EVENT_SELFTEST, Command, ProtocolError, Topics, decode_alarm,
                             decode_event, decode_status)

from .escalation import PlannedNotification, attempt, plan, wait_after_ms
from .lifecycle import AlarmEvent, IllegalTransition
from .metrics import Metrics, channel_of, delivery_outcome
from .model import Alarm, AlarmState, Channel, Delivery, NotificationKey
from .notify import TWILIO_TIMEOUT_S, Notifier
from .schedule import BranchState, Switches, on_duty
from .site import Contact, Site
from .store import Store

log = logging.getLogger("haven.hub")

#: An alarm arriving this long after its press (device clock) is flagged as late, in ms:
#: it sat in a device's outbox while the network or broker was down.
LATE_MS = 30_000

#: How long a worker holds an escalation attempt or a notification claim, in ms. A worker
#: killed mid-attempt is replaced after this; sends time out before it (TWILIO_TIMEOUT_S).
LEASE_MS = 4000
#: How often the timer thread looks for due escalation attempts, in seconds.
TICK_S = 0.2
#: First pause before resending a retryable failure (429, 5xx, connection), in seconds;
#: doubled each time, jittered, and only while the retry still fits in the lease.
RETRY_FIRST_S = 0.2
#: Paged when every notification of an attempt failed (Twilio down, numbers dead...).
FALLBACK_ROLE = "fallback"
#: Fallback pages get their own attempt numbers, apart from the policy's.
FALLBACK_ATTEMPT_BASE = 1_000_000
#: The all-clear's attempt number in notification keys (sent at most once per contact).
ALL_CLEAR_ATTEMPT = 2_000_000
#: Calls placed because a page failed: attempt numbers BASE + 10 x original attempt + n,
#: n = 0 for the call replacing an undelivered SMS, 1.. for each retry of an unanswered call.
FOLLOWUP_CALL_BASE = 3_000_000

Publish = Callable[[str, bytes], None]


class Outcome(StrEnum):
    """What :meth:`AlarmService.handle` did with one message."""

    STORED = "stored"          # a new alarm: stored, pages going out
    DUPLICATE = "duplicate"    # an alarm id seen before: confirmed again, nobody re-paged
    STATUS = "status"          # a device status recorded
    EVENT = "event"            # a device event applied (cancel, check-in, self-test ...)
    REJECTED = "rejected"      # broke the wire contract or names an unknown device
    IGNORED = "ignored"        # a topic the hub does not consume


class AlarmService:
    """Validates, places, stores and pages. ``clock`` returns Unix seconds."""

    def __init__(self, site: Site, store: Store, notifier: Notifier, publish: Publish,
                 senders: Executor, *, escalators: Executor | None = None,
                 topics: Topics = Topics(), clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None, public_url: str | None = None):
        self.site, self.store, self.notifier = site, store, notifier
        self.metrics = metrics or Metrics()
        #: The dashboard's public base URL for Twilio callbacks (keypress and SMS replies).
        self.public_url = public_url
        self.publish, self.senders, self.topics, self.clock = publish, senders, topics, clock
        # Attempts wait for their sends, so they must not run on the senders' own pool.
        self.escalators = escalators or ThreadPoolExecutor(4, thread_name_prefix="escalation")
        # Alarms outrank troubles: device-trouble texts queue on their own small pool,
        # never in front of an alarm's pages.
        self.trouble_senders = ThreadPoolExecutor(2, thread_name_prefix="trouble")

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

    def _alarm(self, topic: str, payload: bytes) -> Outcome:
        msg = decode_alarm(topic, payload, topics=self.topics, kinds=self.site.kinds.keys())
        place = self.site.locate(msg.device)
        if place is None:
            return self._reject(topic, f"topic {topic}: field 'device': {msg.device!r} is not "
                                       f"in the site config {self.site.source}; add a [[device]] "
                                       "entry with its branch and room")
        branch, room = place
        alarm = Alarm(id=msg.alarm_id, kind=msg.kind, device=msg.device, branch=branch.id,
                      room=room.id, pressed_at_ms=msg.pressed_at, received_at_ms=self._now_ms())
        kind = self.site.kinds[alarm.kind]
        escalate = bool(kind.steps)
        # One round trip stores the alarm, leases its attempt 0 to this worker and reads the
        # branch's state: the first pages leave without waiting for a timer or a thread.
        raised = self.store.raise_leased(alarm, escalate=escalate,
                                         lease_ms=LEASE_MS if escalate else 0)
        created = raised.created
        self._confirm(alarm)
        delay_ms = alarm.received_at_ms - alarm.pressed_at_ms
        if created and delay_ms > LATE_MS:
            log.warning("alarm %s from %s is late: pressed %d s before it arrived (device "
                        "outbox or clock skew)", alarm.id, alarm.device, delay_ms // 1000)
            self.store.add_timeline(alarm.id, "late", delay_ms=delay_ms)
        if not created:
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
            log.info("%s from %s recorded", alarm.kind, alarm.device)
            return Outcome.STORED
        log.info("alarm %s %s at %s/%s from %s: escalating", alarm.id, alarm.kind,
                 alarm.branch, alarm.room, alarm.device)
        self.metrics.escalation_started(0.0)
        try:
            self._attempt(alarm, 0, raised.switches, raised.overrides, alarm.received_at_ms,
                          wait_here=False)
        except Exception:  # stored and leased: the lease runs out and a timer runs it
            log.exception("alarm %s: attempt 0 failed to start; the escalation timers will "
                          "run it within %d ms", alarm.id, LEASE_MS)
        return Outcome.STORED

    def _confirm(self, alarm: Alarm) -> None:
        """Tell the device the hub has stored its alarm (a PUBACK only means the broker has)."""
        cmd = Command(cmd=CMD_RECEIVED, alarm_id=alarm.id, at=self._now_ms())
        self.publish(self.topics.cmd(alarm.device), cmd.to_json())

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

    # --- device troubles ---------------------------------------------------------------

    def notify_trouble(self, notice) -> None:
        """Text the branch's ``it`` contacts about a device trouble or its all-clear.

        Called once per notice across workers (hub.supervision); sends go through a small
        pool of their own, so a burst of troubles never delays an alarm's pages."""
        from .messages import trouble_text
        contacts = [c for c in self.site.contacts
                    if notice.branch_id in c.branches and "it" in c.roles]
        text = trouble_text(notice.device_id, str(notice.trouble), notice.raised, self.site)
        log.warning("device %s %s %s; telling %d IT contact(s)", notice.device_id,
                    notice.trouble, "raised" if notice.raised else "cleared", len(contacts))
        for contact in contacts:
            self.trouble_senders.submit(self._send_plain, contact, text)

    def _send_plain(self, contact: Contact, text: str) -> None:
        try:
            delivery = self.notifier.send_sms(contact.phone, text)
            if not delivery.ok:
                log.error("trouble SMS to %s FAILED: %s", contact.name, delivery.error)
        except Exception:
            log.exception("trouble SMS to %s failed", contact.name)

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
        kind = self.site.kinds.get(alarm.kind)
        state = self.branch_state(alarm.branch, now, overrides, switches)
        steps = kind.policy(lone_worker=state is BranchState.LONE_WORKER) if kind else ()
        if not steps:
            log.error("alarm %s: kind %r has no escalation steps in the site config now; "
                      "it stays on the board for an operator", alarm.id, alarm.kind)
            self.store.stop_escalation(alarm.id)
            return
        current = attempt(steps, number)
        when = datetime.fromtimestamp(now / 1000, timezone.utc)
        planned = plan(self.site, alarm, steps, number, drill=state is BranchState.DRILL,
                       on_duty=lambda c: on_duty(c.phone, c.shifts, alarm.branch, when,
                                                 overrides),
                       reply_hint=self.public_url is not None)
        # The timeline says which attempt ran before it lists that attempt's pages.
        claimed = self.store.claim_notifications(
            alarm.id, [item.key for item in planned], now, LEASE_MS,
            timeline={"event": "escalation", "at_ms": now, "attempt": number,
                      "step": current.step_index + 1, "round": current.round + 1,
                      "branch_state": state, "notifications": len(planned)})
        futures = []
        for item, mine in zip(planned, claimed):
            if mine:
                futures.append(self.senders.submit(self._send_claimed, item))
            else:
                log.info("notification %s already claimed: not sent again", item.key)
                self.metrics.notification(str(item.key.channel), "skipped_claimed")
        log.info("alarm %s attempt %d (step %d, round %d, %s): %d notification(s)", alarm.id,
                 number, current.step_index + 1, current.round + 1, state, len(planned))
        finish = (self._finish_attempt, alarm, number, planned, futures,
                  now + wait_after_ms(steps, number))
        if wait_here:
            finish[0](*finish[1:])
        else:
            self.escalators.submit(*finish)

    def _finish_attempt(self, alarm: Alarm, number: int, planned: list[PlannedNotification],
                        futures: list, next_due_ms: int) -> None:
        """Once the attempt's sends are done: a delivery failure if none got through, then
        the next attempt is scheduled (unless someone acknowledged meanwhile)."""
        try:
            wait(futures)
            outcomes = self.store.notification_outcomes([item.key for item in planned])
            if planned and all(o and o.startswith("failed") for o in outcomes):
                self._delivery_failed(alarm, number, planned)
            self.store.finish_attempt(alarm.id, number, next_due_ms)
        except Exception:  # the lease runs out and the attempt is run again (claims hold)
            log.exception("escalation attempt %d of alarm %s failed", number, alarm.id)

    def command_forwarded(self, fields: dict[str, str]) -> None:
        """Hook for the device-command forwarder: a ``resolved`` alarm gets its all-clear."""
        if fields.get("cmd") == "resolved" and fields.get("alarm_id"):
            self.send_all_clear(fields["alarm_id"])

    def followup(self, key_text: str, status: str) -> bool:
        """A page finally failed (from Twilio's status callback): an undelivered SMS is
        replaced by a call at once; an unanswered call (busy, no answer, voicemail) is
        placed again ``site.call_retry_after_s`` later, up to ``site.call_retries`` times;
        only while the alarm is still waiting for someone. Returns whether a call was
        queued or scheduled."""
        alarm_id, attempt_text, phone, channel = key_text.split(":")
        attempt = int(attempt_text)
        alarm = self.store.get_alarm(alarm_id)
        if alarm is None or alarm.state is not AlarmState.RAISED:
            return False
        if channel == Channel.SMS:
            if status not in ("undelivered", "failed"):
                return False
            original, n = attempt, 0
        elif attempt >= FOLLOWUP_CALL_BASE:
            original, n = divmod(attempt - FOLLOWUP_CALL_BASE, 10)
            n += 1
        else:
            original, n = attempt, 1
        if n > self.site.call_retries:
            log.error("alarm %s: %s did not answer %d calls; escalation goes on", alarm_id,
                      phone, n)
            return False
        key = NotificationKey(alarm_id, FOLLOWUP_CALL_BASE + 10 * original + n, phone,
                              Channel.CALL)
        delay_ms = int(self.site.call_retry_after_s * 1000) if n else 0
        log.warning("alarm %s: %s to %s %s; calling %s", alarm_id, channel, phone, status,
                    f"again in {delay_ms / 1000:g} s" if delay_ms else "instead")
        if delay_ms:
            self.store.schedule_call_retry(key, self._now_ms() + delay_ms)
        else:
            self._place_followup_call(alarm, key)
        return True

    def run_call_retries(self) -> int:
        """Place the call retries that are due (timer thread); returns how many."""
        due = self.store.lease_call_retries(self._now_ms(), LEASE_MS)
        for key_text in due:
            alarm_id, attempt_text, phone, _ = key_text.split(":")
            alarm = self.store.get_alarm(alarm_id)
            if alarm is not None and alarm.state is AlarmState.RAISED:
                key = NotificationKey(alarm_id, int(attempt_text), phone, Channel.CALL)
                self._place_followup_call(alarm, key).result()
            self.store.call_retry_done(key_text)
        return len(due)

    def _place_followup_call(self, alarm: Alarm, key: NotificationKey):
        from .messages import call_text
        contact = next((c for c in self.site.contacts if c.phone == key.contact), None) \
            or Contact(key.contact, key.contact, frozenset(), frozenset())
        return self.senders.submit(self._send, PlannedNotification(key, contact,
                                                                   call_text(alarm, self.site)))

    def send_all_clear(self, alarm_id: str) -> int:
        """Text everyone who was reached for this alarm that it is over (resolved or a false
        alarm), once each. Returns how many were queued."""
        alarm = self.store.get_alarm(alarm_id)
        if alarm is None or alarm.state not in (AlarmState.RESOLVED, AlarmState.CANCELLED):
            return 0
        reached: dict[str, str] = {}
        drill = False
        for entry in self.store.timeline(alarm_id):
            if entry["event"] == "notified":
                reached.setdefault(entry["to"], entry["contact"])
            elif entry["event"] == "escalation":
                drill = drill or entry.get("branch_state") == "drill"
        if not reached:
            return 0
        from .messages import all_clear_text
        text = all_clear_text(alarm, self.site, drill=drill)
        by_phone = {c.phone: c for c in self.site.contacts}
        for phone, name in reached.items():
            contact = by_phone.get(phone) or Contact(name, phone, frozenset(), frozenset())
            key = NotificationKey(alarm.id, ALL_CLEAR_ATTEMPT, phone, Channel.SMS)
            self.senders.submit(self._send, PlannedNotification(key, contact, text))
        log.info("alarm %s %s: all-clear to %d contact(s)", alarm.id, alarm.state, len(reached))
        return len(reached)

    def _delivery_failed(self, alarm: Alarm, number: int,
                         planned: list[PlannedNotification]) -> None:
        """Nobody could be reached in this attempt: an alarm of its own. The device that
        pressed shows NOT delivered (use the phone), the dashboard is told, and the
        branch's fallback contacts are texted."""
        log.error("alarm %s attempt %d: NOT DELIVERED to anyone (%d tried)", alarm.id, number,
                  len(planned))
        self.store.add_timeline(alarm.id, "delivery_failed", at_ms=self._now_ms(),
                                attempt=number, tried=len(planned))
        self.store.queue_device_command(alarm.device, "not_delivered", alarm_id=alarm.id)
        tried = {item.contact.phone for item in planned}
        fallback = [c for c in self.site.contacts if alarm.branch in c.branches
                    and FALLBACK_ROLE in c.roles and c.phone not in tried]
        text = ("HAVEN could not reach anyone for: "
                + planned[0].text.removeprefix("HAVEN ").removeprefix("DRILL HAVEN "))
        for contact in fallback:
            key = NotificationKey(alarm.id, FALLBACK_ATTEMPT_BASE + number, contact.phone,
                                  Channel.SMS)
            self.senders.submit(self._send, PlannedNotification(key, contact, text[:300]))

    def _send(self, item: PlannedNotification) -> Delivery | None:
        """Claim, send, record. Runs on a sender thread; never raises."""
        try:
            if not self.store.claim_notification(item.key, self._now_ms(), LEASE_MS):
                log.info("notification %s already claimed: not sent again", item.key)
                self.metrics.notification(str(item.key.channel), "skipped_claimed")
                return None
        except Exception:
            log.exception("claiming %s failed", item.key)
            return None
        return self._send_claimed(item)

    def _send_claimed(self, item: PlannedNotification) -> Delivery | None:
        """Send a notification this worker has claimed, and record the outcome. Runs on a
        sender thread; never raises."""
        try:
            delivery = self._deliver(item)
            self.store.record_notification(item.key, item.contact.name, delivery,
                                           self._now_ms())
            self.metrics.notification(str(item.key.channel), delivery_outcome(delivery))
            if delivery.ok:
                log.info("%s to %s for alarm %s: accepted (%s)", item.key.channel,
                         item.contact.name, item.key.alarm_id, delivery.sid)
            else:
                log.error("%s to %s for alarm %s FAILED (%s, code %s, %s)", item.key.channel,
                          item.contact.name, item.key.alarm_id, delivery.error, delivery.code,
                          "retryable" if delivery.retryable else "permanent")
            return delivery
        except Exception:  # a sender thread must not die silently
            log.exception("sending %s failed", item.key)
            self.metrics.notification(str(item.key.channel), "error")
            return None

    def _deliver(self, item: PlannedNotification) -> Delivery:
        """Send once, and again after a short, growing, jittered pause while the failure is
        retryable and another try still fits in the claim's lease (so no other worker can
        take the claim over meanwhile). Later attempts of the policy page again anyway."""
        started, pause = time.monotonic(), RETRY_FIRST_S
        status_url = (f"{self.public_url}/twilio/status?key={quote(str(item.key), safe='')}"
                      if self.public_url else None)
        while True:
            if item.key.channel is Channel.CALL:
                voice_url = (f"{self.public_url}/twilio/voice/say?alarm={item.key.alarm_id}"
                             if self.public_url else None)
                delivery = self.notifier.place_call(item.contact.phone, item.text,
                                                    voice_url=voice_url, status_url=status_url)
            else:
                delivery = self.notifier.send_sms(item.contact.phone, item.text,
                                                  status_url=status_url)
            budget_s = LEASE_MS / 1000 * 0.9 - (time.monotonic() - started) - TWILIO_TIMEOUT_S
            if delivery.ok or not delivery.retryable or pause > budget_s:
                return delivery
            log.warning("%s to %s for alarm %s: %s; retrying in %.1f s", item.key.channel,
                        item.contact.name, item.key.alarm_id, delivery.error, pause)
            time.sleep(pause * random.uniform(0.5, 1.0))
            pause *= 2

    def _status(self, topic: str, payload: bytes, retained: bool = False) -> Outcome:
        msg = decode_status(topic, payload, topics=self.topics)
        if msg.device not in self.site.devices:
            return self._reject(topic, f"topic {topic}: field 'device': {msg.device!r} is not "
                                       f"in the site config {self.site.source}")
        health = {} if msg.health is None else msg.health.to_obj()
        if msg.health is not None and not retained:
            # Only a live heartbeat proves the device is alive now: a retained one replayed
            # after a hub restart must not hide a device that died with the broker.
            health["heartbeat_ms"] = self._now_ms()
        self.store.set_device_status(msg.device, msg.state, msg.at or self._now_ms(),
                                     msg.firmware, **health)
        return Outcome.STATUS

    def _event(self, topic: str, payload: bytes) -> Outcome:
        msg = decode_event(topic, payload, topics=self.topics)
        if msg.device not in self.site.devices:
            return self._reject(topic, f"topic {topic}: field 'device': {msg.device!r} is not "
                                       f"in the site config {self.site.source}")
        now = self._now_ms()
        if msg.event == EVENT_CANCEL:
            alarm = self.store.get_alarm(msg.alarm_id)
            if alarm is None or alarm.device != msg.device:
                return self._reject(topic, f"topic {topic}: field 'alarm_id': "
                                           f"{msg.alarm_id!r} is not an alarm of {msg.device}")
            kind = self.site.kinds.get(alarm.kind)
            try:
                self.store.transition(alarm.id, AlarmEvent.CANCEL_DEVICE, by=msg.device,
                                      now_ms=now, cancel_window_ms=int(
                                          (kind.cancel_window_s if kind else 0) * 1000))
            except IllegalTransition as exc:
                log.warning("cancel from %s refused: %s", msg.device, exc)
                self.store.add_timeline(alarm.id, "cancel_refused", at_ms=now, by=msg.device,
                                        reason=str(exc))
                return Outcome.EVENT
            log.info("alarm %s cancelled from device %s", alarm.id, msg.device)
        elif msg.event == EVENT_CHECKIN:
            self.store.update_device(msg.device, "checkin", checkin_ms=now)
            self.store.r.hset(f"{self.store.prefix}:checkin:{msg.device}", "answered_ms", now)
        elif msg.event == EVENT_SELFTEST:
            self.store.update_device(msg.device, "selftest", selftest_ms=now,
                                     selftest_ok=int(bool(msg.ok)), selftest_detail=msg.detail)
            if not msg.ok:
                log.warning("device %s failed its self-test: %s", msg.device, msg.detail)
        elif msg.event == EVENT_SAFE_ROOM_LEFT:
            self.store.update_device(msg.device, "safe_room_left", door_opened_ms=now)
            for alarm in self.store.active_alarms():
                if alarm.device == msg.device and alarm.kind == "safe_room":
                    self.store.add_timeline(alarm.id, "safe_room_left", at_ms=now)
        return Outcome.EVENT
