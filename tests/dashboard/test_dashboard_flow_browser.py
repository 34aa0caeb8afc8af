"""The whole stack in headless Chromium, as an operator uses it: log in; a press on a simulated
device (mock pin -> device firmware -> mosquitto -> hub process -> redis-server -> dashboard
-> SSE) turns the right tile to emergency within 2 s; acknowledge and resolve from the alarm
page; a drill switched on the branch page shows on the board; a stopped device shows offline;
after a dropped event stream the page catches up. Screenshots of the board (quiet, alarm,
drill) go to tests/artifacts/.

One stack and one browser for the module; an admin logs in through the real form once.
Each test uses its own rooms and leaves the board as it found it (quiet, no drill).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from gpiozero.pins.mock import MockFactory
from playwright.sync_api import expect

from dashboard import create_app
from dashboard.users import Users
from device.config import BrokerConfig, DeviceConfig, InputConfig
from device.firmware import DeviceApp
from hub.core.lifecycle import AlarmEvent
from hub.app.localservices import LocalService, start_mosquitto, start_redis
from hub.config.site import load_site
from hub.store.alarms import Store
from tests.browserkit import (DESKTOP, BoardServer, log_in_with_form, open_board,
                              screenshot, tile)
from tests.conftest import SAMPLE_SITE
from tests.hubproc import start_hub

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
#: A wall button whose single press is an emergency (no hold, no waiting for a second press).
PANIC = (("press", "emergency"),)


@dataclass
class Stack:
    mosquitto: LocalService
    redis: LocalService
    store: Store
    board: BoardServer
    pins: MockFactory
    hub_log: object


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    mosquitto = start_mosquitto(tmp / "mosquitto")
    redis_service = start_redis(tmp / "redis")
    hub = None
    store = Store.from_url(redis_service.url)
    board = None
    pins = MockFactory()
    try:
        hub = start_hub(tmp / "hub.log", mosquitto, redis_service, site=SAMPLE_SITE)
        Users(store, hash_method="pbkdf2:sha256:1000").add("ada", PASSWORD, "admin")
        board = BoardServer(create_app(load_site(SAMPLE_SITE), store,
                                       test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
        yield Stack(mosquitto, redis_service, store, board, pins, tmp / "hub.log")
    finally:
        pins.close()
        if board is not None:
            board.stop()
        if hub is not None:
            hub.terminate()
            hub.wait(10)
        store.r.close()
        redis_service.stop()
        mosquitto.stop()


#: Every device of the sample site, on its own mock pin.
PINS = {"main-circ-01": 17, "main-ref-01": 18, "main-child-01": 19, "main-work-01": 20,
        "main-safe-01": 21, "west-front-01": 22, "west-safe-01": 23}


@pytest.fixture(scope="module")
def devices(stack):
    """Every device of the site running and heard online, as on a real quiet day."""
    apps = {device_id: start_device(stack, device_id, pin) for device_id, pin in PINS.items()}
    yield apps
    for app in apps.values():
        app.stop()


@pytest.fixture(scope="module")
def logged_in(browser, stack):
    return log_in_with_form(browser, stack.board.url, "ada", PASSWORD)


@pytest.fixture
def page(browser, logged_in, devices):
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    yield context.new_page()
    context.close()


def start_device(stack: Stack, device_id: str, pin: int) -> DeviceApp:
    """The device firmware on a mock pin, connected to the stack's broker and heard online."""
    config = DeviceConfig(device_id, BrokerConfig("127.0.0.1", stack.mosquitto.port),
                          inputs=(InputConfig(pin, "button", PANIC),), outbox=":memory:")
    app = DeviceApp(config, pin_factory=stack.pins)
    app.start()
    assert app.connected.wait(5), f"{device_id} did not connect"
    deadline = time.monotonic() + 5
    while stack.store.devices.device_status(device_id).get("state") != "online":
        assert time.monotonic() < deadline, f"the hub never heard {device_id} online"
        time.sleep(0.02)
    return app


def press(stack: Stack, pin: int) -> None:
    stack.pins.pin(pin).drive_low()
    time.sleep(0.05)  # longer than the firmware's 30 ms debounce
    stack.pins.pin(pin).drive_high()


def active_ids(stack: Stack, room: str) -> list[str]:
    return [a.id for a in stack.store.active_alarms() if a.room == room]


def resolve_all(stack: Stack, room: str) -> None:
    for alarm_id in active_ids(stack, room):
        stack.store.transition(alarm_id, AlarmEvent.RESOLVE, by="test cleanup",
                               now_ms=int(time.time() * 1000), reason="test over")


