"""``HAVEN_PLAN_LINK_URL`` and ``HAVEN_PLAN_LINK_SECRET``: links to an alarm's floor plan in
responders' texts (:mod:`hub.core.planlink`), read from the environment once, with
:mod:`hub.config.settings`."""

from __future__ import annotations

import os
import re
from typing import Mapping

from hub.core.planlink import MIN_SECRET_CHARS, PlanLinks
from hub.errors import ConfigError, Problem


def plan_links_from_env(env: Mapping[str, str] | None = None) -> PlanLinks | None:
    """``HAVEN_PLAN_LINK_URL`` and ``HAVEN_PLAN_LINK_SECRET`` as :class:`PlanLinks`;
    ``None`` when neither is set; a :class:`ConfigError` naming the variable otherwise."""
    env = os.environ if env is None else env
    url = (env.get("HAVEN_PLAN_LINK_URL") or "").strip().rstrip("/")
    secret = (env.get("HAVEN_PLAN_LINK_SECRET") or "").strip()
    if not url and not secret:
        return None
    problems = []
    if not url:
        problems.append(Problem("environment", None, "HAVEN_PLAN_LINK_URL",
                                "missing: the base URL responders open (e.g. "
                                "https://haven.example.org), or unset HAVEN_PLAN_LINK_SECRET"))
    elif not re.match(r"^https?://[^/\s]+(/\S*)?\Z", url):
        problems.append(Problem("environment", None, "HAVEN_PLAN_LINK_URL",
                                f"{url!r} must be a URL such as https://haven.example.org"))
    if not secret:
        problems.append(Problem("environment", None, "HAVEN_PLAN_LINK_SECRET",
                                "missing: the same 32+ character secret for the hub and the "
                                "dashboard, or unset HAVEN_PLAN_LINK_URL"))
    elif len(secret) < MIN_SECRET_CHARS:
        problems.append(Problem("environment", None, "HAVEN_PLAN_LINK_SECRET",
                                f"is {len(secret)} characters; use at least "
                                f"{MIN_SECRET_CHARS}: python3 -c 'import secrets; "
                                "print(secrets.token_hex(32))'"))
    if problems:
        raise ConfigError(problems)
    return PlanLinks(url, secret)
