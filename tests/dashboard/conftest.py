"""What the dashboard's tests share: an app on fakeredis with an operator and an admin
logged in; for the browser tests, one headless Chromium per module and a board wiped of
what a test may leave behind (each browser module brings its own ``store``). A module
defining one of these fixtures itself uses its own."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from dashboard import create_app
from tests.browserkit import launch
from tests.dashboard_login import logged_in_client

#: Keys a test may leave behind: everything but users, sessions and login limits.
BOARD_KEYS = ("alarm:*", "alarms:*", "timeline:*", "branch:*", "device:*", "troubles:*",
              "escalation*", "notification:*", "incident*")


@pytest.fixture
def app(sample_site, fake_store):
    return create_app(sample_site, fake_store)


@pytest.fixture
def operator(app, fake_store):
    return logged_in_client(app, fake_store, "olive", "operator")


@pytest.fixture
def admin(app, fake_store):
    return logged_in_client(app, fake_store, "ari", "admin")


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
