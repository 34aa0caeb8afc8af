"""Page claims and outcomes, follow-ups and call retries in Redis.

Keys (under the store's prefix)::

    haven:notification:<key>      string claim ("claimed:<ms>") then outcome of one page
    haven:followups               stream pages that finally failed (from status callbacks)
    haven:call-retries            zset   unanswered calls to place again, by due ms
    haven:page-retries            zset   pages to try again after a retryable failure, by due
                                         ms; members are slots (hub.core.model.page_slot)
    haven:page-retry              hash   slot -> the page to try again (JSON: attempt, key,
                                         ref, contact, text, tries); a later attempt's page
                                         to the same slot replaces it (one page per person)

Wiring: :class:`PageStore` is ``store.pages`` (hub.store.alarms.Store), given the store's client,
key builder and live-events channel; it registers its own scripts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

import redis

from hub.core.model import Delivery, PageKey
from hub.core.tally import FinishCheck
from hub.store.devices import COMMANDS_MAXLEN
from hub.store.redisops import WORKERS_GROUP, flat_json, read_group, run_scripts

#: How long page claims are kept, in seconds: far longer than any
#: alarm can be redelivered by the broker.
CLAIM_TTL_S = 30 * 24 * 3600


@dataclass(frozen=True)
class PageRetry:
    """A page to try again at ``due_ms`` after a retryable failure: its key, reference,
    contact and text, and how many tries failed so far (``tries``, for the backoff)."""

    key: PageKey
    ref: str
    contact_name: str
    text: str
    tries: int
    due_ms: int

    def to_json(self) -> str:
        return json.dumps({"attempt": self.key.step, "key": str(self.key), "ref": self.ref,
                           "contact": self.contact_name, "text": self.text,
                           "tries": self.tries, "due_ms": self.due_ms})

    @classmethod
    def from_json(cls, text: str) -> "PageRetry":
        fields = json.loads(text)
        return cls(PageKey.parse(fields["key"]), fields["ref"], fields["contact"],
                   fields["text"], int(fields["tries"]), int(fields["due_ms"]))


@dataclass(frozen=True)
class PageRecord:
    """What happened to one claimed page (``key``, sent to ``contact_name``): its
    ``delivery`` at ``at_ms``; with ``finish``, the attempt's last page out, whose record
    also finishes the attempt (hub.core.tally). ``slot``: the page is retried after a retryable
    failure (``PageKey.slot``; "" never), at ``retry`` when it failed so (the
    first page accepted after the alarm was NOT delivered also tells its device
    ``paging``). ``quiet``: a retry's failure, kept out of the timeline (its first failure
    is there, and the recovery will be)."""

    key: PageKey
    contact_name: str
    delivery: Delivery
    at_ms: int
    finish: FinishCheck | None = None
    slot: str = ""
    retry: PageRetry | None = None
    quiet: bool = False


_CLAIM_MANY = """
-- KEYS: the alarm's timeline stream, then page keys
-- ARGV: now_ms, lease_ms, ttl_s, then timeline field/value pairs (none: no entry)
-- The attempt's timeline entry, then a claim of each key; returns each key's result:
-- free: take it (1); claimed by a worker that has not reported for lease_ms (it died,
-- maybe after the provider accepted the page): take it over, returning that claim's ms;
-- sent, failed, or claimed within lease_ms: 0.
if #ARGV > 3 then
  local entry = {}
  for i = 4, #ARGV do entry[#entry + 1] = ARGV[i] end
  redis.call('XADD', KEYS[1], '*', unpack(entry))
