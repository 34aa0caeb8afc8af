"""Who is alerted when a colleague presses (issue 18, section 1): pure.

An ``assist`` or ``emergency`` alerts every colleague's device at the branch that can
answer (:func:`devices_to_alert`):

- it is at the alarm's branch, a ``wearable`` or ``wall`` unit, not the one that
  pressed, and not another device of the presser's own contact;
- its ``[[device]]`` names a ``contact`` (hub.config.site), who is on duty there now
  (their shifts and the ad-hoc overrides, hub.core.schedule): a desk unit whose contact
  is off duty is a wall unit in an empty room;
- its last status says ``online`` with firmware that shows alerts
  (device.protocol.supports_alerts): an older firmware is never asked.

The edge that reads the statuses and queues the commands is hub.engine.colleagues.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Sequence

from device.protocol import STATUS_ONLINE, supports_alerts

from hub.core.model import Alarm
from hub.core.schedule import Override, on_duty
from hub.core.site import Contact, Site

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
