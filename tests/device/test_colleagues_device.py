"""The firmware's side of colleagues' alerts, on mock pins against a real mosquitto (no
hub: the test plays it): what a press means while an alert shows, and while none does."""

from __future__ import annotations

import queue
import time
from dataclasses import replace

import pytest

from device.config import (BrokerConfig, DeviceConfig, DeviceConfigError, InputConfig,
                           OutputsConfig, parse_device_config)
from device.feedback import Signal
from device.firmware import DeviceApp
from device.protocol import Command, Topics, decode_alarm, decode_event
from tests.device.test_device import listener, next_on  # noqa: F401 (a fixture)

#: A wearable's patterns, the windows wide enough for a loaded test machine's sleeps.
PATTERNS = (("hold 0.5s", "emergency"), ("3 presses within 1s", "assist"),
            ("press", "test"), ("2 presses within 1s", "cancel"))
BUTTON, LED, VIBRATION, BUZZER = 17, 22, 23, 24
TOPICS = Topics()


def wait_until(predicate, timeout=3.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.002)


@pytest.fixture
def device(pins, mosquitto, listener, tmp_path):  # noqa: F811
    """A wearable (main-b) with every output, its buzzer allowed for everything it may
    sound for, and the events it reports."""
    events = []
    config = DeviceConfig("main-b", BrokerConfig("127.0.0.1", mosquitto.port),
                          inputs=(InputConfig(BUTTON, "button", PATTERNS),),
                          outputs=OutputsConfig(led=LED, vibration=VIBRATION, buzzer=BUZZER,
                                                buzzer_for=tuple(s.value for s in Signal)),
                          outbox=str(tmp_path / "outbox.sqlite3"), alert_s=10)
    app = DeviceApp(config, pin_factory=pins, on_event=lambda e, a: events.append((e, a)))
    app.start()
    assert app.connected.wait(5)
    yield app, events
    app.stop()


def tell(listener, alarm_id, cmd="alert", **fields):  # noqa: F811
    _, client = listener
    client.publish(TOPICS.cmd("main-b"), Command(cmd, alarm_id, int(time.time() * 1000),
                                                 **fields).to_json(), qos=1).wait_for_publish(2)


def press(pins, times=1, hold_s=0.04):
    """Presses as a finger makes them: down and up again, never quicker than the
    firmware's 30 ms debounce."""
    for _ in range(times):
        pins.pin(BUTTON).drive_low()
        time.sleep(hold_s)
        pins.pin(BUTTON).drive_high()
        time.sleep(0.04)


def alert(app, events, listener, alarm_id, kind="assist"):  # noqa: F811
    tell(listener, alarm_id, kind=kind, room="circulation")
    wait_until(lambda: ("alert", alarm_id) in events, what="the alert")
    wait_until(lambda: app.feedback.persistent is Signal.ALERT, what="ALERT shown")


def test_a_press_during_an_alert_answers_and_raises_nothing(device, pins, listener):  # noqa: F811
    app, events = device
    got, _ = listener
    alert(app, events, listener, "a-1")
    wait_until(lambda: pins.pin(VIBRATION).state, what="vibrating")
    press(pins)  # one press: "test" when no alert shows
    _, payload, _ = next_on(got, "event")
    answered = decode_event(TOPICS.event("main-b"), payload)
    assert (answered.event, answered.alarm_id) == ("responding", "a-1")
    assert not app.tracks and app.outbox.depth() == 0
    assert app.feedback.persistent is Signal.ALERT  # until the hub says it took the answer
    press(pins, times=3)  # pressing on meanwhile answers again; still no alarm
    _, payload, _ = next_on(got, "event")
    assert decode_event(TOPICS.event("main-b"), payload).alarm_id == "a-1"
    assert not app.tracks and app.outbox.depth() == 0
    tell(listener, "a-1", "alert_clear", reason="answered")
    wait_until(lambda: not app.alerts, what="the alert to end")
    assert Signal.ANSWERED in app.feedback.history
    wait_until(lambda: app.feedback.persistent is Signal.IDLE, what="back to idle")
    assert not any(s.state for s in pins.pin(BUZZER).states)  # never the buzzer
    # With no alert showing, the patterns are what they always were.
    press(pins, times=3)
    _, payload, _ = next_on(got, "alarm")
    assert decode_alarm(TOPICS.alarm("main-b"), payload).kind == "assist"


def test_dismissed_by_the_cancel_pattern_or_a_timeout_without_answering(
        device, pins, listener):  # noqa: F811
    app, events = device
    got, _ = listener
    alert(app, events, listener, "a-1")
    press(pins, times=2)
    wait_until(lambda: ("alert_dismissed", "a-1") in events, what="the dismissal")
    assert not app.alerts and Signal.ALERT_OVER in app.feedback.history
    wait_until(lambda: app.feedback.persistent is Signal.IDLE, what="back to idle")
    tell(listener, "a-1", kind="assist", room="circulation")  # a redelivery: not again
    app.config = replace(app.config, alert_s=0.3)
    alert(app, events, listener, "a-2")
    wait_until(lambda: ("alert_timeout", "a-2") in events, what="the timeout")
    assert not app.alerts and app.feedback.persistent is Signal.IDLE
    assert [e for e, a in events if a == "a-1"] == ["alert", "alert_dismissed"]
    assert not any(e == "responding" for e, _ in events)
    with pytest.raises(queue.Empty):
        next_on(got, "event", timeout=0.2)  # nothing was answered


def test_an_emergency_hold_during_an_alert_is_raised_and_ends_it(
        device, pins, listener):  # noqa: F811
    app, events = device
    got, _ = listener
    alert(app, events, listener, "a-1", kind="emergency")
    pins.pin(BUTTON).drive_low()
    _, payload, _ = next_on(got, "alarm")
    pins.pin(BUTTON).drive_high()
    assert decode_alarm(TOPICS.alarm("main-b"), payload).kind == "emergency"
    assert not app.alerts and ("alert_dismissed", "a-1") in events


def test_the_alert_is_silent_whatever_the_config_says(tmp_path):
    data = {"device": {"id": "main-b", "alert_s": 5}, "broker": {"host": "hub"},
            "outputs": {"buzzer": 24, "buzzer_for": ["locate", "alert"]}}
    with pytest.raises(DeviceConfigError) as err:
        parse_device_config(data, "device.toml")
    assert "outputs.buzzer_for: 'alert' never sounds the buzzer" in str(err.value)
    assert "device.alert_s: 5 must be 10 to 900" in str(err.value)
    data["device"]["alert_s"], data["outputs"]["buzzer_for"] = 60, ["locate"]
    assert parse_device_config(data).alert_s == 60
