"""End to end on real parts: a mock pin -> device firmware -> mosquitto -> hub process
-> redis-server -> twilio SDK -> the fake Twilio API."""

from __future__ import annotations

import json
import re
import subprocess
import os
import sys
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.config import BrokerConfig, DeviceConfig, InputConfig
from device.firmware import DeviceApp
from device.protocol import Topics, new_alarm
from hub.app.localservices import spawn
from tests.conftest import SAMPLE_SITE, write_site
from tests.hubproc import FROM, start_hub



@pytest.fixture
def hub(tmp_path, mosquitto, redis_service, fake_twilio):
    """A hub worker process sending through the fake Twilio; yields its log path."""
    log = tmp_path / "hub.log"
    proc = start_hub(log, mosquitto, redis_service, site=SAMPLE_SITE, fake_twilio=fake_twilio,
                     args=("--hub-id", "test-hub"))
    yield log
    proc.terminate()
    assert proc.wait(10) == 0, log.read_text()


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
                                                        sample_site, redis_service):
    from hub.store.alarms import Store
    store = Store.from_url(redis_service.url)
    # Sam Lee on duty whatever the hour (off duty, a staff step does not page him)
    store.branches.set_override("westside", "+12065550104", on_duty=True,
                                until_ms=int(time.time() * 1000) + 3_600_000, by="test")
    store.r.close()
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
    from hub.store.alarms import Store
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
    reasons = [r["reason"] for r in store.devices.rejected()]
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
    from hub.app.localservices import start_redis
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
                                                              redis_service, fake_twilio,
                                                              sample_site):
    from device.feedback import Signal
    from hub.core.lifecycle import AlarmEvent
    from hub.store.alarms import Store
    app = device(pins, mosquitto, "main-child-01", 19)
    store = Store.from_url(redis_service.url)
    try:
        alarm = app.raise_alarm("assist")
        wait = time.monotonic() + 3
        while app.tracks[alarm.alarm_id].state != "received" and time.monotonic() < wait:
            time.sleep(0.01)
        store.transition(alarm.alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana",
                         now_ms=int(time.time() * 1000))
        # the device marks the alarm, then shows it: wait for what the presser sees
        while app.feedback.persistent is not Signal.ACKNOWLEDGED and time.monotonic() < wait:
            time.sleep(0.01)
        assert app.feedback.persistent is Signal.ACKNOWLEDGED  # help is coming
        assert app.tracks[alarm.alarm_id].state == "acknowledged"
        store.transition(alarm.alarm_id, AlarmEvent.RESOLVE, by="Dana", reason="patron left",
                         now_ms=int(time.time() * 1000))
        while app.tracks[alarm.alarm_id].state != "resolved" and time.monotonic() < wait:
            time.sleep(0.01)
        assert app.tracks[alarm.alarm_id].state == "resolved"
        paged = {c.phone for c in sample_site.recipients("assist", "main")}
        clears = fake_twilio.wait_for(len(paged), timeout=5,
                                      match=lambda r: "all clear" in r.form["Body"])
        assert {r.form["To"] for r in clears} == paged
        assert all("resolved by Dana: patron left" in r.form["Body"] for r in clears)
    finally:
        app.stop()
        store.r.close()


def test_a_wearer_cancels_an_assist_within_its_window(hub, pins, mosquitto, redis_service,
                                                      fake_twilio):
    from hub.core.model import AlarmState
    from hub.store.alarms import Store
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


def test_broker_down_during_a_press_pages_each_contact_exactly_once(
        hub, pins, mosquitto, fake_twilio, sample_site):
    from hub.app.localservices import start_mosquitto
    config = DeviceConfig("main-ref-01", BrokerConfig("127.0.0.1", mosquitto.port),
                          inputs=(InputConfig(21, "button", WALL),), outbox=":memory:",
                          resend_every_s=0.5)
    app = DeviceApp(config, pin_factory=pins)
    app.start()
    revived = None
    try:
        assert app.connected.wait(5)
        mosquitto.stop()
        deadline = time.monotonic() + 5
        while app.connected.is_set():
            assert time.monotonic() < deadline
            time.sleep(0.01)
        alarm = app.raise_alarm("emergency")
        revived = start_mosquitto(mosquitto.workdir, port=mosquitto.port)
        expected = {c.phone for c in sample_site.recipients("emergency", "main")}
        got = fake_twilio.wait_for(len(expected), timeout=20)
        assert {r.form["To"] for r in got} == expected
        deadline = time.monotonic() + 5
        while app.outbox.depth():
            assert time.monotonic() < deadline, "the device never heard 'received'"
            time.sleep(0.02)
        time.sleep(1.2)  # more than two resend periods: nothing may be paged twice
        assert len(fake_twilio.accepted()) == len(expected)
        assert all(alarm.alarm_id[:8] in r.form["Body"] for r in got)
    finally:
        app.stop()
        if revived:
            revived.stop()


