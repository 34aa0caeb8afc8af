"""The firmware on mock pins against a real mosquitto: patterns, outbox, feedback, presence."""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.config import (BrokerConfig, DeviceConfig, DeviceConfigError, InputConfig,
                           OutputsConfig, parse_device_config)
from device.feedback import Signal
from device.firmware import FIRMWARE_VERSION, AlarmTrack, DeviceApp, persistent_signal
from device.outbox import Outbox
from device.protocol import (Command, Topics, decode_alarm, decode_event, decode_heartbeat,
                             decode_status)
from hub.app.localservices import spawn

WEARABLE = (("hold 2s", "emergency"), ("3 presses within 2s", "assist"), ("press", "test"),
            ("2 presses within 1s", "cancel"))
FAST = (("hold 0.5s", "emergency"), ("3 presses within 0.6s", "assist"),
        ("2 presses within 0.4s", "cancel"))


@pytest.fixture
def listener(mosquitto):
    """A paho client collecting every device message as (topic, payload, retained)."""
    got: queue.Queue = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="listener", protocol=mqtt.MQTTv5)
    client.on_message = lambda c, u, m: got.put((m.topic, m.payload, m.retain))
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe("haven/v1/dev/+/alarm", qos=1)
    client.subscribe("haven/v1/dev/+/status", qos=1)
    client.subscribe("haven/v1/dev/+/event", qos=1)
    client.subscribe("haven/v1/dev/+/heartbeat", qos=1)
    client.loop_start()
    yield got, client
    client.loop_stop()
    client.disconnect()
    _held_back.pop(id(got), None)


_held_back: dict[int, list] = {}


def next_on(got: queue.Queue, channel: str, timeout: float = 3.0):
    """The next message on ``channel``; messages of other channels wait for their turn."""
    held = _held_back.setdefault(id(got), [])
    for i, (topic, payload, retained) in enumerate(held):
        if topic.endswith("/" + channel):
            del held[i]
            return topic, payload, retained
    deadline = time.monotonic() + timeout
    while True:
        topic, payload, retained = got.get(timeout=max(0.01, deadline - time.monotonic()))
        if topic.endswith("/" + channel):
            return topic, payload, retained
        held.append((topic, payload, retained))


def make_app(pins, port, tmp_path, *, patterns=FAST, outputs=OutputsConfig(), **timing):
    config = DeviceConfig("main-circ-01", BrokerConfig("127.0.0.1", port),
                          inputs=(InputConfig(17, "button", patterns),), outputs=outputs,
                          outbox=str(tmp_path / "outbox.sqlite3"), **timing)
    return DeviceApp(config, pin_factory=pins)


@pytest.fixture
def app(pins, mosquitto, listener, tmp_path):
    device = make_app(pins, mosquitto.port, tmp_path,
                      outputs=OutputsConfig(led=22, vibration=23))
    device.start()
    assert device.connected.wait(5)
    yield device
    device.stop()


def press(pins, times=1, hold_s=0.06, pin=17):
    for _ in range(times):
        pins.pin(pin).drive_low()
        time.sleep(hold_s)
        pins.pin(pin).drive_high()
        time.sleep(0.06)


def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_connect_announces_online_with_health(app, listener):
    got, _ = listener
    topic, payload, _ = next_on(got, "status")
    status = decode_status(topic, payload)
    assert (status.device, status.state, status.firmware) == ("main-circ-01", "online",
                                                              FIRMWARE_VERSION)
    assert status.health.outbox == 0 and status.health.uptime_s >= 0


def test_heartbeats_are_not_retained_and_presence_is_said_once(pins, mosquitto, listener,
                                                               tmp_path):
    """Presence once per connection (retained, for every hub worker); the readings every
    heartbeat_s on their own topic (not retained), for the workers to split."""
    got, _ = listener
    device = make_app(pins, mosquitto.port, tmp_path, heartbeat_s=1)
    device.start()
    try:
        next_on(got, "status")
        beats = [next_on(got, "heartbeat", timeout=2.5) for _ in range(2)]
        for topic, payload, retained in beats:
            beat = decode_heartbeat(topic, payload)
            assert (topic, retained, beat.device) == (
                Topics().heartbeat("main-circ-01"), False, "main-circ-01")
            assert beat.health.outbox == 0 and beat.at > 0
        with pytest.raises(queue.Empty):
            next_on(got, "status", timeout=0.2)
    finally:
        device.stop()


