"""The escalation planner: which notifications an alarm's attempt N sends. Pure.

A policy (a kind's steps, see :class:`hub.site.Step`) unrolls into numbered
attempts: each step runs ``repeat`` times, ``wait_s`` apart, then the next step
starts; the last step repeats until a person acknowledges. Attempt numbers are
part of every notification's idempotency key ``(alarm, attempt, contact,
channel)``, so re-running an attempt after a crash sends only what had not
gone out.

Who is paged in a step: the contacts of the alarm's branch holding one of the
step's roles; a step naming the ``staff`` role skips every contact off duty
(``on_duty``), whatever other role they hold. In a **drill** nobody holding the
``police`` role is ever called: the branch's ``drill`` contacts are paged in
their place, and every message starts with DRILL. Calls are placed before texts
(a ringing phone gets attention first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .messages import call_text, sms_text
from .model import Alarm, Channel, NotificationKey
from .site import Contact, Site, Step

#: Roles that make a step a shift step: it pages only contacts on duty, for any role.
SHIFT_ROLES = frozenset({"staff"})
POLICE_ROLE, DRILL_ROLE = "police", "drill"


@dataclass(frozen=True)
class Attempt:
    number: int        # 0, 1, 2 ... in the order attempts run
    step_index: int    # which step of the policy
    round: int         # which repetition of that step (0-based)
    step: Step


@dataclass(frozen=True)
class PlannedNotification:
    key: NotificationKey
    contact: Contact
    text: str          # the SMS body, or what the call says


def attempt(steps: tuple[Step, ...], number: int) -> Attempt:
    """Attempt ``number`` of a policy; past the end, the last step again."""
    if not steps:
        raise ValueError("a policy without steps has no attempts")
    n = number
    for index, step in enumerate(steps):
        if n < step.repeat or index == len(steps) - 1:
            return Attempt(number, index, n, step)
        n -= step.repeat
    raise AssertionError("unreachable")


def recipients(site: Site, alarm: Alarm, step: Step, *, drill: bool,
               on_duty: Callable[[Contact], bool]) -> list[Contact]:
    """The contacts this step pages for ``alarm``, in config order.

    A step naming a shift role (``staff``) pages the people at work: a contact off
    duty (``on_duty`` False, by their own schedule or an override) is skipped whatever
    other role they hold, for every alarm kind (Sam Lee, staff and manager, is not
    woken at 02:11 for a missed check-in). A step naming no shift role pages its
    roles' holders on duty or not (police dispatch, a 24/7 security desk)."""
    roles = set(step.notify)
    shift_step = bool(roles & SHIFT_ROLES)
    if drill and POLICE_ROLE in roles:
        roles = (roles - {POLICE_ROLE}) | {DRILL_ROLE}
    chosen = []
    for contact in site.contacts:
        if alarm.branch not in contact.branches:
            continue
        held = roles & contact.roles
        if drill and POLICE_ROLE in contact.roles:
            continue  # a drill never calls the police, whatever else they hold
        if not held:
            continue
        if shift_step and not on_duty(contact):
            continue
        chosen.append(contact)
    return chosen


def plan(site: Site, alarm: Alarm, steps: tuple[Step, ...], number: int, *, drill: bool,
         on_duty: Callable[[Contact], bool] = lambda contact: True,
         reply_hint: bool = False) -> list[PlannedNotification]:
    """Every notification of attempt ``number``: calls first, then texts. ``reply_hint``:
    SMS replies reach the dashboard, so texts say how to acknowledge."""
    current = attempt(steps, number)
    contacts = recipients(site, alarm, current.step, drill=drill, on_duty=on_duty)
    sms = sms_text(alarm, site, drill=drill, reply_hint=reply_hint)
    call = call_text(alarm, site, drill=drill)
    planned = []
    for channel in sorted((Channel(c) for c in current.step.channels),
                          key=lambda c: c is not Channel.CALL):
        for contact in contacts:
            planned.append(PlannedNotification(
                NotificationKey(alarm.id, number, contact.phone, channel), contact,
                call if channel is Channel.CALL else sms))
    return planned


def wait_after_ms(steps: tuple[Step, ...], number: int) -> int:
    """Milliseconds from attempt ``number`` to the next one."""
    return int(attempt(steps, number).step.wait_s * 1000)


@dataclass(frozen=True)
class AttemptPlan:
    """One escalation attempt, planned: its pages, its timeline entry, and the wait (ms)
    before the next attempt."""

    number: int
    now: int
    planned: list[PlannedNotification]
    timeline: dict[str, object]
    wait_ms: int
