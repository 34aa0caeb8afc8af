"""Device statuses and heartbeats stored in batches: one Redis round trip for many.

The hub workers share a heartbeat from every device every 30 s (and each reads every
status); stored one by one, each costs a Redis round trip on the MQTT thread, which then
cannot read the next message. The MQTT edge hands them here instead; one thread takes
whatever has queued (up to ``MAX_BATCH``), stores it with one script call, and only then
acknowledges those messages to the broker. If Redis is unreachable the batch is kept, unacknowledged, and
tried again with backoff (a crash meanwhile leaves them to the broker to redeliver).

Alarms and events never wait here: they keep their own path (hub.edges.mqtt).

Wiring: ``StatusBatcher(store_batch, ack)``; ``store_batch([(topic, payload, retained)])``
raises ``redis.RedisError`` to defer the batch; ``ack(message)`` acknowledges one.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Callable

import redis

from hub.edges.outage import Outage

log = logging.getLogger("haven.mqtt")

#: The most status messages stored in one round trip.
MAX_BATCH = 500
#: Retry delays while the store is unreachable, in seconds.
RETRY_MIN_S, RETRY_MAX_S = 0.2, 5.0


class StatusBatcher:
    """Stores queued status messages in batches on its own thread, then acks them."""

    def __init__(self, store_batch: Callable[[list[tuple[str, bytes, bool]]], object],
                 ack: Callable[[Any], None]):
        self._store_batch, self._ack = store_batch, ack
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-status-batches",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, message) -> None:
        """Queue a paho message (``topic``, ``payload``, ``retain``) for storing."""
        self._queue.put(message)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def _take(self) -> list:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        batch: list = []
        delay = RETRY_MIN_S
        outage = Outage("store", log, "device statuses")
        while not self._stopping.is_set():
            batch = batch or self._take()
            if not batch:
                continue
            try:
                self._store_batch([(m.topic, m.payload, bool(m.retain)) for m in batch])
            except redis.RedisError as exc:
                outage.down(exc)  # the batch stays unacknowledged: the broker keeps it
                self._stopping.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            except Exception:  # a bug: these messages are left to the broker to redeliver
                log.exception("storing %d status message(s) failed; left unacknowledged",
                              len(batch))
                batch, delay = [], RETRY_MIN_S
                continue
            outage.up()
            for message in batch:
                self._ack(message)
            batch, delay = [], RETRY_MIN_S
