"""The privacy read log, for admins: who was shown or exported personal data, and purges.

Routes (admins only; operators get 403)::

    GET /privacy/log        the newest entries (query: count, 1..MAX_SHOWN, default 200)
    GET /privacy/log.csv    every entry kept (hub.incidents.store.AUDIT_MAXLEN at most),
                            newest first, as CSV

The log is the privacy audit stream :mod:`dashboard.incidents` writes on each read or
export of personal fields and the retention job writes on each purge
(:meth:`hub.incidents.store.IncidentStore.audit`). Exporting the log is itself logged
(event ``log_export``): it names who read which incidents.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, abort, g, render_template, request

from hub.incidents import export

from .auth import admin_required
from .context import now_ms
from .incidents import incident_store

bp = Blueprint("privacy", __name__, url_prefix="/privacy")

#: Most entries the page shows at once (the CSV has them all).
MAX_SHOWN = 5000
DEFAULT_SHOWN = 200
EVENT_LABELS = {"read": "Read", "export": "Exported", "purge": "Purged (retention)",
                "log_export": "Exported this log"}


@bp.get("/log")
@admin_required
def log_page() -> Any:
    raw = request.args.get("count", str(DEFAULT_SHOWN)).strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_SHOWN:
        abort(400, description=f"count: {raw!r} is not a number of entries from 1 to "
                               f"{MAX_SHOWN}; leave it out for the newest {DEFAULT_SHOWN}")
    entries = incident_store().audit_log(int(raw))
    return render_template("privacy.html", entries=entries, labels=EVENT_LABELS,
                           count=int(raw))


@bp.get("/log.csv")
@admin_required
def log_csv() -> Response:
    store = incident_store()
    entries = store.audit_log(None)
    store.audit("log_export", user=g.user.name, role=g.user.role, incidents=(),
                where="/privacy/log.csv", now_ms=now_ms())
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    response = Response(export.audit_csv(entries), content_type="text/csv; charset=utf-8")
    response.headers["Content-Disposition"] = \
        f'attachment; filename="haven-read-log-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response
