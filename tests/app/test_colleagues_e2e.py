"""Colleagues' devices alert and answer, end to end on real parts (issue 18 section 1):
the real firmware on gpiozero mock pins -> mosquitto -> a hub process -> redis-server ->
the twilio SDK -> the fake Twilio API."""

from __future__ import annotations

import time

import pytest

from device.config import BrokerConfig, DeviceConfig, InputConfig, OutputsConfig
from device.feedback import Signal
from device.firmware import FIRMWARE_VERSION, DeviceApp
from hub.store import Store
from tests.hubproc import start_hub

#: A wearable's patterns, quicker: a press answers 1 s after it (the window closes).
PATTERNS = (("hold 0.5s", "emergency"), ("3 presses within 1s", "assist"),
            ("press", "test"), ("2 presses within 1s", "cancel"))

SITE = """
[site]
name = "Colleagues test"

[kinds.assist]
label = "Assistance needed"
notify = ["security"]          # colleagues hear of it from their devices only

[kinds.emergency]
label = "EMERGENCY"
notify = ["security"]

[kinds.test]
label = "Test press"
notify = []

[[branch]]
id = "main"
name = "Main Library"
timezone = "America/Los_Angeles"
  [[branch.room]]
  id = "circulation"
  name = "Circulation Desk"
  [[branch.room]]
  id = "reference"
  name = "Reference Desk"
  [[branch.room]]
  id = "children"
  name = "Children's Area"

[[branch]]
id = "west"
name = "Westside Branch"
timezone = "America/Los_Angeles"
  [[branch.room]]
  id = "front"
  name = "Front Desk"
  [[branch.room]]
  id = "stacks"
  name = "Stacks"

[[device]]
id = "main-a"
branch = "main"
room = "circulation"
type = "wearable"
contact = "Ana Diaz"

[[device]]
id = "main-b"
branch = "main"
room = "reference"
type = "wearable"
contact = "+12065550202"

[[device]]
id = "main-c"
branch = "main"
room = "children"
type = "wall"
contact = "Cat Moss"

[[device]]
id = "west-d"
branch = "west"
room = "front"
type = "wearable"
contact = "Dee Park"

[[device]]
id = "west-e"
branch = "west"
room = "stacks"
type = "wearable"
contact = "Eli Ross"

[[contact]]
name = "Ana Diaz"
phone = "+12065550201"
branches = ["main"]
roles = ["staff"]

[[contact]]
name = "Ben Ortiz"
phone = "+12065550202"
branches = ["main"]
roles = ["staff"]

[[contact]]
name = "Cat Moss"
phone = "+12065550203"
branches = ["main"]
roles = ["staff"]

[[contact]]
name = "Dee Park"
phone = "+12065550204"
branches = ["west"]
roles = ["staff"]

[[contact]]
name = "Eli Ross"
phone = "+12065550205"
branches = ["west"]
roles = ["staff"]

[[contact]]
name = "Security desk"
phone = "+12065550299"
branches = ["main", "west"]
roles = ["security"]
"""

#: device id -> (button, led, vibration, buzzer) BCM pins
PINS = {"main-a": (17, 2, 3, 4), "main-b": (18, 5, 6, 7), "main-c": (19, 8, 9, 10),
        "west-d": (20, 11, 12, 13), "west-e": (21, 14, 15, 16)}


