"""Redis store: alarms, timelines, notification claims, device health, live events.

The Redis connection is passed in (never global) and every key lives under one
prefix (default ``haven``)::

    haven:alarm:<id>              hash   the alarm (see model.Alarm.to_fields)
    haven:alarms:active           zset   active alarm ids, scored by received_at_ms
    haven:timeline:<id>           stream append-only timeline of one alarm
    haven:notification:<key>      string claim and outcome of one notification
    haven:escalations             zset   escalating alarm ids, scored by the next attempt's due ms
    haven:escalation:<id>         hash   ``attempt``: the number of the next attempt
    haven:device:<id>             hash   last status of a device
    haven:branch:<id>             hash   switches: drill_until_ms, lone_worker (1/0), by
    haven:overrides:<branch>      hash   phone -> "on|off:<until_ms>:<by>": ad-hoc duty changes
    haven:rejected                stream messages that broke the wire contract (capped)
    haven:device-commands         stream commands for devices, consumed by hub workers
                                         (consumer group "hub") and published over MQTT
    haven:call-retries            zset   unanswered calls to place again (notification key
                                         of the new call), scored by due ms
    haven:followups               stream pages that finally failed (from status callbacks),
                                         consumed by hub workers: call instead, call again
    haven:events                  pubsub live events for dashboards (JSON)

Each write that must be all-or-nothing is one Lua script, so a crash between
two commands cannot leave half an alarm behind, and two hub workers handling
the same alarm id cannot both create it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from .lifecycle import AlarmEvent, transition
from .model import Alarm, Delivery, NotificationKey
from .schedule import Override, Switches

#: How long notification claims are kept, in seconds: far longer than any
#: alarm can be redelivered by the broker.
CLAIM_TTL_S = 30 * 24 * 3600

#: Entries kept in the rejected-messages stream.
REJECTED_MAXLEN = 1000
#: Entries kept in the device-commands stream (acknowledged ones are trimmed first).
COMMANDS_MAXLEN = 10000
#: The consumer group of hub workers reading device commands.
COMMANDS_GROUP = "hub"

_RAISE = """
-- KEYS: alarm hash, active zset, timeline stream, escalations zset, escalation hash,
--       branch hash, branch overrides hash
-- ARGV: channel, event json, received_at_ms, alarm id, escalate (1/0), lease_ms,
--       field/value pairs...
-- Returns {created 1/0, branch switches (flat), overrides (flat)}: what attempt 0 needs.
local state = {redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7])}
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, state[1], state[2]} end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'event', 'raised', 'at_ms', ARGV[3])
if ARGV[5] == '1' then
  -- attempt 0 is due now; with a lease, the raising worker holds it (another worker
  -- runs it if that one dies before finishing)
  redis.call('HSET', KEYS[5], 'attempt', 0)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[3]) + tonumber(ARGV[6]), ARGV[4])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return {1, state[1], state[2]}
"""

_CLAIM_DUE = """
-- KEYS: escalations zset; ARGV: now_ms, lease_ms, limit, escalation key prefix, [one id]
-- Leases due escalations (pushes their score to now + lease); returns id, attempt, due_ms.
local due = {}
if ARGV[5] then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[5])
  if score and tonumber(score) <= tonumber(ARGV[1]) then due = {ARGV[5], score} end
else
  due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, ARGV[3])
end
local out = {}
for i = 1, #due, 2 do
  local id = due[i]
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', ARGV[4] .. id, 'attempt') or '0'
  out[#out + 1] = tostring(due[i + 1])
end
return out
"""

_LEASE_DUE = """
-- KEYS: a zset of jobs scored by due ms; ARGV: now_ms, lease_ms, limit
-- Leases due jobs (pushes their score to now + lease) and returns them; the worker removes
-- a job once done, so a job of a worker that died comes due again when its lease ends.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, job in ipairs(due) do
  redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), job)
end
return due
"""

_FINISH = """
-- KEYS: escalations zset, escalation hash; ARGV: alarm id, attempt done, next due ms
if tostring(redis.call('HGET', KEYS[2], 'attempt')) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], 'attempt', tonumber(ARGV[2]) + 1)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
"""

_CLAIM = """
-- KEYS: notification key; ARGV: now_ms, lease_ms, ttl_s
-- Free, or claimed by a worker that has not reported for lease_ms (it died): take it.
local v = redis.call('GET', KEYS[1])
if v then
  if string.sub(v, 1, 8) ~= 'claimed:' then return 0 end
  if tonumber(string.sub(v, 9)) > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], 'claimed:' .. ARGV[1], 'EX', ARGV[3])
