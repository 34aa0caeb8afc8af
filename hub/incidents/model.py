"""An incident: an alarm's record after the fact, its report, and what of it is personal.

Every alarm of a kind that pages someone becomes an incident (test presses do not).
Its life, as far as the report goes (:class:`ReportStatus`)::

    open ──(alarm resolved, not a drill)──> due ──(report_overdue_h)──> overdue
      │                                      └───────(report filed)──────┴──> filed
      └──(cancelled as a false alarm, or a drill)──> not_needed

Personal data - the description of the situation, the people involved, the operator's
resolve note, the report's account (what happened, actions taken) and the details of a
ban or trespass notice - lives only in :data:`PERSONAL_FIELDS`; only roles the site
allows read it (anyone filing may write the account), and it is purged after the
retention period while the timeline, the outcome and figures stay. Pure: no I/O,
``now_ms`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Mapping

from hub.core.model import Alarm, AlarmState

#: Free text about people: shown and exported only to allowed roles, purged after retention.
PERSONAL_FIELDS = ("description", "people", "resolve_note", "what_happened", "actions",
                   "followup_detail")
#: Follow-up after the incident: value -> label.
FOLLOWUPS = {"none": "None", "ban": "Ban from the library", "trespass": "Trespass notice",
             "other": "Other (see details)"}
#: Longest free-text field accepted, in characters.
MAX_TEXT = 4000


class ReportStatus(StrEnum):
    OPEN = "open"              # the alarm is still active
    NOT_NEEDED = "not_needed"  # a drill, or cancelled as a false alarm
    DUE = "due"                # resolved; the report is expected
    OVERDUE = "overdue"        # resolved longer ago than report_overdue_h, no report yet
    FILED = "filed"


@dataclass(frozen=True)
class Report:
    """What the reporter files after a resolved alarm (seed 001: record the incident)."""

    who: str                 # who writes it (staff member)
    what_happened: str
    actions: str             # actions taken
    police: bool             # police involved
    police_ref: str          # their case or incident number, if any
    followup: str            # a key of FOLLOWUPS
    followup_detail: str     # personal: whom the ban / notice concerns, its terms
    filed_by: str            # the dashboard user who filed it
    filed_ms: int


@dataclass(frozen=True)
class Incident:
    """An alarm with its incident record. ``notified``: names of contacts paged (from the
    timeline); ``reporter``: phone of the contact expected to file the report."""

    alarm: Alarm
    drill: bool = False
    notified: tuple[str, ...] = ()
    description: str = ""
    people: str = ""
    resolve_note: str = ""   # the operator's note at resolve (personal; never texted)
    reporter: str = ""
    report: Report | None = None
    supervisor_notified_ms: int | None = None
    last_reminder_ms: int | None = None
    purged_ms: int | None = None

    @property
    def id(self) -> str:
        return self.alarm.id

    @property
    def needs_report(self) -> bool:
        return self.alarm.state is AlarmState.RESOLVED and not self.drill

    def report_status(self, now_ms: int, overdue_ms: int) -> ReportStatus:
        if self.alarm.state.active:
            return ReportStatus.OPEN
        if not self.needs_report:
            return ReportStatus.NOT_NEEDED
        if self.report is not None:
            return ReportStatus.FILED
        closed = self.alarm.closed_at_ms or self.alarm.received_at_ms
        return ReportStatus.OVERDUE if now_ms - closed >= overdue_ms else ReportStatus.DUE

    @property
    def first_ack_ms(self) -> int | None:
        """From the alarm reaching the hub to the first acknowledgement, in ms."""
        a = self.alarm
        return None if a.acknowledged_at_ms is None else a.acknowledged_at_ms - a.received_at_ms

    @property
    def has_personal(self) -> bool:
        return any(self.personal().values())

    def personal(self) -> dict[str, str]:
        r = self.report
        return {"description": self.description, "people": self.people,
                "resolve_note": self.resolve_note,
                "what_happened": r.what_happened if r else "",
                "actions": r.actions if r else "",
                "followup_detail": r.followup_detail if r else ""}

    def redacted(self) -> "Incident":
        """This incident without its personal fields (for roles that may not read them)."""
        report = replace(self.report, what_happened="", actions="", followup_detail="") \
            if self.report else None
        return replace(self, description="", people="", resolve_note="", report=report)


def report_from_fields(fields: Mapping[str, str]) -> Report | None:
    """The report stored in an incident hash, or ``None`` if none was filed."""
    if not fields.get("filed_ms"):
        return None
    return Report(who=fields.get("who", ""), what_happened=fields.get("what_happened", ""),
                  actions=fields.get("actions", ""), police=fields.get("police") == "1",
                  police_ref=fields.get("police_ref", ""),
                  followup=fields.get("followup", "none"),
                  followup_detail=fields.get("followup_detail", ""),
                  filed_by=fields.get("filed_by", ""), filed_ms=int(fields["filed_ms"]))


def report_to_fields(report: Report) -> dict[str, str]:
    return {"who": report.who, "what_happened": report.what_happened,
            "actions": report.actions, "police": "1" if report.police else "0",
            "police_ref": report.police_ref, "followup": report.followup,
            "followup_detail": report.followup_detail, "filed_by": report.filed_by,
            "filed_ms": str(report.filed_ms)}


def parse_report(form: Mapping[str, str], *, by: str, now_ms: int,
                 personal_allowed: bool) -> tuple[Report | None, dict[str, str]]:
    """A report from a submitted form, or the errors by field (each names the fix).

    Fields: who, what_happened, actions (required), police (``yes``/``no``), police_ref,
    followup (a key of FOLLOWUPS), followup_detail (personal: ignored unless allowed)."""
    text = {k: (form.get(k) or "").strip() for k in
            ("who", "what_happened", "actions", "police", "police_ref", "followup",
             "followup_detail")}
    errors = {}
    for key, label in (("who", "Who"), ("what_happened", "What happened"),
                       ("actions", "Actions taken")):
        if not text[key]:
            errors[key] = f"{label}: required."
    for key, value in text.items():
        if len(value) > MAX_TEXT:
            errors[key] = f"{key.replace('_', ' ').capitalize()}: at most {MAX_TEXT} " \
                          f"characters (it has {len(value)})."
    if text["police"] not in ("yes", "no"):
        errors["police"] = "Police involved: choose yes or no."
    if text["followup"] not in FOLLOWUPS:
        errors["followup"] = "Follow-up: choose one (None if there is none)."
    if errors:
        return None, errors
    return Report(who=text["who"], what_happened=text["what_happened"],
                  actions=text["actions"], police=text["police"] == "yes",
                  police_ref=text["police_ref"], followup=text["followup"],
                  followup_detail=text["followup_detail"] if personal_allowed else "",
                  filed_by=by, filed_ms=now_ms), {}


def incident_json(incident: Incident, status: ReportStatus, *, personal: bool
                  ) -> dict[str, Any]:
    """One incident as JSON (export and API); personal fields only with ``personal``."""
    a = incident.alarm
    out: dict[str, Any] = {
        "id": a.id, "kind": a.kind, "branch": a.branch, "room": a.room, "device": a.device,
        "state": str(a.state), "drill": incident.drill, "received_at_ms": a.received_at_ms,
        "acknowledged_at_ms": a.acknowledged_at_ms, "acknowledged_by": a.acknowledged_by,
        "first_ack_ms": incident.first_ack_ms, "closed_at_ms": a.closed_at_ms,
        "closed_by": a.closed_by, "outcome": a.reason, "notified": list(incident.notified),
        "report_status": str(status), "personal_purged_at_ms": incident.purged_ms,
        "report": None}
    r = incident.report
    if r is not None:
        out["report"] = {"who": r.who, "police": r.police, "police_ref": r.police_ref,
                         "followup": r.followup, "filed_by": r.filed_by,
                         "filed_ms": r.filed_ms}
    if personal:
        out["description"], out["people"] = incident.description, incident.people
        out["resolve_note"] = incident.resolve_note
        if out["report"] is not None:
            out["report"].update(what_happened=r.what_happened, actions=r.actions,
                                 followup_detail=r.followup_detail)
    return out
