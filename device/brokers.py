"""Which broker a device connects to, from its ordered list (pure: callers pass ``now``).

A device may list brokers in order of preference (``[broker] brokers`` in its config,
device.config): the first is its home. The firmware (device.firmware) reports each
connect attempt that failed and each connection made, and what its probe of the home
broker found; :class:`BrokerChoice` says where to connect next:

- after ``fail_after`` failed connects in a row to one broker, the next one in the list
  (the last wraps round to the first);
- back to the first only once it has answered the probe for ``home_after_s`` seconds
  without a miss while the device is elsewhere, so a broker that restarts in a loop
  does not pull devices back and forth (no flapping).

Stdlib only, no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Failed connects in a row to one broker before the device tries the next.
FAIL_AFTER = 2
#: How long the first broker must answer every probe before devices return to it, seconds.
HOME_AFTER_S = 30.0


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


class BrokerChoice:
    """The broker to use now (:attr:`current`) among ``endpoints`` (the first is home)."""

    def __init__(self, endpoints: tuple[Endpoint, ...] | list[Endpoint], *,
                 fail_after: int = FAIL_AFTER, home_after_s: float = HOME_AFTER_S):
        if not endpoints:
            raise ValueError("a device needs at least one broker")
        if fail_after < 1:
            raise ValueError("fail_after must be at least 1")
        self.endpoints = tuple(endpoints)
        self.fail_after, self.home_after_s = fail_after, home_after_s
        self.index = 0
        self._failures = 0
        self._home_since: float | None = None   # ``now`` of the first answer in a row

    @property
    def current(self) -> Endpoint:
        return self.endpoints[self.index]

    @property
    def at_home(self) -> bool:
        return self.index == 0

    def failed(self) -> Endpoint | None:
        """A connect to :attr:`current` failed (refused, timed out, or the broker said no).
        Returns the broker to try instead once ``fail_after`` failed in a row, else
        ``None`` (try the same one again)."""
        self._failures += 1
        if self._failures < self.fail_after or len(self.endpoints) == 1:
            return None
        self._move((self.index + 1) % len(self.endpoints))
        return self.current

    def connected(self) -> None:
        """A connection to :attr:`current` was made: its failures are forgotten."""
        self._failures = 0

    def home_probed(self, now: float, answered: bool) -> Endpoint | None:
        """The probe of the first broker at ``now`` (seconds, any monotonic clock) found it
        ``answered`` or not. Returns the first broker when the device, connected
        elsewhere, should go back to it (answering for ``home_after_s`` in a row), else
        ``None``."""
        if self.at_home or not answered:
            self._home_since = None
            return None
        if self._home_since is None:
            self._home_since = now
        if now - self._home_since < self.home_after_s:
            return None
        self._move(0)
        return self.current

    def _move(self, index: int) -> None:
        self.index, self._failures, self._home_since = index, 0, None
