"""Message text for people: short and plain.

No links, with one exception: a responder's alarm text ends with a link to the alarm's
floor plan (hub.core.planlink) when IT set HAVEN_PLAN_LINK_* and the room is on a plan. Carriers
filter some texts with links (shared link shorteners above all), so the link is off unless
asked for, goes last (everything needed to act comes before it, even if the link is cut),
is the site's own URL, never a shortener, and goes only to those who come to the place.

Pure functions of an alarm and the site config; the first SMS aims to fit one
GSM-7 segment (160 characters), but safety information (a safe room staff shelter in)
goes in even when it makes the text longer.

Times are the branch's local time with its zone (``11:33 PDT``; spoken: the time alone).
A page says when the button was **pressed** (device clock), and how long ago once it
goes out more than ``LATE_MS`` after the press (an alarm that waited in a device's
outbox, or a later round); a device clock that cannot be right (after the receipt, or a
day before) is not believed: the page gives the receipt time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from hub.core.model import LATE_MS, Alarm, Shelter
from hub.core.site import Site
from hub.core.troubles import TroubleNotice

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


def _local(ms: int, alarm: Alarm, site: Site) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(site.branches[alarm.branch].timezone))


def _age(ms: int, *, spoken: bool = False) -> str:
    """``"10 min"`` / ``"1 h 5 min"`` (spoken: ``"10 minutes"``), whole minutes, at least 1."""
    minutes = max(1, ms // 60_000)
    hours, minutes = divmod(minutes, 60)
    if spoken:
        parts = [f"{n} {unit}{'s' if n != 1 else ''}"
                 for n, unit in ((hours, "hour"), (minutes, "minute")) if n]
    else:
        parts = [f"{n} {unit}" for n, unit in ((hours, "h"), (minutes, "min")) if n]
    return " ".join(parts)


def pressed_words(alarm: Alarm, site: Site, *, now_ms: int | None = None) -> str:
    """``"Pressed 02:03 PST"``, and ``", 10 min ago"`` when ``now_ms`` (when the page goes
    out; default the receipt) is more than ``LATE_MS`` after it. A device clock not
    believed (:attr:`Alarm.press_trusted`): ``"Alarm at 02:13 PST"``, the hub's receipt."""
    at = alarm.told_pressed_ms
    local = _local(at, alarm, site)
    words = f"{'Pressed' if alarm.press_trusted else 'Alarm at'} {local:%H:%M %Z}"
    age = (alarm.received_at_ms if now_ms is None else now_ms) - at
    return words + (f", {_age(age)} ago" if age > LATE_MS else "")


def shelter_words(alarm: Alarm, site: Site, shelters: Sequence[Shelter], *,
                  spoken: bool = False) -> str:
    """``"Staff sheltering in Safe Room since 02:01 PST"`` for the branch's occupied safe rooms
    (``shelters``), leaving out the one ``alarm`` itself is about; ``""`` for none."""
    branch = site.branches[alarm.branch]
    rooms = []
    for shelter in shelters:
        if shelter.alarm_id == alarm.id:
            continue
        room = branch.room(shelter.room)
        since = _local(shelter.since_ms, alarm, site)
        clock = f"{since.hour % 12 or 12}:{since:%M %p}" if spoken else f"{since:%H:%M %Z}"
        rooms.append(f"{room.name if room else shelter.room} since {clock}")
    if not rooms:
        return ""
    return f"Staff {'are ' if spoken else ''}sheltering in {', '.join(rooms)}"


def sms_text(alarm: Alarm, site: Site, *, drill: bool = False, reply_hint: bool = False,
             now_ms: int | None = None, shelters: Sequence[Shelter] = (),
             attempt: int = 0, plan_url: str | None = None) -> str:
    """The alarm SMS of escalation attempt ``attempt`` (0-based): kind, which call for
    help a repeat is, branch, room, local time of the press (:func:`pressed_words`,
    ``now_ms`` being when it is sent), the occupied safe rooms (``shelters``, for
    responders), the page reference (:func:`page_ref`), with ``reply_hint`` (replies
    reach the dashboard) how to acknowledge, and last the floor plan link ``plan_url``
    (for responders; a second segment)."""
    label = site.kinds[alarm.kind].label
    repeat = f", {ordinal(attempt + 1)} call for help" if attempt else ""
    sheltering = shelter_words(alarm, site, shelters)
    text = (f"{'DRILL ' if drill else ''}HAVEN {label}{repeat}: {where(alarm, site)}. "
            f"{pressed_words(alarm, site, now_ms=now_ms)}. "
            f"{sheltering + '. ' if sheltering else ''}Ref {page_ref(alarm.id, attempt)}"
            + (". Reply 1 if you are responding." if reply_hint else "")
            + real_hint(drill=drill, reply_hint=reply_hint))
    return text + (f"{'' if text.endswith('.') else '.'} Plan: {plan_url}" if plan_url else "")


