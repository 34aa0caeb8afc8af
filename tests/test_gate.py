"""hub.gate: a lone alarm's pages are built during its raise and leave only once the raise
has claimed them; anything else drops them unsent, and the ordinary path pages."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from device.protocol import Topics, new_alarm
from hub import gate as gate_module
from hub.gate import Gate, GateClosed
from hub.groupcommit import GroupCommit
from hub.notify import TwilioNotifier
from hub.service import AlarmService, Outcome
from hub.twilio_http import ApiUnreachable, PooledHttpClient

NOW = 1763840000.0


def test_a_gate_lets_through_once_opened_and_never_once_closed(monkeypatch):
    opened, closed, undecided = Gate(), Gate(), Gate()
    threading.Timer(0.05, opened.open).start()
    opened.passed()
    closed.close()
    with pytest.raises(GateClosed):
        closed.passed()
    monkeypatch.setattr(gate_module, "GATE_WAIT_S", 0.05)
    with pytest.raises(GateClosed):  # never decided: treated as closed
        undecided.passed()


def test_a_write_handed_over_is_run_by_the_opener_and_its_error_reaches_its_page():
    gate, ran_on, out = Gate(), [], []

    def page(write):
        try:
            gate.send(write)
            out.append("sent")
        except Exception as exc:  # noqa: BLE001 - the test looks at it
            out.append(exc)

    def failing():
        raise OSError("broken pipe")

    pages = [threading.Thread(target=page, args=(lambda: ran_on.append(
        threading.current_thread()),)), threading.Thread(target=page, args=(failing,))]
    for t in pages:
        t.start()
    deadline = time.monotonic() + 5
    while len(gate._writes) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ran_on == [] and out == []
    gate.open()  # runs both writes here, before it returns
    assert ran_on == [threading.current_thread()]
    for t in pages:
        t.join(5)
    assert sorted(map(str, out)) == ["broken pipe", "sent"]
    gate.send(lambda: ran_on.append("after"))  # decided open: written by its own page
    assert ran_on[-1] == "after"


def test_a_write_handed_to_a_gate_that_closes_or_never_decides_is_never_run(monkeypatch):
    ran = []
    closed = Gate()
    worker = threading.Thread(target=lambda: pytest.raises(GateClosed, closed.send,
                                                           lambda: ran.append(1)))
    worker.start()
    time.sleep(0.05)
    closed.close()
    worker.join(5)
    with pytest.raises(GateClosed):
        closed.send(lambda: ran.append(2))
    monkeypatch.setattr(gate_module, "GATE_WAIT_S", 0.05)
    undecided = Gate()
    with pytest.raises(GateClosed):
        undecided.send(lambda: ran.append(3))
    undecided.open()  # too late: it was withdrawn
    assert ran == [] and undecided._writes == []


def _post_later(client, gate, out, sid="AC1", token="t"):
    client.hold_next(gate)
    try:
        out.append(client.request(
            "POST", f"https://api.twilio.com/2010-04-01/Accounts/{sid}/Messages.json",
            data={"To": "+12065550101", "From": "+12065550000", "Body": "b"},
            auth=(sid, token)))
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        out.append(exc)


def test_the_transport_writes_nothing_until_the_gate_opens(fake_twilio):
    client = PooledHttpClient(timeout_s=2, api_base=fake_twilio.url)
    for decide, accepted in (("open", 1), ("close", 1)):
        gate, out = Gate(), []
        worker = threading.Thread(target=_post_later, args=(
            client, gate, out, fake_twilio.account_sid, fake_twilio.auth_token))
        worker.start()
        time.sleep(0.2)
        assert out == [] and len(fake_twilio.accepted()) == accepted - (decide == "open")
        getattr(gate, decide)()
        worker.join(5)
        if decide == "open":
            assert out[0].status_code == 201
        else:
            assert isinstance(out[0], GateClosed)
        assert len(fake_twilio.accepted()) == accepted


def test_an_api_failure_before_the_gate_waits_for_its_decision():
    from hub.localservices import free_port
    client = PooledHttpClient(timeout_s=1, api_base=f"http://127.0.0.1:{free_port()}")
    for decide, expect in (("open", ApiUnreachable), ("close", GateClosed)):
        gate, out = Gate(), []
        worker = threading.Thread(target=_post_later, args=(client, gate, out))
        worker.start()
        time.sleep(0.2)
        assert out == []  # refused at once, but no outcome before the decision
        getattr(gate, decide)()
        worker.join(5)
        assert isinstance(out[0], expect)


@pytest.fixture
def ahead(sample_site, fake_store, fake_twilio):
    """A service sending ahead on real sender threads through the real SDK."""
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              from_number="+12065550000", api_base=fake_twilio.url)
    senders, escalators = ThreadPoolExecutor(8), ThreadPoolExecutor(2)
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=escalators, clock=lambda: NOW, send_ahead=True)
    yield service
    senders.shutdown(wait=True)
    escalators.shutdown(wait=True)


def _press(service, device, alarm=None):
    alarm = alarm or new_alarm(device, "emergency", NOW)
    return alarm, service.handle(Topics().alarm(device), alarm.to_json())


def _settle(fake_twilio, count):
    fake_twilio.wait_for(count, timeout=5)
    fake_twilio.wait_for(count, timeout=5, resource="Calls")
    time.sleep(0.3)


def _pages(fake_twilio):
    return sorted((r.resource, r.form["To"]) for r in
                  fake_twilio.accepted() + fake_twilio.accepted("Calls"))


def test_pages_sent_ahead_go_once_and_finish_the_attempt(ahead, fake_twilio, fake_store):
    _, _ = _press(ahead, "main-circ-01")  # the first alarm of a branch: no plan ahead
    time.sleep(0.5)
    first = _pages(fake_twilio)
    gates, ordinary = [], []
    pre_send, start = ahead._pre_send, ahead._start_escalation
    ahead._pre_send = lambda intake: gates.append(pre_send(intake)) or gates[-1]
    ahead._start_escalation = lambda *a: ordinary.append(a) or start(*a)
    alarm, outcome = _press(ahead, "main-ref-01")
    assert outcome is Outcome.STORED
    assert len(gates) == 1 and gates[0] is not None and ordinary == []  # sent ahead
    time.sleep(0.5)
    second = [p for p in _pages(fake_twilio)]
    assert len(second) == 2 * len(first) and sorted(second) == sorted(first + first)
    events = [e["event"] for e in fake_store.timeline(alarm.alarm_id)]
    assert events[:2] == ["raised", "escalation"] and events.count("notified") == len(first)
    wait_ms = ahead.site.kinds["emergency"].steps[0].wait_s * 1000
    assert fake_store.escalation_due(alarm.alarm_id) == NOW * 1000 + wait_ms  # finished


def test_a_resent_alarm_sent_ahead_is_dropped_unsent(ahead, fake_twilio, fake_store):
    alarm, _ = _press(ahead, "main-circ-01")
    time.sleep(0.5)
    before = _pages(fake_twilio)
    assert _press(ahead, "main-circ-01", alarm)[1] is Outcome.DUPLICATE
    time.sleep(0.5)
    assert _pages(fake_twilio) == before


def test_a_changed_branch_state_drops_the_plan_and_pages_the_new_one(ahead, fake_twilio,
                                                                    fake_store):
    _press(ahead, "main-circ-01")
    time.sleep(0.5)
    n = len(_pages(fake_twilio))
    fake_store.set_branch_switches("main", by="Dana", now_ms=int(NOW * 1000),
                                   drill_until_ms=int(NOW * 1000) + 600_000)
    _press(ahead, "main-ref-01")
    time.sleep(0.5)
    texts = [r.form.get("Body", "") for r in fake_twilio.accepted()][n // 2:]
    assert texts and all("DRILL" in t for t in texts), texts


def test_a_store_failure_during_the_raise_sends_nothing(ahead, fake_twilio, fake_store):
    _press(ahead, "main-circ-01")
    time.sleep(0.5)
    before = _pages(fake_twilio)

    def down(requests):
        time.sleep(0.1)  # the pages' requests are built and waiting at the gate
        raise redis.ConnectionError("store down (test)")

    fake_store.raise_many = down
    with pytest.raises(redis.ConnectionError):
        _press(ahead, "main-ref-01")
    time.sleep(0.5)
    assert _pages(fake_twilio) == before


def test_a_page_that_fails_before_any_request_records_nothing_until_the_gate_opens(
        sample_site, fake_store, fake_twilio):
    """Calls through a Messaging Service fail at once, without a request: such a failure
    must not be recorded for a page whose raise turns out not to be ours (a duplicate)."""
    notifier = TwilioNotifier(fake_twilio.account_sid, fake_twilio.auth_token,
                              messaging_service_sid="MG" + "1" * 32, api_base=fake_twilio.url)
    senders, escalators = ThreadPoolExecutor(8), ThreadPoolExecutor(2)
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, senders,
                           escalators=escalators, clock=lambda: NOW, send_ahead=True)
    try:
        alarm, _ = _press(service, "main-circ-01")  # plans nothing ahead: the first one
        time.sleep(0.5)
        records = []
        service.records = GroupCommit(
            lambda batch: records.extend(batch) or fake_store.record_notifications(batch))
        raise_many = fake_store.raise_many

        def slow_raise(requests):
            time.sleep(0.2)  # the failed calls would be recorded meanwhile, were it allowed
            return raise_many(requests)

        fake_store.raise_many = slow_raise
        assert _press(service, "main-circ-01", alarm)[1] is Outcome.DUPLICATE
        time.sleep(0.5)
        assert records == []
    finally:
        senders.shutdown(wait=True)
        escalators.shutdown(wait=True)
