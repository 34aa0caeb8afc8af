"""Web Push, the second route (hub.edges.push, hub.engine.push_route, dashboard.push): what leaves the
hub decrypts with the subscription's keys at a local push service; a gone subscription is
removed; the SMS provider down still reaches the contact by push (and a push that cannot
go is texted); "I'm responding" acknowledges exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dashboard import create_app
from hub.config.push_keys import load_push_keys, make_push_keys
from hub.config.site import Step, load_site
from hub.core.escalation import plan
from hub.core.model import AlarmState, Channel, Delivery, PageKey
from hub.edges.push import PushNotifier, action_token, read_action_token
from hub.store.push import PushStore, parse_subscription
from tests.conftest import write_site
from tests.dashboard_login import log_in
from tests.pushkit import BrowserKeys, PushService, decrypted
from tests.engine.test_escalation import Clock, InlinePool, Recorder, phones, raise_alarm

ROOT = Path(__file__).resolve().parents[2]
DESK, SECURITY = "+12065550101", "+12065550103"


def write_keys(directory: Path, subject: str = "mailto:it@example.org"):
    def write(path: Path, data, mode: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        path.chmod(mode)
    make_push_keys(directory, subject, write)
    return load_push_keys(directory)


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return write_keys(tmp_path_factory.mktemp("push"))


@pytest.fixture(scope="module")
def push_server():
    service = PushService()
    yield service
    service.stop()


@pytest.fixture
def push_service(push_server):
    push_server.reset()
    return push_server


def subscribe(subs: PushStore, push_service: PushService, phone: str, name: str
              ) -> BrowserKeys:
    browser = BrowserKeys()
    subs.add(parse_subscription(browser.subscription(push_service.endpoint(name)), phone,
                                label=name, by="test"))
    return browser


class DownProvider(Recorder):
    """The SMS provider refusing everything (HTTP 503, retryable), or accepting again."""

    def __init__(self):
        super().__init__()
        self.down = True

    def send_sms(self, to, body, *, status_url=None):
        if self.down:
            return Delivery.failed("HTTP 503: Service Unavailable", retryable=True)
        return super().send_sms(to, body)

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        if self.down:
            return Delivery.failed("HTTP 503: Service Unavailable", retryable=True)
        return super().place_call(to, text)


def service_with(site, store, notifier, keys):
    from hub.engine.service import AlarmService
    pool = InlinePool()
    service = AlarmService(site, store, notifier, lambda t, p: None, pool, escalators=pool,
                           clock=Clock())
    service.push = PushNotifier(keys, PushStore(store))
    return service


# --- what leaves the hub ---------------------------------------------------------------

def test_a_push_decrypts_with_the_subscriptions_keys_and_carries_the_alarm(
        sample_site, fake_store, keys, push_service):
    from py_vapid import Vapid02
    subs = PushStore(fake_store)
    browser = subscribe(subs, push_service, DESK, "desk-phone")
    service = service_with(sample_site, fake_store, Recorder(), keys)
    alarm_id = raise_alarm(service, kind="assist")
    alarm = fake_store.get_alarm(alarm_id)

    delivery = service.push.send(alarm, sample_site, DESK, attempt=0, now_ms=service.pager._now_ms())

    assert delivery.ok and delivery.sid == f"push-{subs.of(DESK)[0].id}"
    [got] = push_service.wait_for(1)
    assert got.path == "/push/desk-phone"
    assert got.headers["content-encoding"] == "aes128gcm"
    assert got.headers["ttl"] == "600" and got.headers["urgency"] == "high"
    # RFC 8292: the VAPID JWT verifies with the site's public key, for this push service
    auth = got.headers["authorization"]
    assert auth.split("k=")[1] == keys.public_key and Vapid02.verify(auth)
    body = decrypted(browser, got)
    assert body["alarm_id"] == alarm_id and body["kind"] == "assist"
    assert body["branch"] == "Main Library" and body["room"] == "Circulation Desk"
    assert body["pressed_at_ms"] == alarm.told_pressed_ms
    assert body["title"] == "HAVEN Assistance needed"
    assert "Main Library, Circulation Desk" in body["body"] and "Reply 1" not in body["body"]
    assert body["url"] == f"/alarms/{alarm_id}"
    claims = read_action_token(keys, body["token"])
    assert (claims.alarm_id, claims.phone, claims.sub_id) == (alarm_id, DESK,
                                                             subs.of(DESK)[0].id)


@pytest.mark.parametrize("status", [404, 410])
def test_a_push_service_answering_gone_removes_the_subscription(
        sample_site, fake_store, keys, push_service, status):
    subs = PushStore(fake_store)
    subscribe(subs, push_service, DESK, "old-phone")
    subscribe(subs, push_service, DESK, "new-phone")
    push_service.status_for["/push/old-phone"] = status
    service = service_with(sample_site, fake_store, Recorder(), keys)
    alarm = fake_store.get_alarm(raise_alarm(service, kind="assist"))

    delivery = service.push.send(alarm, sample_site, DESK, attempt=0, now_ms=service.pager._now_ms())

    assert delivery.ok  # the other phone took it
    assert [s.label for s in subs.of(DESK)] == ["new-phone"]
    push_service.status_for["/push/new-phone"] = status
    delivery = service.push.send(alarm, sample_site, DESK, attempt=0, now_ms=service.pager._now_ms())
    assert not delivery.ok and not delivery.retryable
    assert subs.of(DESK) == [] and DESK not in subs.contacts()


def test_a_push_service_error_is_retryable_and_keeps_the_subscription(
        sample_site, fake_store, keys, push_service):
    subs = PushStore(fake_store)
    subscribe(subs, push_service, DESK, "phone")
    push_service.status_for["/push/phone"] = 503
    service = service_with(sample_site, fake_store, Recorder(), keys)
    alarm = fake_store.get_alarm(raise_alarm(service, kind="assist"))
    delivery = service.push.send(alarm, sample_site, DESK, attempt=0, now_ms=service.pager._now_ms())
    assert not delivery.ok and delivery.retryable and len(subs.of(DESK)) == 1


# --- the second route -------------------------------------------------------------------

def test_with_the_sms_provider_down_push_still_reaches_the_contact(
        sample_site, fake_store, keys, push_service):
    subs = PushStore(fake_store)
    browser = subscribe(subs, push_service, DESK, "desk-phone")  # security has no phone
    provider = DownProvider()
    service = service_with(sample_site, fake_store, provider, keys)

    alarm_id = raise_alarm(service, kind="assist")  # step: staff + security, by SMS

    [got] = push_service.wait_for(1)
    assert decrypted(browser, got)["alarm_id"] == alarm_id
    timeline = fake_store.timeline(alarm_id)
    pushed = [e for e in timeline if e["event"] == "notified"]
    assert [(e["channel"], e["to"], e["step"]) for e in pushed] == [("push", DESK, "0")]
    failed = {(e["channel"], e["to"]) for e in timeline if e["event"] == "notify_failed"}
    assert failed == {("sms", DESK), ("sms", SECURITY)}
    alarm = fake_store.get_alarm(alarm_id)
    # someone was reached: not "nobody reached", no fallback texts
    assert alarm.nobody_reached_ms is None
    assert not [e for e in timeline if e["event"] == "delivery_failed"]
    # the texts still wait to be tried again, and go when the provider is back
    assert {r.key.contact for r in fake_store.pages.pending_page_retries(alarm_id)} == {DESK,
                                                                                 SECURITY}
    # the alarm page says how the desk was reached
    client = create_app(sample_site, fake_store, push_keys=keys).test_client()
    log_in(client, fake_store, "olive", "operator")
    page = client.get(f"/alarms/{alarm_id}").text
    assert "Push to Main circulation desk" in page and "accepted by the push service" in page


def test_without_a_subscription_a_failed_sms_is_nobody_reached_as_before(
        sample_site, fake_store, keys, push_service):
    service = service_with(sample_site, fake_store, DownProvider(), keys)
    alarm_id = raise_alarm(service, kind="assist")
    assert push_service.received == []
    assert fake_store.get_alarm(alarm_id).nobody_reached_ms is not None


def test_an_undelivered_text_is_pushed(sample_site, fake_store, keys, push_service):
    subs = PushStore(fake_store)
    browser = subscribe(subs, push_service, SECURITY, "security-phone")
    service = service_with(sample_site, fake_store, Recorder(), keys)
    alarm_id = raise_alarm(service, kind="assist")
    assert push_service.received == []  # the text was accepted: no push yet

    service.followup(str(PageKey(alarm_id, 0, SECURITY, Channel.SMS)), "undelivered")

    [got] = push_service.wait_for(1)
    assert decrypted(browser, got)["alarm_id"] == alarm_id
    service.followup(str(PageKey(alarm_id, 0, SECURITY, Channel.SMS)), "undelivered")
    assert len(push_service.received) == 1  # claimed: once


PUSH_STEP = """
[kinds.assist]
label = "Assistance needed"
cancel_window_s = 10
  [[kinds.assist.step]]
  notify = ["staff", "security"]
  channels = ["push"]
  wait_s = 60
