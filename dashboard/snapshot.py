"""The board's data: what every branch and room looks like right now, as JSON.

Pure core, one edge::

    facts = read_facts(store, site, now_ms)            # the only Redis reads (one pipeline)
    board_snapshot(site, alarms, now_ms, facts=facts)  # pure: JSON-ready dict

A room's ``state`` is the most urgent of (first wins):

    <alarm kind>   the kind of its most urgent active alarm (``emergency``, ``assist``,
                   ``safe_room``...): someone may be in danger. A room's ``alarms``
                   are most urgent first (:func:`most_urgent_first`), so the tile
                   never shows an acknowledged alarm over an unacknowledged one
    ``offline``    one of its devices is offline or was never heard (a press there
                   would not arrive)
    ``trouble``    one of its devices has another trouble (battery low, outbox
                   backlog, failed self-test): it may not work for long
    ``drill``      its branch runs a drill (alarms raised there are practice until
                   someone says REAL; each alarm carries its own ``drill``, hub.core.drill)
    ``quiet``      nothing to do

The other facts stay visible beside the state: ``drill`` (branch in drill),
``occupied`` (a safe room whose door closed on an active ``safe_room`` alarm
and has not opened since), ``troubles`` (per device). Times are Unix ms on the
hub's clock; each also comes as words in its branch's local time with the zone
(``received_text``, a drill's ``until_text``: ``14:03 PST``), the one way every page
says a time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from hub.core.model import Alarm, AlarmState
from hub.core.schedule import Switches
from hub.config.site import Site
from hub.store.alarms import Store

#: Device troubles that mean a press would not reach the hub.
OFFLINE_TROUBLES = frozenset({"offline", "never_seen"})
#: Words for each trouble (supervision's names), for the tiles.
TROUBLE_WORDS = {"offline": "offline", "never_seen": "never heard from",
                 "low_battery": "battery low", "outbox_backlog": "alarms not getting through",
                 "selftest_failed": "self-test failed"}


@dataclass(frozen=True)
class DeviceFacts:
    """One device as the store knows it. ``state``: its last status (``online`` /
    ``offline`` / ``None`` never reported); ``troubles``: the supervisor's current set;
    ``door_opened_ms``: when its safe-room door last opened (hub clock), if ever."""

    state: str | None = None
    troubles: frozenset[str] = frozenset()
    door_opened_ms: int | None = None

    @property
    def offline(self) -> bool:
        return self.state == "offline" or bool(self.troubles & OFFLINE_TROUBLES)


@dataclass(frozen=True)
class BoardFacts:
    """Everything besides alarms a tile shows: branch switches and device facts, by id."""

    switches: Mapping[str, Switches] = field(default_factory=dict)
    devices: Mapping[str, DeviceFacts] = field(default_factory=dict)
    #: Readiness (hub.incidents.reports.Readiness): branches whose drill is overdue and
    #: devices whose daily test press is stale; flagged in words, not as a tile state.
    drill_overdue: frozenset[str] = frozenset()
    test_press_stale: frozenset[str] = frozenset()
    #: Monitoring-centre receivers not answering (hub.arc.queue): name -> since (Unix ms).
    arc_troubles: Mapping[str, int] = field(default_factory=dict)


def read_facts(store: Store, site: Site) -> BoardFacts:
    """Branch switches, device status and troubles for every branch and device of ``site``,
    in one Redis round trip. Raises ``redis.RedisError`` when Redis is unreachable."""
    pipe = store.r.pipeline(transaction=False)
    for branch_id in site.branches:
        pipe.hgetall(store.key("branch", branch_id))
    for device_id in site.devices:
        pipe.hgetall(store.key("device", device_id))
        pipe.smembers(store.key("troubles", device_id))
    pipe.hgetall(store.key("arc", "trouble"))
    replies = iter(pipe.execute())
    switches = {}
    for branch_id in site.branches:
        raw = next(replies)
        drill, lone = _int(raw.get("drill_until_ms")), raw.get("lone_worker")
        switches[branch_id] = Switches(drill_until_ms=drill,
                                       lone_worker=None if lone in (None, "") else lone == "1",
                                       by=raw.get("by") or None)
    devices = {}
    for device_id in site.devices:
        record, troubles = next(replies), next(replies)
        devices[device_id] = DeviceFacts(state=record.get("state") or None,
                                         troubles=frozenset(troubles),
                                         door_opened_ms=_int(record.get("door_opened_ms")))
    arc = {name: json.loads(raw).get("since_ms", 0) for name, raw in next(replies).items()}
    return BoardFacts(switches, devices, arc_troubles=arc)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def board_snapshot(site: Site, alarms: Iterable[Alarm], now_ms: int, *,
                   demo: bool = False, facts: BoardFacts = BoardFacts()) -> dict[str, Any]:
    """The board as JSON-ready data: pure, from the site config, the alarms and ``facts``.

    ``active`` lists every active alarm newest first, including any whose room
    is no longer in the site config (its ids stand in for the names): an alarm
    is never hidden. Each alarm's ``nobody_reached``: still raised, and the pages of one
    of its attempts all ended without reaching a person (hub.engine.followups).
    """
    active = sorted((a for a in alarms if a.state.active),
                    key=lambda a: (a.received_at_ms, a.id), reverse=True)
    alarms_by_room: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    active_json = []
    for alarm in active:
        kind = site.kinds.get(alarm.kind)
        item = {**alarm.to_json(), "kind_label": kind.label if kind else alarm.kind,
                "nobody_reached": alarm.nobody_reached_ms is not None
                and alarm.state is AlarmState.RAISED}
        alarms_by_room[(alarm.branch, alarm.room)].append(item)
        branch = site.branches.get(alarm.branch)
        room = branch.room(alarm.room) if branch else None
        active_json.append({**item, "branch_name": branch.name if branch else alarm.branch,
                            "room_name": room.name if room else alarm.room,
                            "received_text": clock_text(alarm.received_at_ms,
                                                        branch.timezone if branch else "UTC")})
    devices_by_room: dict[tuple[str, str], list[str]] = defaultdict(list)
    for device in site.devices.values():
        devices_by_room[(device.branch_id, device.room_id)].append(device.id)

    def room_json(branch_id: str, room, drill: bool) -> dict[str, Any]:
        room_alarms = most_urgent_first(alarms_by_room.get((branch_id, room.id), []))
        device_ids = devices_by_room.get((branch_id, room.id), [])
        known = [(d, facts.devices.get(d, DeviceFacts())) for d in device_ids]
        troubles = [{"device": d, "offline": f.offline, "troubles": names,
                     "words": ", ".join(TROUBLE_WORDS.get(n, n.replace("_", " "))
                                        for n in names)}
                    for d, f in known if (names := _troubles(f))]
        if room_alarms:
            state = room_alarms[0]["kind"]
        elif any(t["offline"] for t in troubles):
            state = "offline"
        elif troubles:
            state = "trouble"
        else:
            state = "drill" if drill else "quiet"
        return {"id": room.id, "name": room.name, "safe_room": room.safe_room,
                "devices": device_ids,
                "doors": [d for d in device_ids if site.devices[d].type == "safe_room"],
                "alarms": room_alarms, "state": state,
                "drill": drill, "troubles": troubles,
                "occupied": room.safe_room and _occupied(room_alarms, known)}

    branches = []
    for b in site.branches.values():
        drill = _drill(facts, b.id, now_ms)
        switches = facts.switches.get(b.id, Switches())
        branches.append({
            "id": b.id, "name": b.name,
            "drill": None if drill is None else {"until_ms": drill, "by": switches.by,
                                                 "until_text": clock_text(drill, b.timezone)},
            "lone_worker": switches.lone_worker,
            "drill_overdue": b.id in facts.drill_overdue,
            "test_press_stale": sorted(d.id for d in site.devices.values()
                                       if d.branch_id == b.id and d.id in facts.test_press_stale),
            "rooms": [room_json(b.id, r, drill is not None) for r in b.rooms]})
    arc = [{"receiver": name, "since_ms": since,
            "words": f"Monitoring centre: {name} receiver not answering"}
           for name, since in sorted(facts.arc_troubles.items())]
    return {"site": site.name, "generated_at_ms": now_ms, "demo": demo,
            "branches": branches, "active": active_json, "arc_troubles": arc}


def clock_text(ms: int, tz: str) -> str:
    """``14:03 PST``: Unix ms as the time of day in zone ``tz`` (a branch's), with the zone."""
    try:
        zone: Any = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = timezone.utc
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%H:%M %Z")


def most_urgent_first(room_alarms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A room's active alarms, the one its tile leads with first: not acknowledged before
    acknowledged, nobody reached before the rest, then newest first."""
    return sorted(room_alarms, key=lambda a: (a["state"] != AlarmState.RAISED,
                                              not a["nobody_reached"],
                                              -a["received_at_ms"], a["id"]))


def _drill(facts: BoardFacts, branch_id: str, now_ms: int) -> int | None:
    """When the branch's drill ends (Unix ms), or ``None`` if none is in force."""
    until = facts.switches.get(branch_id, Switches()).drill_until_ms
    return until if until is not None and now_ms < until else None


def _troubles(f: DeviceFacts) -> list[str]:
    """The device's troubles, silence first; a reported ``offline`` status counts at once
    (the supervisor records it at its next check, up to 5 s later)."""
    silence = sorted(f.troubles & OFFLINE_TROUBLES) or (["offline"] if f.offline else [])
    return silence + sorted(f.troubles - OFFLINE_TROUBLES)


def _occupied(room_alarms: list[dict[str, Any]],
              devices: list[tuple[str, DeviceFacts]]) -> bool:
    """Someone shelters: an active ``safe_room`` alarm whose door has not opened since."""
    facts = dict(devices)
    for alarm in room_alarms:
        if alarm["kind"] != "safe_room":
            continue
        opened = facts.get(alarm["device"], DeviceFacts()).door_opened_ms
        if opened is None or opened < alarm["received_at_ms"]:
            return True
    return False
