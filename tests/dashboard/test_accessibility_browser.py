"""Issue 20, "Accessible, measured": every page scanned with axe-core in headless Chromium
has no serious or critical violation; an operator acknowledges and resolves with the
keyboard alone (Tab, Enter, Space, and typing the note), seeing where the focus is at every
stop; a screen reader hears a new alarm once, not on every refresh of the board.

One redis-server, one dashboard and one browser for the module; an admin (who sees every
control) logs in through the real form once. Each test starts from its own data (``scene``
or ``clean``). axe-core comes in the axe-playwright-python wheel (tests/axekit.py).
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Page, expect

from dashboard import create_app
from dashboard.users import Users
from hub.app.localservices import start_redis
from hub.config.site import load_site
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm
from hub.incidents.store import IncidentStore
from hub.store.alarms import Store
from tests.axekit import axe_version, blocking, focus_ring, scan, undecided_contrast, words
from tests.browserkit import (DESKTOP, BoardServer, log_in_with_form, open_board,
                              screenshot, tile)
from tests.conftest import SAMPLE_SITE
from tests.incidents_kit import T0, scripted_alarm

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
SECRET = "a11y-tests-" + "0" * 32


@pytest.fixture(scope="module")
def site():
    return load_site(SAMPLE_SITE)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    service = start_redis(tmp_path_factory.mktemp("redis"))
    s = Store.from_url(service.url)
    Users(s, hash_method="pbkdf2:sha256:1000").add("ada", PASSWORD, "admin")
    yield s
    s.r.close()
    service.stop()


@pytest.fixture(scope="module")
def board(site, store, tmp_path_factory):
    from tests.engine.test_push import write_keys  # the Phones page with its form
    server = BoardServer(create_app(site, store, secret_key=SECRET,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5},
                                    push_keys=write_keys(tmp_path_factory.mktemp("push"))))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logged_in(browser, board):
    return log_in_with_form(browser, board.url, "ada", PASSWORD)


@pytest.fixture
def page(browser, logged_in, clean):
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    yield context.new_page()
    context.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def alarm(alarm_id: str, kind: str = "emergency", branch: str = "main",
          room: str = "circulation", device: str = "main-circ-01") -> Alarm:
    at = now_ms()
    return Alarm(id=alarm_id, kind=kind, device=device, branch=branch, room=room,
                 pressed_at_ms=at - 40, received_at_ms=at)


@pytest.fixture
def scene(store, site, clean):
    """Every state a page can show at once: an unacknowledged emergency, an acknowledged
    call for assistance, a drill alarm in a branch on drill, an offline device, a device in
    trouble, and four closed incidents (one with personal data, two reports overdue)."""
    now = now_ms()
    store.raise_alarm(alarm("e1"))
    store.raise_alarm(alarm("a1", "assist", room="workroom", device="main-work-01"))
    store.transition("a1", AlarmEvent.ACKNOWLEDGE, by="ada", now_ms=now)
    store.branches.set_branch_switches("westside", by="ada", now_ms=now,
                                       drill_until_ms=now + 600_000)
    # raised while its branch is on drill, so a drill alarm (the raise decides, hub.store)
    store.raise_alarm(alarm("d1", branch="westside", room="front-desk", device="west-front-01"))
    store.devices.set_device_status("main-ref-01", "offline", now)
    store.r.sadd(f"{store.prefix}:troubles:main-child-01", "low_battery")
    scripted_alarm(store, "emg1", at_ms=T0)
    scripted_alarm(store, "ast1", at_ms=T0 + 40 * 86_400_000, kind="assist", branch="westside",
                   room="front-desk", device="west-front-01",
                   notified=(("Sam Lee", "+12065550104"),), ack_by="Sam Lee")
    scripted_alarm(store, "drl1", at_ms=T0 + 2 * 86_400_000, drill=True)
    scripted_alarm(store, "fls1", at_ms=T0 + 3 * 86_400_000, close="cancel", ack_after_s=None)
    IncidentStore(store, site).save_details("emg1", description="shouting",
                                            people="Jordan Q. Public, red coat")


#: page -> (path, what shows once it is ready). The board and the alarm pages are scanned
#: as they show live alarms; the incident is the one with personal data (an admin reads it).
PAGES = {
    "board": ("", lambda p: expect(tile(p, "main", "circulation")).to_have_attribute(
        "data-state", "emergency")),
    "alarm": ("alarms/e1", lambda p: expect(p.locator("#ack-section")).to_be_visible()),
    "drill alarm": ("alarms/d1", lambda p: expect(p.locator("#real-heading")).to_be_visible()),
    "branches": ("branches", lambda p: expect(p.locator(".branch-card")).to_have_count(2)),
    "devices": ("devices", lambda p: expect(p.locator("tr[data-device]")).to_have_count(7)),
    "incidents": ("incidents", lambda p: expect(p.locator("h1")).to_have_text("Incidents")),
    "incident": ("incidents/emg1", lambda p: expect(p.locator("main")).to_contain_text(
        "Jordan Q. Public")),
    "reports": ("reports", lambda p: expect(p.locator("h1")).to_have_text("Reports")),
    "read log": ("privacy/log", lambda p: expect(p.locator("h1")).to_have_text(
        "Personal data read log")),
    "phones": ("push", lambda p: expect(p.locator("#push-subscribe")).to_be_visible()),
    "placing rooms": ("plans/main/ground/place",
                      lambda p: expect(p.locator(".place-handle")).to_have_count(4)),
}
#: A phone held upright: the widest tables scroll sideways there (axe checks that the
#: keyboard can scroll them); the other pages stack their tables and were clean at 390 and
#: 768 px when this was written.
PHONE = {"width": 390, "height": 844}
PAGES["reports on a phone"] = PAGES["reports"]


#: WCAG 2.x AA: 4.5:1 for text (measured as if all text were small: stricter for large).
TEXT_CONTRAST = 4.5
#: WCAG 2.2 (1.4.11, 2.4.13): a focus ring stands out 3:1 from what is around it.
RING_CONTRAST = 3.0


def problems(page: Page, name: str) -> list[str]:
    """What keeps the page from passing: each serious or critical axe-core violation, and
    text that axe could not decide whose contrast is below 4.5:1 on some colour under it.
    Prints what axe found at every impact (seen with ``pytest -s``)."""
    response = scan(page)
    found = response["violations"]
    print(f"{name}: axe-core {axe_version(page)}: {len(found)} rule(s) violated"
          + (f"\n{words(found)}" if found else ""))
    undecided = undecided_contrast(page, response)
    if undecided:
        print(f"{name}: {len(undecided)} text(s) axe left for review, lowest contrast "
              f"{min(u['lowest'] for u in undecided):.1f}:1")
    said = [f"{name}: {line}" for line in words(blocking(found)).splitlines()]
    return said + [f"{name}: text below {TEXT_CONTRAST}:1: {u}" for u in undecided
                   if u["lowest"] < TEXT_CONTRAST]


def test_every_page_has_no_serious_or_critical_axe_violation(page, board, scene):
    """One page after another in one browser tab (a test per page would cost a scene and a
    context each); every page's problems are listed before the test fails."""
    found = []
    for name, (path, ready) in PAGES.items():
        page.set_viewport_size(PHONE if name.endswith("on a phone") else DESKTOP)
        if name == "board":
            open_board(page, board.url)
        else:
            page.goto(board.url + path)
        ready(page)
        found += problems(page, name)
    assert not found, "\n".join(found)