end
local now, lease, out = tonumber(ARGV[1]), tonumber(ARGV[2]), {}
for k = 2, #KEYS do
  local v = redis.call('GET', KEYS[k])
  local result = 1
  if v then
    if string.sub(v, 1, 8) ~= 'claimed:' then
      result = 0
    else
      result = tonumber(string.sub(v, 9))
      if result > now - lease then result = 0 end
    end
  end
  if result ~= 0 then redis.call('SET', KEYS[k], 'claimed:' .. ARGV[1], 'EX', ARGV[3]) end
  out[#out + 1] = result
end
return out
"""


_RENEW_MANY = """
-- KEYS: page keys; ARGV: now_ms, ttl_s, then each key's claim ms
-- Each key still holding its claim (no other worker took it over) restarts its lease from
-- now: 1; else 0.
local out = {}
for k = 1, #KEYS do
  if redis.call('GET', KEYS[k]) == 'claimed:' .. ARGV[k + 2] then
    redis.call('SET', KEYS[k], 'claimed:' .. ARGV[1], 'EX', ARGV[2])
    out[k] = 1
  else
    out[k] = 0
  end
end
return out
"""

_RECORD_BODY = """
-- KEYS: page key, timeline stream, page-retries zset, page-retry hash, alarm hash,
--       device-commands stream
-- ARGV: channel, event json, outcome, ttl, timeline entry (JSON array of field/value
--       pairs; '' for none), slot ('' for a page never retried), retry (JSON with due_ms
--       and attempt; '' unless it failed retryably), attempt, now ms, commands maxlen,
--       alarm id
-- The outcome, then the page's retry: a retryable failure is tried again at due_ms unless
-- a later attempt's page to the same slot is already waiting; an accepted page ends the
-- slot's wait (its own, or an earlier attempt's). The first page accepted after the alarm
-- was NOT delivered tells the device that pages are getting through again ('paging').
redis.call('SET', KEYS[1], ARGV[3], 'EX', ARGV[4])
if ARGV[5] ~= '' then redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(ARGV[5]))) end
redis.call('PUBLISH', ARGV[1], ARGV[2])
if ARGV[6] ~= '' then
  local held = redis.call('HGET', KEYS[4], ARGV[6])
  local held_attempt = -1
  if held then held_attempt = cjson.decode(held).attempt end
  if ARGV[7] ~= '' then
    if held_attempt <= tonumber(ARGV[8]) then
      redis.call('HSET', KEYS[4], ARGV[6], ARGV[7])
      redis.call('ZADD', KEYS[3], cjson.decode(ARGV[7]).due_ms, ARGV[6])
    end
  elseif string.sub(ARGV[3], 1, 5) == 'sent:' then
    if held and held_attempt <= tonumber(ARGV[8]) then
      redis.call('HDEL', KEYS[4], ARGV[6])
      redis.call('ZREM', KEYS[3], ARGV[6])
    end
    if redis.call('HGET', KEYS[5], 'not_delivered') == '1' then
      local since = tonumber(redis.call('HGET', KEYS[5], 'not_delivered_at_ms') or ARGV[9])
      redis.call('HSET', KEYS[5], 'not_delivered', '0')
      redis.call('XADD', KEYS[2], '*', 'event', 'paging_resumed', 'at_ms', ARGV[9],
                 'after_ms', tostring(tonumber(ARGV[9]) - since))
      redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[10], '*',
                 'device', redis.call('HGET', KEYS[5], 'device'), 'cmd', 'paging',
                 'alarm_id', ARGV[11])
    end
  end
