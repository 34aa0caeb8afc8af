"""Plan links (hub.core.planlink, dashboard.plans): a capability URL to one alarm's floor plan.

The token opens that alarm only, nothing else; it stops opening when the alarm is resolved
or cancelled; a responder's text carries it only when IT set it up and the room is on a
plan; the page shows the plan and the alarm's kind and place, no other data."""

from __future__ import annotations

import re
import time

import pytest

from dashboard import create_app
from hub.errors import ConfigError
from hub.config.planlinks import plan_links_from_env
from hub.core.escalation import plan
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm
from hub.core.planlink import MAC_CHARS, PlanLinks, plan_url
from tests.dashboard_login import logged_in_client

SECRET = "s" * 40
LINKS = PlanLinks("https://haven.example.org", SECRET)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def alarm(alarm_id: str, kind: str = "emergency", branch: str = "main",
          room: str = "circulation", device: str = "main-circ-01") -> Alarm:
    at = now_ms()
    return Alarm(id=alarm_id, kind=kind, device=device, branch=branch, room=room,
                 pressed_at_ms=at - 40, received_at_ms=at)


# --- the token ---------------------------------------------------------------------

def test_a_token_opens_its_own_alarm_and_no_other():
    token = LINKS.token("1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    assert LINKS.alarm_id(token) == "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    alarm_id, mac = token.rsplit(".", 1)
    assert len(mac) == MAC_CHARS
    other = LINKS.token("a2")
    assert LINKS.alarm_id(f"a2.{mac}") is None                   # a MAC moved to another alarm
    assert LINKS.alarm_id(f"{alarm_id}.{other.rsplit('.', 1)[1]}") is None
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    assert LINKS.alarm_id(f"{alarm_id}.{flipped}") is None       # one character changed
    assert PlanLinks(LINKS.base_url, "t" * 40).alarm_id(token) is None  # another secret
    for junk in ("", ".", alarm_id, f"{alarm_id}.", f"../x.{mac}", f"{alarm_id}.{mac}x"):
        assert LINKS.alarm_id(junk) is None
    assert LINKS.url("a2") == f"https://haven.example.org/p/{other}"
    with pytest.raises(ValueError):
        LINKS.token("a/b")


@pytest.mark.parametrize("env, variable, problem", [
    ({"HAVEN_PLAN_LINK_URL": "https://h.example.org"}, "HAVEN_PLAN_LINK_SECRET", "missing"),
    ({"HAVEN_PLAN_LINK_SECRET": SECRET}, "HAVEN_PLAN_LINK_URL", "missing"),
    ({"HAVEN_PLAN_LINK_URL": "https://h.example.org", "HAVEN_PLAN_LINK_SECRET": "short"},
     "HAVEN_PLAN_LINK_SECRET", "is 5 characters; use at least 32"),
    ({"HAVEN_PLAN_LINK_URL": "haven.example.org", "HAVEN_PLAN_LINK_SECRET": SECRET},
     "HAVEN_PLAN_LINK_URL", "must be a URL such as https://"),
])
def test_the_settings_are_both_or_neither_and_checked(env, variable, problem):
    assert plan_links_from_env({}) is None
    with pytest.raises(ConfigError) as err:
        plan_links_from_env(env)
    (found,) = err.value.problems
    assert found.field == variable and problem in found.problem
    links = plan_links_from_env({"HAVEN_PLAN_LINK_URL": "https://h.example.org/",
                                 "HAVEN_PLAN_LINK_SECRET": SECRET})
    assert links.base_url == "https://h.example.org" and SECRET not in repr(links)


# --- the texts ---------------------------------------------------------------------

def test_only_responders_texts_carry_the_link_and_only_for_a_room_on_a_plan(sample_site):
    a = alarm("a1")
    url = plan_url(LINKS, sample_site, a)
    assert url == LINKS.url("a1")
    assert plan_url(None, sample_site, a) is None
    assert plan_url(LINKS, sample_site, alarm("w1", branch="westside", room="front-desk",
                                              device="west-front-01")) is None
    steps = sample_site.kinds["emergency"].steps
    pages = plan(sample_site, a, steps, 0, drill=False, plan_url=url)
    texts = {p.contact.name: p.text for p in pages if p.ref}
    assert texts["Police dispatch (non-emergency line)"].endswith(f"-1. Plan: {url}")
    assert texts["Main circulation desk"].endswith(f" Plan: {url}")
    assert url not in texts["Dana Ortiz (branch manager)"]   # a manager does not come
    assert not any(url in p.text for p in pages if not p.ref)  # calls never read it out
    assert not any("Plan:" in p.text
                   for p in plan(sample_site, a, steps, 0, drill=False, plan_url=None))


# --- the pages ---------------------------------------------------------------------

@pytest.fixture
def app(sample_site, fake_store):
    return create_app(sample_site, fake_store, plan_links=LINKS)


def test_the_link_opens_the_plan_without_a_login_until_the_alarm_is_resolved(app, fake_store):
    fake_store.raise_alarm(alarm("a1"))
    fake_store.raise_alarm(alarm("s1", "safe_room", room="safe-room", device="main-safe-01"))
    client = app.test_client()
    token = LINKS.token("a1")
    page = client.get(f"/p/{token}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "EMERGENCY: Main Library, Circulation Desk" in html
    assert re.search(r'data-room="circulation"\s+data-state="emergency"', html)
    assert re.search(r'data-room="circulation"[^>]*data-focus="true"', html)
    assert re.search(r'data-room="safe-room"[^>]*data-occupied="true"', html)
    assert "Staff sheltering in Safe Room" in html
    for private in ("main-circ-01", "+1206", "Dana", "a1", "csrf"):  # no other data
        assert private not in html.replace(token, ""), private
    assert page.headers["Cache-Control"] == "no-store"
    assert "haven_session" not in page.headers.get("Set-Cookie", "")
    image = client.get(f"/p/{token}/ground")
    assert image.status_code == 200 and image.mimetype == "image/svg+xml"
    assert "sandbox" in image.headers["Content-Security-Policy"]
    assert b"<svg" in image.data

    fake_store.transition("a1", AlarmEvent.RESOLVE, by="olive", now_ms=now_ms(),
                          reason="handled")
    gone = client.get(f"/p/{token}")
    assert gone.status_code == 410 and "This alarm is over" in gone.get_data(as_text=True)
    assert "Set-Cookie" not in gone.headers and "Log out" not in gone.get_data(as_text=True)
    assert client.get(f"/p/{token}/ground").status_code == 410


def test_a_link_opens_nothing_else(app, fake_store, sample_site):
    fake_store.raise_alarm(alarm("a1"))
    fake_store.raise_alarm(alarm("w1", branch="westside", room="front-desk",
                                 device="west-front-01"))
    client = app.test_client()
    token = LINKS.token("a1")
    forged = PlanLinks(LINKS.base_url, "x" * 40).token("a1")
    assert client.get(f"/p/{forged}").status_code == 404            # not our signature
    assert client.get(f"/p/{LINKS.token('nope')}").status_code == 404   # no such alarm
    assert client.get(f"/p/{LINKS.token('w1')}").status_code == 404     # no plan there
    assert client.get(f"/p/{token}/upper").status_code == 404          # not its floor
    assert client.get(f"/p/{token}/../../api/board").status_code in (302, 401, 404)
    for path in ("/api/board", "/alarms/a1", "/plans/main/ground", "/"):  # still need a login
        assert client.get(path).status_code in (302, 401), path
    without = create_app(sample_site, fake_store)                        # links not set up
    assert without.test_client().get(f"/p/{token}").status_code == 404


def test_the_board_and_the_alarm_page_draw_the_plan(app, fake_store):
    fake_store.raise_alarm(alarm("a1", "assist", room="reference", device="main-ref-01"))
    client = logged_in_client(app, fake_store)
    board = client.get("/").get_data(as_text=True)
    assert board.count('class="plan"') == 1 and 'data-branch="main" data-floor="ground"' in board
    assert board.count('class="plan-room"') == 5                      # every main room placed
    assert '<image href="/plans/main/ground"' in board
    assert 'class="tile" data-branch="westside"' in board             # westside: tiles only
    assert client.get("/plans/main/ground").status_code == 200
    assert client.get("/plans/main/attic").status_code == 404
    page = client.get("/alarms/a1").get_data(as_text=True)
    assert 'id="alarm-plan"' in page
    assert re.search(r'data-room="reference"\s+data-state="assist"[^>]*data-focus="true"', page)
    assert "Assistance needed: Reference Desk" in page
    assert f'href="{LINKS.url("a1")}"' in page
    fake_store.transition("a1", AlarmEvent.RESOLVE, by="olive", now_ms=now_ms(),
                          reason="handled")
    page = client.get("/alarms/a1").get_data(as_text=True)
    assert 'id="alarm-plan"' in page and LINKS.url("a1") not in page  # no link once over
