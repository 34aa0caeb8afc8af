"""Floor plans in the site TOML: a drawing per floor of a branch, and where each room is
on it, read into :mod:`hub.core.floorplan`'s objects.

Parsed by :func:`parse_floors` from :func:`hub.config.site.parse_site`, with its checker, so every
mistake is reported as ``FILE:LINE: FIELD: problem`` with the others. A branch without
``[[branch.floor]]`` has no plan and the dashboard shows its rooms as tiles only::

    [[branch]]
    id = "main"
    ...
      [[branch.floor]]
      id = "ground"                       # letters, digits, '-' or '_'
      name = "Ground floor"
      plan = "plans/main-ground.svg"      # an SVG or PNG, relative to the site file's folder
                                          # (and inside it: check it in beside site.toml)

      [[branch.room]]
      id = "circulation"
      name = "Circulation Desk"
      floor = "ground"                    # may be left out when the branch has one floor
      area = [[40, 40], [300, 40], [300, 200], [40, 200]]   # a polygon (3 to 64 corners)
      # or: at = [170, 120]               # a point

Coordinates are in the plan's own units: an SVG's ``viewBox`` (or its ``width`` and
``height`` when it has none), a PNG's pixels, x to the right and y down from the top
left corner. Once a branch has a floor plan, every room of it must be placed: a room
missing from the plan would never light up when its alarm comes.

The plan is read once at load time, only for its size; the dashboard serves the file
itself. SVG plans must be self-contained (no external images or fonts): browsers draw
them as images, which load nothing else and run no script.
"""

from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from device.protocol import ID_RE

from hub.core.floorplan import Floor, Placement

FLOOR_FIELDS = ("id", "name", "plan")
#: The room fields that place it on a plan (hub.config.site allows them on [[branch.room]]).
ROOM_PLAN_FIELDS = ("floor", "at", "area")
#: The largest plan file read, in bytes: a floor drawing is tens of KB.
MAX_PLAN_BYTES = 5 * 1024 * 1024
MEDIA_TYPES = {".svg": "image/svg+xml", ".png": "image/png"}
MAX_CORNERS = 64
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SVG_NS = "{http://www.w3.org/2000/svg}svg"


class PlanFileError(ValueError):
    """A plan file that cannot be used; the message says why and what to do."""


def plan_size(path: Path) -> tuple[float, float, float, float]:
    """The coordinate box (min x, min y, width, height) of an SVG or PNG plan file.

    SVG: its root's ``viewBox``, else ``width`` and ``height`` (plain numbers or px).
    PNG: its pixel size, from the IHDR chunk the format puts first. Raises
    :class:`PlanFileError`."""
    try:
        size = path.stat().st_size
        if size > MAX_PLAN_BYTES:
            raise PlanFileError(f"{path.name} is {size // 1024} KB; a plan must be at most "
                                f"{MAX_PLAN_BYTES // (1024 * 1024)} MB (simplify or scale it)")
        data = path.read_bytes()
    except OSError as exc:
        raise PlanFileError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix.lower() == ".png":
        return _png_size(data, path.name)
    return _svg_size(data, path.name)


def _png_size(data: bytes, name: str) -> tuple[float, float, float, float]:
    if len(data) < 24 or not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise PlanFileError(f"{name} is not a PNG image (save it again as PNG)")
    width, height = struct.unpack(">II", data[16:24])
    if not width or not height:
        raise PlanFileError(f"{name} has no pixels")
    return 0.0, 0.0, float(width), float(height)


def _svg_size(data: bytes, name: str) -> tuple[float, float, float, float]:
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise PlanFileError(f"{name} is not well-formed SVG: {exc}") from None
    if root.tag not in (_SVG_NS, "svg"):
        raise PlanFileError(f"{name}: the root element is <{root.tag}>, not <svg>")
    if any(el.tag.rsplit("}", 1)[-1] == "script" for el in root.iter()):
        raise PlanFileError(f"{name} contains a <script>: a plan is a drawing; remove it")
    box = root.get("viewBox")
    if box is not None:
        try:
            numbers = [float(v) for v in box.replace(",", " ").split()]
        except ValueError:
            numbers = []
        if len(numbers) != 4 or numbers[2] <= 0 or numbers[3] <= 0:
            raise PlanFileError(f"{name}: viewBox={box!r} must be four numbers, "
                                "\"min-x min-y width height\", width and height above 0")
        return numbers[0], numbers[1], numbers[2], numbers[3]
    try:
        width = float((root.get("width") or "").removesuffix("px"))
        height = float((root.get("height") or "").removesuffix("px"))
    except ValueError:
        width = height = 0.0
    if width <= 0 or height <= 0:
        raise PlanFileError(f"{name} has no viewBox and no plain width and height: add "
                            "viewBox=\"0 0 WIDTH HEIGHT\" to its <svg> element")
    return 0.0, 0.0, width, height


