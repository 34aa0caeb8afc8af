"""Incidents and reports: the record after the alarm, the report, exports, figures.

Routes (any logged-in user; personal fields only for ``[privacy] personal_roles``)::

    GET  /incidents                 the list, filtered (query: branch, kind, since, until
                                    as YYYY-MM-DD UTC, until inclusive; drill = yes|no;
                                    status = a ReportStatus), and every overdue report
    GET  /incidents/export.csv      the filtered list as CSV (same query)
    GET  /incidents/export.json     ... as JSON
    GET  /incidents/<id>            the incident: timeline, responders, outcome, report
    POST /incidents/<id>/details    form: reporter (a contact's phone), description, people
    POST /incidents/<id>/report     form: who, what_happened, actions, police (yes|no),
                                    police_ref, followup, followup_detail
    GET  /reports                   charts (SVG, each with its table), drill reports and
                                    readiness flags (query: since, until; default 12 months)

Privacy: a role not in ``personal_roles`` never gets personal fields - not on a page,
not in an export, and cannot write them. Each time a person is shown or exports
personal fields that hold something, the privacy audit stream records who, when,
which incidents and where (admins read it: :mod:`dashboard.privacy`). Personal fields
are :data:`hub.incidents.model.PERSONAL_FIELDS`. A bad query or form field is answered
400 naming it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import (Blueprint, Response, abort, flash, g, redirect, render_template, request,
                   url_for)

from hub.incidents import charts, export
from hub.incidents.model import (FOLLOWUPS, MAX_TEXT, Incident, ReportStatus,
                                 parse_report)
from hub.incidents.reports import drill_reports, readiness
from hub.incidents.store import IncidentStore

from .alarms import OUTCOMES, timeline_rows
from .context import dashboard_context, now_ms

log = logging.getLogger(__name__)

bp = Blueprint("incidents", __name__)

DAY_MS = 86_400_000
STATUS_LABELS = {"open": "Alarm still active", "not_needed": "Not needed",
                 "due": "Due", "overdue": "OVERDUE", "filed": "Filed"}


def incident_store() -> IncidentStore:
    ctx = dashboard_context()
    return IncidentStore(ctx.store, ctx.site)


def may_read_personal() -> bool:
    return dashboard_context().site.incidents.may_read_personal(g.user.role if g.user else None)


def _synced() -> IncidentStore:
    """The incident store, with closes not yet indexed by any process indexed now."""
    store = incident_store()
    store.sync(consumer=f"dashboard-{os.getpid()}")
    return store


@dataclass(frozen=True)
class Filters:
    branch: str = ""
    kind: str = ""
    since: str = ""
    until: str = ""
    drill: str = ""
    status: str = ""

    def as_dict(self) -> dict[str, str]:
        return {k: v for k, v in self.__dict__.items() if v}


def _day_ms(text: str, field: str) -> int:
    try:
        day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        abort(400, description=f"{field}: {text!r} is not a date; write YYYY-MM-DD, "
                               "e.g. 2024-03-15")
    return int(day.timestamp() * 1000)


def parse_filters(args: Any) -> tuple[Filters, int | None, int | None]:
    """The query's filters, and the period as [since_ms, until_ms); 400 for a bad field."""
    site = dashboard_context().site
    f = Filters(**{k: (args.get(k) or "").strip() for k in Filters.__dataclass_fields__})
    if f.branch and f.branch not in site.branches:
        abort(400, description=f"branch: unknown branch {f.branch!r}; known: "
                               f"{', '.join(site.branches)}")
    if f.kind and f.kind not in site.kinds:
        abort(400, description=f"kind: unknown kind {f.kind!r}; known: {', '.join(site.kinds)}")
    if f.drill not in ("", "yes", "no"):
        abort(400, description="drill: yes, no, or leave it out for both")
    if f.status and f.status not in STATUS_LABELS:
        abort(400, description=f"status: one of {', '.join(STATUS_LABELS)}")
    since = _day_ms(f.since, "since") if f.since else None
    until = _day_ms(f.until, "until") + DAY_MS if f.until else None
    if since is not None and until is not None and until <= since:
        abort(400, description="until: must not be before since")
    return f, since, until