@pytest.fixture
def beating(pins, mosquitto, listener, tmp_path):
    """A device with a heartbeat every second, past its first status and heartbeat."""
    got, _ = listener
    device = make_app(pins, mosquitto.port, tmp_path, heartbeat_s=1)
    device.start()
    next_on(got, "status")
    next_on(got, "heartbeat", timeout=2.5)
    yield device
    device.stop()


def refused():
    """The PUBACK reason mosquitto gives a publish its ACL forbids."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode
    return ReasonCode(PacketTypes.PUBACK, "Not authorized")


def test_a_refused_heartbeat_falls_back_to_statuses_as_before(beating, listener, caplog):
    """A broker whose ACL predates the heartbeat topic refuses it (and mosquitto hangs up):
    the device says so with the fix, and sends its readings as retained statuses, which
    every hub takes, rather than go dark."""
    got, _ = listener
    with caplog.at_level("ERROR", logger="haven.device"):
        beating._on_publish(beating.client, None, beating._heartbeat_mid, refused(), None)
    assert "haven provision acl" in caplog.text
    topic, payload, _ = next_on(got, "status", timeout=2.5)
    status = decode_status(topic, payload)
    assert status.state == "online" and status.health is not None
    with pytest.raises(queue.Empty):
        next_on(got, "heartbeat", timeout=1.5)


def test_a_heartbeat_refused_before_its_id_was_noted_still_falls_back(beating, listener):
    """paho's thread may handle the refusing PUBACK before publish() has returned the
    heartbeat's id to the ticker: the refusal is not lost."""
    got, _ = listener
    publish = beating.client.publish

    def refused_at_once(topic, payload, **kwargs):
        info = publish(topic, payload, **kwargs)
        if topic.endswith("/heartbeat"):  # the PUBACK, handled before publish returns
            beating._on_publish(beating.client, None, info.mid, refused(), None)
        return info
    beating.client.publish = refused_at_once
    assert next_on(got, "heartbeat", timeout=2.5)  # that one still went out
    topic, payload, _ = next_on(got, "status", timeout=2.5)  # then statuses, as before
    assert decode_status(topic, payload).health is not None


@pytest.mark.parametrize("times, hold_s, kind", [
    (3, 0.06, "assist"),       # three quick presses
    (1, 0.7, "emergency"),     # a hold past 0.5 s
])
def test_each_pattern_publishes_its_alarm(app, pins, listener, times, hold_s, kind):
    got, _ = listener
    press(pins, times, hold_s)
    topic, payload, _ = next_on(got, "alarm")
    assert decode_alarm(topic, payload).kind == kind
    with pytest.raises(queue.Empty):
        next_on(got, "alarm", timeout=0.8)


def test_a_single_press_on_a_wearable_pages_no_one(app, pins, listener):
    got, _ = listener
    press(pins, 1)
    with pytest.raises(queue.Empty):
        next_on(got, "alarm", timeout=1.0)


def test_an_alarm_is_in_the_outbox_until_the_hub_confirms_it(app, listener):
    got, client = listener
    alarm = app.raise_alarm("assist")
    assert app.outbox.get(alarm.alarm_id) is not None
    wait_until(lambda: app.tracks[alarm.alarm_id].state == "sending")
    time.sleep(0.2)  # the broker's PUBACK is not a confirmation
    assert app.outbox.depth() == 1
    client.publish(Topics().cmd("main-circ-01"),
                   Command("received", alarm.alarm_id, 1).to_json(), qos=1)
    wait_until(lambda: app.tracks[alarm.alarm_id].state == "received")
    assert app.outbox.depth() == 0


def test_feedback_follows_the_alarm_sending_received_acknowledged_resolved(app, pins,
                                                                          listener):
    _, client = listener
    alarm = app.raise_alarm("assist")
    for cmd in ("received", "acknowledged", "resolved"):
        client.publish(Topics().cmd("main-circ-01"), Command(cmd, alarm.alarm_id, 1).to_json(),
                       qos=1)
        wait_until(lambda: app.tracks[alarm.alarm_id].state == cmd)
    wait_until(lambda: app.feedback.history[-1] is Signal.IDLE)
    history = app.feedback.history
    shown = [s for s in history[history.index(Signal.SENDING):] if s is not Signal.IDLE]
    assert shown == [Signal.SENDING, Signal.RECEIVED, Signal.ACKNOWLEDGED, Signal.RESOLVED]
    assert any(s.state for s in pins.pin(22).states)   # the LED lit
    assert any(s.state for s in pins.pin(23).states)   # the motor buzzed