def parse_floors(check: Any, raw_branch: dict, bpath: tuple, room_ids: list[str],
                 base_dir: Path) -> tuple[Floor, ...]:
    """The ``[[branch.floor]]`` tables of one raw branch and the placement of its rooms.

    ``check`` is hub.config.site's ``_Checker`` (problems are added to it); ``room_ids`` are the
    branch's valid room ids; plan paths are relative to ``base_dir`` (the site file's
    folder) and must stay inside it."""
    raw_floors = raw_branch.get("floor", [])
    floors: list[tuple[str, str, Path, str, tuple[float, float, float, float]]] = []
    if not isinstance(raw_floors, list):
        check.add(bpath + ("floor",), "must be an array of tables: write [[branch.floor]]")
        raw_floors = []
    for i, raw in enumerate(raw_floors):
        path = bpath + ("floor", i)
        raw = check.table(raw, path, FLOOR_FIELDS)
        if raw is None:
            continue
        floor_id = check.text(raw, path, "id", pattern=ID_RE,
                              hint="letters, digits, '-' or '_', e.g. \"ground\"")
        name = check.text(raw, path, "name", hint="what staff call it, e.g. \"Ground floor\"")
        plan = check.text(raw, path, "plan", hint="an .svg or .png file beside the site file, "
                                                  "e.g. \"plans/main-ground.svg\"")
        found = _plan_file(check, path + ("plan",), plan, base_dir) if plan else None
        if floor_id is None or found is None:
            continue
        if any(f[0] == floor_id for f in floors):
            check.add(path + ("id",), f"floor {floor_id!r} is declared twice in this branch")
            continue
        floors.append((floor_id, name or floor_id, *found))
    placed = _placements(check, raw_branch, bpath, room_ids, floors)
    return tuple(Floor(fid, name, plan, media, box, tuple(placed.get(fid, ())))
                 for fid, name, plan, media, box in floors)


def _plan_file(check: Any, path: tuple, plan: str, base_dir: Path
               ) -> tuple[Path, str, tuple[float, float, float, float]] | None:
    media = MEDIA_TYPES.get(Path(plan).suffix.lower())
    if media is None:
        check.add(path, f"{plan!r} must be an .svg or .png file")
        return None
    base = base_dir.resolve()
    file = (base / plan).resolve()
    if Path(plan).is_absolute() or not file.is_relative_to(base):
        check.add(path, f"{plan!r} must be inside the site file's folder {base} (check the "
                        "plan in beside site.toml and give its path relative to it)")
        return None
    if not file.is_file():
        check.add(path, f"{plan!r} not found (looked for {file})")
        return None
    try:
        return file, media, plan_size(file)
    except PlanFileError as exc:
        check.add(path, str(exc))
        return None


def _placements(check: Any, raw_branch: dict, bpath: tuple, room_ids: list[str],
                floors: list) -> dict[str, list[Placement]]:
    placed: dict[str, list[Placement]] = {}
    raw_rooms = raw_branch.get("room", [])
    if not isinstance(raw_rooms, list):
        return placed
    by_id = {f[0]: f for f in floors}
    declared = isinstance(raw_branch.get("floor"), list) and bool(raw_branch["floor"])
    for i, raw in enumerate(raw_rooms):
        path = bpath + ("room", i)
        if not isinstance(raw, dict) or raw.get("id") not in room_ids:
            continue  # hub.config.site has said what is wrong with it
        given = [k for k in ROOM_PLAN_FIELDS if k in raw]
        if not declared:
            if given:
                check.add(path + (given[0],), "this branch has no [[branch.floor]] plan to "
                                              "place the room on: add one, or remove this line")
            continue
        if not by_id:
            continue  # every floor had a mistake, already reported
        floor_id = raw.get("floor")
        if floor_id is None:
            if len(by_id) > 1:
                check.add(path + ("floor",), f"missing: which floor the room is on, one of "
                                             f"{', '.join(by_id)}")
                continue
            floor_id = next(iter(by_id))
        elif floor_id not in by_id:
            check.add(path + ("floor",), f"unknown floor {floor_id!r}; this branch's floors "
                                         f"are {', '.join(by_id)}")
            continue
        points = _points(check, raw, path, by_id[floor_id][4])
        if points:
            placed.setdefault(floor_id, []).append(Placement(raw["id"], points))
    return placed


def _points(check: Any, raw: dict, path: tuple,
            box: tuple[float, float, float, float]) -> tuple[tuple[float, float], ...] | None:
    if "at" in raw and "area" in raw:
        check.add(path + ("area",), "give either at = [x, y] (a point) or area = [[x, y], ...] "
                                    "(a polygon), not both")
        return None
    if "at" not in raw and "area" not in raw:
        check.add(path, "not placed on its floor's plan: add at = [x, y] or area = [[x, y], "
                        "[x, y], [x, y], ...] (a room missing from the plan never lights up)")
        return None
    key = "at" if "at" in raw else "area"
    value = raw[key]
    corners = [value] if key == "at" else value
    ok = isinstance(corners, list) and all(
        isinstance(c, list) and len(c) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in c)
        for c in corners)
    if not ok or (key == "area" and not 3 <= len(corners) <= MAX_CORNERS):
        check.add(path + (key,), "must be [x, y] (two numbers)" if key == "at" else
                  f"must be a list of 3 to {MAX_CORNERS} corners [[x, y], [x, y], [x, y], ...]")
        return None
    min_x, min_y, width, height = box
    outside = [c for c in corners
               if not (min_x <= c[0] <= min_x + width and min_y <= c[1] <= min_y + height)]
    if outside:
        check.add(path + (key,), f"{outside[0]} is outside the plan: x must be {min_x:g} to "
                                 f"{min_x + width:g} and y {min_y:g} to {min_y + height:g} "
                                 "(the plan's units, from its top left corner)")
        return None
    return tuple((float(x), float(y)) for x, y in corners)


def plan_files(site: Any, site_file: Path) -> list[tuple[Path, Path]]:
    """Every floor plan of ``site`` (loaded from ``site_file``) as (its file, its path
    relative to the site file's folder): what must be copied with the site file, so the
    copy loads too (``haven provision init --site-file``)."""
    base = site_file.parent.resolve()
    return [(floor.plan, floor.plan.relative_to(base))
            for branch in site.branches.values() for floor in branch.floors]
