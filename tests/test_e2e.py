"""End to end on real parts: a mock pin -> device firmware -> mosquitto -> hub process
-> redis-server -> twilio SDK -> the fake Twilio API."""

from __future__ import annotations

import json
import os
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

from device.config import BrokerConfig, DeviceConfig, InputConfig
from device.firmware import DeviceApp
from device.protocol import Topics, new_alarm
from hub.localservices import spawn
from tests.conftest import SAMPLE_SITE

FROM = "+12065550000"


@pytest.fixture
def hub(tmp_path, mosquitto, redis_service, fake_twilio):
    """A hub worker process sending through the fake Twilio; yields its log path."""
    env = dict(os.environ, TWILIO_ACCOUNT_SID=fake_twilio.account_sid,
               TWILIO_AUTH_TOKEN=fake_twilio.auth_token, TWILIO_FROM_NUMBER=FROM,
               HAVEN_TWILIO_API_BASE=fake_twilio.url)
    log = tmp_path / "hub.log"
    proc = spawn([sys.executable, "-m", "hub.cli", "hub", "--site", str(SAMPLE_SITE),
                  "--broker", f"127.0.0.1:{mosquitto.port}", "--redis", redis_service.url,
                  "--hub-id", "test-hub"], log=log, env=env)
    deadline = time.monotonic() + 10
    while "hub ready" not in log.read_text():
        assert proc.poll() is None, f"hub exited:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"hub not ready:\n{log.read_text()}"
        time.sleep(0.02)
    yield log
    proc.terminate()
    assert proc.wait(10) == 0, log.read_text()


@pytest.fixture
def pins():
    factory = MockFactory()
    yield factory
    factory.close()


WALL = (("press", "assist"), ("hold 2s", "emergency"), ("2 presses within 0.5s", "cancel"))


def device(pins, mosquitto, device_id: str, pin: int, tmp_path=None) -> DeviceApp:
    config = DeviceConfig(device_id, BrokerConfig("127.0.0.1", mosquitto.port),
                          inputs=(InputConfig(pin, "button", WALL),), outbox=":memory:")
    app = DeviceApp(config, pin_factory=pins)
    app.start()
    assert app.connected.wait(5)
    return app


def test_a_press_texts_every_contact_of_the_kind_and_branch_within_2s(
        hub, pins, mosquitto, fake_twilio, sample_site):
    app = device(pins, mosquitto, "main-circ-01", 17)
    try:
        pressed = time.monotonic()
        pins.pin(17).drive_low()
        time.sleep(0.05)  # longer than the firmware's 30 ms debounce
        pins.pin(17).drive_high()
        expected = {c.phone for c in sample_site.recipients("assist", "main")}
        assert len(expected) == 2
        got = fake_twilio.wait_for(len(expected), timeout=2.0)
        assert {r.form["To"] for r in got} == expected
        for r in got:
            assert r.form["From"] == FROM
            assert "Main Library" in r.form["Body"] and "Circulation Desk" in r.form["Body"]
            assert "Assistance needed" in r.form["Body"]
            assert r.at - pressed < 2.0
        # the hub confirmed the stored alarm to the device
        deadline = time.monotonic() + 2
        while app.outbox.depth() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [t.state for t in app.tracks.values()] == ["received"]
        assert app.outbox.depth() == 0
    finally:
        app.stop()


def test_a_hold_raises_an_emergency_that_reaches_police(hub, pins, mosquitto, fake_twilio,
                                                        sample_site):
    app = device(pins, mosquitto, "west-front-01", 18)
    try:
        pins.pin(18).drive_low()
        time.sleep(2.3)
        pins.pin(18).drive_high()
        expected = {c.phone for c in sample_site.recipients("emergency", "westside")}
        got = fake_twilio.wait_for(len(expected), timeout=2.0)
        assert {r.form["To"] for r in got} == expected
        assert "+12065550199" in expected  # police dispatch
        assert all("EMERGENCY" in r.form["Body"] and "Westside Branch, Front Desk" in r.form["Body"]
                   for r in got)
        time.sleep(0.3)
        assert len(fake_twilio.accepted()) == len(expected)  # the release raised nothing more
    finally:
        app.stop()


def _publisher(mosquitto) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="intruder", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    return client


