"""Lone-worker check-ins: "are you all right?" to each worn device, and an alarm if not.

While a branch is in ``lone_worker`` state *and* someone is on duty there (a
``staff`` contact of the branch, by schedule or override: a branch closed for the
night, nobody on shift, asks nobody), every worn device (site device type
``wearable``) of that branch is sent ``checkin_request`` every
``checkin_every_s``; the wearer answers with a single press (the firmware sends
a ``checkin`` event), and any other press of that device (an alarm of any kind,
a cancel) answers too (``store.devices.heard``). No answer within
``checkin_grace_s`` raises a ``missed_checkin`` alarm from that device's room,
escalated like any other, even if the shift ended meanwhile (a request made at
20:59 is followed through at 21:01); a request older than ``checkin_grace_s +
checkin_every_s`` is stale (a hub down all that time) and raises nothing.

Each worn device's check-in state is ``store.devices``' (hub.store.devices: one Lua
script decides per device and tick), so with several hub workers each request and
each missed check-in happens once. The missed alarm's id is derived
from the device and the request time (uuid5), so even a retried raise dedupes.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from typing import Callable, Sequence

from hub.core.model import Alarm
from hub.core.schedule import BranchState, Override, on_duty
from hub.config.site import Site
from hub.store.alarms import Store

log = logging.getLogger("haven.hub")

MISSED_NAMESPACE = uuid.UUID("6f0e5c4e-3b7a-4c1d-9d55-0f6c1a2b3c4d")
#: The role of the people whose being on duty lets check-ins run at a branch.
STAFF_ROLE = "staff"


def someone_on_duty(site: Site, branch_id: str, now_ms: int,
                    overrides: Sequence[Override]) -> bool:
    """Whether a ``staff`` contact of the branch is on duty at ``now_ms`` (Unix ms), by
    their shifts and the ``overrides`` in force (a contact without shifts always is). Pure."""
    now = datetime.fromtimestamp(now_ms / 1000, timezone.utc)
    return any(on_duty(c.phone, c.shifts, branch_id, now, overrides)
               for c in site.contacts if branch_id in c.branches and STAFF_ROLE in c.roles)


class CheckinScheduler:
    """Call :meth:`tick` every few seconds from each hub worker."""

    def __init__(self, site: Site, store: Store, *,
                 branch_state: Callable[[str, int], BranchState],
                 raise_alarm: Callable[[Alarm], None]):
        self.site, self.store = site, store
        self.branch_state, self.raise_alarm = branch_state, raise_alarm

    def answered(self, device_id: str, now_ms: int) -> None:
        """The wearer pressed in answer to a request (hub clock, Unix ms). (An alarm or a
        cancel answers through ``store.devices.heard``.)"""
        self.store.devices.answer_checkin(device_id, now_ms)

    def tick(self, now_ms: int) -> None:
        for branch in self.site.branches.values():
            wearables = [d for d in self.site.devices.values()
                         if d.branch_id == branch.id and d.type == "wearable"]
            if not wearables:
                continue
            asking = (self.branch_state(branch.id, now_ms) is BranchState.LONE_WORKER
                      and someone_on_duty(self.site, branch.id, now_ms,
                                          self.store.branches.overrides(branch.id, now_ms)))
            for device in wearables:  # a request made is followed through, asking or not
                result = self.store.devices.checkin_tick(
                    device.id, now_ms, int(branch.checkin_every_s * 1000),
                    int(branch.checkin_grace_s * 1000), asking)
                if result is None:
                    continue
                what, requested = result
                if what == "request":
                    log.info("check-in requested from %s (lone worker at %s)", device.id,
                             branch.id)
                    self.store.devices.queue_device_command(device.id, "checkin_request")
                else:
                    log.warning("%s missed its check-in requested at %d: raising an alarm",
                                device.id, requested)
                    self.raise_alarm(Alarm(
                        id=str(uuid.uuid5(MISSED_NAMESPACE, f"{device.id}:{requested}")),
                        kind="missed_checkin", device=device.id, branch=branch.id,
                        room=device.room_id, pressed_at_ms=now_ms, received_at_ms=now_ms))
