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

_TAKE_TEXTS = """
-- KEYS: pending list, sent key; ARGV: now_ms, batch period in ms
-- The whole pending list, if the branch's last text is a period old; the text's time set
-- in the same step, so one worker gets each batch.
local last = tonumber(redis.call('GET', KEYS[2]))
if (last and tonumber(ARGV[1]) < last + tonumber(ARGV[2]))
   or redis.call('LLEN', KEYS[1]) == 0 then
  return {}
end
local items = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', 2 * tonumber(ARGV[2]))
return items
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

    def take_texts(self, branch_id: str, now_ms: int, every_ms: int) -> list[dict[str, Any]]:
        """The branch's pending changes, oldest first, if its last text is ``every_ms`` old
        (or it had none), marking a text sent at ``now_ms``; else none. Once across workers."""
        taken = self._take_texts(keys=[self.key("trouble-texts", branch_id),
                                       self.key("trouble-texts-sent", branch_id)],
                                 args=[now_ms, every_ms])
        return [json.loads(item) for item in taken]

    def report_broker_outage(self, since_ms: int) -> bool:
        """Mark the broker outage that began at ``since_ms`` reported; ``False`` if a worker
        reported it already."""
        return bool(self.r.set(self.key("broker-outage"), str(since_ms), nx=True))

    def end_broker_outage(self) -> bool:
        """Clear the outage report; ``False`` if there was none (another worker ended it)."""
        return bool(self.r.delete(self.key("broker-outage")))