def test_the_login_page_and_its_error_have_no_serious_or_critical_axe_violation(browser, board):
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(board.url + "login")
        found = problems(page, "login")
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill("not the password")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        found += problems(page, "login error")
        assert not found, "\n".join(found)
    finally:
        context.close()


# --- the keyboard alone -------------------------------------------------------------------

def focused(page: Page, target) -> bool:
    return target.evaluate("(node) => node === document.activeElement")


def tab_to(page: Page, target, limit: int = 40) -> list[str]:
    """Press Tab until ``target`` has the focus; at every stop the focus must show (a ring
    at least 2 px wide that stands out 3:1) on screen. Returns the stops, in words."""
    stops = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        ring = focus_ring(page, target)
        stops.append(ring["element"])
        assert_ring_shows(ring)
        if ring["reached"]:
            return stops
    raise AssertionError(f"{limit} Tabs never reached {target}: {stops}")


def assert_ring_shows(ring: dict) -> None:
    assert ring["outline"] != "none" and ring["width"] >= 2, f"no focus ring: {ring}"
    assert ring["best"] >= RING_CONTRAST, f"focus ring too faint: {ring}"
    assert ring["on_screen"], f"focused but off screen: {ring}"


def skip_to_main(page: Page) -> None:
    """The first Tab on a page is the skip link, shown; Enter on it takes the next Tab into
    main, past the navigation."""
    page.wait_for_load_state()  # a page just navigated to is parsed whole
    page.keyboard.press("Tab")
    ring = focus_ring(page, page.get_by_role("link", name="Skip to content"))
    assert ring["reached"], f"the first Tab is not the skip link: {ring}"
    assert_ring_shows(ring)
    page.keyboard.press("Enter")


