"""Device troubles in Redis: each device's current troubles and their history, the texts
that tell IT of them, and the broker-outage report.

Keys (under the store's prefix)::

    haven:troubles:<device>            set     the device's current troubles
    haven:supervision:<device>         hash    outbox_since_ms: first heartbeat_ms of the
                                               current run of non-empty outboxes
    haven:troubles                     stream  device, trouble, raised (1|0), branch, room,
                                               at_ms; capped near HISTORY_MAXLEN entries
    haven:trouble-texts:<branch>       list    trouble changes waiting for the branch's
                                               next text (JSON), oldest first
    haven:trouble-texts-sent:<branch>  string  when the last text left (Unix ms, hub clock)
    haven:trouble-texts-sending:<branch>  hash  batches taken and not yet sent: token ->
                                               {"items": [...], "lease_until": ms}
    haven:broker-outage                string  since when the reported outage ran (Unix ms),
                                               until a worker that saw it sees the broker back

A change is announced on the live-events channel as ``{"type": "device.trouble",
"device", "trouble", "raised"}``. The device's own hash (``haven:device:<id>``) belongs to
hub.store.devices; supervision reads it here, with the rest, in one round trip.

Wiring: :class:`TroubleStore` is ``store.troubles`` (hub.store.alarms.Store), given the
store's client, key builder and live-events channel. Its callers: hub.engine.supervision
(what troubles a device has), hub.engine.troubletexts (the texts and the outage report),
the runner and the dashboard (who is offline).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterable

import redis

#: Entries kept in the troubles stream (approximate).
HISTORY_MAXLEN = 1000
#: Transaction attempts per device before an update is left to the next check.
ATTEMPTS = 10

#: How long a worker has to send a batch of trouble texts it took before another worker
#: sends it (a worker that died after the take), in milliseconds.
TEXT_LEASE_MS = 120_000

_TAKE_TEXTS = """
-- KEYS: pending list, sent key, sending hash; ARGV: now_ms, batch period in ms, lease ms
-- A batch whose worker died before it was sent first (its lease run out: it goes out
-- again, leased anew); else the whole pending list, if the branch's last text is a
-- period old, leased to the taker and its time set in the same step, so one worker gets
-- each batch. Returns {token, item, item ...} or {}.
local now = tonumber(ARGV[1])
local sending = redis.call('HGETALL', KEYS[3])
for i = 1, #sending, 2 do
  local batch = cjson.decode(sending[i + 1])
  if tonumber(batch.lease_until) <= now then
    batch.lease_until = now + tonumber(ARGV[3])
    redis.call('HSET', KEYS[3], sending[i], cjson.encode(batch))
    return {sending[i], unpack(batch.items)}
  end
end
local last = tonumber(redis.call('GET', KEYS[2]))
if (last and now < last + tonumber(ARGV[2])) or redis.call('LLEN', KEYS[1]) == 0 then
  return {}
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', 2 * tonumber(ARGV[2]))
redis.call('HSET', KEYS[3], ARGV[1],
           cjson.encode({items = items, lease_until = now + tonumber(ARGV[3])}))
