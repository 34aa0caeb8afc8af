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


def page_ref(alarm_id: str, attempt: int) -> str:
    """The page reference of an alarm's escalation attempt ``attempt`` (0-based):
    ``"86bce38e-2"`` is the second call for help of alarm ``86bce38e...``. Printed in
    every text of that attempt, so a recipient tells a repeat from a duplicate and a hub
    worker taking over a dead one's page can find exactly that text at the provider."""
    return f"{alarm_id[:8]}-{attempt + 1}"


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th`` ... ``11th``, ``12th``, ``13th``, ``21st``."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


_SPOKEN_ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh",
                    "eighth", "ninth", "tenth")


def sms_text(alarm: Alarm, site: Site, *, drill: bool = False, reply_hint: bool = False,
             attempt: int = 0) -> str:
    """The alarm SMS of escalation attempt ``attempt`` (0-based): kind, which call for
    help a repeat is, branch, room, local time of receipt, the page reference
    (:func:`page_ref`), and with ``reply_hint`` (replies reach the dashboard) how to
    acknowledge."""
    branch = site.branches[alarm.branch]
    local = datetime.fromtimestamp(alarm.received_at_ms / 1000, ZoneInfo(branch.timezone))
    label = site.kinds[alarm.kind].label
    repeat = f", {ordinal(attempt + 1)} call for help" if attempt else ""
    return (f"{'DRILL ' if drill else ''}HAVEN {label}{repeat}: {where(alarm, site)}. "
            f"Alarm at {local:%H:%M}. Ref {page_ref(alarm.id, attempt)}"
            + (". Reply 1 if you are responding." if reply_hint else ""))


def call_text(alarm: Alarm, site: Site, *, drill: bool = False, attempt: int = 0) -> str:
    """What a voice call of escalation attempt ``attempt`` says (twice): plain words, no
    reference codes; a repeat says which call for help it is."""
    label = site.kinds[alarm.kind].label
    repeat = ""
    if attempt:
        n = attempt + 1
        repeat = (f"{_SPOKEN_ORDINALS[n - 1].capitalize()} call for help. "
                  if n <= len(_SPOKEN_ORDINALS) else f"Call number {n} for help. ")
    said = (f"{'This is a drill. ' if drill else ''}Haven alarm. {repeat}{label}. "
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


def responding_text(alarm: Alarm, site: Site, *, drill: bool = False) -> str:
    """For everyone else who was paged, once someone acknowledged: who is responding to
    what, where (``"HAVEN: Dana Ortiz is responding to EMERGENCY at Main Library,
    Circulation Desk."``), so they need not each assume another is going."""
    kind = site.kinds.get(alarm.kind)
    label = kind.label if kind else alarm.kind
    try:
        place = where(alarm, site)
    except KeyError:
        place = f"{alarm.branch}, {alarm.room}"
    return (f"{'DRILL ' if drill else ''}HAVEN: {alarm.acknowledged_by or 'someone'} is "
            f"responding to {label} at {place}."[:320])
