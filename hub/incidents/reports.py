"""Figures from incidents: the drill report, readiness flags for the board, chart data. Pure.

A **drill** is a run of drill alarms at one branch (alarms raised while the branch
was in drill mode, hub.core.schedule) no more than ``DRILL_GAP_MS`` apart. For each,
the report says who was notified, who acknowledged, the time to the first
acknowledgement (from an alarm reaching the hub), who was notified but never
acknowledged, and which of the branch's devices never confirmed - sent no alarm
during the drill, so a rehearsal did not prove them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Iterable, Mapping
from zoneinfo import ZoneInfo

from hub.config.site import Site

from hub.incidents.model import Incident

#: Drill alarms at one branch this close together (ms) belong to the same drill.
DRILL_GAP_MS = 2 * 3_600_000
#: Time-to-acknowledge bins, upper bounds in seconds (the last bin is everything slower).
ACK_BINS_S = (15, 30, 60, 120, 300)
YEAR_MS = 365 * 86_400_000


@dataclass(frozen=True)
class DrillReport:
    branch: str
    started_ms: int
    ended_ms: int
    alarms: tuple[str, ...]
    notified: tuple[str, ...]
    acknowledged: tuple[str, ...]
    first_ack_ms: int | None
    never_acknowledged: tuple[str, ...]
    devices_never_confirmed: tuple[str, ...]


def drill_reports(site: Site, incidents: Iterable[Incident]) -> list[DrillReport]:
    """One report per drill, newest first."""
    by_branch: dict[str, list[Incident]] = defaultdict(list)
    for i in incidents:
        if i.drill:
            by_branch[i.alarm.branch].append(i)
    reports = []
    for branch_id, items in by_branch.items():
        items.sort(key=lambda i: i.alarm.received_at_ms)
        group: list[Incident] = []
        for item in items:
            if group and item.alarm.received_at_ms - group[-1].alarm.received_at_ms > DRILL_GAP_MS:
                reports.append(_drill(site, branch_id, group))
                group = []
            group.append(item)
        reports.append(_drill(site, branch_id, group))
    return sorted(reports, key=lambda r: r.started_ms, reverse=True)


def _drill(site: Site, branch_id: str, group: list[Incident]) -> DrillReport:
    notified = list(dict.fromkeys(n for i in group for n in i.notified))
    acked = list(dict.fromkeys(i.alarm.acknowledged_by for i in group
                               if i.alarm.acknowledged_by))
    delays = [i.first_ack_ms for i in group if i.first_ack_ms is not None]
    pressed = {i.alarm.device for i in group}
    devices = [d.id for d in site.devices.values() if d.branch_id == branch_id]
    return DrillReport(branch=branch_id, started_ms=group[0].alarm.received_at_ms,
                       ended_ms=max(i.alarm.closed_at_ms or i.alarm.received_at_ms
                                    for i in group),
                       alarms=tuple(i.id for i in group), notified=tuple(notified),
                       acknowledged=tuple(acked), first_ack_ms=min(delays) if delays else None,
                       never_acknowledged=tuple(n for n in notified if n not in acked),
                       devices_never_confirmed=tuple(d for d in devices if d not in pressed))


@dataclass(frozen=True)
class Readiness:
    """What the board flags: ``drill_overdue`` branch id -> last drill ms (``None``: never);
    ``stale_devices`` device id -> last test press ms (``None``: never)."""

    drill_overdue: dict[str, int | None]
    stale_devices: dict[str, int | None]

    def branch_flag(self, branch_id: str) -> bool:
        return branch_id in self.drill_overdue

    def device_flag(self, device_id: str) -> bool:
        return device_id in self.stale_devices


def readiness(site: Site, last_drills: dict[str, int], test_presses: dict[str, int],
              now_ms: int, *, since_ms: int = 0) -> Readiness:
    """Branches whose last drill is older than their interval, and devices whose daily test
    press has not been seen for ``test_press_max_age_days``. ``since_ms``: when Haven was
    installed (:meth:`IncidentStore.installed_ms`); a branch that never drilled or a device
    never test-pressed counts from then, so a fresh install has a full interval of grace
    instead of flagging everything at once."""
    s = site.incidents
    overdue = {b: last_drills.get(b) for b in site.branches
               if now_ms - last_drills.get(b, since_ms) > s.drill_every_ms(b)}
    stale = {d: test_presses.get(d) for d in site.devices
             if now_ms - test_presses.get(d, since_ms) > s.test_press_max_age_ms}
    return Readiness(overdue, stale)


def month_of(ms: int, tz: str = "UTC") -> str:
    """``YYYY-MM`` of Unix ms ``ms`` in zone ``tz`` (a branch's)."""
    try:
        zone: tzinfo = ZoneInfo(tz)
    except (KeyError, ValueError):
        zone = timezone.utc
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m")


def alarms_per_month(incidents: Iterable[Incident],
                     zones: Mapping[str, str] | None = None) -> dict[str, dict[str, Counter]]:
    """branch -> month (``YYYY-MM`` in the branch's local time, ``zones``: branch -> zone;
    UTC for a branch not in it) -> kind -> alarms (drills left out)."""
    zones = zones or {}
    out: dict[str, dict[str, Counter]] = defaultdict(lambda: defaultdict(Counter))
    for i in incidents:
        if not i.drill:
            month = month_of(i.alarm.received_at_ms, zones.get(i.alarm.branch, "UTC"))
            out[i.alarm.branch][month][i.alarm.kind] += 1
    return out


@dataclass(frozen=True)
class AckFigures:
    """Time to first acknowledgement: count per bin (``ACK_BINS_S`` then slower), the number
    acknowledged, and the shares acknowledged within 30 s and 60 s (of those acknowledged)."""

    bins: tuple[int, ...]
    acknowledged: int
    never: int
    within_30: float | None
    within_60: float | None


def ack_figures(incidents: Iterable[Incident]) -> AckFigures:
    delays, never = [], 0
    for i in incidents:
        if i.first_ack_ms is not None:
            delays.append(i.first_ack_ms / 1000)
        elif not i.alarm.state.active:
            never += 1
    bins = [0] * (len(ACK_BINS_S) + 1)
    for d in delays:
        bins[next((n for n, top in enumerate(ACK_BINS_S) if d <= top), len(ACK_BINS_S))] += 1
    share = (lambda limit: sum(d <= limit for d in delays) / len(delays)) if delays else \
        (lambda limit: None)
    return AckFigures(tuple(bins), len(delays), never, share(30), share(60))


def drills_per_branch(site: Site, reports: Iterable[DrillReport], now_ms: int
                      ) -> dict[str, int]:
    """Drills per branch started in the year up to ``now_ms`` (every branch listed)."""
    counts = {b: 0 for b in site.branches}
    for r in reports:
        if now_ms - YEAR_MS <= r.started_ms <= now_ms:
            counts[r.branch] = counts.get(r.branch, 0) + 1
    return counts