end
"""

_RECORD = _RECORD_BODY + "return 1\n"


def finish_checked_lua(zset: int, escalation: int, first_page: int, alarm: int, attempt: int,
                       due: int) -> str:
    """Lua (a script's tail) that finishes an attempt unless all of its pages failed; the
    numbers say which KEYS / ARGV hold what (pages: KEYS[first_page] to the last key).
    Returns -1 (finishing nothing) when every page failed: the caller reports the delivery
    failure first. Else moves the escalation on to the next attempt (unless someone else
    already did): 1, or 0 if already finished."""
    return f"""
if #KEYS >= {first_page} then
  local failed = 0
  for k = {first_page}, #KEYS do
    local v = redis.call('GET', KEYS[k])
    if v and string.sub(v, 1, 7) == 'failed:' then failed = failed + 1 end
  end
  if failed == #KEYS - {first_page} + 1 then return -1 end
end
if tostring(redis.call('HGET', KEYS[{escalation}], 'attempt')) ~= ARGV[{attempt}] then return 0 end
redis.call('HSET', KEYS[{escalation}], 'attempt', tonumber(ARGV[{attempt}]) + 1)
if redis.call('ZSCORE', KEYS[{zset}], ARGV[{alarm}]) then
  redis.call('ZADD', KEYS[{zset}], ARGV[{due}], ARGV[{alarm}])
end
return 1
"""


def finished_or_failed(reply: Any) -> bool | None:
    """A finish_checked_lua script's answer: ``None`` (every page failed, nothing
    finished), else whether this call finished the attempt."""
    done = int(reply)
    return None if done < 0 else bool(done)


# _RECORD, then the attempt's finish (finish_checked_lua), in one round trip. Further KEYS:
# escalations zset, escalation hash, then the attempt's page keys; further ARGV:
# alarm id, attempt, next due ms.
_RECORD_FINISH = _RECORD_BODY + finish_checked_lua(zset=7, escalation=8, first_page=9,
                                                   alarm=12, attempt=13, due=14)

_RECLAIM = """
-- KEYS: a page's page key, then the same contact and channel's keys of the
--       alarm's later attempts
-- ARGV: now_ms, lease_ms, ttl_s
-- Claims a page that failed retryably, to try it again: -1 a later attempt paged the same
-- person (superseded); -2 it was accepted meanwhile; 0 another worker is sending it now;
-- 1 claimed; > 1 the ms of a dead worker's claim taken over (ask the provider first).
for k = 2, #KEYS do
  if redis.call('EXISTS', KEYS[k]) == 1 then return -1 end
end
local v = redis.call('GET', KEYS[1])
local result = 1
if v then
  if string.sub(v, 1, 5) == 'sent:' then return -2 end
  if string.sub(v, 1, 8) == 'claimed:' then
    result = tonumber(string.sub(v, 9))
    if result > tonumber(ARGV[1]) - tonumber(ARGV[2]) then return 0 end
  end
end
redis.call('SET', KEYS[1], 'claimed:' .. ARGV[1], 'EX', ARGV[3])
return result
"""

_DROP_RETRY = """
-- KEYS: page-retries zset, page-retry hash; ARGV: slot, attempt
-- Ends the slot's wait if it still holds that attempt's page: 1, else 0.
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held and cjson.decode(held).attempt == tonumber(ARGV[2]) then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
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


def _finished(record: PageRecord, reply: Any) -> bool | None:
    return None if record.finish is None else finished_or_failed(reply)