def wait_until(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


@pytest.fixture
def hub(tmp_path, mosquitto, redis_service, fake_twilio):
    site = tmp_path / "site.toml"
    site.write_text(SITE)
    log = tmp_path / "hub.log"
    proc = start_hub(log, mosquitto, redis_service, site=site, fake_twilio=fake_twilio,
                     args=("--hub-id", "test-hub"))
    yield log
    proc.terminate()
    assert proc.wait(10) == 0, log.read_text()


@pytest.fixture
def devices(hub, pins, mosquitto, redis_service, tmp_path):
    """The five devices running the real firmware, online and known to the hub."""
    apps, events = {}, {}
    for device_id, (button, led, vibration, buzzer) in PINS.items():
        config = DeviceConfig(device_id, BrokerConfig("127.0.0.1", mosquitto.port),
                              inputs=(InputConfig(button, "button", PATTERNS),),
                              outputs=OutputsConfig(led=led, vibration=vibration, buzzer=buzzer,
                                                    buzzer_for=("locate", "alert", "answered",
                                                                "alert_over")),
                              outbox=str(tmp_path / f"{device_id}.sqlite3"))
        seen = events[device_id] = []
        apps[device_id] = DeviceApp(config, pin_factory=pins,
                                    on_event=lambda e, a, seen=seen: seen.append((e, a)))
        apps[device_id].start()
    store = Store.from_url(redis_service.url)
    try:
        for device_id, app in apps.items():
            assert app.connected.wait(5)
            wait_until(lambda: store.devices.device_status(device_id).get("firmware")
                       == FIRMWARE_VERSION, what=f"the hub to hear {device_id} online")
        yield apps, events, store
    finally:
        for app in apps.values():
            app.stop()
        store.r.close()


def press(pins, device_id, times=1, hold_s=0.05):
    pin = pins.pin(PINS[device_id][0])
    for i in range(times):
        pin.drive_low()
        pressed = time.monotonic()
        time.sleep(hold_s)
        pin.drive_high()
        if i < times - 1:
            time.sleep(0.05)
    return pressed  # the last down: "3 presses" fires there


def vibrating(pins, device_id) -> bool:
    return bool(pins.pin(PINS[device_id][2]).state)


def test_a_press_alerts_colleagues_one_answers_and_everyone_hears_who(
        devices, pins, fake_twilio):
    apps, events, store = devices

    # An alarm at another branch alerts its colleagues, nobody here.
    press(pins, "west-d", times=3)
    wait_until(lambda: any(e == "alert" for e, _ in events["west-e"]), what="west-e's alert")
    west_alarm = next(a for e, a in events["west-e"] if e == "alert")

    # A presses (assist): B and C vibrate within 1 s; A's own device does not alert.
    pressed = press(pins, "main-a", times=3)
    vibrated = {}
    wait_until(lambda: all(vibrating(pins, d) and vibrated.setdefault(d, time.monotonic())
                           for d in ("main-b", "main-c")), timeout=3, what="B and C vibrating")
    for device_id, at in vibrated.items():
        assert at - pressed < 1.0, f"{device_id} vibrated {at - pressed:.3f} s after the press"
    alarm_id = next(iter(apps["main-a"].tracks))
    assert apps["main-b"].alerts[alarm_id].kind == "assist"
    assert apps["main-c"].alerts[alarm_id].room == "circulation"
    assert not apps["main-a"].alerts

    # B answers with one press: no alarm from B; A hears "help is coming".
    press(pins, "main-b")
    wait_until(lambda: apps["main-a"].tracks[alarm_id].state == "acknowledged",
               what="A told help is coming")
    wait_until(lambda: apps["main-a"].feedback.persistent is Signal.ACKNOWLEDGED,
               what="A showing help is coming")
    assert store.get_alarm(alarm_id).acknowledged_by == "Ben Ortiz"
    assert ("responding", alarm_id) in events["main-b"]
    assert not apps["main-b"].tracks and apps["main-b"].outbox.depth() == 0

    # B feels its answer taken; C's alert clears; C's holder is told B is responding.
    wait_until(lambda: not apps["main-b"].alerts and not apps["main-c"].alerts,
               what="the alerts to clear")
    assert Signal.ANSWERED in apps["main-b"].feedback.history
    assert Signal.ALERT_OVER in apps["main-c"].feedback.history
    assert Signal.ANSWERED not in apps["main-c"].feedback.history
    wait_until(lambda: not vibrating(pins, "main-c"), what="C to stop vibrating")
    texts = fake_twilio.wait_for(4, timeout=5)  # 2 alarms to security, 2 "is responding"
    to_cat = [r.form["Body"] for r in texts if r.form["To"] == "+12065550203"]
    assert len(to_cat) == 1 and "Ben Ortiz is responding" in to_cat[0], to_cat
    assert "Circulation Desk" in to_cat[0]
    assert not any(r.form["To"] == "+12065550202" for r in texts)  # not B, who answered
    assert not any(r.form["To"] == "+12065550201" for r in texts)  # not A, who pressed

    # Nothing here ever heard of the other branch's alarm; no buzzer sounded for alerts.
    for device_id in ("main-a", "main-b", "main-c"):
        assert all(a != west_alarm for _, a in events[device_id])
    for device_id in ("main-b", "main-c"):
        assert not any(s.state for s in pins.pin(PINS[device_id][3]).states)
    alerted = [e["device"] for e in store.timeline(alarm_id) if e["event"] == "alerted"]
    assert sorted(alerted) == ["main-b", "main-c"]
