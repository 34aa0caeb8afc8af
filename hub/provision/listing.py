"""``haven provision list``: every device with its room, certificate and presence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hub.provision.commands import Outcome, _site
from hub.provision.files import SiteDir
from hub.provision.registry import Registry

#: A certificate expiring within this many days is flagged "renew soon".
RENEW_WITHIN_DAYS = 90


def list_devices(root: Path, live: dict[str, str] | None = None) -> Outcome:
    """Every device of the site file and every device certificate, with its room and
    state; ``live`` maps device id to its presence (online/offline) when known."""
    site = SiteDir(root)
    current = _site(site)
    reg = Registry.load(site.registry)
    now = dt.datetime.now(dt.timezone.utc)
    rows = [("DEVICE", "BRANCH/ROOM", "TYPE", "CERTIFICATE", "PRESENCE", "HOLDER")]
    ids = list(current.devices) + sorted(n for n, i in reg.identities.items()
                                         if i.role == "device" and n not in current.devices)
    for device_id in ids:
        d = current.devices.get(device_id)
        ident = reg.identities.get(device_id)
        if ident is not None and ident.active:
            until = dt.datetime.fromisoformat(ident.not_after)
            cert = (f"EXPIRED {until:%Y-%m-%d}" if until <= now else
                    f"until {until:%Y-%m-%d}" + (" (renew soon)"
                                                 if until - now < dt.timedelta(days=RENEW_WITHIN_DAYS) else ""))
        elif ident is not None:
            cert = f"revoked {ident.revoked[-1]['at'][:10]}" if ident.revoked else "revoked"
        else:
            cert = "none (not provisioned)"
        rows.append((device_id, f"{d.branch_id}/{d.room_id}" if d else "NOT IN SITE FILE",
                     d.type if d else "-", cert, (live or {}).get(device_id, "unknown"),
                     (d.holder if d else None) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return Outcome(["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                    for r in rows])

