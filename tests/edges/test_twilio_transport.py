"""The SDK's transport (hub.edges.twilio_transport) against the fake API, through the real SDK."""

from __future__ import annotations

import ssl
import time

import pytest
from twilio.rest import Client

from hub.app.localservices import free_port
from hub.edges.notify import TwilioNotifier
from hub.edges.twilio_transport import ApiUnreachable, PooledHttpClient
from hub.provision.ca import create_ca, issue
from tests.fake_twilio import FakeTwilio


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


@pytest.fixture
def tls_api(tmp_path):
    """The fake API over HTTPS, its certificate (for 127.0.0.1) signed by a CA of its own;
    that CA's file, for SSL_CERT_FILE."""
    ca = create_ca("transport test")
    server = issue(ca.cert_pem, ca.key_pem, "fake api", server_names=("127.0.0.1",))
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "server.pem").write_bytes(server.cert_pem + server.key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.pem")
    fake = FakeTwilio(tls=context).start()
    yield fake, tmp_path / "ca.pem"
    fake.stop()


def test_https_is_verified_against_the_systems_ca_certificates(tls_api, monkeypatch):
    """The CA certificates are the system's, as OpenSSL finds them (SSL_CERT_FILE here,
    /etc/ssl/certs on Debian): a page goes out over TLS to an API they vouch for."""
    fake, ca_file = tls_api
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    notifier = TwilioNotifier(fake.account_sid, fake.auth_token, from_number="+12065550000",
                              api_base=fake.url)
    delivery = notifier.send_sms("+12065550101", "over TLS")
    assert delivery.ok, delivery.error
    assert [r.form["Body"] for r in fake.accepted()] == ["over TLS"]


def test_an_api_whose_certificate_no_trusted_ca_signed_is_unreachable(tls_api):
    """Without that CA among the trusted ones the handshake fails: nothing is sent, and
    the page says why (a retryable failure, as any API it cannot reach)."""
    fake, _ = tls_api
    notifier = TwilioNotifier(fake.account_sid, fake.auth_token, from_number="+12065550000",
                              api_base=fake.url)
    delivery = notifier.send_sms("+12065550101", "must not go")
    assert not delivery.ok and delivery.retryable
    assert "API unreachable" in delivery.error and "certificate" in delivery.error
    assert fake.accepted() == []


def test_a_slow_answer_is_a_timeout_bounded_by_the_whole_exchange():
    fake = FakeTwilio(delay_s=2.0).start()
    try:
        http = PooledHttpClient(timeout=0.5, api_base=fake.url)
        client = Client(fake.account_sid, fake.auth_token, http_client=http)
        started = time.monotonic()
        with pytest.raises(ApiUnreachable, match="timed out"):
            client.messages.create(to="+12065550101", from_="+12065550000", body="slow")
        assert time.monotonic() - started < 1.9  # gave up at 0.5 s, not at the answer
    finally:
        fake.stop()


def test_a_proxy_in_the_environment_is_not_used_for_the_api_base(client, fake_twilio,
                                                                  monkeypatch):
    """A proxy named for the real API never carries requests meant for a local API."""
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    client.messages.create(to="+12065550101", from_="+12065550000", body="direct")
    assert [r.form["Body"] for r in fake_twilio.accepted()] == ["direct"]


def test_the_header_fields_are_the_final_responses_not_a_proxys_or_an_interim_ones():
    from hub.edges.twilio_transport import _fields
    head = [b"HTTP/1.1 200 Connection established\r\n", b"Via: proxy\r\n", b"\r\n",
            b"HTTP/1.1 100 Continue\r\n", b"\r\n",
            b"HTTP/1.1 201 CREATED\r\n", b"Content-Type: application/json\r\n",
            b"Twilio-Request-Id: RQ1: with a colon\r\n", b"\r\n"]
    assert _fields(head) == {"Content-Type": "application/json",
                             "Twilio-Request-Id": "RQ1: with a colon"}