def _filtered(store: IncidentStore, f: Filters, since: int | None, until: int | None
              ) -> list[tuple[Incident, ReportStatus]]:
    overdue_ms, now = dashboard_context().site.incidents.report_overdue_ms, now_ms()
    rows = []
    for i in store.between(since, until):
        status = i.report_status(now, overdue_ms)
        if (f.branch and i.alarm.branch != f.branch) or (f.kind and i.alarm.kind != f.kind) \
                or (f.drill and i.drill != (f.drill == "yes")) \
                or (f.status and status != f.status):
            continue
        rows.append((i, status))
    return rows


@bp.get("/incidents")
def index() -> Any:
    f, since, until = parse_filters(request.args)
    store = _synced()
    rows = _filtered(store, f, since, until)
    overdue = _filtered(store, Filters(status="overdue"), None, None)
    return render_template("incidents.html", rows=rows, overdue=overdue, filters=f,
                           site=dashboard_context().site, status_labels=STATUS_LABELS)


@bp.get("/incidents/export.<fmt>")
def export_incidents(fmt: str) -> Any:
    if fmt not in ("csv", "json"):
        abort(404, description="Exports are export.csv and export.json.")
    f, since, until = parse_filters(request.args)
    store = _synced()
    rows = _filtered(store, f, since, until)
    personal = may_read_personal()
    shown = [i.id for i, _ in rows if i.has_personal]
    if personal and shown:
        store.audit("export", user=g.user.name, role=g.user.role, incidents=shown,
                    where=f"/incidents/export.{fmt}", now_ms=now_ms())
    if not personal:
        rows = [(i.redacted(), s) for i, s in rows]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    if fmt == "csv":
        body, content_type = export.to_csv(rows, personal=personal), "text/csv; charset=utf-8"
    else:
        body = export.to_json(rows, personal=personal, filters=f.as_dict())
        content_type = "application/json"
    # content_type, not mimetype: Flask appends "; charset=utf-8" to a text/* mimetype
    response = Response(body, content_type=content_type)
    response.headers["Content-Disposition"] = \
        f'attachment; filename="haven-incidents-{stamp}.{fmt}"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _incident_or_404(store: IncidentStore, alarm_id: str) -> Incident:
    incident = store.get(alarm_id)
    if incident is None:
        abort(404, description=f"No incident {alarm_id!r}: test presses are not incidents, "
                               "and the id may be mistyped.")
    return incident


