"""[incidents] and [privacy] in the site config: values, defaults and FILE:LINE errors."""

from __future__ import annotations

import pytest

from dashboard.users import ROLES
from hub.errors import ConfigError
from hub.config.site import parse_site
from hub.config.incidents import DASHBOARD_ROLES, IncidentSettings
from tests.conftest import PLANS_DIR, SAMPLE_SITE

SAMPLE = SAMPLE_SITE.read_text()


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_site(text, "site.toml", PLANS_DIR)
    return [str(p) for p in err.value.problems]


def line_of(text: str, needle: str) -> int:
    return text.splitlines().index(next(l for l in text.splitlines() if needle in l)) + 1


def test_the_sample_sets_reports_drills_and_privacy(sample_site):
    s = sample_site.incidents
    assert s.supervisor_roles == ("supervisor", "manager")
    assert s.report_overdue_ms == 24 * 3_600_000 and s.reminder_every_ms == 24 * 3_600_000
    assert s.drill_every_ms("westside") == 60 * 86_400_000
    assert s.drill_every_ms("main") == 90 * 86_400_000
    assert s.test_press_max_age_ms == 2 * 86_400_000
    assert s.emails == {"+12065550102": "dana.ortiz@example.org"}
    assert s.personal_roles == ("admin",) and s.retention_ms == 365 * 86_400_000
    assert s.may_read_personal("admin") and not s.may_read_personal("operator")
    supervisors = {c.name for c in sample_site.contacts if "supervisor" in c.roles}
    assert supervisors == {"Dana Ortiz (branch manager)"}


def test_without_the_sections_the_defaults_apply():
    text = SAMPLE.split("# --- Incidents")[0] + "# ---" + SAMPLE.split("# --- Branches")[1]
    assert parse_site(text, base_dir=PLANS_DIR).incidents == IncidentSettings()


def test_dashboard_roles_are_the_dashboards():
    assert DASHBOARD_ROLES == ROLES


def test_mistakes_are_named_with_file_line_and_fix():
    text = (SAMPLE.replace("report_overdue_h = 24", "report_overdue_h = 0")
            .replace("{ westside = 60 }", "{ eastside = 60 }")
            .replace('"dana.ortiz@example.org"', '"dana at example"')
            .replace('personal_roles = ["admin"]', 'personal_roles = ["boss"]'))
    found = problems(text)
    assert found == [
        f"site.toml:{line_of(text, 'report_overdue_h = 0')}: incidents.report_overdue_h: "
        "must be 0.1 to 1440 hours",
        f"site.toml:{line_of(text, 'eastside')}: incidents.branch_drill_every_days.eastside: "
        "unknown branch 'eastside'; known: main, westside",
        f"site.toml:{line_of(text, 'dana at example')}: incidents.emails.+12065550102: "
        "'dana at example' is not an e-mail address, e.g. \"dana@example.org\"",
        f"site.toml:{line_of(text, 'personal_roles =')}: privacy.personal_roles: 'boss' not "
        "valid: dashboard roles allowed to read personal fields: operator, admin",
    ]


def test_a_branch_without_a_supervisor_is_an_error():
    text = SAMPLE.replace('supervisor_roles = ["supervisor", "manager"]',
                          'supervisor_roles = ["supervisor"]')
    assert problems(text) == [
        f"site.toml:{line_of(text, 'supervisor_roles =')}: incidents.supervisor_roles: no "
        "contact of branch 'westside' holds any of the roles supervisor: a resolved alarm "
        "there would tell no supervisor; add the role to that branch's manager [[contact]]"]


def test_unknown_fields_are_refused():
    text = SAMPLE.replace("retention_days = 365", "retention_days = 365\nkeep_forever = true")
    assert problems(text) == [
        f"site.toml:{line_of(text, 'keep_forever')}: privacy.keep_forever: unknown field; "
        "expected one of personal_roles, retention_days"]
