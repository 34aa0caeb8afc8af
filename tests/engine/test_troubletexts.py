"""Trouble texts to IT (fakeredis, controlled clock): batched per branch and minute, sent
once across workers, no "never connected" for a device that spoke, a broker outage
reported as such; and the "store back" / "broker back" log lines."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from device.protocol import Topics, new_alarm
from hub.edges.mqtt import BrokerAddress, HubMqtt
from hub.edges.outage import Outage
from hub.engine.service import AlarmService
from hub.core.troubles import Trouble, TroubleNotice
from hub.engine.supervision import Supervisor
from hub.engine.troubletexts import TroubleTexts
from hub.store.troubles import TEXT_LEASE_MS
from tests.engine.test_escalation import InlinePool, Recorder

NOW = 1_780_000_000_000  # ms
IT = "+12065550107"  # Library IT on call, at both branches


class Link:
    """A hub worker's broker connection, as ``HubMqtt.link`` reports it."""

    def __init__(self):
        self.state = (True, NOW - 3_600_000)

    def __call__(self):
        return self.state


def worker(site, store, link=None, notifier=None):
    """One hub worker's supervision wired as the runner wires it; texts sent inline."""
    notifier = notifier or Recorder()
    link = link or Link()
    texts = TroubleTexts(site, store, notifier, broker=link, senders=InlinePool())
    sup = Supervisor(site, store, texts.queue, started_ms=NOW, clock=lambda: 0.0,
                     broker=link, after_check=texts.after_check)
    return sup, notifier


def beat_all(store, site, at_ms, but=()):
    for device in site.devices:
        if device not in but:
            store.devices.update_device(device, "health", heartbeat_ms=at_ms, outbox=0)


def texts_to_it(notifier):
    return [body for _, to, body in notifier.sent if to == IT]


def test_a_hub_start_before_any_device_connects_is_one_text_per_branch(sample_site,
                                                                        fake_store):
    """Seven devices not heard 45 s after a start: two texts (one per branch), not seven."""
    sup, notifier = worker(sample_site, fake_store)
    sup.check(NOW + 46_000)
    sent = texts_to_it(notifier)
    assert len(sent) == 2, sent
    main = next(t for t in sent if "Main Library" in t)
    assert main.startswith("HAVEN devices at Main Library: never connected: main-circ-01 "
                           "(Circulation Desk), main-ref-01 (Reference Desk),")
    for device in ("main-child-01", "main-work-01", "main-safe-01"):
        assert device in main
    assert len(main) <= 600


def test_a_device_that_sent_an_alarm_has_connected(sample_site, fake_store):
    """An alarm is a sign of life: silent since, it is offline, not "never connected"."""
    service = AlarmService(sample_site, fake_store, Recorder(), lambda t, p: None,
                           InlinePool(), escalators=InlinePool(), clock=lambda: NOW / 1000 + 1)
    msg = new_alarm("main-circ-01", "assist", NOW / 1000 + 1)
    service.handle(Topics().alarm("main-circ-01"), msg.to_json())
    sup, _ = worker(sample_site, fake_store)
    sup.check(NOW + 45_500)  # 44.5 s after the alarm: not silent yet
    assert fake_store.r.smembers("haven:troubles:main-circ-01") == set()
    assert fake_store.r.smembers("haven:troubles:main-ref-01") == {"never_seen"}
    sup.check(NOW + 47_000)
    assert fake_store.r.smembers("haven:troubles:main-circ-01") == {"offline"}


def test_a_long_batch_names_what_fits_and_counts_the_rest(sample_site):
    from hub.core.messages import TROUBLE_TEXT_MAX, trouble_batch_text
    from hub.core.troubles import TroubleNotice
    notices = [TroubleNotice(f"main-shelf-{i:03}", Trouble.LOW_BATTERY, True, "main", "x", NOW)
               for i in range(60)]
    text = trouble_batch_text("main", notices, sample_site)
    assert len(text) <= TROUBLE_TEXT_MAX
    assert text.startswith("HAVEN devices at Main Library: LOW BATTERY: main-shelf-000, ")
    named = text.count("main-shelf-")
    more = int(text.rsplit(" And ", 1)[1].split()[0])
    assert named + more == 60 and text.endswith("more: see the dashboard.")


