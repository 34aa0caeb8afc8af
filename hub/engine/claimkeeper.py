"""Claims of pages waiting for a sender thread, kept alive together.

A page is claimed in Redis (``claimed:<ms>``) before it is queued for a sender; the claim
is a lease of ``LEASE_MS`` after which another worker takes the page over (its worker is
presumed dead). In a burst, pages wait in the queue for seconds: renewed one by one at
pickup, each cost a Redis round trip, and a queue longer than the lease let live workers'
pages be taken over. The keeper holds every queued claim and, on the hub's timer
(:meth:`ClaimKeeper.renew`, every ``hub.engine.service.TICK_S``), renews all that are older than
``RENEW_AFTER_MS`` in one script. A sender takes its claim out when it picks the page up
(:meth:`ClaimKeeper.take`), learning the claim's current ms, or that it was lost.

Wiring: ``hub.engine.service.AlarmService`` holds one (``claims``); ``_dispatch`` calls ``hold``,
``hub.engine.pager`` calls ``take``, ``hub.app.runner``'s timer calls ``renew``.
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


class ClaimKeeper:
    """``renew_claims(pairs, now_ms) -> list[bool]`` renews ``[(key, claim ms)]`` in one
    round trip (hub.store.pages); a claim it reports lost is never sent here."""

    def __init__(self, renew_claims: Callable[[list[tuple[PageKey, int]], int],
                                              list[bool]],
                 renew_after_ms: int = RENEW_AFTER_MS):
        self._renew_claims, self.renew_after_ms = renew_claims, renew_after_ms
        #: key -> [the claim's ms now, when first held (ms)]
        self._held: dict[PageKey, list[int]] = {}
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

    def waiting(self) -> int:
        with self._lock:
            return len(self._held)

    def renew(self, now_ms: int) -> int:
        """Renew every held claim older than ``renew_after_ms``; returns how many. Raises
        like the store (``redis.RedisError``): the claims keep their old ms, and the senders
        renew (or yield) them one by one at pickup."""
        with self._lock:
            for key in [k for k, (_, since) in self._held.items() if now_ms - since > MAX_HOLD_MS]:
                del self._held[key]  # left to lapse; take() then gives the original ms
            old = [(key, ms) for key, (ms, _) in self._held.items()
                   if ms != LOST and now_ms - ms > self.renew_after_ms]
            if not old:
                return 0
            for (key, _), kept in zip(old, self._renew_claims(old, now_ms)):
                self._held[key][0] = now_ms if kept else LOST
        return len(old)