def test_paging_after_not_delivered_turns_use_the_phone_into_help_is_being_called(
        app, listener):
    """The hub's pages got through after it had said NOT delivered (a provider outage):
    "use the phone" gives way to "help is being called" (RECEIVED, then the quiet wait)."""
    _, client = listener
    alarm = app.raise_alarm("emergency")
    for cmd in ("received", "not_delivered"):
        client.publish(Topics().cmd("main-circ-01"), Command(cmd, alarm.alarm_id, 1).to_json(),
                       qos=1)
    wait_until(lambda: app.feedback.history[-1] is Signal.NOT_DELIVERED)
    shown = len(app.feedback.history)
    client.publish(Topics().cmd("main-circ-01"),
                   Command("paging", alarm.alarm_id, 1).to_json(), qos=1)
    wait_until(lambda: not app.tracks[alarm.alarm_id].not_delivered)
    wait_until(lambda: Signal.RECEIVED in app.feedback.history[shown:])
    wait_until(lambda: app.feedback.history[-1] is Signal.IDLE)
    assert Signal.NOT_DELIVERED not in app.feedback.history[shown:]
    assert app.tracks[alarm.alarm_id].state == "received"


def test_a_drill_confirmation_shows_drill_and_a_later_real_one_shows_received(app, listener):
    """The person pressing can tell a drill (police not paged) from a real alarm, and
    feels it when someone says REAL (hub.core.drill): the hub then sends a plain received."""
    _, client = listener
    alarm = app.raise_alarm("emergency")
    topic = Topics().cmd("main-circ-01")
    client.publish(topic, Command("received", alarm.alarm_id, 1, drill=True).to_json(), qos=1)
    wait_until(lambda: Signal.DRILL in app.feedback.history)
    assert app.tracks[alarm.alarm_id].drill and Signal.RECEIVED not in app.feedback.history
    client.publish(topic, Command("received", alarm.alarm_id, 2).to_json(), qos=1)
    wait_until(lambda: Signal.RECEIVED in app.feedback.history)
    assert not app.tracks[alarm.alarm_id].drill
    shown = app.feedback.history
    assert shown.index(Signal.DRILL) < shown.index(Signal.RECEIVED)
    # a repeated plain confirmation is a late duplicate again: nothing new is shown
    count = len(app.feedback.history)
    client.publish(topic, Command("received", alarm.alarm_id, 3).to_json(), qos=1)
    client.publish(topic, Command("acknowledged", alarm.alarm_id, 4).to_json(), qos=1)
    wait_until(lambda: app.tracks[alarm.alarm_id].state == "acknowledged")
    assert Signal.RECEIVED not in app.feedback.history[count:]


def test_no_confirmation_shows_not_delivered(pins, mosquitto, tmp_path):
    device = make_app(pins, mosquitto.port, tmp_path, not_delivered_after_s=1.0,
                      outputs=OutputsConfig(vibration=23))
    device.start()
    try:
        assert device.connected.wait(5)
        device.raise_alarm("emergency")  # no hub runs: nobody will confirm it
        wait_until(lambda: Signal.NOT_DELIVERED in device.feedback.history, timeout=3)
        vibration = pins.pin(23)
        wait_until(lambda: any(s.state for s in vibration.states), timeout=2)
    finally:
        device.stop()


def test_persistent_signal_precedence():
    now = 100.0
    fresh, old = AlarmTrack("assist", now - 1), AlarmTrack("emergency", now - 20)
    acked = AlarmTrack("assist", now - 50, state="acknowledged")

    def signal(connected=True, **tracks):
        return persistent_signal(connected=connected, tracks=tracks, now_mono=now,
                                 not_delivered_after_s=10)
    assert signal() is Signal.IDLE
    assert signal(connected=False) is Signal.FAULT
    assert signal(connected=False, a=acked) is Signal.ACKNOWLEDGED
    assert signal(a=acked, b=fresh) is Signal.SENDING
    assert signal(a=acked, b=fresh, c=old) is Signal.NOT_DELIVERED
    assert signal(c=AlarmTrack("emergency", now - 20, state="received")) is Signal.IDLE


