"""Redis store: alarms, timelines, page claims, device health, live events.

The Redis connection is passed in (never global) and every key lives under one
prefix (default ``haven``)::

    haven:alarm:<id>              hash   the alarm (see model.Alarm.to_fields)
    haven:alarms:active           zset   active alarm ids, scored by received_at_ms
    haven:timeline:<id>           stream append-only timeline of one alarm
    haven:notification:<key>      string claim and outcome of one page (a stored name, kept)
    haven:escalations             zset   escalating alarm ids, scored by the next attempt's due ms
    haven:escalation:<id>         hash   ``attempt``: the number of the next attempt
    haven:device:<id>             hash   last status of a device
    haven:branch:<id>             hash   switches: drill_until_ms, lone_worker (1/0), by
    haven:overrides:<branch>      hash   phone -> "on|off:<until_ms>:<by>": ad-hoc duty changes
    haven:rejected                stream messages that broke the wire contract (capped)
    haven:device-commands         stream commands for devices, consumed by hub workers
                                         (consumer group "hub") and published over MQTT
    haven:call-retries            zset   unanswered calls to place again (page key
                                         of the new call), scored by due ms
    haven:followups               stream pages that finally failed (from status callbacks),
                                         consumed by hub workers: call instead, call again
    haven:nobody-reached:<id>:<n> string marks attempt n of an alarm as having reached
                                         nobody (once across workers)
    haven:events                  pubsub live events for dashboards (JSON)

This module holds alarms, timelines, transitions and escalation timers; branch switches
(:mod:`hub.store.branches`), page claims and follow-ups
(:mod:`hub.store.pages`) and devices (:mod:`hub.store.devices`) are mixins of
the one :class:`Store`.

Each write that must be all-or-nothing is one Lua script, so a crash between
two commands cannot leave half an alarm behind, and two hub workers handling
the same alarm id cannot both create it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Callable

import redis

from hub.core.drill import make_real
from hub.core.lifecycle import AlarmEvent, transition
from hub.core.model import SAFE_ROOM_KIND, Alarm, PageKey
from hub.store.branches import SHELTER_FIELD, BranchStore, parse_overrides, parse_switches
from hub.store.devices import COMMANDS_MAXLEN, DeviceStore
from hub.store.troubles import TroubleStore
from hub.store.pages import CLAIM_TTL_S, PageStore, finish_checked_lua, finished_or_failed
from hub.config.redistarget import RedisTarget, connect
from hub.store.redisops import flat_json, run_scripts

__all__ = ["Store", "Raised", "RaiseRequest", "CLAIM_TTL_S", "parse_switches", "parse_overrides"]

_RAISE = """
-- KEYS: alarm hash, active zset, timeline stream, escalations zset, escalation hash,
--       branch hash, branch overrides hash, then page keys of attempt 0
-- ARGV: channel, event json, received_at_ms, alarm id, escalate (1/0), lease_ms,
--       the alarm's fields (a JSON array: field, value, field, value ...), expected
--       branch state ('' for none), claim ttl_s, the attempt's timeline entry (a JSON
--       array of field/value pairs, '[]' for none)
-- Returns {created 1/0, branch switches (flat), overrides (flat), claimed 1/0}.
-- The caller planned attempt 0 from the branch state it saw last; when the state is
-- still that one, its pages are claimed here too, and it pages without another trip.
-- (Fields travel as one JSON argument each: a Redis argument costs the client far more
-- to pack than cjson costs the server to decode.)
local state = {redis.call('HGETALL', KEYS[6]), redis.call('HGETALL', KEYS[7])}
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, state[1], state[2], 0} end
redis.call('HSET', KEYS[1], unpack(cjson.decode(ARGV[7])))
-- A drill alarm or a real one, decided once, here, from the branch as it is now
-- (hub.core.schedule.drill_in_force); never again from the branch (hub.core.drill).
local drill_until = tonumber(redis.call('HGET', KEYS[6], 'drill_until_ms') or '')
local drill = (drill_until and tonumber(ARGV[3]) < drill_until) and '1' or '0'
redis.call('HSET', KEYS[1], 'drill', drill)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('XADD', KEYS[3], '*', 'event', 'raised', 'at_ms', ARGV[3], 'drill', drill)
if ARGV[5] == '1' then
  -- attempt 0 is due now; with a lease, the raising worker holds it (another worker
  -- runs it if that one dies before finishing)
  redis.call('HSET', KEYS[5], 'attempt', 0)
  redis.call('ZADD', KEYS[4], tonumber(ARGV[3]) + tonumber(ARGV[6]), ARGV[4])
