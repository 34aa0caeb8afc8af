"""The SDK's transport (hub.edges.twilio_transport) against the fake API, through the real SDK."""

from __future__ import annotations

import pytest
from twilio.rest import Client

from hub.app.localservices import free_port
from hub.edges.twilio_transport import ApiUnreachable, PooledHttpClient


@pytest.fixture
def client(fake_twilio):
    http = PooledHttpClient(timeout=2.0, api_base=fake_twilio.url)
    return Client(fake_twilio.account_sid, fake_twilio.auth_token, http_client=http)


def test_a_text_goes_out_form_encoded_with_its_words_intact(client, fake_twilio):
    body = "HAVEN Café: Main, Front Desk ✓ Ref 86bce38e-1 & more"
    message = client.messages.create(to="+12065550101", from_="+12065550000", body=body,
                                     status_callback="http://127.0.0.1:9/s?key=a%3A1")
    [request] = fake_twilio.accepted()
    assert message.sid == request.sid and request.form["Body"] == body
    assert request.form["StatusCallback"] == "http://127.0.0.1:9/s?key=a%3A1"


def test_lists_are_read_with_their_query_and_auth(client, fake_twilio):
    for n in range(3):
        client.messages.create(to="+12065550101", from_="+12065550000", body=f"m{n}")
    client.messages.create(to="+12065550102", from_="+12065550000", body="other")
    listed = client.messages.list(to="+12065550101", limit=2)
    assert [m.body for m in listed] == ["m2", "m1"]  # newest first, one page of 2


def test_a_wrong_token_is_the_api_s_401(fake_twilio):
    from twilio.base.exceptions import TwilioRestException
    http = PooledHttpClient(timeout=2.0, api_base=fake_twilio.url)
    bad = Client(fake_twilio.account_sid, "wrong", http_client=http)
    with pytest.raises(TwilioRestException) as err:
        bad.messages.create(to="+12065550101", from_="+12065550000", body="x")
    assert err.value.status == 401


def test_connections_are_kept_alive_between_requests(client, fake_twilio):
    for n in range(5):
        client.messages.create(to="+12065550101", from_="+12065550000", body=f"m{n}")
    assert len(fake_twilio._connections) == 1


def test_an_api_nobody_listens_on_is_unreachable_at_once():
    http = PooledHttpClient(timeout=2.0, api_base=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ApiUnreachable):
        Client("AC" + "0" * 32, "t", http_client=http).messages.create(
            to="+12065550101", from_="+12065550000", body="x")


def test_a_connection_the_server_closed_while_idle_is_not_reused(client, fake_twilio):
    """The API went away and came back (a restart, an idle timeout): the next request goes
    on a new connection instead of into the dead socket."""
    client.messages.create(to="+12065550101", from_="+12065550000", body="first")
    fake_twilio.down()
    fake_twilio.up()
    client.messages.create(to="+12065550101", from_="+12065550000", body="second")
    assert [r.form["Body"] for r in fake_twilio.accepted()] == ["first", "second"]
