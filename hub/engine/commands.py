"""Forwards queued device commands (Redis stream) to devices over MQTT.

Whoever changes an alarm - the dashboard, ``haven alarm``, the hub itself -
queues the device's command (``acknowledged``, ``resolved``, ``locate``...) in
the store's ``device-commands`` stream in the same transaction. Every hub
worker runs one forwarder; the consumer group hands each command to one of
them, and a command a dead worker took but never acknowledged is claimed by
another after 5 s.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

from device.protocol import Command, Topics

from hub.edges.outage import Outage
from hub.store.alarms import Store

log = logging.getLogger("haven.hub")

#: How long one read waits for new commands, in milliseconds (also the stop latency).
BLOCK_MS = 1000


class CommandForwarder:
    def __init__(self, store: Store, publish: Callable[[str, bytes], None], *, consumer: str,
                 topics: Topics = Topics(), clock: Callable[[], float] = time.time,
                 on_command: Callable[[dict[str, str]], None] | None = None):
        """``on_command`` also sees each command this worker forwards (the hub sends the
        all-clear when it forwards a ``resolved``); its errors are logged, not fatal."""
        self.store, self.publish, self.consumer = store, publish, consumer
        self.on_command = on_command
        self.topics, self.clock = topics, clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="device-commands", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(BLOCK_MS / 1000 + 2)

    def forward_once(self, block_ms: int = BLOCK_MS) -> int:
        """Read, publish and acknowledge one batch; returns how many were forwarded."""
        entries = self.store.devices.read_device_commands(self.consumer, block_ms)
        for entry_id, fields in entries:
            cmd = Command(cmd=fields["cmd"], alarm_id=fields.get("alarm_id") or None,
                          at=int(self.clock() * 1000), drill=fields.get("drill") == "1",
                          kind=fields.get("kind"), room=fields.get("room"),
                          reason=fields.get("reason"))
            self.publish(self.topics.cmd(fields["device"]), cmd.to_json())
            if self.on_command is not None:
                try:
                    self.on_command(fields)
                except Exception:
                    log.exception("after forwarding %s to %s", cmd.cmd, fields["device"])
            self.store.devices.ack_device_command(entry_id)
            log.info("told device %s: %s%s", fields["device"], cmd.cmd,
                     f" (alarm {cmd.alarm_id})" if cmd.alarm_id else "")
        return len(entries)

    def _run(self) -> None:
        delay = 0.2
        outage = Outage("store", log, "device commands")
        while not self._stop.is_set():
            try:
                self.forward_once()
                outage.up()
                delay = 0.2
            except redis.RedisError as exc:
                outage.down(exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
