"""The alarm, branch and device pages and their actions (Flask test client, fakeredis)."""

from __future__ import annotations

import re
import time

import pytest

from dashboard import create_app
from dashboard.alarms import ago, timeline_rows
from hub.core.model import Alarm, AlarmState, Channel, Delivery, PageKey
from hub.config.site import load_site
from tests.conftest import SAMPLE_SITE, write_site
from tests.dashboard_login import logged_in_client


def now_ms() -> int:
    return int(time.time() * 1000)


def raise_alarm(store, id="a1", kind="emergency", branch="main", room="circulation",
                device="main-circ-01") -> Alarm:
    at = now_ms()
    alarm = Alarm(id=id, kind=kind, device=device, branch=branch, room=room,
                  pressed_at_ms=at - 40, received_at_ms=at)
    store.raise_alarm(alarm, escalate=True)
    return alarm


@pytest.fixture
def app(sample_site, fake_store):
    return create_app(sample_site, fake_store)


@pytest.fixture
def operator(app, fake_store):
    return logged_in_client(app, fake_store, "dana", "operator")


@pytest.fixture
def admin(app, fake_store):
    return logged_in_client(app, fake_store, "ari", "admin")


def commands(store) -> list[dict[str, str]]:
    return [fields for _, fields in store.r.xrange(f"{store.prefix}:device-commands")]


# --- the alarm page -------------------------------------------------------------

def test_alarm_page_shows_each_notification_with_its_delivery_status(operator, fake_store):
    raise_alarm(fake_store)
    now = now_ms()
    fake_store.add_timeline("a1", "escalation", at_ms=now, attempt=0, step=1, round=1,
                            branch_state="staffed", notifications=2)
    fake_store.pages.record(PageKey("a1", 0, "+12065550101", Channel.SMS),
                            "Security desk", Delivery.sent("SM1"), now)
    fake_store.pages.record(PageKey("a1", 0, "+12065550102", Channel.CALL),
                            "Dana Ortiz", Delivery.sent("CA1"), now)
    fake_store.add_timeline("a1", "delivery_status", at_ms=now, attempt=0, channel="sms",
                            to="+12065550101", status="delivered", error_code="")
    fake_store.add_timeline("a1", "delivery_status", at_ms=now, attempt=0, channel="call",
                            to="+12065550102", status="no-answer", error_code="")
    fake_store.pages.record(PageKey("a1", 0, "+12065550103", Channel.SMS),
                            "Police", Delivery.failed("invalid number", retryable=False,
                                                      code=21211), now)
    page = operator.get("/alarms/a1")
    assert page.status_code == 200
    text = page.text
    for words in ("EMERGENCY alarm", "Main Library", "Circulation Desk", "Alarm raised",
                  "Call for help", "SMS to Security desk (…0101), 1st call for help",
                  "delivered",
                  "Call to Dana Ortiz (…0102)", "⚠ no-answer",
                  "⚠ not sent: invalid number (code 21211)",
                  ">Acknowledge</button>", ">Resolve</button>", ">Cancel as false alarm</button>",
                  'name="outcome"', 'name="note"', 'name="reason"'):
        assert words in text, words
    assert "+12065550101" not in text  # numbers are masked


def test_timeline_rows_take_the_latest_delivery_status():
    entries = [
        {"id": "5-0", "event": "raised", "at_ms": "5"},
        {"id": "6-0", "event": "late", "delay_ms": "61000"},
        {"id": "7-0", "event": "notified", "at_ms": "7", "step": "1", "channel": "sms",
         "to": "+1555", "contact": "Sam"},
        {"id": "8-0", "event": "delivery_status", "attempt": "1", "channel": "sms",
         "to": "+1555", "status": "sent"},
        {"id": "9-0", "event": "delivery_status", "attempt": "1", "channel": "sms",
         "to": "+1555", "status": "undelivered", "error_code": "30003"},
        {"id": "10-0", "event": "acknowledged", "at_ms": "10", "by": "Sam", "reason": ""},
    ]
    rows = timeline_rows(entries)
    assert [r.event for r in rows] == ["raised", "late", "notified", "delivery_status",
                                       "delivery_status", "acknowledged"]
    assert rows[1].at_ms == 6 and rows[1].detail == "pressed 61 s before it arrived"
    assert (rows[2].status, rows[2].bad) == ("undelivered (error 30003)", True)
    assert (rows[5].label, rows[5].by) == ("Acknowledged", "Sam")


