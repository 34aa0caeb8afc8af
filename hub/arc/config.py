"""``[arc]`` in the site TOML: the alarm receiving centre's receivers and what they get.

Parsed by :func:`parse_arc` from :func:`hub.config.site.parse_site`, with its checker, so every
mistake is reported as ``FILE:LINE: FIELD: problem`` with the others. Absent: no ARC, and
the hub works exactly as without this module::

    [arc]
    accounts = { main = "1001", westside = "1002" }  # branch -> ARC account (3-16 hex
                                        # digits); only these branches' alarms are sent
    kinds = { emergency = "panic", safe_room = "holdup" }  # alarm kind -> event sent:
                                        # panic, holdup or duress (hub.arc.dc09.EVENTS)
    format = "sia-dcs"                  # or "adm-cid" (Contact ID)
    supervision_s = 90                  # a NULL link test to each receiver this often
                                        # (10 s to 25 h: DC-09's supervision categories)
    ack_timeout_s = 3                   # wait this long for an answer before resending
    attempts = 3                        # sends to one receiver before the next is tried

    [[arc.receiver]]                    # the primary first, then the backup
    host = "arc1.example.net"
    port = 12000
    protocol = "tcp"                    # or "udp"
    receiver = "1"                      # receiver and line numbers the ARC gave (1-6 hex)
    line = "1"
    key_env = "HAVEN_ARC_KEY"           # optional: the AES key, from this environment
                                        # variable (never in the reviewed file)
    key_format = "hex"                  # "hex": 32/48/64 hex digits (DC-09); "text": the
                                        # 16/24/32 characters themselves are the key (as
                                        # pysiaalarm / Home Assistant receivers use it)

A room's zone is its position in the branch's ``[[branch.room]]`` list, from 1, unless
``zones = { main = { circulation = 12, ... } }`` numbers a branch's rooms (then every room
of that branch, 1-999, each once): numbers the ARC keeps when rooms are reordered. Give
the ARC the list when commissioning. Keys are read from the environment
when the hub starts (:func:`resolve_keys`), so the dashboard and ``check-config`` load
the same file without them.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

from hub.errors import ConfigError, Problem
from hub.arc.dc09 import EVENTS, FORMATS, Address
from hub.core.arc import ArcSettings, Receiver

ACCOUNT_RE = re.compile(r"^[0-9A-Fa-f]{3,16}\Z")
NUMBER_RE = re.compile(r"^[0-9A-Fa-f]{1,6}\Z")
ENV_RE = re.compile(r"^[A-Z_][A-Z0-9_]*\Z")
HOST_RE = re.compile(r"^[A-Za-z0-9.:\-\[\]]{1,253}\Z")
ARC_FIELDS = ("accounts", "kinds", "format", "supervision_s", "ack_timeout_s", "attempts",
              "zones", "receiver")
RECEIVER_FIELDS = ("host", "port", "protocol", "receiver", "line", "key_env", "key_format")


def parse_arc(check: Any, data: dict, branches: dict, kinds: dict) -> ArcSettings | None:
    """``[arc]`` from the raw TOML, or ``None`` when absent; problems go to ``check``
    (hub.config.site's checker)."""
    if "arc" not in data:
        return None
    raw = check.table(data["arc"], ("arc",), ARC_FIELDS)
    if raw is None:
        return None
    path = ("arc",)
    accounts = _mapping(check, raw, "accounts", ACCOUNT_RE, branches, "branch",
                        "an account number of 3 to 16 hex digits, e.g. \"1001\"")
    sent = _mapping(check, raw, "kinds", re.compile("^(" + "|".join(EVENTS) + r")\Z"), kinds,
                    "alarm kind", "one of " + ", ".join(EVENTS))
    fmt = check.text(raw, path, "format", required=False, default="sia-dcs")
    if fmt not in FORMATS:
        check.add(path + ("format",), f"{fmt!r} is not one of {', '.join(FORMATS)}")
        fmt = "sia-dcs"
    supervision = check.number(raw, path, "supervision_s", 90, 10, 90000, "seconds")
    timeout = check.number(raw, path, "ack_timeout_s", 3, 0.05, 60, "seconds")
    attempts = check.number(raw, path, "attempts", 3, 1, 10, "sends")
    if attempts != int(attempts):
        check.add(path + ("attempts",), "must be a whole number of sends (1 to 10)")
    receivers = _receivers(check, raw)
    zones = _zones(check, raw, branches)
    return ArcSettings(accounts, sent, tuple(receivers), zones, fmt or "sia-dcs",
                       supervision, timeout, int(attempts))


def _zones(check: Any, raw: dict, branches: dict) -> dict[tuple[str, str], int]:
    """Each room's zone: its position in its branch, or ``zones.<branch>.<room>``."""
    zones = {(b.id, r.id): i + 1 for b in branches.values() for i, r in enumerate(b.rooms)}
    given = raw.get("zones", {})
    if not isinstance(given, dict):
        check.add(("arc", "zones"), "must be a table: zones = { <branch> = { <room> = N } }")
        return zones
    for branch_id, rooms in given.items():
        path = ("arc", "zones", branch_id)
        branch = branches.get(branch_id)
        if branch is None:
            check.add(path, f"unknown branch {branch_id!r}; known: {', '.join(branches)}")
            continue
        if not isinstance(rooms, dict):
            check.add(path, "must be a table: { <room> = <zone 1-999> }")
            continue
        for room_id, zone in rooms.items():
            if branch.room(room_id) is None:
                check.add(path + (room_id,), f"unknown room {room_id!r} in branch "
                                             f"{branch_id!r}; its rooms are "
                                             f"{', '.join(r.id for r in branch.rooms)}")
            elif isinstance(zone, bool) or not isinstance(zone, int) or not 1 <= zone <= 999:
                check.add(path + (room_id,), "must be a zone number, 1 to 999")
            elif zone in [rooms.get(r.id) for r in branch.rooms if r.id != room_id]:
                check.add(path + (room_id,), f"zone {zone} is given to two rooms; each "
                                             "room needs its own")
            else:
                zones[(branch_id, room_id)] = zone
        missing = [r.id for r in branch.rooms if r.id not in rooms]
        if missing:
            check.add(path, f"no zone for {', '.join(missing)}: number every room of the "
                            "branch, or none (then they are numbered in order)")
    return zones


def _mapping(check: Any, raw: dict, key: str, pattern: re.Pattern, known: dict, what: str,
             hint: str) -> dict[str, str]:
    path = ("arc", key)
    value = raw.get(key)
    if not isinstance(value, dict) or not value:
        check.add(path, f"missing or empty: write {key} = {{ <{what}> = <{hint}> }}")
        return {}
    out = {}
    for name, item in value.items():
        if name not in known:
            check.add(path + (name,), f"unknown {what} {name!r}; known: "
                                      f"{', '.join(known) or 'none'}")
        elif not isinstance(item, str) or not pattern.match(item):
            check.add(path + (name,), f"{item!r} is not valid: {hint}")
        else:
            out[name] = item.upper() if key == "accounts" else item
    return out


def _receivers(check: Any, raw: dict) -> list[Receiver]:
    items = raw.get("receiver")
    if not isinstance(items, list) or not 1 <= len(items) <= 2:
        check.add(("arc", "receiver"), "give one or two [[arc.receiver]] tables: the "
                                       "primary, then the backup")
        return []
    receivers = []
    for i, item in enumerate(items):
        path = ("arc", "receiver", i)
        item = check.table(item, path, RECEIVER_FIELDS)
        if item is None:
            continue
        host = check.text(item, path, "host", pattern=HOST_RE,
                          hint="the receiver's host name or IP address")
        port = item.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            check.add(path + ("port",), "must be a port number, 1 to 65535")
            port = None
        protocol = check.text(item, path, "protocol", required=False, default="tcp")
        if protocol not in ("tcp", "udp"):
            check.add(path + ("protocol",), f"{protocol!r} is not \"tcp\" or \"udp\"")
        numbers = {k: check.text(item, path, k, required=False, default="1",
                                 pattern=NUMBER_RE, hint="1 to 6 hex digits, as the ARC "
                                                         "assigned") for k in ("receiver", "line")}
        key_env = check.text(item, path, "key_env", required=False, pattern=ENV_RE,
                             hint="the NAME of an environment variable holding the key, "
                                  "e.g. \"HAVEN_ARC_KEY\"")
        key_format = check.text(item, path, "key_format", required=False, default="hex")
        if key_format not in ("hex", "text"):
            check.add(path + ("key_format",), f"{key_format!r} is not \"hex\" or \"text\"")
        if host and port and protocol in ("tcp", "udp"):
            receivers.append(Receiver("primary" if i == 0 else "backup", host, port, protocol,
                                      numbers["receiver"] or "1", numbers["line"] or "1",
                                      key_env, key_format or "hex"))
    return receivers


def key_of(receiver: Receiver, environ: Mapping[str, str]) -> bytes | None:
    """The receiver's AES key from ``environ``; raises ValueError saying what is wrong."""
    if receiver.key_env is None:
        return None
    value = environ.get(receiver.key_env, "").strip()
    if not value:
        raise ValueError(f"environment variable {receiver.key_env} is not set: set it to "
                         "the AES key the ARC gave, or remove key_env")
    if receiver.key_format == "text":
        if len(value) not in (16, 24, 32) or not value.isascii():
            raise ValueError(f"{receiver.key_env} must be 16, 24 or 32 ASCII characters "
                             "(key_format = \"text\")")
        return value.encode("ascii")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) not in (16, 24, 32):
        raise ValueError(f"{receiver.key_env} must be 32, 48 or 64 hex digits (AES-128, "
                         "-192 or -256; key_format = \"hex\")")
    return key


def resolve_keys(settings: ArcSettings, source: str,
                 environ: Mapping[str, str] = os.environ) -> dict[str, Address]:
    """Each receiver's address (numbers and key), keys read from the environment once, at
    hub start. Raises :class:`ConfigError` naming the field and the fix."""
    problems, out = [], {}
    for i, rcv in enumerate(settings.receivers):
        try:
            out[rcv.name] = Address(rcv.receiver, rcv.line, key_of(rcv, environ))
        except ValueError as exc:
            problems.append(Problem(source, None, f"arc.receiver[{i}].key_env", str(exc)))
    if problems:
        raise ConfigError(problems)
    return out
