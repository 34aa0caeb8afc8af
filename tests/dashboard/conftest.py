"""What the dashboard's browser tests share: one headless Chromium per module, and a board
wiped of what a test may leave behind (each module brings its own ``store``)."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.browserkit import launch

#: Keys a test may leave behind: everything but users, sessions and login limits.
BOARD_KEYS = ("alarm:*", "alarms:*", "timeline:*", "branch:*", "device:*", "troubles:*",
              "escalation*", "notification:*", "incident*")


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        b = launch(playwright)
        yield b
        b.close()


@pytest.fixture
def clean(store):
    """An empty board: no alarms, incidents, switches or device facts."""
    def wipe():
        for pattern in BOARD_KEYS:
            keys = list(store.r.scan_iter(f"{store.prefix}:{pattern}"))
            if keys:
                store.r.delete(*keys)
    wipe()
    yield
    wipe()
