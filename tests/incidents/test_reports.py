"""Drill reports, readiness flags and the reports page, from scripted alarms."""

from __future__ import annotations

import pytest

from dashboard import create_app
from hub.incidents.reports import drill_reports, readiness
from hub.incidents.store import IncidentStore
from tests.dashboard_login import logged_in_client
from tests.incidents_kit import T0, daily_test_press, scripted_alarm

DAY_MS = 86_400_000
DANA, DESK, SAM = ("Dana Ortiz", "+12065550102"), ("Main circulation desk", "+12065550101"), \
    ("Sam Lee", "+12065550104")


def test_drill_report_numbers_match_a_scripted_drill(fake_store, sample_site):
    # A drill at main: two buttons pressed 10 min apart; the desk acknowledges the first
    # after 42 s, Dana the second after 18 s; the security desk is paged and never answers.
    security = ("Security desk", "+12065550103")
    scripted_alarm(fake_store, "d1", at_ms=T0, drill=True, device="main-circ-01",
                   notified=(DESK, security), ack_after_s=42, ack_by="Main circulation desk")
    scripted_alarm(fake_store, "d2", at_ms=T0 + 600_000, drill=True, device="main-ref-01",
                   room="reference", notified=(DANA, security), ack_after_s=18,
                   ack_by="Dana Ortiz")
    # a later drill at main (next day) and one at westside nobody acknowledged
    scripted_alarm(fake_store, "d3", at_ms=T0 + DAY_MS, drill=True, device="main-safe-01",
                   room="safe-room", notified=(DANA,), ack_after_s=75)
    scripted_alarm(fake_store, "w1", at_ms=T0 + 3600_000, drill=True, branch="westside",
                   room="front-desk", device="west-front-01", notified=(SAM,),
                   ack_after_s=None)
    scripted_alarm(fake_store, "real", at_ms=T0 + 300_000)  # not a drill: left out
    store = IncidentStore(fake_store, sample_site)
    store.sync("test")
    reports = drill_reports(sample_site, store.between())
    assert [(r.branch, r.alarms) for r in reports] == [
        ("main", ("d3",)), ("westside", ("w1",)), ("main", ("d1", "d2"))]
    first = reports[2]
    assert first.started_ms == T0 and first.ended_ms == T0 + 600_000 + 300_000
    assert first.notified == ("Main circulation desk", "Security desk", "Dana Ortiz")
    assert first.acknowledged == ("Main circulation desk", "Dana Ortiz")
    assert first.first_ack_ms == 18_000
    assert first.never_acknowledged == ("Security desk",)
    assert first.devices_never_confirmed == ("main-child-01", "main-work-01", "main-safe-01")
    west = reports[1]
    assert west.first_ack_ms is None and west.acknowledged == ()
    assert west.never_acknowledged == ("Sam Lee",)
    assert west.devices_never_confirmed == ("west-safe-01",)
    assert store.last_drills() == {"main": T0 + DAY_MS, "westside": T0 + 3600_000}


def test_readiness_flags_overdue_drills_and_stale_test_presses(fake_store, sample_site):
    scripted_alarm(fake_store, "d1", at_ms=T0, drill=True)
    scripted_alarm(fake_store, "w1", at_ms=T0, drill=True, branch="westside", room="front-desk",
                   device="west-front-01", notified=(SAM,))
    for n, device in enumerate(sample_site.devices):
        if device != "main-work-01":
            daily_test_press(fake_store, f"t{n}", device, T0 + 70 * DAY_MS)
    store = IncidentStore(fake_store, sample_site)
    store.sync("test")
    now = T0 + 71 * DAY_MS
    ready = readiness(sample_site, store.last_drills(), store.test_presses(), now)
    # westside drills every 60 days, main every 90
    assert ready.drill_overdue == {"westside": T0}
    assert ready.stale_devices == {"main-work-01": None}
    later = readiness(sample_site, store.last_drills(), store.test_presses(), now + 2 * DAY_MS)
    assert set(later.stale_devices) == set(sample_site.devices)
    assert later.branch_flag("westside") and not later.branch_flag("main")
    assert set(store.test_presses()) == set(sample_site.devices) - {"main-work-01"}
    assert [i.id for i in store.between()] == ["w1", "d1"] or \
        {i.id for i in store.between()} == {"w1", "d1"}  # test presses are no incidents


