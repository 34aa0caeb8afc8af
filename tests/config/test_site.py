"""Site config: the sample loads; each mistake is reported as FILE:LINE: FIELD: problem."""

import re
import subprocess
import sys

import pytest

from hub.errors import ConfigError
from hub.config.site import load_site, parse_site
from device.tomlpos import Positions, dotted
from tests.conftest import PLANS_DIR, SAMPLE_SITE, write_site

SAMPLE = SAMPLE_SITE.read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_site(text, "site.toml", PLANS_DIR)
    return [str(p) for p in err.value.problems]


def line_of(text: str, needle: str, nth: int = 1) -> int:
    count = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            count += 1
            if count == nth:
                return number
    raise AssertionError(needle)


def test_the_sample_library_system_loads(sample_site):
    assert sample_site.branches["main"].name == "Main Library"
    assert [r.name for r in sample_site.branches["main"].rooms] == [
        "Circulation Desk", "Reference Desk", "Children's Area", "Staff Workroom", "Safe Room"]
    assert [r.name for r in sample_site.branches["westside"].rooms] == ["Front Desk", "Safe Room"]
    assert [r.id for b in sample_site.branches.values() for r in b.rooms if r.safe_room] == [
        "safe-room", "safe-room"]
    branch, room = sample_site.locate("west-front-01")
    assert (branch.id, room.name) == ("westside", "Front Desk")
    assert sample_site.locate("nobody") is None
    assert set(sample_site.kinds) == {"assist", "emergency", "safe_room", "missed_checkin",
                                      "welfare", "test"}
    assert sample_site.recipients("test", "main") == ()
    police = {c.name for c in sample_site.recipients("emergency", "westside")}
    assert "Police dispatch (non-emergency line)" in police


def test_objects_are_frozen(sample_site):
    with pytest.raises(AttributeError):
        sample_site.branches["main"].name = "x"


def test_a_missing_field_is_named_with_its_line():
    text = SAMPLE.replace('name = "Security desk"\n', "")
    line = line_of(text, "[[contact]]", 3)
    assert problems(text) == [f"site.toml:{line}: contact[2].name: missing"]


def test_an_unknown_device_room_names_the_rooms_it_could_be():
    text = SAMPLE.replace('room = "reference"', 'room = "refrence"')
    line = line_of(text, 'room = "refrence"')
    assert problems(text) == [
        f"site.toml:{line}: device[1].room: unknown room 'refrence' in branch 'main'; "
        "its rooms are circulation, reference, children, workroom, safe-room"]


@pytest.mark.parametrize("phone", ["555-0104", "12065550104", "+1 206 555 0104", "+0123456789"])
def test_a_bad_phone_number_asks_for_e164(phone):
    text = SAMPLE.replace('"+12065550104"', f'"{phone}"')
    [problem] = problems(text)
    assert problem.startswith(f"site.toml:{line_of(text, phone)}: contact[3].phone: ")
    assert "E.164" in problem


def test_every_mistake_is_reported_at_once():
    text = (SAMPLE.replace('branch = "westside"\nroom = "front-desk"',
                           'branch = "eastside"\nroom = "front-desk"')
            .replace('timezone = "America/Los_Angeles"', 'timezone = "Mars/Olympus"', 1)
            .replace('safe_room = true', 'safe_room = "yes"', 1)
            .replace('roles = ["police"]', 'roles = ["Police!"]')
            .replace('type = "wall"', 'type = "ceiling"', 1)
            .replace("[site]\n", "[site]\nnmae = 1\n"))
    found = problems(text)
    assert len(found) == 6, found
    for fragment in ["device[5].branch: unknown branch 'eastside'; known: main, westside",
                     "branch[0].timezone: 'Mars/Olympus' is not a known IANA zone",
                     "branch[0].room[4].safe_room: must be true or false",
                     "contact[4].roles: 'Police!' not valid",
                     "device[0].type: 'ceiling' is not one of wearable, wall, safe_room",
                     "site.nmae: unknown field"]:
        assert any(fragment in p for p in found), (fragment, found)