def test_timeline_rows_tell_an_outage_and_its_end_in_plain_words():
    entries = [
        {"id": "7-0", "event": "notify_failed", "at_ms": "7", "step": "0", "channel": "sms",
         "to": "+1555", "contact": "Sam", "error": "API unreachable", "retry_in_ms": "450"},
        {"id": "8-0", "event": "delivery_failed", "at_ms": "8", "attempt": "0", "tried": "2"},
        {"id": "9-0", "event": "paging_resumed", "at_ms": "40008", "after_ms": "40000"},
    ]
    failed, nobody, resumed = timeline_rows(entries)
    assert "trying again every few seconds" in failed.status and failed.bad
    assert "'use the phone'" in nobody.detail
    assert resumed.label == "Pages getting through again"
    assert resumed.detail.startswith("after 40 s in which nobody could be paged")
    assert not resumed.bad


@pytest.mark.parametrize("entry, words", [
    ({"event": "escalation", "attempt": "1", "step": "2", "round": "1",
      "branch_state": "lone_worker", "notifications": "3"},
     "2nd call for help: step 2, round 1 · Lone worker · 3 pages"),
    ({"event": "escalation", "attempt": "0", "step": "1", "round": "1",
      "branch_state": "staffed", "notifications": "1"},
     "1st call for help: step 1, round 1 · Staffed · 1 page"),
    ({"event": "notified", "step": "2000000", "channel": "sms", "to": "+15551234",
      "contact": "Sam"}, "SMS to Sam (…1234), all-clear"),
    ({"event": "notified", "step": "1000002", "channel": "call", "to": "+15551234",
      "contact": "Sam"}, "Call to Sam (…1234), fallback: the 3rd call for help reached nobody"),
    ({"event": "notified", "step": "3000010", "channel": "call", "to": "+15551234",
      "contact": "Sam"}, "call instead of an undelivered text (2nd call for help)"),
    ({"event": "notified", "step": "3000002", "channel": "call", "to": "+15551234",
      "contact": "Sam"}, "call again after no answer, 2nd time (1st call for help)"),
    ({"event": "notified", "step": "4000000", "channel": "sms", "to": "+15551234",
      "contact": "Sam"}, "'someone is responding' text"),
    ({"event": "notified", "step": "5123456", "channel": "sms", "to": "+15551234",
      "contact": "Sam"}, "'staff left the safe room' text"),
    ({"event": "delivery_status", "attempt": "2", "channel": "sms", "to": "+15551234",
      "status": "delivered"}, "SMS to …1234, 3rd call for help"),
    ({"event": "delivery_failed", "attempt": "0", "tried": "2"}, "1st call for help: 2 tried"),
])
def test_the_timeline_names_pages_in_an_operators_words(entry, words):
    [row] = timeline_rows([{"id": "5-0", "at_ms": "5", **entry}])
    assert words in row.detail
    said = f"{row.label} {row.detail}"
    assert "attempt" not in said.lower() and "000" not in said
    assert not {"lone_worker", "staffed", "notification(s)"} & set(said.split(" "))


