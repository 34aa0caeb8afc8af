"""Whether an escalation attempt reached a person, from its delivery reports: pure.

An attempt's pages are accepted by Twilio, then reported on by status callbacks
(dashboard.twilio_hooks ``/twilio/status``), each stored in the alarm's timeline as a
``delivery_status`` entry. "Accepted" is not "received": a text may end undelivered, a
call busy or unanswered. This module reads the timeline and says, per attempt::

    REACHED   a text was delivered, or a call was answered by a person
    NOBODY    every page of the attempt has a final report and none reached a person
    PENDING   anything else (a report still to come, or none will: a carrier that never
              reports delivery leaves the attempt PENDING, never NOBODY)

Final without reaching anyone: SMS ``undelivered`` / ``failed``; calls ``busy`` /
``no-answer`` / ``failed`` / ``canceled``, or ``completed`` when answered by a machine or
fax (machine detection's ``AnsweredBy``); and a page the API refused (``notify_failed``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class Reach(StrEnum):
    REACHED = "reached"
    NOBODY = "nobody"
    PENDING = "pending"


#: Statuses that mean a person got the page.
REACHED_STATUSES = frozenset({"delivered", "read", "answered", "in-progress"})
#: Final statuses that mean nobody got the page.
UNREACHED_STATUSES = frozenset({"undelivered", "failed", "busy", "no-answer", "canceled"})


@dataclass(frozen=True)
class AttemptReach:
    """What an attempt's reports say: ``reach``, how many ``pages`` it sent or tried, and
    the phones they went to (``tried``)."""

    reach: Reach
    pages: int = 0
    tried: frozenset[str] = frozenset()


def page_outcome(status: str, answered_by: str = "") -> Reach:
    """One report of one page: REACHED, NOBODY (final, nobody got it) or PENDING (queued,
    sent, ringing...). A ``completed`` call reached a person unless a machine answered."""
    if status == "completed":
        return Reach.NOBODY if answered_by.startswith(("machine", "fax")) else Reach.REACHED
    if status in REACHED_STATUSES:
        return Reach.REACHED
    if status in UNREACHED_STATUSES:
        return Reach.NOBODY
    return Reach.PENDING


def attempt_reach(timeline: Iterable[Mapping[str, str]], attempt: int) -> AttemptReach:
    """Whether attempt ``attempt`` of an alarm reached a person, from its timeline (the
    store's entries, oldest first): its ``escalation`` entry says how many pages it
    planned; ``notified`` / ``notify_failed`` entries (``step``) and ``delivery_status``
    entries (``attempt``) say what became of each page, a page being one channel to one
    phone."""
    wanted = str(attempt)
    planned: int | None = None
    pages: dict[tuple[str, str], Reach] = {}
    for e in timeline:
        event = e.get("event")
        if event == "escalation" and e.get("attempt") == wanted:
            planned = int(e.get("notifications") or 0)
            continue
        if event in ("notified", "notify_failed") and e.get("step") == wanted:
            outcome = Reach.NOBODY if event == "notify_failed" else Reach.PENDING
        elif event == "delivery_status" and e.get("attempt") == wanted:
            outcome = page_outcome(e.get("status", ""), e.get("answered_by", ""))
        else:
            continue
        page = (e.get("channel", ""), e.get("to", ""))
        before = pages.get(page, Reach.PENDING)
        # statuses may arrive out of order: reached beats final, final beats in-between
        pages[page] = max(before, outcome, key=_RANK.__getitem__)
    tried = frozenset(to for _, to in pages)
    if any(outcome is Reach.REACHED for outcome in pages.values()):
        reach = Reach.REACHED
    elif planned and len(pages) >= planned and all(o is Reach.NOBODY for o in pages.values()):
        reach = Reach.NOBODY
    else:
        reach = Reach.PENDING
    return AttemptReach(reach, len(pages), tried)


_RANK = {Reach.PENDING: 0, Reach.NOBODY: 1, Reach.REACHED: 2}
