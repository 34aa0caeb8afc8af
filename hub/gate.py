"""A gate that holds a page's first request until the raise that claims it has answered.

A new alarm's attempt 0 is planned before it is raised (hub.service). When the raise is
one Redis round trip for one alarm, its pages are handed to sender threads *before* that
trip, each behind a :class:`Gate`: the twilio SDK builds the request while the intake
waits on Redis, and the bytes leave the moment the raise says the alarm is new and its
pages are claimed (``open``); otherwise (a duplicate, a changed branch state, an
unreachable store) the gate is ``close``d and the page is dropped unsent and unrecorded,
to be paged the ordinary way. A page never produces an outcome before its gate opens.

Wiring: ``AlarmService._pre_send`` makes the gate; ``hub.sending`` passes it to the
notifier (``hold_next``), whose transport (hub.twilio_http) or printer waits on it just
before the request goes out.
"""

from __future__ import annotations

import threading

#: The longest a page waits at its gate, in seconds: the raise always opens or closes it
#: long before (one Redis round trip, bounded by the store's socket timeout of 5 s).
GATE_WAIT_S = 8.0


class GateClosed(Exception):
    """The page's alarm was not raised with it claimed: it must not be sent from here."""


class Gate:
    def __init__(self):
        self._decided = threading.Event()
        self._open = False

    def open(self) -> None:
        self._open = True
        self._decided.set()

    def close(self) -> None:
        self._decided.set()

    def decided(self) -> bool:
        return self._decided.is_set()

    def passed(self) -> None:
        """Wait for the decision; raises :class:`GateClosed` unless the gate opened (a gate
        left undecided for ``GATE_WAIT_S`` counts as closed: the page's claim then lapses
        to the escalation timers)."""
        self._decided.wait(GATE_WAIT_S)
        if not self._open:
            raise GateClosed()