def test_bad_messages_are_rejected_with_a_reason_and_the_hub_keeps_running(
        hub, mosquitto, fake_twilio, redis_service):
    from hub.store import Store
    topics = Topics()
    good = new_alarm("main-ref-01", "assist")
    bad = [
        (topics.alarm("main-ref-01"), b"{not json", "not valid UTF-8 JSON"),
        (topics.alarm("main-ref-01"), json.dumps({**json.loads(good.to_json()),
                                                  "pressed_at": "now"}).encode(),
         "field 'pressed_at': must be an integer"),
        (topics.alarm("main-ref-01"), json.dumps({**json.loads(good.to_json()),
                                                  "kind": "party"}).encode(),
         "field 'kind': unknown kind 'party'"),
        (topics.alarm("main-ref-01"), new_alarm("main-circ-01", "assist").to_json(),
         "field 'device': 'main-circ-01' does not match the topic's device 'main-ref-01'"),
        (topics.alarm("ghost-01"), new_alarm("ghost-01", "assist").to_json(),
         "'ghost-01' is not in the site config"),
    ]
    client = _publisher(mosquitto)
    try:
        for topic, payload, _ in bad:
            client.publish(topic, payload, qos=1).wait_for_publish(2)
        client.publish(topics.alarm("main-ref-01"), good.to_json(), qos=1).wait_for_publish(2)
        got = fake_twilio.wait_for(2, timeout=3.0)
        assert len(got) == 2 and all(good.alarm_id[:8] in r.form["Body"] for r in got)
    finally:
        client.loop_stop()
        client.disconnect()
    store = Store.from_url(redis_service.url)
    reasons = [r["reason"] for r in store.rejected()]
    store.r.close()
    for _, _, reason in bad:
        assert any(reason in text for text in reasons), (reason, reasons)
    log = hub.read_text()
    assert log.count("rejected message") == len(bad)


def test_a_redelivered_alarm_pages_nobody_twice(hub, mosquitto, fake_twilio):
    alarm = new_alarm("main-child-01", "assist")
    client = _publisher(mosquitto)
    try:
        for _ in range(3):
            client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1).wait_for_publish(2)
        got = fake_twilio.wait_for(2, timeout=3.0)
        time.sleep(0.5)
    finally:
        client.loop_stop()
        client.disconnect()
    assert len(got) == 2
    assert len(fake_twilio.accepted()) == 2


def test_an_alarm_raised_while_redis_is_down_is_paged_once_redis_returns(
        hub, mosquitto, redis_service, fake_twilio):
    from hub.localservices import start_redis
    redis_service.stop()
    alarm = new_alarm("main-work-01", "assist")
    client = _publisher(mosquitto)
    revived = None
    try:
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1).wait_for_publish(2)
        deadline = time.monotonic() + 5
        while "store unreachable" not in hub.read_text():
            assert time.monotonic() < deadline, hub.read_text()
            time.sleep(0.02)
        assert fake_twilio.accepted() == []
        revived = start_redis(redis_service.workdir, port=redis_service.port)
        got = fake_twilio.wait_for(2, timeout=10.0)
        assert len(got) == 2 and all(alarm.alarm_id[:8] in r.form["Body"] for r in got)
    finally:
        client.loop_stop()
        client.disconnect()
        if revived is not None:
            revived.stop()


def test_acknowledge_and_resolve_reach_the_device_that_pressed(hub, pins, mosquitto,
                                                              redis_service, fake_twilio):
    from device.feedback import Signal
    from hub.lifecycle import AlarmEvent
    from hub.store import Store
    app = device(pins, mosquitto, "main-child-01", 19)
    store = Store.from_url(redis_service.url)
    try:
        alarm = app.raise_alarm("assist")
        wait = time.monotonic() + 3
        while app.tracks[alarm.alarm_id].state != "received" and time.monotonic() < wait:
            time.sleep(0.01)
        store.transition(alarm.alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana",
                         now_ms=int(time.time() * 1000))
        while app.tracks[alarm.alarm_id].state != "acknowledged" and time.monotonic() < wait:
            time.sleep(0.01)
        assert app.feedback.persistent is Signal.ACKNOWLEDGED  # help is coming
        store.transition(alarm.alarm_id, AlarmEvent.RESOLVE, by="Dana", reason="patron left",
                         now_ms=int(time.time() * 1000))
        while app.tracks[alarm.alarm_id].state != "resolved" and time.monotonic() < wait:
            time.sleep(0.01)
        assert app.tracks[alarm.alarm_id].state == "resolved"
    finally:
        app.stop()
        store.r.close()


def test_a_wearer_cancels_an_assist_within_its_window(hub, pins, mosquitto, redis_service,
                                                      fake_twilio):
    from hub.model import AlarmState
    from hub.store import Store
    app = device(pins, mosquitto, "main-work-01", 20)
    store = Store.from_url(redis_service.url)
    try:
        alarm = app.raise_alarm("assist")
        for _ in range(2):
            pins.pin(20).drive_low()
            time.sleep(0.05)
            pins.pin(20).drive_high()
            time.sleep(0.05)
        wait = time.monotonic() + 5
        while app.tracks[alarm.alarm_id].state != "resolved" and time.monotonic() < wait:
            time.sleep(0.01)
        stored = store.get_alarm(alarm.alarm_id)
        assert stored.state is AlarmState.CANCELLED and stored.closed_by == "main-work-01"
        assert store.active_alarms() == []
    finally:
        app.stop()
        store.r.close()