def test_alarms_read_together_are_signs_of_life_in_one_round_trip(sample_site, fake_store):
    service = AlarmService(sample_site, fake_store, Recorder(), lambda t, p: None,
                           InlinePool(), escalators=InlinePool(), clock=lambda: NOW / 1000)
    fake_store.r.hset("haven:checkin:west-front-01", "requested_ms", NOW - 30_000)
    burst = [(Topics().alarm(d), new_alarm(d, "assist", NOW / 1000).to_json(), False)
             for d in ("main-circ-01", "west-front-01")]
    service.handle_batch(burst)
    assert fake_store.devices.device_status("main-circ-01")["alarm_ms"] == str(NOW)
    assert fake_store.devices.device_status("west-front-01")["alarm_ms"] == str(NOW)
    assert fake_store.r.hget("haven:checkin:west-front-01", "answered_ms") == str(NOW)
    assert not fake_store.r.exists("haven:checkin:main-circ-01")  # a wall button is not asked


def test_troubles_within_the_minute_wait_for_the_next_text(sample_site, fake_store):
    sup, notifier = worker(sample_site, fake_store)
    beat_all(fake_store, sample_site, NOW)
    sup.check(NOW)
    assert notifier.sent == []
    beat_all(fake_store, sample_site, NOW + 40_000, but=("main-ref-01",))
    sup.check(NOW + 46_000)  # main-ref-01 silent: texted at once (a quiet branch)
    assert texts_to_it(notifier) == [
        "HAVEN device main-ref-01 (Main Library, Reference Desk) is OFFLINE (no heartbeat): "
        "it cannot raise alarms."]
    beat_all(fake_store, sample_site, NOW + 90_000, but=("main-work-01",))
    sup.check(NOW + 96_000)  # main-work-01 silent, main-ref-01 back: within the minute
    assert len(notifier.sent) == 1
    beat_all(fake_store, sample_site, NOW + 100_000, but=("main-work-01",))
    sup.check(NOW + 101_000)  # 55 s after the first text
    assert len(notifier.sent) == 1
    sup.check(NOW + 106_500)  # the minute is up: one text with both changes
    assert texts_to_it(notifier)[1] == (
        "HAVEN devices at Main Library: OFFLINE (no heartbeat: cannot raise alarms): "
        "main-work-01 (Staff Workroom). all clear (offline): main-ref-01 (Reference Desk).")


def test_two_workers_send_each_batch_once(sample_site, fake_store):
    link = Link()
    a, sent_a = worker(sample_site, fake_store, link)
    b, sent_b = worker(sample_site, fake_store, link)
    barrier = threading.Barrier(2)

    def run(sup):
        barrier.wait()
        sup.check(NOW + 46_000)
    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(sent_a.sent) + len(sent_b.sent) == 2  # one per branch, whoever sent it


def test_a_batch_taken_by_a_worker_that_died_is_texted_by_another(sample_site, fake_store):
    """Worker a takes main's batch and dies before texting it; worker b's check after the
    lease texts it. A batch that was texted is not texted again."""
    dead = TroubleTexts(sample_site, fake_store, Recorder(), senders=InlinePool())
    dead.queue(TroubleNotice("main-ref-01", Trouble.OFFLINE, True, "main", "reference",
                             NOW))
    assert fake_store.troubles.take_texts("main", NOW, dead.batch_every_ms) is not None
    b, sent_b = worker(sample_site, fake_store)
    beat_all(fake_store, sample_site, NOW)
    b.check(NOW + 1_000)
    assert texts_to_it(sent_b) == []  # its worker may still be texting it
    beat_all(fake_store, sample_site, NOW + TEXT_LEASE_MS)
    b.check(NOW + TEXT_LEASE_MS)
    assert texts_to_it(sent_b) == [
        "HAVEN device main-ref-01 (Main Library, Reference Desk) is OFFLINE (no heartbeat): "
        "it cannot raise alarms."]
    beat_all(fake_store, sample_site, NOW + 10 * TEXT_LEASE_MS)
    b.check(NOW + 10 * TEXT_LEASE_MS)
    assert len(texts_to_it(sent_b)) == 1


