"""Branch switches (drill, lone worker) and ad-hoc duty overrides in Redis.

Keys (under the store's prefix)::

    haven:branch:<id>             hash   drill_until_ms, lone_worker (1/0), by, changed_ms,
                                         shelter:<room> = "<since_ms>:<alarm id>" for each
                                         safe room staff shelter in now
    haven:overrides:<branch>      hash   phone -> "on|off:<until_ms>:<by>"

Wiring: :class:`BranchStore` is ``store.branches`` (hub.store.alarms.Store), given the store's
client, key builder and live-events channel.
"""

from __future__ import annotations

import json
from typing import Callable

import redis

from hub.core.model import Shelter
from hub.core.schedule import Override, Switches

#: Field prefix of an occupied safe room in a branch hash.
SHELTER_FIELD = "shelter:"


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2]))

def parse_switches(raw: dict[str, str]) -> Switches:
    """A branch hash (``drill_until_ms``, ``lone_worker`` 1/0, ``by``, ``shelter:<room>``)
    as :class:`Switches`."""
    drill = raw.get("drill_until_ms")
    lone = raw.get("lone_worker")
    return Switches(drill_until_ms=int(drill) if drill else None,
                    lone_worker=None if lone in (None, "") else lone == "1",
                    by=raw.get("by") or None, shelters=parse_shelters(raw))


def parse_shelters(raw: dict[str, str]) -> tuple[Shelter, ...]:
    """The occupied safe rooms in a branch hash, earliest first (a malformed one is left
    out: it names no time to tell)."""
    found = []
    for name, value in raw.items():
        since, _, alarm_id = value.partition(":")
        if name.startswith(SHELTER_FIELD) and since.isdigit() and alarm_id:
            found.append(Shelter(name[len(SHELTER_FIELD):], int(since), alarm_id))
    return tuple(sorted(found, key=lambda s: (s.since_ms, s.room)))

def parse_overrides(branch_id: str, raw: dict[str, str], now_ms: int) -> list[Override]:
    """The overrides hash (phone -> ``on|off:<until_ms>:<by>``): those in force at now_ms."""
    found = []
    for phone, value in raw.items():
        state, _, rest = value.partition(":")
        until = rest.split(":", 1)[0]
        if until.isdigit() and int(until) > now_ms:
            found.append(Override(phone, branch_id, state == "on", int(until)))
    return found


def parse_seen(branch_id: str, seen: tuple[tuple[str, ...], tuple[str, ...]],
               now_ms: int) -> tuple[Switches, list[Override]]:
    """A branch state as a raise read it (flat switches and overrides: Raised.seen)."""
    return (parse_switches(_pairs(list(seen[0]))),
            parse_overrides(branch_id, _pairs(list(seen[1])), now_ms))


class BranchStore:
    """Reads and writes a branch's switches and overrides; changes are published as
    events. ``key(*parts)`` builds a key (Store.key)."""

    def __init__(self, client: redis.Redis, key: Callable[..., str], events_channel: str):
        self.r, self.key, self.events_channel = client, key, events_channel

    def branch_switches(self, branch_id: str) -> Switches:
        return parse_switches(self.r.hgetall(self.key("branch", branch_id)))

    def changed_ms(self, branch_id: str) -> int | None:
        """When someone last changed the branch's switches (Unix ms), if ever."""
        changed = self.r.hget(self.key("branch", branch_id), "changed_ms")
        return int(changed) if changed and changed.isdigit() else None

    def branch_context(self, branch_id: str, now_ms: int) -> tuple[Switches, list[Override]]:
        """A branch's switches and the overrides in force, in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        pipe.hgetall(self.key("branch", branch_id))
        pipe.hgetall(self.key("overrides", branch_id))
        switches, overrides = pipe.execute()
        return parse_switches(switches), parse_overrides(branch_id, overrides, now_ms)

    def set_branch_switches(self, branch_id: str, *, by: str, now_ms: int,
                            drill_until_ms: int | None = ..., lone_worker: bool | None = ...
                            ) -> None:
        """Change a branch's switches (``...`` leaves one as it is, ``None`` clears it)."""
        key = self.key("branch", branch_id)
        pipe = self.r.pipeline()
        changes = {}
        for name, value in (("drill_until_ms", drill_until_ms), ("lone_worker", lone_worker)):
            if value is ...:
                continue
            if value is None:
                pipe.hdel(key, name)
            else:
                changes[name] = ("1" if value else "0") if isinstance(value, bool) else value
        pipe.hset(key, mapping={**changes, "by": by, "changed_ms": now_ms})
        pipe.publish(self.events_channel, json.dumps({"type": "branch.switches",
                                                      "branch": branch_id}))
        pipe.execute()

    def shelter(self, branch_id: str, shelter: Shelter) -> None:
        """Staff shelter in a safe room (its ``safe_room`` alarm was raised)."""
        self.r.hset(self.key("branch", branch_id), SHELTER_FIELD + shelter.room,
                    f"{shelter.since_ms}:{shelter.alarm_id}")

    def end_shelter(self, branch_id: str, room_id: str) -> Shelter | None:
        """Nobody shelters in the safe room any more (its door opened); the shelter that
        ended, if one was recorded."""
        key, field = self.key("branch", branch_id), SHELTER_FIELD + room_id
        pipe = self.r.pipeline()
        pipe.hget(key, field)
        pipe.hdel(key, field)
        value, _ = pipe.execute()
        found = parse_shelters({field: value}) if value else ()
        return found[0] if found else None

    def set_override(self, branch_id: str, phone: str, *, on_duty: bool, until_ms: int,
                     by: str) -> None:
        """Put a contact on or off duty at a branch until ``until_ms``, whatever the schedule."""
        self.r.hset(self.key("overrides", branch_id), phone,
                    f"{'on' if on_duty else 'off'}:{until_ms}:{by}")
        self.r.publish(self.events_channel, json.dumps({"type": "branch.overrides",
                                                        "branch": branch_id}))

    def overrides(self, branch_id: str, now_ms: int) -> list[Override]:
        """Overrides still in force at ``now_ms``."""
        return parse_overrides(branch_id, self.r.hgetall(self.key("overrides", branch_id)),
                               now_ms)
