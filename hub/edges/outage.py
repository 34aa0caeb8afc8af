"""One loop's view of a fault (the store, the broker): it says when the fault ends.

An :class:`Outage` gives the line an operator reading the log needs next: ``store
back`` (with how long it was gone) once the loop succeeds again, so the end of a fault
is never left to guesswork. Given the failure, it also logs the fault's start, once:
a loop retrying every second then writes two lines per outage, not one per try.
"""

from __future__ import annotations

import logging
import time
from typing import Callable


class Outage:
    """``down()`` on each failure, ``up()`` on each success; the first ``up()`` after a
    ``down()`` logs "<what> back (<where>) after N s". ``down(exc)`` also logs the first
    failure of a fault, "<what> unreachable (<where>): <exc>; retrying until it is back",
    with no traceback. ``clock``: monotonic seconds."""

    def __init__(self, what: str, log: logging.Logger, where: str, *,
                 clock: Callable[[], float] = time.monotonic):
        self.what, self.log, self.where, self.clock = what, log, where, clock
        self.since: float | None = None  # when the current fault was first seen

    def down(self, exc: BaseException | None = None) -> None:
        if self.since is None:
            self.since = self.clock()
            if exc is not None:
                self.log.error("%s unreachable (%s): %s; retrying until it is back",
                               self.what, self.where, exc)

    def up(self) -> None:
        if self.since is not None:
            self.log.warning("%s back (%s) after %.1f s", self.what, self.where,
                             self.clock() - self.since)
            self.since = None
