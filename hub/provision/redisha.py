"""Redis with replicas and Sentinel, as text: each replica's and each Sentinel's config.

``haven provision redis-ha`` writes, under ``SITE/redis/``:

- ``replica.conf`` - included after ``haven.conf`` on each replica machine (which gets
  the same ``haven.conf``: a replica Sentinel promotes must ask the same password and
  keep the same durability);
- ``sentinel.conf`` - the whole config of each of the (three) Sentinels; copy it to
  ``/etc/redis/sentinel.conf`` on each, writable by redis: a Sentinel rewrites its own
  config as it learns replicas, other Sentinels and failovers;
- ``sentinel.env`` - the lines to add to every hub's and dashboard's ``haven.env``.

The primary gets no ``min-replicas-to-write``: with replicas down it would refuse to
store alarms, and paging must not wait for replication. The hub instead confirms an
alarm to the device only once a replica has it (``WAIT``, hub.replication).

The fault test (tests/faults/test_sentinel_failover.py) runs these very renderings,
with shorter timings (``down_after_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import redisconnect

#: The Sentinels' port (Redis's default for Sentinel).
SENTINEL_PORT = 26379
#: How long the primary must be unreachable before a Sentinel calls it down, in ms. A
#: Pi's SD card can stall writes for a second or two; 5 s keeps a stall from causing a
#: failover, and the devices' outboxes cover the gap.
DOWN_AFTER_MS = 5000
#: How long a failover may take before another Sentinel retries it, in ms.
FAILOVER_TIMEOUT_MS = 60000


@dataclass(frozen=True)
class Node:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, default_port: int) -> "Node":
        """``host[:port]``; ValueError naming the text otherwise."""
        host, sep, port = text.rpartition(":")
        if not sep:
            host, port = text, str(default_port)
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{text!r} must be host or host:port, e.g. 10.0.0.11:6379")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def render_replica(primary: Node, password: str) -> str:
    """``replica.conf``: follow ``primary``, authenticated with the site's password."""
    return f"""\
# Haven Redis replica: include after haven.conf on each replica machine
# (include /etc/haven/redis/replica.conf). Written by 'haven provision redis-ha'.
# Sentinel rewrites 'replicaof' on a failover; the primary's address here is only the start.
replicaof {primary.host} {primary.port}
masterauth {password}
replica-read-only yes
# A replica that lost its primary still answers reads (the dashboard) from its copy.
replica-serve-stale-data yes
"""


def render_sentinel(primary: Node, password: str, *, port: int = SENTINEL_PORT,
                    bind: str = "0.0.0.0", quorum: int = 2, down_after_ms: int = DOWN_AFTER_MS,
                    failover_timeout_ms: int = FAILOVER_TIMEOUT_MS,
                    master: str = redisconnect.DEFAULT_MASTER, workdir: str | None = None) -> str:
    """``sentinel.conf``: watch ``primary`` as ``master``; ``quorum`` Sentinels must agree
    it is down (2 of 3)."""
    lines = [
        "# Haven Redis Sentinel. Written by 'haven provision redis-ha'. Sentinel rewrites",
        "# this file (known replicas, Sentinels, epochs): keep it writable by redis.",
        f"port {port}",
        f"bind {bind}",
        "protected-mode no" if bind not in ("127.0.0.1", "::1") else "protected-mode yes",
        *([f"dir {workdir}"] if workdir else []),
        f"sentinel monitor {master} {primary.host} {primary.port} {quorum}",
        f"sentinel auth-pass {master} {password}",
        f"sentinel down-after-milliseconds {master} {down_after_ms}",
        f"sentinel failover-timeout {master} {failover_timeout_ms}",
        "# One replica resyncs from the new primary at a time; the other keeps serving.",
        f"sentinel parallel-syncs {master} 1",
    ]
    return "\n".join(lines) + "\n"


def render_sentinel_env(sentinels: list[Node], *, master: str = redisconnect.DEFAULT_MASTER,
                        replicas: int = 1) -> str:
    """``sentinel.env``: what every hub's and dashboard's haven.env needs added."""
    return f"""\
# Add to /etc/haven/hub/haven.env on every hub worker and dashboard
# (HAVEN_REDIS_URL keeps the password; its host is no longer used: Sentinel names the primary).
HAVEN_REDIS_SENTINELS={",".join(str(node) for node in sentinels)}
HAVEN_REDIS_MASTER={master}
# An alarm is confirmed to its device once this many replicas have it (up to 1000 ms):
HAVEN_REDIS_WAIT_REPLICAS={replicas}
HAVEN_REDIS_WAIT_MS=1000
"""
