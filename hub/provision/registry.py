"""``pki/issued.json``: every certificate the site CA issued, and which are revoked.

The CRL is rebuilt from it, so it is the source of truth for revocation::

    {"identities": {"main-circ-01": {"role": "device", "serial": "4f2a...",
                                     "not_after": "2035-05-01T10:00:00+00:00",
                                     "revoked": [{"serial": "...", "at": "..."}]}}}

``revoked`` keeps every earlier certificate of that identity (a device id may be
provisioned again after a revoke; the old certificate stays revoked).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path

from hub.provision import ProvisionError


@dataclass
class Identity:
    role: str                      # "device", "hub" or "server"
    serial: int | None             # the live certificate, None once revoked
    not_after: str | None
    revoked: list[dict[str, str]] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.serial is not None


@dataclass
class Registry:
    identities: dict[str, Identity]

    @classmethod
    def load(cls, path: Path) -> "Registry":
        if not path.exists():
            return cls({})
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))["identities"]
            return cls({name: Identity(v["role"], int(v["serial"], 16) if v["serial"] else None,
                                       v.get("not_after"), list(v.get("revoked", [])))
                        for name, v in raw.items()})
        except (ValueError, KeyError, TypeError) as exc:
            raise ProvisionError(f"{path}: cannot be read ({exc!r}); restore it from a backup "
                                 "(it lists every certificate issued)") from None

    def to_json(self) -> str:
        return json.dumps({"identities": {
            name: {"role": i.role, "serial": f"{i.serial:x}" if i.serial else None,
                   "not_after": i.not_after, "revoked": i.revoked}
            for name, i in sorted(self.identities.items())}}, indent=2) + "\n"

    def add(self, name: str, role: str, serial: int, not_after: dt.datetime) -> None:
        old = self.identities.get(name)
        self.identities[name] = Identity(role, serial, not_after.isoformat(),
                                         old.revoked if old else [])

    def revoke(self, name: str, now: dt.datetime) -> None:
        ident = self.identities[name]
        if ident.serial is not None:
            ident.revoked.append({"serial": f"{ident.serial:x}", "at": now.isoformat()})
            ident.serial, ident.not_after = None, None

    def revoked_serials(self) -> dict[int, dt.datetime]:
        return {int(r["serial"], 16): dt.datetime.fromisoformat(r["at"])
                for ident in self.identities.values() for r in ident.revoked}

    def active(self, role: str) -> list[str]:
        return sorted(n for n, i in self.identities.items() if i.role == role and i.active)
