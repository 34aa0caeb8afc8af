"""Who is on shift, and the state of a branch: pure functions, ``now`` passed in.

A contact's ``on_duty`` list in the site file names shifts in the branch's own
time zone::

    on_duty = ["westside Mon-Fri 12:00-21:00", "westside Sat,Sun 10:00-17:00",
               "main daily 08:00-20:00", "main Fri 22:00-06:00"]

Days are ``Mon``..``Sun`` (any case), ranges (``Mon-Fri``; ``Fri-Mon`` wraps
over the weekend), lists (``Sat,Sun``) or ``daily``. Hours are local wall-clock
``HH:MM-HH:MM``, start inclusive and end exclusive; ``24:00`` may end a shift,
and an end before the start runs overnight (``Fri 22:00-06:00`` is Friday 22:00
to Saturday 06:00). Shifts follow the wall clock across DST changes: a
08:00-20:00 shift starts at 08:00 local on both sides of the change.

Units: ``*_ms`` are Unix milliseconds; ``*_min`` are minutes since local midnight.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import NoReturn

from hub.errors import HubError
from hub.core.model import Shelter

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
FORM = ("'<branch> <days> <HH:MM>-<HH:MM>', e.g. 'westside Mon-Fri 12:00-21:00'; days are "
        "Mon..Sun, a range (Mon-Fri, Fri-Mon), a list (Sat,Sun) or daily; times are 00:00 "
        "to 23:59 (an end may be 24:00) and an end before the start runs overnight")
_SHAPE = re.compile(r"^\s*(\S+)\s+(.+?)\s+(\S+?)\s*-\s*(\S+)\s*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ScheduleError(HubError, ValueError):
    """A shift text that cannot be read; the message quotes it and says what is accepted."""


@dataclass(frozen=True)
class Shift:
    """Hours on duty at one branch, on some weekdays, in that branch's zone.

    ``days`` are weekdays a shift *starts* on (0 = Monday .. 6 = Sunday);
    ``start_min`` / ``end_min`` are minutes since local midnight, start
    inclusive, end exclusive (``end_min`` may be 1440 for 24:00). An overnight
    shift has ``end_min < start_min``. Example:
    ``Shift("main", frozenset({4}), 22 * 60, 6 * 60, "America/Los_Angeles")``.
    """

    branch: str
    days: frozenset[int]
    start_min: int
    end_min: int
    timezone: str

    def covers(self, now_utc: datetime) -> bool:
        """Whether the shift is on at ``now_utc`` (an aware datetime, any offset)."""
        local = _aware(now_utc).astimezone(zoneinfo.ZoneInfo(self.timezone))
        minute, day = local.hour * 60 + local.minute, local.weekday()
        if self.start_min < self.end_min:
            return day in self.days and self.start_min <= minute < self.end_min
        return ((day in self.days and minute >= self.start_min)
                or ((day - 1) % 7 in self.days and minute < self.end_min))


@dataclass(frozen=True)
class Override:
    """An ad-hoc change from the dashboard: ``contact`` (E.164 phone) is on or off
    duty at ``branch`` until ``until_ms`` (Unix ms, exclusive), whatever the schedule."""

    contact: str
    branch: str
    on_duty: bool
    until_ms: int


class BranchState(StrEnum):
    """How a branch is run right now; it chooses who an alarm pages.

    DRILL outranks everything (the real flow runs, messages say DRILL); then
    LONE_WORKER (one person, or nobody on the schedule); else STAFFED.
    """

    STAFFED = "staffed"
    LONE_WORKER = "lone_worker"
    DRILL = "drill"


@dataclass(frozen=True)
class Switches:
    """Dashboard switches of one branch. ``drill_until_ms``: Unix ms a drill ends
    (exclusive), ``None`` for no drill; ``lone_worker``: forced on or off, ``None``
    to follow the schedule; ``by``: who last set them, for the record. ``shelters``: the
    safe rooms staff shelter in now, read from the same branch hash (pages to responders
    name them)."""

    drill_until_ms: int | None = None
    lone_worker: bool | None = None
    by: str | None = None
    shelters: tuple[Shelter, ...] = ()


def parse_shift(text: str, branch_timezones: Mapping[str, str]) -> Shift:
    """Read one ``on_duty`` entry; ``branch_timezones`` maps branch id to IANA zone.

    >>> parse_shift("main Fri 22:00-06:00", {"main": "America/Los_Angeles"}).end_min
    360
    """
    if not isinstance(text, str):
        raise ScheduleError(f"shift {text!r}: must be a string: write {FORM}")
    m = _SHAPE.match(text)
    if m is None:
        _fail(text, "not a shift")
    branch, days_text, start_text, end_text = m.groups()
    if branch not in branch_timezones:
        raise ScheduleError(f"shift {text!r}: unknown branch {branch!r}; "
                            f"known: {', '.join(branch_timezones) or 'none'}")
    tz = branch_timezones[branch]
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"shift {text!r}: branch {branch!r} has time zone {tz!r}, "
                            "which is not a known IANA zone (e.g. \"America/Chicago\")") from None
    days = _days(text, days_text)
    start, end = _minute(text, start_text, "start"), _minute(text, end_text, "end")
    if start == MINUTES_PER_DAY:
        _fail(text, "a shift cannot start at 24:00; start it at 00:00 the next day")
    if start == end:
        _fail(text, f"start and end are both {start_text}; for all day write 00:00-24:00")
    return Shift(branch, days, start, end, tz)


def on_duty(contact_phone: str, shifts: Sequence[Shift], branch: str, now_utc: datetime,
            overrides: Sequence[Override] = ()) -> bool:
    """Whether the contact is on duty at ``branch`` at ``now_utc`` (aware).

    ``shifts`` are all of this contact's shifts. An override for this contact
    and branch that is in force (now < ``until_ms``) wins; when several are,
    the last in ``overrides`` (the latest set) wins. Otherwise a contact with
    no shifts at all is always on duty (police dispatch, a 24/7 security
    desk); one with shifts is on duty only while a shift at ``branch`` covers now.
    """
    now_ms = (_aware(now_utc) - _EPOCH) // timedelta(milliseconds=1)
    for o in reversed(overrides):
        if o.contact == contact_phone and o.branch == branch and now_ms < o.until_ms:
            return o.on_duty
    if not shifts:
        return True
    return any(s.branch == branch and s.covers(now_utc) for s in shifts)


def drill_in_force(switches: Switches, now_ms: int) -> bool:
    """Whether the branch runs a drill at ``now_ms`` (Unix ms): ``now_ms < drill_until_ms``.
    An alarm raised then is a drill alarm for good (``Alarm.drill``, hub.core.drill); the raise
    script in hub.store.alarms applies the same rule inside Redis."""
    return switches.drill_until_ms is not None and now_ms < switches.drill_until_ms


def branch_state(staff_on_duty: int, switches: Switches, now_ms: int) -> BranchState:
    """The branch's state at ``now_ms`` (Unix ms) with ``staff_on_duty`` on shift.

    A drill is in force while ``now_ms < drill_until_ms``. A ``lone_worker``
    switch decides next; if it is ``None``, one *or zero* staff on duty is
    LONE_WORKER: a press with nobody scheduled means the branch is closed or
    the schedule is missing, yet someone is there, and nobody else can help.
    Failing toward LONE_WORKER pages more, never fewer.

    >>> branch_state(1, Switches(), 0)
    <BranchState.LONE_WORKER: 'lone_worker'>
    """
    if staff_on_duty < 0:
        raise ValueError(f"staff_on_duty is {staff_on_duty}: count staff on duty, 0 or more")
    if drill_in_force(switches, now_ms):
        return BranchState.DRILL
    lone = switches.lone_worker if switches.lone_worker is not None else staff_on_duty <= 1
    return BranchState.LONE_WORKER if lone else BranchState.STAFFED


# --- helpers -----------------------------------------------------------------

def _fail(text: str, problem: str) -> NoReturn:
    raise ScheduleError(f"shift {text!r}: {problem}; write {FORM}")


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"{now.isoformat()} has no time zone; pass an aware datetime, "
                         "e.g. datetime.now(timezone.utc)")
    return now


def _day(text: str, name: str) -> int:
    try:
        return DAY_NAMES.index(name.lower())
    except ValueError:
        _fail(text, f"unknown day {name!r}")


def _days(text: str, days_text: str) -> frozenset[int]:
    compact = re.sub(r"\s+", "", days_text)
    if compact.lower() == "daily":
        return frozenset(range(7))
    days: set[int] = set()
    for item in compact.split(","):
        first, dash, last = item.partition("-")
        a = _day(text, first)
        b = _day(text, last) if dash else a
        if dash and a == b:
            _fail(text, f"{item!r} is ambiguous; write {first!r} for one day or daily")
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _minute(text: str, hhmm: str, which: str) -> int:
    m = _TIME.match(hhmm)
    if m is None:
        _fail(text, f"{which} time {hhmm!r} is not HH:MM")
    hours, minutes = int(m.group(1)), int(m.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and minutes):
        _fail(text, f"{which} time {hhmm!r} is not a time of day (00:00 to 24:00)")
    return hours * 60 + minutes
