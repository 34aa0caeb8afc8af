"""A device's troubles as a pure function of its record: offline, silent, low, stuck, failing.

Troubles and thresholds::

    offline          status "offline" (Last Will or clean stop), or nothing heard for
                     longer than silent_after_s = 45 s (30 s heartbeat + 15 s slack).
                     Heard = heartbeat_ms, checkin_ms, selftest_ms, door_opened_ms,
                     alarm_ms, cancel_ms (hub clock, Unix ms); since_ms is the device's
                     clock and not trusted.
    never_seen       in the site config, never sent anything (no status, heartbeat, event
                     nor alarm), hub running > silent_after_s
    low_battery      battery_pct < 20 (%)
    outbox_backlog   outbox > 5 alarms in one heartbeat, or > 0 in every heartbeat for
                     at least 60 s: alarms are not reaching the hub
    selftest_failed  the last self-test reported selftest_ok = "0"

Silence counts from the later of the last sign of life, the hub's start
(``started_ms``) and the moment this worker's broker connection came back:
nobody is heard while the hub or the broker is down. For ``silent_after_s``
after that, a device not yet heard keeps its silence trouble (``previous``), so
a hub restart neither pages IT for every device nor sends false all-clears.
While the broker connection is down (``broker()``), silence is not judged at all:
no offline trouble is raised for the outage, which is reported as such
(hub.engine.troubletexts).

Wiring: :func:`troubles` is called by hub.engine.supervision's checks, with ``now_ms``
and the hub's start passed in; :class:`TroubleNotice` is what the checks report and
hub.core.messages words for IT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Mapping

#: Nothing heard for longer than this means offline, in seconds (30 s heartbeat + slack).
SILENT_AFTER_S = 45.0
#: Battery below this is low, in percent.
LOW_BATTERY_PCT = 20.0
#: An outbox non-empty across heartbeats this far apart is stuck, in seconds.
OUTBOX_STUCK_S = 60.0
#: More alarms than this waiting in one heartbeat is a backlog at once.
OUTBOX_FLOOD = 5
_HEARD = ("heartbeat_ms", "checkin_ms", "selftest_ms", "door_opened_ms", "alarm_ms",
          "cancel_ms")


class Trouble(StrEnum):
    """What is wrong with a device (see the module docstring for thresholds)."""

    OFFLINE = "offline"
    NEVER_SEEN = "never_seen"
    LOW_BATTERY = "low_battery"
    OUTBOX_BACKLOG = "outbox_backlog"
    SELFTEST_FAILED = "selftest_failed"


_SILENCE = frozenset({Trouble.OFFLINE, Trouble.NEVER_SEEN})
TROUBLE_VALUES = frozenset(t.value for t in Trouble)


@dataclass(frozen=True)
class TroubleNotice:
    """One change: ``trouble`` raised (``raised=True``) or cleared, seen at ``at_ms`` (Unix ms)."""

    device_id: str
    trouble: Trouble
    raised: bool
    branch_id: str
    room_id: str
    at_ms: int


def _num(value: object) -> float | None:
    """A finite number, or ``None`` for anything missing, empty or garbage."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def troubles(record: Mapping[str, str], now_ms: int, *, silent_after_s: float,
             started_ms: int, previous: frozenset[Trouble] = frozenset()) -> frozenset[Trouble]:
    """The troubles of one device from its hash (plus ``outbox_since_ms``, which the
    supervisor tracks). ``previous``: the troubles last recorded, kept for silence
    the hub cannot judge yet (see the module docstring). Never raises."""
    found: set[Trouble] = set()
    heard = [t for t in (_num(record.get(f)) for f in _HEARD) if t is not None]
    state = record.get("state")
    seen = bool(heard) or state in ("online", "offline")
    quiet_since = max([started_ms, *heard])
    if state == "offline":
        found.add(Trouble.OFFLINE)
    elif now_ms - quiet_since > silent_after_s * 1000:
        found.add(Trouble.OFFLINE if seen else Trouble.NEVER_SEEN)
    elif quiet_since == started_ms:  # not heard since start, still in the grace period
        found |= previous & _SILENCE
    battery = _num(record.get("battery_pct"))
    if battery is not None and battery < LOW_BATTERY_PCT:
        found.add(Trouble.LOW_BATTERY)
    outbox, beat = _num(record.get("outbox")), _num(record.get("heartbeat_ms"))
    since = _num(record.get("outbox_since_ms"))
    if outbox is not None and (outbox > OUTBOX_FLOOD or outbox > 0 and beat is not None
                               and since is not None and beat - since >= OUTBOX_STUCK_S * 1000):
        found.add(Trouble.OUTBOX_BACKLOG)
    if record.get("selftest_ok") == "0":
        found.add(Trouble.SELFTEST_FAILED)
    return frozenset(found)


def diff(previous: frozenset[Trouble],
         current: frozenset[Trouble]) -> tuple[frozenset[Trouble], frozenset[Trouble]]:
    """``(raised, cleared)`` going from ``previous`` to ``current``."""
    return current - previous, previous - current


def outbox_since(record: Mapping[str, str], since: str | None) -> str | None:
    """The new ``outbox_since_ms``: the first heartbeat of the current non-empty run."""
    outbox, beat = _num(record.get("outbox")), _num(record.get("heartbeat_ms"))
    if outbox is None or beat is None:
        return since
    if outbox <= 0:
        return None
    return since if _num(since) is not None else str(int(beat))
