"""The escalation planner: which pages an alarm's attempt N sends. Pure.

A policy (a kind's steps, see :class:`hub.config.site.Step`) unrolls into numbered
attempts: each step runs ``repeat`` times, ``wait_s`` apart, then the next step
starts; the last step repeats until a person acknowledges. Attempt numbers are
part of every page's idempotency key ``(alarm, attempt, contact,
channel)``, so re-running an attempt after a crash sends only what had not
gone out.

Who is paged in a step: the contacts of the alarm's branch holding one of the
step's roles; a step naming the ``staff`` role skips every contact off duty
(``on_duty``), whatever other role they hold. In a **drill** nobody holding the
``police`` role is ever called: the branch's ``drill`` contacts are paged in
their place, and every message starts with DRILL. Calls are placed before texts
(a ringing phone gets attention first).

Responders - the contacts who come to the place (:data:`RESPONDER_ROLES`: police,
security, staff, and the drill contacts standing in for police) - also hear which safe
rooms of the branch staff shelter in, and since when; the others (managers,
supervisors, crisis teams...) get the shorter text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from hub.core.messages import call_text, page_ref, sms_text
from hub.core.model import Alarm, Channel, PageKey, Shelter
from hub.core.site import Contact, Site, Step

#: Attempt numbers from here up are not the policy's: a fallback page of policy attempt n
#: is numbered ``FALLBACK_ATTEMPT_BASE + n``; the follow-ups (hub.engine.followups) have
#: the ranges below. hub.core.pagewords words each range for an operator.
FALLBACK_ATTEMPT_BASE = 1_000_000
#: The all-clear's attempt number in page keys (sent at most once per contact).
ALL_CLEAR_ATTEMPT = 2_000_000
#: Calls placed because a page failed: attempt numbers BASE + 10 x original attempt + n,
#: n = 0 for the call replacing an undelivered SMS, 1.. for each retry of an unanswered call.
FOLLOWUP_CALL_BASE = 3_000_000
#: The "is responding" text's attempt number (sent at most once per contact).
RESPONDING_ATTEMPT = 4_000_000
#: "Staff left the safe room" texts: attempt numbers BASE + the door event's device time
#: (ms) modulo 1,000,000, so a redelivered event is claimed, not sent, again.
SAFE_ROOM_LEFT_BASE = 5_000_000
#: Roles that make a step a shift step: it pages only contacts on duty, for any role.
SHIFT_ROLES = frozenset({"staff"})
POLICE_ROLE, DRILL_ROLE = "police", "drill"
#: Roles of the people who come to the place: their pages name occupied safe rooms.
RESPONDER_ROLES = frozenset({POLICE_ROLE, "security", "staff", DRILL_ROLE})


@dataclass(frozen=True)
class Attempt:
    number: int        # 0, 1, 2 ... in the order attempts run
    step_index: int    # which step of the policy
    round: int         # which repetition of that step (0-based)
    step: Step


@dataclass(frozen=True)
class PlannedPage:
    key: PageKey
    contact: Contact
    text: str          # the SMS body, or what the call says
    #: The page reference printed in ``text`` (hub.core.messages.page_ref), which a worker
    #: taking the page over looks for at the provider; "" when the text has none.
    ref: str = ""
    #: Tried again after a retryable failure while its alarm waits for a person
    #: (hub.engine.pager); the all-clear, sent after the alarm ended, is not.
    retry: bool = True
    #: Earlier tries that failed retryably (the backoff grows with them).
    tries: int = 0


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


def responder(contact: Contact) -> bool:
    """The contact comes to the place (holds one of :data:`RESPONDER_ROLES`)."""
    return bool(contact.roles & RESPONDER_ROLES)


def plan(site: Site, alarm: Alarm, steps: tuple[Step, ...], number: int, *, drill: bool,
         on_duty: Callable[[Contact], bool] = lambda contact: True,
         reply_hint: bool = False, now_ms: int | None = None,
         shelters: tuple[Shelter, ...] = (),
         push_to: Callable[[Contact], bool] = lambda contact: False,
         plan_url: str | None = None,
         ) -> list[PlannedPage]:
    """Every page of attempt ``number``: calls first, then texts and pushes. A ``push``
    step pushes to the contacts ``push_to`` says have a subscription (hub.edges.push) and
    texts the others, unless the step texts everyone anyway. ``reply_hint``:
    SMS replies reach the dashboard, so texts say how to acknowledge. ``now_ms``: when
    the attempt runs (texts say how long ago the press was); ``shelters``: the branch's
    occupied safe rooms, named to responders; ``plan_url``: the alarm's floor plan
    (hub.core.planlink), linked in responders' texts only."""
    current = attempt(steps, number)
    contacts = recipients(site, alarm, current.step, drill=drill, on_duty=on_duty)
    texts = dict(drill=drill, now_ms=now_ms, attempt=number)
    sms = sms_text(alarm, site, reply_hint=reply_hint, **texts)
    call = call_text(alarm, site, **texts)
    told = {False: (sms, call), True: (sms, call)}
    if shelters or plan_url:
        told[True] = (sms_text(alarm, site, reply_hint=reply_hint, shelters=shelters,
                               plan_url=plan_url, **texts),
                      call_text(alarm, site, shelters=shelters, **texts))
    ref = page_ref(alarm.id, number)
    planned = []
    for channel in sorted((Channel(c) for c in current.step.channels),
                          key=lambda c: c is not Channel.CALL):
        for contact in contacts:
            by = channel
            if channel is Channel.PUSH and not push_to(contact):
                if "sms" in current.step.channels:
                    continue  # texted anyway
                by = Channel.SMS  # no browser subscribed: a text instead
            texts = told[responder(contact)]
            is_call = channel is Channel.CALL
            planned.append(PlannedPage(
                PageKey(alarm.id, number, contact.phone, by), contact,
                texts[1] if is_call else texts[0], "" if is_call else ref))
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
    planned: list[PlannedPage]
    timeline: dict[str, object]
    wait_ms: int
