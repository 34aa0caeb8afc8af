"""Devices in Redis: last status and health, commands for devices, rejected messages.

Keys (under the store's prefix)::

    haven:device:<id>             hash   a device's presence (state, since_ms, firmware) and
                                         its last heartbeat's readings (heartbeat_ms ...)
    haven:checkin:<id>            hash   a worn device's lone-worker check-in: next_ms (next
                                         request due), requested_ms, answered_ms,
                                         missed_for (requested_ms already alarmed)
    haven:device-commands         stream commands for devices, consumed by hub workers
                                         (consumer group "hub") and published over MQTT
    haven:rejected                stream messages that broke the wire contract (capped)

Wiring: :class:`DeviceStore` is ``store.devices`` (hub.store.alarms.Store), given the store's
client, key builder and live-events channel.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import redis

from hub.store.redisops import WORKERS_GROUP, flat_json, read_group

#: Entries kept in the rejected-messages stream.
REJECTED_MAXLEN = 1000
#: Entries kept in the device-commands stream (acknowledged ones are trimmed first).
COMMANDS_MAXLEN = 10000
#: The consumer group of hub workers reading device commands.

_STATUSES = """
-- KEYS: device hashes; ARGV: events channel, a JSON array with, for each key in turn,
-- [state, field, value, field, value ...] (the device id is the key's last part)
-- A status (state "online"/"offline") is written and announced to dashboards; a
-- heartbeat (state "") writes its fields only: it never changes presence, and the
-- dashboards learn of it from the next snapshot. The entries travel as one JSON
-- argument: redis-py packed the ~20 arguments per heartbeat slower than cjson decodes.
for i, entry in ipairs(cjson.decode(ARGV[2])) do
  if entry[1] == '' then
    redis.call('HSET', KEYS[i], unpack(entry, 2))
  else
    redis.call('HSET', KEYS[i], 'state', entry[1], unpack(entry, 2))
    local device = string.match(KEYS[i], '[^:]+$')
    redis.call('PUBLISH', ARGV[1],
               cjson.encode({type = 'device.status', device = device, state = entry[1]}))
  end
end
return #KEYS
"""


_CHECKIN_TICK = """
-- KEYS: checkin hash; ARGV: now_ms, every_ms, grace_ms, asking (1: make requests, 0: not)
local now = tonumber(ARGV[1])
local grace = tonumber(ARGV[3])
local req = tonumber(redis.call('HGET', KEYS[1], 'requested_ms'))
local ans = tonumber(redis.call('HGET', KEYS[1], 'answered_ms'))
if req and (not ans or ans < req) and now >= req + grace
   and now < req + grace + tonumber(ARGV[2])
   and redis.call('HGET', KEYS[1], 'missed_for') ~= tostring(req) then
  redis.call('HSET', KEYS[1], 'missed_for', tostring(req))
  return {'missed', tostring(req)}
end
if ARGV[4] ~= '1' then
  redis.call('HDEL', KEYS[1], 'next_ms')  -- a new lone-worker period starts with a request
  return {}
end
local nxt = tonumber(redis.call('HGET', KEYS[1], 'next_ms'))
if not nxt or now >= nxt then
  redis.call('HSET', KEYS[1], 'requested_ms', ARGV[1], 'next_ms', now + tonumber(ARGV[2]))
  return {'request', ARGV[1]}
end
return {}
"""

_ALERT_ONCE = """
-- KEYS: alarm hash, device-commands stream, timeline stream
-- ARGV: now_ms, commands maxlen, how many commands, then each command's field/value
-- pairs (a JSON array), then each timeline entry's. An alarm's colleagues are alerted
-- once, whichever worker gets here first (the intake, or the worker that runs attempt 0
-- again after the intake's died): the alarm hash's colleagues_alerted_ms marks it, with
-- the commands and their timeline entries in the same step. Returns 1, or 0 if they were
-- alerted already.
if redis.call('HEXISTS', KEYS[1], 'colleagues_alerted_ms') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'colleagues_alerted_ms', ARGV[1])
local commands = tonumber(ARGV[3])
for i = 4, #ARGV do
  if i < 4 + commands then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(cjson.decode(ARGV[i])))
  else
    redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(ARGV[i])))
  end
