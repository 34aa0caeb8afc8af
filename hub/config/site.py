"""The site config: branches, rooms, safe rooms, devices, contacts and alarm kinds.

A site is reviewed text (TOML, under version control) loaded once at start-up
into frozen objects. Every mistake is collected and reported as
``FILE:LINE: FIELD: problem`` in one :class:`ConfigError`, so an IT person
fixes them all in one pass. See ``deploy/examples/site.toml`` for a sample.

Layout::

    [site]            name, call_retries = 2, call_retry_after_s = 30 (unanswered calls)
    [kinds.<kind>]    label, notify = [roles paged for this kind] (a one-step policy),
                      cancel_window_s = 0 (how long the wearer may cancel; never for emergency)
    [[kinds.<kind>.step]]             or an escalation policy: notify = [roles],
                                      channels = ["sms", "call"], wait_s = 120, repeat = 1
    [[kinds.<kind>.lone_worker_step]] the policy while a branch has a lone worker
    [[branch]]        id, name, timezone, checkin_every_s = 1800, checkin_grace_s = 120
    [[branch.room]]   id, name, safe_room = false, and on a floor plan: floor, at / area
    [[branch.floor]]  id, name, plan (an .svg or .png beside this file): hub.config.floorplans
    [[device]]        id, branch, room, type = "wearable"|"wall"|"safe_room", holder,
                      contact = phone or name of the [[contact]] answering from it
    [[contact]]       name, phone (E.164), branches = [...], roles = [...],
                      on_duty = ["westside Mon-Fri 12:00-21:00", ...] (none: always)
    [arc]             an alarm receiving centre over SIA DC-09 (optional): hub.arc.config

Location comes from this registry, never from the device: a device is known by
its id and placed in one room of one branch. The objects it loads into are
:mod:`hub.core.site` (imported from here too).
"""

from __future__ import annotations

import re
import tomllib
import zoneinfo
from dataclasses import replace
from pathlib import Path
from typing import Any

from device.protocol import DEVICE_CANCELLABLE_KINDS, ID_RE, KIND_RE

from hub.arc.config import parse_arc
from hub.errors import ConfigError, Problem
from hub.core.schedule import ScheduleError, parse_shift
from hub.config.floorplans import ROOM_PLAN_FIELDS, parse_floors
from hub.config.incidents import parse_incidents
from hub.core.site import Branch, Contact, Device, Kind, Room, Site, Step
from device.tomlpos import Positions, dotted

__all__ = ["Branch", "Contact", "Device", "Kind", "Room", "Site", "Step", "ConfigError",
           "load_site", "parse_site", "E164_RE", "ROLE_RE", "DEVICE_TYPES"]

E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")
DEVICE_TYPES = ("wearable", "wall", "safe_room")
#: Kinds only an operator may end: the person may be forced to press "cancel".


# --- loading -----------------------------------------------------------------

