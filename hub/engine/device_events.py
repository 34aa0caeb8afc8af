"""Device statuses (presence), heartbeats (health) and events (cancel, check-in, self-test,
safe-room door) as the hub applies them.

A status sets presence (``online``/``offline``); a heartbeat records readings and the hub
time it was heard (``heartbeat_ms``, which supervision watches) and never changes
presence. Firmware before 0.3 sent its heartbeats as ``online`` statuses with health; they
are still applied as before.

Wiring: :class:`DeviceEvents` is given the site, the store, the follow-ups (a safe-room
door opening tells those coming) and, as keywords, the topics, the service's
:class:`~hub.engine.rejects.Rejects`, the clock and the metrics; the service routes
status, heartbeat and event messages here by topic.
"""

from __future__ import annotations

import logging
from typing import Callable

from device.protocol import (EVENT_CANCEL, EVENT_CHECKIN, EVENT_RESPONDING, EVENT_SAFE_ROOM_LEFT,
                             EVENT_SELFTEST, ProtocolError, Topics, decode_event,
                             decode_heartbeat, decode_status)

from hub.engine.colleagues import Colleagues
from hub.core.lifecycle import AlarmEvent, IllegalTransition
from hub.core.outcome import MessageOutcome
from hub.core.site import Site
from hub.edges.metrics import Metrics
from hub.engine.followups import Followups
from hub.engine.rejects import Rejects
from hub.store import Store

log = logging.getLogger("haven.hub")