return 1
"""

_RECORD = """
-- KEYS: notification key, timeline stream
-- ARGV: channel, event json, outcome, ttl, timeline field/value pairs...
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
local fields = {}
for i = 5, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('XADD', KEYS[2], '*', unpack(fields))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Raised:
    """What :meth:`Store.raise_leased` found: whether the alarm is new, and its branch's
    switches and overrides at that moment."""

    created: bool
    switches: Switches
    overrides: list[Override]


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))


def parse_switches(raw: dict[str, str]) -> Switches:
    """A branch hash (``drill_until_ms``, ``lone_worker`` 1/0, ``by``) as :class:`Switches`."""
    drill = raw.get("drill_until_ms")
    lone = raw.get("lone_worker")
    return Switches(drill_until_ms=int(drill) if drill else None,
                    lone_worker=None if lone in (None, "") else lone == "1",
                    by=raw.get("by") or None)


def parse_overrides(branch_id: str, raw: dict[str, str], now_ms: int) -> list[Override]:
    """The overrides hash (phone -> ``on|off:<until_ms>:<by>``): those in force at now_ms."""
    found = []
    for phone, value in raw.items():
        state, _, rest = value.partition(":")
        until = rest.split(":", 1)[0]
        if until.isdigit() and int(until) > now_ms:
            found.append(Override(phone, branch_id, state == "on", int(until)))
    return found


