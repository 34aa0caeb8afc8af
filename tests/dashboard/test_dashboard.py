"""The dashboard: page, snapshot, demo controls and the live event stream."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from dataclasses import replace
from html import unescape
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from dashboard import create_app
from dashboard.board import board_snapshot, format_event
from dashboard.snapshot import BoardFacts, DeviceFacts, read_facts
from dashboard.serve import make_server, stop
from hub.core.model import Alarm, AlarmState
from hub.core.schedule import Switches
from hub.store.alarms import Store
from tests.dashboard_login import logged_in_client, session_cookie

SAMPLE_ROOMS = {
    ("main", "Main Library"): ["Circulation Desk", "Reference Desk", "Children's Area",
                               "Staff Workroom", "Safe Room"],
    ("westside", "Westside Branch"): ["Front Desk", "Safe Room"],
}


def alarm(id="a1", kind="emergency", branch="main", room="circulation",
          device="main-circ-01", at_ms=1_000, state=AlarmState.RAISED) -> Alarm:
    return Alarm(id=id, kind=kind, device=device, branch=branch, room=room,
                 pressed_at_ms=at_ms - 50, received_at_ms=at_ms, state=state)


def room_of(snapshot: dict, branch_id: str, room_id: str) -> dict:
    branch = next(b for b in snapshot["branches"] if b["id"] == branch_id)
    return next(r for r in branch["rooms"] if r["id"] == room_id)


@pytest.fixture
def client(sample_site, fake_store):
    return logged_in_client(create_app(sample_site, fake_store), fake_store)


class TileParser(HTMLParser):
    """Collects the attributes of every room tile and the page's text."""

    def __init__(self):
        super().__init__()
        self.tiles: list[dict[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "tile" in (attrs.get("class") or "").split():
            self.tiles.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


# --- the page ------------------------------------------------------------------

def test_page_shows_every_branch_and_room_and_marks_safe_rooms(client):
    response = client.get("/")
    assert response.status_code == 200
    page = TileParser()
    page.feed(response.text)
    text = unescape(" ".join(page.text))
    assert "Riverside Public Library" in text
    for (_, branch_name), rooms in SAMPLE_ROOMS.items():
        assert branch_name in text
        for room_name in rooms:
            assert room_name in text
    assert [(t["data-branch"], t["data-room"]) for t in page.tiles] == [
        ("main", "circulation"), ("main", "reference"), ("main", "children"),
        ("main", "workroom"), ("main", "safe-room"), ("westside", "front-desk"),
        ("westside", "safe-room")]
    safe = {(t["data-branch"], t["data-room"]) for t in page.tiles
            if t.get("data-safe-room") == "true"}
    assert safe == {("main", "safe-room"), ("westside", "safe-room")}
    assert text.count("Safe room") == 2  # the word, beside the icon
    assert 'aria-live="assertive"' in response.text


def test_page_loads_its_own_script_and_style_only(client):
    response = client.get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert client.get("/static/board.js").status_code == 200
    assert client.get("/static/board.css").status_code == 200
    assert 'src="http' not in response.text and 'href="http' not in response.text


# --- the snapshot --------------------------------------------------------------

def test_api_board_follows_a_raised_alarm(client, fake_store):
    before = client.get("/api/board")
    assert before.status_code == 200
    assert before.headers["Cache-Control"] == "no-store"
    assert room_of(before.json, "main", "circulation")["state"] == "quiet"
    assert before.json["active"] == []

    assert fake_store.raise_alarm(alarm(at_ms=5_000))

    after = client.get("/api/board").json
    room = room_of(after, "main", "circulation")
    assert room["state"] == "emergency"
    assert [a["id"] for a in room["alarms"]] == ["a1"]
    assert room["alarms"][0]["kind_label"] == "EMERGENCY"
    assert after["active"] == [{**alarm(at_ms=5_000).to_json(), "kind_label": "EMERGENCY",
                                "nobody_reached": False, "branch_name": "Main Library", "room_name": "Circulation Desk",
                                "drill": False, "received_text": "16:00 PST"}]
    assert room_of(after, "main", "reference")["state"] == "quiet"
    assert after["site"] == "Riverside Public Library"
    assert after["demo"] is False
    assert isinstance(after["generated_at_ms"], int)


def test_snapshot_is_built_from_site_and_alarms(sample_site):
    alarms = [
        alarm("old", "assist", at_ms=1_000),
        alarm("new", "safe_room", room="safe-room", device="main-safe-01", at_ms=3_000),
        alarm("mid", "emergency", at_ms=2_000),
        alarm("done", "welfare", branch="westside", room="front-desk", at_ms=4_000,
              state=AlarmState.RESOLVED),
        alarm("gone", "mystery", branch="east", room="lobby", device="x", at_ms=500),
    ]
    snap = board_snapshot(sample_site, alarms, 9_999, demo=True)

    assert snap["generated_at_ms"] == 9_999 and snap["demo"] is True
    assert [b["id"] for b in snap["branches"]] == ["main", "westside"]
    circulation = room_of(snap, "main", "circulation")
    assert circulation["state"] == "emergency"  # the newest of its two alarms
    assert [a["id"] for a in circulation["alarms"]] == ["mid", "old"]
    assert circulation["devices"] == ["main-circ-01"]
    assert circulation["safe_room"] is False
    safe = room_of(snap, "main", "safe-room")
    assert safe["safe_room"] is True and safe["state"] == "safe_room"
    assert safe["alarms"][0]["kind_label"] == "Staff sheltering in safe room"
    assert room_of(snap, "westside", "front-desk")["state"] == "quiet"  # resolved: not active
    # newest first; an alarm from a room the config no longer has is still listed
    assert [a["id"] for a in snap["active"]] == ["new", "mid", "old", "gone"]
    gone = snap["active"][-1]
    assert (gone["branch_name"], gone["room_name"], gone["kind_label"]) == \
        ("east", "lobby", "mystery")
    json.dumps(snap)  # JSON-ready as it is


def test_snapshot_shows_drill_offline_trouble_and_an_occupied_safe_room(sample_site):
    facts = BoardFacts(
        switches={"westside": Switches(drill_until_ms=10_000, by="dana")},
        devices={"main-ref-01": DeviceFacts(state="offline"),
                 "main-child-01": DeviceFacts(state="online", troubles=frozenset({"low_battery"})),
                 "main-work-01": DeviceFacts(troubles=frozenset({"never_seen", "low_battery"})),
                 "main-circ-01": DeviceFacts(state="offline"),
                 "main-safe-01": DeviceFacts(state="online", door_opened_ms=2_000),
                 "west-safe-01": DeviceFacts(state="online", door_opened_ms=4_000)})
    alarms = [alarm("a", "assist", at_ms=1_000),                       # circulation
              alarm("s1", "safe_room", room="safe-room", device="main-safe-01", at_ms=3_000),
              replace(alarm("s2", "safe_room", branch="westside", room="safe-room",
                            device="west-safe-01", at_ms=3_000), drill=True)]
    snap = board_snapshot(sample_site, alarms, 9_999, facts=facts)

    reference = room_of(snap, "main", "reference")
    assert reference["state"] == "offline"
    assert reference["troubles"] == [{"device": "main-ref-01", "offline": True,
                                      "troubles": ["offline"], "words": "offline"}]
    children = room_of(snap, "main", "children")
    assert children["state"] == "trouble"
    assert children["troubles"][0]["words"] == "battery low"
    workroom = room_of(snap, "main", "workroom")
    assert workroom["state"] == "offline"  # never heard outranks the battery
    assert workroom["troubles"][0]["words"] == "never heard from, battery low"
    circulation = room_of(snap, "main", "circulation")
    assert circulation["state"] == "assist"  # an alarm outranks its offline device...
    assert circulation["troubles"][0]["offline"] is True  # ...which is still shown
    # the door closed (alarm at 3 000) after it last opened (2 000): occupied
    main_safe = room_of(snap, "main", "safe-room")
    assert main_safe["state"] == "safe_room" and main_safe["occupied"] is True
    # Westside's door opened (4 000) after the alarm: staff left; the alarm stays open
    west_safe = room_of(snap, "westside", "safe-room")
    assert west_safe["state"] == "safe_room" and west_safe["occupied"] is False
    # drill: westside only, until 10 000, on every room and alarm there
    west = next(b for b in snap["branches"] if b["id"] == "westside")
    assert west["drill"] == {"until_ms": 10_000, "by": "dana", "until_text": "16:00 PST"}
    assert room_of(snap, "westside", "front-desk")["state"] == "drill"
    assert all(r["drill"] for r in west["rooms"])
    assert next(b for b in snap["branches"] if b["id"] == "main")["drill"] is None
    assert {a["id"]: a["drill"] for a in snap["active"]} == {"s2": True, "s1": False, "a": False}
    # a drill that has ended is no drill
    ended = board_snapshot(sample_site, [], 10_000, facts=facts)
    assert room_of(ended, "westside", "front-desk")["state"] == "quiet"
    assert all(b["drill"] is None for b in ended["branches"])


def test_an_alarm_is_marked_drill_by_itself_not_by_its_branch(sample_site):
    """A real alarm in a drilling branch (raised before the drill, or made REAL) must not
    look like practice on the board (hub.core.drill)."""
    facts = BoardFacts(switches={"westside": Switches(drill_until_ms=10_000, by="dana")})
    alarms = [alarm("w1", "emergency", branch="westside", room="front-desk",
                    device="west-front-01", at_ms=2_000),
              replace(alarm("w2", "emergency", branch="westside", room="safe-room",
                            device="west-safe-01", at_ms=3_000), drill=True)]
    snap = board_snapshot(sample_site, alarms, 9_999, facts=facts)
    assert {a["id"]: a["drill"] for a in snap["active"]} == {"w1": False, "w2": True}


def test_api_board_reads_switches_device_status_and_troubles(client, fake_store):
    now = int(time.time() * 1000)
    fake_store.branches.set_branch_switches("main", by="dana", now_ms=now, drill_until_ms=now + 600_000)
    fake_store.devices.set_device_status("west-front-01", "offline", now)
    fake_store.r.sadd(f"{fake_store.prefix}:troubles:west-safe-01", "selftest_failed")
    fake_store.devices.update_device("main-safe-01", "safe_room_left", door_opened_ms=now)

    facts = read_facts(fake_store, client.application.extensions["haven"].site)
    assert facts.switches["main"].drill_until_ms == now + 600_000
    assert facts.switches["westside"] == Switches()
    assert facts.devices["west-front-01"].offline
    assert facts.devices["west-safe-01"].troubles == {"selftest_failed"}
    assert facts.devices["main-safe-01"].door_opened_ms == now
    assert facts.devices["main-circ-01"] == DeviceFacts()

    snap = client.get("/api/board").json
    assert next(b for b in snap["branches"] if b["id"] == "main")["drill"]["by"] == "dana"
    assert room_of(snap, "main", "circulation")["state"] == "drill"
    assert room_of(snap, "westside", "front-desk")["state"] == "offline"
    assert room_of(snap, "westside", "safe-room")["troubles"][0]["words"] == "self-test failed"


def test_api_board_answers_503_when_redis_is_down(sample_site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = Store.from_url(f"redis://127.0.0.1:{port}")
    client = create_app(sample_site, store).test_client()
    with client.session_transaction() as session:
        session["sid"] = "a session id: looking it up needs the store"
    try:
        response = client.get("/api/board")
    finally:
        store.r.close()
    assert response.status_code == 503
    assert "alarm store unavailable" in response.json["error"]


# --- demo controls ---------------------------------------------------------------

class ControlStub:
    """The demo simulator's control endpoint: records presses, answers ``status``."""

    def __init__(self, status: int = 200):
        self.presses: list[tuple[str, str]] = []
        self.pressed = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                stub.presses.append((self.command, self.path))
                body = json.dumps({"ok": status == 200} if status == 200 else
                                  {"ok": False, "error": "the simulator says no"}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                stub.pressed.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def control():
    stub = ControlStub()
    yield stub
    stub.close()


def test_demo_press_forwards_device_and_hold_to_the_simulator(sample_site, fake_store, control):
    client = logged_in_client(
        create_app(sample_site, fake_store, demo_control_url=control.url + "/"), fake_store)

    held = client.post("/demo/press/main-circ-01", json={"hold": 1})
    assert held.status_code == 200 and held.json == {"ok": True}
    pressed = client.post("/demo/press/west-front-01", data={"hold": "0"})
    assert pressed.status_code == 200

    assert control.pressed.wait(1)
    assert control.presses == [("POST", "/press/main-circ-01?hold=1"),
                               ("POST", "/press/west-front-01?hold=0")]
    assert client.get("/api/board").json["demo"] is True


def test_demo_press_rejects_unknown_devices_and_bad_hold(sample_site, fake_store, control):
    client = logged_in_client(
        create_app(sample_site, fake_store, demo_control_url=control.url), fake_store)

    unknown = client.post("/demo/press/nope-01", json={"hold": 0})
    assert unknown.status_code == 404
    assert "nope-01" in unknown.json["error"]
    assert client.post("/demo/press/main-circ-01", json={"hold": 2}).status_code == 400
    assert client.post("/demo/press/main-circ-01", json=[1]).status_code == 400
    assert control.presses == []


def test_demo_press_is_502_when_the_simulator_is_unreachable(sample_site, fake_store):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connection refused
    client = logged_in_client(
        create_app(sample_site, fake_store, demo_control_url=url), fake_store)
    response = client.post("/demo/press/main-circ-01", json={"hold": 0})
    assert response.status_code == 502
    assert response.json["ok"] is False and url in response.json["error"]


@pytest.fixture
def failing_control():
    stub = ControlStub(status=500)
    yield stub
    stub.close()


def test_demo_press_passes_on_a_simulator_error_as_502(sample_site, fake_store, failing_control):
    client = logged_in_client(
        create_app(sample_site, fake_store, demo_control_url=failing_control.url), fake_store)
    response = client.post("/demo/press/main-circ-01")
    assert response.status_code == 502
    assert "the simulator says no" in response.json["error"]  # its words, not the status
    assert failing_control.presses == [("POST", "/press/main-circ-01?hold=0")]


def test_demo_routes_are_absent_without_a_control_url(client):
    assert client.post("/demo/press/main-circ-01", json={"hold": 0}).status_code == 404
    assert client.get("/api/board").json["demo"] is False


def test_a_bad_demo_control_url_is_refused(sample_site, fake_store):
    with pytest.raises(ValueError, match="demo_control_url"):
        create_app(sample_site, fake_store, demo_control_url="localhost:8081")


# --- the event stream ------------------------------------------------------------

def test_format_event_names_the_event_by_its_type():
    assert format_event('{"type": "alarm.raised", "alarm": {}}') == \
        'event: alarm.raised\ndata: {"type": "alarm.raised", "alarm": {}}\n\n'
    assert format_event("not json") == "event: message\ndata: not json\n\n"
    assert format_event('{"type": "a\\nb"}') == 'event: message\ndata: {"type": "a\\nb"}\n\n'
    assert format_event("two\nlines") == "event: message\ndata: two\ndata: lines\n\n"


def test_events_says_hello_and_unsubscribes_when_the_client_leaves(client, fake_store):
    response = client.get("/events", buffered=False)
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["X-Accel-Buffering"] == "no"
    chunks = iter(response.response)
    assert b"event: hello\n" in next(chunks)
    assert fake_store.r.pubsub_numsub(fake_store.events_channel) == [(fake_store.events_channel, 1)]
    response.close()  # the generator gets GeneratorExit
    assert fake_store.r.pubsub_numsub(fake_store.events_channel) == [(fake_store.events_channel, 0)]


def read_event(response: http.client.HTTPResponse, deadline: float) -> tuple[str, str]:
    """The next ``(event, data)`` of an SSE stream, skipping comments (pings)."""
    event, data = "message", []
    while time.monotonic() < deadline:
        line = response.readline().decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: "):
            data.append(line[len("data: "):])
        elif line == "" and data:
            return event, "\n".join(data)
    raise AssertionError("no event before the deadline")


@pytest.fixture
def served(sample_site, store):
    """The app on a real redis-server, served by waitress in a thread; yields its port."""
    app = create_app(sample_site, store, test_config={"HAVEN_SSE_HEARTBEAT_S": 0.1})
    server = make_server(app, "127.0.0.1", 0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield int(server.effective_port)
    stop(server)
    thread.join(5)
    assert not thread.is_alive()


def subscribers(store: Store) -> int:
    return dict(store.r.pubsub_numsub(store.events_channel))[store.events_channel]


def test_events_stream_a_raised_alarm_within_a_second(served, store):
    cookie = session_cookie("127.0.0.1", served, store)
    conn = http.client.HTTPConnection("127.0.0.1", served, timeout=1)
    conn.request("GET", "/events", headers={"Accept": "text/event-stream", "Cookie": cookie})
    response = conn.getresponse()
    try:
        assert response.status == 200
        assert response.getheader("Content-Type").startswith("text/event-stream")
        assert read_event(response, time.monotonic() + 1) == ("hello", "{}")

        raised_at = time.monotonic()
        store.raise_alarm(alarm(at_ms=7_000))
        event, data = read_event(response, raised_at + 1)
        assert time.monotonic() - raised_at < 1
        assert event == "alarm.raised"
        assert json.loads(data)["alarm"] == alarm(at_ms=7_000).to_json()
        assert subscribers(store) == 1
    finally:
        response.close()
        conn.close()

    deadline = time.monotonic() + 2  # the server notices at its next ping (0.1 s)
    while subscribers(store) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert subscribers(store) == 0


def test_readiness_flags_reach_the_branch_without_changing_tile_states(sample_site):
    facts = BoardFacts(drill_overdue=frozenset({"main"}),
                       test_press_stale=frozenset({"main-circ-01", "west-front-01"}))
    snap = board_snapshot(sample_site, [], 9_999, facts=facts)
    branches = {b["id"]: b for b in snap["branches"]}
    assert branches["main"]["drill_overdue"] and not branches["westside"]["drill_overdue"]
    assert branches["main"]["test_press_stale"] == ["main-circ-01"]
    assert branches["westside"]["test_press_stale"] == ["west-front-01"]
    assert {r["state"] for b in snap["branches"] for r in b["rooms"]} == {"quiet"}


def test_a_tile_leads_with_an_unacknowledged_alarm_over_a_newer_acknowledged_one(
        sample_site):
    """Issue 20: "EMERGENCY · acknowledged (+1 more)" hid an unacknowledged assist."""
    acked = replace(alarm("emg", "emergency", at_ms=3_000), state=AlarmState.ACKNOWLEDGED,
                    acknowledged_by="Ana", acknowledged_at_ms=3_500)
    snap = board_snapshot(sample_site, [acked, alarm("ast", "assist", at_ms=1_000),
                                        alarm("old", "assist", at_ms=500)], 9_999)
    circulation = room_of(snap, "main", "circulation")
    assert [a["id"] for a in circulation["alarms"]] == ["ast", "old", "emg"]
    assert circulation["state"] == "assist"
    assert [a["id"] for a in snap["active"]] == ["emg", "ast", "old"]  # the list: newest first


def test_among_unacknowledged_alarms_one_that_reached_nobody_leads(sample_site):
    lost = replace(alarm("lost", "assist", at_ms=1_000), nobody_reached_ms=1_500)
    snap = board_snapshot(sample_site, [alarm("new", "emergency", at_ms=2_000), lost], 9_999)
    assert [a["id"] for a in room_of(snap, "main", "circulation")["alarms"]] == ["lost", "new"]


def test_the_board_says_times_in_the_branchs_zone(sample_site):
    """Issue 20: one convention, branch-local time with its zone (not the browser's)."""
    at = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    facts = BoardFacts(switches={"main": Switches(drill_until_ms=at + 3_600_000)})
    snap = board_snapshot(sample_site, [alarm(at_ms=at)], at, facts=facts)
    assert snap["active"][0]["received_text"] == "14:13 PST"
    main = next(b for b in snap["branches"] if b["id"] == "main")
    assert main["drill"]["until_text"] == "15:13 PST"


def test_demo_door_contacts_take_close_or_open_and_a_refusal_says_why(sample_site, fake_store):
    """Issue 20: a safe room's Press/Hold failed with "HTTP 409 Conflict"."""
    refusing = ControlStub(status=409)
    try:
        client = logged_in_client(
            create_app(sample_site, fake_store, demo_control_url=refusing.url), fake_store)
        bad = client.post("/demo/press/west-safe-01", json={"hold": 1})
        assert bad.status_code == 400 and "door contact: send door close or open" in \
            bad.json["error"]
        assert refusing.presses == []
        refused = client.post("/demo/press/west-safe-01", json={"door": "close"})
        assert refusing.presses == [("POST", "/press/west-safe-01?door=close")]
        assert refused.status_code == 502 and "the simulator says no" in refused.json["error"]
        assert "HTTP 409" not in refused.json["error"]
    finally:
        refusing.close()
    snap = client.get("/api/board").json
    assert room_of(snap, "westside", "safe-room")["doors"] == ["west-safe-01"]
    assert room_of(snap, "westside", "front-desk")["doors"] == []