def real_hint(*, drill: bool, reply_hint: bool) -> str:
    """What a drill text adds so a real emergency can leave the drill (hub.core.drill): only
    when replies reach the dashboard (``reply_hint``). A drill text may take a second
    segment; a real one does not carry this."""
    return " Reply REAL if this is not a drill." if drill and reply_hint else ""


def call_text(alarm: Alarm, site: Site, *, drill: bool = False, now_ms: int | None = None,
              shelters: Sequence[Shelter] = (), attempt: int = 0) -> str:
    """What a voice call of escalation attempt ``attempt`` says (twice): plain words, no
    reference codes; a repeat says which call for help it is; how long ago it was pressed
    when that is more than ``LATE_MS`` before ``now_ms``, and the occupied safe rooms
    (``shelters``, for responders)."""
    label = site.kinds[alarm.kind].label
    repeat = ""
    if attempt:
        n = attempt + 1
        repeat = (f"{_SPOKEN_ORDINALS[n - 1].capitalize()} call for help. "
                  if n <= len(_SPOKEN_ORDINALS) else f"Call number {n} for help. ")
    said = (f"{'This is a drill. ' if drill else ''}Haven alarm. {repeat}{label}. "
            f"{where(alarm, site)}.")
    age = (alarm.received_at_ms if now_ms is None else now_ms) - alarm.told_pressed_ms
    if age > LATE_MS:
        said += f" Pressed {_age(age, spoken=True)} ago."
    if sheltering := shelter_words(alarm, site, shelters, spoken=True):
        said += f" {sheltering}."
    return f"{said} I repeat. {said}"


def what_where(alarm: Alarm, site: Site) -> tuple[str, str]:
    """The alarm's kind label and place, for texts sent after its pages (an all-clear, who
    is responding): its ids when the kind, branch or room has left the site config since."""
    kind = site.kinds.get(alarm.kind)
    try:
        place = where(alarm, site)
    except KeyError:
        place = f"{alarm.branch}, {alarm.room}"
    return (kind.label if kind else alarm.kind), place


def all_clear_text(alarm: Alarm, site: Site, *, drill: bool = False) -> str:
    """The all-clear for everyone who was paged: what, where, who closed it and the outcome
    only (an operator's free text - a resolve note, why it was a false alarm - never goes
    out: it may be about people, and police are among those paged)."""
    label, place = what_where(alarm, site)
    verdict = "cancelled" if alarm.state == "cancelled" else "resolved"
    outcome = "false alarm" if alarm.state == "cancelled" else \
        (alarm.reason or "").split(":", 1)[0]  # a resolve's outcome label, never a note
    reason = f": {outcome}" if outcome else ""
    return (f"{'DRILL ' if drill else ''}HAVEN all clear: {label} at {place} {verdict} by "
            f"{alarm.closed_by or 'an operator'}{reason}. No need to come."[:320])


def safe_room_left_text(alarm: Alarm, site: Site, room_id: str, opened_ms: int, *,
                        drill: bool = False, sheltered: bool = True) -> str:
    """For everyone paged for ``alarm``: the door of a safe room of its branch opened at
    ``opened_ms`` (hub clock); with ``sheltered`` (staff were recorded sheltering there)
    they have left the refuge."""
    branch = site.branches[alarm.branch]
    room = branch.room(room_id)
    return (f"{'DRILL ' if drill else ''}HAVEN: {branch.name}: {room.name if room else room_id}"
            f" door opened {_local(opened_ms, alarm, site):%H:%M %Z}"
            f"{': staff have LEFT the safe room' if sheltered else ''}. Ref {alarm.id[:8]}")


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
    label, place = what_where(alarm, site)
    return (f"{'DRILL ' if drill else ''}HAVEN: {alarm.acknowledged_by or 'someone'} is "
            f"responding to {label} at {place}."[:320])


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
