"""Shared parts of the browser tests: the served dashboard, the system Chromium, logging in
through the real form, layout checks and screenshots.

One browser per test module (``launch``); each test gets a fresh context made from
the module's logged-in storage state (``log_in_with_form``), so a test costs a
page load, not a browser start and a password hash.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.serve import make_server, stop

ROOT = Path(__file__).resolve().parents[1]
#: Screenshots land here (gitignored): the CI job keeps them as artifacts.
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: A desktop board, as in the screenshots.
DESKTOP = {"width": 1280, "height": 900}

# Records what the page does with WebAudio and Notification, without faking either:
# the real objects still run; the test reads window.__tones and window.__notes.
RECORD_ALERTS = """
window.__tones = 0;
window.__notes = [];
const realStart = OscillatorNode.prototype.start;
OscillatorNode.prototype.start = function (...args) {
  window.__tones += 1;
  return realStart.apply(this, args);
};
if (window.Notification) {
  const Real = window.Notification;
  window.Notification = class extends Real {
    constructor(title, options) {
      super(title, options);
      window.__notes.push({title, body: (options || {}).body, tag: (options || {}).tag});
    }
  };
}
"""


class BoardServer:
    """The dashboard served by waitress in a thread; can be stopped and started again
    on the same port (a dropped stream, then the server back)."""

    def __init__(self, app):
        self.app = app
        self.port = 0  # any free port at first, then the same one again
        self.start()

    def start(self) -> None:
        self.server = make_server(self.app, "127.0.0.1", self.port, threads=16)
        self.port = int(self.server.effective_port)
        self.url = f"http://127.0.0.1:{self.port}/"
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        stop(self.server)
        self.thread.join(5)
        assert not self.thread.is_alive(), "the waitress loop did not stop"


def require_chromium() -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests "
                        f"(apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium to run browser tests")


def launch(playwright) -> Browser:
    require_chromium()
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def log_in_with_form(browser: Browser, board_url: str, name: str, password: str) -> dict:
    """Open the board logged out, get sent to the login form, log in there; returns the
    storage state (the session cookie) for the module's other contexts."""
    context = browser.new_context(viewport=DESKTOP)
    try:
        page = context.new_page()
        page.goto(board_url)
        expect(page).to_have_url(f"{board_url}login?next=/")
        page.get_by_label("Username").fill(name)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(board_url)
        expect(page.locator("#connection")).to_have_attribute("data-conn", "live")
        expect(page.locator(".site-nav")).to_contain_text(name)
        return context.storage_state()
    finally:
        context.close()


def open_board(page: Page, url: str) -> None:
    page.goto(url)
    expect(page.locator("#connection")).to_have_attribute("data-conn", "live")


def tile(page: Page, branch: str, room: str):
    return page.locator(f'.tile[data-branch="{branch}"][data-room="{room}"]')


def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot at ``tests/artifacts/<name>.png``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


# Every problem with the layout at the current viewport, as words: the page scrolls
# sideways, an element sticks out past the right edge, or an element that hides its
# overflow holds more text than it shows.
LAYOUT_PROBLEMS = """
() => {
  const problems = [];
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth) {
    problems.push(`page scrolls sideways: ${doc.scrollWidth} > ${doc.clientWidth} px`);
  }
  for (const node of document.body.querySelectorAll("*")) {
    if (node.closest(".visually-hidden, [hidden], .skip-link")) continue;
    const rect = node.getBoundingClientRect();
    if (!rect.width && !rect.height) continue;
    const what = `${node.tagName.toLowerCase()}.${node.className.baseVal ?? node.className}` +
      ` "${(node.textContent || "").trim().slice(0, 40)}"`;
    if (rect.right > doc.clientWidth + 0.5 || rect.left < -0.5) {
      problems.push(`${what} sticks out: ${rect.left}..${rect.right} of ${doc.clientWidth}`);
    }
    const style = getComputedStyle(node);
    const hides = (v) => v !== "visible";
    if ((hides(style.overflowX) && node.scrollWidth > node.clientWidth + 1) ||
        (hides(style.overflowY) && node.scrollHeight > node.clientHeight + 1)) {
      problems.push(`${what} clips its text`);
    }
  }
  return problems;
}
"""
