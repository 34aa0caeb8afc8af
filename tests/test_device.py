"""The firmware on mock pins against a real mosquitto: presses, holds, presence."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion

from device.config import DeviceConfig, DeviceConfigError, parse_device_config
from device.firmware import DeviceApp
from device.protocol import Command, Topics, decode_alarm, decode_status
from hub.localservices import spawn


@pytest.fixture
def pins():
    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def listener(mosquitto):
    """A paho client collecting every device message as (topic, payload, retained)."""
    got: queue.Queue = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.put((m.topic, m.payload, m.retain))
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe("haven/v1/dev/#", qos=1)
    client.loop_start()
    yield got, client
    client.loop_stop()
    client.disconnect()


def next_on(got: queue.Queue, channel: str, timeout: float = 3.0):
    deadline = time.monotonic() + timeout
    while True:
        topic, payload, retained = got.get(timeout=max(0.01, deadline - time.monotonic()))
        if topic.endswith("/" + channel):
            return topic, payload, retained


@pytest.fixture
def app(pins, mosquitto, listener):
    device = DeviceApp(DeviceConfig("main-circ-01", "127.0.0.1", mosquitto.port, button_pin=17,
                                    hold_seconds=0.5), pin_factory=pins)
    device.start()
    assert device.connected.wait(5)
    yield device
    device.stop()


def test_connect_announces_online_with_a_retained_status(app, listener):
    got, _ = listener
    topic, payload, _ = next_on(got, "status")
    status = decode_status(topic, payload)
    assert (status.device, status.state, status.firmware) == ("main-circ-01", "online", "0.1.0")


def test_a_press_publishes_one_assist_alarm(app, pins, listener):
    got, _ = listener
    pins.pin(17).drive_low()
    pins.pin(17).drive_high()
    topic, payload, _ = next_on(got, "alarm")
    alarm = decode_alarm(topic, payload)
    assert (alarm.device, alarm.kind) == ("main-circ-01", "assist")
    assert abs(alarm.pressed_at / 1000 - time.time()) < 5
    with pytest.raises(queue.Empty):
        next_on(got, "alarm", timeout=0.3)


def test_a_hold_publishes_an_emergency_before_release_and_nothing_on_release(app, pins,
                                                                             listener):
    got, _ = listener
    pins.pin(17).drive_low()
    topic, payload, _ = next_on(got, "alarm", timeout=2)
    assert decode_alarm(topic, payload).kind == "emergency"
    pins.pin(17).drive_high()
    with pytest.raises(queue.Empty):
        next_on(got, "alarm", timeout=0.3)


def test_hub_confirmations_are_tracked_per_alarm(app, listener):
    _, client = listener
    alarm = app.raise_alarm("assist")
    deadline = time.monotonic() + 2
    while app.alarms[alarm.alarm_id] != "sent" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.alarms[alarm.alarm_id] == "sent"  # the broker has it; the hub has not said so
    client.publish(Topics().cmd("main-circ-01"),
                   Command("received", alarm.alarm_id, 1).to_json(), qos=1)
    while app.alarms[alarm.alarm_id] != "received" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.alarms[alarm.alarm_id] == "received"


def test_a_killed_device_is_reported_offline_by_its_last_will(tmp_path, mosquitto, listener):
    got, _ = listener
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\nid = "west-front-01"\n[broker]\nhost = "127.0.0.1"\n'
                      f'port = {mosquitto.port}\n[button]\npin = 5\n')
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    proc = spawn([sys.executable, "-m", "hub.cli", "device", "--config", str(config)],
                 log=tmp_path / "device.log", env=env)
    try:
        topic, payload, _ = next_on(got, "status", timeout=10)
        assert decode_status(topic, payload).state == "online"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    topic, payload, _ = next_on(got, "status", timeout=5)
    assert decode_status(topic, payload).state == "offline"
    assert json.loads(payload)["device"] == "west-front-01"


@pytest.mark.parametrize("data, message", [
    ({"broker": {"host": "h"}}, "device.id: missing"),
    ({"device": {"id": "a b"}, "broker": {"host": "h"}}, "device.id: 'a b' is not valid"),
    ({"device": {"id": "d1"}}, "broker.host: missing"),
    ({"device": {"id": "d1"}, "broker": {"host": "h", "port": "1883"}}, "broker.port: '1883'"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"}, "button": {"pin": 40}},
     "button.pin: 40 is not a BCM GPIO number"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"}, "button": {"hold_seconds": 0.1}},
     "button.hold_seconds: 0.1 must be 0.5 to 10 seconds"),
])
def test_device_config_errors_name_the_field(data, message):
    with pytest.raises(DeviceConfigError, match="device.toml: " + message.replace("(", r"\(")):
        parse_device_config(data, "device.toml")


def test_device_config_defaults():
    config = parse_device_config({"device": {"id": "d1"}, "broker": {"host": "hub.local"}})
    assert config == DeviceConfig("d1", "hub.local", 1883, "haven/v1", 17, 2.0)
