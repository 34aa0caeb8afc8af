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
alarm to the device only once a replica has it (``WAIT``, hub.engine.replication).

The fault test (tests/faults/test_sentinel_failover.py) runs these very renderings,
with shorter timings (``down_after_ms``).
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.config import redistarget

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
                    master: str = redistarget.DEFAULT_MASTER, workdir: str | None = None) -> str:
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


def render_sentinel_env(sentinels: list[Node], *, master: str = redistarget.DEFAULT_MASTER,
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


def provision_redis_ha(root, *, primary: str, replicas: list[str], sentinels: list[str],
                       quorum: int | None = None):
    """``haven provision redis-ha``: the replica, Sentinel and environment files of a site
    made by ``haven provision init`` (whose ``redis/haven.conf`` holds the password).
    Returns a ``commands.Outcome``; ProvisionError naming the option for bad input."""
    from pathlib import Path

    from . import ProvisionError
    from hub.provision.commands import Outcome
    from hub.provision.files import REDIS_GROUP, SiteDir, Transaction

    site = SiteDir(Path(root))
    try:
        base = site.redis_conf.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvisionError(f"{site.redis_conf}: cannot read it ({exc.strerror}); run "
                             "'haven provision init' first") from None
    password = next((line.split(None, 1)[1].strip() for line in base.splitlines()
                     if line.startswith("requirepass ")), None)
    if not password:
        raise ProvisionError(f"{site.redis_conf}: no 'requirepass' line; run 'haven "
                             "provision init' again or add the password")
    try:
        head = Node.parse(primary, 6379)
        replica_nodes = [Node.parse(r, 6379) for r in replicas]
        sentinel_nodes = [Node.parse(s, SENTINEL_PORT) for s in sentinels]
    except ValueError as exc:
        raise ProvisionError(f"--primary/--replica/--sentinel: {exc}") from None
    if not replica_nodes:
        raise ProvisionError("--replica: give at least one replica (two are recommended)")
    if len(sentinel_nodes) < 3 or len(sentinel_nodes) % 2 == 0:
        raise ProvisionError(f"--sentinel: {len(sentinel_nodes)} given; give an odd number, "
                             "at least 3, on separate machines, so a majority can agree")
    quorum = quorum or len(sentinel_nodes) // 2 + 1
    conf = site.redis_conf.parent
    with Transaction() as tx:
        tx.write(conf / "replica.conf", render_replica(head, password), 0o640, REDIS_GROUP)
        tx.write(conf / "sentinel.conf", render_sentinel(head, password, quorum=quorum),
                 0o640, REDIS_GROUP)
        tx.write(conf / "sentinel.env", render_sentinel_env(sentinel_nodes), 0o600)
    return Outcome([
        f"replicas ({', '.join(map(str, replica_nodes))}): copy {site.redis_conf} and "
        f"{conf / 'replica.conf'}, then in /etc/redis/redis.conf 'include' both, haven.conf "
        "first; set bind to the replica's LAN address",
        f"Sentinels ({', '.join(map(str, sentinel_nodes))}): copy {conf / 'sentinel.conf'} "
        "to /etc/redis/sentinel.conf (writable by redis) and run redis-sentinel (or "
        "'redis-server /etc/redis/sentinel.conf --sentinel')",
        f"hub workers and dashboards: add {conf / 'sentinel.env'} to haven.env",
        *tx.notes])