class _Checker:
    """Collects problems with positions while reading raw TOML data."""

    def __init__(self, source: str, positions: Positions):
        self.source, self.positions = source, positions
        self.problems: list[Problem] = []

    def add(self, path: tuple, problem: str) -> None:
        self.problems.append(Problem(self.source, self.positions.line(path), dotted(path), problem))

    def table(self, raw: Any, path: tuple, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            self.add(path, f"must be a table, not {type(raw).__name__}")
            return None
        for key in raw:
            if key not in allowed:
                self.add(path + (key,), f"unknown field; expected one of {', '.join(allowed)}")
        return raw

    def text(self, raw: dict, path: tuple, key: str, *, required: bool = True,
             pattern: re.Pattern | None = None, hint: str = "",
             default: str | None = None) -> str | None:
        if key not in raw:
            if required:
                self.add(path + (key,), f"missing{': ' + hint if hint else ''}")
            return default
        value = raw[key]
        if not isinstance(value, str) or not value.strip():
            self.add(path + (key,), f"must be a non-empty string{': ' + hint if hint else ''}")
            return default
        if pattern is not None and not pattern.match(value):
            self.add(path + (key,), f"{value!r} is not valid{': ' + hint if hint else ''}")
            return default
        return value

    def strings(self, raw: dict, path: tuple, key: str, *, pattern: re.Pattern,
                hint: str, required: bool = True) -> list[str]:
        if key not in raw:
            if required:
                self.add(path + (key,), f"missing: {hint}")
            return []
        value = raw[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.add(path + (key,), f"must be a list of strings: {hint}")
            return []
        bad = [v for v in value if not pattern.match(v)]
        if bad:
            self.add(path + (key,), f"{', '.join(map(repr, bad))} not valid: {hint}")
        return [v for v in value if pattern.match(v)]

    def number(self, raw: dict, path: tuple, key: str, default: float, low: float,
               high: float, unit: str) -> float:
        """``raw[key]`` (or ``default``) as a float within [low, high]; a problem otherwise."""
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or not low <= value <= high:
            self.add(path + (key,), f"must be {low:g} to {high:g} {unit}")
            return float(default)
        return float(value)

    def array(self, data: dict, key: str) -> list[tuple[tuple, Any]]:
        raw = data.get(key, [])
        if not isinstance(raw, list):
            self.add((key,), f"must be an array of tables: write [[{key}]]")
            return []
        return [((key, i), item) for i, item in enumerate(raw)]


def load_site(path: str | Path) -> Site:
    """Read and validate a site file; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(source, None, "", f"cannot read: {exc.strerror}")]) from None
    return parse_site(text, source, base_dir=path.parent)


def parse_site(text: str, source: str = "<site>", base_dir: str | Path | None = None) -> Site:
    """Validate site TOML ``text``; ``source`` names the file in error messages;
    ``base_dir`` is where floor plan paths are relative to (default: ``source``'s folder,
    so a text read from a file finds its plans beside it)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise ConfigError([Problem(source, int(m.group(1)) if m else None, "",
                                   f"not valid TOML: {exc}")]) from None
    check = _Checker(source, Positions(text))
    check.table(data, (), ("site", "kinds", "branch", "device", "contact", "incidents",
                           "privacy", "arc"))

    site_name = "Haven site"
    site_raw = check.table(data.get("site", {}), ("site",),
                           ("name", "call_retries", "call_retry_after_s"))
    calls = {}
    if site_raw is not None:
        site_name = check.text(site_raw, ("site",), "name", required=False,
                               default=site_name) or site_name
        retries = check.number(site_raw, ("site",), "call_retries", 2, 0, 5, "calls")
        if retries != int(retries):
            check.add(("site", "call_retries"), "must be a whole number of calls (0 to 5)")
        calls = {"call_retries": int(retries),
                 "call_retry_after_s": check.number(site_raw, ("site",), "call_retry_after_s",
                                                    30, 0, 900, "seconds")}

    kinds = _kinds(check, data)
    branches = _branches(check, data, Path(base_dir) if base_dir else Path(source).parent)
    devices = _devices(check, data, branches)
    contacts = _contacts(check, data, branches)
    devices = _device_contacts(check, data, devices, contacts)
    if not check.problems:  # reach is only meaningful once every entry reads cleanly
        _check_reach(check, kinds, branches, contacts)
    incidents = parse_incidents(check, data, branches, contacts)
    arc = parse_arc(check, data, branches, kinds)

    if check.problems:
        raise ConfigError(check.problems)
    return Site(name=site_name, source=source, kinds=kinds, branches=branches,
                devices=devices, contacts=tuple(contacts), incidents=incidents, arc=arc,
                **calls)


def _kinds(check: _Checker, data: dict) -> dict[str, Kind]:
    kinds: dict[str, Kind] = {}
    raw_kinds = data.get("kinds")
    if raw_kinds is None:
        check.add(("kinds",), "missing: declare each alarm kind as [kinds.<name>] "
                              "with notify = [roles]")
        return kinds
    if check.table(raw_kinds, ("kinds",), tuple(raw_kinds) if isinstance(raw_kinds, dict) else ()) \
            is None:
        return kinds
    for kind_id, raw in raw_kinds.items():
        path = ("kinds", kind_id)
        if not KIND_RE.match(kind_id):
            check.add(path, "kind names are lower-case letters, digits and '_'")
            continue
        raw = check.table(raw, path, ("label", "notify", "cancel_window_s", "step",
                                      "lone_worker_step"))
        if raw is None:
            continue
        label = check.text(raw, path, "label", required=False) or kind_id.replace("_", " ")
        if "step" in raw and "notify" in raw:
            check.add(path + ("notify",), "give either notify = [roles] or [[kinds."
                                          f"{kind_id}.step]] tables, not both")
        if "step" in raw:
            steps = _steps(check, raw, path, "step")
        else:
            notify = check.strings(raw, path, "notify", pattern=ROLE_RE,
                                   hint="roles to page, e.g. [\"staff\", \"police\"]; "
                                        "[] pages no one")
            steps = (Step(tuple(notify)),) if notify else ()
        lone = _steps(check, raw, path, "lone_worker_step") if "lone_worker_step" in raw else ()
        window = raw.get("cancel_window_s", 0)
        if isinstance(window, bool) or not isinstance(window, (int, float)) \
                or not 0 <= window <= 120:
            check.add(path + ("cancel_window_s",), "must be 0 to 120 seconds")
            window = 0
        elif window and kind_id not in DEVICE_CANCELLABLE_KINDS:
            check.add(path + ("cancel_window_s",),
                      f"a {kind_id} alarm is never cancelled from the device (only "
                      f"{' and '.join(sorted(DEVICE_CANCELLABLE_KINDS))} are; a coerced cancel "
                      "is a real risk): remove this line")
            window = 0
        kinds[kind_id] = Kind(kind_id, label, steps, float(window), lone)
    return kinds


CHANNELS = ("sms", "call", "push")


def _steps(check: _Checker, raw_kind: dict, kpath: tuple, key: str) -> tuple[Step, ...]:
    raw_steps = raw_kind[key]
    if not isinstance(raw_steps, list) or not raw_steps:
        check.add(kpath + (key,), f"must be one or more [[kinds.{kpath[-1]}.{key}]] tables")
        return ()
    steps = []
    for i, raw in enumerate(raw_steps):
        path = kpath + (key, i)
        raw = check.table(raw, path, ("notify", "channels", "wait_s", "repeat"))
        if raw is None:
            continue
        notify = check.strings(raw, path, "notify", pattern=ROLE_RE,
                               hint="roles to page in this step, e.g. [\"police\"]")
        if not notify and "notify" in raw:
            check.add(path + ("notify",), "a step must page at least one role")
        channels = check.strings(raw, path, "channels", pattern=re.compile(r"^(sms|call|push)\Z"),
                                 hint="\"sms\", \"call\" and/or \"push\" (Web Push, "
                                      "docs/push.md)", required=False) or ["sms"]
        wait = raw.get("wait_s", 120)
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not 5 <= wait <= 3600:
            check.add(path + ("wait_s",), "must be 5 to 3600 seconds")
            wait = 120
        repeat = raw.get("repeat", 1)
        if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 20:
            check.add(path + ("repeat",), "must be a whole number from 1 to 20")
            repeat = 1
        steps.append(Step(tuple(notify), tuple(dict.fromkeys(channels)), float(wait), repeat))
    return tuple(steps)


def _branches(check: _Checker, data: dict, base_dir: Path) -> dict[str, Branch]:
    branches: dict[str, Branch] = {}
    entries = check.array(data, "branch")
    if not entries and "branch" not in data:
        check.add(("branch",), "missing: describe at least one [[branch]]")
    for path, raw in entries:
        raw = check.table(raw, path, ("id", "name", "timezone", "room", "checkin_every_s",
                                      "checkin_grace_s", "floor"))
        if raw is None:
            continue
        branch_id = check.text(raw, path, "id", pattern=ID_RE,
                               hint="letters, digits, '-' or '_', e.g. \"main\"")
        name = check.text(raw, path, "name")
        tz = check.text(raw, path, "timezone", hint="an IANA zone such as \"America/Chicago\"")
        if tz is not None:
            try:
                zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                check.add(path + ("timezone",),
                          f"{tz!r} is not a known IANA zone (e.g. \"America/Chicago\")")
        rooms = _rooms(check, raw, path, branch_id or "?")
        floors = parse_floors(check, raw, path, [r.id for r in rooms], base_dir)
        timing = {key: check.number(raw, path, key, default, low, high, "seconds")
                  for key, default, low, high in (("checkin_every_s", 1800, 60, 86400),
                                                  ("checkin_grace_s", 120, 10, 3600))}
        if branch_id is None:
            continue
        if branch_id in branches:
            check.add(path + ("id",), f"branch {branch_id!r} is declared twice")
            continue
        branches[branch_id] = Branch(branch_id, name or branch_id, tz or "UTC", tuple(rooms),
                                     **timing, floors=floors)
    return branches


def _rooms(check: _Checker, raw_branch: dict, bpath: tuple, branch_id: str) -> list[Room]:
    rooms: list[Room] = []
    raw_rooms = raw_branch.get("room", [])
    if not isinstance(raw_rooms, list) or not raw_rooms:
        check.add(bpath + ("room",), "missing: list the branch's rooms as [[branch.room]]")
        return rooms
    for i, raw in enumerate(raw_rooms):
        path = bpath + ("room", i)
        raw = check.table(raw, path, ("id", "name", "safe_room") + ROOM_PLAN_FIELDS)
        if raw is None:
            continue
        room_id = check.text(raw, path, "id", pattern=ID_RE,
                             hint="letters, digits, '-' or '_', e.g. \"circulation\"")
        name = check.text(raw, path, "name")
        safe = raw.get("safe_room", False)
        if not isinstance(safe, bool):
            check.add(path + ("safe_room",), "must be true or false")
            safe = False
        if room_id is None:
            continue
        if any(r.id == room_id for r in rooms):
            check.add(path + ("id",), f"room {room_id!r} is declared twice in this branch")
            continue
        rooms.append(Room(room_id, name or room_id, branch_id, safe))
    return rooms


def _devices(check: _Checker, data: dict, branches: dict[str, Branch]) -> dict[str, Device]:
    devices: dict[str, Device] = {}
    for path, raw in check.array(data, "device"):
        raw = check.table(raw, path, ("id", "branch", "room", "type", "holder", "contact"))
        if raw is None:
            continue
        device_id = check.text(raw, path, "id", pattern=ID_RE,
                               hint="letters, digits, '-' or '_', e.g. \"main-circ-01\"")
        branch_id = check.text(raw, path, "branch")
        room_id = check.text(raw, path, "room")
        dtype = check.text(raw, path, "type", required=False, default="wall")
        if dtype not in DEVICE_TYPES:
            check.add(path + ("type",), f"{dtype!r} is not one of {', '.join(DEVICE_TYPES)}")
        holder = check.text(raw, path, "holder", required=False)
        contact = check.text(raw, path, "contact", required=False)  # checked with contacts
        if branch_id is not None and branch_id not in branches:
            check.add(path + ("branch",), f"unknown branch {branch_id!r}; "
                                          f"known: {', '.join(branches) or 'none'}")
            continue
        if branch_id is not None and room_id is not None:
            branch = branches[branch_id]
            if branch.room(room_id) is None:
                check.add(path + ("room",),
                          f"unknown room {room_id!r} in branch {branch_id!r}; "
                          f"its rooms are {', '.join(r.id for r in branch.rooms)}")
                continue
        if device_id is None or branch_id is None or room_id is None:
            continue
        if device_id in devices:
            check.add(path + ("id",), f"device {device_id!r} is declared twice")
            continue
        devices[device_id] = Device(device_id, branch_id, room_id, dtype or "wall", holder,
                                    contact)
    return devices


def _device_contacts(check: _Checker, data: dict, devices: dict[str, Device],
                     contacts: list[Contact]) -> dict[str, Device]:
    """Each device's ``contact`` (a phone or a name, as written) as the phone of a
    [[contact]] serving the device's branch; a problem naming the candidates otherwise."""
    paths = {raw["id"]: path for path, raw in check.array(data, "device")
             if isinstance(raw, dict) and isinstance(raw.get("id"), str)}
    resolved = {}
    for device_id, device in devices.items():
        if device.contact is None:
            resolved[device_id] = device
            continue
        written = device.contact.strip()
        here = [c for c in contacts if device.branch_id in c.branches]
        found = next((c for c in here if written in (c.phone, c.name)), None)
        if found is None:
            names = ", ".join(f"{c.name!r}" for c in here) or "none"
            check.add(paths[device_id] + ("contact",),
                      f"{written!r} is not the phone or name of a [[contact]] of branch "
                      f"{device.branch_id!r} (its contacts: {names}); name the person who "
                      "answers colleagues' alarms from this device")
            found_phone = None
        else:
            found_phone = found.phone
        resolved[device_id] = replace(device, contact=found_phone)
    return resolved


def _contacts(check: _Checker, data: dict, branches: dict[str, Branch]) -> list[Contact]:
    contacts: list[Contact] = []
    for path, raw in check.array(data, "contact"):
        raw = check.table(raw, path, ("name", "phone", "branches", "roles", "on_duty"))
        if raw is None:
            continue
        name = check.text(raw, path, "name")
        phone = check.text(raw, path, "phone", pattern=E164_RE,
                           hint="E.164: '+', country code and number, no spaces, "
                                "e.g. \"+15550100123\"")
        member = check.strings(raw, path, "branches", pattern=ID_RE,
                               hint="ids of the branches this contact serves")
        for b in member:
            if b not in branches:
                check.add(path + ("branches",), f"unknown branch {b!r}; "
                                                f"known: {', '.join(branches) or 'none'}")
        roles = check.strings(raw, path, "roles", pattern=ROLE_RE,
                              hint="e.g. [\"staff\"], [\"police\"], [\"manager\"]")
        shifts = []
        for text in check.strings(raw, path, "on_duty", pattern=re.compile(r"."),
                                  hint="weekly shifts such as \"main Mon-Fri 09:00-17:00\"",
                                  required=False):
            try:
                shifts.append(parse_shift(text, {b.id: b.timezone for b in branches.values()}))
            except ScheduleError as exc:
                check.add(path + ("on_duty",), str(exc))
        if name and phone:
            contacts.append(Contact(name, phone, frozenset(member), frozenset(roles),
                                    tuple(shifts)))
    return contacts


def _check_reach(check: _Checker, kinds: dict[str, Kind], branches: dict[str, Branch],
                 contacts: list[Contact]) -> None:
    """Every step of a kind must reach at least one contact at every branch."""
    for kind in kinds.values():
        for key, steps in (("step", kind.steps), ("lone_worker_step", kind.lone_worker_steps)):
            for i, step in enumerate(steps):
                for branch in branches.values():
                    if any(branch.id in c.branches and set(step.notify) & c.roles
                           for c in contacts):
                        continue
                    where = ("kinds", kind.id, "notify") if key == "step" and len(steps) == 1 \
                        else ("kinds", kind.id, key, i, "notify")
                    check.add(where, f"no contact of branch {branch.id!r} holds any of the roles "
                                     f"{', '.join(step.notify)}: an alarm there would page no "
                                     f"one; add such a [[contact]]")