return {ARGV[1], unpack(items)}
"""

#: What supervision decides from a device's (status hash, outbox_since_ms, trouble set):
#: (the new outbox_since_ms or None, troubles raised, troubles cleared), pure.
Decide = Callable[[dict[str, str], "str | None", set[str]],
                  tuple["str | None", Iterable[Any], Iterable[Any]]]


class TroubleStore:
    """Reads and writes devices' troubles; ``key(*parts)`` builds a key (Store.key)."""

    def __init__(self, client: redis.Redis, key: Callable[..., str], events_channel: str):
        self.r, self.key, self.events_channel = client, key, events_channel
        self._take_texts = client.register_script(_TAKE_TEXTS)

    # --- what troubles each device has ----------------------------------------------

    def current(self, device_ids: list[str]) -> list[set[str]]:
        """Each device's current troubles, in order, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for device_id in device_ids:
            pipe.smembers(self.key("troubles", device_id))
        return pipe.execute()

    def read(self, device_ids: list[str]) -> list[tuple[dict[str, str], str | None, set[str]]]:
        """Each device's (status hash, outbox_since_ms, trouble set), in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for device_id in device_ids:
            pipe.hgetall(self.key("device", device_id))
            pipe.hget(self.key("supervision", device_id), "outbox_since_ms")
            pipe.smembers(self.key("troubles", device_id))
        replies = pipe.execute()
        return [tuple(replies[i:i + 3]) for i in range(0, len(replies), 3)]

    def update(self, device_id: str, branch_id: str, room_id: str, now_ms: int,
               decide: Decide) -> list[tuple[Any, bool]] | None:
        """Read the device afresh and record what ``decide`` makes of it, in one WATCH/MULTI
        transaction over its hash, supervision hash and trouble set, tried again on fresh
        data if any changed meanwhile (another worker, a heartbeat). Returns the changes
        committed, ``(trouble, raised)``: raised first, then cleared, each sorted; only the
        committing worker gets them. ``None``: the device changed under every attempt."""
        dkey, skey, tkey = (self.key(k, device_id) for k in ("device", "supervision",
                                                            "troubles"))
        with self.r.pipeline() as pipe:
            for _ in range(ATTEMPTS):
                try:
                    pipe.watch(dkey, skey, tkey)
                    old_since = pipe.hget(skey, "outbox_since_ms")
                    since, raised, cleared = decide(pipe.hgetall(dkey), old_since,
                                                    pipe.smembers(tkey))
                    pipe.multi()
                    if since != old_since:
                        if since is None:
                            pipe.hdel(skey, "outbox_since_ms")
                        else:
                            pipe.hset(skey, "outbox_since_ms", since)
                    changes = [(t, True) for t in sorted(raised)] + \
                        [(t, False) for t in sorted(cleared)]
                    for trouble, up in changes:
                        (pipe.sadd if up else pipe.srem)(tkey, str(trouble))
                        pipe.xadd(self.key("troubles"), {
                            "device": device_id, "trouble": str(trouble), "raised": int(up),
                            "branch": branch_id, "room": room_id, "at_ms": now_ms},
                            maxlen=HISTORY_MAXLEN, approximate=True)
                        pipe.publish(self.events_channel, json.dumps(
                            {"type": "device.trouble", "device": device_id,
                             "trouble": str(trouble), "raised": up}))
                    pipe.execute()
                    return changes
                except redis.WatchError:
                    continue
        return None

    # --- the texts that tell IT, and the broker outage -------------------------------

    def queue_text(self, branch_id: str, change: dict[str, Any]) -> None:
        """A trouble change for the branch's next text."""
        self.r.rpush(self.key("trouble-texts", branch_id), json.dumps(change))

    def take_texts(self, branch_id: str, now_ms: int, every_ms: int,
                   lease_ms: int = TEXT_LEASE_MS) -> tuple[str, list[dict[str, Any]]] | None:
        """A batch of the branch's trouble changes to text, oldest first, with its token for
        :meth:`texts_sent`, once across workers: a batch another worker took and did not
        send within ``lease_ms`` (it died), else the pending changes if the branch's last
        text is ``every_ms`` old (or it had none), marking a text sent at ``now_ms``. The
        batch is leased to the taker for ``lease_ms``. ``None``: nothing to send now."""
        taken = self._take_texts(keys=[self.key("trouble-texts", branch_id),
                                       self.key("trouble-texts-sent", branch_id),
                                       self.key("trouble-texts-sending", branch_id)],
                                 args=[now_ms, every_ms, lease_ms])
        if not taken:
            return None
        return taken[0], [json.loads(item) for item in taken[1:]]

    def texts_sent(self, branch_id: str, token: str) -> None:
        """The batch ``token`` was texted (every contact tried): no worker sends it again."""
        self.r.hdel(self.key("trouble-texts-sending", branch_id), token)

    def report_broker_outage(self, since_ms: int) -> bool:
        """Mark the broker outage that began at ``since_ms`` reported; ``False`` if a worker
        reported it already."""
        return bool(self.r.set(self.key("broker-outage"), str(since_ms), nx=True))

    def end_broker_outage(self) -> bool:
        """Clear the outage report; ``False`` if there was none (another worker ended it)."""
        return bool(self.r.delete(self.key("broker-outage")))