"""


@pytest.fixture
def push_site(tmp_path):
    text = (ROOT / "deploy/examples/site.toml").read_text()
    start = text.index("[kinds.assist]")
    end = text.index("[kinds.emergency]")
    path = tmp_path / "site.toml"
    write_site(path, text[:start] + PUSH_STEP + "\n" + text[end:])
    return load_site(path)


def test_a_push_step_pushes_to_the_subscribed_and_texts_the_others(push_site, fake_store,
                                                                   keys, push_service):
    subs = PushStore(fake_store)
    browser = subscribe(subs, push_service, DESK, "desk-phone")
    recorder = Recorder()
    service = service_with(push_site, fake_store, recorder, keys)
    alarm_id = raise_alarm(service, kind="assist")
    [got] = push_service.wait_for(1)
    assert decrypted(browser, got)["alarm_id"] == alarm_id
    assert [(ch, to) for ch, to, _ in recorder.sent] == [("sms", SECURITY)]


def test_a_push_that_cannot_go_is_texted_instead(push_site, fake_store, keys, push_service):
    subs = PushStore(fake_store)
    subscribe(subs, push_service, DESK, "desk-phone")
    push_service.status_for["/push/desk-phone"] = 410  # uninstalled since
    recorder = Recorder()
    service = service_with(push_site, fake_store, recorder, keys)
    alarm_id = raise_alarm(service, kind="assist")
    assert sorted(to for ch, to, _ in recorder.sent if ch == "sms") == sorted([DESK, SECURITY])
    assert subs.of(DESK) == []
    assert fake_store.get_alarm(alarm_id).nobody_reached_ms is None


def test_the_planner_pushes_only_to_contacts_with_a_subscription(sample_site, fake_store):
    from hub.core.model import Alarm
    alarm = Alarm("a" * 32, "assist", "main-circ-01", "main", "circ", 0, 0)
    both = (Step(("staff", "security"), ("sms", "push")),)
    planned = plan(sample_site, alarm, both, 0, drill=False, push_to=lambda c: c.phone == DESK)
    assert [(p.key.channel, p.key.contact) for p in planned] == [
        ("sms", DESK), ("sms", SECURITY), ("push", DESK)]
    only = (Step(("staff", "security"), ("push",)),)
    planned = plan(sample_site, alarm, only, 0, drill=False, push_to=lambda c: c.phone == DESK)
    assert [(p.key.channel, p.key.contact) for p in planned] == [
        ("push", DESK), ("sms", SECURITY)]


def test_check_config_names_the_channels(tmp_path):
    from hub.errors import ConfigError
    text = (ROOT / "deploy/examples/site.toml").read_text().replace(
        'channels = ["call", "sms"]', 'channels = ["call", "pager"]', 1)
    (tmp_path / "site.toml").write_text(text)
    with pytest.raises(ConfigError, match=r'"sms", "call" and/or "push"'):
        load_site(tmp_path / "site.toml")


# --- the dashboard: subscribe, revoke, "I'm responding" ----------------------------------

@pytest.fixture
def app(sample_site, fake_store, keys):
    return create_app(sample_site, fake_store, push_keys=keys)


def test_im_responding_acknowledges_exactly_once(app, sample_site, fake_store, keys,
                                                 push_service):
    subs = PushStore(fake_store)
    subscribe(subs, push_service, DESK, "desk-phone")
    subscribe(subs, push_service, SECURITY, "security-phone")
    service = service_with(sample_site, fake_store, Recorder(), keys)
    alarm_id = raise_alarm(service, kind="assist")
    desk = action_token(keys, alarm_id, DESK, subs.of(DESK)[0].id)
    client = app.test_client()  # no session: the token is the credential

    first = client.post("/push/public/respond", json={"token": desk})
    assert first.status_code == 200 and first.json["acknowledged"] is True
    alarm = fake_store.get_alarm(alarm_id)
    assert alarm.state is AlarmState.ACKNOWLEDGED
    assert alarm.acknowledged_by == "Main circulation desk"
    # the same notification again (forwarded, replayed): refused
    again = client.post("/push/public/respond", json={"token": desk})
    assert again.status_code == 409 and "used already" in again.json["error"]
    # another responder's own action: no second acknowledgement
    other = client.post("/push/public/respond", json={
        "token": action_token(keys, alarm_id, SECURITY, subs.of(SECURITY)[0].id)})
    assert other.status_code == 200 and other.json["acknowledged"] is False
    assert other.json["acknowledged_by"] == "Main circulation desk"
    acks = [e for e in fake_store.timeline(alarm_id) if e["event"] == "acknowledged"]
    assert len(acks) == 1


def test_a_forged_altered_or_revoked_action_is_refused(app, sample_site, fake_store, keys,
                                                      push_service, tmp_path):
    subs = PushStore(fake_store)
    subscribe(subs, push_service, DESK, "desk-phone")
    service = service_with(sample_site, fake_store, Recorder(), keys)
    alarm_id = raise_alarm(service, kind="assist")
    sub_id = subs.of(DESK)[0].id
    client = app.test_client()
    other_site_keys = write_keys(tmp_path / "elsewhere")
    forged = action_token(other_site_keys, alarm_id, DESK, sub_id)
    assert client.post("/push/public/respond", json={"token": forged}).status_code == 403
    good = action_token(keys, alarm_id, DESK, sub_id)
    altered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    assert client.post("/push/public/respond", json={"token": altered}).status_code == 403
    assert client.post("/push/public/respond", data="x").status_code == 400
    subs.remove(DESK, sub_id)
    revoked = client.post("/push/public/respond", json={"token": good})
    assert revoked.status_code == 410
    assert fake_store.get_alarm(alarm_id).state is AlarmState.RAISED


def test_a_browser_subscribes_for_a_contact_and_is_revoked(app, fake_store, push_service):
    client = app.test_client()
    csrf = log_in(client, fake_store, "olive", "operator")
    browser = BrowserKeys()
    created = client.post("/push/subscriptions", headers={"X-CSRF-Token": csrf}, json={
        "contact": DESK, "label": "Olive's phone",
        "subscription": browser.subscription(push_service.endpoint("olive"))})
    assert created.status_code == 201 and created.json["contact"] == "Main circulation desk"
    page = client.get("/push").text
    assert "Olive&#39;s phone" in page and "Main circulation desk" in page
    # bad input gets a clear answer, not a traceback
    bad = client.post("/push/subscriptions", headers={"X-CSRF-Token": csrf},
                      json={"contact": "+19999999999", "subscription": {}})
    assert bad.status_code == 400 and "contact" in bad.json["error"]
    bad = client.post("/push/subscriptions", headers={"X-CSRF-Token": csrf},
                      json={"contact": DESK, "subscription": {"endpoint": "ftp://x"}})
    assert bad.status_code == 400 and "subscription.endpoint" in bad.json["error"]
    # without the CSRF token: refused
    assert client.post("/push/subscriptions", json={}).status_code == 400
    # another operator may not revoke it; its owner may
    other = app.test_client()
    other_csrf = log_in(other, fake_store, "pat", "operator")
    sub_id = created.json["id"]
    assert other.post("/push/revoke", data={"phone": DESK, "id": sub_id,
                                            "csrf_token": other_csrf}).status_code == 403
    gone = client.post("/push/revoke", data={"phone": DESK, "id": sub_id, "csrf_token": csrf})
    assert gone.status_code == 303 and PushStore(fake_store).of(DESK) == []


def test_the_service_worker_and_manifest_are_served_without_a_session(app):
    client = app.test_client()
    sw = client.get("/push/public/sw.js")
    assert sw.status_code == 200 and sw.headers["Service-Worker-Allowed"] == "/"
    assert b'addEventListener("push"' in sw.data
    manifest = client.get("/push/public/manifest.webmanifest")
    assert manifest.status_code == 200 and manifest.json["display"] == "standalone"
    assert client.get("/push").status_code in (302, 303)  # the page itself needs a login


def test_without_keys_the_page_says_how_to_set_push_up(sample_site, fake_store):
    client = create_app(sample_site, fake_store).test_client()
    log_in(client, fake_store, "olive", "operator")
    assert "haven provision push" in client.get("/push").text


def test_provision_push_writes_the_keys_once(tmp_path, capsys):
    from hub.app.cli import main
    assert main(["provision", "push", "--site", str(tmp_path), "--subject",
                 "mailto:it@example.org"]) == 0
    keys = load_push_keys(tmp_path / "push")
    assert keys.subject == "mailto:it@example.org" and len(keys.action_secret) == 32
    assert (tmp_path / "push" / "vapid-private.pem").stat().st_mode & 0o777 == 0o640
    assert "HAVEN_PUSH_KEYS" in capsys.readouterr().out
    # again: refused, the keys kept (subscribed browsers would be cut off)
    assert main(["provision", "push", "--site", str(tmp_path), "--subject",
                 "mailto:it@example.org"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert load_push_keys(tmp_path / "push").public_key == keys.public_key
    assert main(["provision", "push", "--site", str(tmp_path / "b"), "--subject",
                 "it@example.org"]) == 2
    assert "--subject" in capsys.readouterr().err


def test_unreadable_keys_are_named_with_the_fix(tmp_path):
    from hub.config.push_keys import PushKeyError, push_keys_from_env
    with pytest.raises(PushKeyError, match=r"vapid-private.pem: cannot be read.*provision push"):
        push_keys_from_env({"HAVEN_PUSH_KEYS": str(tmp_path)})
