"""Twilio webhooks: acknowledging an alarm by SMS reply or keypress, behind signature checks."""

from __future__ import annotations

import logging
import socket
import xml.etree.ElementTree as ET

import pytest
from twilio.request_validator import RequestValidator

from dashboard import create_app
from dashboard.twilio_hooks import mask
from hub.core.model import Alarm, AlarmState, Channel, Delivery, PageKey
from hub.store.alarms import Store

TOKEN = "test-auth-token"
PUBLIC = "https://haven.example.org"
LOCAL = "http://localhost"
CIRC = ("+12065550101", "Main circulation desk")
DANA = ("+12065550102", "Dana Ortiz (branch manager)")
STRANGER = "+15005550999"


def alarm(id="a1", kind="emergency", branch="main", room="circulation",
          device="main-circ-01", at_ms=1_000) -> Alarm:
    return Alarm(id=id, kind=kind, device=device, branch=branch, room=room,
                 pressed_at_ms=at_ms - 50, received_at_ms=at_ms)


def raise_paged(store: Store, a: Alarm, *paged: tuple[str, str]) -> Alarm:
    """Store ``a`` escalating, with a "notified" timeline entry for each (phone, name)."""
    assert store.raise_alarm(a, escalate=True)
    for phone, name in paged:
        key = PageKey(a.id, 0, phone, Channel.SMS)
        assert store.pages.claim(key, a.received_at_ms, 4000)
        store.pages.record(key, name, Delivery.sent("SM1"), a.received_at_ms + 10)
    return a


def post(client, path: str, form: dict[str, str], *, base: str = LOCAL, token: str = TOKEN):
    """POST like Twilio: form-encoded and signed for ``base + path``."""
    signature = RequestValidator(token).compute_signature(base + path, form)
    return client.post(path, data=form, headers={"X-Twilio-Signature": signature})


def twiml(response) -> ET.Element:
    assert response.status_code == 200 and response.mimetype == "text/xml"
    return ET.fromstring(response.data)


def said(root: ET.Element) -> str:
    return " ".join(e.text or "" for e in root.iter("Say"))


def reply(response) -> str | None:
    message = twiml(response).find("Message")
    return None if message is None else message.text


@pytest.fixture
def client(sample_site, fake_store):
    return create_app(sample_site, fake_store, twilio_auth_token=TOKEN).test_client()


@pytest.fixture
def public_client(sample_site, fake_store):
    return create_app(sample_site, fake_store, twilio_auth_token=TOKEN,
                      public_url=PUBLIC + "/").test_client()


# --- signatures --------------------------------------------------------------------

@pytest.mark.parametrize("headers_for", [
    lambda form: {},
    lambda form: {"X-Twilio-Signature": ""},
    lambda form: {"X-Twilio-Signature":
                  RequestValidator("wrong-token").compute_signature(LOCAL + "/twilio/sms", form)},
    lambda form: {"X-Twilio-Signature":  # signed for another body
                  RequestValidator(TOKEN).compute_signature(LOCAL + "/twilio/sms",
                                                            {**form, "Body": "no"})},
    lambda form: {"X-Twilio-Signature":  # signed for another URL
                  RequestValidator(TOKEN).compute_signature(LOCAL + "/twilio/sms?x=1", form)},
], ids=["missing", "empty", "wrong-token", "other-body", "other-url"])
def test_a_request_without_a_valid_signature_is_refused(client, fake_store, caplog, headers_for):
    raise_paged(fake_store, alarm(), CIRC)
    form = {"From": CIRC[0], "Body": "yes"}
    with caplog.at_level(logging.WARNING, logger="dashboard.twilio_hooks"):
        response = client.post("/twilio/sms", data=form, headers=headers_for(form))

    assert response.status_code == 403 and b"signature" in response.data
    assert fake_store.get_alarm("a1").state is AlarmState.RAISED
    assert fake_store.escalation_due("a1") is not None
    assert "/twilio/sms" in caplog.text and "+…0101" in caplog.text
    assert CIRC[0] not in caplog.text  # phone numbers are masked in logs


def test_public_url_is_the_url_that_is_signed(public_client, fake_store):
    raise_paged(fake_store, alarm(), CIRC)
    form = {"From": CIRC[0], "Body": "yes"}
    # the test client calls http://localhost, Twilio signed https://haven.example.org
    assert post(public_client, "/twilio/sms", form, base=LOCAL).status_code == 403
    assert post(public_client, "/twilio/sms", form, base=PUBLIC).status_code == 200
    assert fake_store.get_alarm("a1").acknowledged_by == CIRC[1]


def test_routes_are_absent_without_an_auth_token(sample_site, fake_store):
    client = create_app(sample_site, fake_store).test_client()
    for path in ("/twilio/sms", "/twilio/voice/say?alarm=a1", "/twilio/voice/gather?alarm=a1"):
        assert post(client, path, {"From": CIRC[0], "Body": "yes"}).status_code == 404