def test_duplicates_are_refused():
    text = SAMPLE.replace('id = "main-ref-01"', 'id = "main-circ-01"')
    assert problems(text) == [f"site.toml:{line_of(text, 'main-circ-01', 2)}: device[1].id: "
                              "device 'main-circ-01' is declared twice"]


def test_a_kind_that_would_page_nobody_at_a_branch_is_an_error():
    # Westside loses its only staff member and the security desk stops covering it.
    text = (SAMPLE.replace('roles = ["staff", "manager"]', 'roles = ["manager"]')
            .replace('branches = ["main", "westside"]\nroles = ["security", "fallback"]',
                     'branches = ["main"]\nroles = ["security", "fallback"]'))
    assert 'branches = ["main"]\nroles = ["security", "fallback"]' in text
    line = line_of(text, "[kinds.assist]") + 2
    assert problems(text) == [
        f"site.toml:{line}: kinds.assist.notify: no contact of branch 'westside' holds any of "
        "the roles staff, security: an alarm there would page no one; add such a [[contact]]"]


def test_toml_syntax_errors_give_the_line():
    text = SAMPLE.replace('name = "Main Library"', 'name = "Main Library')
    line = line_of(text, 'name = "Main Library')
    [problem] = problems(text)
    assert problem.startswith(f"site.toml:{line}: not valid TOML")


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_site(tmp_path / "nope.toml")


def test_positions_follow_arrays_of_tables():
    pos = Positions('[a]\nx = 1\n[[b]]\ny = 2\n[[b.c]]\nz = 3\n[[b]]\ny = 4\n[[b.c]]\n'
                    'z = 5\n[[b.c]]\nz = 6\n')
    assert pos.line(("a", "x")) == 2
    assert pos.line(("b", 1, "y")) == 8
    assert pos.line(("b", 1, "c", 1, "z")) == 12
    assert pos.line(("b", 1, "c", 1, "missing")) == 11  # falls back to the table header
    assert dotted(("b", 1, "c", 0, "z")) == "b[1].c[0].z"


def test_check_config_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "hub.app.cli", "check-config", str(SAMPLE_SITE)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "OK" in ok.stdout and "7 devices" in ok.stdout
    bad = tmp_path / "site.toml"
    write_site(bad, SAMPLE.replace('"+12065550104"', '"555-0104"'))
    result = subprocess.run([sys.executable, "-m", "hub.app.cli", "check-config", str(bad)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{bad}:" in result.stderr and "contact[3].phone" in result.stderr


def test_the_hub_refuses_to_start_on_a_bad_site(tmp_path):
    bad = tmp_path / "site.toml"
    write_site(bad, SAMPLE.replace('room = "reference"', 'room = "refrence"'))
    result = subprocess.run([sys.executable, "-m", "hub.app.cli", "hub", "--site", str(bad),
                             "--broker", "127.0.0.1:1", "--redis", "redis://127.0.0.1:1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "device[1].room: unknown room 'refrence'" in result.stderr


@pytest.mark.parametrize("line, problem", [
    ("call_retries = 2.5", "site.call_retries: must be a whole number"),
    ("call_retries = 9", "site.call_retries: must be 0 to 5 calls"),
    ("call_retry_after_s = -1", "site.call_retry_after_s: must be 0 to 900 seconds"),
    ('call_retry_after_s = "soon"', "site.call_retry_after_s: must be 0 to 900 seconds"),
])
def test_call_retry_settings_are_checked(tmp_path, line, problem):
    key = line.split(" = ")[0]
    text = re.sub(rf"(?m)^{key} = .*$", line, SAMPLE_SITE.read_text(), count=1)
    lineno = text[:text.index(line)].count("\n") + 1
    path = tmp_path / "site.toml"
    write_site(path, text)
    with pytest.raises(ConfigError) as err:
        load_site(path)
    assert f"{path}:{lineno}: {problem}" in str(err.value)
