"""The ARC's durable queue in Redis, and the hook the alarm service calls.

Keys, under the store's prefix::

    haven:arc:queue                  stream  events waiting for a receiver's ACK, oldest first
    haven:arc:queued:<alarm>:<phase> string  the event was queued (once per alarm and phase)
    haven:arc:seq                    counter DC-09 sequence numbers (1-9999, then 1 again)
    haven:arc:lease                  string  the worker that sends and supervises now
    haven:arc:trouble                hash    receiver name -> since (Unix ms): not answering
    haven:arc:clock                  hash    receiver name -> its clock minus ours (s), NAK

Exactly once across workers: an event is queued by one script that sets its ``queued``
key with SET NX, takes a sequence number, appends it to the queue and writes the alarm's
timeline entry; a hook run twice (a redelivered command, an attempt re-run after a crash)
queues nothing more. Only the lease holder sends (hub.arc.sender), in queue order, and
deletes an event once a receiver ACKed it: a worker dying mid-send leaves the event for
the next holder, which sends it again with the same sequence number (a duplicate at the
ARC beats a gap).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Callable

import redis

from hub.core.model import SAFE_ROOM_KIND, Alarm, AlarmState
from hub.config.site import Site
from hub.store.alarms import Store
from hub.arc.dc09 import Phase

log = logging.getLogger("haven.arc")

#: How long "this alarm's event was queued" is remembered, in ms (an alarm lives hours).
QUEUED_TTL_MS = 7 * 86_400_000

_ENQUEUE = """
-- KEYS: queued key, queue stream, seq counter, alarm timeline; ARGV: ttl_ms, at_ms, fields...
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[1]) then return 0 end
local seq = (redis.call('INCR', KEYS[3]) - 1) % 9999 + 1
redis.call('XADD', KEYS[2], '*', 'seq', seq, unpack(ARGV, 3))
redis.call('XADD', KEYS[4], '*', 'event', 'arc', 'outcome', 'queued', 'at_ms', ARGV[2],
           'phase', ARGV[4], 'seq', seq)
return seq
"""

_LEASE = """
-- KEYS: lease; ARGV: worker, ttl_ms. 1 when the worker holds the lease (taken or renewed)
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""


