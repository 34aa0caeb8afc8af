"""Counting an escalation attempt's pages as sender threads finish them, so the last one
finishes the attempt: no thread sits waiting for an attempt's pages, and in the common
case the last page's outcome and the attempt's finish are written in one Redis round trip.

Wiring (hub.engine.service / hub.engine.pager): the attempt makes one :class:`AttemptTally` and gives
each page's send a :meth:`AttemptTally.ticket`. Before recording its outcome a send asks
:meth:`PageTicket.claim_last`; if it gets the attempt's :class:`FinishCheck`, its record
finishes the attempt too and it hands the result to :meth:`PageTicket.finished`. Every
send calls :meth:`PageTicket.done` when it is over, recorded or not (a no-op after
``claim_last`` succeeded); the tally calls ``finish(UNCHECKED)`` after the last ``done``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from hub.core.model import PageKey

#: What ``finish`` gets when no page's record checked and finished the attempt.
UNCHECKED = object()


@dataclass(frozen=True)
class FinishCheck:
    """Finish attempt ``attempt`` of ``alarm_id`` (the next one due at ``next_due_ms``),
    unless every one of its pages (``keys``) failed."""

    alarm_id: str
    attempt: int
    next_due_ms: int
    keys: tuple[PageKey, ...]


class AttemptTally:
    """``pages`` sends in flight. ``finish(result)`` is called once, on the thread of the
    last send: with what the store answered to a record that also finished the attempt
    (``None``: every page failed, nothing finished; ``True``/``False``: finished / already
    finished), or with :data:`UNCHECKED`."""

    def __init__(self, pages: int, check: FinishCheck, finish: Callable[[object], None]):
        if pages < 1:
            raise ValueError("an attempt tally needs at least one page")
        self._left, self.check, self._finish = pages, check, finish
        self._lock = threading.Lock()

    def ticket(self) -> "PageTicket":
        return PageTicket(self)


class PageTicket:
    """One page's place in its attempt's tally; spent once."""

    def __init__(self, tally: AttemptTally):
        self._tally, self._spent = tally, False

    def claim_last(self) -> FinishCheck | None:
        """Call before recording this page's outcome: the attempt's check if this page is
        the last one out (its record then finishes the attempt: pass the store's answer to
        :meth:`finished`), else ``None`` (record it, then :meth:`done`)."""
        tally = self._tally
        with tally._lock:
            if self._spent or tally._left != 1:
                return None
            tally._left, self._spent = 0, True
        return tally.check

    def finished(self, result: object) -> None:
        self._tally._finish(result)

    def done(self) -> None:
        """This page is over (recorded, or not sent); the last one finishes the attempt."""
        tally = self._tally
        with tally._lock:
            if self._spent:
                return
            self._spent = True
            tally._left -= 1
            last = tally._left == 0
        if last:
            tally._finish(UNCHECKED)
