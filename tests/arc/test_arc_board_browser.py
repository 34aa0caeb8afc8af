"""The board in headless Chromium shows a monitoring-centre receiver that stops answering
(hub.arc) as a line above the tiles, live from the ``arc.trouble`` event, and drops it on
``arc.ok``."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from dashboard import create_app
from dashboard.users import Users
from hub.arc.queue import ArcQueue
from hub.app.localservices import start_redis
from hub.store.alarms import Store
from tests.arc_kit import arc_site, free_port
from tests.browserkit import DESKTOP, BoardServer, launch, log_in_with_form, open_board

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


def test_a_silent_receiver_shows_on_the_board_live_and_goes_when_it_answers(tmp_path):
    redis_service = start_redis(tmp_path / "redis")
    store = Store.from_url(redis_service.url)
    Users(store, hash_method="pbkdf2:sha256:1000").add("olive", PASSWORD, "operator")
    site = arc_site(free_port())
    server = BoardServer(create_app(site, store, secret_key="arc-browser-" + "0" * 32,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            context = browser.new_context(
                storage_state=log_in_with_form(browser, server.url, "olive", PASSWORD),
                viewport=DESKTOP)
            page = context.new_page()
            open_board(page, server.url)
            line = page.locator("#arc-trouble")
            expect(line).to_be_hidden()
            queue = ArcQueue(site, store, clock=lambda: 0.0)
            queue.trouble_raised("primary", 1_700_000_000_000, "link test: none")
            expect(line).to_be_visible(timeout=3000)
            expect(line).to_contain_text("Monitoring centre: primary receiver not answering")
            queue.trouble_cleared("primary", 1_700_000_060_000)
            expect(line).to_be_hidden(timeout=3000)
            browser.close()
    finally:
        server.stop()
        store.r.close()
        redis_service.stop()