def test_a_resolve_is_one_timeline_row_with_its_outcome():
    entries = [{"id": "5-0", "event": "raised", "at_ms": "5"},
               {"id": "6-0", "event": "resolved", "at_ms": "6", "by": "dana",
                "reason": "Police attended"},
               {"id": "7-0", "event": "resolution", "at_ms": "7", "by": "dana",
                "outcome": "police_attended"}]
    rows = timeline_rows(entries)
    assert [(r.label, r.detail) for r in rows] == [("Alarm raised", ""),
                                                   ("Resolved", "Police attended")]
    alone = timeline_rows(entries[2:])  # a resolution whose resolve is not in the timeline
    assert [(r.label, r.detail) for r in alone] == [("Resolved", "Police attended")]


def test_acknowledge_then_resolve_from_the_page(operator, fake_store):
    raise_alarm(fake_store)
    ack = operator.post("/alarms/a1/acknowledge")
    assert ack.status_code == 303 and ack.headers["Location"] == "/alarms/a1"
    alarm = fake_store.get_alarm("a1")
    assert (alarm.state, alarm.acknowledged_by) == (AlarmState.ACKNOWLEDGED, "dana")
    assert {"device": "main-circ-01", "cmd": "acknowledged", "alarm_id": "a1"} in commands(
        fake_store)
    page = operator.get("/alarms/a1").text
    assert "Alarm acknowledged by dana." in page and ">Acknowledge</button>" not in page

    again = operator.post("/alarms/a1/acknowledge")  # someone was quicker: said, not hidden
    assert "Not done: dana already acknowledged this alarm at 20" in \
        operator.get(again.headers["Location"]).text

    done = operator.post("/alarms/a1/resolve", data={"outcome": "police_attended",
                                                     "note": "Patron escorted out."})
    assert done.status_code == 303
    alarm = fake_store.get_alarm("a1")
    assert alarm.state == AlarmState.RESOLVED and alarm.closed_by == "dana"
    assert alarm.reason == "Police attended"   # the note is personal: see test_privacy.py
    resolution = fake_store.timeline("a1")[-1]
    assert {k: resolution.get(k) for k in ("event", "by", "outcome", "note")} == {
        "event": "resolution", "by": "dana", "outcome": "police_attended", "note": None}
    page = operator.get("/alarms/a1").text
    assert ">Resolve</button>" not in page
    rows = [r for r in timeline_rows(fake_store.timeline("a1")) if r.label == "Resolved"]
    assert [(r.event, r.by, r.detail) for r in rows] == [("resolved", "dana", "Police attended")]
    assert page.count('<td data-label="What">Resolved</td>') == 1


@pytest.mark.parametrize("form, message", [
    ({"outcome": "police_attended", "note": "  "}, "Note: required."),
    ({"outcome": "made-up", "note": "x"}, "Outcome: choose what ended the situation."),
    ({"note": "x"}, "Outcome: choose"),
    ({"outcome": "other", "note": "x" * 2001}, "Note: at most 2000 characters"),
])
def test_resolve_needs_an_outcome_and_a_note(operator, fake_store, form, message):
    raise_alarm(fake_store)
    response = operator.post("/alarms/a1/resolve", data=form)
    assert response.status_code == 400 and message in response.text
    assert fake_store.get_alarm("a1").state == AlarmState.RAISED
    if form.get("note", "").strip():
        assert form["note"][:50] in response.text  # what was typed is kept


def test_cancel_as_false_alarm_needs_a_reason(operator, fake_store):
    raise_alarm(fake_store)
    missing = operator.post("/alarms/a1/cancel", data={"reason": ""})
    assert missing.status_code == 400 and "Reason: required." in missing.text
    assert operator.post("/alarms/a1/cancel",
                         data={"reason": "pressed while cleaning"}).status_code == 303
    alarm = fake_store.get_alarm("a1")
    assert alarm.state == AlarmState.CANCELLED and alarm.reason == \
        "false alarm: pressed while cleaning"
    assert fake_store.active_alarms() == []


def test_an_unknown_alarm_is_a_404_that_names_it(operator):
    response = operator.get("/alarms/<b>nope")
    assert response.status_code == 404
    assert "No alarm &#39;&lt;b&gt;nope&#39;" in response.text
    assert operator.post("/alarms/nope/acknowledge").status_code == 404


