"""Devices: every button of the site config and how it is doing; a ``locate`` command.

Routes::

    GET  /devices                     every device (anyone logged in)
    POST /devices/<id>/locate         admins: the device blinks fast (and chirps) for 10 s, so
                                      someone can find it; a hub worker sends the command

What a row shows comes from two places the hub writes:

- ``<prefix>:device:<id>`` (hash, from the device's status and events): ``state``
  online/offline and ``since_ms`` (the device's clock), ``firmware``, and from
  heartbeats ``heartbeat_ms`` (hub clock), ``battery_pct``, ``wifi_dbm``, ``outbox``;
  from self-tests ``selftest_ms``, ``selftest_ok``, ``selftest_detail``; from the daily
  test press ``test_ms`` (hub clock).
- ``<prefix>:troubles:<id>`` (set, from :mod:`hub.engine.supervision`): offline, never_seen,
  low_battery, outbox_backlog, selftest_failed. A device the supervisor finds silent
  is shown offline even if its last status said online (its Last Will may be lost).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, url_for

from hub.config.site import Device, Site
from hub.store.alarms import Store

from .auth import admin_required
from .context import dashboard_context

log = logging.getLogger(__name__)

bp = Blueprint("devices", __name__, url_prefix="/devices")

TROUBLE_LABELS = {
    "offline": "offline", "never_seen": "never seen", "low_battery": "low battery",
    "outbox_backlog": "alarms stuck in its outbox", "selftest_failed": "self-test failed",
}


@dataclass(frozen=True)
class DeviceView:
    """One device as the page shows it (numbers stay text: a missing reading is ``""``)."""

    device: Device
    branch: str
    room: str
    timezone: str
    presence: str            # online | offline | never seen
    since_ms: str
    heartbeat_ms: str
    battery_pct: str
    wifi_dbm: str
    firmware: str
    outbox: str
    selftest_ms: str
    selftest_ok: str
    selftest_detail: str
    troubles: tuple[str, ...]
    test_ms: str = ""        # the last daily test press (hub clock)


def device_view(site: Site, device: Device, record: dict[str, str],
                troubles: set[str]) -> DeviceView:
    """A device's row from its hash and trouble set: pure."""
    if not record or "never_seen" in troubles:
        presence = "never seen" if not record.get("state") else "offline"
    elif "offline" in troubles or record.get("state") == "offline":
        presence = "offline"
    else:
        presence = record.get("state") or "unknown"
    branch = site.branches[device.branch_id]
    room = branch.room(device.room_id)
    return DeviceView(
        device, branch.name, room.name if room else device.room_id, branch.timezone,
        presence, record.get("since_ms", ""), record.get("heartbeat_ms", ""),
        record.get("battery_pct", ""), record.get("wifi_dbm", ""), record.get("firmware", ""),
        record.get("outbox", ""), record.get("selftest_ms", ""), record.get("selftest_ok", ""),
        record.get("selftest_detail", ""),
        tuple(TROUBLE_LABELS.get(t, t) for t in sorted(troubles)), record.get("test_ms", ""))


def device_views(site: Site, store: Store) -> list[DeviceView]:
    """Every device of the site, in config order, read in one round trip."""
    read = store.troubles.read(list(site.devices))  # (status hash, outbox run, troubles)
    return [device_view(site, device, record, set(troubles))
            for device, (record, _, troubles) in zip(site.devices.values(), read)]


@bp.get("")
def index() -> Any:
    ctx = dashboard_context()
    return render_template("devices.html", views=device_views(ctx.site, ctx.store))


@bp.post("/<device_id>/locate")
@admin_required
def locate(device_id: str) -> Any:
    ctx = dashboard_context()
    if device_id not in ctx.site.devices:
        abort(404, description=f"No device {device_id!r} in the site config.")
    ctx.store.devices.queue_device_command(device_id, "locate")
    log.info("locate %s by %s", device_id, g.user.name)
    flash(f"Locate sent to {device_id}: for 10 s it blinks fast (and chirps, if it has a "
          "buzzer). An offline device gets it when it reconnects, if the hub still holds it.",
          "info")
    return redirect(url_for("devices.index"), 303)
