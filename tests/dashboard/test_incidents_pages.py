"""Incident pages, filters, exports and privacy (Flask test client, fakeredis)."""

from __future__ import annotations

import csv
import html
import io
import json
import re

import pytest

from hub.incidents.store import IncidentStore
from tests.incidents_kit import T0, scripted_alarm

DAY_MS = 86_400_000
SECRET = "Jordan Q. Public, about 40, red coat"


@pytest.fixture
def scripted(fake_store, sample_site):
    """Four incidents: a real emergency at main with personal data, an assist at westside,
    a drill at main, a false alarm at main (and a test press, not an incident)."""
    scripted_alarm(fake_store, "emg1", at_ms=T0)
    scripted_alarm(fake_store, "ast1", at_ms=T0 + 40 * DAY_MS, kind="assist", branch="westside",
                   room="front-desk", device="west-front-01",
                   notified=(("Sam Lee", "+12065550104"),), ack_by="Sam Lee")
    scripted_alarm(fake_store, "drl1", at_ms=T0 + 2 * DAY_MS, drill=True)
    scripted_alarm(fake_store, "fls1", at_ms=T0 + 3 * DAY_MS, close="cancel", ack_after_s=None)
    IncidentStore(fake_store, sample_site).save_details("emg1", description="shouting",
                                                        people=SECRET)


def test_the_list_filters_by_branch_kind_period_drill_and_report(operator, scripted):
    def ids(query: str) -> list[str]:
        page = operator.get("/incidents" + query)
        assert page.status_code == 200, page.text
        table = page.text.split("<table", 1)[1]  # the list, not the overdue box above it
        return [i for i in ("emg1", "ast1", "drl1", "fls1") if f"/incidents/{i}\"" in table]

    assert ids("") == ["emg1", "ast1", "drl1", "fls1"]
    assert ids("?branch=westside") == ["ast1"]
    assert ids("?kind=emergency") == ["emg1", "drl1", "fls1"]
    assert ids("?since=2024-03-16&until=2024-03-18") == ["drl1", "fls1"]
    assert ids("?drill=yes") == ["drl1"]
    assert ids("?drill=no&branch=main") == ["emg1", "fls1"]
    assert ids("?status=overdue") == ["emg1", "ast1"]
    assert ids("?status=not_needed") == ["drl1", "fls1"]
    page = operator.get("/incidents")
    assert "Overdue reports (2)" in page.text


@pytest.mark.parametrize("query, field", [("?branch=east", "branch: unknown branch 'east'"),
                                          ("?since=15/03/2024", "since: '15/03/2024' is not a"),
                                          ("?drill=maybe", "drill: yes, no"),
                                          ("?status=late", "status: one of")])
def test_a_bad_filter_is_named(operator, scripted, query, field):
    page = operator.get("/incidents" + query)
    assert page.status_code == 400 and field in html.unescape(page.text)


def test_csv_opens_in_a_spreadsheet_with_the_right_columns(admin, scripted):
    response = admin.get("/incidents/export.csv?branch=main&drill=no")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    raw = response.data.decode("utf-8")
    assert raw.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(raw[1:])))
    assert [r["id"] for r in rows] == ["fls1", "emg1"]
    emg = rows[1]
    assert emg["received_at"] == "2024-03-15T12:00:00Z"
    assert emg["acknowledged_at"] == "2024-03-15T12:00:20Z" and emg["first_ack_s"] == "20.0"
    assert (emg["kind"], emg["branch"], emg["state"], emg["drill"]) == \
        ("emergency", "main", "resolved", "no")
    assert emg["report_status"] == "overdue" and emg["notified"] == "Dana Ortiz"
    assert emg["people"] == SECRET  # an admin may read personal fields
    assert rows[0]["report_status"] == "not_needed"


def test_json_export_matches_the_filters(admin, scripted):
    doc = json.loads(admin.get("/incidents/export.json?kind=assist").data)
    assert doc["count"] == 1 and doc["filters"] == {"kind": "assist"}
    [item] = doc["incidents"]
    assert item["id"] == "ast1" and item["acknowledged_by"] == "Sam Lee"
    assert item["first_ack_ms"] == 20_000 and doc["personal_fields"] is True


def test_an_operator_never_sees_personal_fields(operator, fake_store, sample_site, scripted):
    page = operator.get("/incidents/emg1")
    assert page.status_code == 200
    assert SECRET not in page.text and "shouting" not in page.text
    assert "personal data your role may not read" in page.text
    for fmt in ("csv", "json"):
        body = operator.get(f"/incidents/export.{fmt}").data.decode()
        assert SECRET not in body and "shouting" not in body
        assert "people" not in body.split("\n", 1)[0] if fmt == "csv" else \
            '"people"' not in body
    # nor can it write them
    assert operator.post("/incidents/emg1/details", data={"people": "X"}).status_code == 403
    assert IncidentStore(fake_store, sample_site).audit_log() == []  # nothing personal shown


def test_every_read_of_personal_fields_is_audited(admin, fake_store, sample_site, scripted):
    page = admin.get("/incidents/emg1")
    assert SECRET in page.text
    admin.get("/incidents/ast1")  # nothing personal in it: nothing to log
    admin.get("/incidents/export.csv")
    log = IncidentStore(fake_store, sample_site).audit_log()
    assert [(e["event"], e["user"], e["role"], e["incidents"], e["where"]) for e in log] == [
        ("export", "ari", "admin", "emg1", "/incidents/export.csv"),
        ("read", "ari", "admin", "emg1", "/incidents/emg1")]


def test_filing_a_report(operator, fake_store, sample_site, scripted):
    bad = operator.post("/incidents/emg1/report", data={"who": "Kim", "police": "perhaps"})
    assert bad.status_code == 400
    for words in ("What happened: required.", "Police involved: choose yes or no."):
        assert words in bad.text
    ok = operator.post("/incidents/emg1/report", data={
        "who": "Kim at circulation", "what_happened": "a customer shouted and threw a chair",
        "actions": "pressed the alarm, moved to the workroom", "police": "yes",
        "police_ref": "SPD 24-1234", "followup": "trespass"})
    assert ok.status_code == 303
    incident = IncidentStore(fake_store, sample_site).get("emg1")
    assert incident.report.police and incident.report.followup == "trespass"
    assert incident.report.filed_by == "olive"
    page = operator.get("/incidents/emg1").text
    assert "SPD 24-1234" in page and "Trespass notice" in page
    assert "Overdue reports (1)" in operator.get("/incidents").text
    assert fake_store.timeline("emg1")[-1]["event"] == "report_filed"


def test_a_report_cannot_be_filed_while_the_alarm_is_active(operator, fake_store):
    scripted_alarm(fake_store, "live1", close=None)
    response = operator.post("/incidents/live1/report", data={"who": "x"})
    assert response.status_code == 409


def test_the_nav_links_to_incidents_and_reports(operator):
    page = operator.get("/incidents").text
    assert re.search(r'href="/incidents"\s+aria-current="page"', page)
    assert 'href="/reports"' in page
