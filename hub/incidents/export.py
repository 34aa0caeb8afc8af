"""Incidents (and the privacy read log) as CSV (for a spreadsheet) and JSON (for scripts).
Pure: text in, text out.

CSV: UTF-8 with a byte-order mark (so Excel reads accents right), a header row,
times in ISO 8601 UTC (``2024-03-15T12:00:00Z``), one row per incident. A cell a
spreadsheet would run as a formula (starting ``= + - @``) is prefixed with ``'``.
Personal columns (:data:`PERSONAL_COLUMNS`) are present only when the exporting
role may read them; otherwise they are left out entirely, not blanked.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Iterable

from hub.incidents.model import FOLLOWUPS, Incident, ReportStatus, incident_json

COLUMNS = ("id", "branch", "room", "kind", "device", "state", "drill", "received_at",
           "acknowledged_at", "acknowledged_by", "first_ack_s", "closed_at", "closed_by",
           "outcome", "notified", "report_status", "report_who", "police_involved",
           "police_ref", "followup", "report_filed_at", "report_filed_by", "personal_purged_at")
PERSONAL_COLUMNS = ("description", "people", "resolve_note", "report_what_happened",
                    "report_actions", "followup_detail")
BOM = "\ufeff"


def iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def to_csv(rows: Iterable[tuple[Incident, ReportStatus]], *, personal: bool) -> str:
    """The incidents as CSV text (starting with the BOM)."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS + (PERSONAL_COLUMNS if personal else ()))
    for incident, status in rows:
        a, r = incident.alarm, incident.report
        row = [a.id, a.branch, a.room, a.kind, a.device, str(a.state),
               "yes" if incident.drill else "no", iso(a.received_at_ms),
               iso(a.acknowledged_at_ms), a.acknowledged_by or "",
               "" if incident.first_ack_ms is None else f"{incident.first_ack_ms / 1000:.1f}",
               iso(a.closed_at_ms), a.closed_by or "", a.reason or "",
               "; ".join(incident.notified), str(status),
               r.who if r else "", ("yes" if r.police else "no") if r else "",
               r.police_ref if r else "",
               FOLLOWUPS.get(r.followup, r.followup) if r else "",
               iso(r.filed_ms) if r else "", r.filed_by if r else "", iso(incident.purged_ms)]
        if personal:
            row += [incident.description, incident.people, incident.resolve_note,
                    r.what_happened if r else "", r.actions if r else "",
                    r.followup_detail if r else ""]
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def to_json(rows: Iterable[tuple[Incident, ReportStatus]], *, personal: bool,
            filters: dict[str, str]) -> str:
    """The incidents as a JSON document: the filters used, whether personal fields are
    included, and the incidents (see :func:`hub.incidents.model.incident_json`)."""
    items = [incident_json(i, s, personal=personal) for i, s in rows]
    return json.dumps({"filters": filters, "personal_fields": personal, "count": len(items),
                       "incidents": items}, ensure_ascii=False, indent=1)


AUDIT_COLUMNS = ("at", "event", "user", "role", "incidents", "where")


def audit_csv(entries: Iterable[dict[str, str]]) -> str:
    """The privacy read log (:meth:`hub.incidents.store.IncidentStore.audit_log` entries)
    as CSV text, BOM first, times in ISO 8601 UTC, incident ids space-separated."""
    out = io.StringIO()
    out.write(BOM)
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(AUDIT_COLUMNS)
    for e in entries:
        at = e.get("at_ms", "")
        writer.writerow([_cell(v) for v in (iso(int(at)) if at.isdigit() else at,
                                            e.get("event"), e.get("user"), e.get("role"),
                                            e.get("incidents"), e.get("where"))])
    return out.getvalue()
