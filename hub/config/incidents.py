"""Site config for incidents, reports, drills and privacy: ``[incidents]`` and ``[privacy]``.

Parsed from the raw TOML of the site file by :func:`parse_incidents` (called from
:func:`hub.config.site.parse_site`, with its checker so every mistake is reported as
``FILE:LINE: FIELD: problem`` with the others)::

    [incidents]
    supervisor_roles = ["supervisor"]  # contact roles told when a non-drill alarm is resolved
    report_overdue_h = 24              # a report not filed this long after resolve is overdue
    reminder_every_h = 24              # overdue reports: remind reporter and supervisor this often
    drill_every_days = 90              # a branch with no drill for this long is flagged
    branch_drill_every_days = { westside = 60 }   # per-branch intervals (branch id = days)
    test_press_max_age_days = 2        # a device with no test press for this long is flagged
    emails = { "+12065550102" = "dana@example.org" }  # contact phone -> e-mail for reminders
                                       # (sent by SMTP when HAVEN_SMTP_HOST is set; else SMS)

    [privacy]
    personal_roles = ["admin"]         # dashboard roles that may read personal fields
    retention_days = 365               # personal fields are purged this long after the alarm

Every field is optional; the defaults are those above (``emails`` empty). When
``[incidents]`` is present, every branch must have a contact holding one of the
``supervisor_roles``: otherwise a resolved alarm there would tell no one.
This module imports nothing from :mod:`hub.config.site` (which imports it); the typed
settings it makes (:class:`~hub.core.site.IncidentSettings`) are the site model's.
"""

from __future__ import annotations

import re
from typing import Any

from hub.core.site import IncidentSettings

#: The dashboard's roles (dashboard.users.ROLES; a test keeps the two in step).
DASHBOARD_ROLES = ("operator", "admin")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+\Z")
_ROLE_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")
_E164_RE = re.compile(r"^\+[1-9][0-9]{6,14}\Z")

INCIDENT_FIELDS = ("supervisor_roles", "report_overdue_h", "reminder_every_h",
                   "drill_every_days", "branch_drill_every_days", "test_press_max_age_days",
                   "emails")
PRIVACY_FIELDS = ("personal_roles", "retention_days")


def parse_incidents(check: Any, data: dict, branches: dict, contacts: list) -> IncidentSettings:
    """``[incidents]`` and ``[privacy]`` of the raw site ``data`` as :class:`IncidentSettings`.

    ``check`` is hub.config.site's ``_Checker`` (problems are added to it, defaults used in their
    place); ``branches`` maps branch ids to branches; ``contacts`` are the parsed contacts
    (``.branches``, ``.roles``, ``.phone``) for the supervisor and e-mail checks."""
    values: dict[str, Any] = {}
    raw = check.table(data.get("incidents", {}), ("incidents",), INCIDENT_FIELDS)
    if raw is not None:
        path = ("incidents",)
        roles = check.strings(raw, path, "supervisor_roles", pattern=_ROLE_RE, required=False,
                              hint="contact roles told when an alarm is resolved, e.g. "
                                   "[\"supervisor\"]")
        if "supervisor_roles" in raw and not roles:
            check.add(path + ("supervisor_roles",), "name at least one role, e.g. "
                                                    "[\"supervisor\"]")
        if roles:
            values["supervisor_roles"] = tuple(roles)
        for key, default, low, high, unit in (
                ("report_overdue_h", 24, 0.1, 24 * 60, "hours"),
                ("reminder_every_h", 24, 0.1, 24 * 30, "hours"),
                ("drill_every_days", 90, 1, 3660, "days"),
                ("test_press_max_age_days", 2, 0.5, 365, "days")):
            values[key] = check.number(raw, path, key, default, low, high, unit)
        values["branch_drill_every_days"] = _per_branch(check, raw, branches)
        values["emails"] = _emails(check, raw, contacts)
        if "incidents" in data and not check.problems:
            _check_supervisors(check, values.get("supervisor_roles", ("supervisor",)),
                               branches, contacts)
    raw = check.table(data.get("privacy", {}), ("privacy",), PRIVACY_FIELDS)
    if raw is not None:
        path = ("privacy",)
        hint = f"dashboard roles allowed to read personal fields: {', '.join(DASHBOARD_ROLES)}"
        roles = check.strings(raw, path, "personal_roles",
                              pattern=re.compile(rf"^({'|'.join(DASHBOARD_ROLES)})\Z"),
                              hint=hint, required=False)
        if "personal_roles" in raw:
            values["personal_roles"] = tuple(roles)  # [] is allowed: nobody reads them
        values["retention_days"] = check.number(raw, path, "retention_days", 365, 1, 3660,
                                                "days")
    return IncidentSettings(**values)


def _per_branch(check: Any, raw: dict, branches: dict) -> dict[str, float]:
    path = ("incidents", "branch_drill_every_days")
    table = raw.get("branch_drill_every_days", {})
    if not isinstance(table, dict):
        check.add(path, "must be a table of branch id = days, e.g. { westside = 60 }")
        return {}
    found = {}
    for branch_id, days in table.items():
        if branch_id not in branches:
            check.add(path + (branch_id,), f"unknown branch {branch_id!r}; known: "
                                           f"{', '.join(branches) or 'none'}")
            continue
        found[branch_id] = check.number(table, path, branch_id, 90, 1, 3660, "days")
    return found


def _emails(check: Any, raw: dict, contacts: list) -> dict[str, str]:
    path = ("incidents", "emails")
    table = raw.get("emails", {})
    if not isinstance(table, dict):
        check.add(path, "must be a table of contact phone = e-mail address, e.g. "
                        "{ \"+12065550102\" = \"dana@example.org\" }")
        return {}
    phones = {c.phone for c in contacts}
    found = {}
    for phone, address in table.items():
        if not _E164_RE.match(phone) or phone not in phones:
            check.add(path + (phone,), "must be the E.164 phone of a [[contact]] (the key "
                                       "names whose e-mail address this is)")
            continue
        if not isinstance(address, str) or not EMAIL_RE.match(address):
            check.add(path + (phone,), f"{address!r} is not an e-mail address, e.g. "
                                       "\"dana@example.org\"")
            continue
        found[phone] = address
    return found


def _check_supervisors(check: Any, roles: tuple[str, ...], branches: dict,
                       contacts: list) -> None:
    for branch_id in branches:
        if not any(branch_id in c.branches and set(roles) & c.roles for c in contacts):
            check.add(("incidents", "supervisor_roles"),
                      f"no contact of branch {branch_id!r} holds any of the roles "
                      f"{', '.join(roles)}: a resolved alarm there would tell no supervisor; "
                      "add the role to that branch's manager [[contact]]")