class Store:
    """Alarm state in Redis. ``client`` must be made with ``decode_responses=True``."""

    def __init__(self, client: redis.Redis, prefix: str = "haven"):
        self.r = client
        self.prefix = prefix
        self.events_channel = f"{prefix}:events"
        self._raise = client.register_script(_RAISE)
        self._record = client.register_script(_RECORD)
        self._claim_due = client.register_script(_CLAIM_DUE)
        self._finish = client.register_script(_FINISH)
        self._claim = client.register_script(_CLAIM)
        self._lease_due = client.register_script(_LEASE_DUE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "haven") -> "Store":
        """A store on ``redis://host:port/db``.

        Timeouts (seconds) and a short retry keep a dead Redis loud and quick to
        report: the MQTT edge holds the message and retries on its own schedule.
        """
        from redis.backoff import ExponentialBackoff
        from redis.retry import Retry
        client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5,
                                      socket_connect_timeout=2, health_check_interval=30,
                                      retry=Retry(ExponentialBackoff(cap=0.2, base=0.02), 2))
        return cls(client, prefix)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # --- alarms --------------------------------------------------------------

    def raise_alarm(self, alarm: Alarm, *, escalate: bool = False) -> bool:
        """Store a new alarm, and with ``escalate`` its escalation (attempt 0 due now), in
        one step; ``False`` if its id is already known (a redelivery)."""
        return self.raise_leased(alarm, escalate=escalate, lease_ms=0).created

    def raise_leased(self, alarm: Alarm, *, escalate: bool, lease_ms: int) -> "Raised":
        """:meth:`raise_alarm` in one round trip that also leases attempt 0 to the caller
        for ``lease_ms`` (0: due now, for the timers) and reads the branch's switches and
        overrides, so the caller can page at once without reading anything else."""
        event = json.dumps({"type": "alarm.raised", "alarm": alarm.to_json()})
        pairs = [x for kv in alarm.to_fields().items() for x in kv]
        created, switches, overrides = self._raise(
            keys=[self._key("alarm", alarm.id), self._key("alarms", "active"),
                  self._key("timeline", alarm.id), self._key("escalations"),
                  self._key("escalation", alarm.id), self._key("branch", alarm.branch),
                  self._key("overrides", alarm.branch)],
            args=[self.events_channel, event, alarm.received_at_ms, alarm.id,
                  "1" if escalate else "0", lease_ms, *pairs])
        return Raised(bool(created), parse_switches(_pairs(switches)),
                      parse_overrides(alarm.branch, _pairs(overrides), alarm.received_at_ms))

    # --- escalation timers ------------------------------------------------------

    def claim_due(self, now_ms: int, lease_ms: int, limit: int = 50,
                  alarm_id: str | None = None) -> list[tuple[str, int, int]]:
        """Lease the escalations due at ``now_ms`` (or just ``alarm_id``, if due) for
        ``lease_ms``: ``[(alarm id, attempt number, due ms)]``. A worker that dies holding a
        lease loses it when it runs out, and another worker runs the attempt again."""
        args = [now_ms, lease_ms, limit, self._key("escalation", "")]
        if alarm_id is not None:
            args.append(alarm_id)
        flat = self._claim_due(keys=[self._key("escalations")], args=args)
        return [(flat[i], int(flat[i + 1]), int(float(flat[i + 2])))
                for i in range(0, len(flat), 3)]

    def finish_attempt(self, alarm_id: str, attempt: int, next_due_ms: int) -> bool:
        """Attempt ``attempt`` is done: the next one is due at ``next_due_ms`` (unless the
        escalation stopped meanwhile). ``False`` if someone else already finished it."""
        return bool(self._finish(keys=[self._key("escalations"),
                                       self._key("escalation", alarm_id)],
                                 args=[alarm_id, attempt, next_due_ms]))

    def stop_escalation(self, alarm_id: str) -> None:
        self.r.zrem(self._key("escalations"), alarm_id)

    def escalation_due(self, alarm_id: str) -> int | None:
        """When the alarm's next attempt is due (ms), or ``None`` if it is not escalating."""
        score = self.r.zscore(self._key("escalations"), alarm_id)
        return None if score is None else int(score)

    def get_alarm(self, alarm_id: str) -> Alarm | None:
        fields = self.r.hgetall(self._key("alarm", alarm_id))
        return Alarm.from_fields(fields) if fields else None

    def active_alarms(self) -> list[Alarm]:
        """Active alarms, newest first."""
        ids = self.r.zrevrange(self._key("alarms", "active"), 0, -1)
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for alarm_id in ids:
            pipe.hgetall(self._key("alarm", alarm_id))
        return [Alarm.from_fields(f) for f in pipe.execute() if f]

    def timeline(self, alarm_id: str) -> list[dict[str, str]]:
        """The alarm's events, oldest first; each has an ``id`` (the stream entry id)."""
        return [{"id": entry_id, **fields}
                for entry_id, fields in self.r.xrange(self._key("timeline", alarm_id))]

    def add_timeline(self, alarm_id: str, event: str, **fields: Any) -> None:
        self.r.xadd(self._key("timeline", alarm_id),
                    {"event": event, **{k: str(v) for k, v in fields.items()}})

    def transition(self, alarm_id: str, event: AlarmEvent, *, by: str, now_ms: int,
                   reason: str | None = None, cancel_window_ms: int = 0) -> Alarm:
        """Apply a lifecycle event atomically (WATCH/MULTI) and queue the device's command.

        Raises ``KeyError`` for an unknown alarm and
        :class:`hub.lifecycle.IllegalTransition` when the event does not apply.
        """
        key = self._key("alarm", alarm_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    fields = pipe.hgetall(key)
                    if not fields:
                        raise KeyError(f"no alarm {alarm_id!r}")
                    result = transition(Alarm.from_fields(fields), event, now_ms, by=by,
                                        reason=reason, cancel_window_ms=cancel_window_ms)
                    new = result.alarm
                    pipe.multi()
                    pipe.hset(key, mapping=new.to_fields())
                    if not new.state.active:
                        pipe.zrem(self._key("alarms", "active"), alarm_id)
                    if new.state != "raised":  # a person answered, or it is over
                        pipe.zrem(self._key("escalations"), alarm_id)
                    pipe.xadd(self._key("timeline", alarm_id),
                              {"event": str(new.state), "at_ms": now_ms, "by": by,
                               "reason": reason or ""})
                    if result.device_command:
                        pipe.xadd(self._key("device-commands"),
                                  {"device": new.device, "cmd": result.device_command,
                                   "alarm_id": alarm_id}, maxlen=COMMANDS_MAXLEN,
                                  approximate=True)
                    pipe.publish(self.events_channel, json.dumps(
                        {"type": f"alarm.{new.state}", "alarm": new.to_json()}))
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue

    # --- branch switches ------------------------------------------------------------

    def branch_switches(self, branch_id: str) -> Switches:
        return parse_switches(self.r.hgetall(self._key("branch", branch_id)))

    def branch_context(self, branch_id: str, now_ms: int) -> tuple[Switches, list[Override]]:
        """A branch's switches and the overrides in force, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self._key("branch", branch_id))
        pipe.hgetall(self._key("overrides", branch_id))
        switches, overrides = pipe.execute()
        return parse_switches(switches), parse_overrides(branch_id, overrides, now_ms)

    def set_branch_switches(self, branch_id: str, *, by: str, now_ms: int,
                            drill_until_ms: int | None = ..., lone_worker: bool | None = ...
                            ) -> None:
        """Change a branch's switches (``...`` leaves one as it is, ``None`` clears it)."""
        key = self._key("branch", branch_id)
        pipe = self.r.pipeline()
        changes = {}
        for name, value in (("drill_until_ms", drill_until_ms), ("lone_worker", lone_worker)):
            if value is ...:
                continue
            if value is None:
                pipe.hdel(key, name)
            else:
                changes[name] = ("1" if value else "0") if isinstance(value, bool) else value
        pipe.hset(key, mapping={**changes, "by": by, "changed_ms": now_ms})
        pipe.publish(self.events_channel, json.dumps({"type": "branch.switches",
                                                      "branch": branch_id}))
        pipe.execute()

    def set_override(self, branch_id: str, phone: str, *, on_duty: bool, until_ms: int,
                     by: str) -> None:
        """Put a contact on or off duty at a branch until ``until_ms``, whatever the schedule."""
        self.r.hset(self._key("overrides", branch_id), phone,
                    f"{'on' if on_duty else 'off'}:{until_ms}:{by}")
        self.r.publish(self.events_channel, json.dumps({"type": "branch.overrides",
                                                        "branch": branch_id}))

    def overrides(self, branch_id: str, now_ms: int) -> list[Override]:
        """Overrides still in force at ``now_ms``."""
        return parse_overrides(branch_id, self.r.hgetall(self._key("overrides", branch_id)),
                               now_ms)

    # --- device commands (hub workers publish them over MQTT) -----------------------

    def queue_device_command(self, device_id: str, cmd: str, alarm_id: str | None = None) -> None:
        """A command for a device: about one alarm (``not_delivered``), or about the device
        (locate, test, checkin_request)."""
        fields = {"device": device_id, "cmd": cmd}
        if alarm_id is not None:
            fields["alarm_id"] = alarm_id
        self.r.xadd(self._key("device-commands"), fields, maxlen=COMMANDS_MAXLEN,
                    approximate=True)

    def read_device_commands(self, consumer: str, block_ms: int,
                             count: int = 100) -> list[tuple[str, dict[str, str]]]:
        """New commands for this worker (consumer group ``hub``): ``[(entry id, fields)]``.

        Entries a dead worker read but never acknowledged for 5 s are claimed too,
        so a command survives a worker killed mid-send.
        """
        return self._read_group("device-commands", consumer, block_ms, count)

    def _read_group(self, name: str, consumer: str, block_ms: int,
                    count: int) -> list[tuple[str, dict[str, str]]]:
        """Read a work stream as one of the hub workers' consumer group, stale claims first."""
        stream = self._key(name)
        try:
            self.r.xgroup_create(stream, COMMANDS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        _, stale, _ = self.r.xautoclaim(stream, COMMANDS_GROUP, consumer, min_idle_time=5000,
                                        count=count)
        if stale:
            return [(entry_id, fields) for entry_id, fields in stale if fields]
        got = self.r.xreadgroup(COMMANDS_GROUP, consumer, {stream: ">"}, count=count,
                                block=block_ms)
        return [(entry_id, fields) for _, entries in got for entry_id, fields in entries]

    # --- delivery follow-ups (from Twilio's status callbacks) ----------------------------

    def queue_followup(self, key: str, status: str) -> None:
        """A page that finally failed (SMS undelivered, call unanswered): for a hub worker."""
        self.r.xadd(self._key("followups"), {"key": key, "status": status},
                    maxlen=COMMANDS_MAXLEN, approximate=True)

    def read_followups(self, consumer: str, block_ms: int,
                       count: int = 100) -> list[tuple[str, dict[str, str]]]:
        return self._read_group("followups", consumer, block_ms, count)

    def schedule_call_retry(self, key: NotificationKey, due_ms: int) -> None:
        """Place the call ``key`` at ``due_ms`` (durable: any worker's timer places it)."""
        self.r.zadd(self._key("call-retries"), {str(key): due_ms})

    def lease_call_retries(self, now_ms: int, lease_ms: int, limit: int = 50) -> list[str]:
        """Call retries due at ``now_ms``, leased to the caller for ``lease_ms``; call
        :meth:`call_retry_done` for each once placed (or given up)."""
        return self._lease_due(keys=[self._key("call-retries")], args=[now_ms, lease_ms, limit])

    def call_retry_done(self, key_text: str) -> None:
        self.r.zrem(self._key("call-retries"), key_text)

    def ack_followup(self, entry_id: str) -> None:
        self.r.xack(self._key("followups"), COMMANDS_GROUP, entry_id)

    def ack_device_command(self, entry_id: str) -> None:
        self.r.xack(self._key("device-commands"), COMMANDS_GROUP, entry_id)

    # --- notifications -------------------------------------------------------

    def claim_notification(self, key: NotificationKey, now_ms: int, lease_ms: int) -> bool:
        """Atomically claim the right to send ``key``. ``False`` if it was sent, failed, or
        is claimed by a worker heard from within ``lease_ms`` (a stale claim is taken over:
        its worker died between claiming and recording)."""
        return bool(self._claim(keys=[self._key("notification", str(key))],
                                args=[now_ms, lease_ms, CLAIM_TTL_S]))

    def claim_notifications(self, alarm_id: str, keys: list[NotificationKey], now_ms: int,
                            lease_ms: int, *, timeline: dict[str, Any] | None = None
                            ) -> list[bool]:
        """:meth:`claim_notification` for each of ``keys`` (all of ``alarm_id``), after
        writing ``timeline`` (an entry of the alarm's timeline), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        if timeline is not None:
            pipe.xadd(self._key("timeline", alarm_id),
                      {k: str(v) for k, v in timeline.items()})
        for key in keys:
            self._claim(keys=[self._key("notification", str(key))],
                        args=[now_ms, lease_ms, CLAIM_TTL_S], client=pipe)
        results = pipe.execute()
        return [bool(x) for x in results[0 if timeline is None else 1:]]

    def notification_outcome(self, key: NotificationKey) -> str | None:
        return self.r.get(self._key("notification", str(key)))

    def notification_outcomes(self, keys: list[NotificationKey]) -> list[str | None]:
        """:meth:`notification_outcome` of each key, in one round trip."""
        if not keys:
            return []
        return self.r.mget([self._key("notification", str(key)) for key in keys])

    def record_notification(self, key: NotificationKey, contact_name: str,
                            delivery: Delivery, at_ms: int) -> None:
        """Record what happened to a claimed notification, in its claim and the timeline."""
        outcome = f"sent:{delivery.sid}" if delivery.ok else \
            f"failed:{delivery.code or ''}:{'retryable' if delivery.retryable else 'permanent'}"
        timeline = {"event": "notified" if delivery.ok else "notify_failed", "at_ms": at_ms,
                    "step": key.step, "channel": str(key.channel), "contact": contact_name,
                    "to": key.contact, "sid": delivery.sid or "",
                    "error": delivery.error or "", "code": delivery.code or ""}
        event = json.dumps({"type": "alarm.notified", "alarm_id": key.alarm_id,
                            "ok": delivery.ok, "contact": contact_name,
                            "channel": str(key.channel)})
        pairs = [str(x) for kv in timeline.items() for x in kv]
        self._record(keys=[self._key("notification", str(key)),
                           self._key("timeline", key.alarm_id)],
                     args=[self.events_channel, event, outcome, CLAIM_TTL_S, *pairs])

    # --- devices and rejects ---------------------------------------------------

    def set_device_status(self, device_id: str, state: str, at_ms: int,
                          firmware: str | None = None, **health: Any) -> None:
        """A status (and a heartbeat's health readings) in one round trip."""
        fields: dict[str, Any] = {"state": state, "since_ms": at_ms}
        if firmware:
            fields["firmware"] = firmware
        fields.update({k: "" if v is None else str(v) for k, v in health.items()})
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self._key("device", device_id), mapping=fields)
        pipe.publish(self.events_channel, json.dumps(
            {"type": "device.status", "device": device_id, "state": state}))
        pipe.execute()

    def device_status(self, device_id: str) -> dict[str, str]:
        return self.r.hgetall(self._key("device", device_id))

    def update_device(self, device_id: str, event: str, **fields: Any) -> None:
        """Record something a device reported (heartbeat health, check-in, self-test...)."""
        pipe = self.r.pipeline()
        pipe.hset(self._key("device", device_id),
                  mapping={k: "" if v is None else str(v) for k, v in fields.items()})
        pipe.publish(self.events_channel, json.dumps(
            {"type": f"device.{event}", "device": device_id}))
        pipe.execute()

    def record_rejected(self, topic: str, reason: str, at_ms: int) -> None:
        """Keep a capped record of a message that broke the wire contract."""
        self.r.xadd(self._key("rejected"), {"topic": topic, "reason": reason, "at_ms": at_ms},
                    maxlen=REJECTED_MAXLEN, approximate=True)

    def rejected(self, count: int = 100) -> list[dict[str, str]]:
        """The newest rejected messages, newest first."""
        return [fields for _, fields in self.r.xrevrange(self._key("rejected"), count=count)]
