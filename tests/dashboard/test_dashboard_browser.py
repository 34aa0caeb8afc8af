"""The board in headless Chromium, fed straight from a real redis-server: tiles in colour,
words and icon; alarms live and sorted; sound, notification and announcement; a dropped
stream; a tablet and 200 % zoom; names from the config shown as text, never as markup.

One redis-server, one dashboard and one browser for the module; the operator logs in
through the real form once. Each test starts from an empty board (``clean``).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dashboard import create_app
from dashboard.users import Users
from hub.app.localservices import start_redis
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm
from hub.config.site import parse_site
from hub.store.alarms import Store
from tests.browserkit import (DESKTOP, LAYOUT_PROBLEMS, RECORD_ALERTS, BoardServer,
                              log_in_with_form, open_board, screenshot, tile)
from tests.conftest import PLANS_DIR, SAMPLE_SITE

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
SECRET = "browser-tests-" + "0" * 32


@pytest.fixture(scope="module")
def store(tmp_path_factory, sample_site):
    service = start_redis(tmp_path_factory.mktemp("redis"))
    s = Store.from_url(service.url)
    Users(s, hash_method="pbkdf2:sha256:1000").add("olive", PASSWORD, "operator")
    yield s
    s.r.close()
    service.stop()


@pytest.fixture(scope="module")
def sample_site():
    from hub.config.site import load_site
    return load_site(SAMPLE_SITE)


@pytest.fixture(scope="module")
def board(sample_site, store):
    server = BoardServer(create_app(sample_site, store, secret_key=SECRET,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logged_in(browser, board):
    return log_in_with_form(browser, board.url, "olive", PASSWORD)


@pytest.fixture
def page(browser, logged_in, clean):
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    context.add_init_script(RECORD_ALERTS)
    yield context.new_page()
    context.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def alarm(alarm_id: str, kind: str = "emergency", branch: str = "main",
          room: str = "circulation", device: str = "main-circ-01", at_ms: int | None = None):
    at = now_ms() if at_ms is None else at_ms
    return Alarm(id=alarm_id, kind=kind, device=device, branch=branch, room=room,
                 pressed_at_ms=at - 40, received_at_ms=at)


def test_a_raised_alarm_shows_on_the_board_within_a_second(page, board, store):
    open_board(page, board.url)
    circulation = tile(page, "main", "circulation")
    expect(circulation).to_have_attribute("data-state", "quiet")
    expect(circulation).to_contain_text("Quiet")
    expect(circulation.locator('.status svg[data-icon="quiet"]')).to_be_visible()
    safe = tile(page, "westside", "safe-room")
    expect(safe).to_have_attribute("data-safe-room", "true")
    expect(safe.locator(".safe-tag")).to_contain_text("Safe room")
    expect(safe.locator('.safe-tag svg[data-icon="safe_room"]')).to_be_visible()
    expect(page.locator("#no-active")).to_have_text("No active alarms.")

    store.raise_alarm(alarm("e1"))

    expect(circulation).to_have_attribute("data-state", "emergency", timeout=1000)
    expect(circulation.locator(".status")).to_contain_text("EMERGENCY")
    expect(circulation.locator('.status svg[data-icon="emergency"]')).to_be_visible()
    expect(circulation.get_by_role("link", name="Open alarm")).to_have_attribute(
        "href", "/alarms/e1")
    live = page.locator('[role="status"][aria-live="assertive"]')
    expect(live).to_have_text("EMERGENCY at Main Library, Circulation Desk", timeout=1000)
    first = page.locator("#active-list li").first
    expect(first).to_contain_text("EMERGENCY")
    expect(first).to_contain_text("Main Library, Circulation Desk")
    expect(first).to_contain_text("main-circ-01")
    expect(first).to_contain_text("Not acknowledged")
    expect(first.get_by_role("link", name="EMERGENCY")).to_have_attribute("href", "/alarms/e1")
    expect(page.locator('.branch[data-branch="main"]')).to_have_attribute("data-active", "true")
    expect(page.locator('.branch[data-branch="westside"]')).to_have_attribute(
        "data-active", "false")
    expect(circulation.locator("time.elapsed")).to_have_text("0:01", timeout=3000)  # counts up
    expect(circulation.locator("time.elapsed")).to_have_text("0:02", timeout=3000)
    expect(page).to_have_title("(1) ⚠ Haven · Riverside Public Library")


def test_each_state_shows_in_colour_words_and_an_icon(page, board, store):
    now = now_ms()
    store.branches.set_branch_switches("westside", by="ada", now_ms=now, drill_until_ms=now + 600_000)
    store.devices.set_device_status("main-ref-01", "offline", now)
    store.r.sadd(f"{store.prefix}:troubles:main-child-01", "low_battery")
    store.raise_alarm(alarm("a1", "assist", room="workroom", device="main-work-01"))
    store.raise_alarm(alarm("s1", "safe_room", room="safe-room", device="main-safe-01"))
    open_board(page, board.url)

    expected = {  # (branch, room): (state, words, icon)
        ("main", "circulation"): ("quiet", "Quiet", "quiet"),
        ("main", "workroom"): ("assist", "Assistance needed", "assist"),
        ("main", "safe-room"): ("safe_room", "Occupied: Staff sheltering in safe room",
                                "safe_room"),
        ("main", "reference"): ("offline", "Device offline", "offline"),
        ("main", "children"): ("trouble", "Device trouble", "trouble"),
        ("westside", "front-desk"): ("drill", "Drill in progress", "drill"),
    }
    colours = set()
    for (branch, room), (state, words, icon) in expected.items():
        t = tile(page, branch, room)
        expect(t).to_have_attribute("data-state", state)
        expect(t.locator(".status-text")).to_have_text(words)
        expect(t.locator(f'.status svg[data-icon="{icon}"]')).to_be_visible()
        colours.add(t.evaluate("n => getComputedStyle(n).backgroundImage + "
                               "getComputedStyle(n).backgroundColor"))
    assert len(colours) == len(expected), colours  # each state its own colour
    expect(tile(page, "main", "safe-room")).to_have_attribute("data-occupied", "true")
    expect(tile(page, "main", "reference").locator(".troubles")).to_have_text(
        "main-ref-01: offline")
    expect(tile(page, "main", "children").locator(".troubles")).to_have_text(
        "main-child-01: battery low")
    for room in ("front-desk", "safe-room"):  # every room of a drilling branch says so
        drill = tile(page, "westside", room).locator(".drill-tag")
        expect(drill).to_be_visible()
        expect(drill).to_contain_text("DRILL until")
    expect(tile(page, "main", "circulation").locator(".drill-tag")).to_be_hidden()
    expect(page.locator('.branch[data-branch="westside"] .branch-status')).to_contain_text(
        "drill until")

    # the safe room's door opens: staff left, the alarm stays open until an operator ends it
    store.devices.update_device("main-safe-01", "safe_room_left", door_opened_ms=now_ms() + 1)
    expect(tile(page, "main", "safe-room").locator(".status-text")).to_have_text(
        "Left the safe room; alarm still open")


def test_new_alarms_top_the_active_list_and_rooms_keep_the_site_files_order(page, board,
                                                                             store,
                                                                             sample_site):
    open_board(page, board.url)

    site_order = [(b.id, r.id) for b in sample_site.branches.values() for r in b.rooms]

    def seen_order():  # the rooms as a reader sees them: top to bottom, left to right
        tiles = [(n.bounding_box(), n.get_attribute("data-branch"), n.get_attribute("data-room"))
                 for n in page.locator(".tile").all()]
        return [(b, r) for box, b, r in sorted(tiles, key=lambda t: (round(t[0]["y"]),
                                                                      t[0]["x"]))]
    assert seen_order() == site_order
    store.raise_alarm(alarm("older", "assist", room="reference", device="main-ref-01",
                            at_ms=now_ms() - 5000))
    expect(page.locator("#active-list li")).to_have_count(1)
    store.raise_alarm(alarm("newer", "emergency", branch="westside", room="front-desk",
                            device="west-front-01"))

    items = page.locator("#active-list li")
    expect(items).to_have_count(2)
    expect(items.nth(0)).to_have_attribute("data-alarm", "newer")
    expect(items.nth(1)).to_have_attribute("data-alarm", "older")
    expect(items.nth(0)).to_have_class("alarm new")  # flagged as new until the next render
    expect(tile(page, "westside", "front-desk")).to_have_attribute("data-state", "emergency")
    # no room jumps: rooms and branches stay in the site file's order (issue 20)
    assert seen_order() == site_order


def test_one_click_in_the_active_list_acknowledges(page, board, store):
    store.raise_alarm(alarm("e1"))
    open_board(page, board.url)
    item = page.locator('#active-list li[data-alarm="e1"]')
    expect(item).to_contain_text("Not acknowledged")

    item.get_by_role("button", name="Acknowledge EMERGENCY, Main Library, Circulation Desk")\
        .click()

    expect(item).to_contain_text("Acknowledged by olive", timeout=2000)
    expect(item.get_by_role("button", name="Acknowledge")).to_have_count(0)
    assert store.get_alarm("e1").acknowledged_by == "olive"


def test_the_alarm_page_shows_another_operators_acknowledgement_live(page, board, store):
    store.raise_alarm(alarm("e1"))
    page.goto(board.url + "alarms/e1")
    expect(page.locator("#ack-section")).to_be_visible()
    page.fill("#note", "half-typed note")
    page.wait_for_function("() => document.querySelectorAll('.timeline tbody tr').length")

    store.transition("e1", AlarmEvent.ACKNOWLEDGE, by="Ana", now_ms=now_ms())

    expect(page.locator("#alarm-live")).to_contain_text("Acknowledged by Ana at",
                                                        timeout=2000)
    expect(page.locator("#ack-section")).to_have_count(0)
    expect(page.locator("#alarm-facts")).to_contain_text("Acknowledged")
    expect(page.locator(".timeline")).to_contain_text("Ana")
    expect(page.locator("#note")).to_have_value("half-typed note")  # the form is left alone

    store.transition("e1", AlarmEvent.RESOLVE, by="Ben", now_ms=now_ms(), reason="Handled")
    expect(page.locator("#alarm-live")).to_contain_text("Resolved by Ben at", timeout=2000)
    expect(page.locator("#alarm-actions")).to_have_count(0)

def test_sound_and_notifications_are_asked_for_once_then_alert_on_a_new_alarm(
        browser, logged_in, board, store, clean):
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    context.grant_permissions(["notifications"], origin=board.url.rstrip("/"))
    context.add_init_script(RECORD_ALERTS)
    page = context.new_page()
    try:
        open_board(page, board.url)
        allow = page.get_by_role("button", name="Allow alarm sound")
        expect(allow).to_be_visible()
        expect(page.get_by_role("button", name="Sound on")).to_be_hidden()
        allow.click()
        toggle = page.get_by_role("button", name="Sound on")
        expect(toggle).to_have_attribute("aria-pressed", "true")
        expect(allow).to_be_hidden()  # asked once
        page.wait_for_function("() => window.__tones >= 2")  # the confirmation chime
        before = page.evaluate("window.__tones")

        store.raise_alarm(alarm("e1"))
        page.wait_for_function(f"() => window.__tones >= {before + 6}", timeout=2000)  # 3 pairs
        notes = page.evaluate("window.__notes")
        assert notes == [{"title": "EMERGENCY", "tag": "e1",
                          "body": "Main Library, Circulation Desk (device main-circ-01)"}]

        toggle.click()  # mute: visible, and kept across a reload
        muted = page.get_by_role("button", name="Sound muted")
        expect(muted).to_have_attribute("aria-pressed", "false")
        silent = page.evaluate("window.__tones")
        store.raise_alarm(alarm("e2", room="reference", device="main-ref-01"))
        expect(page.locator("#active-list li")).to_have_count(2)
        page.wait_for_function("() => window.__notes.length === 2")  # still notified...
        assert page.evaluate("window.__tones") == silent       # ...but not a sound
        page.reload()
        expect(page.get_by_role("button", name="Sound muted")).to_be_visible()
        expect(page.get_by_role("button", name="Allow alarm sound")).to_be_hidden()
    finally:
        context.close()


def test_the_board_asks_for_notifications_with_a_button(page, board):
    open_board(page, board.url)
    ask = page.get_by_role("button", name="Allow notifications")
    expect(ask).to_be_visible()  # permission "default": the page asks, by button only
    assert page.evaluate("Notification.permission") == "default"


def test_the_board_resynchronises_after_the_stream_drops(page, board, store):
    open_board(page, board.url)
    circulation = tile(page, "main", "circulation")
    expect(circulation).to_have_attribute("data-state", "quiet")

    board.stop()  # the stream drops; the page notices
    try:
        expect(page.locator("#connection")).to_have_attribute("data-conn", "reconnecting")
        store.raise_alarm(alarm("e2"))  # no one is listening
    finally:
        board.start()

    # the browser reconnects after the stream's retry (2 s), then fetches a snapshot
    expect(circulation).to_have_attribute("data-state", "emergency", timeout=5000)
    expect(page.locator("#connection")).to_have_attribute("data-conn", "live")
    expect(page.locator('[aria-live="assertive"]')).to_contain_text("Circulation Desk")


@pytest.mark.parametrize("viewport,scale", [({"width": 768, "height": 1024}, 1),
                                            ({"width": 640, "height": 450}, 2)],
                         ids=["tablet-768px", "zoom-200pc"])
def test_the_board_fits_a_tablet_and_200_percent_zoom(browser, logged_in, board, store, clean,
                                                      viewport, scale):
    """200 % zoom on a 1280 px window lays the page out in 640 CSS px at 2 device px each."""
    now = now_ms()
    store.branches.set_branch_switches("westside", by="ada", now_ms=now, drill_until_ms=now + 600_000)
    store.devices.set_device_status("main-ref-01", "offline", now)
    store.r.sadd(f"{store.prefix}:troubles:main-child-01", "low_battery", "outbox_backlog")
    store.raise_alarm(alarm("e1"))
    store.raise_alarm(alarm("s1", "safe_room", branch="westside", room="safe-room",
                            device="west-safe-01"))
    context = browser.new_context(storage_state=logged_in, viewport=viewport,
                                  device_scale_factor=scale)
    page = context.new_page()
    try:
        open_board(page, board.url)
        expect(tile(page, "main", "circulation")).to_have_attribute("data-state", "emergency")
        expect(page.locator("#active-list li")).to_have_count(2)
        assert page.evaluate(LAYOUT_PROBLEMS) == []
        screenshot(page, f"board-{viewport['width']}px-x{scale}")
        names = page.locator(".tile h3")
        for i in range(names.count()):  # every room name readable, none cut off
            assert names.nth(i).is_visible()
    finally:
        context.close()


MARKUP = '<img src=x onerror="document.title=1">'


def test_names_from_the_config_are_shown_as_text_never_as_markup(browser, logged_in, store,
                                                                 clean):
    text = Path(SAMPLE_SITE).read_text()
    for plain in ('name = "Main Library"', 'name = "Circulation Desk"', 'label = "EMERGENCY"'):
        assert plain in text
        key, value = plain.split(" = ")
        text = text.replace(plain, f"{key} = '{value[1:-1]} {MARKUP}'", 1)
    site = parse_site(text, "markup.toml", PLANS_DIR)
    server = BoardServer(create_app(site, store, secret_key=SECRET,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    page = context.new_page()
    try:
        store.raise_alarm(alarm("x1"))
        open_board(page, server.url)
        t = tile(page, "main", "circulation")
        expect(t).to_have_attribute("data-state", "emergency")
        expect(t.locator("h3")).to_have_text(f"Circulation Desk {MARKUP}")
        expect(t.locator(".status-text")).to_have_text(f"EMERGENCY {MARKUP}")
        expect(page.locator("#active-list li").first).to_contain_text(
            f"Main Library {MARKUP}, Circulation Desk {MARKUP}")
        expect(page.locator("[aria-live=assertive]")).to_contain_text(f"Main Library {MARKUP}")
        assert page.locator("img").count() == 0
        expect(page).to_have_title("(1) ⚠ Haven · Riverside Public Library")  # no onerror ran
    finally:
        context.close()
        server.stop()


def test_a_drill_that_runs_out_leaves_the_board_by_itself(page, board, store):
    """No event marks a drill's end: the page looks again when it is due."""
    open_board(page, board.url)
    circulation = tile(page, "main", "circulation")
    now = now_ms()
    store.branches.set_branch_switches("main", by="ada", now_ms=now, drill_until_ms=now + 2500)
    expect(circulation).to_have_attribute("data-state", "drill")
    expect(circulation).to_have_attribute("data-state", "quiet", timeout=6000)  # not 15 s
    expect(circulation.locator(".drill-tag")).to_be_hidden()


