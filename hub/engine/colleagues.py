"""Colleagues' devices alert and answer (issue 18, section 1): the hub's side.

The nearest help is usually a colleague two aisles away wearing a Haven button. When
an ``assist`` or ``emergency`` is raised, each colleague's device at the branch that can
answer (hub.core.colleagues.devices_to_alert: on duty, online, firmware 0.5 on) is sent
``alert`` with the kind and the room (device.protocol). The device shows it silently
(device.feedback ALERT: vibration and LED, never the buzzer). A press there is the
answer "I'm responding" (a ``responding`` event): :meth:`Colleagues.answer`
acknowledges the alarm as the device's contact, so the device that pressed is told
``acknowledged`` (help is coming) and everyone reached is texted who is responding
(hub.engine.followups) - the alerted contacts too, because the ``alerted`` timeline
entry counts as reaching them. When the alarm is acknowledged (by a device, an SMS
reply, a keypress or the dashboard) or ends, :meth:`Colleagues.command_forwarded`
clears the alert on every alerted device: ``answered`` where it answered, else
``acknowledged`` or ``closed``.

Wiring: :class:`Colleagues` is given the site and the store (and the clock); the
intake calls :meth:`~Colleagues.alert` for each new alarm once its pages have left and
the presser has heard ``received`` (the escalator too, when it runs an attempt 0 again);
the device events call :meth:`~Colleagues.answer`;
the service's device-command forwarder hook calls :meth:`~Colleagues.command_forwarded`.
Commands travel through the store's ``device-commands`` stream like every other device
command (hub.engine.commands).

Timeline entries (the alarm's): ``alerted`` (``device``, ``to`` = the contact's phone,
``contact`` = their name) and ``responded`` (``device``, ``by`` = the contact's name).
The alerts go once per alarm (hub.store.devices ``alert_once``). A worker that dies
between raising the alarm and queueing them leaves its attempt 0 unfinished; the worker
that runs that attempt again when its lease runs out (hub.engine.escalator) alerts
them, a few seconds late.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Mapping, Sequence

from device.protocol import CLEAR_ACKNOWLEDGED, CLEAR_ANSWERED, CLEAR_CLOSED, CMD_ALERT, \
    CMD_ALERT_CLEAR

from hub.core.colleagues import AlertTarget, candidates, devices_to_alert
from hub.core.lifecycle import AlarmEvent, IllegalTransition
from hub.core.model import Alarm, AlarmState
from hub.core.schedule import Override
from hub.core.site import Site
from hub.store import Store

log = logging.getLogger("haven.hub")


class Colleagues:
    """Alerts colleagues' devices, takes their answers, clears their alerts. ``clock``
    returns Unix seconds."""

    def __init__(self, site: Site, store: Store, *, clock: Callable[[], float] = time.time):
        self.site, self.store, self.clock = site, store, clock

    def alert(self, alarm: Alarm, overrides: Sequence[Override]) -> tuple[AlertTarget, ...]:
        """Queue ``alert`` for each device hub.core.colleagues.devices_to_alert picks
        (``overrides``: the branch's on/off-duty overrides in force), with an ``alerted``
        timeline entry each, in one round trip (after one reading the statuses). Returns
        the targets."""
        ids = candidates(self.site, alarm)
        if not ids:
            return ()
        now_ms = int(self.clock() * 1000)
        targets = devices_to_alert(self.site, alarm, self.store.devices.device_statuses(ids),
                                   overrides, now_ms)
        if not targets:
            log.info("alarm %s: no colleague's device to alert at %s", alarm.id, alarm.branch)
            return ()
        command = {"cmd": CMD_ALERT, "alarm_id": alarm.id, "kind": alarm.kind,
                   "room": alarm.room}
        if alarm.drill:
            command["drill"] = "1"
        if not self.store.devices.alert_once(
                alarm.id, now_ms, [{"device": t.device, **command} for t in targets],
                [{"event": "alerted", "at_ms": now_ms, "device": t.device,
                  "to": t.contact.phone, "contact": t.contact.name} for t in targets]):
            return ()  # alerted already, by the worker that raised it
        log.info("alarm %s: alerting %d colleague device(s): %s", alarm.id, len(targets),
                 ", ".join(t.device for t in targets))
        return targets

    def answer(self, device_id: str, alarm_id: str, now_ms: int) -> str | None:
        """``device_id``'s holder answers the alert for ``alarm_id``: "I'm responding".

        A raised alarm is acknowledged as the device's contact (the presser's device hears
        ``acknowledged``; the texts and the other alerts follow from the forwarder's hook,
        :meth:`command_forwarded`). One acknowledged already (someone was quicker) records
        this answer too and tells the device ``answered``; one that ended tells it
        ``closed``. Returns ``None``, or the problem with the message (for the
        rejected-messages log)."""
        device = self.site.devices[device_id]
        alarm = self.store.get_alarm(alarm_id)
        if alarm is None or alarm.branch != device.branch_id:
            return f"{alarm_id!r} is not an alarm of branch {device.branch_id!r}"
        if device.contact is None:
            return (f"device {device_id!r} names no contact in the site config "
                    f"{self.site.source}, so nobody can respond from it; add "
                    "contact = \"<phone>\" to its [[device]]")
        contact = self.site.contact(device.contact)
        if alarm.state.active:
            self.store.add_timeline(alarm_id, "responded", at_ms=now_ms, device=device_id,
                                    by=contact.name)
        if alarm.state is AlarmState.RAISED:
            try:
                self.store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by=contact.name,
                                      now_ms=now_ms)
                log.info("alarm %s acknowledged from device %s: %s is responding", alarm_id,
                         device_id, contact.name)
                return None
            except IllegalTransition:  # acknowledged or closed meanwhile
                alarm = self.store.get_alarm(alarm_id)
        reason = CLEAR_ANSWERED if alarm.state is AlarmState.ACKNOWLEDGED else CLEAR_CLOSED
        self.store.devices.queue_device_commands([{"device": device_id, "cmd": CMD_ALERT_CLEAR,
                                                   "alarm_id": alarm_id, "reason": reason}])
        log.info("alarm %s is %s: %s answered from %s too", alarm_id, alarm.state,
                 contact.name, device_id)
        return None

    def command_forwarded(self, fields: Mapping[str, str]) -> int:
        """The forwarder sent a device command (``fields`` as queued): after
        ``acknowledged`` every alerted device is cleared (``answered`` where it answered,
        else ``acknowledged``); after ``resolved`` (resolved or cancelled) of an alarm
        nobody had acknowledged, ``closed``. Returns how many clears were queued."""
        cmd, alarm_id = fields.get("cmd"), fields.get("alarm_id")
        if cmd not in ("acknowledged", "resolved") or not alarm_id:
            return 0
        timeline = self.store.timeline(alarm_id)
        alerted = list(dict.fromkeys(e["device"] for e in timeline
                                     if e.get("event") == "alerted"))
        if not alerted:
            return 0
        if cmd == "acknowledged":
            answered = {e.get("device") for e in timeline if e.get("event") == "responded"}
            reasons = {d: CLEAR_ANSWERED if d in answered else CLEAR_ACKNOWLEDGED
                       for d in alerted}
        else:
            alarm = self.store.get_alarm(alarm_id)
            if alarm is None or alarm.acknowledged_at_ms is not None:
                return 0  # cleared when it was acknowledged
            reasons = {d: CLEAR_CLOSED for d in alerted}
        self.store.devices.queue_device_commands(
            [{"device": d, "cmd": CMD_ALERT_CLEAR, "alarm_id": alarm_id, "reason": reason}
             for d, reason in reasons.items()])
        return len(reasons)
