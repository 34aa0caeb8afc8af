"""Login attempts, limited per user name and per client address, counted in Redis.

After ``max_failures`` failed logins (default 5) within ``window_s`` (default
15 min) of the first one, further attempts for that user name, or from that
address, are refused with 429 and ``Retry-After`` until the window ends —
without checking the password, so a guess made while blocked teaches nothing.
A successful login clears its user name's count (not the address's: an
attacker who owns one account must not reset the count on others).

Counts live in Redis, so every dashboard process sharing the store shares them::

    haven:login-failures:user:<name>   string  failures; expires window_s after the first
    haven:login-failures:addr:<addr>   string  the same, per client address

Behind a reverse proxy every request comes from the proxy's address: have the
proxy (or waitress's ``trusted_proxy``) set the client address, or the per
address limit applies to everyone at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.store.alarms import Store

from .users import NAME_RE, normalise_name


@dataclass(frozen=True)
class LoginLimit:
    """``max_failures`` failed logins within ``window_s`` seconds, then a pause."""

    max_failures: int = 5
    window_s: int = 15 * 60


class LoginLimiter:
    def __init__(self, store: Store, limit: LoginLimit = LoginLimit()):
        self.r, self.key = store.r, store.key
        self.limit = limit

    def _keys(self, username: str, address: str) -> list[str]:
        keys = [self.key("login-failures", "addr", address[:64] or "unknown")]
        name = normalise_name(username)
        if NAME_RE.match(name):  # no user can have any other name: the address limit covers it
            keys.append(self.key("login-failures", "user", name))
        return keys

    def retry_after(self, username: str, address: str) -> int:
        """Seconds until another attempt is allowed; 0 if one is allowed now."""
        keys = self._keys(username, address)
        pipe = self.r.pipeline(transaction=False)
        for key in keys:
            pipe.get(key)
            pipe.ttl(key)
        got = pipe.execute()
        wait = 0
        for count, ttl in zip(got[::2], got[1::2]):
            if count is not None and int(count) >= self.limit.max_failures:
                wait = max(wait, ttl if ttl > 0 else self.limit.window_s)
        return wait

    def failed(self, username: str, address: str) -> None:
        """Count a failed login; the first failure starts the window."""
        pipe = self.r.pipeline()
        for key in self._keys(username, address):
            pipe.set(key, 0, ex=self.limit.window_s, nx=True)
            pipe.incr(key)
        pipe.execute()

    def succeeded(self, username: str) -> None:
        name = normalise_name(username)
        if NAME_RE.match(name):
            self.r.delete(self.key("login-failures", "user", name))
