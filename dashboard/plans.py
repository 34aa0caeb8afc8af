"""Floor plans on the dashboard: the active room lit on its floor's plan, and a read-only
plan page for one alarm that police and responders open from a text without a login.

Routes::

    GET /plans/<branch>/<floor>     the plan file (SVG or PNG) for logged-in pages
    GET /p/<token>                  one alarm's plan page (hub.core.planlink), no login: its kind,
                                    branch and room lit, and the branch's occupied safe rooms;
                                    410 once the alarm is resolved or cancelled, 404 for a
                                    token not ours or an alarm no longer stored
    GET /p/<token>/<floor>          a plan file of that alarm's branch, same checks
    GET /plans/<branch>/<floor>/place   admins: click rooms' corners on the plan, get the
                                    TOML lines to copy into the site file (saves nothing)

The board (board.html) and the alarm page (alarm.html) draw each plan as an inline SVG:
the plan file as an ``<image>`` (a browser draws an image without running scripts or
loading anything else), and on top of it each placed room as a polygon or dot whose
``data-state`` is the room's board state (:mod:`dashboard.snapshot`); ``plans.js`` keeps
them live on the board. Branches without a plan keep their tiles only; branches with one
have both (the tiles carry the actions).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, render_template, send_file, url_for

from hub.core.floorplan import Floor
from hub.core.model import Alarm
from hub.core.planlink import PlanLinks
from hub.core.site import Branch, Site

from .auth import admin_required
from .context import dashboard_context
from .context import now_ms
from .snapshot import board_snapshot, read_facts

bp = Blueprint("plans", __name__)

EXTENSION = "haven.plan_links"
#: A plan file may be drawn, never run: no script, no plugin, no form, even opened directly.
PLAN_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"
#: The public plan page reloads itself this often, in seconds (no script on it).
PUBLIC_REFRESH_S = 15


def init_app(app: Flask, plan_links: PlanLinks | None) -> None:
    """Register the routes; ``plan_links`` (``None``: the ``/p/`` pages answer 404)."""
    app.extensions[EXTENSION] = plan_links
    app.register_blueprint(bp)
    app.jinja_env.globals["alarm_plan"] = alarm_plan
    app.jinja_env.globals["board_floor"] = board_floor


# --- pure: what a floor looks like ---------------------------------------------------

def floor_view(branch: Branch, floor: Floor, rooms: dict[str, dict[str, Any]],
               image_url: str, focus: str | None = None) -> dict[str, Any]:
    """A floor as the template ``_plan.html`` draws it. ``rooms`` maps room ids to their
    board snapshot (``state``, ``occupied``, ``alarms``...; missing: unknown), ``focus``
    is the room this page is about (outlined whatever its state)."""
    min_x, min_y, width, height = floor.view_box
    size = max(width, height)
    shapes, lit = [], []
    for placement in floor.placements:
        room = branch.room(placement.room_id)
        facts = rooms.get(placement.room_id, {})
        cx, cy = placement.centre
        lead = (facts.get("alarms") or [None])[0]
        occupied = bool(facts.get("occupied"))
        label = "Occupied" if occupied else (lead["kind_label"] if lead else "")
        if lead and not (occupied and lead["kind"] == "safe_room"):  # said once, below
            lit.append(f"{lead['kind_label']}: {room.name}")
        if occupied:
            lit.append(f"Staff sheltering in {room.name}")
        shapes.append({
            "room": placement.room_id, "name": room.name, "safe_room": room.safe_room,
            "area": placement.is_area,
            "points": " ".join(f"{x:g},{y:g}" for x, y in placement.points),
            "cx": f"{cx:g}", "cy": f"{cy:g}", "r": f"{size * 0.02:g}",
            # the label near the top of its room (the drawing's own name is often centred)
            "ly": f"{min(y for _, y in placement.points) + size * 0.035:g}"
            if placement.is_area else f"{cy - size * 0.04:g}",
            **_label_anchor(placement.points, cx, min_x + width / 3, min_x + 2 * width / 3),
            "state": facts.get("state", "unknown"), "occupied": occupied,
            "focus": placement.room_id == focus, "label": label})
    return {"branch": branch.id, "branch_name": branch.name, "id": floor.id,
            "name": floor.name, "url": image_url,
            "view_box": f"{min_x:g} {min_y:g} {width:g} {height:g}",
            "x": f"{min_x:g}", "y": f"{min_y:g}", "width": f"{width:g}",
            "height": f"{height:g}", "font": f"{size * 0.03:g}",
            "stroke": f"{size * 0.006:g}", "shapes": shapes, "lit": lit}


def _label_anchor(points: tuple, cx: float, left: float, right: float) -> dict[str, str]:
    """Where a room's label starts: from its left edge in the plan's left third, ending at
    its right edge in the right third, else centred; so a label stays on the plan."""
    xs = [x for x, _ in points]
    if cx < left:
        return {"lx": f"{min(xs):g}", "anchor": "start"}
    if cx > right:
        return {"lx": f"{max(xs):g}", "anchor": "end"}
    return {"lx": f"{cx:g}", "anchor": "middle"}


def floors_to_show(branch: Branch, rooms: dict[str, dict[str, Any]],
                   focus: str) -> list[Floor]:
    """For one alarm: the floor of its room first, then floors with an occupied safe room."""
    shown = [f for f in branch.floors if f.placement(focus) is not None]
    shown += [f for f in branch.floors if f not in shown and any(
        rooms.get(p.room_id, {}).get("occupied") for p in f.placements)]
    return shown


# --- edges -------------------------------------------------------------------------

def _branch_rooms(site: Site, branch_id: str) -> dict[str, dict[str, Any]]:
    """The branch's rooms as the board sees them now (the same snapshot as /api/board)."""
    store = dashboard_context().store
    snapshot = board_snapshot(site, store.active_alarms(), now_ms(),
                              facts=read_facts(store, site))
    branch = next((b for b in snapshot["branches"] if b["id"] == branch_id), None)
    return {r["id"]: r for r in (branch or {}).get("rooms", [])}