class PageStore:
    """Claims (each page at most once across workers), outcomes and follow-up work.
    ``key(*parts)`` builds a key (Store.key)."""

    def __init__(self, client: redis.Redis, key: Callable[..., str], events_channel: str):
        self.r, self.key, self.events_channel = client, key, events_channel
        self._record = client.register_script(_RECORD)
        self._record_finish = client.register_script(_RECORD_FINISH)
        self._lease_due = client.register_script(_LEASE_DUE)
        self._renew_many = client.register_script(_RENEW_MANY)
        self._claim_many = client.register_script(_CLAIM_MANY)
        self._reclaim = client.register_script(_RECLAIM)
        self._drop_retry = client.register_script(_DROP_RETRY)

    def claim(self, key: PageKey, now_ms: int, lease_ms: int) -> int:
        """Atomically claim the right to send ``key``: 0 if it was sent, failed, or is
        claimed by a worker heard from within ``lease_ms``; 1 for a fresh claim; for a
        stale claim taken over (its worker died between claiming and recording, perhaps
        after the provider accepted the page), the old claim's ms (> 1)."""
        return self.claim_many(key.alarm_id, [key], now_ms, lease_ms)[0]

    def claim_many(self, alarm_id: str, keys: list[PageKey], now_ms: int,
                            lease_ms: int, *, timeline: dict[str, Any] | None = None
                            ) -> list[int]:
        """:meth:`claim` for each of ``keys`` (all of ``alarm_id``), after
        writing ``timeline`` (an entry of the alarm's timeline), in one script: one round
        trip (a pipeline of scripts costs redis-py a SCRIPT EXISTS round trip more)."""
        pairs = [str(x) for kv in (timeline or {}).items() for x in kv]
        found = self._claim_many(
            keys=[self.key("timeline", alarm_id),
                  *(self.key("notification", str(key)) for key in keys)],
            args=[now_ms, lease_ms, CLAIM_TTL_S, *pairs])
        return [int(x) for x in found]

    def renew_claim(self, key: PageKey, claimed_ms: int, now_ms: int) -> bool:
        """Restart the lease of this worker's claim made at ``claimed_ms``; ``False`` if the
        claim is no longer that one (its lease ran out and another worker took it)."""
        return self.renew_claims([(key, claimed_ms)], now_ms)[0]

    def renew_claims(self, claims: list[tuple[PageKey, int]],
                     now_ms: int) -> list[bool]:
        """:meth:`renew_claim` for each ``(key, claim ms)``, in one round trip."""
        if not claims:
            return []
        found = self._renew_many(keys=[self.key("notification", str(k)) for k, _ in claims],
                                 args=[now_ms, CLAIM_TTL_S, *(ms for _, ms in claims)])
        return [bool(x) for x in found]

    def outcome(self, key: PageKey) -> str | None:
        return self.r.get(self.key("notification", str(key)))

    def outcomes(self, keys: list[PageKey]) -> list[str | None]:
        """:meth:`outcome` of each key, in one round trip."""
        if not keys:
            return []
        return self.r.mget([self.key("notification", str(key)) for key in keys])

    def record(self, key: PageKey, contact_name: str,
                            delivery: Delivery, at_ms: int, *,
                            finish: FinishCheck | None = None) -> bool | None:
        """Record what happened to a claimed page, in its claim and the timeline.

        With ``finish`` (this was the attempt's last page out), also finish the attempt in
        the same round trip, as :meth:`hub.store.alarms.Store.finish_unless_all_failed` does, and
        return what that would."""
        result = self.record_many([PageRecord(key, contact_name, delivery, at_ms,
                                                       finish)])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def record_many(self, records: list["PageRecord"]) -> list[Any]:
        """:meth:`record` of each record in one round trip (many sender
        threads' records, through hub.engine.groupcommit): each one's answer, or the error it
        alone met (an ``Exception`` instance). Raises ``redis.RedisError`` if the store
        cannot be reached."""
        replies = run_scripts(self.r, [self._record_call(r) for r in records])
        return [reply if isinstance(reply, Exception) else _finished(record, reply)
                for record, reply in zip(records, replies)]

    def _record_call(self, record: "PageRecord") -> tuple[Any, list[str], list[Any]]:
        key, delivery, finish = record.key, record.delivery, record.finish
        outcome = f"sent:{delivery.sid}" if delivery.ok else \
            f"failed:{delivery.code or ''}:{'retryable' if delivery.retryable else 'permanent'}"
        timeline = {"event": "notified" if delivery.ok else "notify_failed",
                    "at_ms": record.at_ms, "step": key.step, "channel": str(key.channel),
                    "contact": record.contact_name, "to": key.contact,
                    "sid": delivery.sid or "", "error": delivery.error or "",
                    "code": delivery.code or ""}
        event = json.dumps({"type": "alarm.notified", "alarm_id": key.alarm_id,
                            "ok": delivery.ok, "contact": record.contact_name,
                            "channel": str(key.channel)})
        if record.retry is not None:
            timeline["retry_in_ms"] = max(0, record.retry.due_ms - record.at_ms)
        keys = [self.key("notification", str(key)), self.key("timeline", key.alarm_id),
                self.key("page-retries"), self.key("page-retry"),
                self.key("alarm", key.alarm_id), self.key("device-commands")]
        args = [self.events_channel, event, outcome, CLAIM_TTL_S,
                "" if record.quiet else flat_json(timeline), record.slot,
                record.retry.to_json() if record.retry is not None else "", key.step,
                record.at_ms, COMMANDS_MAXLEN, key.alarm_id]
        if finish is None:
            return self._record, keys, args
        return (self._record_finish,
                [*keys, self.key("escalations"), self.key("escalation", finish.alarm_id),
                 *(self.key("notification", str(k)) for k in finish.keys)],
                [*args, finish.alarm_id, finish.attempt, finish.next_due_ms])

    def first_sight_of_reply(self, message_sid: str, ttl_s: int) -> bool:
        """Whether the reply SMS ``message_sid`` (Twilio's id) is seen for the first time
        within ``ttl_s`` seconds: a replayed or retried webhook must not act twice."""
        return bool(self.r.set(self.key("twilio-sms", message_sid), 1, nx=True, ex=ttl_s))

    def queue_followup(self, key: str, status: str) -> None:
        """A page that finally failed (SMS undelivered, call unanswered): for a hub worker."""
        self.r.xadd(self.key("followups"), {"key": key, "status": status},
                    maxlen=COMMANDS_MAXLEN, approximate=True)

    def read_followups(self, consumer: str, block_ms: int,
                       count: int = 100) -> list[tuple[str, dict[str, str]]]:
        return read_group(self.r, self.key("followups"), consumer, block_ms, count)

    def ack_followup(self, entry_id: str) -> None:
        self.r.xack(self.key("followups"), WORKERS_GROUP, entry_id)

    def schedule_call_retry(self, key: PageKey, due_ms: int) -> None:
        """Place the call ``key`` at ``due_ms`` (durable: any worker's timer places it)."""
        self.r.zadd(self.key("call-retries"), {str(key): due_ms})

    def lease_call_retries(self, now_ms: int, lease_ms: int, limit: int = 50) -> list[str]:
        """Call retries due at ``now_ms``, leased to the caller for ``lease_ms``; call
        :meth:`call_retry_done` for each once placed (or given up)."""
        return self._lease_due(keys=[self.key("call-retries")], args=[now_ms, lease_ms, limit])

    def call_retry_done(self, key_text: str) -> None:
        self.r.zrem(self.key("call-retries"), key_text)

    def lease_page_retries(self, now_ms: int, lease_ms: int,
                           limit: int = 50) -> list[tuple[str, PageRetry]]:
        """Pages due to be tried again at ``now_ms``, leased to the caller for ``lease_ms``:
        ``[(slot, retry)]``. A page's next record ends or reschedules its wait; a page
        not tried (superseded, its alarm over) is dropped with :meth:`drop_page_retry`."""
        slots = self._lease_due(keys=[self.key("page-retries")],
                                args=[now_ms, lease_ms, limit])
        if not slots:
            return []
        held = self.r.hmget(self.key("page-retry"), slots)
        due = []
        for slot, text in zip(slots, held):
            if text is None:  # its wait ended between the two calls
                self.r.zrem(self.key("page-retries"), slot)
            else:
                due.append((slot, PageRetry.from_json(text)))
        return due

    def pending_page_retries(self, alarm_id: str | None = None) -> list[PageRetry]:
        """Pages waiting to be tried again (of ``alarm_id``, or all), for views and tests."""
        found = [PageRetry.from_json(v) for v in self.r.hvals(self.key("page-retry"))]
        return [p for p in found if alarm_id is None or p.key.alarm_id == alarm_id]

    def reclaim_page(self, key: PageKey, later: list[PageKey], now_ms: int,
                     lease_ms: int) -> int:
        """Claim a page that failed retryably to try it again (see ``_RECLAIM``): -1 one of
        ``later`` (the same person's pages of later attempts) exists, -2 it was accepted,
        0 being sent elsewhere, 1 claimed, > 1 a dead worker's claim ms taken over."""
        return int(self._reclaim(keys=[self.key("notification", str(key)),
                                       *(self.key("notification", str(k)) for k in later)],
                                 args=[now_ms, lease_ms, CLAIM_TTL_S]))

    def drop_page_retry(self, slot: str, attempt: int) -> bool:
        """End ``slot``'s wait if it still holds attempt ``attempt``'s page."""
        return bool(self._drop_retry(keys=[self.key("page-retries"), self.key("page-retry")],
                                     args=[slot, attempt]))

    def escalation_attempt(self, alarm_id: str) -> int | None:
        """The attempt the alarm's escalation is at (running or next), ``None`` if none."""
        value = self.r.hget(self.key("escalation", alarm_id), "attempt")
        return None if value is None else int(value)