def test_a_firmware_killed_with_unconfirmed_alarms_delivers_each_exactly_once(
        hub, tmp_path, mosquitto, redis_service, fake_twilio, sample_site):
    """One alarm the hub already stored (its 'received' was lost in the crash) and one it
    never saw: after the restart, only the second pages anyone, once."""
    import signal as sig

    from device.outbox import Outbox
    from hub.store.alarms import Store
    outbox_path = tmp_path / "outbox.sqlite3"
    box = Outbox(outbox_path)
    seen, unseen = new_alarm("main-circ-01", "assist"), new_alarm("main-circ-01", "assist")
    box.add(seen, time.time())
    box.add(unseen, time.time())
    box.close()
    client = _publisher(mosquitto)  # the hub got `seen` before the crash
    client.publish(Topics().alarm("main-circ-01"), seen.to_json(), qos=1).wait_for_publish(2)
    client.loop_stop()
    client.disconnect()
    per_alarm = len(sample_site.recipients("assist", "main"))
    assert len(fake_twilio.wait_for(per_alarm, timeout=3)) == per_alarm
    config = tmp_path / "device.toml"
    config.write_text(f'[device]\nid = "main-circ-01"\noutbox = "{outbox_path}"\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {mosquitto.port}\n')
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    proc = spawn([sys.executable, "-m", "hub.app.cli", "device", "run", "--config", str(config)],
                 log=tmp_path / "device.log", env=env)
    try:
        got = fake_twilio.wait_for(2 * per_alarm, timeout=10)
        assert len(got) == 2 * per_alarm
        deadline = time.monotonic() + 5
        while Outbox(outbox_path).depth():
            assert time.monotonic() < deadline, (tmp_path / "device.log").read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        bodies = [r.form["Body"] for r in fake_twilio.accepted()]
        assert sum(seen.alarm_id[:8] in b for b in bodies) == per_alarm
        assert sum(unseen.alarm_id[:8] in b for b in bodies) == per_alarm
    finally:
        proc.send_signal(sig.SIGTERM)
        proc.wait(10)
    store = Store.from_url(redis_service.url)
    assert {a.id for a in store.active_alarms()} == {seen.alarm_id, unseen.alarm_id}
    store.r.close()


def test_hub_commands_locate_and_selftest_reach_the_device(hub, pins, mosquitto,
                                                           redis_service):
    from device.feedback import Signal
    from hub.store.alarms import Store
    app = device(pins, mosquitto, "main-safe-01", 22)
    store = Store.from_url(redis_service.url)
    try:
        result = subprocess.run([sys.executable, "-m", "hub.app.cli", "tell", "--redis",
                                 redis_service.url, "main-safe-01", "locate"],
                                capture_output=True, text=True, timeout=20)
        assert result.returncode == 0, result.stderr
        store.devices.queue_device_command("main-safe-01", "test")
        deadline = time.monotonic() + 5
        while not store.devices.device_status("main-safe-01").get("selftest_ok"):
            assert time.monotonic() < deadline, store.devices.device_status("main-safe-01")
            time.sleep(0.02)
        assert Signal.LOCATE in app.feedback.history
        assert store.devices.device_status("main-safe-01")["selftest_ok"] == "1"
    finally:
        app.stop()
        store.r.close()


