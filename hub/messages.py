"""Message text for people: short, plain, no links (carriers filter them).

Pure functions of an alarm and the site config; the first SMS aims to fit one
GSM-7 segment (160 characters).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .model import Alarm
from .site import Site

if TYPE_CHECKING:
    from .supervision import TroubleNotice

SMS_SEGMENT_CHARS = 160


def where(alarm: Alarm, site: Site) -> str:
    """``"Main Library, Circulation Desk"`` (with the holder of a worn device)."""
    branch = site.branches[alarm.branch]
    room = branch.room(alarm.room)
    text = f"{branch.name}, {room.name if room else alarm.room}"
    device = site.devices.get(alarm.device)
    if device is not None and device.holder:
        text += f" ({device.holder})"
    return text


def sms_text(alarm: Alarm, site: Site, *, drill: bool = False, reply_hint: bool = False) -> str:
    """The alarm SMS: kind, branch, room, local time of receipt, short reference, and
    with ``reply_hint`` (replies reach the dashboard) how to acknowledge."""
    branch = site.branches[alarm.branch]
    local = datetime.fromtimestamp(alarm.received_at_ms / 1000, ZoneInfo(branch.timezone))
    label = site.kinds[alarm.kind].label
    return (f"{'DRILL ' if drill else ''}HAVEN {label}: {where(alarm, site)}. "
            f"Alarm at {local:%H:%M}. Ref {alarm.id[:8]}"
            + (". Reply 1 if you are responding." if reply_hint else ""))


def call_text(alarm: Alarm, site: Site, *, drill: bool = False) -> str:
    """What a voice call says (twice): plain words, no reference codes."""
    label = site.kinds[alarm.kind].label
    said = (f"{'This is a drill. ' if drill else ''}Haven alarm. {label}. "
            f"{where(alarm, site)}.")
    return f"{said} I repeat. {said}"


def all_clear_text(alarm: Alarm, site: Site, *, drill: bool = False) -> str:
    """The all-clear for everyone who was paged: what, where, who closed it and why."""
    kind = site.kinds.get(alarm.kind)
    label = kind.label if kind else alarm.kind
    try:
        place = where(alarm, site)
    except KeyError:
        place = f"{alarm.branch}, {alarm.room}"
    verdict = "cancelled" if alarm.state == "cancelled" else "resolved"
    reason = f": {alarm.reason}" if alarm.reason else ""
    return (f"{'DRILL ' if drill else ''}HAVEN all clear: {label} at {place} {verdict} by "
            f"{alarm.closed_by or 'an operator'}{reason}. No need to come."[:320])


TROUBLE_WORDS = {"offline": "is OFFLINE (no heartbeat): it cannot raise alarms",
                 "never_seen": "has never connected",
                 "low_battery": "has a LOW BATTERY",
                 "outbox_backlog": "has alarms stuck in its outbox (not reaching the hub)",
                 "selftest_failed": "FAILED its self-test"}


def trouble_text(device_id: str, trouble: str, raised: bool, site: Site) -> str:
    """The IT contacts' SMS for a device trouble, or its all-clear."""
    place = site.locate(device_id)
    where_text = f"{place[0].name}, {place[1].name}" if place else "unknown place"
    if raised:
        return f"HAVEN device {device_id} ({where_text}) {TROUBLE_WORDS.get(trouble, trouble)}."
    return f"HAVEN all clear: device {device_id} ({where_text}) {trouble.replace('_', ' ')} resolved."


#: Short words for a trouble in a text listing several devices.
TROUBLE_LABELS = {"offline": "OFFLINE (no heartbeat: cannot raise alarms)",
                  "never_seen": "never connected",
                  "low_battery": "LOW BATTERY",
                  "outbox_backlog": "alarms stuck in the outbox (not reaching the hub)",
                  "selftest_failed": "FAILED the self-test"}
#: The longest trouble text, in characters (4 SMS segments); devices past it are counted.
TROUBLE_TEXT_MAX = 600
_MORE = " And {} more: see the dashboard."


def trouble_batch_text(branch_id: str, notices: Sequence["TroubleNotice"], site: Site) -> str:
    """One text for a branch's trouble changes (oldest first): the single-change text for
    one; else the changes grouped by trouble, raised before cleared, each device with its
    room, devices past ``TROUBLE_TEXT_MAX`` characters counted, not named."""
    if len(notices) == 1:
        n = notices[0]
        return trouble_text(n.device_id, str(n.trouble), n.raised, site)
    branch = site.branches.get(branch_id)
    groups: dict[tuple[bool, str], list[str]] = {}
    for n in sorted(notices, key=lambda n: not n.raised):  # stable: oldest first in each
        place = site.locate(n.device_id)
        name = f"{n.device_id} ({place[1].name})" if place else n.device_id
        devices = groups.setdefault((n.raised, str(n.trouble)), [])
        if name not in devices:
            devices.append(name)
    text, left = f"HAVEN devices at {branch.name if branch else branch_id}:", 0
    for (raised, trouble), devices in groups.items():
        group = (f" {TROUBLE_LABELS.get(trouble, trouble)}:" if raised
                 else f" all clear ({trouble.replace('_', ' ')}):")
        named = 0
        for name in devices:
            piece = f"{',' if named else ''} {name}"
            if len(text) + len(group) + len(piece) > TROUBLE_TEXT_MAX - len(_MORE) - 5:
                left += 1
            else:
                group, named = group + piece, named + 1
        if named:
            text += group + "."
    return text + (_MORE.format(left) if left else "")


def broker_text(*, reachable: bool) -> str:
    """The IT text when the hub loses its MQTT broker, or has it back."""
    if reachable:
        return "HAVEN all clear: the hub reaches its MQTT broker again; alarms get through."
    return ("HAVEN: the hub cannot reach its MQTT broker (mosquitto): no alarm from any "
            "device gets through. The devices are not at fault; check the broker host.")