end
redis.call('PUBLISH', ARGV[1], ARGV[2])
local seen = table.concat(state[1], '\\31') .. '\\30' .. table.concat(state[2], '\\31')
if ARGV[8] == '' or ARGV[8] ~= seen then return {1, state[1], state[2], 0} end
local entry = cjson.decode(ARGV[10])
if #entry > 0 then redis.call('XADD', KEYS[3], '*', unpack(entry)) end
for k = 8, #KEYS do
  redis.call('SET', KEYS[k], 'claimed:' .. ARGV[3], 'EX', ARGV[9])
end
return {1, state[1], state[2], 1}
"""

_CLAIM_DUE = """
-- KEYS: escalations zset, the workers' backlogs hash
-- ARGV: now_ms, lease_ms, limit, escalation key prefix, worker id ('': no balancing),
--       its backlog (pages queued), defer_ms, [one id]
-- Leases due escalations (pushes their score to now + lease); returns id, attempt, due_ms.
-- Balancing: a worker reports its backlog; while another worker heard within 2 s has a
-- shorter one, it leases only what is overdue by defer_ms (that worker's timer takes the
-- rest first). Backlogs not heard of for a minute (a worker gone) are dropped.
local now, cutoff = tonumber(ARGV[1]), tonumber(ARGV[1])
if ARGV[5] ~= '' then
  local mine = tonumber(ARGV[6])
  redis.call('HSET', KEYS[2], ARGV[5], ARGV[6] .. ':' .. ARGV[1])
  local all = redis.call('HGETALL', KEYS[2])
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[5] then
      local backlog, at = string.match(all[i + 1], '^(%d+):(%d+)$')
      if not at or tonumber(at) < now - 60000 then
        redis.call('HDEL', KEYS[2], all[i])
      elseif tonumber(at) > now - 2000 and tonumber(backlog) < mine then
        cutoff = now - tonumber(ARGV[7])
      end
    end
  end
end
local due = {}
if ARGV[8] then
  local score = redis.call('ZSCORE', KEYS[1], ARGV[8])
  if score and tonumber(score) <= cutoff then due = {ARGV[8], score} end
else
  due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff, 'WITHSCORES', 'LIMIT', 0, ARGV[3])
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


_RENEW_LEASES = """
-- KEYS: escalations zset, then n page keys, then the escalation hash of each attempt
-- ARGV: now_ms, claim ttl_s, lease_ms, n, then each page's claim ms, then each attempt's
--       alarm id and number
-- Renews a worker's queued page claims and the leases of its attempts still paging, in
-- one step. A page still holding its claim (no other worker took it over) restarts its
-- lease from now: 1, else 0. An attempt still current (its escalation not stopped, not
-- finished meanwhile) is leased to now + lease_ms unless it already is longer: 1, else 0.
local now, n, out = tonumber(ARGV[1]), tonumber(ARGV[4]), {}
for k = 1, n do
  if redis.call('GET', KEYS[k + 1]) == 'claimed:' .. ARGV[k + 4] then
    redis.call('SET', KEYS[k + 1], 'claimed:' .. ARGV[1], 'EX', ARGV[2])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
local until_ms = now + tonumber(ARGV[3])
for a = 1, #KEYS - n - 1 do
  local id, number = ARGV[n + 3 + 2 * a], ARGV[n + 4 + 2 * a]
  local score = redis.call('ZSCORE', KEYS[1], id)
  if score and tostring(redis.call('HGET', KEYS[n + 1 + a], 'attempt')) == number then
    if tonumber(score) < until_ms then redis.call('ZADD', KEYS[1], until_ms, id) end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""


_SHIFT = """
-- KEYS: step marker, then the zsets of due times (escalations, call retries, page
--       retries); ARGV: delta_ms, marker ttl_s
-- Moves every due time by delta_ms, once per clock step: the first worker to report a
-- step (identified by the marker) moves them; the others, seeing the same step, do not.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return -1 end
local moved = 0
for k = 2, #KEYS do
  local entries = redis.call('ZRANGE', KEYS[k], 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    redis.call('ZADD', KEYS[k], tonumber(entries[i + 1]) + tonumber(ARGV[1]), entries[i])
    moved = moved + 1
  end
end
return moved
"""


# KEYS: escalations zset, escalation hash, then the attempt's page keys
# ARGV: alarm id, attempt done, next due ms
_FINISH_CHECKED = finish_checked_lua(zset=1, escalation=2, first_page=3, alarm=1, attempt=2,
                                     due=3)


_NOBODY_REACHED = """
-- KEYS: alarm hash, the attempt's marker, timeline stream, device-commands stream
-- ARGV: attempt, now_ms, pages tried, how, marker ttl_s, commands maxlen, channel, event json,
--       refused by the provider (1/0)
-- Once per attempt, while the alarm is raised: marks the alarm (nobody_reached_ms), adds
-- the timeline entry and queues the device's not_delivered. Returns 1 if marked now,
-- 0 if already marked, -1 if the alarm is not raised (or gone).
if redis.call('HGET', KEYS[1], 'state') ~= 'raised' then return -1 end
if not redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], 'nobody_reached_ms', ARGV[2])
-- the provider refused every page (ARGV[9] = 1): the next page it accepts tells the device
-- 'paging'; else (pages accepted, then reported not delivered) a page reported reaching
-- someone does (clear_nobody_reached)
if ARGV[9] == '1' and redis.call('HGET', KEYS[1], 'not_delivered') ~= '1' then
  redis.call('HSET', KEYS[1], 'not_delivered', '1', 'not_delivered_at_ms', ARGV[2])
