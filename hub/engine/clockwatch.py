"""Notices when the wall clock steps (NTP correcting a Pi that booted with a stale time,
an operator setting the date), so the escalation schedule can be moved with it.

Escalation due times are wall-clock ms shared by every worker in Redis. After a step
back of an hour every pending attempt would wait an hour; after a step forward every
one would fire at once. :class:`ClockWatch` compares the wall clock with the monotonic
clock (which never steps) on each tick; a change of their difference beyond
``tolerance_ms`` is a step, reported once as its size in ms (positive: forward).

Pure: both clocks are injected. Wiring: the hub's timer thread calls :meth:`step` every
tick and, on a step, :meth:`hub.store.alarms.Store.shift_schedule` moves every due time by it,
once across the workers that saw the same step.
"""

from __future__ import annotations

import time
from typing import Callable

#: A difference between wall and monotonic clocks changing by less than this is slewing
#: or scheduling noise, not a step, in ms.
TOLERANCE_MS = 2000


class ClockWatch:
    """Reports wall-clock steps: ``step()`` returns 0, or the step's size in ms."""

    def __init__(self, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 tolerance_ms: int = TOLERANCE_MS):
        self._wall, self._mono, self._tolerance = wall, monotonic, tolerance_ms
        self._offset_ms = self._current()

    def _current(self) -> int:
        return int((self._wall() - self._mono()) * 1000)

    @property
    def offset_ms(self) -> int:
        """Wall minus monotonic time, in ms, as of the last step (or start)."""
        return self._offset_ms

    def step(self) -> int:
        now = self._current()
        delta = now - self._offset_ms
        if abs(delta) < self._tolerance:
            return 0
        self._offset_ms = now
        return delta