def test_a_device_that_goes_silent_is_reported_to_it_once_and_cleared_once(
        tmp_path, mosquitto, redis_service, fake_twilio, sample_site):
    """The broker dies with the device (no Last Will): the hub notices the silence."""
    from hub.engine.supervision import Supervisor
    from hub.store.alarms import Store
    store = Store.from_url(redis_service.url)
    now = [time.time()]
    sent = []
    supervisor = Supervisor(sample_site, store, sent.append, silent_after_s=45,
                            clock=lambda: now[0], started_ms=int(now[0] * 1000) - 60_000)
    for device in sample_site.devices:
        store.devices.update_device(device, "health", heartbeat_ms=int(now[0] * 1000), outbox=0)
    assert supervisor.check() == []
    now[0] += 46
    for device in sample_site.devices:
        if device != "main-ref-01":
            store.devices.update_device(device, "health", heartbeat_ms=int(now[0] * 1000), outbox=0)
    [notice] = supervisor.check()
    assert (notice.device_id, str(notice.trouble), notice.raised) == ("main-ref-01", "offline",
                                                                       True)
    assert supervisor.check() == []  # once
    store.devices.update_device("main-ref-01", "health", heartbeat_ms=int(now[0] * 1000), outbox=0)
    [clear] = supervisor.check()
    assert (clear.device_id, clear.raised) == ("main-ref-01", False)
    store.r.close()


def test_branch_switches_from_the_command_line(redis_service, sample_site):
    from hub.store.alarms import Store
    base = [sys.executable, "-m", "hub.app.cli", "branch", "--site", str(SAMPLE_SITE), "--redis",
            redis_service.url]
    run = lambda *a: subprocess.run(base + list(a), capture_output=True, text=True, timeout=20)
    before_ms = time.time() * 1000
    assert run("drill", "main", "on", "--minutes", "15", "--by", "Dana").returncode == 0
    after_ms = time.time() * 1000
    assert run("lone-worker", "westside", "off", "--by", "Sam").returncode == 0
    bad = run("drill", "eastside", "on", "--by", "Dana")
    assert bad.returncode == 1 and "unknown branch 'eastside'" in bad.stderr
    store = Store.from_url(redis_service.url)
    main, west = store.branches.branch_switches("main"), store.branches.branch_switches("westside")
    store.r.close()
    # 15 minutes from when the command ran (however slow the machine was to start it)
    assert before_ms + 15 * 60_000 <= main.drill_until_ms <= after_ms + 15 * 60_000
    assert (west.lone_worker, west.by) == (False, "Sam")


def test_a_lone_worker_is_asked_to_check_in_and_one_press_answers(hub, pins, mosquitto,
                                                                 redis_service):
    from device.feedback import Signal
    from hub.store.alarms import Store
    wearable = (("hold 2s", "emergency"), ("3 presses within 2s", "assist"), ("press", "test"))
    config = DeviceConfig("west-front-01", BrokerConfig("127.0.0.1", mosquitto.port),
                          inputs=(InputConfig(23, "button", wearable),), outbox=":memory:")
    store = Store.from_url(redis_service.url)
    # Sam Lee on duty whatever the hour: westside has one person at work, a lone worker
    # (off shift nobody is at work, and nobody is asked to check in)
    store.branches.set_override("westside", "+12065550104", on_duty=True,
                                until_ms=int(time.time() * 1000) + 3_600_000, by="test")
    app = DeviceApp(config, pin_factory=pins)
    app.start()
    try:
        assert app.connected.wait(5)
        deadline = time.monotonic() + 10
        while Signal.CHECKIN not in app.feedback.history:
            assert time.monotonic() < deadline, "no check-in request"
            time.sleep(0.05)
        pins.pin(23).drive_low()
        time.sleep(0.05)
        pins.pin(23).drive_high()
        deadline = time.monotonic() + 5  # a single press waits out the 2 s press window
        while not store.r.hget("haven:checkin:west-front-01", "answered_ms"):
            assert time.monotonic() < deadline, "the press did not answer the check-in"
            time.sleep(0.05)
        assert store.devices.device_status("west-front-01").get("checkin_ms")
        assert not [t for t in app.tracks.values() if t.kind == "test"]  # not a test press
    finally:
        app.stop()
        store.r.close()


