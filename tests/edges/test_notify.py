"""Notifiers: the real twilio SDK against the local fake API, and the console notifier."""

import io
import time

import pytest

from hub.edges.notify import ConsoleNotifier, TwilioNotifier


@pytest.fixture
def notifier(fake_twilio):
    return TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                          from_number="+12065550000", api_base=fake_twilio.url)


def test_twilio_sms_reaches_the_api_with_to_from_and_body(notifier, fake_twilio):
    delivery = notifier.send_sms("+12065550101", "HAVEN EMERGENCY: Main Library")
    assert delivery.ok and delivery.sid.startswith("SM")
    [req] = fake_twilio.accepted()
    assert req.form == {"To": "+12065550101", "From": "+12065550000",
                        "Body": "HAVEN EMERGENCY: Main Library"}


def test_messaging_service_replaces_the_from_number(fake_twilio):
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              messaging_service_sid="MG" + "1" * 32, api_base=fake_twilio.url)
    assert notifier.send_sms("+12065550101", "x").ok
    [req] = fake_twilio.accepted()
    assert req.form["MessagingServiceSid"] == "MG" + "1" * 32 and "From" not in req.form


@pytest.mark.parametrize("status, code, retryable", [
    (400, 21211, False),   # invalid 'To' number: permanent
    (400, 21610, False),   # recipient replied STOP: permanent
    (429, 20429, True),    # too many requests: never processed, safe to retry
    (500, 20500, True),
    (503, 20503, True),
])
def test_api_errors_are_classified_with_their_code(notifier, fake_twilio, status, code, retryable):
    fake_twilio.fail("+12065550101", status, code, "nope")
    delivery = notifier.send_sms("+12065550101", "x")
    assert not delivery.ok
    assert delivery.code == code
    assert delivery.retryable is retryable
    assert f"HTTP {status}" in delivery.error


def test_bad_credentials_are_a_permanent_failure(fake_twilio):
    notifier = TwilioNotifier(fake_twilio.account_sid, "wrong", from_number="+12065550000",
                              api_base=fake_twilio.url)
    delivery = notifier.send_sms("+12065550101", "x")
    assert not delivery.ok and not delivery.retryable and delivery.code == 20003


def test_unreachable_api_is_a_retryable_failure():
    from hub.app.localservices import free_port
    notifier = TwilioNotifier("AC" + "0" * 32, "t", from_number="+12065550000",
                              api_base=f"http://127.0.0.1:{free_port()}", timeout_s=2)
    delivery = notifier.send_sms("+12065550101", "x")
    assert not delivery.ok and delivery.retryable
    assert "Connection refused" in delivery.error


def test_console_notifier_prints_the_sms():
    out = io.StringIO()
    delivery = ConsoleNotifier(out).send_sms("+12065550101", "HAVEN assist: Westside")
    assert delivery.ok
    assert out.getvalue() == "[SMS to +12065550101] HAVEN assist: Westside\n"


def test_api_base_must_be_a_url():
    with pytest.raises(ValueError, match="must look like"):
        TwilioNotifier("AC1", "t", from_number="+12065550000", api_base="localhost")


def test_a_call_speaks_the_alarm_through_the_calls_api(notifier, fake_twilio):
    delivery = notifier.place_call("+12065550199", "Haven alarm. EMERGENCY.")
    assert delivery.ok and delivery.sid.startswith("CA")
    [req] = fake_twilio.accepted("Calls")
    assert (req.form["To"], req.form["From"]) == ("+12065550199", "+12065550000")
    assert "<Say>Haven alarm. EMERGENCY.</Say>" in req.form["Twiml"]


def test_calls_need_a_from_number(fake_twilio):
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              messaging_service_sid="MG" + "1" * 32, api_base=fake_twilio.url)
    delivery = notifier.place_call("+12065550199", "x")
    assert not delivery.ok and not delivery.retryable and "TWILIO_FROM_NUMBER" in delivery.error


def test_with_a_voice_url_twilio_fetches_the_call_from_the_dashboard(notifier, fake_twilio):
    url = "https://haven.example.org/twilio/voice/say?alarm=0b6f2a7e"
    assert notifier.place_call("+12065550199", "ignored", voice_url=url).ok
    [req] = fake_twilio.accepted("Calls")
    assert (req.form["Url"], req.form["Method"]) == (url, "POST") and "Twiml" not in req.form


def test_texts_are_spread_over_several_sending_numbers(fake_twilio):
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              from_number="+12065550000, +12065550001", api_base=fake_twilio.url)
    for i in range(4):
        assert notifier.send_sms(f"+1206555011{i}", "x").ok
    senders = [r.form["From"] for r in fake_twilio.accepted()]
    assert sorted(senders) == ["+12065550000"] * 2 + ["+12065550001"] * 2
    assert notifier.place_call("+12065550199", "x").ok  # calls go from the first number
    assert fake_twilio.accepted("Calls")[0].form["From"] == "+12065550000"


def test_sender_pacing_picks_the_number_free_soonest():
    from hub.edges.notify import SenderPacing
    now = [100.0]
    pacing = SenderPacing(("+1A", "+1B"), per_second=1.0, clock=lambda: now[0])
    assert [pacing.next_sender() for _ in range(4)] == ["+1A", "+1B", "+1A", "+1B"]
    now[0] += 10  # both idle again
    assert pacing.next_sender() == "+1A"