def _page(store: IncidentStore, incident: Incident, *, errors: dict[str, str] | None = None,
          form: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    ctx = dashboard_context()
    personal = may_read_personal()
    if personal and incident.has_personal:
        store.audit("read", user=g.user.name, role=g.user.role, incidents=[incident.id],
                    where=f"/incidents/{incident.id}", now_ms=now_ms())
    shown = incident if personal else incident.redacted()
    a = incident.alarm
    branch = ctx.site.branches.get(a.branch)
    kind = ctx.site.kinds.get(a.kind)
    contacts = [c for c in ctx.site.contacts if a.branch in c.branches]
    return render_template(
        "incident.html", incident=shown, alarm=a, personal=personal,
        status=incident.report_status(now_ms(), ctx.site.incidents.report_overdue_ms),
        status_labels=STATUS_LABELS, rows=timeline_rows(ctx.store.timeline(a.id)),
        branch_name=branch.name if branch else a.branch,
        room_name=(branch.room(a.room).name if branch and branch.room(a.room) else a.room),
        kind_label=kind.label if kind else a.kind, tz=branch.timezone if branch else "UTC",
        contacts=contacts, followups=FOLLOWUPS, outcomes=OUTCOMES, max_text=MAX_TEXT,
        errors=errors or {}, form=form or {}), status


@bp.get("/incidents/<alarm_id>")
def show(alarm_id: str) -> Any:
    store = incident_store()
    return _page(store, _incident_or_404(store, alarm_id))


@bp.post("/incidents/<alarm_id>/details")
def details(alarm_id: str) -> Any:
    store = incident_store()
    incident = _incident_or_404(store, alarm_id)
    site = dashboard_context().site
    reporter = request.form.get("reporter", "").strip()
    if reporter and not any(c.phone == reporter and incident.alarm.branch in c.branches
                            for c in site.contacts):
        return _page(store, incident, status=400, errors={
            "reporter": "Reporter: choose a contact of this branch."})
    personal = {}
    if may_read_personal():
        for key in ("description", "people"):
            value = request.form.get(key)
            if value is not None and len(value.strip()) > MAX_TEXT:
                return _page(store, incident, status=400, errors={
                    key: f"{key.capitalize()}: at most {MAX_TEXT} characters."})
            if value is not None:
                personal[key] = value.strip()
    elif request.form.get("description") or request.form.get("people"):
        abort(403, description="Your role may not write personal fields (description, people "
                               "involved); ask someone whose role may ([privacy] "
                               "personal_roles in the site config).")
    store.save_details(alarm_id, reporter=reporter, **personal)
    log.info("incident %s details saved by %s", alarm_id, g.user.name)
    flash("Incident details saved.", "info")
    return redirect(url_for("incidents.show", alarm_id=alarm_id), 303)


@bp.post("/incidents/<alarm_id>/report")
def file_report(alarm_id: str) -> Any:
    store = incident_store()
    incident = _incident_or_404(store, alarm_id)
    if incident.alarm.state.active:
        abort(409, description="The alarm is still active: resolve it first, then file the "
                               "report.")
    personal = may_read_personal()
    if not personal and incident.report is not None:
        abort(409, description="The report is filed already; what it says is personal data "
                               "your role may not read, so ask someone whose role may "
                               "([privacy] personal_roles in the site config) to change it.")
    if not personal and request.form.get("followup_detail"):
        abort(403, description="Your role may not write the follow-up details (personal "
                               "data); leave them empty or ask someone whose role may.")
    report, errors = parse_report(request.form, by=g.user.name, now_ms=now_ms(),
                                  personal_allowed=personal)
    if report is None:
        return _page(store, incident, errors=errors, form=dict(request.form), status=400)
    store.file_report(alarm_id, report, keep_personal=personal)
    log.info("incident %s report filed by %s", alarm_id, g.user.name)
    flash(f"Report filed by {g.user.name}.", "info")
    return redirect(url_for("incidents.show", alarm_id=alarm_id), 303)


@bp.get("/reports")
def reports() -> Any:
    f, since, until = parse_filters(request.args)
    now = now_ms()
    until = until or now
    since = since or int((datetime.fromtimestamp(until / 1000, timezone.utc)
                          - timedelta(days=365)).timestamp() * 1000)
    store = _synced()
    ctx = dashboard_context()
    period = store.between(since, until)
    year = store.between(now - 366 * DAY_MS, now + 1)
    drills = drill_reports(ctx.site, store.between(since, until))
    figures = charts.report_charts(ctx.site, period, drill_reports(ctx.site, year),
                                   since_ms=since, until_ms=until, now_ms=now)
    ready = readiness(ctx.site, store.last_drills(), store.test_presses(), now,
                      since_ms=store.installed_ms(now))
    return render_template("reports.html", charts=figures, drills=drills, ready=ready,
                           site=ctx.site, since_ms=since, until_ms=until)


def readiness_now():
    """The board's readiness flags now (:class:`hub.incidents.reports.Readiness`): branches
    with an overdue drill, devices with a stale test press. For dashboard.board."""
    store, now = incident_store(), now_ms()
    return readiness(store.site, store.last_drills(), store.test_presses(), now,
                     since_ms=store.installed_ms(now))