@pytest.fixture
def operator(sample_site, fake_store):
    return logged_in_client(create_app(sample_site, fake_store), fake_store, "olive", "operator")


def test_the_reports_page_renders_for_an_empty_period(operator, fake_store):
    fake_store.r.set("haven:installed_ms", T0)  # installed long ago: never drilled is due
    page = operator.get("/reports?since=2020-01-01&until=2020-12-31")
    assert page.status_code == 200, page.text
    text = page.text
    assert text.count("<svg") == 4 and "No data in this period" in text
    assert "No alarm acknowledged in this period" in text and "No drill in this period" in text
    assert "Drill due at Main Library: last drill none yet" in text and "⚠" not in text
    assert "<script" not in text and "http://" not in text.split("<body", 1)[1].replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # nothing from a CDN


def test_the_reports_page_renders_a_busy_period(operator, fake_store):
    for n in range(60):
        scripted_alarm(fake_store, f"a{n}", at_ms=T0 - n * DAY_MS // 2,
                       kind=("emergency", "assist", "welfare")[n % 3],
                       ack_after_s=(10, 25, 50, 90, 400, None)[n % 6])
    scripted_alarm(fake_store, "d1", at_ms=T0, drill=True)
    page = operator.get("/reports?since=2024-01-01&until=2024-03-31")
    assert page.status_code == 200
    text = page.text
    # 60 alarms, 10 never acknowledged; 50 acknowledged: 20 within 30 s, 30 within 60 s
    assert "50 alarms acknowledged: 40% within 30 s, 60% within 60 s; 10 closed without" in text
    assert "60 alarms at Main Library from 2024-01 to 2024-03 (drills not counted)." in text
    assert "<th scope=\"row\">2024-02</th>" in text
    assert text.count("<rect") > 10 and "Drills per branch over the last year" in text


def test_alarms_are_counted_in_the_month_of_their_branchs_local_time(fake_store, sample_site):
    """Issue 20: 2024-03-01 05:00 UTC is still February in Seattle."""
    from hub.incidents.reports import alarms_per_month
    march_utc = 1_709_269_200_000  # 2024-03-01T05:00:00Z = 2024-02-29 21:00 PST
    scripted_alarm(fake_store, "late-feb", at_ms=march_utc)
    incidents = IncidentStore(fake_store, sample_site)
    incidents.sync("test")
    counted = alarms_per_month(incidents.between(march_utc - 1, march_utc + 1),
                               {"main": sample_site.branches["main"].timezone})
    assert {m: dict(k) for m, k in counted["main"].items()} == {"2024-02": {"emergency": 1}}


def test_the_incident_list_says_times_in_each_branchs_zone(operator, fake_store):
    scripted_alarm(fake_store, "e1")
    page = operator.get("/incidents").text
    assert "2024-03-15 05:00:00 PDT" in page and "Times are each branch" in page
    assert "12:00:00 UTC" not in page


def test_a_fresh_install_has_a_grace_period_before_anything_is_due(fake_store, sample_site,
                                                                   operator):
    """Issue 20: a new install shouted "drill overdue · 5 devices missing the daily test
    press" everywhere. Nothing is due until a full interval after install."""
    page = operator.get("/reports").text  # the first look is the install: nothing due yet
    assert "No drill or test press is due." in page and "due at" not in page
    fake_store.r.delete("haven:installed_ms")
    store = IncidentStore(fake_store, sample_site)
    installed = store.installed_ms(T0)
    assert installed == T0 and store.installed_ms(T0 + DAY_MS) == T0  # kept
    fresh = readiness(sample_site, {}, {}, T0 + 3600_000, since_ms=installed)
    assert fresh.drill_overdue == {} and fresh.stale_devices == {}
    later = readiness(sample_site, {}, {}, T0 + 61 * DAY_MS, since_ms=installed)
    assert set(later.drill_overdue) == {"westside"}  # every 60 days; main every 90
    assert set(later.stale_devices) == set(sample_site.devices)


def test_the_board_does_not_shout_readiness(operator, fake_store, sample_site):
    """Said once, on the reports page IT reads; never on the operators' board."""
    board_js = operator.get("/static/board.js").text
    assert "missing the daily test press" not in board_js and "drill overdue" not in board_js