def test_cancel_within_the_window_sends_a_cancel_event(app, pins, listener):
    got, _ = listener
    press(pins, 3)
    topic, payload, _ = next_on(got, "alarm")
    alarm = decode_alarm(topic, payload)
    press(pins, 2)
    topic, payload, _ = next_on(got, "event")
    event = decode_event(topic, payload)
    assert (event.event, event.alarm_id) == ("cancel", alarm.alarm_id)


def test_an_emergency_is_never_cancelled_from_the_device(app, pins, listener):
    got, _ = listener
    press(pins, 1, hold_s=0.7)
    next_on(got, "alarm")
    press(pins, 2)
    with pytest.raises(queue.Empty):
        next_on(got, "event", timeout=1.0)


def test_broker_down_at_the_press_then_back_delivers_the_alarm(pins, tmp_path, listener,
                                                               mosquitto):
    from hub.app.localservices import start_mosquitto
    got, client = listener
    device = make_app(pins, mosquitto.port, tmp_path, resend_every_s=0.5)
    device.start()
    revived = None
    try:
        assert device.connected.wait(5)
        client.loop_stop()
        client.disconnect()
        mosquitto.stop()
        wait_until(lambda: not device.connected.is_set())
        alarm = device.raise_alarm("emergency")
        revived = start_mosquitto(mosquitto.workdir, port=mosquitto.port)
        seen: queue.Queue = queue.Queue()
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="late", protocol=mqtt.MQTTv5)
        sub.on_message = lambda c, u, m: seen.put(m.payload)
        sub.connect("127.0.0.1", mosquitto.port)
        sub.subscribe("haven/v1/dev/+/alarm", qos=1)
        sub.loop_start()
        try:
            ids = {json.loads(seen.get(timeout=15))["alarm_id"]}
            assert ids == {alarm.alarm_id}
        finally:
            sub.loop_stop()
            sub.disconnect()
        assert device.outbox.depth() == 1  # still waiting for the hub's "received"
    finally:
        device.stop()
        if revived:
            revived.stop()


def test_a_killed_device_is_reported_offline_and_resends_its_outbox_on_restart(
        tmp_path, mosquitto, listener):
    got, _ = listener
    config = tmp_path / "device.toml"
    outbox = tmp_path / "outbox.sqlite3"
    config.write_text(f'[device]\nid = "west-front-01"\noutbox = "{outbox}"\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n'
                      '[[input]]\npin = 5\n')
    box = Outbox(outbox)  # an alarm pressed just before a crash, never confirmed
    from device.protocol import new_alarm
    pending = new_alarm("west-front-01", "emergency")
    box.add(pending, time.time())
    box.close()
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    argv = [sys.executable, "-m", "hub.app.cli", "device", "run", "--config", str(config)]
    proc = spawn(argv, log=tmp_path / "device.log", env=env)
    try:
        topic, payload, _ = next_on(got, "alarm", timeout=10)
        assert decode_alarm(topic, payload) == pending  # same id, same press time
        topic, payload, _ = next_on(got, "status", timeout=10)
        assert decode_status(topic, payload).state == "online"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    topic, payload, _ = next_on(got, "status", timeout=5)
    assert decode_status(topic, payload).state == "offline"


