"""Message text for people: short, plain, no links (carriers filter them).

Pure functions of an alarm and the site config; the first SMS aims to fit one
GSM-7 segment (160 characters).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from .model import Alarm
from .site import Site

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
            + (". Reply 1 if you are responding." if reply_hint else "")
            + real_hint(drill=drill, reply_hint=reply_hint))


def real_hint(*, drill: bool, reply_hint: bool) -> str:
    """What a drill text adds so a real emergency can leave the drill (hub.drill): only
    when replies reach the dashboard (``reply_hint``). A drill text may take a second
    segment; a real one does not carry this."""
    return " Reply REAL if this is not a drill." if drill and reply_hint else ""


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
