"""The incident jobs: supervisor notice on resolve, overdue-report reminders, retention purge.

Wiring (a thread of every hub worker; each job happens once, whichever worker runs it)::

    jobs = IncidentJobs(site, IncidentStore(store, site), notifier, consumer=hub_id,
                        mailer=Mailer(smtp) if (smtp := smtp_from_env()) else None,
                        public_url=settings.public_url)
    threading.Thread(target=run_jobs, args=(jobs, stop), daemon=True).start()

- **Notice**: a non-drill alarm resolved (seen by :meth:`IncidentStore.sync`) is
  texted to its branch's supervisor contacts (``[incidents] supervisor_roles``)
  once: the first worker to set ``supervisor_notified_ms`` sends it.
- **Reminders**: a report not filed ``report_overdue_h`` after the resolve is
  overdue; its reporter (if chosen) and the supervisors are reminded at once and
  then every ``reminder_every_h`` (an atomic claim per interval), by e-mail when
  SMTP is configured and the contact has an address in ``[incidents] emails``,
  else by SMS.
- **Purge**: personal fields of incidents older than ``[privacy] retention_days``
  are deleted (timeline and figures kept), each purge logged and audited.

Every outcome goes to the alarm's timeline; failures are logged as errors.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

import redis

from hub.core.model import Delivery
from hub.edges.notify import Notifier
from hub.config.site import Contact, Site

from hub.edges.outage import Outage
from hub.incidents.mail import Mailer
from hub.incidents.model import PERSONAL_FIELDS, Incident, ReportStatus
from hub.incidents.store import IncidentStore

log = logging.getLogger("haven.incidents")

#: How often the jobs run, in seconds (a resolve's notice leaves within this).
TICK_S = 5.0
#: How often the retention purge runs, in seconds.
PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class TickResult:
    indexed: int
    notices: int
    reminders: int
    purged: int


class IncidentJobs:
    """The jobs of one hub worker. ``clock`` returns Unix seconds."""

    def __init__(self, site: Site, incidents: IncidentStore, notifier: Notifier, *,
                 consumer: str, mailer: Mailer | None = None, public_url: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.site, self.incidents, self.notifier, self.mailer = site, incidents, notifier, mailer
        self.consumer, self.public_url, self.clock = consumer, public_url, clock
        self._next_purge = 0.0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def tick(self) -> TickResult:
        """Index closes, send due notices and reminders, and purge when due (hourly)."""
        indexed = len(self.incidents.sync(self.consumer))
        notices = sum(self.notify_supervisors(i) for i in self.incidents.notices_due())
        reminders = self.send_reminders()
        purged = 0
        if self.clock() >= self._next_purge:
            self._next_purge = self.clock() + PURGE_EVERY_S
            purged = self.purge()
        return TickResult(indexed, notices, reminders, purged)

    # --- who and what -------------------------------------------------------------

    def supervisors(self, branch_id: str) -> list[Contact]:
        roles = set(self.site.incidents.supervisor_roles)
        found: dict[str, Contact] = {}
        for c in self.site.contacts:
            if branch_id in c.branches and roles & c.roles:
                found.setdefault(c.phone, c)
        return list(found.values())

    def _where(self, incident: Incident) -> str:
        a = incident.alarm
        branch = self.site.branches.get(a.branch)
        room = branch.room(a.room) if branch else None
        kind = self.site.kinds.get(a.kind)
        return (f"{kind.label if kind else a.kind} alarm at {branch.name if branch else a.branch}"
                f", {room.name if room else a.room}")

    def _when(self, incident: Incident, ms: int | None) -> str:
        branch = self.site.branches.get(incident.alarm.branch)
        zone = ZoneInfo(branch.timezone) if branch else timezone.utc
        return datetime.fromtimestamp((ms or 0) / 1000, zone).strftime("%a %d %b %H:%M %Z")

    def _link(self, incident: Incident) -> str:
        return f" {self.public_url}/incidents/{incident.id}" if self.public_url else \
            f" (incident {incident.id} on the dashboard)"

    # --- the notice ---------------------------------------------------------------------

    def notify_supervisors(self, alarm_id: str) -> int:
        """Text the supervisors that the alarm was resolved and a report is due, once
        (whichever worker claims it). Returns how many texts were accepted."""
        incident = self.incidents.get(alarm_id)
        if incident is None or not incident.needs_report or \
                not self.incidents.claim_every(alarm_id, "supervisor_notified_ms",
                                               self._now_ms(), 10 ** 15):
            self.incidents.notice_done(alarm_id)
            return 0
        a = incident.alarm
        outcome = (a.reason or "").split(":", 1)[0]  # the outcome's label, never the note
        text = (f"HAVEN: {self._where(incident)} was resolved by {a.closed_by} at "
                f"{self._when(incident, a.closed_at_ms)} ({outcome}). A report is due within "
                f"{self.site.incidents.report_overdue_h:g} h:{self._link(incident)}")
        sent = self._tell(incident, self.supervisors(a.branch), text, "supervisor_notified",
                          subject=None)
        self.incidents.notice_done(alarm_id)
        return sent

    # --- reminders -----------------------------------------------------------------------

    def send_reminders(self) -> int:
        """Remind about each overdue report, once per reminder interval; returns how many
        reminders were accepted."""
        s, now = self.site.incidents, self._now_ms()
        sent = 0
        for incident in self.incidents.reports_due(now - s.report_overdue_ms):
            if incident.report_status(now, s.report_overdue_ms) is not ReportStatus.OVERDUE:
                continue
            if not self.incidents.claim_every(incident.id, "last_reminder_ms", now,
                                              s.reminder_every_ms):
                continue
            recipients = self.supervisors(incident.alarm.branch)
            reporter = next((c for c in self.site.contacts if c.phone == incident.reporter),
                            None)
            if reporter is not None and reporter.phone not in {c.phone for c in recipients}:
                recipients.insert(0, reporter)
            text = (f"HAVEN reminder: the report on the {self._where(incident)} "
                    f"(resolved {self._when(incident, incident.alarm.closed_at_ms)}) is "
                    f"overdue. Please file it:{self._link(incident)}")
            sent += self._tell(incident, recipients, text, "report_reminder",
                               subject=f"Overdue incident report: {self._where(incident)}")
        return sent

    def _tell(self, incident: Incident, contacts: list[Contact], text: str, event: str, *,
              subject: str | None) -> int:
        """Send ``text`` to each contact (e-mail when ``subject`` is given, SMTP works and
        they have an address; else SMS), recording each outcome in the timeline."""
        if not contacts:
            log.error("incident %s: %s: no contact to tell at branch %s; add one to the site "
                      "config", incident.id, event, incident.alarm.branch)
            self.incidents.store.add_timeline(incident.id, event, at_ms=self._now_ms(),
                                              contact="", channel="", ok=0,
                                              error="no contact to tell")
            return 0
        accepted = 0
        for contact in contacts:
            address = self.site.incidents.emails.get(contact.phone)
            try:
                if subject is not None and self.mailer is not None and address:
                    channel, delivery = "email", self.mailer.send(address, subject, text)
                else:
                    channel, delivery = "sms", self.notifier.send_sms(contact.phone, text[:320])
            except Exception as exc:  # a notifier must not stop the others
                log.exception("incident %s: %s to %s failed", incident.id, event, contact.name)
                channel, delivery = "sms", Delivery.failed(str(exc), retryable=True)
            self.incidents.store.add_timeline(incident.id, event, at_ms=self._now_ms(),
                                              contact=contact.name, channel=channel,
                                              ok=int(delivery.ok), error=delivery.error or "")
            if delivery.ok:
                accepted += 1
                log.info("incident %s: %s to %s by %s", incident.id, event, contact.name,
                         channel)
            else:
                log.error("incident %s: %s to %s by %s FAILED: %s", incident.id, event,
                          contact.name, channel, delivery.error)
        return accepted

    # --- retention -----------------------------------------------------------------------

    def purge(self) -> int:
        """Delete the personal fields of incidents older than the retention period; returns
        how many incidents had some."""
        now = self._now_ms()
        r, key = self.incidents.r, self.incidents.key
        old = r.zrangebyscore(key("incidents"), "-inf", now - self.site.incidents.retention_ms)
        pipe = r.pipeline(transaction=False)
        for alarm_id in old:
            pipe.hmget(key("incident", alarm_id), *PERSONAL_FIELDS)
        holding = [i for i, values in zip(old, pipe.execute()) if any(values)]
        for alarm_id in holding:
            self.incidents.purge_personal(alarm_id, now)
            self.incidents.store.add_timeline(alarm_id, "personal_purged", at_ms=now,
                                              by="retention")
            log.info("incident %s: personal fields purged (older than %g days)", alarm_id,
                     self.site.incidents.retention_days)
        if holding:
            self.incidents.audit("purge", user="retention", role="job", incidents=holding,
                                 where=f"older than {self.site.incidents.retention_days:g} "
                                       "days", now_ms=now)
        return len(holding)


def run_jobs(jobs: IncidentJobs, stop: threading.Event, every_s: float = TICK_S) -> None:
    """Run :meth:`IncidentJobs.tick` at once (a first start indexes the alarms closed
    before it, while the hub is quiet, not in its first burst), then every ``every_s``
    until ``stop``; a dead Redis is logged (once per outage, and its end) and retried,
    never fatal."""
    store = Outage("store", log, "incident jobs")
    first = True
    while first or not stop.wait(every_s):
        first = False
        try:
            jobs.tick()
            store.up()
        except redis.RedisError as exc:
            store.down(exc)
        except Exception:
            log.exception("incident jobs failed; retrying in %.0f s", every_s)