def test_selftest_command_reports_each_check(tmp_path, mosquitto):
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\nid = "d1"\noutbox = "{tmp_path}/o.sqlite3"\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n')
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    import subprocess
    ok = subprocess.run([sys.executable, "-m", "hub.app.cli", "device", "selftest", "--config",
                         str(config)], capture_output=True, text=True, env=env, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [line.split()[0:2] for line in ok.stdout.splitlines()] == [
        ["ok", "pins:"], ["ok", "broker:"], ["ok", "clock:"], ["ok", "outbox:"]]
    mosquitto.stop()
    bad = subprocess.run([sys.executable, "-m", "hub.app.cli", "device", "selftest", "--config",
                          str(config)], capture_output=True, text=True, env=env, timeout=30)
    assert bad.returncode == 1
    assert f"FAIL broker: cannot reach 127.0.0.1:{mosquitto.port}" in bad.stdout


@pytest.mark.parametrize("data, message", [
    ({"broker": {"host": "h"}}, "device.id: missing"),
    ({"device": {"id": "a b"}, "broker": {"host": "h"}}, "device.id: 'a b' is not valid"),
    ({"device": {"id": "d1"}}, "broker.host: missing"),
    ({"device": {"id": "d1", "colour": "red"}, "broker": {"host": "h"}},
     "device.colour: unknown key"),
    ({"device": {"id": "d1"}, "broker": {"host": "h", "port": "1883"}}, "broker.port: '1883'"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"}, "input": [{"pin": 40}]},
     "input[0].pin: 40 must be 0 to 27"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"},
      "input": [{"pin": 17}, {"pin": 17, "role": "door_contact"}]},
     "input[1].pin: BCM 17 is already used by input[0].pin"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"}, "outputs": {"led": 17}},
     "outputs.led: BCM 17 is already used by input[0].pin"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"},
      "input": [{"pin": 5, "patterns": {"hold for ages": "emergency"}}]},
     "input[0].patterns: pattern 'hold for ages'"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"},
      "input": [{"pin": 5, "patterns": {"press": "Party!"}}]},
     "action 'Party!' must be an alarm kind"),
    ({"device": {"id": "d1"}, "broker": {"host": "h", "cert_file": "/nonexistent"}},
     "broker.cert_file: /nonexistent does not exist"),
    ({"device": {"id": "d1", "heartbeat_s": 0}, "broker": {"host": "h"}},
     "device.heartbeat_s: 0 must be 1 to 3600"),
    ({"device": {"id": "d1"}, "broker": {"host": "h"}, "outputs": {"buzzer_for": ["alarm"]}},
     "outputs.buzzer_for: 'alarm' is not one of"),
])
def test_device_config_errors_name_the_field(data, message):
    with pytest.raises(DeviceConfigError) as err:
        parse_device_config(data, "device.toml")
    assert any(line.startswith("device.toml: ") and message in line
               for line in str(err.value).splitlines()), str(err.value)


def test_device_config_defaults_suit_a_wearable():
    config = parse_device_config({"device": {"id": "d1"}, "broker": {"host": "hub.local"}})
    assert config.inputs == (InputConfig(17, "button", WEARABLE),)
    assert not any(action in ("assist", "emergency") for pattern, action in WEARABLE
                   if pattern == "press")  # brushing the button pages no one
    assert (config.broker.port, config.heartbeat_s, config.not_delivered_after_s,
            config.cancel_window_s) == (1883, 30.0, 10.0, 10.0)
    assert config.outputs.buzzer_for == ("locate",)


def test_under_systemd_it_says_ready_and_pings_the_watchdog(tmp_path, mosquitto):
    import socket
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\nid = "d1"\noutbox = "{tmp_path}/o.sqlite3"\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n')
    notify = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(notify)
        server.settimeout(10)
        env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", NOTIFY_SOCKET=notify,
                   WATCHDOG_USEC="1000000")
        proc = spawn([sys.executable, "-m", "hub.app.cli", "device", "run", "--config", str(config)],
                     log=tmp_path / "device.log", env=env)
        try:
            messages = [server.recv(64) for _ in range(3)]
        finally:
            proc.terminate()
            assert proc.wait(10) == 0
    assert b"READY=1" in messages and b"WATCHDOG=1" in messages


def test_a_bad_config_exits_non_zero_listing_every_problem(tmp_path):
    import subprocess
    config = tmp_path / "device.toml"
    config.write_text('[device]\nid = "d 1"\ncolour = "red"\n[[input]]\npin = 99\n')
    result = subprocess.run([sys.executable, "-m", "hub.app.cli", "device", "run", "--config",
                             str(config)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    for fragment in (":2: device.id: 'd 1' is not valid", ":3: device.colour: unknown key",
                     ": broker.host: missing",  # no [broker] table: no line to point at
                     ":5: input[0].pin: 99 must be 0 to 27"):
        assert f"{config}{fragment}" in result.stderr, result.stderr


@pytest.mark.parametrize("name", ["device-wearable.toml", "device-wall.toml",
                                  "device-safe-room.toml"])
def test_the_example_device_configs_are_valid(name, tmp_path):
    import tomllib

    from tests.conftest import ROOT
    data = tomllib.loads((ROOT / "deploy" / "examples" / name).read_text())
    for key in ("ca_file", "cert_file", "key_file"):  # the real ones live on the Pi
        path = tmp_path / key
        path.write_text("x")
        data["broker"][key] = str(path)
    config = parse_device_config(data, name)
    assert config.broker.tls and config.inputs