def board_floor(branch: Branch, floor: Floor) -> dict[str, Any]:
    """For board.html: the floor with every room unknown until plans.js has a snapshot."""
    return floor_view(branch, floor, {}, url_for("plans.image", branch_id=branch.id,
                                                 floor_id=floor.id))


def alarm_plan(alarm: Alarm) -> dict[str, Any]:
    """For alarm.html: ``floors`` (views of the alarm's floor and any with an occupied safe
    room; empty without a plan) and ``link`` (the responders' plan link, or ``None``)."""
    site = dashboard_context().site
    branch = site.branches.get(alarm.branch)
    if branch is None or branch.floor_of(alarm.room) is None:
        return {"floors": [], "link": None}
    rooms = _branch_rooms(site, branch.id)
    floors = [floor_view(branch, f, rooms, url_for("plans.image", branch_id=branch.id,
                                                    floor_id=f.id), focus=alarm.room)
              for f in floors_to_show(branch, rooms, alarm.room)]
    links: PlanLinks | None = current_app.extensions.get(EXTENSION)
    return {"floors": floors,
            "link": links.url(alarm.id) if links and alarm.state.active else None}


def _plan_file(floor: Floor) -> Response:
    response = send_file(floor.plan, mimetype=floor.media_type, max_age=300)
    response.headers["Content-Security-Policy"] = PLAN_CSP
    return response


@bp.get("/plans/<branch_id>/<floor_id>")
def image(branch_id: str, floor_id: str) -> Response:
    branch = dashboard_context().site.branches.get(branch_id)
    floor = next((f for f in branch.floors if f.id == floor_id), None) if branch else None
    if floor is None:
        abort(404, description=f"No floor plan {branch_id}/{floor_id} in the site config.")
    return _plan_file(floor)


def placement_toml(branch: Branch, floor: Floor) -> str:
    """The site-file lines placing the floor's rooms, as the placing page writes them."""
    lines = []
    for p in floor.placements:
        room = branch.room(p.room_id)
        corners = ", ".join(f"[{x:g}, {y:g}]" for x, y in p.points)
        lines += [f'# {room.name} (id = "{room.id}")', f'floor = "{floor.id}"',
                  f"area = [{corners}]" if p.is_area else
                  f"at = [{p.points[0][0]:g}, {p.points[0][1]:g}]", ""]
    return "\n".join(lines)


@bp.get("/plans/<branch_id>/<floor_id>/place")
@admin_required
def place(branch_id: str, floor_id: str) -> str:
    branch = dashboard_context().site.branches.get(branch_id)
    floor = next((f for f in branch.floors if f.id == floor_id), None) if branch else None
    if floor is None:
        abort(404, description=f"No floor plan {branch_id}/{floor_id} in the site config: "
                               "declare it as [[branch.floor]] first (docs/floorplans.md).")
    view = floor_view(branch, floor, {}, url_for("plans.image", branch_id=branch.id,
                                                 floor_id=floor.id))
    return render_template("plan_place.html", view=view, rooms=branch.rooms,
                           snippet=placement_toml(branch, floor))


#: What a plan link that no longer opens says, by status (no login, no navigation).
CLOSED = {404: "This link opens nothing: it is mistyped, or its alarm is no longer kept.",
          410: "This alarm is over (resolved or cancelled): its plan link no longer opens."}


def _public_alarm(token: str) -> tuple[Alarm, Branch] | int:
    """The alarm a plan link opens, while it may be shown; else 404 or 410."""
    links: PlanLinks | None = current_app.extensions.get(EXTENSION)
    alarm_id = links.alarm_id(token) if links else None
    alarm = dashboard_context().store.get_alarm(alarm_id) if alarm_id else None
    branch = dashboard_context().site.branches.get(alarm.branch) if alarm else None
    if alarm is None or branch is None or branch.floor_of(alarm.room) is None:
        return 404
    return (alarm, branch) if alarm.state.active else 410


@bp.get("/p/<token>")
def public(token: str) -> tuple[str, int, dict[str, str]]:
    found = _public_alarm(token)
    headers = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow"}
    if isinstance(found, int):
        return render_template("public_closed.html", message=CLOSED[found]), found, headers
    alarm, branch = found
    site = dashboard_context().site
    rooms = _branch_rooms(site, branch.id)
    floors = [floor_view(branch, f, rooms, url_for("plans.public_image", token=token,
                                                    floor_id=f.id), focus=alarm.room)
              for f in floors_to_show(branch, rooms, alarm.room)]
    kind = site.kinds.get(alarm.kind)
    room = branch.room(alarm.room)
    sheltering = [r["name"] for r in rooms.values() if r.get("occupied")]
    page = render_template("public_plan.html", floors=floors, refresh_s=PUBLIC_REFRESH_S,
                           kind=kind.label if kind else alarm.kind, branch=branch.name,
                           room=room.name if room else alarm.room, drill=alarm.drill,
                           acknowledged=alarm.state == "acknowledged", sheltering=sheltering)
    return page, 200, headers


@bp.get("/p/<token>/<floor_id>")
def public_image(token: str, floor_id: str) -> Response:
    found = _public_alarm(token)
    if isinstance(found, int):
        abort(found, description=CLOSED[found])
    _, branch = found
    floor = next((f for f in branch.floors if f.id == floor_id), None)
    if floor is None:
        abort(404, description="No such floor plan for this alarm.")
    response = _plan_file(floor)
    response.headers["Cache-Control"] = "no-store"
    return response