end
return 1
"""

class DeviceStore:
    """Device statuses, device commands and rejected messages. ``key(*parts)`` builds a
    key (Store.key)."""

    def __init__(self, client: redis.Redis, key: Callable[..., str], events_channel: str):
        self.r, self.key, self.events_channel = client, key, events_channel
        self._statuses = client.register_script(_STATUSES)
        self._checkin_tick = client.register_script(_CHECKIN_TICK)
        self._alert_once = client.register_script(_ALERT_ONCE)

    def set_device_status(self, device_id: str, state: str, at_ms: int,
                          firmware: str | None = None, **health: Any) -> None:
        """A status (and a heartbeat's health readings) in one round trip."""
        self.set_device_statuses([(device_id, state, at_ms, firmware, health)])

    def set_device_statuses(self, statuses: list[tuple[str, str, int, str | None, dict]]
                            ) -> None:
        """Statuses ``(device, state, at_ms, firmware, health)``, in order, in one round
        trip (no transaction: each is whole on its own). A heartbeat is an entry whose
        ``state`` is ``""``: only its health fields are written (not the state, nor
        ``since_ms``, the device-clock time of the state)."""
        if not statuses:
            return
        entries = []
        for _, state, at_ms, firmware, health in statuses:
            entry = [state, "since_ms", str(at_ms)] if state else [state]
            if firmware:
                entry += ["firmware", firmware]
            for name, value in health.items():
                entry += [name, "" if value is None else str(value)]
            entries.append(entry)
        self._statuses(keys=[self.key("device", device_id) for device_id, *_ in statuses],
                       args=[self.events_channel, json.dumps(entries)])

    def device_status(self, device_id: str) -> dict[str, str]:
        return self.r.hgetall(self.key("device", device_id))

    def update_device(self, device_id: str, event: str, **fields: Any) -> None:
        """Record something a device reported (heartbeat health, check-in, self-test...)."""
        pipe = self.r.pipeline()
        pipe.hset(self.key("device", device_id),
                  mapping={k: "" if v is None else str(v) for k, v in fields.items()})
        pipe.publish(self.events_channel, json.dumps(
            {"type": f"device.{event}", "device": device_id}))
        pipe.execute()

    def heard(self, spoke: list[tuple[str, str, int, bool]]) -> None:
        """Devices that spoke: ``(device, field, at_ms, answers_checkin)`` with ``field``
        ``alarm_ms`` for an alarm or ``cancel_ms`` for a cancel, set to ``at_ms`` (hub clock,
        Unix ms), which supervision counts as a sign of life; ``answers_checkin``: the
        press also answers a worn device's pending check-in (hub.engine.checkins). One round
        trip for all of them, and one write per device and field (its latest time: a burst
        holds many presses of one device); none for an empty list."""
        if not spoke:
            return
        latest: dict[tuple[str, str], int] = {}
        answered: dict[str, int] = {}
        for device_id, field, at_ms, answers_checkin in spoke:
            latest[device_id, field] = max(at_ms, latest.get((device_id, field), at_ms))
            if answers_checkin:
                answered[device_id] = max(at_ms, answered.get(device_id, at_ms))
        pipe = self.r.pipeline(transaction=False)
        for (device_id, field), at_ms in latest.items():
            pipe.hset(self.key("device", device_id), field, at_ms)
        for device_id, at_ms in answered.items():
            pipe.hset(self.key("checkin", device_id), "answered_ms", at_ms)
        pipe.execute()

    # --- lone-worker check-ins (hub.engine.checkins decides who is asked) -------------

    def answer_checkin(self, device_id: str, now_ms: int) -> None:
        """The wearer checked in at ``now_ms``: any check-in requested before is answered."""
        self.r.hset(self.key("checkin", device_id), "answered_ms", now_ms)

    def checkin_tick(self, device_id: str, now_ms: int, every_ms: int, grace_ms: int,
                     asking: bool) -> tuple[str, int] | None:
        """One step of a worn device's check-ins, once across workers: ``("request", ms)``
        when a request is due now (``asking``: a lone worker is on duty), ``("missed",
        requested ms)`` when one went unanswered for ``grace_ms`` (once per request, and
        not for a request older than ``grace_ms + every_ms``: a hub down all that time),
        else ``None``. Not asking ends the period: the next one starts with a request."""
        result = self._checkin_tick(keys=[self.key("checkin", device_id)],
                                    args=[now_ms, every_ms, grace_ms, "1" if asking else "0"])
        return (result[0], int(result[1])) if result else None

    def checkin_requested_ms(self, device_id: str) -> int | None:
        """When the device's last check-in was requested (Unix ms), if ever."""
        requested = self.r.hget(self.key("checkin", device_id), "requested_ms")
        return int(requested) if requested else None

    def queue_device_command(self, device_id: str, cmd: str, alarm_id: str | None = None) -> None:
        """A command for a device: about one alarm (``not_delivered``), or about the device
        (locate, test, checkin_request)."""
        fields = {"device": device_id, "cmd": cmd}
        if alarm_id is not None:
            fields["alarm_id"] = alarm_id
        self.r.xadd(self.key("device-commands"), fields, maxlen=COMMANDS_MAXLEN,
                    approximate=True)

    def presences(self) -> dict[str, str]:
        """Every device the store has heard of, with its last presence (``online``,
        ``offline``, or ``unknown`` for one that only sent readings)."""
        head = self.key("device", "")
        ids = [key[len(head):] for key in self.r.scan_iter(head + "*", count=1000)]
        pipe = self.r.pipeline(transaction=False)
        for device_id in ids:
            pipe.hget(self.key("device", device_id), "state")
        return {device_id: state or "unknown" for device_id, state in zip(ids, pipe.execute())}

    def device_statuses(self, device_ids: list[str]) -> dict[str, dict[str, str]]:
        """Each device's hash (presence, firmware, health), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for device_id in device_ids:
            pipe.hgetall(self.key("device", device_id))
        return dict(zip(device_ids, pipe.execute()))

    def queue_device_commands(self, commands: list[dict[str, str]], *,
                              alarm_id: str | None = None,
                              timeline: list[dict[str, Any]] = ()) -> None:
        """Commands for devices (each ``{"device", "cmd", ...}``, every field a string,
        forwarded as the command's fields: hub.engine.commands) and entries for ``alarm_id``'s
        timeline, in one round trip (one transaction)."""
        pipe = self.r.pipeline()
        for fields in commands:
            pipe.xadd(self.key("device-commands"), fields, maxlen=COMMANDS_MAXLEN,
                      approximate=True)
        for entry in timeline:
            pipe.xadd(self.key("timeline", alarm_id), {k: str(v) for k, v in entry.items()})
        pipe.execute()

    def alert_once(self, alarm_id: str, now_ms: int, commands: list[dict[str, str]],
                   timeline: list[dict[str, Any]]) -> bool:
        """The colleagues' ``alert`` commands of an alarm (as :meth:`queue_device_commands`)
        and their timeline entries, marking the alarm alerted (field
        ``colleagues_alerted_ms``), unless its colleagues were alerted already (by this or
        another worker): ``False`` then, and nothing is queued."""
        return bool(self._alert_once(
            keys=[self.key("alarm", alarm_id), self.key("device-commands"),
                  self.key("timeline", alarm_id)],
            args=[now_ms, COMMANDS_MAXLEN, len(commands),
                  *(flat_json(fields) for fields in commands),
                  *(flat_json(entry) for entry in timeline)]))

    def read_device_commands(self, consumer: str, block_ms: int,
                             count: int = 100) -> list[tuple[str, dict[str, str]]]:
        """New commands for this worker (consumer group ``hub``): ``[(entry id, fields)]``.

        Entries a dead worker read but never acknowledged for 5 s are claimed too,
        so a command survives a worker killed mid-send.
        """
        return read_group(self.r, self.key("device-commands"), consumer, block_ms, count)

    def ack_device_command(self, entry_id: str) -> None:
        self.r.xack(self.key("device-commands"), WORKERS_GROUP, entry_id)

    def record_rejected(self, topic: str, reason: str, at_ms: int) -> None:
        """Keep a capped record of a message that broke the wire contract."""
        self.r.xadd(self.key("rejected"), {"topic": topic, "reason": reason, "at_ms": at_ms},
                    maxlen=REJECTED_MAXLEN, approximate=True)

    def rejected(self, count: int = 100) -> list[dict[str, str]]:
        """The newest rejected messages, newest first."""
        return [fields for _, fields in self.r.xrevrange(self.key("rejected"), count=count)]