class DeviceEvents:
    """Applies device status, heartbeat and event messages. ``clock`` returns Unix seconds."""

    def __init__(self, site: Site, store: Store, followups: Followups, *, topics: Topics,
                 reject: Rejects, clock: Callable[[], float], metrics: Metrics,
                 colleagues: Colleagues | None = None):
        self.site, self.store, self.followups = site, store, followups
        #: Takes a colleague's answer to an alert (None: this hub alerts no one).
        self.colleagues = colleagues
        self.topics, self.reject, self.clock, self.metrics = topics, reject, clock, metrics

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def status(self, topic: str, payload: bytes, retained: bool = False) -> MessageOutcome:
        """One status or heartbeat (by its topic) stored on its own."""
        entry = self._read_entry(topic, payload, retained)
        if isinstance(entry, MessageOutcome):
            return entry
        self.store.devices.set_device_statuses([entry])
        return MessageOutcome.STATUS

    def statuses(self, messages: list[tuple[str, bytes, bool]]) -> list[MessageOutcome]:
        """Status and heartbeat messages ``(topic, payload, retained)`` stored in one round
        trip, in order (the MQTT edge batches them); each bad one is rejected on its own.
        Raises only for an unreachable store, and then stores none of them."""
        outcomes, entries, channels = [], [], []
        for topic, payload, retained in messages:
            try:
                entry = self._read_entry(topic, payload, retained)
            except ProtocolError as exc:
                entry = self.reject(topic, str(exc))
            if isinstance(entry, MessageOutcome):
                outcomes.append(entry)
            else:
                entries.append(entry)
                channels.append("heartbeat" if entry[1] == "" else "status")
                outcomes.append(MessageOutcome.STATUS)
        self.store.devices.set_device_statuses(entries)
        for channel in channels:
            self.metrics.message(channel, MessageOutcome.STATUS)
        return outcomes

    def _read_entry(self, topic: str, payload: bytes, retained: bool):
        """A status or a heartbeat, by its topic, as the store's entry (a heartbeat's
        state is ``""``), or the MessageOutcome of rejecting it. Raises ProtocolError."""
        if topic.endswith("/heartbeat"):
            return self._read_heartbeat(topic, payload)
        return self._read_status(topic, payload, retained)

    def _read_status(self, topic: str, payload: bytes, retained: bool):
        """A status message as the store's (device, state, at_ms, firmware, health) tuple,
        or the MessageOutcome of rejecting it (an unknown device). Raises ProtocolError."""
        msg = decode_status(topic, payload, topics=self.topics)
        if msg.device not in self.site.devices:
            return self._unknown_device(topic, msg.device)
        health: dict = {}
        if msg.health is not None and not retained:
            # Only a live status proves the device is alive now: a retained one replayed
            # after a hub restart must not hide a device that died with the broker. Nor
            # are its readings kept: firmware 0.3 retains the ones it had when it
            # connected, maybe days older than its last heartbeat's.
            health = msg.health.to_obj()
            health["heartbeat_ms"] = self._now_ms()
        return msg.device, msg.state, msg.at or self._now_ms(), msg.firmware, health

    def _read_heartbeat(self, topic: str, payload: bytes):
        """A heartbeat as the store's entry (state ``""``: presence untouched), or the
        MessageOutcome of rejecting it (an unknown device). Raises ProtocolError."""
        msg = decode_heartbeat(topic, payload, topics=self.topics)
        if msg.device not in self.site.devices:
            return self._unknown_device(topic, msg.device)
        health = msg.health.to_obj()
        health["heartbeat_ms"] = self._now_ms()
        return msg.device, "", msg.at, None, health

    def _unknown_device(self, topic: str, device: str) -> MessageOutcome:
        return self.reject(topic, f"topic {topic}: field 'device': {device!r} is not "
                                   f"in the site config {self.site.source}")

    def event(self, topic: str, payload: bytes) -> MessageOutcome:
        msg = decode_event(topic, payload, topics=self.topics)
        if msg.device not in self.site.devices:
            return self._unknown_device(topic, msg.device)
        now = self._now_ms()
        if msg.event == EVENT_CANCEL:
            alarm = self.store.get_alarm(msg.alarm_id)
            if alarm is None or alarm.device != msg.device:
                return self.reject(topic, f"topic {topic}: field 'alarm_id': "
                                           f"{msg.alarm_id!r} is not an alarm of {msg.device}")
            self.store.devices.heard([(msg.device, "cancel_ms", now,  # a press: someone is there
                                       self.site.devices[msg.device].type == "wearable")])
            kind = self.site.kinds.get(alarm.kind)
            try:
                self.store.transition(alarm.id, AlarmEvent.CANCEL_DEVICE, by=msg.device,
                                      now_ms=now, cancel_window_ms=int(
                                          (kind.cancel_window_s if kind else 0) * 1000))
            except IllegalTransition as exc:
                log.warning("cancel from %s refused: %s", msg.device, exc)
                self.store.add_timeline(alarm.id, "cancel_refused", at_ms=now, by=msg.device,
                                        reason=str(exc))
                return MessageOutcome.EVENT
            log.info("alarm %s cancelled from device %s", alarm.id, msg.device)
        elif msg.event == EVENT_CHECKIN:
            self.store.devices.update_device(msg.device, "checkin", checkin_ms=now)
            self.store.devices.answer_checkin(msg.device, now)
        elif msg.event == EVENT_SELFTEST:
            self.store.devices.update_device(msg.device, "selftest", selftest_ms=now,
                                             selftest_ok=int(bool(msg.ok)),
                                             selftest_detail=msg.detail)
            if not msg.ok:
                log.warning("device %s failed its self-test: %s", msg.device, msg.detail)
        elif msg.event == EVENT_RESPONDING:  # "I'm responding" (hub.engine.colleagues)
            problem = self.colleagues.answer(msg.device, msg.alarm_id, now) \
                if self.colleagues else "this hub alerts no colleagues' devices"
            if problem:
                return self.reject(topic, f"topic {topic}: field 'alarm_id': {problem}")
        elif msg.event == EVENT_SAFE_ROOM_LEFT:
            self.store.devices.update_device(msg.device, "safe_room_left", door_opened_ms=now)
            self.followups.safe_room_left(msg.device, msg.at, now)
        return MessageOutcome.EVENT
