"""Plan links: a capability URL to one alarm's floor plan, for police and responders.

A responder's text may end with ``Plan: https://haven.example.org/p/<token>``; the page
there (dashboard.plans) shows, without a login, only that alarm's kind, branch and room
lit on its floor's plan, and the branch's occupied safe rooms. It answers 410 once the
alarm is resolved or cancelled, and 404 for a token it did not sign or an alarm no longer
stored, so a link forwarded later shows nothing.

The token is the alarm id and an HMAC-SHA256 (stdlib :mod:`hmac`) of it under a secret
the hub and the dashboard share: nothing is stored, and a token names one alarm only.
Nothing else rides in it (no branch, no time): what the page may show is looked up from
the alarm at each request.

Settings (hub.config.planlinks; both or neither; no links when unset)::

    HAVEN_PLAN_LINK_URL     the base URL responders open, e.g. https://haven.example.org
                            (a proxy may expose only /p/ to the internet)
    HAVEN_PLAN_LINK_SECRET  32+ characters, the same for every hub worker and dashboard;
                            make one with: python3 -c 'import secrets; print(secrets.token_hex(32))'
                            Changing it ends every link already sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.core.model import Alarm
    from hub.core.site import Site

#: What the MAC is bound to besides the alarm id: a token for another use of the same
#: secret can never open a plan.
PURPOSE = b"haven plan view v1\0"
MIN_SECRET_CHARS = 32
#: The MAC's length in base64url characters (22 = 132 bits).
MAC_CHARS = 22
_ALARM_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")


@dataclass(frozen=True)
class PlanLinks:
    """Makes and checks plan-link tokens. ``base_url`` has no trailing slash."""

    base_url: str
    secret: str = field(repr=False)

    def _mac(self, alarm_id: str) -> str:
        digest = hmac.new(self.secret.encode(), PURPOSE + alarm_id.encode(),
                          hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode()[:MAC_CHARS]

    def token(self, alarm_id: str) -> str:
        """``<alarm id>.<mac>``: opens the plan of this alarm only."""
        if not _ALARM_ID_RE.match(alarm_id):
            raise ValueError(f"alarm id {alarm_id!r} cannot go in a plan link")
        return f"{alarm_id}.{self._mac(alarm_id)}"

    def url(self, alarm_id: str) -> str:
        return f"{self.base_url}/p/{self.token(alarm_id)}"

    def alarm_id(self, token: str) -> str | None:
        """The alarm a token opens, or ``None`` when this secret did not sign it."""
        alarm_id, dot, mac = token.rpartition(".")
        if not dot or not _ALARM_ID_RE.match(alarm_id) or len(mac) != MAC_CHARS:
            return None
        return alarm_id if hmac.compare_digest(mac, self._mac(alarm_id)) else None


def plan_url(links: PlanLinks | None, site: "Site", alarm: "Alarm") -> str | None:
    """The plan link for ``alarm``'s texts to responders: ``None`` without plan links or
    when its room is on no floor plan (a link to nothing would waste a segment)."""
    if links is None:
        return None
    branch = site.branches.get(alarm.branch)
    if branch is None or branch.floor_of(alarm.room) is None:
        return None
    return links.url(alarm.id)
