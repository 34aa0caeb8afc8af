"""Property-based: the Twilio webhooks (unsigned, wrongly signed, replayed, oversized) and
the dashboard forms (CSRF missing, markup in every field) answer clearly and change
nothing they must not.
"""

from __future__ import annotations

import json

import fakeredis
import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from hub.store.alarms import Store
from tests.device.test_fuzz import FUZZ, NOW, SITE, build

import functools
import uuid
import xml.etree.ElementTree as ET

from twilio.request_validator import RequestValidator

from dashboard import create_app
from hub.core.model import AlarmState
from tests.dashboard_login import logged_in_client
from tests.dashboard.test_twilio_hooks import CIRC, LOCAL, TOKEN, alarm as make_alarm, raise_paged

#: Markup and template syntax to plant in every field; must come back escaped, if at all.
MARKUP = ('<b id="fz">', '"><img src=x onerror=alert(1)>', "</textarea><script>x()</script>",
          "{{ 7*7 }}", "{% raw %}", "\u202e\u0000\ud7ff", "'; --", "%s%n")
field_text = st.one_of(st.text(max_size=40), st.sampled_from(MARKUP),
                       st.builds(lambda a, b: a + b, st.text(max_size=10), st.sampled_from(MARKUP)))
HOOK_ROUTES = ["/twilio/sms", "/twilio/voice/say", "/twilio/voice/gather", "/twilio/status"]
TWILIO_FIELDS = ["From", "To", "Body", "Digits", "MessageStatus", "CallStatus", "AnsweredBy",
                 "ErrorCode", "AccountSid"]
hook_forms = st.dictionaries(st.sampled_from(TWILIO_FIELDS) | st.text(min_size=1, max_size=8),
                             field_text, max_size=6)
hook_queries = st.dictionaries(st.sampled_from(["alarm", "key", "round"]),
                               field_text | st.just("a1") | st.just("a1:0:+12065550101:sms"),
                               max_size=2)


def snapshot(store: Store) -> dict:
    """Every key and value in the store, to prove a refused request changed nothing."""
    out = {}
    for key in store.r.scan_iter("*"):
        kind = store.r.type(key)
        out[key] = (store.r.hgetall(key) if kind == "hash" else store.r.xrange(key)
                    if kind == "stream" else store.r.get(key) if kind == "string"
                    else store.r.zrange(key, 0, -1, withscores=True) if kind == "zset"
                    else kind)
    return out


def hook_app():
    service, store, _ = build()
    raise_paged(store, make_alarm(), CIRC)
    client = create_app(SITE, store, twilio_auth_token=TOKEN).test_client()
    return service, store, client


def path_with(route: str, query: dict[str, str]) -> str:
    from urllib.parse import urlencode
    return route + (f"?{urlencode(query)}" if query else "")


BAD_SIGNATURES = {
    "missing": lambda url, form: None,
    "empty": lambda url, form: "",
    "wrong token": lambda url, form: RequestValidator("not-the-token").compute_signature(url, form),
    "other url": lambda url, form: RequestValidator(TOKEN).compute_signature(url + "x", form),
    "other form": lambda url, form: RequestValidator(TOKEN).compute_signature(
        url, {**form, "Body": "1", "Digits": "1"} if form.get("Body") != "1" else {}),
    "garbage": lambda url, form: "A" * 28 + "=",
}


HOOKS_FUZZ = settings(FUZZ, max_examples=200)


@HOOKS_FUZZ
@given(st.sampled_from(HOOK_ROUTES), hook_queries, hook_forms,
       st.sampled_from(sorted(BAD_SIGNATURES)))
def test_a_webhook_without_a_valid_signature_is_refused_and_changes_nothing(route, query, form,
                                                                            how):
    _, store, client = hook_app()
    before = snapshot(store)
    path = path_with(route, query)
    signature = BAD_SIGNATURES[how](LOCAL + path, form)
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    response = client.post(path, data=form, headers=headers)
    event(f"refused: {how}")
    assert response.status_code == 403, (how, response.status_code)
    assert b"signature" in response.data
    assert snapshot(store) == before


