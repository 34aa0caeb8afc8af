"""Colleagues' devices alert and answer (issue 18, section 1).

The nearest help is usually a colleague two aisles away wearing a Haven button. When
an ``assist`` or ``emergency`` is raised, every colleague's device at that branch that
can answer is sent ``alert`` (the kind and the room; device.protocol). A device can
answer when all of these hold (:func:`devices_to_alert`, pure):

- it is at the alarm's branch, a ``wearable`` or ``wall`` unit, not the one that
  pressed, and not another device of the presser's own contact;
- its ``[[device]]`` names a ``contact`` (hub.site), who is on duty there now (their
  shifts and the ad-hoc overrides, hub.schedule): a desk unit whose contact is off duty
  is a wall unit in an empty room;
- its last status says ``online`` with firmware that shows alerts
  (device.protocol.supports_alerts): an older firmware is never asked.

The device shows the alert silently (device.feedback ALERT: vibration and LED, never
the buzzer). A press on it is the answer "I'm responding" (a ``responding`` event):
:func:`answer` acknowledges the alarm as the device's contact, so the device that
pressed is told ``acknowledged`` (help is coming) and everyone reached is texted who is
responding (hub.followups) - the alerted contacts too, because the ``alerted`` timeline
entry counts as reaching them. When the alarm is acknowledged (by a device, an SMS
reply, a keypress or the dashboard) or ends, :func:`after_command` clears the alert on
every alerted device: ``answered`` for a device that answered, else ``acknowledged`` or
``closed``.

Wiring (one-line hooks): the intake calls :func:`alert_colleagues` for each new alarm
once its pages have left and the presser has heard ``received``; the device-event
handler calls :func:`answer`; the device-command forwarder's hook calls
:func:`after_command` for each command it forwards. Commands travel through the
store's ``device-commands`` stream like every other device command (hub.commands).

Timeline entries (the alarm's): ``alerted`` (``device``, ``to`` = the contact's phone,
``contact`` = their name) and ``responded`` (``device``, ``by`` = the contact's name).
A worker that dies between raising the alarm and queueing its alerts leaves them
unsent: the pages and the presser's feedback do not depend on them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

from device.protocol import (CLEAR_ACKNOWLEDGED, CLEAR_ANSWERED, CLEAR_CLOSED, CMD_ALERT,
                             CMD_ALERT_CLEAR, STATUS_ONLINE, supports_alerts)

from .lifecycle import AlarmEvent, IllegalTransition
from .model import Alarm, AlarmState
from .schedule import Override, on_duty
from .sitemodel import Contact, Site

log = logging.getLogger("haven.hub")

#: The kinds that alert colleagues' devices (a safe-room shelter, a missed check-in or a
#: welfare concern page people; they do not ask the nearest colleague to come).
ALERT_KINDS = frozenset({"assist", "emergency"})
#: The device types that can show an alert and answer it (a safe-room door cannot).
ALERTED_TYPES = frozenset({"wearable", "wall"})


@dataclass(frozen=True)
class AlertTarget:
    """A device to alert and the contact who answers from it."""

    device: str
    contact: Contact


def candidates(site: Site, alarm: Alarm) -> list[str]:
    """The devices that might be alerted for ``alarm``, before their status and the
    schedule are looked at: same branch, a button type, a contact, not the presser's."""
    if alarm.kind not in ALERT_KINDS:
        return []
    presser = site.devices.get(alarm.device)
    own = presser.contact if presser is not None else None
    return [d.id for d in site.devices.values()
            if d.branch_id == alarm.branch and d.id != alarm.device and d.contact
            and d.type in ALERTED_TYPES and d.contact != own]


def devices_to_alert(site: Site, alarm: Alarm, statuses: Mapping[str, Mapping[str, str]],
                     overrides: Sequence[Override], now_ms: int) -> tuple[AlertTarget, ...]:
    """The devices to send ``alert`` for ``alarm`` (module docstring), in site-file order.
    Pure: ``statuses`` are the devices' stored hashes (``state``, ``firmware``; missing:
    never heard of), ``overrides`` the branch's on/off-duty overrides in force, ``now_ms``
    Unix ms."""
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    targets = []
    for device_id in candidates(site, alarm):
        device = site.devices[device_id]
        contact = site.contact(device.contact)
        status = statuses.get(device_id) or {}
        if status.get("state") != STATUS_ONLINE or not supports_alerts(status.get("firmware")):
            continue
        if not on_duty(contact.phone, contact.shifts, alarm.branch, now, overrides):
            continue
        targets.append(AlertTarget(device_id, contact))
    return tuple(targets)