end
redis.call('XADD', KEYS[3], '*', 'event', 'delivery_failed', 'at_ms', ARGV[2],
           'attempt', ARGV[1], 'tried', ARGV[3], 'how', ARGV[4])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*', 'device',
           redis.call('HGET', KEYS[1], 'device'), 'cmd', 'not_delivered',
           'alarm_id', redis.call('HGET', KEYS[1], 'id'))
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 1
"""


_CLEAR_NOBODY_REACHED = """
-- KEYS: alarm hash, timeline stream, device-commands stream
-- ARGV: now_ms, commands maxlen, channel, event json, alarm id
-- Unmarks an alarm that reached nobody: 1, or 0 if it was not marked. Its device hears
-- 'paging' unless a page the provider accepted after a refusal told it (not_delivered 0).
local since = redis.call('HGET', KEYS[1], 'nobody_reached_ms')
if not since then return 0 end
redis.call('HDEL', KEYS[1], 'nobody_reached_ms')
if redis.call('HGET', KEYS[1], 'not_delivered') ~= '0' then
  redis.call('HSET', KEYS[1], 'not_delivered', '0')
  redis.call('XADD', KEYS[2], '*', 'event', 'paging_resumed', 'at_ms', ARGV[1],
             'after_ms', tostring(tonumber(ARGV[1]) - tonumber(since)))
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'device',
             redis.call('HGET', KEYS[1], 'device'), 'cmd', 'paging', 'alarm_id', ARGV[5])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""


@dataclass(frozen=True)
class Raised:
    """What :meth:`Store.raise_leased` found: whether the alarm is new, and its branch's
    state at that moment."""

    created: bool
    #: The branch's switches and overrides as read (flat; hub.store.branches.parse_seen
    #: reads them), also to plan the next alarm's attempt 0 before raising it.
    seen: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
    #: Attempt 0's pages were claimed with the alarm (the caller's plan was current).
    claimed: bool = False


@dataclass(frozen=True)
class RaiseRequest:
    """One alarm to raise (see :meth:`Store.raise_leased` for the fields' meaning)."""

    alarm: Alarm
    escalate: bool
    lease_ms: int
    expect: tuple[tuple[str, ...], tuple[str, ...]] | None = None
    claims: tuple[PageKey, ...] = ()
    timeline: dict[str, Any] | None = None


def _raised(reply: list) -> Raised:
    created, switches, overrides, claimed = reply
    return Raised(bool(created), (tuple(switches), tuple(overrides)), bool(claimed))


def state_fingerprint(seen: tuple[tuple[str, ...], tuple[str, ...]]) -> str:
    """How the raise script compares a branch state the caller saw with the current one."""
    return "\x1f".join(seen[0]) + "\x1e" + "\x1f".join(seen[1])