@pytest.mark.parametrize("kwargs, match", [
    ({"twilio_auth_token": " "}, "twilio_auth_token"),
    ({"twilio_auth_token": TOKEN, "public_url": "haven.example.org"}, "public_url"),
])
def test_bad_twilio_settings_are_refused(sample_site, fake_store, kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_app(sample_site, fake_store, **kwargs)


def test_mask_keeps_the_last_four_digits():
    assert (mask("+12065550101"), mask("5550101"), mask("")) == ("+…0101", "…0101", "(none)")


# --- SMS replies -------------------------------------------------------------------

def test_yes_acknowledges_the_newest_raised_alarm_the_number_was_paged_for(client, fake_store):
    raise_paged(fake_store, alarm("old", at_ms=1_000), CIRC)
    raise_paged(fake_store, alarm("new", kind="assist", room="reference", device="main-ref-01",
                                  at_ms=2_000), CIRC, DANA)
    raise_paged(fake_store, alarm("other", at_ms=3_000), DANA)  # newest, but CIRC not paged

    response = post(client, "/twilio/sms", {"From": CIRC[0], "Body": "  Yes "})

    assert reply(response) == ("Acknowledged: Assistance needed at Main Library, Reference "
                               "Desk. The person who pressed is being told help is coming. "
                               "Thank you.")
    new = fake_store.get_alarm("new")
    assert new.state is AlarmState.ACKNOWLEDGED and new.acknowledged_by == CIRC[1]
    assert fake_store.escalation_due("new") is None
    commands = [fields for _, fields in fake_store.devices.read_device_commands("t", block_ms=5)]
    assert commands == [{"device": "main-ref-01", "cmd": "acknowledged", "alarm_id": "new"}]
    for untouched in ("old", "other"):
        assert fake_store.get_alarm(untouched).state is AlarmState.RAISED
        assert fake_store.escalation_due(untouched) is not None


@pytest.mark.parametrize("second", [CIRC[0], DANA[0]])
def test_a_second_yes_says_who_already_acknowledged(client, fake_store, second):
    raise_paged(fake_store, alarm(), CIRC, DANA)
    assert reply(post(client, "/twilio/sms", {"From": CIRC[0], "Body": "OMW"})) \
        .startswith("Acknowledged: EMERGENCY at Main Library, Circulation Desk.")

    response = post(client, "/twilio/sms", {"From": second, "Body": "ok."})

    assert reply(response) == f"Already acknowledged by {CIRC[1]}."
    assert fake_store.get_alarm("a1").acknowledged_by == CIRC[1]


def test_an_unknown_number_has_no_alarm(client, fake_store):
    raise_paged(fake_store, alarm(), CIRC)
    response = post(client, "/twilio/sms", {"From": STRANGER, "Body": "1"})
    assert reply(response) == "No active Haven alarm for this number."
    assert fake_store.get_alarm("a1").state is AlarmState.RAISED


@pytest.mark.parametrize("body", ["stop", "STOP ", "help", "Unsubscribe"])
def test_carrier_keywords_get_no_reply(client, fake_store, body):
    raise_paged(fake_store, alarm(), CIRC)
    response = post(client, "/twilio/sms", {"From": CIRC[0], "Body": body})
    assert twiml(response).tag == "Response" and len(twiml(response)) == 0
    assert fake_store.get_alarm("a1").state is AlarmState.RAISED


def test_other_replies_get_a_one_line_help(client, fake_store):
    raise_paged(fake_store, alarm(), CIRC)
    response = post(client, "/twilio/sms", {"From": CIRC[0], "Body": "who is this?"})
    assert reply(response) == "Reply 1 to acknowledge the latest Haven alarm."
    assert fake_store.get_alarm("a1").state is AlarmState.RAISED


def test_a_dead_store_is_told_to_the_responder(sample_site):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    store = Store.from_url(f"redis://127.0.0.1:{port}")
    try:
        client = create_app(sample_site, store, twilio_auth_token=TOKEN).test_client()
        response = post(client, "/twilio/sms", {"From": CIRC[0], "Body": "yes"})
    finally:
        store.r.close()
    assert "nothing was recorded" in reply(response)


# --- voice calls -------------------------------------------------------------------

def test_a_call_says_the_alarm_and_gathers_one_key(public_client, fake_store):
    raise_paged(fake_store, alarm(), CIRC)

    root = twiml(post(public_client, "/twilio/voice/say?alarm=a1", {"To": CIRC[0]},
                      base=PUBLIC))

    gather = root.find("Gather")
    assert gather.attrib == {"numDigits": "1", "timeout": "8", "method": "POST",
                             "action": PUBLIC + "/twilio/voice/gather?alarm=a1"}
    words = said(gather)
    assert "EMERGENCY. Main Library, Circulation Desk." in words and "drill" not in words
    assert "Press 1 if you are responding." in words
    assert root.find("Redirect").text == PUBLIC + "/twilio/voice/say?alarm=a1&round=2"

    last = twiml(post(public_client, "/twilio/voice/say?alarm=a1&round=2", {"To": CIRC[0]},
                      base=PUBLIC))
    assert last.find("Gather") is not None and last.find("Redirect") is None
    assert last.find("Hangup") is not None and "Goodbye" in said(last)


def test_a_drill_call_says_it_is_a_drill(client, fake_store):
    fake_store.branches.set_branch_switches("main", by="Dana", now_ms=0, drill_until_ms=5_000)
    raise_paged(fake_store, alarm(), CIRC)  # raised at 1 000, in the drill: a drill alarm
    root = twiml(post(client, "/twilio/voice/say?alarm=a1", {"To": CIRC[0]}))
    assert said(root.find("Gather")).startswith("This is a drill. Haven alarm.")
    assert said(root.find("Gather")).endswith("If this is not a drill, press 9: "
                                              "the police will be called.")
    assert root.find("Gather").get("action") == LOCAL + "/twilio/voice/gather?alarm=a1"


def test_pressing_1_acknowledges_as_the_callee(client, fake_store):
    raise_paged(fake_store, alarm(), CIRC, DANA)

    root = twiml(post(client, "/twilio/voice/gather?alarm=a1", {"To": DANA[0], "Digits": "1"}))

    assert said(root) == (f"Thank you, {DANA[1]}. Acknowledged. "
                          "The person who pressed will be told help is coming.")
    a1 = fake_store.get_alarm("a1")
    assert a1.state is AlarmState.ACKNOWLEDGED and a1.acknowledged_by == DANA[1]
    assert fake_store.escalation_due("a1") is None
    assert [f["cmd"] for _, f in fake_store.devices.read_device_commands("t", block_ms=5)] == \
        ["acknowledged"]

    again = twiml(post(client, "/twilio/voice/gather?alarm=a1", {"To": CIRC[0], "Digits": "1"}))
    assert said(again) == f"Already acknowledged by {DANA[1]}."


def test_a_callee_not_in_the_site_config_is_named_by_a_masked_number(client, fake_store):
    raise_paged(fake_store, alarm())
    post(client, "/twilio/voice/gather?alarm=a1", {"To": STRANGER, "Digits": "1"})
    assert fake_store.get_alarm("a1").acknowledged_by == "+…0999"


@pytest.mark.parametrize("digits", ["2", "9", ""])
def test_other_keys_play_the_alarm_again(client, fake_store, digits):
    raise_paged(fake_store, alarm(), CIRC)
    root = twiml(post(client, "/twilio/voice/gather?alarm=a1", {"To": CIRC[0], "Digits": digits}))
    assert root.find("Redirect").text == LOCAL + "/twilio/voice/say?alarm=a1"
    assert fake_store.get_alarm("a1").state is AlarmState.RAISED


@pytest.mark.parametrize("path, form", [
    ("/twilio/voice/say?alarm=gone", {"To": CIRC[0]}),
    ("/twilio/voice/say", {"To": CIRC[0]}),
    ("/twilio/voice/gather?alarm=gone", {"To": CIRC[0], "Digits": "1"}),
])
def test_an_unknown_alarm_is_no_longer_active(client, path, form):
    root = twiml(post(client, path, form))
    assert said(root) == "This Haven alarm is no longer active." and root.find("Gather") is None


def test_status_callbacks_are_recorded_with_a_percent_encoded_key(client, fake_store):
    """The key is sent percent-encoded ('%3A', '%2B'); the signature covers those exact bytes."""
    a = raise_paged(fake_store, alarm())
    path = f"/twilio/status?key={a.id}%3A0%3A%2B12065550101%3Asms"
    response = post(client, path, {"MessageStatus": "undelivered", "ErrorCode": "30003",
                                   "To": "+12065550101"})
    assert response.status_code == 204
    [entry] = [e for e in fake_store.timeline(a.id) if e["event"] == "delivery_status"]
    assert (entry["to"], entry["status"], entry["error_code"], entry["channel"]) == (
        "+12065550101", "undelivered", "30003", "sms")
    assert post(client, "/twilio/status?key=nonsense", {"MessageStatus": "sent"}
                ).status_code == 400


@pytest.mark.parametrize("answered_by, followed_up", [("machine_end_beep", True),
                                                      ("fax", True), ("human", False),
                                                      ("", False)])
def test_a_call_answered_by_voicemail_is_followed_up(client, fake_store, answered_by,
                                                     followed_up):
    a = raise_paged(fake_store, alarm())
    path = f"/twilio/status?key={a.id}%3A0%3A%2B12065550101%3Acall"
    form = {"CallStatus": "completed", "To": "+12065550101"}
    if answered_by:
        form["AnsweredBy"] = answered_by
    assert post(client, path, form).status_code == 204
    queued = fake_store.pages.read_followups("t", block_ms=5)
    assert [(f["key"], f["status"]) for _, f in queued] == (
        [(f"{a.id}:0:+12065550101:call", "voicemail")] if followed_up else [])


def test_an_oversized_webhook_is_refused_before_it_is_parsed(sample_site, fake_store):
    from dashboard import MAX_REQUEST_BYTES, create_app
    app = create_app(sample_site, fake_store, twilio_auth_token="t",
                     test_config={"TESTING": True})
    reply = app.test_client().post("/twilio/sms", data={"Body": "x" * (MAX_REQUEST_BYTES + 1)})
    assert reply.status_code == 413
