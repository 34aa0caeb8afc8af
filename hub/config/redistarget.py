"""Where the hub and dashboard find Redis: one URL, or a primary found through Sentinel.

Environment (read once by hub.config.settings, validated here into a :class:`RedisTarget`)::

    HAVEN_REDIS_URL        redis://[:password@]host:port/db, or rediss://... for TLS
                           (``?ssl_ca_certs=/etc/haven/pki/ca.crt`` and the other redis-py
                           URL options); with Sentinel its password, database and TLS
                           options are those of the primary and replicas, and its host and
                           port are not used (Sentinel names the primary)
    HAVEN_REDIS_SENTINELS  host:port,host:port,...: ask these Sentinels for the primary
                           (unset: connect to the URL's host)
    HAVEN_REDIS_MASTER     the name the Sentinels monitor the primary by    haven
    HAVEN_REDIS_SENTINEL_PASSWORD  the Sentinels' own ``requirepass``        none
    HAVEN_REDIS_WAIT_REPLICAS  replicas an alarm must reach before the device hears
                           ``received`` (hub.engine.replication)       1 with Sentinel, 0 without
    HAVEN_REDIS_WAIT_MS    how long the hub waits for them, in ms                  1000

The connection goes through redis-py's own Sentinel support
(``redis.sentinel.Sentinel(...).master_for(...)``): after a failover the old primary's
connections fail, and the next command asks the Sentinels again and reaches the new one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

import redis
from redis.backoff import ExponentialBackoff
from redis.connection import parse_url
from redis.retry import Retry
from redis.sentinel import Sentinel

from hub.errors import ConfigError, Problem

DEFAULT_URL = "redis://127.0.0.1:6379/0"
#: The name ``haven provision redis-ha`` gives the primary in the Sentinels' config.
DEFAULT_MASTER = "haven"
#: Default bound on the wait for a replica, in ms (hub.engine.replication).
DEFAULT_WAIT_MS = 1000
MAX_WAIT_MS = 10_000

_HOST_PORT = re.compile(r"^(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>\d{1,5})$")


@dataclass(frozen=True)
class RedisTarget:
    """Where Redis is: ``url`` alone, or ``sentinels`` ((host, port), ...) that know the
    primary named ``master``; then ``url`` only gives password, database and TLS.
    ``wait_replicas`` and ``wait_ms``: how many replicas must hold an alarm before the
    device is told ``received``, and how long to wait for them (0: do not wait)."""

    url: str = DEFAULT_URL
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER
    sentinel_password: str | None = None
    wait_replicas: int = 0
    wait_ms: int = DEFAULT_WAIT_MS

    @property
    def safe(self) -> str:
        """For logs: the URL with its password masked, and the Sentinels if any."""
        url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", self.url)
        if not self.sentinels:
            return url
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        return f"primary {self.master!r} via Sentinels {hosts} ({url})"


def target_from_env(url: str, env: Mapping[str, str]) -> RedisTarget:
    """A :class:`RedisTarget` from ``url`` (already chosen: option or HAVEN_REDIS_URL) and
    the HAVEN_REDIS_* variables in ``env``; a ConfigError naming each bad variable."""
    problems: list[Problem] = []

    def bad(name: str, text: str) -> None:
        problems.append(Problem("environment", None, name, text))

    try:
        parse_url(url)
    except ValueError as exc:
        bad("HAVEN_REDIS_URL", f"{url!r}: {exc}; e.g. redis://:PASSWORD@127.0.0.1:6379/0")
    sentinels: list[tuple[str, int]] = []
    raw = (env.get("HAVEN_REDIS_SENTINELS") or "").strip()
    for item in filter(None, (part.strip() for part in raw.split(","))):
        match = _HOST_PORT.match(item)
        if match is None or not 0 < int(match["port"]) < 65536:
            bad("HAVEN_REDIS_SENTINELS", f"{item!r} is not host:port; give every Sentinel "
                "comma-separated, e.g. 10.0.0.11:26379,10.0.0.12:26379,10.0.0.13:26379")
            continue
        sentinels.append((match["host"].strip("[]"), int(match["port"])))
    master = (env.get("HAVEN_REDIS_MASTER") or DEFAULT_MASTER).strip()
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", master):
        bad("HAVEN_REDIS_MASTER", f"{master!r}: use the name of 'sentinel monitor NAME ...' "
            f"in the Sentinels' config (letters, digits, - _ .; default {DEFAULT_MASTER})")
    if (env.get("HAVEN_REDIS_SENTINEL_PASSWORD") or "") and not sentinels:
        bad("HAVEN_REDIS_SENTINEL_PASSWORD", "set, but HAVEN_REDIS_SENTINELS is not: list "
            "the Sentinels too, or unset it")
    replicas = _whole(env, "HAVEN_REDIS_WAIT_REPLICAS", 1 if sentinels else 0, 0, 5, bad,
                      "how many replicas must hold an alarm before the device is told "
                      "'received' (0: do not wait)")
    wait_ms = _whole(env, "HAVEN_REDIS_WAIT_MS", DEFAULT_WAIT_MS, 10, MAX_WAIT_MS, bad,
                     "how long to wait for them, in ms")
    if problems:
        raise ConfigError(problems)
    return RedisTarget(url, tuple(sentinels), master,
                       env.get("HAVEN_REDIS_SENTINEL_PASSWORD") or None, replicas, wait_ms)


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int, bad,
           what: str) -> int:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    if not (raw.isdigit() and low <= int(raw) <= high):
        bad(name, f"{raw!r} must be a whole number from {low} to {high} (default "
            f"{default}): {what}")
        return default
    return int(raw)


#: The client options of every hub and dashboard connection (seconds). Timeouts and a
#: short retry keep a dead Redis loud and quick to report: the MQTT edge holds the
#: message and retries on its own schedule, which is also how a failover is ridden out.
CLIENT_OPTIONS: dict[str, Any] = dict(decode_responses=True, socket_timeout=5,
                                      socket_connect_timeout=2, health_check_interval=30)


def connect(target: RedisTarget | str, *, max_connections: int | None = None) -> redis.Redis:
    """A client for ``target`` (a plain URL string is a target without Sentinels).

    ``max_connections=1`` gives a client whose commands and pipelines all use one
    connection (hub.engine.replication needs ``WAIT`` on the connection that wrote)."""
    if isinstance(target, str):
        target = RedisTarget(target)
    options = dict(CLIENT_OPTIONS, retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
    if max_connections is not None:
        options["max_connections"] = max_connections
    if not target.sentinels:
        return redis.Redis.from_url(target.url, **options)
    url_options = parse_url(target.url)
    for where in ("host", "port"):  # Sentinel names the primary
        url_options.pop(where, None)
    sentinel_options = {key: value for key, value in CLIENT_OPTIONS.items()
                        if key.startswith("socket_")}
    if url_options.pop("connection_class", None) is redis.SSLConnection:
        url_options["ssl"] = True  # the Sentinel pool picks its own TLS connection class
        # Sentinels of a TLS set-up speak TLS too (tls-port), checked by the same CA.
        sentinel_options.update({key: value for key, value in url_options.items()
                                 if key.startswith("ssl")})
    if target.sentinel_password:
        sentinel_options["password"] = target.sentinel_password
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=sentinel_options)
    return sentinel.master_for(target.master, **url_options, **options)