class ArcQueue:
    """The queue's Redis side, shared by the hook (:meth:`alarm_raised`,
    :meth:`alarm_changed`) and the sender. ``clock`` returns Unix seconds."""

    def __init__(self, site: Site, store: Store, *, clock: Callable[[], float]):
        self.site, self.store, self.clock = site, store, clock
        self.r = store.r
        self._enqueue = self.r.register_script(_ENQUEUE)
        #: Set when this worker queues an event, so its sender wakes at once (events
        #: another worker queued are found by the sender's poll, every IDLE_S).
        self.queued = threading.Event()
        self._lease = self.r.register_script(_LEASE)

    def key(self, *parts: str) -> str:
        return self.store.key("arc", *parts)

    # --- the hook: alarm service -> queue ------------------------------------------------

    def alarm_raised(self, alarm: Alarm) -> int:
        """An alarm was raised (or an attempt of it ran): queue its alarm event, or a test
        event for a drill, once. Returns the sequence number queued, 0 if none. Never
        raises: the ARC must not hold up the pages."""
        return self._safe(alarm, Phase.TEST if alarm.drill else Phase.ALARM)

    def alarm_changed(self, alarm: Alarm) -> int:
        """An alarm was acknowledged, resolved or cancelled: its restore (the first of
        acknowledge/resolve) or cancel, once; nothing for a drill (a test has no restore)."""
        if alarm.drill:
            return 0
        if alarm.state is AlarmState.CANCELLED:
            return self._safe(alarm, Phase.CANCEL)
        if alarm.state in (AlarmState.ACKNOWLEDGED, AlarmState.RESOLVED):
            return self._safe(alarm, Phase.RESTORE)
        return 0

    def _safe(self, alarm: Alarm, phase: Phase) -> int:
        try:
            return self.queue(alarm, phase)
        except redis.RedisError as exc:
            log.error("alarm %s: ARC %s event not queued, store unreachable (%s)",
                      alarm.id, phase, exc)
            return 0
        except Exception:  # the pages went out already; this must not undo their flow
            log.exception("alarm %s: ARC %s event not queued", alarm.id, phase)
            return 0

    def queue(self, alarm: Alarm, phase: Phase) -> int:
        """Queue ``phase`` of ``alarm`` if the site sends its kind and branch; 0 if not
        sent or queued before."""
        arc = self.site.arc
        if arc is None or alarm.kind not in arc.kinds or alarm.branch not in arc.accounts:
            return 0
        zone = arc.zones.get((alarm.branch, alarm.room), 0)  # 0: a room gone from the site
        fields = {"phase": phase, "alarm_id": alarm.id, "event": arc.kinds[alarm.kind],
                  "account": arc.accounts[alarm.branch], "zone": zone,
                  "text": self.location_text(alarm)}
        flat = [str(v) for pair in fields.items() for v in pair]
        seq = int(self._enqueue(keys=[self.key("queued", alarm.id, phase), self.key("queue"),
                                      self.key("seq"),
                                      self.store.key("timeline", alarm.id)],
                                args=[QUEUED_TTL_MS, int(self.clock() * 1000), *flat]))
        if seq:
            self.queued.set()
            log.info("alarm %s: ARC %s event queued (sequence %04d)", alarm.id, phase, seq)
        return seq

    def location_text(self, alarm: Alarm) -> str:
        """Where it is, for the ARC operator: branch, room, and the safe rooms staff
        shelter in (extended data ``I``)."""
        branch = self.site.branches.get(alarm.branch)
        room = branch.room(alarm.room) if branch else None
        kind = self.site.kinds.get(alarm.kind)
        text = (f"{'DRILL ' if alarm.drill else ''}{kind.label if kind else alarm.kind}: "
                f"{branch.name if branch else alarm.branch}, {room.name if room else alarm.room}")
        rooms = {s.room for s in self.store.branches.branch_switches(alarm.branch).shelters}
        if alarm.kind == SAFE_ROOM_KIND:
            rooms.add(alarm.room)
        if rooms and branch:
            names = sorted((branch.room(r).name if branch.room(r) else r) for r in rooms)
            text += f"; staff sheltering in {', '.join(names)}"
        return text

    # --- the sender's side ---------------------------------------------------------------

    def head(self) -> tuple[str, dict[str, str]] | None:
        """The oldest event not yet ACKed, or ``None``."""
        got = self.r.xrange(self.key("queue"), count=1)
        return (got[0][0], got[0][1]) if got else None

    def waiting(self) -> int:
        return int(self.r.xlen(self.key("queue")))

    def done(self, entry_id: str) -> None:
        self.r.xdel(self.key("queue"), entry_id)

    def next_sequence(self) -> int:
        """A sequence number for a message not from the queue (NULL, test)."""
        return (int(self.r.incr(self.key("seq"))) - 1) % 9999 + 1

    def lease(self, worker: str, ttl_ms: int) -> bool:
        """Take or renew the sending lease; ``False`` while another worker holds it."""
        return bool(self._lease(keys=[self.key("lease")], args=[worker, ttl_ms]))

    def release(self, worker: str) -> None:
        if self.r.get(self.key("lease")) == worker:
            self.r.delete(self.key("lease"))

    def timeline(self, alarm_id: str, **fields: object) -> None:
        self.store.add_timeline(alarm_id, "arc", **fields)

    def clock_offset(self, receiver: str) -> float:
        value = self.r.hget(self.key("clock"), receiver)
        return float(value) if value else 0.0

    def set_clock_offset(self, receiver: str, offset_s: float) -> None:
        self.r.hset(self.key("clock"), receiver, repr(offset_s))

    def trouble_raised(self, receiver: str, now_ms: int, detail: str) -> bool:
        """Mark ``receiver`` not answering; ``True`` the first time (tell people then)."""
        added = self.r.hsetnx(self.key("trouble"), receiver,
                              json.dumps({"since_ms": now_ms, "detail": detail}))
        if added:
            self.r.publish(self.store.events_channel, json.dumps(
                {"type": "arc.trouble", "receiver": receiver, "since_ms": now_ms}))
        return bool(added)

    def trouble_cleared(self, receiver: str, now_ms: int) -> bool:
        cleared = self.r.hdel(self.key("trouble"), receiver)
        if cleared:
            self.r.publish(self.store.events_channel, json.dumps(
                {"type": "arc.ok", "receiver": receiver, "at_ms": now_ms}))
        return bool(cleared)

    def troubles(self) -> dict[str, dict]:
        """Receivers not answering: name -> {since_ms, detail}."""
        return {k: json.loads(v) for k, v in self.r.hgetall(self.key("trouble")).items()}
