"""What a page was for, in an operator's words, from its attempt number.

A page key's attempt number (hub.core.model.PageKey) is internal: the policy's
calls for help count from 0, and the other pages have ranges of their own
(hub.core.escalation). Timelines say ``2nd call for help`` or ``all-clear``, never ``attempt
2000000``.
"""

from __future__ import annotations

from hub.core.escalation import (ALL_CLEAR_ATTEMPT, FALLBACK_ATTEMPT_BASE, FOLLOWUP_CALL_BASE,
                                 RESPONDING_ATTEMPT, SAFE_ROOM_LEFT_BASE)
from hub.core.messages import ordinal

#: Words for each branch state (hub.core.schedule.BranchState) in a timeline.
BRANCH_STATE_WORDS = {"staffed": "Staffed", "lone_worker": "Lone worker", "drill": "Drill"}


def call_for_help(number: int) -> str:
    """``1st call for help`` for the policy's attempt 0."""
    return f"{ordinal(number + 1)} call for help"


def page_words(attempt: int | str | None) -> str:
    """What the page of ``attempt`` was: ``2nd call for help``, ``all-clear``, ``call
    instead of an undelivered text (1st call for help)``...; ``a page`` if unreadable."""
    try:
        n = int(attempt)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "a page"
    if n < 0:
        return "a page"
    if n < FALLBACK_ATTEMPT_BASE:
        return call_for_help(n)
    if n < ALL_CLEAR_ATTEMPT:
        return f"fallback: the {call_for_help(n - FALLBACK_ATTEMPT_BASE)} reached nobody"
    if n < FOLLOWUP_CALL_BASE:
        return "all-clear"
    if n < RESPONDING_ATTEMPT:
        original, tries = divmod(n - FOLLOWUP_CALL_BASE, 10)
        why = ("call instead of an undelivered text" if tries == 0
               else "call again after no answer" if tries == 1
               else f"call again after no answer, {ordinal(tries)} time")
        return f"{why} ({call_for_help(original)})"
    if n < SAFE_ROOM_LEFT_BASE:
        return "'someone is responding' text"
    return "'staff left the safe room' text"
