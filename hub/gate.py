"""A gate that holds a page's first request until the raise that claims it has answered.

A new alarm's attempt 0 is planned before it is raised (hub.service). When the raise is
one Redis round trip for one alarm, its pages are handed to sender threads *before* that
trip, each behind a :class:`Gate`: the twilio SDK builds the request while the intake
waits on Redis, and the bytes leave the moment the raise says the alarm is new and its
pages are claimed (``open``), written by the raising thread itself; otherwise (a
duplicate, a changed branch state, an unreachable store) the gate is ``close``d and the
page is dropped unsent and unrecorded, to be paged the ordinary way. A page never
produces an outcome before its gate opens.

Wiring: ``AlarmService._pre_send`` makes the gate; ``hub.sending`` passes it to the
notifier (``hold_next``), whose transport (hub.twilio_http) hands it the request's write
(:meth:`Gate.send`); a notifier without ``hold_next`` (the console) is held back by
``hub.sending`` itself (:meth:`Gate.passed`) before it is called.
"""

from __future__ import annotations

import threading
from typing import Callable

#: The longest a page waits at its gate, in seconds: the raise always opens or closes it
#: long before (one Redis round trip, bounded by the store's socket timeout of 5 s).
GATE_WAIT_S = 8.0


class GateClosed(Exception):
    """The page's alarm was not raised with it claimed: it must not be sent from here."""


class Gate:
    """Decided once, by the raise: :meth:`open` or :meth:`close`. Pages wait at it with
    :meth:`passed`, or hand it their request's write with :meth:`send`, which the opener
    runs itself: the request leaves on the raising thread the moment the raise answers,
    without waiting for the sender thread to wake and take the GIL."""

    def __init__(self):
        self._decided = threading.Event()
        self._lock = threading.Lock()
        self._state = _UNDECIDED
        #: Writes handed over before the decision, run by ``open`` (dropped by ``close``).
        self._writes: list[_Write] = []

    def open(self) -> None:
        """The pages are claimed: run the writes waiting here (on this thread), then let
        every page through."""
        with self._lock:
            self._state, writes, self._writes = _OPEN, self._writes, []
        for write in writes:
            write.run()
        self._decided.set()

    def close(self) -> None:
        with self._lock:
            self._state, self._writes = _CLOSED, []
        self._decided.set()

    def decided(self) -> bool:
        return self._decided.is_set()

    def passed(self) -> None:
        """Wait for the decision; raises :class:`GateClosed` unless the gate opened (a gate
        left undecided for ``GATE_WAIT_S`` counts as closed: the page's claim then lapses
        to the escalation timers)."""
        self._decided.wait(GATE_WAIT_S)
        if self._state is not _OPEN:
            raise GateClosed()

    def send(self, write: Callable[[], None]) -> None:
        """``write()`` (a page's request going out) once the gate opens: by the opener if
        it is still undecided, else here. Returns once it was written; raises what
        ``write`` raised, or :class:`GateClosed` (nothing written) as :meth:`passed`."""
        job = _Write(write)
        with self._lock:
            state = self._state
            if state is _UNDECIDED:
                self._writes.append(job)
        if state is _OPEN:
            write()
            return
        if state is _CLOSED:
            raise GateClosed()
        if not self._decided.wait(GATE_WAIT_S):
            with self._lock:
                if job in self._writes:  # withdrawn before anyone ran it
                    self._writes.remove(job)
                    raise GateClosed()
            self._decided.wait()  # being written by the opener now: bounded by its timeout
        if self._state is not _OPEN:
            raise GateClosed()
        if job.error is not None:
            raise job.error


_UNDECIDED, _OPEN, _CLOSED = "undecided", "open", "closed"


class _Write:
    __slots__ = ("write", "error")

    def __init__(self, write: Callable[[], None]):
        self.write, self.error = write, None

    def run(self) -> None:
        try:
            self.write()
        except Exception as exc:  # the page's own thread reports it (hub.twilio_http)
            self.error = exc
