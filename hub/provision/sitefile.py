"""Add or remove a ``[[device]]`` block in the site file, leaving every other byte alone.

The site file is reviewed text full of comments, so it is edited as text: a
new block goes after the last ``[[device]]`` block (or at the end), in the
same shape the file uses; a removed block takes its lines with it and nothing
else. Every edit is then proved by parsing both versions with
:func:`hub.config.site.parse_site`: the result must be valid and differ from the
original by exactly that one device, or the edit is refused.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass

from hub.errors import ConfigError
from hub.config.site import Site, parse_site

from hub.provision import ProvisionError

#: A table header line: ``[name]`` or ``[[name]]`` (with optional indentation).
HEADER_RE = re.compile(r"^[ \t]*\[")
DEVICE_HEADER_RE = re.compile(r"^([ \t]*)\[\[[ \t]*device[ \t]*\]\][ \t]*(#.*)?$")


@dataclass(frozen=True)
class NewDevice:
    id: str
    branch: str
    room: str
    type: str
    holder: str | None = None


def _string(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string


def _blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of each ``[[device]]`` block: its header through its
    last key line (comments and blanks before the next header stay outside)."""
    blocks = []
    for i, line in enumerate(lines):
        if not DEVICE_HEADER_RE.match(line):
            continue
        end = i
        for j in range(i + 1, len(lines)):
            if HEADER_RE.match(lines[j]):
                break
            stripped = lines[j].strip()
            if stripped and not stripped.startswith("#"):
                end = j
        blocks.append((i, end))
    return blocks


def add_device(text: str, device: NewDevice, source: str) -> tuple[str, Site]:
    """``text`` with ``device`` appended; raises ProvisionError naming the problem."""
    before = _parse(text, source)
    if device.id in before.devices:
        d = before.devices[device.id]
        raise ProvisionError(f"{source}: device {device.id!r} already exists (in "
                             f"{d.branch_id}/{d.room_id}); pick another --id, or revoke it "
                             f"first with 'haven provision revoke {device.id}'")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    blocks = _blocks(lines)
    indent = DEVICE_HEADER_RE.match(lines[blocks[-1][0]]).group(1) if blocks else ""
    block = [f"{indent}[[device]]\n", f"{indent}id = {_string(device.id)}\n",
             f"{indent}branch = {_string(device.branch)}\n",
             f"{indent}room = {_string(device.room)}\n",
             f"{indent}type = {_string(device.type)}\n"]
    if device.holder:
        block.append(f"{indent}holder = {_string(device.holder)}\n")
    at = blocks[-1][1] + 1 if blocks else len(lines)
    new_lines = lines[:at] + ["\n"] + block + lines[at:]
    if not blocks and lines and lines[-1].strip():
        new_lines = lines + ["\n"] + block
    new_text = "".join(new_lines)
    after = _checked(new_text, source, before, expect_added=device.id)
    d = after.devices[device.id]
    if (d.branch_id, d.room_id, d.type, d.holder) != (device.branch, device.room, device.type,
                                                      device.holder or None):
        raise ProvisionError(f"editing {source} did not record device {device.id!r} as asked, "
                             "so it was left as it was; add the [[device]] block by hand")
    return new_text, after


def remove_device(text: str, device_id: str, source: str) -> tuple[str, Site]:
    """``text`` without the ``[[device]]`` block whose id is ``device_id``."""
    before = _parse(text, source)
    if device_id not in before.devices:
        raise ProvisionError(f"{source}: no device {device_id!r}; known: "
                             f"{', '.join(before.devices) or 'none'}")
    lines = text.splitlines(keepends=True)
    for start, end in _blocks(lines):
        block = "".join(line.lstrip() for line in lines[start:end + 1])
        try:
            found = tomllib.loads(block)["device"][0].get("id")
        except (tomllib.TOMLDecodeError, KeyError, IndexError):
            continue
        if found == device_id:
            # Take one blank line with it, so the file's spacing stays as it was.
            if start > 0 and not lines[start - 1].strip():
                start -= 1
            new_text = "".join(lines[:start] + lines[end + 1:])
            return new_text, _checked(new_text, source, before, expect_removed=device_id)
    raise ProvisionError(f"{source}: device {device_id!r} is not written as a [[device]] "
                         "block this tool can edit; remove it by hand, then run revoke again")


def _parse(text: str, source: str) -> Site:
    try:
        return parse_site(text, source)
    except ConfigError as exc:
        raise ProvisionError(f"the site file has problems; fix them first:\n{exc}") from None


def _checked(new_text: str, source: str, before: Site, *, expect_added: str | None = None,
             expect_removed: str | None = None) -> Site:
    """Parse the edited text and prove it differs from ``before`` by that one device."""
    try:
        after = parse_site(new_text, source)
    except ConfigError as exc:
        raise ProvisionError(f"editing {source} would break it, so it was left as it was:\n"
                             f"{exc}") from None
    want = dict(before.devices)
    if expect_added:
        want[expect_added] = after.devices.get(expect_added)
    if expect_removed:
        want.pop(expect_removed)
    same = (after.devices == want and after.kinds == before.kinds
            and after.branches == before.branches and after.contacts == before.contacts
            and after.name == before.name)
    if not same:
        raise ProvisionError(f"editing {source} changed more than one device, so it was left "
                             "as it was; edit the [[device]] blocks by hand")
    return after