# --- markup from the config is text, everywhere -------------------------------------------

def test_names_from_the_config_are_escaped_on_every_page(tmp_path, fake_store):
    evil = "<script>alert(1)</script>"
    text = SAMPLE_SITE.read_text().replace('name = "Main Library"',
                                           f'name = "Main {evil} Library"')
    text = text.replace('name = "Circulation Desk"', 'name = "Desk <img src=x onerror=alert(2)>"')
    site_file = tmp_path / "site.toml"
    write_site(site_file, text)
    client = logged_in_client(create_app(load_site(site_file), fake_store), fake_store,
                              "ari", "admin")
    raise_alarm(fake_store)
    for path in ("/", "/alarms/a1", "/branches", "/devices"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert "<script>alert" not in page.text and "<img src=x" not in page.text, path
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text or \
            "&lt;img src=x" in page.text, path


# --- branches -----------------------------------------------------------------------

def test_operators_see_branches_but_only_admins_switch(operator, fake_store):
    page = operator.get("/branches")
    assert page.status_code == 200 and "Only an admin can switch" in page.text
    assert "Start drill" not in page.text
    for path in ("/branches/main/drill/start", "/branches/main/drill/end",
                 "/branches/main/lone-worker"):
        response = operator.post(path, data={"minutes": "10", "mode": "on"})
        assert response.status_code == 403 and "Only an admin" in response.text
    assert fake_store.branches.branch_switches("main").by is None


def test_admin_starts_and_ends_a_drill(admin, fake_store):
    before = now_ms()
    response = admin.post("/branches/westside/drill/start", data={"minutes": "10"})
    assert response.status_code == 303 and response.headers["Location"] == "/branches"
    switches = fake_store.branches.branch_switches("westside")
    assert switches.by == "ari"
    assert before + 600_000 <= switches.drill_until_ms <= now_ms() + 600_000
    page = admin.get("/branches").text
    assert "Westside Branch: drill on for 10 min." in page and "End drill" in page
    assert 'data-branch="westside"\n             data-state="drill"' in page
    assert admin.post("/branches/westside/drill/end").status_code == 303
    assert fake_store.branches.branch_switches("westside").drill_until_ms is None
    assert "drill ended" in admin.get("/branches").text


@pytest.mark.parametrize("minutes", ["", "abc", "0", "721", "-5", "1.5"])
def test_a_bad_drill_length_is_named_and_changes_nothing(admin, fake_store, minutes):
    response = admin.post("/branches/main/drill/start", data={"minutes": minutes})
    assert response.status_code == 303
    assert "minutes: give a whole number from 1 to 720" in admin.get("/branches").text
    assert fake_store.branches.branch_switches("main").drill_until_ms is None


def test_admin_switches_lone_worker_on_off_and_back_to_the_schedule(admin, fake_store):
    for mode, expected in (("on", True), ("off", False), ("auto", None)):
        assert admin.post("/branches/main/lone-worker", data={"mode": mode}).status_code == 303
        assert fake_store.branches.branch_switches("main").lone_worker is expected
    admin.post("/branches/main/lone-worker", data={"mode": "maybe"})
    assert "mode: must be on, off or auto" in admin.get("/branches").text
    assert admin.post("/branches/nowhere/lone-worker", data={"mode": "on"}).status_code == 404


# --- devices ------------------------------------------------------------------------

def test_devices_show_health_and_troubles(operator, fake_store):
    now = now_ms()
    fake_store.devices.set_device_status("main-circ-01", "online", now, "1.4.2", uptime_s=60, outbox=2,
                                         wifi_dbm=-61.4, battery_pct=87.6, heartbeat_ms=now)
    fake_store.devices.update_device("main-circ-01", "selftest", selftest_ms=now, selftest_ok=0,
                                     selftest_detail="LED open circuit")
    fake_store.devices.update_device("main-circ-01", "test_press", test_ms=now, test_alarm="t1")
    fake_store.devices.set_device_status("main-ref-01", "online", now)
    fake_store.r.sadd(f"{fake_store.prefix}:troubles:main-ref-01", "offline", "low_battery")
    page = operator.get("/devices")
    assert page.status_code == 200
    rows = {m.split('"')[0]: m for m in page.text.split('data-device="')[1:]}
    circ = rows["main-circ-01"]
    for words in ('data-presence="online"', "1.4.2", "88 %", "-61 dBm", "2 waiting",
                  "FAILED</strong> LED open circuit", "Main Library, Circulation Desk"):
        assert words in circ, words
    assert 'data-label="Last test press">—' not in circ
    assert re.search(r'data-label="Last heartbeat">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d P[SD]T '
                     r'\(just now\)</td>', circ)  # the branch's time and zone, and how long ago
    assert 'data-label="Last heartbeat">—</td>' in rows["west-front-01"]
    assert 'data-label="Last test press">—' in rows["main-ref-01"]
    assert 'data-presence="offline"' in rows["main-ref-01"]
    assert "⚠ low battery" in rows["main-ref-01"]
    assert 'data-presence="never seen"' in rows["west-front-01"]
    assert "Locate" not in page.text  # operators do not manage devices


def test_admin_locates_a_device(admin, operator, fake_store):
    assert operator.post("/devices/main-circ-01/locate").status_code == 403
    response = admin.post("/devices/main-circ-01/locate")
    assert response.status_code == 303
    assert commands(fake_store) == [{"device": "main-circ-01", "cmd": "locate"}]
    assert "Locate sent to main-circ-01" in admin.get("/devices").text
    assert admin.post("/devices/nope/locate").status_code == 404


@pytest.mark.parametrize("pressed_before_ms, shown", [
    (40, "Pressed</dt>\n    <dd>2025-11-22 11:33:19 PST</dd>"),
    (10 * 60_000 + 40, "2025-11-22 11:23:19 PST: LATE, 10 min 0 s before it reached the hub"),
    (-5 * 60_000, "unknown: the device clock said 2025-11-22 11:38:19 PST, which cannot be"),
])
def test_the_alarm_page_says_when_the_button_was_pressed(operator, fake_store,
                                                         pressed_before_ms, shown):
    at = 1763840000000 - 1  # 11:33:19 in Los Angeles
    fake_store.raise_alarm(Alarm(id="late1", kind="emergency", device="main-circ-01",
                                 branch="main", room="circulation",
                                 pressed_at_ms=at - pressed_before_ms, received_at_ms=at))
    assert shown in operator.get("/alarms/late1").text


def test_the_boards_one_click_acknowledge_answers_in_json_naming_who_was_quicker(
        operator, admin, fake_store):
    raise_alarm(fake_store)
    as_script = {"Accept": "application/json"}
    first = operator.post("/alarms/a1/acknowledge", headers=as_script)
    assert (first.status_code, first.json) == (200, {"ok": True,
                                                     "message": "Acknowledged by dana."})
    late = admin.post("/alarms/a1/acknowledge", headers=as_script)
    assert late.status_code == 409 and late.json["ok"] is False
    assert re.fullmatch(r"Not done: dana already acknowledged this alarm at "
                        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \w+ \(just now\)\.",
                        late.json["message"]), late.json["message"]
    assert "Not done" not in admin.get("/alarms/a1").text  # no flash left for a later page


@pytest.mark.parametrize("minutes, said", [(0, "just now"), (1, "1 min ago"),
                                           (59, "59 min ago"), (60, "1 h ago"),
                                           (125, "2 h 5 min ago")])
def test_ago_says_how_long_in_minutes_and_hours(minutes, said):
    assert ago(1_000_000, 1_000_000 + minutes * 60_000 + 59_000) == said