def test_demo_buttons_press_a_device_through_the_csrf_check(browser, logged_in, sample_site,
                                                            store, clean):
    from tests.dashboard.test_dashboard import ControlStub
    control = ControlStub()
    server = BoardServer(create_app(sample_site, store, secret_key=SECRET,
                                    demo_control_url=control.url,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    page = context.new_page()
    try:
        open_board(page, server.url)
        demo = tile(page, "westside", "front-desk").get_by_role("group",
                                                                name="Demo device west-front-01")
        demo.get_by_role("button", name="Hold 2 s west-front-01").click()
        expect(demo.get_by_role("status")).to_have_text("Sent")
        assert control.presses == [("POST", "/press/west-front-01?hold=1")]
        # a safe room's door contact: close / open the door, never Press / Hold (issue 20)
        door = tile(page, "westside", "safe-room").get_by_role("group",
                                                               name="Demo device west-safe-01")
        expect(door.get_by_role("button")).to_have_text(["Close door", "Open door"])
        door.get_by_role("button", name="Close door west-safe-01").click()
        expect(door.get_by_role("status")).to_have_text("Sent")
        assert control.presses[-1] == ("POST", "/press/west-safe-01?door=close")
    finally:
        context.close()
        server.stop()
        control.close()


def test_an_alarm_that_reached_nobody_says_so_live_until_a_page_gets_through(page, board,
                                                                            store):
    open_board(page, board.url)
    store.raise_alarm(alarm("n1"), escalate=True)
    first = page.locator("#active-list li").first
    expect(first).to_contain_text("Not acknowledged", timeout=1000)
    expect(first.locator(".nobody")).to_have_count(0)

    assert store.mark_nobody_reached("n1", 0, now_ms(), tried=6, how="test") == 1

    expect(first.locator(".nobody")).to_have_text("Nobody reached: call for help",
                                                  timeout=1000)
    circulation = tile(page, "main", "circulation")
    expect(circulation.locator(".status")).to_contain_text("NOBODY REACHED")

    assert store.clear_nobody_reached("n1", now_ms())

    expect(first.locator(".nobody")).to_have_count(0, timeout=1000)
    expect(circulation.locator(".status")).not_to_contain_text("NOBODY REACHED")


def test_a_tile_never_hides_an_unacknowledged_alarm_behind_an_acknowledged_one(page, board,
                                                                                store):
    store.raise_alarm(alarm("ast", "assist", at_ms=now_ms() - 5000))
    store.raise_alarm(alarm("emg", "emergency"))
    store.transition("emg", AlarmEvent.ACKNOWLEDGE, by="Ana", now_ms=now_ms())
    open_board(page, board.url)
    circulation = tile(page, "main", "circulation")
    expect(circulation).to_have_attribute("data-state", "assist")
    expect(circulation.locator(".status-text")).to_have_text("Assistance needed (+1 more)")
    expect(circulation.get_by_role("link", name="Open alarm")).to_have_attribute(
        "href", "/alarms/ast")

    store.raise_alarm(alarm("emg2", "emergency"))  # a second unacknowledged one: counted
    expect(circulation.locator(".status-text")).to_have_text(
        "EMERGENCY (+2 more, 1 not acknowledged)")


def test_after_a_reload_the_blocked_sound_shows_one_button_not_two(page, board):
    """Issue 20: "Sound on" and "Allow alarm sound" showed together after a reload while
    the browser still blocked audio. Headless Chromium lets audio run without a click, so
    this page holds it back as a strict browser does: every AudioContext stays suspended."""
    page.add_init_script("""
        Object.defineProperty(AudioContext.prototype, "state", {get: () => "suspended"});
        AudioContext.prototype.resume = () => Promise.resolve();
    """)
    open_board(page, board.url)
    page.evaluate("localStorage.setItem('haven-sound', 'on')")  # allowed before the reload
    page.reload()
    expect(page.locator("#connection")).to_have_attribute("data-conn", "live")
    expect(page.get_by_role("button", name="Allow alarm sound")).to_be_visible()
    expect(page.locator("#sound-toggle")).to_be_hidden()
    expect(page.locator("#sound-note")).to_contain_text("holds sound back")


# Every word of these elements on one line: a word split mid-word ("Onli ne") has 2 rects.
SPLIT_WORDS = """
(selector) => [...document.querySelectorAll(selector)].flatMap((node) => {
  const range = document.createRange();
  range.selectNodeContents(node);
  const words = node.textContent.trim().split(/[\\s-]+/).length;  // a line may end at a hyphen
  return range.getClientRects().length > words ? [node.textContent.trim()] : [];
})
"""


@pytest.fixture(scope="module")
def admin_logged_in(browser, board, store):
    Users(store, hash_method="pbkdf2:sha256:1000").add("ada", PASSWORD, "admin")
    return log_in_with_form(browser, board.url, "ada", PASSWORD)


@pytest.mark.parametrize("viewport", [{"width": 768, "height": 1024},
                                      {"width": 1366, "height": 768}])
def test_the_devices_page_fits_a_tablet_with_whole_words(browser, admin_logged_in, board, store,
                                                         clean, viewport):
    """Issue 20: an 866 px table in 768 px, Locate off screen, "Onli ne", "Loc ate"."""
    admin = admin_logged_in
    now = now_ms()
    store.devices.set_device_status("main-ref-01", "offline", now)
    store.devices.set_device_status("main-circ-01", "online", now)
    context = browser.new_context(storage_state=admin, viewport=viewport)
    page = context.new_page()
    try:
        page.goto(board.url + "devices")
        expect(page.get_by_role("button", name="Locate main-circ-01")).to_be_visible()
        # a stacked table keeps its header for screen readers only, clipped on purpose
        assert [p for p in page.evaluate(LAYOUT_PROBLEMS) if not p.startswith("thead.")] == []
        width = page.evaluate("document.documentElement.clientWidth")
        for button in page.get_by_role("button", name="Locate").all():
            box = button.bounding_box()
            assert 0 <= box["x"] and box["x"] + box["width"] <= width
        assert page.evaluate(SPLIT_WORDS, ".devices .state, .devices button, .devices th") == []
        screenshot(page, f"devices-{viewport['width']}px")
    finally:
        context.close()


def test_the_phones_timeline_has_no_empty_labels(browser, logged_in, board, store, clean):
    store.raise_alarm(alarm("e1"))
    store.add_timeline("e1", "escalation", at_ms=now_ms(), attempt=0, step=1, round=1,
                       branch_state="staffed", notifications=1)
    context = browser.new_context(storage_state=logged_in, viewport={"width": 390,
                                                                     "height": 844})
    page = context.new_page()
    try:
        page.goto(board.url + "alarms/e1")
        expect(page.locator(".timeline")).to_contain_text("1st call for help")
        empty = page.evaluate("""() => [...document.querySelectorAll('.timeline td')]
            .filter((td) => !td.textContent.trim() && td.getClientRects().length)
            .map((td) => td.dataset.label)""")
        assert empty == []
        assert [p for p in page.evaluate(LAYOUT_PROBLEMS) if not p.startswith("thead.")] == []
    finally:
        context.close()
