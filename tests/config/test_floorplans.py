"""Floor plans in the site TOML (hub.config.floorplans): the sample's plan loads; every mistake in a
floor or a room's place is reported as FILE:LINE: FIELD: problem."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.config.site import load_site, parse_site
from tests.conftest import SAMPLE_SITE

SVG = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300">'
       '<rect x="0" y="0" width="400" height="300" fill="#eee"/></svg>')

BASE = """
[kinds.assist]
notify = ["staff"]

[[branch]]
id = "north"
name = "North Branch"
timezone = "America/Chicago"
{floors}
  [[branch.room]]
  id = "desk"
  name = "Desk"
{desk}
  [[branch.room]]
  id = "safe"
  name = "Safe Room"
  safe_room = true
{safe}
[[contact]]
name = "Desk phone"
phone = "+15550100123"
branches = ["north"]
roles = ["staff"]
"""
ONE_FLOOR = """
  [[branch.floor]]
  id = "ground"
  name = "Ground floor"
  plan = "plans/north.svg"
"""


def png(width: int, height: int) -> bytes:
    """A real (tiny, grey) PNG file of the given size."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0,
                                                               0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "north.svg").write_text(SVG)
    return tmp_path


def site_text(floors: str = ONE_FLOOR, desk: str = "  at = [100, 80]\n",
              safe: str = "  area = [[300, 0], [400, 0], [400, 100], [300, 100]]\n") -> str:
    return BASE.format(floors=floors, desk=desk, safe=safe)


def problems(folder: Path, text: str) -> list[str]:
    path = folder / "site.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    return [str(p).replace(f"{path}:", "site.toml:") for p in err.value.problems]


def line(text: str, needle: str, nth: int = 1) -> int:
    """The line of the ``nth`` line holding ``needle``."""
    return [n for n, l in enumerate(text.splitlines(), 1) if needle in l][nth - 1]


def test_the_sample_main_library_has_a_plan_and_westside_has_tiles_only(sample_site):
    main = sample_site.branches["main"]
    (floor,) = main.floors
    assert floor.plan == SAMPLE_SITE.parent / "plans" / "main-ground.svg"
    assert floor.media_type == "image/svg+xml" and floor.view_box == (0, 0, 800, 500)
    assert [p.room_id for p in floor.placements] == [r.id for r in main.rooms]
    assert main.floor_of("safe-room") is floor and floor.placement("safe-room").is_area
    assert sample_site.branches["westside"].floors == ()
    assert sample_site.branches["westside"].floor_of("front-desk") is None


def test_points_areas_and_a_png_plan_load(folder):
    (folder / "plans" / "upper.png").write_bytes(png(640, 480))
    floors = ONE_FLOOR + """
  [[branch.floor]]
  id = "upper"
  name = "Upper floor"
  plan = "plans/upper.png"
"""
    path = folder / "site.toml"
    path.write_text(site_text(floors, desk='  floor = "upper"\n  at = [639, 479]\n',
                              safe='  floor = "ground"\n  area = [[0, 0], [10, 0], [5, 9]]\n'))
    branch = load_site(path).branches["north"]
    ground, upper = branch.floors
    assert upper.media_type == "image/png" and upper.view_box == (0, 0, 640, 480)
    assert upper.placement("desk").points == ((639.0, 479.0),)
    assert not upper.placement("desk").is_area
    assert ground.placement("safe").centre == (5.0, 3.0)
    assert branch.floor_of("desk") is upper and branch.floor_of("safe") is ground