def test_sighup_reloads_the_site_and_a_bad_one_is_refused(tmp_path, mosquitto, redis_service,
                                                          fake_twilio):
    """A device added to the site file is known after SIGHUP; a broken file keeps the
    running config (the hub goes on paging)."""
    import signal as sig
    site = tmp_path / "site.toml"
    text = SAMPLE_SITE.read_text()
    write_site(site, text)
    log = tmp_path / "hub.log"
    proc = start_hub(log, mosquitto, redis_service, site=site, fake_twilio=fake_twilio)
    client = None
    try:
        deadline = time.monotonic() + 10
        site.write_text(text + '\n[[device]]\nid = "main-new-01"\nbranch = "main"\n'
                               'room = "reference"\n')
        proc.send_signal(sig.SIGHUP)
        while "site config reloaded" not in log.read_text():
            assert time.monotonic() < deadline + 5, log.read_text()
            time.sleep(0.02)
        site.write_text(text.replace('room = "reference"', 'room = "nowhere"'))
        proc.send_signal(sig.SIGHUP)
        while "keeping the running site config" not in log.read_text():
            assert time.monotonic() < deadline + 10, log.read_text()
            time.sleep(0.02)
        assert "device[1].room: unknown room 'nowhere'" in log.read_text()
        client = _publisher(mosquitto)
        alarm = new_alarm("main-new-01", "assist")
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1).wait_for_publish(2)
        got = fake_twilio.wait_for(2, timeout=5)
        assert len(got) == 2 and all("Reference Desk" in r.form["Body"] for r in got)
    finally:
        if client:
            client.loop_stop()
            client.disconnect()
        proc.terminate()
        assert proc.wait(10) == 0


def test_the_hub_serves_prometheus_metrics(tmp_path, mosquitto, redis_service):
    import urllib.request
    log = tmp_path / "hub.log"
    proc = start_hub(log, mosquitto, redis_service, site=SAMPLE_SITE,
                     args=("--metrics-port", "0"))
    client = None
    try:
        port = int(re.search(r"metrics on http://127.0.0.1:(\d+)/metrics", log.read_text())[1])
        client = _publisher(mosquitto)
        client.publish(Topics().alarm("main-ref-01"), b"{nope", qos=1).wait_for_publish(2)
        alarm = new_alarm("main-ref-01", "assist")
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1).wait_for_publish(2)
        deadline = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            if 'haven_alarms_total{kind="assist"} 1.0' in text:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.05)
        assert 'haven_rejected_total{reason="json"} 1.0' in text
    finally:
        if client:
            client.loop_stop()
            client.disconnect()
        proc.terminate()
        assert proc.wait(10) == 0


def test_when_twilio_refuses_every_page_the_wearer_is_told_not_delivered(
        hub, pins, mosquitto, fake_twilio, sample_site):
    from device.feedback import Signal
    for contact in sample_site.contacts:
        fake_twilio.fail(contact.phone, 503, 20503, "Service Unavailable")
    app = device(pins, mosquitto, "main-circ-01", 24)
    try:
        alarm = app.raise_alarm("emergency")
        deadline = time.monotonic() + 8
        while app.feedback.persistent is not Signal.NOT_DELIVERED:  # use the phone
            assert time.monotonic() < deadline, app.tracks[alarm.alarm_id]
            time.sleep(0.02)
        assert app.tracks[alarm.alarm_id].not_delivered  # told so by the hub (not 24 s)
        assert app.outbox.depth() == 0  # the hub has it stored: not resent, escalating
    finally:
        app.stop()
    assert "NOT DELIVERED to anyone" in hub.read_text()


