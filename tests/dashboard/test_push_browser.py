"""The service worker in headless Chromium: a push delivered through the DevTools protocol
(ServiceWorker.deliverPushMessage) becomes a notification with "I'm responding"; that
action acknowledges the alarm once, and a tap opens the alarm page."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from dashboard import create_app
from hub.core.model import AlarmState
from hub.edges.push import payload
from hub.store.alarms import Store
from hub.store.push import PushStore, parse_subscription
from tests.browserkit import BoardServer, launch, require_chromium
from hub.app.localservices import start_redis
from tests.dashboard_login import add_user
from tests.pushkit import BrowserKeys
from tests.engine.test_escalation import Recorder, raise_alarm
from tests.engine.test_push import DESK, service_with, write_keys

pytestmark = pytest.mark.browser

NOTIFICATIONS = """async () => (await self.registration.getNotifications()).map(n => ({
  title: n.title, body: n.body, tag: n.tag, data: n.data,
  actions: n.actions.map(a => [a.action, a.title])}))"""

# Waits (up to 5 s) until the worker shows a notification: the push event is asynchronous.
SHOWN = """async () => {
  for (let i = 0; i < 100; i++) {
    if ((await self.registration.getNotifications()).length) return;
    await new Promise(r => setTimeout(r, 50));
  } }"""

CLICK = """async (action) => {
  const [n] = await self.registration.getNotifications();
  return handleClick(n, action);
}"""


@pytest.fixture
def rig(tmp_path_factory, sample_site):
    require_chromium()
    redis = start_redis(tmp_path_factory.mktemp("redis"))
    store = Store.from_url(redis.url)
    keys = write_keys(tmp_path_factory.mktemp("push"))
    add_user(store, "olive", "operator")
    server = BoardServer(create_app(sample_site, store, push_keys=keys))
    yield store, keys, server
    server.stop()
    store.r.close()
    redis.stop()


def test_a_pushed_alarm_shows_and_im_responding_acknowledges_once(rig, sample_site):
    store, keys, server = rig
    subs = PushStore(store)
    sub = parse_subscription(BrowserKeys().subscription("https://push.example/x"), DESK)
    subs.add(sub)
    service = service_with(sample_site, store, Recorder(), keys)
    alarm_id = raise_alarm(service, kind="assist")
    data = payload(store.get_alarm(alarm_id), sample_site, keys, sub, attempt=0,
                   now_ms=service.pager._now_ms())
    origin = server.url.rstrip("/")
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            context = browser.new_context()
            context.grant_permissions(["notifications"], origin=origin)
            page = context.new_page()
            page.goto(server.url + "login")  # any page of the origin registers it
            cdp = context.new_cdp_session(page)
            registrations = []
            cdp.on("ServiceWorker.workerRegistrationUpdated",
                   lambda e: registrations.extend(e["registrations"]))
            cdp.send("ServiceWorker.enable")
            page.evaluate("""async () => {
                await navigator.serviceWorker.register('/push/public/sw.js', {scope: '/'});
                await navigator.serviceWorker.ready; }""")
            worker = context.service_workers[0] if context.service_workers else \
                context.wait_for_event("serviceworker")
            registration_id = next(r["registrationId"] for r in registrations
                                   if r["scopeURL"] == server.url)

            cdp.send("ServiceWorker.deliverPushMessage", {
                "origin": origin, "registrationId": registration_id,
                "data": data.decode()})
            worker.evaluate(SHOWN)
            [shown] = worker.evaluate(NOTIFICATIONS)
            assert shown["title"] == "HAVEN Assistance needed"
            assert "Main Library, Circulation Desk" in shown["body"]
            assert shown["tag"] == alarm_id
            assert shown["actions"] == [["respond", "I'm responding"]]
            assert shown["data"]["url"] == f"/alarms/{alarm_id}"

            clicked = worker.evaluate(CLICK, "respond")
            assert clicked["answer"]["status"] == 200
            assert clicked["answer"]["body"]["acknowledged"] is True
            assert clicked["url"] == f"/alarms/{alarm_id}"
            alarm = store.get_alarm(alarm_id)
            assert alarm.state is AlarmState.ACKNOWLEDGED
            assert alarm.acknowledged_by == "Main circulation desk"
            assert worker.evaluate(NOTIFICATIONS) == []  # the click closed it

            # the same push delivered again (a replay): shown, but its action is spent
            cdp.send("ServiceWorker.deliverPushMessage", {
                "origin": origin, "registrationId": registration_id,
                "data": data.decode()})
            worker.evaluate(SHOWN)
            again = worker.evaluate(CLICK, "respond")
            assert again["answer"]["status"] == 409
            acks = [e for e in store.timeline(alarm_id) if e["event"] == "acknowledged"]
            assert len(acks) == 1
            # a plain tap opens the alarm page (from a real tap only: the browser decides)
            tap = worker.evaluate("""async () => {
                await self.registration.showNotification('t', {data: {url: '/alarms/x'}});
                const [n] = await self.registration.getNotifications();
                return handleClick(n, ''); }""")
            assert tap["respond"] is False and tap["answer"] is None
            assert tap["url"] == "/alarms/x"
        finally:
            browser.close()
