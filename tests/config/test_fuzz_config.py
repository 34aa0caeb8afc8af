"""Property-based: the config loaders answer every wrong field with their config error.

Each ``key = value`` line of the shipped examples is, in turn, deleted or given a value of
every other TOML type (and a broken one). The loader must answer with its config error,
never another exception; a value of the wrong type must never load silently; the site
loader's every problem must say FILE:LINE.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import PLANS_DIR, SAMPLE_SITE

import tomllib

from device.config import DeviceConfigError, parse_device_config
from device.tomlpos import Positions
from hub.errors import ConfigError
from hub.config.site import parse_site

EXAMPLES = SAMPLE_SITE.parent
ASSIGNMENT = re.compile(r"^(\s*)([A-Za-z0-9_\-\"]+)\s*=\s*(.+?)\s*(#.*)?$")
#: A value of each TOML type, for substituting in turn.
LITERALS = {"string": '"wrong"', "integer": "-7", "float": "0.5", "boolean": "true",
            "array": '["wrong", 1]', "table": '{ wrong = 1 }', "datetime": "2026-01-01T00:00:00"}


def toml_type(value) -> str:
    import datetime
    for name, kind in (("boolean", bool), ("integer", int), ("float", float),
                       ("string", str), ("array", list), ("table", dict),
                       ("datetime", datetime.datetime)):
        if isinstance(value, kind):
            return name
    return "other"


def config_mutations(text: str):
    """``(line number, description, mutated text, wrong_type)`` for every assignment line."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        m = ASSIGNMENT.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        indent, key, raw = m.group(1), m.group(2), m.group(3)
        try:
            original = toml_type(tomllib.loads(f"x = {raw}")["x"])
        except tomllib.TOMLDecodeError:
            continue  # a multi-line value: its first line only
        variants = [("deleted", None, False)]
        variants += [(f"as {name}", literal, name != original
                      and {name, original} != {"integer", "float"})
                     for name, literal in LITERALS.items()]
        variants.append(("unclosed", '"broken', True))
        for what, literal, wrong in variants:
            changed = list(lines)
            if literal is None:
                del changed[index]
            else:
                changed[index] = f"{indent}{key} = {literal}"
            yield index + 1, f"line {index + 1} {key} {what}", "\n".join(changed) + "\n", wrong


SITE_CASES = list(config_mutations(SAMPLE_SITE.read_text()))


def test_the_site_loader_answers_every_wrong_field_with_file_and_line():
    loaded_wrong, checked = [], 0
    for line, what, text, wrong in SITE_CASES:
        try:
            parse_site(text, "site.toml", PLANS_DIR)
        except ConfigError as exc:
            checked += 1
            assert exc.problems, what
            for problem in exc.problems:
                assert problem.line is not None, (what, str(problem))
                assert str(problem).startswith(f"site.toml:{problem.line}: "), (what, problem)
                assert problem.problem.strip(), (what, problem)
            if wrong and "deleted" not in what:  # it points at the very line changed
                assert line in {p.line for p in exc.problems}, (what, exc.problems)
            continue
        except Exception as exc:  # noqa: BLE001 - the property: nothing else escapes
            pytest.fail(f"{what}: {type(exc).__name__}: {exc}")
        if wrong:
            loaded_wrong.append(what)
    assert not loaded_wrong, f"wrong values loaded silently: {loaded_wrong}"
    assert len(SITE_CASES) > 500 and checked > 400, (len(SITE_CASES), checked)


def device_example(name: str) -> str:
    """A shipped device config, minus the TLS files that exist only on a provisioned Pi."""
    text = (EXAMPLES / name).read_text()
    return "\n".join(l for l in text.splitlines()
                     if not re.match(r"\s*(ca_file|cert_file|key_file|password_file)\s*=", l))


DEVICE_CASES = [(name, *case) for name in ("device-wall.toml", "device-wearable.toml",
                                           "device-safe-room.toml")
                for case in config_mutations(device_example(name))]


def test_the_device_loader_answers_every_wrong_field_with_file_line_and_field():
    loaded_wrong = []
    for name, line, what, text, wrong in DEVICE_CASES:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            continue  # load_device_config reports these with the file name (tests/test_device)
        try:
            parse_device_config(data, name, positions=Positions(text))
        except DeviceConfigError as exc:
            for problem in str(exc).splitlines():  # file:line: field: why
                assert re.match(rf"{re.escape(name)}:\d+: \S+: .", problem), (what, problem)
            continue
        except Exception as exc:  # noqa: BLE001
            pytest.fail(f"{name} {what}: {type(exc).__name__}: {exc}")
        if wrong:
            loaded_wrong.append(f"{name} {what}")
    assert not loaded_wrong, f"wrong values loaded silently: {loaded_wrong}"
    assert len(DEVICE_CASES) > 100


def test_a_device_outbox_of_the_wrong_type_is_refused():
    text = device_example("device-wall.toml").replace(
        'outbox = "/var/lib/haven/outbox.sqlite3"', "outbox = 42")
    with pytest.raises(DeviceConfigError, match="device.outbox"):
        parse_device_config(tomllib.loads(text), "device-wall.toml")
