"""Floor plans in headless Chromium: the board lights the alarm's room on its plan live and
marks an occupied safe room; the alarm page and the public plan page draw the same; each
is screenshot (tests/artifacts/plan-*.png) and fits a tablet without sideways scrolling."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from dashboard import create_app
from dashboard.users import Users
from hub.app.localservices import start_redis
from hub.config.site import load_site, parse_site
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm
from hub.core.planlink import PlanLinks
from hub.store import Store
from tests.browserkit import (ARTIFACTS, DESKTOP, LAYOUT_PROBLEMS, BoardServer, log_in_with_form,
                              open_board, screenshot)
from tests.conftest import SAMPLE_SITE

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"
TABLET = {"width": 768, "height": 1024}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    service = start_redis(tmp_path_factory.mktemp("redis"))
    s = Store.from_url(service.url)
    Users(s, hash_method="pbkdf2:sha256:1000").add("olive", PASSWORD, "operator")
    yield s
    s.r.close()
    service.stop()


@pytest.fixture(scope="module")
def board(store):
    links = PlanLinks("http://placeholder", "p" * 40)
    server = BoardServer(create_app(load_site(SAMPLE_SITE), store, secret_key="b" * 40,
                                    plan_links=links,
                                    test_config={"HAVEN_SSE_HEARTBEAT_S": 0.5}))
    server.links = PlanLinks(server.url.rstrip("/"), "p" * 40)  # same secret, real address
    yield server
    server.stop()


@pytest.fixture(scope="module")
def logged_in(browser, board):
    return log_in_with_form(browser, board.url, "olive", PASSWORD)


def alarm(alarm_id: str, kind: str, room: str, device: str) -> Alarm:
    at = time.time_ns() // 1_000_000
    return Alarm(id=alarm_id, kind=kind, device=device, branch="main", room=room,
                 pressed_at_ms=at - 40, received_at_ms=at)


def room_on_plan(page, room: str):
    return page.locator(f'.plan[data-branch="main"] .plan-room[data-room="{room}"]')


def test_the_plan_lights_the_alarm_live_and_the_link_shows_it_until_resolved(
        browser, logged_in, board, store):
    context = browser.new_context(storage_state=logged_in, viewport=DESKTOP)
    page = context.new_page()
    open_board(page, board.url)
    circulation = room_on_plan(page, "circulation")
    expect(circulation).to_have_attribute("data-state", "quiet")
    expect(page.locator(".plan figcaption .plan-lit")).to_have_text(
        "Nothing active on this floor.")
    plan_image = page.locator('.plan image')
    assert page.evaluate("(url) => fetch(url).then((r) => r.status)",
                         plan_image.get_attribute("href")) == 200

    store.raise_alarm(alarm("e1", "emergency", "circulation", "main-circ-01"))
    store.raise_alarm(alarm("s1", "safe_room", "safe-room", "main-safe-01"))

    expect(circulation).to_have_attribute("data-state", "emergency", timeout=2000)
    expect(circulation.locator(".plan-label")).to_have_text("EMERGENCY")
    safe = room_on_plan(page, "safe-room")
    expect(safe).to_have_attribute("data-occupied", "true")
    expect(page.locator(".plan .plan-lit")).to_contain_text("EMERGENCY: Circulation Desk")
    expect(page.locator(".plan .plan-lit")).to_contain_text("Staff sheltering in Safe Room")
    lit = circulation.locator(".plan-shape").evaluate("(n) => getComputedStyle(n).fill")
    quiet = room_on_plan(page, "children").locator(".plan-shape").evaluate(
        "(n) => getComputedStyle(n).fill")
    assert lit != quiet and "0, 0, 0, 0" not in lit, (lit, quiet)  # lit, in colour
    assert page.evaluate("() => document.querySelector('.plan image').getBBox().width") > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # the figure alone, for the docs
    page.locator(".plan").first.screenshot(path=str(ARTIFACTS / "plan-board.png"),
                                           animations="disabled")
    screenshot(page, "plan-board-page")

    page.goto(f"{board.url}alarms/e1")
    expect(room_on_plan(page, "circulation")).to_have_attribute("data-focus", "true")
    expect(room_on_plan(page, "circulation")).to_have_attribute("data-state", "emergency")
    link = page.locator(".plan-link a")
    token_url = link.get_attribute("href")
    screenshot(page, "plan-alarm-page")

    public = browser.new_context(viewport=TABLET)  # a responder's phone: no login
    phone = public.new_page()
    responder_url = board.links.url("e1")
    assert token_url.endswith(responder_url.split("/p/", 1)[1])
    phone.goto(responder_url)
    expect(phone.locator("h1")).to_have_text("EMERGENCY: Main Library, Circulation Desk")
    expect(room_on_plan(phone, "circulation")).to_have_attribute("data-state", "emergency")
    expect(phone.locator(".public-state")).to_contain_text("Staff sheltering in Safe Room")
    expect(phone.locator(".site-nav")).to_have_count(0)
    assert phone.evaluate(LAYOUT_PROBLEMS) == []
    screenshot(phone, "plan-public")

    store.transition("e1", AlarmEvent.RESOLVE, by="olive", now_ms=time.time_ns() // 10**6,
                     reason="handled")
    response = phone.goto(responder_url)
    assert response.status == 410
    expect(phone.locator("body")).to_contain_text("This alarm is over")
    expect(phone.locator(".plan")).to_have_count(0)
    public.close()
    context.close()


def test_the_board_with_a_plan_fits_a_tablet(browser, logged_in, board):
    context = browser.new_context(storage_state=logged_in, viewport=TABLET)
    page = context.new_page()
    open_board(page, board.url)
    expect(page.locator(".plan")).to_be_visible()
    assert page.evaluate(LAYOUT_PROBLEMS) == []
    context.close()


def test_an_admin_places_a_room_by_clicking_and_the_snippet_loads(browser, board, store):
    Users(store, hash_method="pbkdf2:sha256:1000").add("ari", PASSWORD, "admin")
    context = browser.new_context(storage_state=log_in_with_form(browser, board.url, "ari",
                                                                 PASSWORD),
                                 viewport={"width": 1280, "height": 1600})  # the whole plan
    page = context.new_page()
    page.goto(f"{board.url}branches")
    page.get_by_role("link", name="Place rooms on the Ground floor plan").click()
    snippet = page.locator("#place-snippet")
    expect(snippet).to_have_value(re.compile(
        re.escape("area = [[300, 330], [500, 330], [500, 490], [300, 490]]")))
    page.get_by_label("Room").select_option("reference")
    page.get_by_role("button", name="Clear this room").click()

    def on_screen(x: float, y: float) -> list[float]:  # plan units -> the page, as drawn
        return page.evaluate("([x, y]) => { const m = document.querySelector('.plan-svg')"
                             ".getScreenCTM(); return [m.a * x + m.e, m.d * y + m.f]; }", [x, y])

    def click(x: float, y: float) -> None:
        page.mouse.click(*on_screen(x, y))

    for corner in ((520, 260), (780, 260), (780, 480), (520, 480)):
        click(*corner)
    handle = page.locator(".place-handle").nth(2)  # drag the third corner up to y 400
    handle.hover()
    page.mouse.down()
    page.mouse.move(*on_screen(780, 400), steps=5)
    page.mouse.up()
    lines = snippet.input_value().split("\n")
    start = lines.index('# Reference Desk (id = "reference")')
    assert lines[start + 1] == 'floor = "ground"'
    area = lines[start + 2]
    corners = json.loads(area.removeprefix("area = "))
    for got, want in zip(corners, ((520, 260), (780, 260), (780, 400), (520, 480))):
        assert abs(got[0] - want[0]) <= 2 and abs(got[1] - want[1]) <= 2, (corners, want)
    text = SAMPLE_SITE.read_text().replace(
        "area = [[500, 250], [790, 250], [790, 490], [500, 490]]", f'floor = "ground"\n{area}')
    site = parse_site(text, "site.toml", SAMPLE_SITE.parent)
    placed = site.branches["main"].floors[0].placement("reference").points
    assert [list(map(int, p)) for p in placed] == corners   # what was copied is what loads
    page.get_by_label("Room").select_option("workroom")  # its mode comes with it: area
    expect(page.get_by_label("Area: click its corners")).to_be_checked()
    page.get_by_label("Point: click once").check()
    click(590, 130)
    expect(snippet).to_have_value(re.compile(r'id = "workroom"\)\nfloor = "ground"\n'
                                             r"at = \[590, 130\]"))
    screenshot(page, "plan-place")
    context.close()
