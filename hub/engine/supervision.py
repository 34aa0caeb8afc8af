"""Device supervision: buttons that are offline, silent, low, stuck or failing.

A Last Will fires only while the broker lives, so each hub worker's
:class:`Supervisor` also watches for silence. Every ``interval_s`` (5 s) it reads
each site device's hash ``<prefix>:device:<id>`` (written by the alarm service),
works out its troubles with the pure :func:`troubles` and records them. Each
change (a trouble raised, or its all-clear) reaches ``notify`` once across workers.

The troubles and their thresholds are pure (hub.core.troubles); this module is the
loop that reads, records and reports them.

Its keys (each device's trouble set and outbox run, the troubles stream) belong to
hub.store.troubles (``store.troubles``).

Exactly once: every device is read (``READ_CHUNK`` per round trip); a device whose
troubles (or outbox run) change is then checked again in one transaction on fresh data
(``TroubleStore.update``); only the committing worker notifies. A worker
dying between commit and ``notify`` loses that notice (the stream keeps it).

Wiring: ``sup = Supervisor(site, store, texts.queue, broker=lambda: mqtt.link,
after_check=texts.after_check)`` (hub.engine.troubletexts batches the texts), then
``threading.Thread(target=sup.run, args=(stop,), name="supervisor").start()``.
``notify`` runs on that thread: alarms outrank troubles, so it only sends
low-priority messages (IT contacts) and never holds up alarm paging.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

from hub.core.troubles import (SILENT_AFTER_S, TROUBLE_VALUES, Trouble, TroubleNotice, diff,
                               outbox_since, troubles)
from hub.edges.outage import Outage
from hub.config.site import Device, Site
from hub.store.alarms import Store

log = logging.getLogger("haven.supervision")

#: Longest wait between checks while Redis is failing, in seconds.
MAX_BACKOFF_S = 60.0
#: Devices read per Redis round trip in a check (a read changes nothing: only devices
#: whose troubles change get a transaction).
READ_CHUNK = 500

class Supervisor:
    """Checks every site device; ``clock`` returns Unix seconds. ``broker()`` returns
    ``(connected, since_ms)`` of this worker's broker connection (hub.edges.mqtt.HubMqtt.link);
    ``after_check(now_ms)`` runs after each check (hub.engine.troubletexts sends its texts)."""

    def __init__(self, site: Site, store: Store, notify: Callable[[TroubleNotice], None], *,
                 silent_after_s: float = SILENT_AFTER_S,
                 clock: Callable[[], float] = time.time, started_ms: int | None = None,
                 broker: Callable[[], tuple[bool, int]] = lambda: (True, 0),
                 after_check: Callable[[int], None] | None = None):
        self.site, self.store, self.notify, self.clock = site, store, notify, clock
        self.silent_after_s = silent_after_s
        self.started_ms = int(clock() * 1000) if started_ms is None else started_ms
        self.broker, self.after_check = broker, after_check
        self._quiet_from = self.started_ms  # silence counts from here (this check's)

    def check(self, now_ms: int | None = None) -> list[TroubleNotice]:
        """Check every device once; returns the notices this worker sent to ``notify``.
        Raises ``redis.RedisError`` when Redis is unreachable."""
        now = int(self.clock() * 1000) if now_ms is None else now_ms
        connected, since_ms = self.broker()
        # Broker down: every device is "quiet since now", so none turns silent.
        self._quiet_from = max(self.started_ms, since_ms) if connected else now
        notices: list[TroubleNotice] = []
        devices = list(self.site.devices.values())
        for start in range(0, len(devices), READ_CHUNK):
            chunk = devices[start:start + READ_CHUNK]
            for device, read in zip(chunk, self._read(chunk)):
                since, before, current = self._evaluate(*read, now)
                if since == read[1] and current == before:
                    continue  # nothing to write: no transaction needed
                for trouble, raised in self._check_device(device, now):
                    notices.append(self._notify(device, trouble, raised, now))
        if self.after_check is not None:
            self.after_check(now)
        return notices

    def _notify(self, device: Device, trouble: Trouble, raised: bool,
                now_ms: int) -> TroubleNotice:
        notice = TroubleNotice(device.id, trouble, raised, device.branch_id, device.room_id,
                               now_ms)
        log.warning("device %s %s: %s", device.id, "TROUBLE" if raised else "all clear",
                    trouble)
        try:
            self.notify(notice)
        except Exception:  # one failed notice must not lose the others
            log.exception("notifying %s failed", notice)
        return notice

    def _read(self, devices: list[Device]) -> list[tuple[dict, str | None, set]]:
        """Each device's (status hash, outbox_since_ms, trouble set), in one round trip."""
        return self.store.troubles.read([device.id for device in devices])

    def _evaluate(self, record: Mapping[str, str], old_since: str | None, members,
                  now_ms: int) -> tuple[str | None, frozenset, frozenset]:
        """(new outbox_since_ms, troubles recorded, troubles now): pure."""
        since = outbox_since(record, old_since)
        before = frozenset(Trouble(t) for t in members if t in TROUBLE_VALUES)
        current = troubles({**record, "outbox_since_ms": since or ""}, now_ms,
                           silent_after_s=self.silent_after_s, started_ms=self._quiet_from,
                           previous=before)
        return since, before, current

    def _check_device(self, device: Device, now_ms: int) -> list[tuple[Trouble, bool]]:
        """Record the device's troubles as they are now, once across workers: the changes
        this worker committed."""
        def decide(record, old_since, members):
            since, before, current = self._evaluate(record, old_since, members, now_ms)
            return (since, *diff(before, current))

        changes = self.store.troubles.update(device.id, device.branch_id, device.room_id,
                                             now_ms, decide)
        if changes is None:
            log.warning("device %s changed under every check attempt: left to the next check",
                        device.id)
            return []
        return changes

    def run(self, stop: threading.Event, interval_s: float = 5.0) -> None:
        """Check every ``interval_s`` seconds until ``stop`` is set; for a worker thread.
        Errors are logged and retried with a doubling wait (at most 60 s)."""
        wait = interval_s
        store = Outage("store", log, "supervision")
        while not stop.is_set():
            try:
                self.check()
                store.up()
                wait = interval_s
            except Exception as exc:  # Redis down (or a bug): supervision must go on
                wait = min(MAX_BACKOFF_S, max(wait * 2, interval_s))
                if isinstance(exc, redis.RedisError):
                    store.down(exc)
                else:
                    log.exception("supervision check failed: next try in %.0f s", wait)
            stop.wait(wait)
