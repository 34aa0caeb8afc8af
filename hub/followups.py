"""After the pages: follow-ups of failed pages, the all-clear, and delivery failure.

Part of :class:`hub.service.AlarmService` (a mixin sharing its ``store``, ``site``,
``senders`` and clock). Each follow-up has its own notification key (attempt numbers far
above any policy's), so it is sent at most once like any page:

- an SMS that ends undelivered/failed is replaced by a call at once;
- an unanswered call (busy, no answer, voicemail) is placed again
  ``site.call_retry_after_s`` later, up to ``site.call_retries`` times, from a Redis
  sorted set any worker's timer leases;
- when nobody of an attempt could be reached, the device shows NOT delivered and the
  branch's ``fallback`` contacts are texted;
- a resolved or cancelled alarm's all-clear goes to everyone who was reached.
"""

from __future__ import annotations

import logging

from .escalation import PlannedNotification
from .messages import call_text
from .model import Alarm, AlarmState, Channel, NotificationKey
from .sending import LEASE_MS
from .site import Contact

log = logging.getLogger("haven.hub")

#: Paged when every notification of an attempt failed (Twilio down, numbers dead...).
FALLBACK_ROLE = "fallback"
#: Fallback pages get their own attempt numbers, apart from the policy's.
FALLBACK_ATTEMPT_BASE = 1_000_000
#: The all-clear's attempt number in notification keys (sent at most once per contact).
ALL_CLEAR_ATTEMPT = 2_000_000
#: Calls placed because a page failed: attempt numbers BASE + 10 x original attempt + n,
#: n = 0 for the call replacing an undelivered SMS, 1.. for each retry of an unanswered call.
FOLLOWUP_CALL_BASE = 3_000_000


class FollowupMixin:
    """Follow-up calls, call retries, the all-clear and delivery failure."""

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
        drill = alarm.drill  # its own, not its branch's (hub.drill)
        for entry in self.store.timeline(alarm_id):
            if entry["event"] == "notified":
                reached.setdefault(entry["to"], entry["contact"])
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