def test_acknowledge_and_resolve_with_the_keyboard_alone(page, board, store):
    """Tab, Enter and Space (and typing: a letter picks the outcome, the note is typed):
    acknowledge on the board, resolve on the alarm page, acknowledge on the alarm page."""
    store.raise_alarm(alarm("k1", room="reference", device="main-ref-01"))
    open_board(page, board.url)
    expect(page.locator("#active-list li")).to_have_count(1)

    skip_to_main(page)
    link = page.locator('#active-list li[data-alarm="k1"] .alarm-link')
    stops = tab_to(page, link, limit=1)  # the newest alarm is the first stop in main
    acknowledge = page.get_by_role("button", name="Acknowledge EMERGENCY, Main Library")
    stops += tab_to(page, acknowledge, limit=1)
    screenshot(page, "keyboard-board-acknowledge")
    page.keyboard.press("Space")
    expect(page.locator('#active-list li[data-alarm="k1"] .ack')).to_have_text(
        "Acknowledged by ada")
    assert store.get_alarm("k1").acknowledged_by == "ada"
    # the acknowledged item was made anew: the focus moved into it, not back to the top,
    # and its link's name says what changed
    assert focused(page, link), focus_ring(page)
    expect(link).to_have_attribute("aria-label", re.compile("acknowledged by ada$"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{board.url}alarms/k1")

    skip_to_main(page)
    stops += tab_to(page, page.get_by_label("Outcome"), limit=1)
    page.keyboard.type("H")  # the select's type-ahead: "Handled by staff on site"
    expect(page.get_by_label("Outcome")).to_have_value("handled_by_staff")
    stops += tab_to(page, page.get_by_label("Note"), limit=1)
    page.keyboard.type("Talked the patron down; no one hurt.")
    stops += tab_to(page, page.get_by_role("button", name="Resolve"), limit=1)
    screenshot(page, "keyboard-alarm-resolve")
    page.keyboard.press("Space")
    expect(page.locator("#alarm-facts")).to_contain_text("Resolved")
    resolved = store.get_alarm("k1")
    assert str(resolved.state) == "resolved" and resolved.closed_by == "ada"
    assert resolved.reason.startswith("Handled by staff on site")

    # the alarm page's own Acknowledge, reached from the board by keyboard
    store.raise_alarm(alarm("k2", "assist", branch="westside", room="front-desk",
                            device="west-front-01"))
    stops += tab_to(page, page.get_by_role("link", name="Back to the board"))
    page.keyboard.press("Enter")
    expect(page.locator("#active-list li")).to_have_count(1)
    skip_to_main(page)
    stops += tab_to(page, page.locator('#active-list li[data-alarm="k2"] .alarm-link'), limit=1)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{board.url}alarms/k2")
    skip_to_main(page)
    stops += tab_to(page, page.get_by_role("button", name="Acknowledge"), limit=1)
    page.keyboard.press("Enter")
    expect(page.locator("#alarm-facts")).to_contain_text("Acknowledged")
    assert store.get_alarm("k2").acknowledged_by == "ada"
    print(f"keyboard walk: {len(stops)} Tab stops, every one with a visible focus ring")


# --- what a screen reader hears ------------------------------------------------------------

# Every change to any live region of the page (aria-live, role status/alert/log), in order:
# [politeness, text]; one entry per region per batch of DOM changes.
RECORD_LIVE = """
window.__said = [];
const LIVE = '[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], [role="log"]';
new MutationObserver((records) => {
  const touched = new Set();
  for (const record of records) {
    const node = record.target.nodeType === 1 ? record.target : record.target.parentElement;
    const region = node && node.closest(LIVE);
    if (region) touched.add(region);
  }
  for (const region of touched) {
    const role = region.getAttribute("role");
    window.__said.push([region.getAttribute("aria-live") ||
                        (role === "alert" ? "assertive" : "polite"), region.textContent.trim()]);
  }
}).observe(document, {subtree: true, childList: true, characterData: true, attributes: false});
"""


def said(page: Page) -> list[list[str]]:
    return page.evaluate("window.__said")


def test_a_new_alarm_is_announced_once_not_on_every_refresh(page, board, store):
    page.clock.install()  # the 15 s resync is run on demand below, not waited for
    page.add_init_script(RECORD_LIVE)
    open_board(page, board.url)
    expect(page.locator("#no-active")).to_have_text("No active alarms.")
    page.evaluate("window.__said = []")  # the connection's "Live" is not an alarm

    store.raise_alarm(alarm("n1"))
    expect(page.locator("#announcer")).to_have_text("EMERGENCY at Main Library, Circulation Desk")
    first = [["assertive", "EMERGENCY at Main Library, Circulation Desk"]]
    assert said(page) == first

    def refresh(cause, shows):
        """One refresh of the board (by ``cause``) that shows ``shows``: heard nothing new."""
        with page.expect_response(lambda r: r.url.endswith("/api/board")):
            cause()
        shows()
        assert said(page) == first, f"a refresh was announced: {said(page)}"

    at = now_ms()
    circulation, reference = tile(page, "main", "circulation"), tile(page, "main", "reference")
    refresh(lambda: store.devices.set_device_status("main-ref-01", "offline", at),
            lambda: expect(reference).to_have_attribute("data-state", "offline"))
    refresh(lambda: store.transition("n1", AlarmEvent.ACKNOWLEDGE, by="ana", now_ms=at),
            lambda: expect(circulation.locator(".status-text")).to_have_text(
                "EMERGENCY · acknowledged"))
    # a change no event tells of: only the periodic resync (the poll) shows it
    store.r.sadd(f"{store.prefix}:troubles:main-child-01", "low_battery")
    refresh(lambda: page.clock.run_for(16_000),
            lambda: expect(tile(page, "main", "children")).to_have_attribute(
                "data-state", "trouble"))

    store.raise_alarm(alarm("n2", "assist", branch="westside", room="front-desk",
                            device="west-front-01"))
    second = ["polite", "Assistance needed at Westside Branch, Front Desk"]
    expect(page.locator("#announcer-polite")).to_have_text(second[1])
    assert said(page) == first + [second]
    with page.expect_response(lambda r: r.url.endswith("/api/board")):
        page.clock.run_for(16_000)
    expect(page.locator("#active-list li")).to_have_count(2)
    assert said(page) == first + [second]

    # the same room again, once the first is over: the same words, heard again (once)
    store.transition("n1", AlarmEvent.RESOLVE, by="ana", now_ms=now_ms(), reason="test over")
    store.raise_alarm(alarm("n3"))
    expect(page.locator('#active-list li[data-alarm="n3"]')).to_be_visible()
    assert said(page) == first + [second] + first