class Store:
    """Haven's state in Redis: the alarms here, and one part per other concern, each given
    the client and :meth:`key`: ``store.branches`` (switches, shelters, duty overrides:
    hub.store.branches), ``store.pages`` (claims, records, follow-ups, retries:
    hub.store.pages), ``store.devices`` (statuses, check-ins, commands, rejected messages:
    hub.store.devices) and ``store.troubles`` (devices' troubles, the texts that tell
    them, the broker-outage report: hub.store.troubles). ``client`` must be made with
    ``decode_responses=True``."""

    def __init__(self, client: redis.Redis, prefix: str = "haven"):
        self.r = client
        self.prefix = prefix
        self.events_channel = f"{prefix}:events"
        self._raise = client.register_script(_RAISE)
        self._claim_due = client.register_script(_CLAIM_DUE)
        self._finish_checked = client.register_script(_FINISH_CHECKED)
        self._shift = client.register_script(_SHIFT)
        self._renew_leases = client.register_script(_RENEW_LEASES)
        self._nobody_reached = client.register_script(_NOBODY_REACHED)
        self._clear_nobody_reached = client.register_script(_CLEAR_NOBODY_REACHED)
        self.branches = BranchStore(client, self.key, self.events_channel)
        self.pages = PageStore(client, self.key, self.events_channel)
        self.devices = DeviceStore(client, self.key, self.events_channel)
        self.troubles = TroubleStore(client, self.key, self.events_channel)

    def warm_up(self) -> None:
        """Every Lua script loaded before the first alarm (hub start): otherwise the first
        alarm pays an extra round trip per script. Raises ``redis.RedisError``."""
        scripts = [v for part in (self, self.pages, self.devices, self.troubles)
                   for v in vars(part).values()
                   if isinstance(v, redis.commands.core.Script)]
        with self.r.pipeline(transaction=False) as pipe:  # its connection stays in the pool
            for script in scripts:
                pipe.script_load(script.script)
            pipe.execute()

    def run_scripts(self, calls: list[tuple[Any, list[str], list[Any]]]) -> list[Any]:
        """Run ``[(script, keys, args)]`` in one pipeline of EVALSHA (hub.store.redisops)."""
        return run_scripts(self.r, calls)

    @classmethod
    def from_url(cls, url: str | RedisTarget, prefix: str = "haven") -> "Store":
        """A store on ``redis://host:port/db``, or on a :class:`hub.config.redistarget.RedisTarget`
        (a primary found through Sentinel); connection options in hub.config.redistarget."""
        return cls(connect(url), prefix)

    def key(self, *parts: str) -> str:
        """The Redis key ``<prefix>:<part>:<part>...``: every key of Haven is built here, so
        one hub's keys never meet another's on a shared server (``prefix``, default
        ``haven``). The key families are listed in docs/architecture.md."""
        return ":".join((self.prefix, *parts))

    # --- alarms --------------------------------------------------------------

    def raise_alarm(self, alarm: Alarm, *, escalate: bool = False) -> bool:
        """Store a new alarm, and with ``escalate`` its escalation (attempt 0 due now), in
        one step; ``False`` if its id is already known (a redelivery)."""
        return self.raise_leased(alarm, escalate=escalate, lease_ms=0).created

    def raise_leased(self, alarm: Alarm, *, escalate: bool, lease_ms: int,
                     expect: tuple[tuple[str, ...], tuple[str, ...]] | None = None,
                     claims: list[PageKey] = (),
                     timeline: dict[str, Any] | None = None) -> Raised:
        """:meth:`raise_alarm` in one round trip that also leases attempt 0 to the caller
        for ``lease_ms`` (0: due now, for the timers) and reads the branch's switches and
        overrides. With ``expect`` (a :attr:`Raised.seen` of an earlier raise) the caller
        planned attempt 0 from that state: if it is still current, ``claims`` (attempt 0's
        pages) are claimed and ``timeline`` (its escalation entry) written in the same
        trip, and :attr:`Raised.claimed` is true."""
        return self.raise_many([RaiseRequest(alarm, escalate, lease_ms, expect,
                                             tuple(claims), timeline)])[0]

    def raise_many(self, requests: list["RaiseRequest"]) -> list[Raised]:
        """:meth:`raise_leased` for several alarms in one round trip (a burst read from the
        broker at once), in order; each alarm is still stored all-or-nothing by its own
        script. Raises ``redis.RedisError`` if the store cannot be reached (then any of
        them may or may not be stored: a retry finds those as already known)."""
        replies = self.run_scripts([(self._raise, *self._raise_args(request))
                                    for request in requests])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return [_raised(reply) for reply in replies]

    def _raise_args(self, request: "RaiseRequest") -> tuple[list[str], list[Any]]:
        alarm, expect = request.alarm, request.expect
        event = json.dumps({"type": "alarm.raised", "alarm": alarm.to_json()})
        pairs = flat_json(alarm.to_fields())
        entry = flat_json(request.timeline or {})
        keys = [self.key("alarm", alarm.id), self.key("alarms", "active"),
                self.key("timeline", alarm.id), self.key("escalations"),
                self.key("escalation", alarm.id), self.key("branch", alarm.branch),
                self.key("overrides", alarm.branch),
                *(self.key("notification", str(key)) for key in request.claims)]
        args = [self.events_channel, event, alarm.received_at_ms, alarm.id,
                "1" if request.escalate else "0", request.lease_ms, pairs,
                state_fingerprint(expect) if expect is not None else "", CLAIM_TTL_S, entry]
        return keys, args

    # --- escalation timers ------------------------------------------------------

    def claim_due(self, now_ms: int, lease_ms: int, limit: int = 50,
                  alarm_id: str | None = None, *, worker: str = "", backlog: int = 0,
                  defer_ms: int = 0) -> list[tuple[str, int, int]]:
        """Lease the escalations due at ``now_ms`` (or just ``alarm_id``, if due) for
        ``lease_ms``: ``[(alarm id, attempt number, due ms)]``. A worker that dies holding a
        lease loses it when it runs out, and another worker runs the attempt again.

        ``worker`` (an id) and ``backlog`` (its pages waiting for a sender) balance the
        workers: while another worker reported a shorter backlog within 2 s, this one
        leases only escalations due ``defer_ms`` ago or more, so the less busy worker's
        timer takes new rounds first (key ``escalation-workers``)."""
        args = [now_ms, lease_ms, limit, self.key("escalation", ""), worker, backlog,
                defer_ms]
        if alarm_id is not None:
            args.append(alarm_id)
        flat = self._claim_due(keys=[self.key("escalations"), self.key("escalation-workers")],
                               args=args)
        return [(flat[i], int(flat[i + 1]), int(float(flat[i + 2])))
                for i in range(0, len(flat), 3)]

    def renew_leases(self, claims: list[tuple[PageKey, int]], attempts: list[tuple[str, int]],
                     now_ms: int, lease_ms: int) -> tuple[list[bool], list[bool]]:
        """In one round trip: renew each page claim ``(key, claim ms)`` still held
        (:meth:`hub.store.pages.PageStore.renew_claims`), and lease each attempt
        ``(alarm id, number)`` still current until ``now_ms + lease_ms``. Returns which of
        each were renewed (an attempt not renewed was finished or stopped meanwhile)."""
        if not claims and not attempts:
            return [], []
        found = self._renew_leases(
            keys=[self.key("escalations"),
                  *(self.key("notification", str(key)) for key, _ in claims),
                  *(self.key("escalation", alarm_id) for alarm_id, _ in attempts)],
            args=[now_ms, CLAIM_TTL_S, lease_ms, len(claims), *(ms for _, ms in claims),
                  *(str(x) for pair in attempts for x in pair)])
        kept = [bool(x) for x in found]
        return kept[:len(claims)], kept[len(claims):]

    def finish_attempt(self, alarm_id: str, attempt: int, next_due_ms: int) -> bool:
        """Attempt ``attempt`` is done: the next one is due at ``next_due_ms`` (unless the
        escalation stopped meanwhile). ``False`` if someone else already finished it."""
        return bool(self._finish_checked(keys=[self.key("escalations"),
                                               self.key("escalation", alarm_id)],
                                         args=[alarm_id, attempt, next_due_ms]))

    def finish_unless_all_failed(self, alarm_id: str, attempt: int, next_due_ms: int,
                                 keys: list[PageKey]) -> bool | None:
        """:meth:`finish_attempt`, in the same round trip as checking the attempt's pages
        (``keys``): ``None``, finishing nothing, when every one of them failed (the caller
        reports the delivery failure, then calls :meth:`finish_attempt`)."""
        return finished_or_failed(self._finish_checked(
            keys=[self.key("escalations"), self.key("escalation", alarm_id),
                  *(self.key("notification", str(key)) for key in keys)],
            args=[alarm_id, attempt, next_due_ms]))

    def shift_schedule(self, delta_ms: int, step_id: str) -> int | None:
        """The wall clock stepped by ``delta_ms``: move every escalation, call retry and page
        retry due time by it, unless a worker already did for this step (``step_id``, the
        same for every worker that saw it, e.g. the new wall-monotonic offset in seconds).
        Returns how many were moved, or ``None`` if another worker had moved them."""
        moved = int(self._shift(keys=[self.key("clock-step", step_id),
                                      self.key("escalations"), self.key("call-retries"),
                                      self.key("page-retries")],
                                args=[delta_ms, 3600]))
        return None if moved < 0 else moved

    def stop_escalation(self, alarm_id: str) -> None:
        self.r.zrem(self.key("escalations"), alarm_id)

    def escalation_due(self, alarm_id: str) -> int | None:
        """When the alarm's next attempt is due (ms), or ``None`` if it is not escalating."""
        score = self.r.zscore(self.key("escalations"), alarm_id)
        return None if score is None else int(score)

    def get_alarm(self, alarm_id: str) -> Alarm | None:
        fields = self.r.hgetall(self.key("alarm", alarm_id))
        return Alarm.from_fields(fields) if fields else None

    def alarm_ids_starting(self, prefix: str, limit: int = 10) -> list[str]:
        """Ids of stored alarms (active or ended) that start with ``prefix``: at most
        ``limit`` of them. A SCAN of the alarm keys, for the CLI, not for a hot path."""
        head = self.key("alarm", "")
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", head + prefix) + "*"
        found: list[str] = []
        for key in self.r.scan_iter(match=pattern, count=1000):
            found.append(key[len(head):])
            if len(found) >= limit:
                break
        return found

    def active_alarms(self) -> list[Alarm]:
        """Active alarms, newest first."""
        ids = self.r.zrevrange(self.key("alarms", "active"), 0, -1)
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for alarm_id in ids:
            pipe.hgetall(self.key("alarm", alarm_id))
        return [Alarm.from_fields(f) for f in pipe.execute() if f]

    def timeline(self, alarm_id: str) -> list[dict[str, str]]:
        """The alarm's events, oldest first; each has an ``id`` (the stream entry id)."""
        return [{"id": entry_id, **fields}
                for entry_id, fields in self.r.xrange(self.key("timeline", alarm_id))]

    def attempt_paged_at(self, alarm_id: str, attempt: int) -> int | None:
        """When the last page of attempt ``attempt`` went out (ms), from the timeline."""
        times = [int(e["at_ms"]) for e in self.timeline(alarm_id)
                 if e.get("event") in ("notified", "notify_failed")
                 and e.get("step") == str(attempt) and e.get("at_ms", "").isdigit()]
        return max(times, default=None)

    def mark_nobody_reached(self, alarm_id: str, attempt: int, now_ms: int, *, tried: int,
                            how: str, refused: bool = False) -> int:
        """Attempt ``attempt`` of a raised alarm reached nobody (``tried`` pages; ``how``
        we know, for the timeline): in one script, once across workers, the alarm is marked
        (``nobody_reached_ms``, shown by the dashboard), a ``delivery_failed`` timeline
        entry is added and the device's ``not_delivered`` command queued. Returns 1 if this
        call did it, 0 if it was done already, -1 if the alarm is not raised."""
        event = json.dumps({"type": "alarm.nobody_reached", "alarm_id": alarm_id,
                            "attempt": attempt})
        return int(self._nobody_reached(
            keys=[self.key("alarm", alarm_id),
                  self.key("nobody-reached", alarm_id, str(attempt)),
                  self.key("timeline", alarm_id), self.key("device-commands")],
            args=[attempt, now_ms, tried, how, CLAIM_TTL_S, COMMANDS_MAXLEN,
                  self.events_channel, event, int(refused)]))

    def clear_nobody_reached(self, alarm_id: str, now_ms: int) -> bool:
        """A page reached someone after all (a delivery report): the alarm is no longer
        shown as reaching nobody, and its device, told NOT delivered, is told ``paging``
        unless a page the provider accepted told it already. Returns whether it was
        marked."""
        return bool(self._clear_nobody_reached(
            keys=[self.key("alarm", alarm_id), self.key("timeline", alarm_id),
                  self.key("device-commands")],
            args=[now_ms, COMMANDS_MAXLEN, self.events_channel,
                  json.dumps({"type": "alarm.reached", "alarm_id": alarm_id}), alarm_id]))

    def add_timeline(self, alarm_id: str, event: str, **fields: Any) -> None:
        self.r.xadd(self.key("timeline", alarm_id),
                    {"event": event, **{k: str(v) for k, v in fields.items()}})

    def transition(self, alarm_id: str, event: AlarmEvent, *, by: str, now_ms: int,
                   reason: str | None = None, cancel_window_ms: int = 0) -> Alarm:
        """Apply a lifecycle event atomically (WATCH/MULTI) and queue the device's command.

        Raises ``KeyError`` for an unknown alarm and
        :class:`hub.core.lifecycle.IllegalTransition` when the event does not apply.
        """
        def change(pipe, alarm: Alarm) -> Alarm:
            result = transition(alarm, event, now_ms, by=by, reason=reason,
                                cancel_window_ms=cancel_window_ms)
            new = result.alarm
            shelter = self.key("branch", new.branch), SHELTER_FIELD + new.room
            sheltered = new.kind == SAFE_ROOM_KIND and not new.state.active and \
                (pipe.hget(*shelter) or "").endswith(f":{alarm_id}")
            pipe.multi()
            if sheltered:  # the safe room's alarm is over: nobody shelters there
                pipe.hdel(*shelter)
            pipe.hset(self.key("alarm", alarm_id), mapping=new.to_fields())
            if not new.state.active:
                pipe.zrem(self.key("alarms", "active"), alarm_id)
            if new.state != "raised":  # a person answered, or it is over
                pipe.zrem(self.key("escalations"), alarm_id)
            pipe.xadd(self.key("timeline", alarm_id),
                      {"event": str(new.state), "at_ms": now_ms, "by": by,
                       "reason": reason or ""})
            if result.device_command:
                pipe.xadd(self.key("device-commands"),
                          {"device": new.device, "cmd": result.device_command,
                           "alarm_id": alarm_id}, maxlen=COMMANDS_MAXLEN, approximate=True)
            pipe.publish(self.events_channel, json.dumps(
                {"type": f"alarm.{new.state}", "alarm": new.to_json()}))
            return new
        return self._update_alarm(alarm_id, change)

    def make_real(self, alarm_id: str, *, by: str, via: str, now_ms: int) -> Alarm:
        """Someone (``by``, through ``via``: sms, call, dashboard, cli) says a drill alarm
        is real (hub.core.drill): atomically (WATCH/MULTI) it stops being a drill, a ``real``
        timeline entry is written, its next escalation attempt is due ``now_ms`` (the hub's
        timer pages with the real policy, police included, at its next tick) and the device
        that pressed is sent a plain ``received`` (it stops showing DRILL).

        Raises ``KeyError`` for an unknown alarm and
        :class:`hub.core.lifecycle.IllegalTransition` when it is not an active drill alarm.
        """
        def change(pipe, alarm: Alarm) -> Alarm:
            new = make_real(alarm, now_ms, by=by)
            pipe.multi()
            pipe.hset(self.key("alarm", alarm_id), mapping=new.to_fields())
            pipe.xadd(self.key("timeline", alarm_id),
                      {"event": "real", "at_ms": now_ms, "by": by, "via": via})
            pipe.zadd(self.key("escalations"), {alarm_id: now_ms})
            # a plain "received": the device stops showing DRILL (device.protocol)
            pipe.xadd(self.key("device-commands"),
                      {"device": new.device, "cmd": "received", "alarm_id": alarm_id},
                      maxlen=COMMANDS_MAXLEN, approximate=True)
            pipe.publish(self.events_channel, json.dumps(
                {"type": "alarm.real", "alarm": new.to_json()}))
            return new
        return self._update_alarm(alarm_id, change)

    def _update_alarm(self, alarm_id: str, change: Callable[[Any, Alarm], Alarm]) -> Alarm:
        """Read the alarm under WATCH and apply ``change(pipe, alarm)`` (it may read more,
        then calls ``pipe.multi()`` and queues its writes), retried until no other client
        changed the alarm meanwhile; returns what ``change`` returned. Raises ``KeyError``
        for an unknown alarm, and whatever ``change`` raises."""
        key = self.key("alarm", alarm_id)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    fields = pipe.hgetall(key)
                    if not fields:
                        raise KeyError(f"no alarm {alarm_id!r}")
                    new = change(pipe, Alarm.from_fields(fields))
                    pipe.execute()
                    return new
                except redis.WatchError:
                    continue
