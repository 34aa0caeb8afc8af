"""The alarm page: what happened, who was told, who did what when; and the operator's actions.

Routes (any logged-in user)::

    GET  /alarms/<id>               the alarm, its timeline, and the actions its state allows
    POST /alarms/<id>/acknowledge   a person is responding: the device shows "help is coming"
                                    (asked with ``Accept: application/json``, as the board's
                                    one-click button does: JSON ``{ok, message}``, 409 when
                                    someone was quicker)
    POST /alarms/<id>/resolve       form: outcome (one of OUTCOMES), note (required)
    POST /alarms/<id>/cancel        a false alarm; form: reason (required)
    POST /alarms/<id>/real          "This is real": a drill alarm leaves the drill and pages
                                    with the real policy, police included, at once (hub.core.drill)

Each action is the same store call the CLI makes (``haven alarm ack|resolve|cancel``):
``store.transition(id, event, by=<user>)``, which stops the escalation, queues the
device's command and tells every board. A resolve also records a ``resolution``
timeline entry with the outcome. The note is personal data: it is kept only in the
incident (:mod:`hub.incidents`), read by ``[privacy] personal_roles`` and purged after
the retention period; the alarm, its timeline and the all-clear carry the outcome
alone. A form with a field missing is shown
again with 400 and the field named; an action the alarm's state no longer allows
(someone else was quicker) comes back as a flash message saying who did what when.
Unknown alarm: 404. The page follows the alarm live (static/alarm.js): another
operator's acknowledgement shows without a reload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from flask import (Blueprint, abort, flash, g, jsonify, redirect, render_template, request,
                   url_for)

from hub.incidents.store import IncidentStore
from hub.core.drill import who_is_paged
from hub.core.lifecycle import AlarmEvent, IllegalTransition
from hub.core.model import LATE_MS, Alarm, AlarmState
from hub.core.pagewords import BRANCH_STATE_WORDS, page_words
from hub.config.site import Site

from .context import dashboard_context, now_ms

log = logging.getLogger(__name__)

bp = Blueprint("alarms", __name__, url_prefix="/alarms")
#: A page's channel in the timeline (a push: Web Push, dashboard.push).
CHANNEL_WORDS = {"sms": "SMS", "call": "Call", "push": "Push"}

#: Resolve outcomes: value -> label (what ended the situation; the note says the rest).
OUTCOMES = {
    "handled_by_staff": "Handled by staff on site",
    "patron_left": "Patron left the library",
    "security_attended": "Security attended",
    "police_attended": "Police attended",
    "medical_attended": "Fire / ambulance attended",
    "referred": "Referred to outside support (988, social worker, family)",
    "other": "Other (see note)",
}
#: Outcomes no longer offered, still shown for incidents recorded with them.
RETIRED_OUTCOMES = {"customer_left": "Patron left the library"}
MAX_NOTE = 2000
MAX_REASON = 500

EVENT_LABELS = {
    "raised": "Alarm raised", "late": "Arrived late", "escalation": "Call for help",
    "notified": "Page sent", "notify_failed": "Page NOT sent",
    "delivery_status": "Delivery status", "delivery_failed": "Nobody could be reached",
    "acknowledged": "Acknowledged", "resolved": "Resolved", "cancelled": "Cancelled",
    "resolution": "Resolved", "cancel_refused": "Cancel from device refused",
    "safe_room_left": "Safe room door opened",
    "paging_resumed": "Pages getting through again",
    "real": "Made REAL: not a drill",
    "arc": "Monitoring centre",
    "alerted": "Colleague's device alerted", "responded": "Responding (from their device)",
}
#: What a monitoring-centre receiver answered (hub.arc), in words.
ARC_ANSWERS = {"ACK": "received (ACK)", "NAK": "rejected (NAK)",
               "DUH": "not understood (DUH)", "RSP": "answered (RSP)", "none": "no answer"}
BAD_STATUSES = frozenset({"undelivered", "failed", "busy", "no-answer", "canceled"})


@dataclass(frozen=True)
class Row:
    """One line of the timeline as the page shows it."""

    at_ms: int
    event: str
    label: str
    by: str
    detail: str
    status: str = ""
    bad: bool = False


def mask(phone: str) -> str:
    return f"…{phone[-4:]}" if phone else ""


def _entry_ms(entry: dict[str, str]) -> int:
    """The entry's ``at_ms``, or the stream entry id's milliseconds."""
    raw = entry.get("at_ms") or entry.get("id", "0").split("-")[0]
    try:
        return int(float(raw))
    except ValueError:
        return 0


def timeline_rows(entries: list[dict[str, str]]) -> list[Row]:
    """The timeline as rows, oldest first: pure. Each notification row carries its latest
    delivery status from Twilio's callbacks (matched on attempt, channel and number).
    Pages are named in words (``2nd call for help``, ``all-clear``: hub.core.pagewords), and a
    resolve is one row: its ``resolution`` entry (the outcome) folds into ``resolved``."""
    latest: dict[tuple[str, str, str], dict[str, str]] = {}
    for e in entries:
        if e.get("event") == "delivery_status":
            latest[(e.get("attempt", ""), e.get("channel", ""), e.get("to", ""))] = e
    resolved = any(e.get("event") == "resolved" for e in entries)
    outcome = next((_outcome(e) for e in reversed(entries) if e.get("event") == "resolution"),
                   None)
    rows = []
    for e in entries:
        event = e.get("event", "?")
        if event == "resolution" and resolved:
            continue
        label = EVENT_LABELS.get(event, event.replace("_", " ").capitalize())
        by, detail, status, bad = e.get("by", ""), "", "", False
        if event in ("notified", "notify_failed"):
            who = f"{e.get('contact', '?')} ({mask(e.get('to', ''))})"
            channel = CHANNEL_WORDS.get(e.get("channel", ""), "Call")
            detail = f"{channel} to {who}, {page_words(e.get('step'))}"
            if event == "notify_failed":
                bad = True
                status = f"not sent: {e.get('error') or 'error'}" + \
                    (f" (code {e['code']})" if e.get("code") else "")
                if e.get("retry_in_ms"):
                    status += "; trying again every few seconds until it goes through"
            else:
                cb = latest.get((e.get("step", ""), e.get("channel", ""), e.get("to", "")))
                status = cb.get("status", "sent") if cb else (
                    "accepted by the push service" if e.get("channel") == "push"
                    else "sent, no delivery report yet")
                bad = bool(cb) and status in BAD_STATUSES
                if cb and cb.get("error_code"):
                    status += f" (error {cb['error_code']})"
        elif event == "delivery_status":
            channel = CHANNEL_WORDS.get(e.get("channel", ""), "Call")
            answered = f", answered by {e['answered_by']}" if e.get("answered_by") else ""
            detail = f"{channel} to {mask(e.get('to', ''))}, {page_words(e.get('attempt'))}"
            status = e.get("status", "?") + answered
            bad = e.get("status") in BAD_STATUSES
        elif event == "escalation":
            pages = e.get("notifications", "?")
            state = e.get("branch_state", "")
            detail = (f"{page_words(e.get('attempt'))}: step {e.get('step', '?')}, round "
                      f"{e.get('round', '?')} · {BRANCH_STATE_WORDS.get(state, state)} · "
                      f"{pages} page{'' if pages == '1' else 's'}")
        elif event == "late":
            detail = f"pressed {int(e.get('delay_ms', '0') or 0) // 1000} s before it arrived"
        elif event == "delivery_failed":
            detail = f"{page_words(e.get('attempt'))}: {e.get('tried', '?')} tried"
            bad = True
            if e.get("how"):
                detail += f", {e['how']}"
            detail += "; the device that pressed shows 'use the phone'"
        elif event == "paging_resumed":
            down_s = int(e.get("after_ms", "0") or 0) // 1000
            detail = (f"after {down_s} s in which nobody could be paged; the device that "
                      "pressed shows 'help is being called'")
        elif event == "arc":
            detail = f"{e.get('phase', '?')} event, sequence {e.get('seq', '?')}"
            if e.get("outcome") == "queued":
                status = "queued"
            else:
                detail += f", {e.get('receiver', '?')}"
                status = (f"{ARC_ANSWERS.get(e.get('outcome', ''), e.get('outcome', '?'))} "
                          f"after {e.get('sends', '?')} send(s), {e.get('ms', '?')} ms")
                bad = e.get("outcome") != "ACK"
        elif event == "real":
            detail = f"via {e.get('via', '?')}: paged with the real policy, police included"
        elif event in ("alerted", "responded"):  # colleagues' devices (hub.colleagues)
            detail = f"device {e.get('device', '?')}" + \
                (f" of {e['contact']}" if e.get("contact") else "")
        elif event == "resolution":  # its resolve is missing (an old or trimmed timeline)
            detail = _outcome(e)
        elif event == "resolved" and outcome:
            detail = outcome
        else:
            detail = e.get("reason", "")
        rows.append(Row(_entry_ms(e), event, label, by, detail, status, bad))
    return rows


def _outcome(e: dict[str, str]) -> str:
    """A ``resolution`` entry's outcome in words (entries from before issue 15 also hold
    the note)."""
    outcome = e.get("outcome", "")
    return OUTCOMES.get(outcome, RETIRED_OUTCOMES.get(outcome, outcome)) + \
        (f": {e['note']}" if e.get("note") else "")


def local_time(ms: int | str | None, tz: str = "UTC") -> str:
    """``2024-05-01 14:03:22 PDT`` in ``tz`` (a branch's zone), or ``—`` for nothing."""
    try:
        value = int(float(ms)) if ms not in (None, "") else None
    except (TypeError, ValueError):
        value = None
    if value is None or value <= 0:
        return "—"
    try:
        zone = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = timezone.utc
    return datetime.fromtimestamp(value / 1000, zone).strftime("%Y-%m-%d %H:%M:%S %Z")


@bp.app_template_filter("local_time")
def _local_time_filter(ms: Any, tz: str = "UTC") -> str:
    return local_time(ms, tz)


@bp.app_template_filter("ago")
def _ago_filter(ms: Any) -> str:
    """``3 min ago`` from Unix ms, now; ``""`` for nothing."""
    try:
        return ago(int(float(ms)), now_ms()) if ms not in (None, "") else ""
    except (TypeError, ValueError):
        return ""


@bp.app_template_filter("branch_time")
def _branch_time_filter(ms: Any, branch_id: str) -> str:
    """``local_time`` in the zone of the site's branch ``branch_id`` (UTC if unknown)."""
    branch = dashboard_context().site.branches.get(branch_id)
    return local_time(ms, branch.timezone if branch else "UTC")


def pressed_fact(alarm: Alarm, tz: str = "UTC") -> str:
    """When the button was pressed, as the alarm page says it (``tz``: the branch's zone):
    the device clock's time, how late it arrived when late, or why it is not believed."""
    said = local_time(alarm.pressed_at_ms, tz)
    delay_s = (alarm.received_at_ms - alarm.pressed_at_ms) // 1000
    if not alarm.press_trusted:
        return f"unknown: the device clock said {said}, which cannot be right " \
               "(pages give the time received)"
    if delay_s * 1000 > LATE_MS:
        minutes, seconds = divmod(delay_s, 60)
        return f"{said}: LATE, {f'{minutes} min ' if minutes else ''}{seconds} s before it " \
               "reached the hub (it waited in the device's outbox)"
    return said


def _alarm_or_404(alarm_id: str) -> Alarm:
    alarm = dashboard_context().store.get_alarm(alarm_id)
    if alarm is None:
        abort(404, description=f"No alarm {alarm_id!r}: it may have been mistyped, or "
                               "removed from the alarm store.")
    return alarm


def _place(site: Site, alarm: Alarm) -> dict[str, str]:
    branch = site.branches.get(alarm.branch)
    room = branch.room(alarm.room) if branch else None
    kind = site.kinds.get(alarm.kind)
    return {"branch": branch.name if branch else alarm.branch,
            "room": room.name if room else alarm.room,
            "kind": kind.label if kind else alarm.kind,
            "tz": branch.timezone if branch else "UTC"}


def _page(alarm: Alarm, *, errors: dict[str, str] | None = None,
          form: dict[str, str] | None = None, status: int = 200) -> tuple[str, int]:
    ctx = dashboard_context()
    return render_template(
        "alarm.html", alarm=alarm, place=_place(ctx.site, alarm),
        pressed=pressed_fact(alarm, _place(ctx.site, alarm)["tz"]),
        rows=timeline_rows(ctx.store.timeline(alarm.id)), outcomes=OUTCOMES,
        errors=errors or {}, form=form or {}), status


@bp.get("/<alarm_id>")
def show(alarm_id: str) -> Any:
    return _page(_alarm_or_404(alarm_id))


def ago(ms: int | None, now: int) -> str:
    """``just now``, ``1 min ago``, ``3 h 5 min ago``: how long before ``now`` (both Unix ms)."""
    minutes = max(0, (now - (ms or 0)) // 60_000)
    if minutes == 0:
        return "just now"
    hours, minutes = divmod(minutes, 60)
    return f"{f'{hours} h ' if hours else ''}{f'{minutes} min ' if minutes or not hours else ''}ago"


def not_done(alarm: Alarm | None, exc: Exception, tz: str, now: int) -> str:
    """Why an action was refused, naming who was quicker and when: pure."""
    if alarm is not None and alarm.state is AlarmState.ACKNOWLEDGED:
        return (f"Not done: {alarm.acknowledged_by} already acknowledged this alarm at "
                f"{local_time(alarm.acknowledged_at_ms, tz)} "
                f"({ago(alarm.acknowledged_at_ms, now)}).")
    if alarm is not None and not alarm.state.active:
        return (f"Not done: {alarm.closed_by} already {alarm.state} this alarm at "
                f"{local_time(alarm.closed_at_ms, tz)} ({ago(alarm.closed_at_ms, now)}).")
    return f"Not done: {exc.args[0]}"


def _apply(alarm: Alarm, event: AlarmEvent, reason: str | None, done: str, *,
           quiet: bool = False) -> str | None:
    """Do the transition as the logged-in user. ``None`` if done, else why not; flashed
    unless ``quiet`` (the board's script shows it itself)."""
    ctx = dashboard_context()
    try:
        ctx.store.transition(alarm.id, event, by=g.user.name, now_ms=now_ms(), reason=reason)
    except (KeyError, IllegalTransition) as exc:
        why = not_done(ctx.store.get_alarm(alarm.id), exc, _place(ctx.site, alarm)["tz"],
                       now_ms())
        if not quiet:
            flash(why, "error")
        return why
    log.info("alarm %s %s by %s", alarm.id, done, g.user.name)
    if not quiet:
        flash(f"Alarm {done} by {g.user.name}.", "info")
    return None


def _back(alarm: Alarm) -> Any:
    return redirect(url_for("alarms.show", alarm_id=alarm.id), 303)


@bp.post("/<alarm_id>/acknowledge")
def acknowledge(alarm_id: str) -> Any:
    alarm = _alarm_or_404(alarm_id)
    scripted = request.accept_mimetypes.best_match(  # the board's one-click Acknowledge
        ["text/html", "application/json"]) == "application/json"
    why = _apply(alarm, AlarmEvent.ACKNOWLEDGE, None, "acknowledged", quiet=scripted)
    if scripted:
        return jsonify(ok=why is None,
                       message=why or f"Acknowledged by {g.user.name}."), 409 if why else 200
    return _back(alarm)


@bp.post("/<alarm_id>/real")
def real(alarm_id: str) -> Any:
    alarm = _alarm_or_404(alarm_id)
    ctx = dashboard_context()
    try:
        ctx.store.make_real(alarm.id, by=g.user.name, via="dashboard", now_ms=now_ms())
    except (KeyError, IllegalTransition) as exc:
        flash(f"Not done: {exc.args[0]}", "error")
        return _back(alarm)
    log.warning("alarm %s made REAL by %s (dashboard)", alarm.id, g.user.name)
    flash(f"Alarm made REAL by {g.user.name}. {who_is_paged(ctx.site, alarm)}", "info")
    return _back(alarm)


@bp.post("/<alarm_id>/resolve")
def resolve(alarm_id: str) -> Any:
    alarm = _alarm_or_404(alarm_id)
    outcome = request.form.get("outcome", "").strip()
    note = request.form.get("note", "").strip()
    errors = {}
    if outcome not in OUTCOMES:
        errors["outcome"] = "Outcome: choose what ended the situation."
    if not note:
        errors["note"] = "Note: required. Say what happened and what was done."
    elif len(note) > MAX_NOTE:
        errors["note"] = f"Note: at most {MAX_NOTE} characters (it has {len(note)})."
    if errors:
        return _page(alarm, errors=errors, form={"outcome": outcome, "note": note}, status=400)
    if _apply(alarm, AlarmEvent.RESOLVE, OUTCOMES[outcome], "resolved") is None:
        ctx = dashboard_context()
        IncidentStore(ctx.store, ctx.site).save_details(alarm.id, resolve_note=note)
        ctx.store.add_timeline(alarm.id, "resolution", at_ms=now_ms(), by=g.user.name,
                               outcome=outcome)
    return _back(alarm)


@bp.post("/<alarm_id>/cancel")
def cancel(alarm_id: str) -> Any:
    alarm = _alarm_or_404(alarm_id)
    reason = request.form.get("reason", "").strip()
    error = None
    if not reason:
        error = "Reason: required. Say why this was a false alarm."
    elif len(reason) > MAX_REASON:
        error = f"Reason: at most {MAX_REASON} characters (it has {len(reason)})."
    if error:
        return _page(alarm, errors={"reason": error}, form={"reason": reason}, status=400)
    _apply(alarm, AlarmEvent.CANCEL_OPERATOR, f"false alarm: {reason}", "cancelled")
    return _back(alarm)