def test_a_bad_number_in_the_list_is_named():
    from hub.errors import ConfigError
    from hub.config.settings import twilio_from_env
    with pytest.raises(ConfigError, match="TWILIO_FROM_NUMBER: '555' is not E.164"):
        twilio_from_env({"TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "t",
                         "TWILIO_FROM_NUMBER": "+12065550000,555"})


def test_find_sent_tells_whether_a_page_reached_the_api(fake_twilio):
    import time as _time
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              from_number="+12065550000", api_base=fake_twilio.url)
    since = _time.time() - 1
    first = notifier.send_sms("+12065550101", "HAVEN EMERGENCY: Main. Ref 86bce38e-1")
    second = notifier.send_sms("+12065550101", "HAVEN EMERGENCY, 2nd call for help: Main. "
                               "Ref 86bce38e-2. Reply 1 if you are responding.")
    call = notifier.place_call("+12065550102", "HAVEN EMERGENCY at Main")

    def sms(ref: str, **kw) -> str | None:
        return notifier.find_sent("sms", "+12065550101", ref=ref, text="",
                                  since_s=kw.get("since_s", since))
    # Each attempt's text is told apart by its page reference, not by its words.
    assert sms("86bce38e-1") == first.sid
    assert sms("86bce38e-2") == second.sid
    assert sms("86bce38e-3") is None
    assert sms("86bce38e-") is None and sms("86bce38e") is None
    assert sms("86bce38e-2", since_s=_time.time() + 60) is None  # sent before the claim
    # Without a reference (an all-clear), the exact text.
    assert notifier.find_sent("sms", "+12065550101", ref="", since_s=since,
                              text="HAVEN EMERGENCY: Main. Ref 86bce38e-1") == first.sid
    assert notifier.find_sent("call", "+12065550102", ref="", text="",
                              since_s=since) == call.sid
    assert notifier.find_sent("call", "+12065550101", ref="", text="", since_s=since) is None


def test_find_sent_reads_back_past_a_busy_desks_later_texts(fake_twilio):
    """A security desk paged for every alarm of a busy site: its page to be checked is
    dozens of texts back by the time another worker takes the claim over."""
    import time as _time
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              from_number="+12065550000", api_base=fake_twilio.url)
    since = _time.time() - 1
    page = notifier.send_sms("+12065550103", "HAVEN Assistance needed: Main. Ref 3b1f4352-1")
    for n in range(60):
        notifier.send_sms("+12065550103", f"HAVEN Assistance needed: Main. Ref {n:08x}-1")
    assert notifier.find_sent("sms", "+12065550103", ref="3b1f4352-1", text="",
                              since_s=since) == page.sid
    assert notifier.find_sent("sms", "+12065550103", ref="3b1f4352-2", text="",
                              since_s=since) is None


def test_carries_ref_needs_the_whole_reference():
    from hub.edges.notify import carries_ref
    assert carries_ref("HAVEN X. Ref 86bce38e-2", "86bce38e-2")
    assert carries_ref("HAVEN X. Ref 86bce38e-2. Reply 1", "86bce38e-2")
    assert not carries_ref("HAVEN X. Ref 86bce38e-20", "86bce38e-2")
    assert not carries_ref("HAVEN X. Ref 86bce38e-1", "86bce38e-2")
    assert not carries_ref("HAVEN X. 86bce38e-2", "86bce38e-2")


def test_find_sent_raises_when_the_message_list_is_forbidden(fake_twilio):
    """A key without read rights: the caller must not take "not found" for an answer."""
    from twilio.base.exceptions import TwilioException
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              from_number="+12065550000", api_base=fake_twilio.url)
    fake_twilio.deny_lists()
    with pytest.raises(TwilioException, match="Unable to fetch page"):
        notifier.find_sent("sms", "+12065550101", ref="86bce38e-1", text="", since_s=0)


def test_warm_up_opens_the_threads_api_connection_and_the_first_sms_uses_it(notifier,
                                                                              fake_twilio):
    notifier.warm_up()
    deadline = time.monotonic() + 2
    while len(fake_twilio._connections) != 1:  # the fake sees the connection, no request
        assert time.monotonic() < deadline, fake_twilio._connections
        time.sleep(0.01)
    assert fake_twilio.accepted() == []
    assert notifier.send_sms("+12065550101", "Test").ok
    assert len(fake_twilio._connections) == 1  # the same connection, not a second one


def test_warm_up_with_the_api_down_is_logged_and_pages_still_try(notifier, fake_twilio,
                                                                  caplog):
    fake_twilio.down()
    with caplog.at_level("WARNING", logger="hub.edges.notify"):
        notifier.warm_up()  # does not raise: the hub must start without Twilio
    assert "Twilio API not reachable at start" in caplog.text
    fake_twilio.up()
    assert notifier.send_sms("+12065550101", "Test").ok


def test_warm_up_with_wrong_credentials_says_which_to_check(fake_twilio, caplog):
    notifier = TwilioNotifier(fake_twilio.account_sid, "not-the-token",
                              from_number="+12065550000", api_base=fake_twilio.url)
    with caplog.at_level("ERROR", logger="hub.edges.notify"):
        notifier.warm_up()
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in caplog.text


def test_a_proxy_in_the_environment_is_not_used_for_a_local_api(fake_twilio, monkeypatch):
    """HTTPS_PROXY is for the real API; a rebased client (tests, benchmarks) goes direct."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              from_number="+12065550000", api_base=fake_twilio.url)
    assert notifier.send_sms("+12065550101", "Test").ok
