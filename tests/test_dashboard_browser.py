"""The board in headless Chromium: live alarms arrive, and a dropped stream resynchronises."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from dashboard import create_app
from dashboard.serve import make_server, stop
from hub.model import Alarm

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


class BoardServer:
    """The dashboard served by waitress in a thread; can be stopped and started again."""

    def __init__(self, app):
        self.app = app
        self.port = 0  # any free port at first, then the same one again
        self.start()

    def start(self) -> None:
        self.server = make_server(self.app, "127.0.0.1", self.port, threads=8)
        self.port = int(self.server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        stop(self.server)
        self.thread.join(5)
        assert not self.thread.is_alive(), "the waitress loop did not stop"


@pytest.fixture
def board(sample_site, store):
    server = BoardServer(create_app(sample_site, store,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
    yield server
    server.stop()


@pytest.fixture
def page():
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests "
                        f"(apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run browser tests")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page()
        finally:
            browser.close()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def emergency(alarm_id: str, at_ms: int) -> Alarm:
    return Alarm(id=alarm_id, kind="emergency", device="main-circ-01", branch="main",
                 room="circulation", pressed_at_ms=at_ms - 40, received_at_ms=at_ms)


def open_live_board(page: Page, url: str):
    page.goto(url)
    expect(page.locator("#connection")).to_have_attribute("data-conn", "live")
    return page.locator('.tile[data-branch="main"][data-room="circulation"]')


def test_a_raised_alarm_shows_on_the_board_within_a_second(page, board, store):
    tile = open_live_board(page, board.url)
    expect(tile).to_have_attribute("data-state", "quiet")
    expect(tile).to_contain_text("Quiet")
    safe = page.locator('.tile[data-branch="westside"][data-room="safe-room"]')
    expect(safe).to_have_attribute("data-safe-room", "true")
    expect(safe).to_contain_text("Safe room")
    expect(page.locator("#no-active")).to_have_text("No active alarms.")

    store.raise_alarm(emergency("e1", at_ms=now_ms()))

    expect(tile).to_have_attribute("data-state", "emergency", timeout=1000)
    expect(tile).to_contain_text("EMERGENCY")
    live = page.locator('[aria-live="assertive"]')
    expect(live).to_contain_text("Main Library", timeout=1000)
    expect(live).to_contain_text("Circulation Desk")
    first = page.locator("#active-list li").first
    expect(first).to_contain_text("EMERGENCY")
    expect(first).to_contain_text("Main Library, Circulation Desk")
    expect(first).to_contain_text("main-circ-01")
    expect(page.locator('.branch[data-branch="main"]')).to_have_attribute("data-active", "true")
    westside = page.locator('.branch[data-branch="westside"]')
    expect(westside).to_have_attribute("data-active", "false")
    expect(tile.locator("time.elapsed")).to_have_text("0:01", timeout=3000)  # counts up


def test_the_board_resynchronises_after_the_stream_drops(page, board, store):
    tile = open_live_board(page, board.url)
    expect(tile).to_have_attribute("data-state", "quiet")

    board.stop()  # the stream drops; the page notices
    expect(page.locator("#connection")).to_have_attribute("data-conn", "reconnecting")
    store.raise_alarm(emergency("e2", at_ms=now_ms()))  # no one is listening
    board.start()

    # the browser reconnects after the stream's retry (2 s), then fetches a snapshot
    expect(tile).to_have_attribute("data-state", "emergency", timeout=5000)
    expect(page.locator("#connection")).to_have_attribute("data-conn", "live")
    expect(page.locator('[aria-live="assertive"]')).to_contain_text("Circulation Desk")