@HOOKS_FUZZ
@given(st.sampled_from(HOOK_ROUTES), hook_queries, hook_forms)
def test_a_signed_webhook_with_any_content_gets_a_clear_answer(route, query, form):
    _, store, client = hook_app()
    path = path_with(route, query)
    response = client.post(path, data=form, headers={
        "X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(LOCAL + path, form)})
    event(f"{route}: {response.status_code}")
    assert response.status_code in (200, 204, 400), response.status_code
    if response.status_code == 200:
        ET.fromstring(response.data)  # TwiML Twilio can read
        assert response.mimetype == "text/xml"
    if response.status_code == 400:
        assert response.data.strip()  # says what was wrong
    for text in MARKUP[:3]:  # nothing planted is echoed back as markup
        assert text.encode() not in response.data


@pytest.mark.parametrize("times", [2, 5])
@pytest.mark.parametrize("route, form", [
    ("/twilio/sms", {"From": CIRC[0], "Body": "1"}),
    ("/twilio/voice/gather?alarm=a1", {"To": CIRC[0], "Digits": "1"}),
])
def test_a_replayed_acknowledgement_acknowledges_once(route, form, times):
    _, store, client = hook_app()
    headers = {"X-Twilio-Signature":
               RequestValidator(TOKEN).compute_signature(LOCAL + route, form)}
    answers = [client.post(route, data=form, headers=headers) for _ in range(times)]
    assert all(a.status_code == 200 for a in answers)
    assert [e["event"] for e in store.timeline("a1")].count("acknowledged") == 1
    assert store.get_alarm("a1").state is AlarmState.ACKNOWLEDGED
    assert b"Already acknowledged" in answers[-1].data


def test_a_replayed_failure_callback_places_one_call():
    """Twilio retries callbacks; an attacker may replay one. Each queues a follow-up, but
    they share the page's key, so the hub calls once."""
    service, store, client = hook_app()
    path = "/twilio/status?" + "key=a1%3A0%3A%2B12065550101%3Asms"
    form = {"MessageStatus": "undelivered", "ErrorCode": "30003", "To": CIRC[0]}
    headers = {"X-Twilio-Signature":
               RequestValidator(TOKEN).compute_signature(LOCAL + path, form)}
    for _ in range(3):
        assert client.post(path, data=form, headers=headers).status_code == 204
    followups = store.r.xrange("haven:followups")
    assert len(followups) == 3
    for _, fields in followups:
        service.followup(fields["key"], fields["status"])
    assert service.notifier.sent == [(CIRC[0], service.notifier.sent[0][1])]  # one call


@pytest.mark.parametrize("signed", [False, True])
def test_an_oversized_webhook_is_answered_not_crashed(signed):
    _, store, client = hook_app()
    before = snapshot(store)
    form = {"From": CIRC[0], "Body": "1" + " " * 100 + "x" * (2 << 20)}  # 2 MiB
    headers = {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(
        LOCAL + "/twilio/sms", form)} if signed else {}
    response = client.post("/twilio/sms", data=form, headers=headers)
    assert response.status_code in ((200, 413) if signed else (403, 413))
    if response.status_code == 200:
        assert "Reply 1" in reply_text(response)  # not an acknowledgement word: the help
    assert snapshot(store) == before


def reply_text(response) -> str:
    message = ET.fromstring(response.data).find("Message")
    return "" if message is None else message.text or ""


# === the dashboard's forms: CSRF missing, markup in every field =============================

FORMS = {  # route (alarm id / branch id / device id filled in) -> its fields
    "/alarms/{alarm}/acknowledge": (),
    "/alarms/{alarm}/resolve": ("outcome", "note"),
    "/alarms/{alarm}/cancel": ("reason",),
    "/alarms/{alarm}/real": (),
    "/branches/{branch}/drill/start": ("minutes",),
    "/branches/{branch}/drill/end": (),
    "/branches/{branch}/lone-worker": ("mode",),
    "/devices/{device}/locate": (),
    "/logout": (),
}
PAGES = ["/", "/alarms/{alarm}", "/branches", "/devices"]


def form_app():
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    app = create_app(SITE, store)
    return app, store


def fresh_alarm(store: Store) -> str:
    a = make_alarm(id=str(uuid.uuid4()), at_ms=int(NOW * 1000))
    store.raise_alarm(a, escalate=True)
    return a.id


def test_every_form_without_its_csrf_token_is_refused_and_changes_nothing():
    app, store = form_app()
    admin = logged_in_client(app, store, "ari", "admin")
    alarm_id = fresh_alarm(store)
    for route, fields in FORMS.items():
        path = route.format(alarm=alarm_id, branch="main", device="main-circ-01")
        form = {f: "x" for f in fields}
        for token in (None, "", "forged-token"):
            before = snapshot(store)
            # the client sends its session's token in a header: blank it, or forge one
            response = admin.post(path, data=form,
                                  environ_overrides={"HTTP_X_CSRF_TOKEN": token or ""})
            assert response.status_code == 400, (path, token, response.status_code)
            assert b"CSRF token missing or wrong" in response.data, path
            changed = {k for k in set(snapshot(store)) | set(before)
                       if snapshot(store).get(k) != before.get(k) and "session" not in k}
            assert not changed, (path, changed)


@settings(max_examples=150, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(set(FORMS) - {"/logout"}) + ["/login"]), st.data())
def test_markup_in_any_form_field_comes_back_escaped_or_not_at_all(route, data):
    app, store, client = form_client()
    alarm_id = fresh_alarm(store)
    if route == "/login":  # a stranger's form: the username is shown back on failure
        form = {f: data.draw(field_text, label=f) for f in ("username", "password", "next")}
        stranger = app.test_client()
        stranger.get("/login")  # the form puts a CSRF token in the new session
        with stranger.session_transaction() as session:
            form["csrf_token"] = session["csrf"]
        response = stranger.post("/login", data=form)
        event(f"/login: {response.status_code}")
        assert response.status_code in (400, 401, 429), response.status_code
        for text in MARKUP[:3]:
            assert text.encode() not in response.data, (form, text)
        return
    fields = FORMS[route]
    form = {f: data.draw(field_text | st.sampled_from(MARKUP), label=f) for f in fields}
    # a path segment may carry markup too (an unknown id: a clear 404)
    segment = data.draw(st.sampled_from(["ok", "markup"]), label="segment")
    ids = dict(alarm=alarm_id, branch="main", device="main-circ-01")
    if segment == "markup":
        key = {"a": "alarm", "b": "branch", "d": "device"}[route[1]]
        ids[key] = "fz<b>"
    response = client.post(route.format(**ids), data=form)
    event(f"{route}: {response.status_code}")
    assert response.status_code in (200, 303, 400, 404), (route, response.status_code)
    answers = [response]
    for page in PAGES:
        shown = client.get(page.format(alarm=alarm_id))
        assert shown.status_code == 200, (page, shown.status_code)
        answers.append(shown)
    for answer in answers:
        if answer.mimetype == "application/json":  # errors for scripts: data, not a page
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            json.loads(answer.data)
            continue
        for text in MARKUP[:3]:
            assert text.encode() not in answer.data, (route, form, text)
        assert b"fz<b>" not in answer.data


@functools.cache
def form_client():
    """One logged-in admin for every example (logging in per example would dominate)."""
    app, store = form_app()
    return app, store, logged_in_client(app, store, "ari", "admin")


def test_a_replayed_sms_reply_does_not_acknowledge_a_later_alarm():
    _, store, client = hook_app()
    form = {"From": CIRC[0], "Body": "1", "MessageSid": "SM" + "1" * 32}
    headers = {"X-Twilio-Signature":
               RequestValidator(TOKEN).compute_signature(LOCAL + "/twilio/sms", form)}
    assert client.post("/twilio/sms", data=form, headers=headers).status_code == 200
    assert store.get_alarm("a1").state is AlarmState.ACKNOWLEDGED
    raise_paged(store, make_alarm(id="a2", at_ms=2_000), CIRC)  # a new alarm, same person
    client.post("/twilio/sms", data=form, headers=headers)  # the old request, replayed
    assert store.get_alarm("a2").state is AlarmState.RAISED
