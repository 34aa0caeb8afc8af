"""Incidents in Redis, beside the alarms (same connection and prefix as
:class:`hub.store.Store`)::

    haven:incidents              zset    alarm id -> received_at_ms, every closed alarm of a
                                         kind that pages someone (active ones: alarms:active)
    haven:incident:<id>          hash    drill 1/0, notified (names, "\\n"-joined), reporter,
                                         description, people, resolve_note (personal), the
                                         report fields (what_happened, actions personal),
                                         supervisor_notified_ms, last_reminder_ms, purged_ms
    haven:incidents:notice-due   set     resolved alarms whose supervisor notice is pending
    haven:incidents:report-due   zset    resolved non-drill alarm id -> closed_at_ms, until
                                         its report is filed
    haven:test-presses           hash    device -> last test press (received_at_ms)
    haven:drills:last            hash    branch -> received_at_ms of its latest drill alarm
    haven:privacy-audit          stream  event (read/export/purge), user, role, incidents, where

Alarms are indexed when they close: every close queues the device's ``resolved``
command on ``haven:device-commands``, which this store also reads in a consumer
group of its own (``incidents``), so each close is seen once, by whichever hub or
dashboard process reads first, and a reader killed mid-batch is replaced after 5 s.
:meth:`IncidentStore.reindex` scans every alarm (first use, or after a long outage
let the stream's cap trim closes nobody had read).
"""

from __future__ import annotations

from typing import Iterable

import redis

from hub.core.model import Alarm
from hub.config.site import Site
from hub.store.alarms import Store

from hub.incidents.model import (PERSONAL_FIELDS, Incident, Report, report_from_fields,
                                 report_to_fields)

GROUP = "incidents"
#: Entries kept in the privacy audit stream (about 10 years of a busy site's reads).
AUDIT_MAXLEN = 200_000

