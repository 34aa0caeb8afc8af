"""Branch controls: drill on/off with an expiry, lone-worker on/off/auto, and who switched them.

Routes (anyone logged in sees the page; only admins switch, operators get 403)::

    GET  /branches                          every branch: its state now and why
    POST /branches/<id>/drill/start         form: minutes (1..MAX_DRILL_MIN); the drill ends by itself
    POST /branches/<id>/drill/end
    POST /branches/<id>/lone-worker         form: mode = on | off | auto (follow the schedule)

The switches are the same store calls as ``haven branch drill|lone-worker``
(``store.branches.set_branch_switches``), which tell every board. A branch's state is
worked out as the hub does (:meth:`hub.engine.service.AlarmService.branch_state`):
a drill in force outranks everything, then the lone-worker switch, else the
staff on duty by schedule and ad-hoc overrides (one or none: lone worker).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for

from hub.core.drill import MAX_DRILL_MIN
from hub.core.schedule import BranchState, Switches, branch_state, on_duty
from hub.config.site import Branch, Site
from hub.store.alarms import Store

from .auth import admin_required
from .context import dashboard_context, now_ms

log = logging.getLogger(__name__)

bp = Blueprint("branches", __name__, url_prefix="/branches")

#: Longest drill, in minutes (12 h): a drill left on would keep the police from being called.
DEFAULT_DRILL_MIN = 30
LONE_MODES = {"on": True, "off": False, "auto": None}


@dataclass(frozen=True)
class BranchView:
    """A branch as the page shows it."""

    branch: Branch
    state: BranchState
    switches: Switches
    staff_on_duty: int | None     # None: no schedule, counted as staffed
    changed_ms: int | None


def staff_on_duty(site: Site, branch_id: str, now_ms: int, overrides: list) -> int | None:
    """Staff on duty at ``branch_id`` by schedule and overrides; ``None`` when no staff
    member has a schedule and nothing is overridden (the hub counts that as staffed)."""
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    staff = [c for c in site.contacts if branch_id in c.branches and "staff" in c.roles]
    if not (any(c.shifts for c in staff) or overrides):
        return None
    return sum(1 for c in staff if on_duty(c.phone, c.shifts, branch_id, now, overrides))


def branch_view(site: Site, store: Store, branch: Branch, now: int) -> BranchView:
    switches = store.branches.branch_switches(branch.id)
    count = staff_on_duty(site, branch.id, now, store.branches.overrides(branch.id, now))
    staffed = max(2, len([c for c in site.contacts if branch.id in c.branches
                          and "staff" in c.roles])) if count is None else count
    return BranchView(branch, branch_state(staffed, switches, now), switches, count,
                      store.branches.changed_ms(branch.id))


def _branch_or_404(branch_id: str) -> Branch:
    branch = dashboard_context().site.branches.get(branch_id)
    if branch is None:
        abort(404, description=f"No branch {branch_id!r} in the site config.")
    return branch


@bp.get("")
def index() -> Any:
    ctx = dashboard_context()
    now = now_ms()
    views = [branch_view(ctx.site, ctx.store, b, now) for b in ctx.site.branches.values()]
    return render_template("branches.html", views=views, now_ms=now,
                           default_minutes=DEFAULT_DRILL_MIN, max_minutes=MAX_DRILL_MIN)


def _back() -> Any:
    return redirect(url_for("branches.index"), 303)


@bp.post("/<branch_id>/drill/start")
@admin_required
def drill_start(branch_id: str) -> Any:
    branch = _branch_or_404(branch_id)
    raw = request.form.get("minutes", "").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DRILL_MIN:
        flash(f"{branch.name}: minutes: give a whole number from 1 to {MAX_DRILL_MIN} "
              f"(got {raw[:20]!r}). No drill was started.", "error")
        return _back()
    now = now_ms()
    dashboard_context().store.branches.set_branch_switches(
        branch.id, by=g.user.name, now_ms=now, drill_until_ms=now + int(raw) * 60_000)
    log.info("drill at %s on for %s min by %s", branch.id, raw, g.user.name)
    flash(f"{branch.name}: drill on for {raw} min. Messages say DRILL; police are never "
          "called.", "info")
    return _back()


@bp.post("/<branch_id>/drill/end")
@admin_required
def drill_end(branch_id: str) -> Any:
    branch = _branch_or_404(branch_id)
    dashboard_context().store.branches.set_branch_switches(
        branch.id, by=g.user.name, now_ms=now_ms(), drill_until_ms=None)
    log.info("drill at %s ended by %s", branch.id, g.user.name)
    flash(f"{branch.name}: drill ended. Alarms page people for real again.", "info")
    return _back()


@bp.post("/<branch_id>/lone-worker")
@admin_required
def lone_worker(branch_id: str) -> Any:
    branch = _branch_or_404(branch_id)
    mode = request.form.get("mode", "")
    if mode not in LONE_MODES:
        flash(f"{branch.name}: mode: must be on, off or auto (got {mode[:20]!r}). "
              "Nothing was changed.", "error")
        return _back()
    dashboard_context().store.branches.set_branch_switches(
        branch.id, by=g.user.name, now_ms=now_ms(), lone_worker=LONE_MODES[mode])
    log.info("lone worker at %s set %s by %s", branch.id, mode, g.user.name)
    text = {"on": "on: alarms go to the police first",
            "off": "off: alarms go to staff on duty",
            "auto": "following the schedule"}[mode]
    flash(f"{branch.name}: lone worker {text}.", "info")
    return _back()
