"""A branch's floor plans, typed: each floor's plan file and where its rooms are on it.

Pure: loaded and checked by :mod:`hub.config.floorplans` (the site TOML's
``[[branch.floor]]`` and the rooms' ``floor`` / ``at`` / ``area``); a :class:`Branch
<hub.core.site.Branch>` holds its floors. Coordinates are in the plan's own units (an
SVG's viewBox, a PNG's pixels), x to the right and y down from the top left corner.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

Point = tuple[float, float]

@dataclass(frozen=True)
class Placement:
    """Where a room is on its floor's plan: one point, or a polygon of 3+ corners, in the
    plan's units."""

    room_id: str
    points: tuple[Point, ...]

    @property
    def is_area(self) -> bool:
        return len(self.points) >= 3

    @property
    def centre(self) -> Point:
        """The point (or the polygon's vertex average): where its label goes."""
        xs, ys = zip(*self.points)
        return sum(xs) / len(xs), sum(ys) / len(ys)


@dataclass(frozen=True)
class Floor:
    """One floor of a branch: its plan file (absolute path), the plan's coordinate box
    ``view_box`` = (min x, min y, width, height), and its rooms' places, in room order."""

    id: str
    name: str
    plan: Path
    media_type: str
    view_box: tuple[float, float, float, float]
    placements: tuple[Placement, ...]

    def placement(self, room_id: str) -> Placement | None:
        return next((p for p in self.placements if p.room_id == room_id), None)

    def contains(self, x: float, y: float) -> bool:
        min_x, min_y, width, height = self.view_box
        return min_x <= x <= min_x + width and min_y <= y <= min_y + height