def alert_colleagues(store, site: Site, alarm: Alarm, overrides: Sequence[Override],
                     now_ms: int) -> tuple[AlertTarget, ...]:
    """Queue ``alert`` for each device :func:`devices_to_alert` picks, with an ``alerted``
    timeline entry each, in one round trip (after one reading the statuses). ``store`` is
    a :class:`hub.store.Store`. Returns the targets."""
    ids = candidates(site, alarm)
    if not ids:
        return ()
    targets = devices_to_alert(site, alarm, store.device_statuses(ids), overrides, now_ms)
    if not targets:
        log.info("alarm %s: no colleague's device to alert at %s", alarm.id, alarm.branch)
        return ()
    command = {"cmd": CMD_ALERT, "alarm_id": alarm.id, "kind": alarm.kind, "room": alarm.room}
    if alarm.drill:
        command["drill"] = "1"
    store.queue_device_commands(
        [{"device": t.device, **command} for t in targets], alarm_id=alarm.id,
        timeline=[{"event": "alerted", "at_ms": now_ms, "device": t.device,
                   "to": t.contact.phone, "contact": t.contact.name} for t in targets])
    log.info("alarm %s: alerting %d colleague device(s): %s", alarm.id, len(targets),
             ", ".join(t.device for t in targets))
    return targets


def answer(store, site: Site, device_id: str, alarm_id: str, now_ms: int) -> str | None:
    """``device_id``'s holder answers the alert for ``alarm_id``: "I'm responding".

    A raised alarm is acknowledged as the device's contact (the presser's device hears
    ``acknowledged``; the texts and the other alerts follow from the forwarder's hook,
    :func:`after_command`). One acknowledged already (someone was quicker) records this
    answer too and tells the device ``answered``; one that ended tells it ``closed``.
    Returns ``None``, or the problem with the message (for the rejected-messages log)."""
    device = site.devices[device_id]
    alarm = store.get_alarm(alarm_id)
    if alarm is None or alarm.branch != device.branch_id:
        return f"{alarm_id!r} is not an alarm of branch {device.branch_id!r}"
    if device.contact is None:
        return (f"device {device_id!r} names no contact in the site config {site.source}, so "
                "nobody can respond from it; add contact = \"<phone>\" to its [[device]]")
    contact = site.contact(device.contact)
    if alarm.state.active:
        store.add_timeline(alarm_id, "responded", at_ms=now_ms, device=device_id,
                           by=contact.name)
    if alarm.state is AlarmState.RAISED:
        try:
            store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by=contact.name, now_ms=now_ms)
            log.info("alarm %s acknowledged from device %s: %s is responding", alarm_id,
                     device_id, contact.name)
            return None
        except IllegalTransition:  # acknowledged or closed meanwhile
            alarm = store.get_alarm(alarm_id)
    reason = CLEAR_ANSWERED if alarm.state is AlarmState.ACKNOWLEDGED else CLEAR_CLOSED
    store.queue_device_commands([{"device": device_id, "cmd": CMD_ALERT_CLEAR,
                                  "alarm_id": alarm_id, "reason": reason}])
    log.info("alarm %s is %s: %s answered from %s too", alarm_id, alarm.state, contact.name,
             device_id)
    return None


def after_command(store, fields: Mapping[str, str]) -> int:
    """The forwarder sent a device command (``fields`` as queued): after ``acknowledged``
    every alerted device is cleared (``answered`` where it answered, else
    ``acknowledged``); after ``resolved`` (resolved or cancelled) of an alarm nobody had
    acknowledged, ``closed``. Returns how many clears were queued."""
    cmd, alarm_id = fields.get("cmd"), fields.get("alarm_id")
    if cmd not in ("acknowledged", "resolved") or not alarm_id:
        return 0
    timeline = store.timeline(alarm_id)
    alerted = list(dict.fromkeys(e["device"] for e in timeline if e.get("event") == "alerted"))
    if not alerted:
        return 0
    if cmd == "acknowledged":
        answered = {e.get("device") for e in timeline if e.get("event") == "responded"}
        reasons = {d: CLEAR_ANSWERED if d in answered else CLEAR_ACKNOWLEDGED for d in alerted}
    else:
        alarm = store.get_alarm(alarm_id)
        if alarm is None or alarm.acknowledged_at_ms is not None:
            return 0  # cleared when it was acknowledged
        reasons = {d: CLEAR_CLOSED for d in alerted}
    store.queue_device_commands([{"device": d, "cmd": CMD_ALERT_CLEAR, "alarm_id": alarm_id,
                                  "reason": reason} for d, reason in reasons.items()])
    return len(reasons)