def test_a_press_turns_the_tile_to_emergency_within_2s_then_ack_and_resolve_on_the_alarm_page(
        page, stack):
    try:
        open_board(page, stack.board.url)
        circulation = tile(page, "main", "circulation")
        expect(circulation).to_have_attribute("data-state", "quiet")
        expect(page.locator("#no-active")).to_have_text("No active alarms.")
        screenshot(page, "board-quiet")

        pressed = time.monotonic()
        press(stack, PINS["main-circ-01"])
        expect(circulation).to_have_attribute("data-state", "emergency", timeout=2000)
        took = time.monotonic() - pressed
        assert took < 2.0, f"the tile turned after {took:.2f} s"
        print(f"press to emergency tile: {took * 1000:.0f} ms")
        expect(circulation.locator(".status-text")).to_have_text("EMERGENCY")
        expect(page.locator('[aria-live="assertive"]')).to_have_text(
            "EMERGENCY at Main Library, Circulation Desk")
        expect(tile(page, "main", "reference")).to_have_attribute("data-state", "quiet")
        expect(circulation.locator("time.elapsed")).to_have_text("0:01", timeout=3000)
        screenshot(page, "board-alarm")

        # the operator follows the tile's link to the alarm page and acknowledges there
        [alarm_id] = active_ids(stack, "circulation")
        circulation.get_by_role("link", name="Open alarm").first.click()
        expect(page).to_have_url(f"{stack.board.url}alarms/{alarm_id}")
        page.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("main")).to_contain_text("Acknowledged")
        assert stack.store.get_alarm(alarm_id).acknowledged_by == "ada"

        page.goto(stack.board.url)
        expect(circulation.locator(".status-text")).to_have_text("EMERGENCY · acknowledged")
        expect(page.locator("#active-list li").first).to_contain_text("Acknowledged by ada")

        page.goto(f"{stack.board.url}alarms/{alarm_id}")
        page.get_by_label("Outcome").select_option("handled_by_staff")
        page.get_by_label("Note").fill("Patron calmed down and left; no injuries.")
        page.get_by_role("button", name="Resolve").click()
        expect(page.locator("main")).to_contain_text("Resolved")
        assert str(stack.store.get_alarm(alarm_id).state) == "resolved"

        page.goto(stack.board.url)
        expect(circulation).to_have_attribute("data-state", "quiet")
        expect(page.locator("#no-active")).to_have_text("No active alarms.")
    finally:
        resolve_all(stack, "circulation")


def test_a_drill_switched_on_the_branch_page_shows_on_the_board(page, stack):
    open_board(page, stack.board.url)
    front_desk = tile(page, "westside", "front-desk")
    expect(front_desk).to_have_attribute("data-state", "quiet")

    page.goto(f"{stack.board.url}branches")
    westside = page.locator('.branch-card[data-branch="westside"]')
    westside.get_by_label("Minutes").fill("20")
    westside.get_by_role("button", name="Start drill").click()
    expect(westside.get_by_role("button", name="End drill")).to_be_visible()
    try:
        page.goto(stack.board.url)
        expect(front_desk).to_have_attribute("data-state", "drill")
        expect(front_desk.locator(".status-text")).to_have_text("Drill in progress")
        expect(front_desk.locator(".drill-tag")).to_contain_text("DRILL until")
        expect(tile(page, "westside", "safe-room").locator(".drill-tag")).to_be_visible()
        expect(tile(page, "main", "circulation").locator(".drill-tag")).to_be_hidden()
        screenshot(page, "board-drill")
    finally:
        page.goto(f"{stack.board.url}branches")
        westside.get_by_role("button", name="End drill").click()
        expect(westside.get_by_role("button", name="Start drill")).to_be_visible()

    page.goto(stack.board.url)
    expect(front_desk).to_have_attribute("data-state", "quiet")
    expect(front_desk.locator(".drill-tag")).to_be_hidden()


def test_a_stopped_device_shows_offline_without_a_reload(page, stack, devices):
    open_board(page, stack.board.url)
    workroom = tile(page, "main", "workroom")
    expect(workroom).to_have_attribute("data-state", "quiet")

    devices["main-work-01"].stop()  # a clean stop says "offline" (a crash: the Last Will)

    expect(workroom).to_have_attribute("data-state", "offline", timeout=3000)
    expect(workroom.locator(".status-text")).to_have_text("Device offline")
    expect(workroom.locator(".troubles")).to_contain_text("main-work-01: offline")

    devices["main-work-01"] = start_device(stack, "main-work-01", PINS["main-work-01"])
    expect(workroom).to_have_attribute("data-state", "quiet")  # back: clears by itself


def test_after_a_dropped_event_stream_the_page_catches_up(page, stack):
    try:
        open_board(page, stack.board.url)
        reference = tile(page, "main", "reference")
        expect(reference).to_have_attribute("data-state", "quiet")

        stack.board.stop()  # the dashboard goes away: the stream drops
        try:
            expect(page.locator("#connection")).to_have_attribute("data-conn", "reconnecting")
            press(stack, PINS["main-ref-01"])  # the hub stores it; no board is listening
            deadline = time.monotonic() + 3
            while not active_ids(stack, "reference"):
                assert time.monotonic() < deadline, stack.hub_log.read_text()
                time.sleep(0.02)
        finally:
            stack.board.start()

        # the browser reconnects after the stream's retry (2 s) and fetches a snapshot
        expect(reference).to_have_attribute("data-state", "emergency", timeout=6000)
        expect(page.locator("#connection")).to_have_attribute("data-conn", "live")
        expect(page.locator('[aria-live="assertive"]')).to_contain_text("Reference Desk")
    finally:
        resolve_all(stack, "reference")
