"""A private Redis primary, its replicas and three Sentinels on loopback (fault tests, bench).

Each process is Debian's ``redis-server`` (a Sentinel is ``redis-server FILE --sentinel``:
Debian's separate ``redis-sentinel`` package is the same binary) started like
hub.app.localservices' servers: a child in its own work directory, on a free port, dying
with its parent. The replicas' and Sentinels' configs are the ones ``haven provision
redis-ha`` writes (hub.provision.redisha), with a shorter ``down_after_ms``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from hub.app.localservices import (START_TIMEOUT_S, LocalService, ServiceError, find_binary,
                            free_port, spawn)
from hub.provision.redisha import Node, render_replica, render_sentinel
from hub.config.redistarget import DEFAULT_MASTER, RedisTarget

#: Test timings: the primary is called down after this many ms without an answer. At
#: 1000 ms a loaded 2-core machine sometimes failed over twice: a Sentinel called the new
#: primary down 1 s after promoting it (busy with its replica's first copy), and the hub
#: wrote ~10 s to the demoted one until Sentinel made it a replica (docs/reliability.md).
TEST_DOWN_AFTER_MS = 3000


def _server_conf(port: int, workdir: Path, password: str) -> list[str]:
    """The durable settings of hub.provision.redisconf (AOF) on loopback."""
    return [f"port {port}", "bind 127.0.0.1", "protected-mode yes", "daemonize no",
            f"dir {workdir}", "appendonly yes", "appendfsync everysec", 'save ""',
            "maxmemory-policy noeviction", f"requirepass {password}", "loglevel notice",
            # a replica's first copy starts at once (Redis waits 5 s for more replicas)
            "repl-diskless-sync-delay 0"]


def _wait(service: LocalService, ready) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{service.name} exited at start; its log {service.log} "
                               f"ends:\n{service.tail()}")
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        time.sleep(0.01)
    service.stop()
    raise ServiceError(f"{service.name} on port {service.port} was not ready within "
                       f"{START_TIMEOUT_S:.0f} s; log {service.log}:\n{service.tail()}")


def _start(name: str, workdir: Path, conf_text: str, extra: list[str]) -> LocalService:
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "redis.conf"
    conf.write_text(conf_text)
    log = workdir / "redis.log"
    proc = spawn([find_binary("redis-server"), str(conf), *extra], log=log)
    port = int(next(line.split()[1] for line in conf_text.splitlines()
                    if line.startswith("port ")))
    return LocalService(name, port, workdir, log, proc)


@dataclass
class ReplicaSet:
    """``servers[0]`` started as the primary; ``sentinels`` watch it as ``master``."""

    password: str
    servers: list[LocalService]
    sentinels: list[LocalService]
    master: str = DEFAULT_MASTER
    clients: list[redis.Redis] = field(default_factory=list)

    def target(self, *, wait_replicas: int = 1, wait_ms: int = 1000) -> RedisTarget:
        return RedisTarget(f"redis://:{self.password}@127.0.0.1:1/0",
                           tuple(("127.0.0.1", s.port) for s in self.sentinels), self.master,
                           None, wait_replicas, wait_ms)

    def env(self, *, wait_replicas: int = 1, wait_ms: int = 1000) -> dict[str, str]:
        """The HAVEN_REDIS_* variables of a hub process on this set."""
        target = self.target(wait_replicas=wait_replicas, wait_ms=wait_ms)
        return {"HAVEN_REDIS_URL": target.url,
                "HAVEN_REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in target.sentinels),
                "HAVEN_REDIS_MASTER": self.master,
                "HAVEN_REDIS_WAIT_REPLICAS": str(wait_replicas),
                "HAVEN_REDIS_WAIT_MS": str(wait_ms)}

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinels' majority names it now (None: no answer)."""
        seen = []
        for sentinel in self.sentinels:
            if not sentinel.alive():
                continue
            try:
                client = redis.Redis(port=sentinel.port, socket_timeout=0.5)
                host_port = client.sentinel_get_master_addr_by_name(self.master)
                client.close()
            except redis.RedisError:
                continue
            if host_port:
                seen.append(int(host_port[1]))
        return max(set(seen), key=seen.count) if seen else None

    def primary(self) -> LocalService:
        port = self.primary_port()
        return next(s for s in self.servers if s.port == port)

    def failovers(self) -> list[tuple[int, int]]:
        """Each failover so far as (old primary's port, new primary's port), in order, from
        the ``+switch-master`` lines of the Sentinels' logs (each Sentinel logs each)."""
        seen: list[tuple[int, int]] = []
        for sentinel in self.sentinels:
            try:
                lines = sentinel.log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                words = line.split()
                if "+switch-master" in words and words[-5] == self.master:
                    switch = (int(words[-3]), int(words[-1]))
                    if switch not in seen:
                        seen.append(switch)
        return seen

    def stop(self) -> None:
        for service in [*self.sentinels, *self.servers]:
            service.stop()


def start_replica_set(workdir: str | Path, *, replicas: int = 2, sentinels: int = 3,
                      password: str = "haven-test-password",
                      down_after_ms: int = TEST_DOWN_AFTER_MS) -> ReplicaSet:
    """Start a primary, ``replicas`` replicas (each in sync before this returns) and
    ``sentinels`` Sentinels (each seeing every replica)."""
    workdir = Path(workdir)
    started: list[LocalService] = []
    try:
        primary_port = free_port()
        primary = _start("redis-primary", workdir / "primary",
                         "\n".join(_server_conf(primary_port, workdir / "primary", password))
                         + "\n", [])
        started.append(primary)
        client = redis.Redis(port=primary_port, password=password, socket_timeout=1)
        _wait(primary, client.ping)
        node = Node("127.0.0.1", primary_port)
        for i in range(replicas):
            port, where = free_port(), workdir / f"replica{i + 1}"
            text = "\n".join(_server_conf(port, where, password)) + "\n" + render_replica(
                node, password)
            started.append(_start(f"redis-replica{i + 1}", where, text, []))
        _wait(primary, lambda: client.info("replication")["connected_slaves"] == replicas
              and all(client.info("replication")[f"slave{i}"]["state"] == "online"
                      for i in range(replicas)))
        client.close()
        set_ = ReplicaSet(password, started[:], [])
        for i in range(sentinels):
            port, where = free_port(), workdir / f"sentinel{i + 1}"
            text = render_sentinel(node, password, port=port, bind="127.0.0.1",
                                   down_after_ms=down_after_ms, failover_timeout_ms=10000,
                                   workdir=str(where))
            sentinel = _start(f"redis-sentinel{i + 1}", where, text, ["--sentinel"])
            started.append(sentinel)
            set_.sentinels.append(sentinel)
        for sentinel in set_.sentinels:
            probe = redis.Redis(port=sentinel.port, socket_timeout=1)
            _wait(sentinel, lambda: (
                len(probe.sentinel_slaves(DEFAULT_MASTER)) == replicas
                and len(probe.sentinel_sentinels(DEFAULT_MASTER)) == sentinels - 1))
            probe.close()
        return set_
    except BaseException:
        for service in started:
            service.stop()
        raise