@pytest.mark.parametrize("floors, desk, safe, needle, field, problem", [
    (ONE_FLOOR, "", None, "[[branch.room]]", "branch[0].room[0]",
     "not placed on its floor's plan: add at = [x, y]"),
    (ONE_FLOOR, "  at = [401, 10]\n", None, "at = [401", "branch[0].room[0].at",
     "[401, 10] is outside the plan: x must be 0 to 400 and y 0 to 300"),
    (ONE_FLOOR, "  at = [1, 2, 3]\n", None, "at = [1, 2, 3]", "branch[0].room[0].at",
     "must be [x, y] (two numbers)"),
    (ONE_FLOOR, "  area = [[1, 2], [3, 4]]\n", None, "area = [[1, 2]", "branch[0].room[0].area",
     "must be a list of 3 to 64 corners"),
    (ONE_FLOOR, "  at = [1, 2]\n  area = [[1, 2], [3, 4], [5, 6]]\n", None, "area = [[1, 2], [3",
     "branch[0].room[0].area", "give either at = [x, y] (a point) or area"),
    (ONE_FLOOR, '  floor = "attic"\n  at = [1, 2]\n', None, 'floor = "attic"',
     "branch[0].room[0].floor", "unknown floor 'attic'; this branch's floors are ground"),
    ("", "  at = [1, 2]\n", "", "at = [1, 2]", "branch[0].room[0].at",
     "this branch has no [[branch.floor]] plan to place the room on"),
    (ONE_FLOOR.replace("plans/north.svg", "plans/south.svg"), None, None, "plans/south.svg",
     "branch[0].floor[0].plan", "'plans/south.svg' not found"),
    (ONE_FLOOR.replace("plans/north.svg", "../north.svg"), None, None, "../north.svg",
     "branch[0].floor[0].plan", "'../north.svg' must be inside the site file's folder"),
    (ONE_FLOOR.replace("plans/north.svg", "plans/north.pdf"), None, None, "north.pdf",
     "branch[0].floor[0].plan", "'plans/north.pdf' must be an .svg or .png file"),
    (ONE_FLOOR.replace('name = "Ground floor"\n', ""), None, None, "[[branch.floor]]",
     "branch[0].floor[0].name", "missing"),
    (ONE_FLOOR + ONE_FLOOR.replace("Ground", "Other"), None, None, ('id = "ground"', 2),
     "branch[0].floor[1].id", "floor 'ground' is declared twice"),
])
def test_each_mistake_names_its_line_and_field(folder, floors, desk, safe, needle, field,
                                               problem):
    given = {k: v for k, v in (("desk", desk), ("safe", safe)) if v is not None}
    text = site_text(floors, **given)
    found = problems(folder, text)
    assert len(found) == 1, found
    where = line(text, *needle) if isinstance(needle, tuple) else line(text, needle)
    expected = f"site.toml:{where}: {field}: {problem}"
    assert found[0].startswith(expected), (found[0], expected)


def test_a_room_must_say_its_floor_when_there_are_several(folder):
    (folder / "plans" / "upper.svg").write_text(SVG)
    floors = ONE_FLOOR + ONE_FLOOR.replace('"ground"', '"upper"').replace("north.svg", "upper.svg")
    text = site_text(floors, safe='  floor = "upper"\n  at = [1, 1]\n')
    desk = line(text, "[[branch.room]]")
    assert problems(folder, text) == [
        f"site.toml:{desk}: branch[0].room[0].floor: missing: which "
        "floor the room is on, one of ground, upper"]


@pytest.mark.parametrize("content, problem", [
    ("<svg><rect/>", "north.svg is not well-formed SVG"),
    ('<svg xmlns="http://www.w3.org/2000/svg"><rect/></svg>',
     "north.svg has no viewBox and no plain width and height"),
    ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 0 10"/>', "viewBox='0 0 0 10' must be"),
    ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 9 9"><script>alert(1)</script></svg>',
     "north.svg contains a <script>"),
    ("<html/>", "the root element is <html>, not <svg>"),
])
def test_a_plan_file_that_cannot_be_used_says_why(folder, content, problem):
    (folder / "plans" / "north.svg").write_text(content)
    (found,) = problems(folder, site_text())
    assert "branch[0].floor[0].plan: " in found and problem in found, found


def test_a_file_named_png_that_is_not_one_is_refused(folder):
    (folder / "plans" / "north.png").write_bytes(b"GIF89a" + b"\0" * 30)
    text = site_text(ONE_FLOOR.replace("north.svg", "north.png"))
    (found,) = problems(folder, text)
    assert found.endswith("branch[0].floor[0].plan: north.png is not a PNG image "
                          "(save it again as PNG)")


def test_parse_site_reads_plans_relative_to_base_dir(folder):
    text = site_text()
    with pytest.raises(ConfigError, match="not found"):
        parse_site(text, "site.toml", base_dir=folder / "elsewhere")
    assert parse_site(text, "site.toml", base_dir=folder).branches["north"].floors
