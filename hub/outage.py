"""One loop's view of a fault (the store, the broker): it says when the fault ends.

Loops log every failure as it happens; an :class:`Outage` adds the line an operator
reading the log needs next: ``store back`` (with how long it was gone) once the loop
succeeds again, so the end of a fault is never left to guesswork.
"""

from __future__ import annotations

import logging
import time
from typing import Callable


class Outage:
    """``down()`` on each failure, ``up()`` on each success; the first ``up()`` after a
    ``down()`` logs "<what> back (<where>) after N s". ``clock``: monotonic seconds."""

    def __init__(self, what: str, log: logging.Logger, where: str, *,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.log, self.where, self.clock = what, log, where, clock
        self.since: float | None = None  # when the current fault was first seen

    def down(self) -> None:
        if self.since is None:
            self.since = self.clock()

    def up(self) -> None:
        if self.since is not None:
            self.log.warning("%s back (%s) after %.1f s", self.what, self.where,
                             self.clock() - self.since)
            self.since = None
