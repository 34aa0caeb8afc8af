"""Claims of pages waiting for a sender thread, kept alive together.

A page is claimed in Redis (``claimed:<ms>``) before it is queued for a sender; the claim
is a lease of ``LEASE_MS`` after which another worker takes the page over (its worker is
presumed dead). In a burst, pages wait in the queue for seconds: renewed one by one at
pickup, each cost a Redis round trip, and a queue longer than the lease let live workers'
pages be taken over. The keeper holds every queued claim and, on the hub's timer
(:meth:`ClaimKeeper.renew`, every ``hub.engine.service.TICK_S``), renews all that are older than
``RENEW_AFTER_MS`` in one script. A sender takes its claim out when it picks the page up
(:meth:`ClaimKeeper.take`), learning the claim's current ms, or that it was lost.

The keeper also holds the leases of escalation attempts whose pages are still queued or
going out (:meth:`ClaimKeeper.hold_attempt`, until the attempt finishes:
:meth:`ClaimKeeper.release_attempt`), renewed in the same round trip as the claims. An
attempt no longer waits on a thread for its pages (its last page finishes it,
hub.core.tally), so in a burst its pages may wait longer than its lease: without the
renewal, a timer would re-run it while they wait, find every page claimed, and finish it
before its pages went out, with the next round due a wait after that re-run, late.

Wiring: the :class:`~hub.engine.pager.Pager` holds one (``claims``, also
``AlarmService.claims``); ``Escalator.dispatch`` calls ``hold`` and ``hold_attempt``,
``Escalator._finish_attempt`` ``release_attempt``, the pager ``take``, and
``hub.app.runner``'s timer ``renew``.
"""

from __future__ import annotations

import threading
from typing import Callable

from hub.core.model import PageKey

#: A queued claim is renewed once it is this old, in ms (hub.engine.pager keeps room for a
#: send and its retries within the lease after a renewal).
RENEW_AFTER_MS = 250

#: A claim still queued this long after it was first held is no longer renewed, in ms: a
#: page stuck that long (a wedged sender pool) is left to lapse to another worker, which
#: asks the API whether it went out before sending it (hub.engine.pager).
MAX_HOLD_MS = 30_000

#: ``take`` answers this for a claim another worker took over meanwhile.
LOST = -1


#: An attempt: (alarm id, attempt number).
Attempt = tuple[str, int]
#: ``renew(claims, attempts, now_ms) -> (claims kept, attempts kept)``
Renew = Callable[[list[tuple[PageKey, int]], list[Attempt], int],
                 tuple[list[bool], list[bool]]]


class ClaimKeeper:
    """``renew(claims, attempts, now_ms)`` renews ``claims`` (``[(key, claim ms)]``) and
    the leases of ``attempts`` (``[(alarm id, number)]``) in one round trip
    (hub.store.alarms.Store.renew_leases), saying which it kept; a claim it reports lost
    is never sent here, an attempt not kept (finished, stopped) is no longer renewed."""

    def __init__(self, renew: Renew, renew_after_ms: int = RENEW_AFTER_MS):
        self._renew, self.renew_after_ms = renew, renew_after_ms
        #: key -> [the claim's ms now, when first held (ms)]
        self._held: dict[PageKey, list[int]] = {}
        #: attempt -> [its lease's start now (ms), when first held (ms)]
        self._attempts: dict[Attempt, list[int]] = {}
        # Held across a renewal's round trip, so a sender never takes a claim whose ms is
        # being changed in Redis (it would then see its own claim as taken over).
        self._lock = threading.Lock()

    def hold(self, key: PageKey, claimed_ms: int) -> None:
        with self._lock:
            self._held[key] = [claimed_ms, claimed_ms]

    def take(self, key: PageKey, claimed_ms: int) -> int:
        """The claim's ms now (``claimed_ms`` unless renewed meanwhile), or :data:`LOST`;
        a key not held (or no longer: :data:`MAX_HOLD_MS`) gives ``claimed_ms`` back."""
        with self._lock:
            held = self._held.pop(key, None)
        return claimed_ms if held is None else held[0]

    def hold_attempt(self, alarm_id: str, number: int, leased_ms: int) -> None:
        """Keep attempt ``number`` of ``alarm_id`` (leased at ``leased_ms``) leased to this
        worker until :meth:`release_attempt`."""
        with self._lock:
            self._attempts[(alarm_id, number)] = [leased_ms, leased_ms]

    def release_attempt(self, alarm_id: str, number: int) -> None:
        """The attempt finished (or is left to lapse to another worker)."""
        with self._lock:
            self._attempts.pop((alarm_id, number), None)

    def waiting(self) -> int:
        with self._lock:
            return len(self._held)

    def attempts(self) -> int:
        """Attempts held (pages queued or going out)."""
        with self._lock:
            return len(self._attempts)

    def renew(self, now_ms: int) -> int:
        """Renew every held claim and attempt lease older than ``renew_after_ms``; returns
        how many. Raises like the store (``redis.RedisError``): the claims keep their old
        ms, and the senders renew (or yield) them one by one at pickup; the attempts'
        leases may lapse (a re-run sends nothing twice: claims)."""
        with self._lock:
            for key in [k for k, (_, since) in self._held.items() if now_ms - since > MAX_HOLD_MS]:
                del self._held[key]  # left to lapse; take() then gives the original ms
            for key in [a for a, (_, since) in self._attempts.items()
                        if now_ms - since > MAX_HOLD_MS]:
                del self._attempts[key]  # its pages are stuck: left to lapse too
            old = [(key, ms) for key, (ms, _) in self._held.items()
                   if ms != LOST and now_ms - ms > self.renew_after_ms]
            attempts = [a for a, (ms, _) in self._attempts.items()
                        if now_ms - ms > self.renew_after_ms]
            if not old and not attempts:
                return 0
            claims_kept, attempts_kept = self._renew(old, attempts, now_ms)
            for (key, _), kept in zip(old, claims_kept):
                self._held[key][0] = now_ms if kept else LOST
            for attempt, kept in zip(attempts, attempts_kept):
                if kept:
                    self._attempts[attempt][0] = now_ms
                else:
                    del self._attempts[attempt]
        return len(old) + len(attempts)
