""""Received" means stored on two machines: the device's confirmation waits for a replica.

Redis replication is asynchronous: an alarm written to the primary and lost with it
before a replica copied it would be gone after a Sentinel failover, while the device,
told ``received``, had already dropped it from its outbox. So, with replicas
(``HAVEN_REDIS_WAIT_REPLICAS`` >= 1, hub.config.redistarget), the intake

1. raises the alarms it read together on a connection of its own (one per intake
   thread: ``WAIT`` counts the writes of the connection it is sent on),
2. starts their pages at once (paging never waits for replication),
3. sends ``WAIT <replicas> <timeout_ms>`` on that connection, and
4. publishes the held ``received`` confirmations only if enough replicas have the
   writes. Otherwise it logs why and counts it in
   ``haven_confirmations_withheld_total{reason}``; the device keeps the alarm in its
   outbox and resends it, and the hub's alarm-id dedupe confirms it again, paging no one
   twice.

Wiring (hub.app.runner)::

    replication = Replication(lambda: connect(target, max_connections=1), publish,
                              replicas=1, timeout_ms=1000, registry=metrics.registry)
    service = AlarmService(..., confirm=replication.confirm, replication=replication)
    # the intake (hub.engine.intake) raises through replication.batch()
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import redis
from prometheus_client import CollectorRegistry, Counter

from hub.config.redistarget import RedisTarget, connect
from hub.store.alarms import Store

log = logging.getLogger("haven.hub")

Publish = Callable[[str, bytes], None]

#: ``reason`` label values of ``haven_confirmations_withheld_total``.
NO_REPLICA, STORE_ERROR = "no_replica", "store_error"


class Replication:
    """Holds a batch's ``received`` confirmations until ``replicas`` replicas have its
    writes (at most ``timeout_ms`` ms), per intake thread."""

    def __init__(self, connect: Callable[[], redis.Redis], publish: Publish, *,
                 replicas: int, timeout_ms: int, prefix: str = "haven",
                 registry: CollectorRegistry | None = None):
        """``connect()``: a new client whose commands share one connection
        (``hub.config.redistarget.connect(target, max_connections=1)``); ``publish(topic,
        payload)``: sends a confirmation to a device."""
        if replicas < 1:
            raise ValueError("replicas must be at least 1 (without replicas, confirm "
                             "directly: do not build a Replication)")
        self._connect, self._publish, self.prefix = connect, publish, prefix
        self.replicas, self.timeout_ms = replicas, timeout_ms
        self._local = threading.local()
        self.registry = registry if registry is not None else CollectorRegistry()
        self._withheld = Counter("haven_confirmations_withheld", "Alarm confirmations not "
                                 "sent because the alarm was not yet on enough replicas "
                                 "(the device resends it)", ("reason",), registry=self.registry)
        for reason in (NO_REPLICA, STORE_ERROR):
            self._withheld.labels(reason)

    def _store(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = Store(self._connect(), self.prefix)
        return store

    @contextmanager
    def batch(self) -> Iterator[Store]:
        """Raise alarms on the yielded store (this thread's own connection); confirmations
        sent meanwhile through :meth:`confirm` are held, and published on a clean exit
        once ``WAIT`` says enough replicas have every write made on that connection.
        On an exception they are dropped (the MQTT message stays unacknowledged)."""
        held: list[tuple[str, bytes]] = []
        self._local.held = held
        store = self._store()
        try:
            yield store
        except BaseException:
            self._forget()
            raise
        finally:
            self._local.held = None
        if held and not self._release(store, held):
            # After a failover this connection may still reach the old primary (reads and
            # WAIT work there; writes fail): the next batch asks Sentinel again.
            self._forget()

    def _forget(self) -> None:
        store = getattr(self._local, "store", None)
        self._local.store = None
        if store is not None:
            store.r.close()

    def _release(self, store: Store, held: list[tuple[str, bytes]]) -> bool:
        """WAIT, then publish the held confirmations; ``False`` if they were withheld."""
        try:
            acked = store.r.wait(self.replicas, self.timeout_ms)
        except redis.RedisError as exc:
            self._withheld.labels(STORE_ERROR).inc(len(held))
            log.warning("%d alarm confirmation(s) withheld: could not ask Redis whether a "
                        "replica has them (%s); the devices resend them", len(held), exc)
            return False
        if acked < self.replicas:
            self._withheld.labels(NO_REPLICA).inc(len(held))
            log.warning("%d alarm confirmation(s) withheld: %d of %d replica(s) had the "
                        "alarms within %d ms (replicas down or behind?); the alarms are "
                        "stored on the primary and paged, the devices resend them until "
                        "a replica has them", len(held), acked, self.replicas,
                        self.timeout_ms)
            return False
        for topic, payload in held:
            self._publish(topic, payload)
        return True

    def confirm(self, topic: str, payload: bytes) -> None:
        """Publish a confirmation, or hold it if this thread is inside :meth:`batch`."""
        held = getattr(self._local, "held", None)
        if held is None:
            self._publish(topic, payload)
        else:
            held.append((topic, payload))

    def withheld(self, reason: str) -> float:
        """Confirmations withheld so far for ``reason`` (tests, the CLI)."""
        return self.registry.get_sample_value("haven_confirmations_withheld_total",
                                              {"reason": reason}) or 0.0


@dataclass(frozen=True)
class Confirming:
    """How a worker confirms alarms: ``confirm`` for AlarmService, ``replication`` for its
    intake (``None`` without replicas to wait for)."""

    confirm: Publish
    replication: Replication | None


def replicated_confirm(target: RedisTarget, publish: Publish,
                       registry: CollectorRegistry | None = None) -> Confirming:
    """The confirmation path for ``target``: through a :class:`Replication` when it asks
    for replicas (``wait_replicas`` >= 1), else ``publish`` itself."""
    if target.wait_replicas < 1:
        return Confirming(publish, None)
    log.info("alarms are confirmed to devices once %d replica(s) have them (waiting up to "
             "%d ms)", target.wait_replicas, target.wait_ms)
    replication = Replication(lambda: connect(target, max_connections=1), publish,
                              replicas=target.wait_replicas, timeout_ms=target.wait_ms,
                              registry=registry)
    return Confirming(replication.confirm, replication)
