"""Finding an alarm from what a person types at the shell.

People copy what they see: the ``Ref 86bce38e-2`` of a text (the alarm id's first
eight characters, a dash, the call-for-help number; see ``messages.page_ref``), the
short id of ``haven alarm list``, or the whole id. Any unique start of an id names
the alarm; a page reference names the alarm its first eight characters start.
"""

from __future__ import annotations

import re
from typing import Callable

from device.protocol import ID_RE

from hub.errors import HubError

#: ``86bce38e-2``: an id's first eight characters (fewer if the id is shorter), a dash,
#: the call-for-help number.
PAGE_REF_RE = re.compile(r"^([A-Za-z0-9_-]{1,8})-(\d{1,4})\Z")

#: How many candidates an "ambiguous" error lists.
SHOWN = 5


class AlarmRefError(HubError):
    """What was typed names no alarm, or more than one; the message says what to type."""


def search_prefix(text: str) -> str:
    """The id prefix to look for: ``text`` itself, or the id part of a page reference."""
    text = text.strip()
    if not text or not ID_RE.match(text):
        raise AlarmRefError(f"{text!r} is not an alarm id: give the id, its start, or the "
                            "Ref of a text (e.g. 86bce38e-2)")
    ref = PAGE_REF_RE.match(text)
    return ref.group(1) if ref else text


def resolve_alarm_id(text: str, ids_starting: Callable[[str], list[str]]) -> str:
    """The one alarm id ``text`` names. ``ids_starting(prefix)`` lists stored alarm ids
    that start with ``prefix`` (at least ``SHOWN + 1`` of them when there are that many).

    A page reference matches by its id part alone: that part may also start other
    alarms' ids, and picking one of them would act on the wrong alarm.
    """
    prefix = search_prefix(text)
    matches = sorted(set(ids_starting(prefix)))
    if not matches:
        raise AlarmRefError(f"no alarm id starts with {prefix!r}: check the Ref in the text, "
                            "or see the ids with 'haven alarm list'")
    if len(matches) > 1:
        many = str(len(matches)) if len(matches) <= SHOWN else f"more than {SHOWN}"
        shown = ", ".join(matches[:SHOWN]) + (", ..." if len(matches) > SHOWN else "")
        raise AlarmRefError(f"{prefix!r} starts {many} alarm ids ({shown}): give more of "
                            "the id")
    return matches[0]