_CLAIM_EVERY = """
-- KEYS: incident hash; ARGV: field, now_ms, every_ms
-- Sets field to now unless it was set less than every_ms ago; 1 if this caller set it.
local last = redis.call('HGET', KEYS[1], ARGV[1])
if last and tonumber(ARGV[2]) - tonumber(last) < tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def timeline_summary(entries: Iterable[dict[str, str]]) -> tuple[bool, tuple[str, ...]]:
    """(drill, names of contacts notified) from an alarm's timeline. An alarm made REAL
    (hub.core.drill) is no drill: it needs its report like any other."""
    drill, names = False, []
    for e in entries:
        if e.get("event") == "escalation" and e.get("branch_state") == "drill":
            drill = True
        elif e.get("event") == "real":
            drill = False
        elif e.get("event") == "notified" and e.get("contact") not in names:
            names.append(e.get("contact", ""))
    return drill, tuple(names)


class IncidentStore:
    """Incident records on ``store``'s Redis; ``site`` says which kinds page nobody."""

    def __init__(self, store: Store, site: Site):
        self.store, self.site, self.r = store, site, store.r
        self._claim_every = self.r.register_script(_CLAIM_EVERY)

    def key(self, *parts: str) -> str:
        return self.store.key(*parts)

    # --- indexing ------------------------------------------------------------------

    def sync(self, consumer: str, count: int = 500) -> list[str]:
        """Index the alarms closed since the last sync (any process's); returns the ids of
        new incidents. Resolved ones are queued for their supervisor notice."""
        stream = self.key("device-commands")
        try:
            self.r.xgroup_create(stream, GROUP, id="0", mkstream=True)
            self.reindex()
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        _, entries, _ = self.r.xautoclaim(stream, GROUP, consumer, min_idle_time=5000,
                                          count=count)
        if not entries:
            got = self.r.xreadgroup(GROUP, consumer, {stream: ">"}, count=count)
            entries = [e for _, batch in got for e in batch]
        closed = [f["alarm_id"] for _, f in entries
                  if f and f.get("cmd") == "resolved" and f.get("alarm_id")]
        new = self._index(closed, notice=True)
        if entries:
            self.r.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
        return new

    def reindex(self) -> int:
        """Index every closed alarm in the store (no notices: they are old); returns how many
        alarms were looked at."""
        ids = [k.rsplit(":", 1)[1] for k in self.r.scan_iter(self.key("alarm", "*"), count=1000)]
        for start in range(0, len(ids), 500):
            self._index(ids[start:start + 500], notice=False)
        return len(ids)

    def _index(self, ids: list[str], *, notice: bool) -> list[str]:
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for alarm_id in ids:
            pipe.hgetall(self.key("alarm", alarm_id))
            pipe.xrange(self.key("timeline", alarm_id))
            pipe.hget(self.key("incident", alarm_id), "filed_ms")
        replies = pipe.execute()
        new, pipe = [], self.r.pipeline(transaction=False)
        for fields, timeline, filed in zip(replies[::3], replies[1::3], replies[2::3]):
            if not fields or fields.get("state") not in ("resolved", "cancelled"):
                continue
            alarm = Alarm.from_fields(fields)
            kind = self.site.kinds.get(alarm.kind)
            if kind is not None and not kind.steps:  # a test press: recorded, not an incident
                pipe.hset(self.key("test-presses"), alarm.device, alarm.received_at_ms)
                continue
            drill, notified = timeline_summary(f for _, f in timeline)
            pipe.hset(self.key("incident", alarm.id),
                      mapping={"drill": int(drill), "notified": "\n".join(notified)})
            if drill:
                pipe.hset(self.key("drills", "last"), alarm.branch, alarm.received_at_ms)
            if alarm.state == "resolved" and not drill:
                if notice:
                    pipe.sadd(self.key("incidents", "notice-due"), alarm.id)
                if not filed:
                    pipe.zadd(self.key("incidents", "report-due"),
                              {alarm.id: alarm.closed_at_ms or alarm.received_at_ms}, nx=True)
            pipe.zadd(self.key("incidents"), {alarm.id: alarm.received_at_ms})
            new.append(alarm.id)
        pipe.execute()
        return new

    # --- reading -------------------------------------------------------------------

    def get(self, alarm_id: str) -> Incident | None:
        found = self._load([alarm_id])
        return found[0] if found else None

    def between(self, since_ms: int | None = None, until_ms: int | None = None
                ) -> list[Incident]:
        """Incidents whose alarm reached the hub in [since_ms, until_ms), active ones
        included, newest first."""
        low = "-inf" if since_ms is None else since_ms
        high = "+inf" if until_ms is None else f"({until_ms}"
        ids = self.r.zrevrangebyscore(self.key("incidents"), high, low)
        active = self.r.zrevrangebyscore(self.key("alarms", "active"), high, low)
        found = self._load(list(dict.fromkeys(active + ids)))
        return sorted(found, key=lambda i: (i.alarm.received_at_ms, i.id), reverse=True)

    def _load(self, ids: list[str]) -> list[Incident]:
        if not ids:
            return []
        pipe = self.r.pipeline(transaction=False)
        for alarm_id in ids:
            pipe.hgetall(self.key("alarm", alarm_id))
            pipe.hgetall(self.key("incident", alarm_id))
        replies = pipe.execute()
        out, missing = [], []
        for alarm_fields, fields in zip(replies[::2], replies[1::2]):
            if not alarm_fields:
                continue
            alarm = Alarm.from_fields(alarm_fields)
            kind = self.site.kinds.get(alarm.kind)
            if kind is not None and not kind.steps:
                continue
            if "drill" not in fields:  # still active: not indexed yet
                missing.append(len(out))
            out.append(_incident(alarm, fields))
        if missing:
            pipe = self.r.pipeline(transaction=False)
            for i in missing:
                pipe.xrange(self.key("timeline", out[i].id))
            for i, timeline in zip(missing, pipe.execute()):
                drill, notified = timeline_summary(f for _, f in timeline)
                out[i] = _incident(out[i].alarm, {**_fields_of(out[i]), "drill": int(drill),
                                                  "notified": "\n".join(notified)})
        return out

    def test_presses(self) -> dict[str, int]:
        """Device id -> when its last test press reached the hub (ms)."""
        return {k: int(v) for k, v in self.r.hgetall(self.key("test-presses")).items()}

    def installed_ms(self, now_ms: int) -> int:
        """When this Haven was first asked for its readiness (Unix ms): ``now_ms`` the first
        time, kept from then on. Readiness counts a never-drilled branch from it."""
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.key("installed_ms"), now_ms, nx=True)
        pipe.get(self.key("installed_ms"))
        return int(pipe.execute()[1])

    def last_drills(self) -> dict[str, int]:
        """Branch id -> when its latest drill alarm reached the hub (ms)."""
        return {k: int(v) for k, v in self.r.hgetall(self.key("drills", "last")).items()}

    # --- writing ---------------------------------------------------------------------

    def save_details(self, alarm_id: str, *, reporter: str | None = None,
                     description: str | None = None, people: str | None = None,
                     resolve_note: str | None = None) -> None:
        """Set the reporter (a contact's phone) and, given, the personal fields."""
        fields = {k: v for k, v in (("reporter", reporter), ("description", description),
                                    ("people", people), ("resolve_note", resolve_note))
                  if v is not None}
        if fields:
            self.r.hset(self.key("incident", alarm_id), mapping=fields)

    def file_report(self, alarm_id: str, report: Report, *, keep_personal: bool) -> None:
        """Store the report; the personal follow-up detail is kept as it was unless
        ``keep_personal`` (the filer may see it) replaces it."""
        fields = report_to_fields(report)
        if not keep_personal:
            del fields["followup_detail"]
        pipe = self.r.pipeline()
        pipe.hset(self.key("incident", alarm_id), mapping=fields)
        pipe.zrem(self.key("incidents", "report-due"), alarm_id)
        pipe.xadd(self.key("timeline", alarm_id),
                  {"event": "report_filed", "at_ms": report.filed_ms, "by": report.filed_by})
        pipe.execute()

    def claim_every(self, alarm_id: str, field: str, now_ms: int, every_ms: int) -> bool:
        """Atomically set ``field`` to now_ms unless set less than ``every_ms`` ago: whoever
        gets ``True`` does the job (a reminder, a notice) for this interval."""
        return bool(self._claim_every(keys=[self.key("incident", alarm_id)],
                                      args=[field, now_ms, every_ms]))

    def reports_due(self, closed_before_ms: int) -> list[Incident]:
        """Incidents whose report is still missing, resolved before ``closed_before_ms``."""
        return self._load(self.r.zrangebyscore(self.key("incidents", "report-due"), "-inf",
                                               closed_before_ms))

    def notices_due(self) -> list[str]:
        return sorted(self.r.smembers(self.key("incidents", "notice-due")))

    def notice_done(self, alarm_id: str) -> None:
        self.r.srem(self.key("incidents", "notice-due"), alarm_id)

    def purge_personal(self, alarm_id: str, now_ms: int) -> None:
        pipe = self.r.pipeline()
        pipe.hdel(self.key("incident", alarm_id), *PERSONAL_FIELDS)
        pipe.hset(self.key("incident", alarm_id), "purged_ms", now_ms)
        pipe.execute()

    def audit(self, event: str, *, user: str, role: str, incidents: Iterable[str], where: str,
              now_ms: int) -> None:
        """Log a person's read of personal fields (or a purge) in the privacy audit stream."""
        self.r.xadd(self.key("privacy-audit"),
                    {"event": event, "at_ms": now_ms, "user": user, "role": role,
                     "incidents": " ".join(incidents), "where": where},
                    maxlen=AUDIT_MAXLEN, approximate=True)

    def audit_log(self, count: int | None = 100) -> list[dict[str, str]]:
        """The newest ``count`` audit entries (``None``: all kept), newest first."""
        return [f for _, f in self.r.xrevrange(self.key("privacy-audit"), count=count)]


def _incident(alarm: Alarm, f: dict[str, str]) -> Incident:
    def opt(name: str) -> int | None:
        return int(f[name]) if f.get(name) else None
    return Incident(alarm=alarm, drill=f.get("drill") == "1",
                    notified=tuple(n for n in f.get("notified", "").split("\n") if n),
                    description=f.get("description", ""), people=f.get("people", ""),
                    resolve_note=f.get("resolve_note", ""), reporter=f.get("reporter", ""),
                    report=report_from_fields(f),
                    supervisor_notified_ms=opt("supervisor_notified_ms"),
                    last_reminder_ms=opt("last_reminder_ms"), purged_ms=opt("purged_ms"))


def _fields_of(i: Incident) -> dict[str, str]:
    out = {"description": i.description, "people": i.people, "reporter": i.reporter,
           "resolve_note": i.resolve_note}
    for name in ("supervisor_notified_ms", "last_reminder_ms", "purged_ms"):
        if getattr(i, name) is not None:
            out[name] = str(getattr(i, name))
    if i.report is not None:
        out.update(report_to_fields(i.report))
    return out
