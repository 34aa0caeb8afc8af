"""Privacy (issue 15, item 8): the operator's resolve note is personal data, never texted;
the report's account (what happened, actions taken) is personal data; admins read and
export the read log. Flask test client, fakeredis."""

from __future__ import annotations

import csv
import io
import json

import pytest

from hub.incidents.jobs import IncidentJobs
from hub.incidents.store import IncidentStore
from hub.core.messages import all_clear_text
from hub.core.model import Alarm
from tests.incidents_kit import RecordingNotifier

NOTE = "Patron J. Doe (red coat) threatened Kim; escorted out"
ACCOUNT = "A man in a red coat shouted at Kim about his card"
ACTIONS = "Kim retreated; Sam called police; officer Reyes removed him"
DAY_MS = 86_400_000


def resolved_by_operator(operator, store, alarm_id="p1") -> Alarm:
    """An emergency raised and resolved from the alarm page, with a note."""
    store.raise_alarm(Alarm(id=alarm_id, kind="emergency", device="main-circ-01",
                            branch="main", room="circulation", pressed_at_ms=1_000,
                            received_at_ms=1_050), escalate=True)
    done = operator.post(f"/alarms/{alarm_id}/resolve",
                         data={"outcome": "police_attended", "note": NOTE})
    assert done.status_code == 303
    return store.get_alarm(alarm_id)


def test_the_resolve_note_is_not_texted_nor_kept_with_the_alarm(operator, fake_store,
                                                                sample_site):
    alarm = resolved_by_operator(operator, fake_store)
    text = all_clear_text(alarm, sample_site)
    assert text == ("HAVEN all clear: EMERGENCY at Main Library, Circulation Desk resolved "
                    "by olive: Police attended. No need to come.")
    stored = json.dumps([fake_store.r.hgetall(f"haven:alarm:{alarm.id}"),
                         fake_store.timeline(alarm.id)])
    assert "Doe" not in stored                    # not in the alarm, nor its timeline
    incident = IncidentStore(fake_store, sample_site).get(alarm.id)
    assert incident.resolve_note == NOTE           # kept in the incident only


def test_an_old_style_reason_with_a_note_still_texts_the_outcome_only(sample_site):
    alarm = Alarm(id="old1", kind="emergency", device="main-circ-01", branch="main",
                  room="circulation", pressed_at_ms=1, received_at_ms=2, state="resolved",
                  closed_by="dana", reason=f"Police attended: {NOTE}")
    assert "Doe" not in all_clear_text(alarm, sample_site)
    cancelled = Alarm(**{**vars(alarm), "state": "cancelled",
                         "reason": "false alarm: Kim leaned on it"})
    assert all_clear_text(cancelled, sample_site).endswith(
        "cancelled by dana: false alarm. No need to come.")


def test_the_note_is_read_by_allowed_roles_only_and_purged_with_the_rest(
        operator, admin, fake_store, sample_site):
    alarm = resolved_by_operator(operator, fake_store)
    assert NOTE not in operator.get(f"/incidents/{alarm.id}").text
    assert NOTE not in operator.get("/incidents/export.csv").data.decode()
    assert NOTE in admin.get(f"/incidents/{alarm.id}").text
    assert NOTE in admin.get("/incidents/export.csv").data.decode()
    incidents = IncidentStore(fake_store, sample_site)
    assert [e["event"] for e in incidents.audit_log()] == ["export", "read"]
    now = [alarm.received_at_ms + 366 * DAY_MS]
    jobs = IncidentJobs(sample_site, incidents, RecordingNotifier(), consumer="hub-1",
                        clock=lambda: now[0] / 1000)
    assert jobs.tick().purged == 1
    assert incidents.get(alarm.id).resolve_note == ""


def file_report(client, alarm_id):
    return client.post(f"/incidents/{alarm_id}/report", data={
        "who": "Kim", "what_happened": ACCOUNT, "actions": ACTIONS, "police": "yes",
        "police_ref": "24-1234", "followup": "none"})


def test_what_happened_and_actions_are_personal_data(operator, admin, fake_store,
                                                     sample_site):
    alarm = resolved_by_operator(operator, fake_store)
    assert file_report(operator, alarm.id).status_code == 303   # the reporter writes it
    page = operator.get(f"/incidents/{alarm.id}").text
    assert ACCOUNT not in page and ACTIONS not in page
    assert "personal data your role may not read" in page and "24-1234" in page
    for fmt in ("csv", "json"):
        body = operator.get(f"/incidents/export.{fmt}").data.decode()
        assert ACCOUNT not in body and ACTIONS not in body and "24-1234" in body
    header = operator.get("/incidents/export.csv").data.decode().split("\r\n", 1)[0]
    assert "report_what_happened" not in header and "report_actions" not in header
    # an operator cannot overwrite an account it may not read
    assert file_report(operator, alarm.id).status_code == 409
    incidents = IncidentStore(fake_store, sample_site)
    assert incidents.audit_log() == []                            # nothing personal shown
    rows = list(csv.DictReader(io.StringIO(
        admin.get("/incidents/export.csv").data.decode()[1:])))
    assert (rows[0]["report_what_happened"], rows[0]["report_actions"]) == (ACCOUNT, ACTIONS)
    assert ACCOUNT in admin.get(f"/incidents/{alarm.id}").text
    assert [e["event"] for e in incidents.audit_log()] == ["read", "export"]
    now = [alarm.received_at_ms + 366 * DAY_MS]
    IncidentJobs(sample_site, incidents, RecordingNotifier(), consumer="hub-1",
                 clock=lambda: now[0] / 1000).tick()
    report = incidents.get(alarm.id).report
    assert (report.what_happened, report.actions, report.police_ref) == ("", "", "24-1234")


def test_only_admins_see_and_export_the_read_log(operator, admin, fake_store, sample_site):
    alarm = resolved_by_operator(operator, fake_store)
    assert operator.get("/privacy/log").status_code == 403
    assert operator.get("/privacy/log.csv").status_code == 403
    assert "Read log" not in operator.get("/incidents").text
    admin.get(f"/incidents/{alarm.id}")                 # a read of the note: logged
    page = admin.get("/privacy/log")
    assert page.status_code == 200 and "Read log" in page.text
    assert f"/incidents/{alarm.id}</td>" in page.text and ">ari</td>" in page.text
    response = admin.get("/privacy/log.csv")
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.data.decode()[1:])))
    assert [(r["event"], r["user"], r["role"], r["incidents"], r["where"]) for r in rows] == [
        ("read", "ari", "admin", alarm.id, f"/incidents/{alarm.id}")]
    assert rows[0]["at"].endswith("Z")
    # exporting the log is itself logged
    assert IncidentStore(fake_store, sample_site).audit_log(1)[0]["event"] == "log_export"
    assert admin.get("/privacy/log?count=0").status_code == 400