def test_status_callbacks_land_in_the_timeline_and_an_undelivered_sms_becomes_a_call(tmp_path, mosquitto, redis_service,
                                                            fake_twilio, sample_site):
    """Hub and dashboard as in production: pages ask for status callbacks at the public URL,
    the (fake) API posts them signed, the dashboard records each in the timeline."""
    import threading

    from dashboard import create_app
    from dashboard.serve import make_server, stop
    from hub.store.alarms import Store
    store = Store.from_url(redis_service.url)
    app = create_app(sample_site, store, twilio_auth_token=fake_twilio.auth_token)
    server = make_server(app, "127.0.0.1", 0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    public = f"http://127.0.0.1:{server.effective_port}"
    fake_twilio.outcome["+12065550103"] = "undelivered"
    log = tmp_path / "hub.log"
    proc = start_hub(log, mosquitto, redis_service, site=SAMPLE_SITE, fake_twilio=fake_twilio,
                     extra_env={"HAVEN_PUBLIC_URL": public})
    client = None
    try:
        client = _publisher(mosquitto)
        alarm = new_alarm("main-circ-01", "assist")
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1).wait_for_publish(2)
        [first] = fake_twilio.wait_for(1, timeout=5, match=lambda r: r.form["To"] ==
                                       "+12065550101")
        assert first.form["StatusCallback"].startswith(f"{public}/twilio/status?key=")
        assert first.form["Body"].endswith("Reply 1 if you are responding.")
        deadline = time.monotonic() + 5
        while True:
            statuses = {(e["to"], e["status"]) for e in store.timeline(alarm.alarm_id)
                        if e["event"] == "delivery_status"}
            if {("+12065550101", "delivered"), ("+12065550103", "undelivered")} <= statuses:
                break
            assert time.monotonic() < deadline, (statuses, fake_twilio.callbacks)
            time.sleep(0.05)
        # the undelivered SMS is replaced by a call to the same person
        call = fake_twilio.wait_for(1, timeout=5, resource="Calls",
                                    match=lambda r: r.form["To"] == "+12065550103")[0]
        assert call.form["Url"] == f"{public}/twilio/voice/say?alarm={alarm.alarm_id}"
        assert call.form["MachineDetection"] == "Enable"
        assert {code for _, _, code in fake_twilio.callbacks} == {204}  # all signed right
    finally:
        if client:
            client.loop_stop()
            client.disconnect()
        proc.terminate()
        proc.wait(10)
        stop(server)
        store.r.close()


def test_texts_accepted_then_reported_undelivered_tell_the_wearer_not_delivered(
        tmp_path, pins, mosquitto, redis_service, fake_twilio, sample_site):
    """Every page of an assist (SMS only) is accepted by the API, then reported failed by
    signed status callbacks, and so are the calls placed instead: the device that showed
    "received" shows NOT delivered, and keeps showing it (no page reached a person)."""
    import threading

    from dashboard import create_app
    from dashboard.serve import make_server, stop
    from device.feedback import Signal
    from hub.store.alarms import Store
    store = Store.from_url(redis_service.url)
    app = create_app(sample_site, store, twilio_auth_token=fake_twilio.auth_token)
    server = make_server(app, "127.0.0.1", 0, threads=8)
    threading.Thread(target=server.run, daemon=True).start()
    public = f"http://127.0.0.1:{server.effective_port}"
    paged = {c.phone for c in sample_site.recipients("assist", "main")}
    for phone in paged:
        fake_twilio.outcome[phone] = "failed"  # texts failed; the calls instead fail too
    proc = start_hub(tmp_path / "hub.log", mosquitto, redis_service, site=SAMPLE_SITE,
                     fake_twilio=fake_twilio, extra_env={"HAVEN_PUBLIC_URL": public})
    wearer = None
    try:
        wearer = device(pins, mosquitto, "main-circ-01", 25)
        alarm = wearer.raise_alarm("assist")
        deadline = time.monotonic() + 10
        # The device marks the alarm, then shows the signal: wait for what the wearer sees
        # (waiting for the mark alone raced the display: it failed 1 full run in 5).
        while wearer.feedback.persistent is not Signal.NOT_DELIVERED:  # use the phone
            assert time.monotonic() < deadline, (wearer.tracks[alarm.alarm_id],
                                                 fake_twilio.callbacks)
            time.sleep(0.02)
        assert wearer.tracks[alarm.alarm_id].not_delivered  # told so by the hub (not 25 s)
        accepted = {r.form["To"] for r in fake_twilio.accepted()}
        assert paged <= accepted  # the API took every page: only the reports said no
        [failed] = [e for e in store.timeline(alarm.alarm_id)
                    if e["event"] == "delivery_failed"]
        assert failed["attempt"] == "0" and failed["tried"] == str(len(paged))
    finally:
        if wearer:
            wearer.stop()
        proc.terminate()
        proc.wait(10)
        stop(server)
        store.r.close()