def test_a_broker_outage_is_reported_once_as_such_not_as_offline_devices(sample_site,
                                                                          fake_store, caplog):
    link = Link()
    a, sent_a = worker(sample_site, fake_store, link)
    b, sent_b = worker(sample_site, fake_store, link)
    beat_all(fake_store, sample_site, NOW)
    a.check(NOW)
    link.state = (False, NOW + 1_000)  # the broker dies; no Last Will can fire
    with caplog.at_level(logging.ERROR, logger="haven.supervision"):
        for t in range(5_000, 120_000, 5_000):
            a.check(NOW + t)
            b.check(NOW + t + 100)
    assert all(fake_store.r.smembers(f"haven:troubles:{d}") == set()
               for d in sample_site.devices)
    sent = sent_a.sent + sent_b.sent
    assert [(to, body) for _, to, body in sent] == [
        (IT, "HAVEN: the hub cannot reach its MQTT broker (mosquitto): no alarm from any "
             "device gets through. The devices are not at fault; check the broker host.")]
    assert "broker unreachable for 1" in caplog.text
    link.state = (True, NOW + 120_000)  # back: devices reconnect and beat within 45 s
    a.check(NOW + 125_000)
    b.check(NOW + 125_100)
    assert [body for _, _, body in sent_a.sent + sent_b.sent][1:] == [
        "HAVEN all clear: the hub reaches its MQTT broker again; alarms get through."]
    assert all(fake_store.r.smembers(f"haven:troubles:{d}") == set()
               for d in sample_site.devices)
    beat_all(fake_store, sample_site, NOW + 150_000, but=("west-safe-01",))
    a.check(NOW + 166_000)  # 46 s after the broker came back, one device never did
    assert fake_store.r.smembers("haven:troubles:west-safe-01") == {"offline"}
    assert {d for d in sample_site.devices
            if fake_store.r.smembers(f"haven:troubles:{d}")} == {"west-safe-01"}


def test_the_end_of_a_store_outage_is_logged_once(caplog):
    now = [100.0]
    log = logging.getLogger("haven.test")
    store = Outage("store", log, "escalation timers", clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="haven.test"):
        store.up()
        store.down()
        now[0] += 2.5
        store.down()
        store.up()
        store.up()
    assert [r.getMessage() for r in caplog.records] == [
        "store back (escalation timers) after 2.5 s"]


def test_the_hub_logs_broker_back_and_reports_its_link(tmp_path, caplog):
    """A real mosquitto stopped and started again on the same port."""
    from hub.app.localservices import start_mosquitto
    broker = start_mosquitto(tmp_path / "m1")
    hub = HubMqtt(BrokerAddress("127.0.0.1", broker.port), lambda *a, **k: None,
                  client_id="hub-link-test")
    thread = threading.Thread(target=hub.run, daemon=True)
    revived = None
    try:
        with caplog.at_level(logging.INFO, logger="haven.mqtt"):
            thread.start()
            assert hub.ready.wait(10)
            assert hub.link[0] is True
            broker.stop()
            _until(lambda: hub.link[0] is False)
            assert "broker back" not in caplog.text
            revived = start_mosquitto(tmp_path / "m2", port=broker.port)
            _until(lambda: hub.link[0] is True)
            _until(lambda: "broker back: 127.0.0.1" in caplog.text)
    finally:
        hub.stop()
        thread.join(5)
        if revived is not None:
            revived.stop()


def _until(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not true within {timeout_s} s")
        time.sleep(0.02)
