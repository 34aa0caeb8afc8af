"""Several hub workers on one broker and one Redis: shared subscriptions, leased
escalations, nothing lost and nothing paged twice, even when one is killed."""

from __future__ import annotations

import re
import signal
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device.protocol import Topics, new_alarm
from tests.conftest import SAMPLE_SITE, write_site
from tests.hubproc import start_hub

pytestmark = pytest.mark.slow


def fast_site(tmp_path):
    """The sample site with a fast emergency policy: steps 5 s apart."""
    text = SAMPLE_SITE.read_text().replace("wait_s = 60", "wait_s = 5")
    path = tmp_path / "site.toml"
    write_site(path, text)
    return path


def start_worker(name, tmp_path, site, mosquitto, redis_service, fake_twilio):
    log = tmp_path / f"{name}.log"
    proc = start_hub(log, mosquitto, redis_service, site=site, fake_twilio=fake_twilio,
                     args=("--hub-id", name))
    return proc, log


def publisher(mosquitto):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="presses", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    return client


def is_page(request) -> bool:
    """An alarm's page (it names its alarm by reference), not a device-trouble text."""
    return re.search(r"Ref \w{8}", request.form.get("Body", "")) is not None


def test_two_workers_share_500_alarms_with_no_loss_and_no_double_page(
        tmp_path, mosquitto, redis_service, fake_twilio, sample_site):
    workers = [start_worker(f"w{i}", tmp_path, SAMPLE_SITE, mosquitto, redis_service,
                            fake_twilio) for i in (1, 2)]
    client = publisher(mosquitto)
    devices = ["main-circ-01", "main-ref-01", "main-child-01", "main-work-01"]
    alarms = [new_alarm(devices[i % 4], "assist") for i in range(500)]
    try:
        for alarm in alarms:
            client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        for alarm in alarms[:50]:  # redeliveries must not page again
            client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        per_alarm = len(sample_site.recipients("assist", "main"))
        got = fake_twilio.wait_for(500 * per_alarm, timeout=60, match=is_page)
        time.sleep(1.0)
    finally:
        client.loop_stop()
        client.disconnect()
        for proc, _ in workers:
            proc.terminate()
            proc.wait(15)
    assert len(got) == 500 * per_alarm
    # (on a slow box the run outlasts the supervisor's 45 s: IT gets device-trouble texts
    # for the sample devices that never connected; those are not alarm pages)
    pages = [(re.search(r"Ref (\w{8})", r.form["Body"]).group(1), r.form["To"])
             for r in fake_twilio.accepted() if is_page(r)]
    assert len(pages) == len(set(pages)) == 500 * per_alarm   # nobody paged twice
    assert {ref for ref, _ in pages} == {a.alarm_id[:8] for a in alarms}  # none lost
    handled = [log.read_text().count("escalating") for _, log in workers]
    assert sum(handled) == 500 and min(handled) > 0, handled  # both took a share


def test_killing_a_worker_mid_escalation_loses_nothing(tmp_path, mosquitto, redis_service,
                                                       fake_twilio, sample_site):
    """kill -9 the worker escalating an emergency once its first pages are recorded: the
    other worker runs the next attempt on time, and nobody is paged twice.

    (A kill in the instant between Twilio accepting a request and the worker recording
    it would resend that one page on the re-run: at least once, never lost. No test can
    close that window without an idempotency key at the provider.)"""
    from hub.store.alarms import Store
    site = fast_site(tmp_path)
    workers = {name: start_worker(name, tmp_path, site, mosquitto, redis_service, fake_twilio)
               for name in ("w1", "w2")}
    store = Store.from_url(redis_service.url)
    client = publisher(mosquitto)
    alarm = new_alarm("main-circ-01", "emergency")
    step1 = {c.phone for c in sample_site.recipients("emergency", "main")}
    try:
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        deadline = time.monotonic() + 5
        while sum(e["event"] == "notified" for e in store.timeline(alarm.alarm_id)) < 6:
            assert time.monotonic() < deadline, store.timeline(alarm.alarm_id)
            time.sleep(0.01)
        [owner] = [n for n, (_, log) in workers.items() if "attempt 0" in log.read_text()]
        proc, _ = workers[owner]
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_wall, killed_mono = time.time(), time.monotonic()
        due = store.escalation_due(alarm.alarm_id)  # the next attempt, or the dead lease
        second = fake_twilio.wait_for(2 * len(step1) + 1, timeout=20)
        assert len(second) > len(step1), "the escalation stopped with the worker"
        started = second[len(step1)].at - killed_mono + killed_wall   # as wall time
        assert started - max(due / 1000, killed_wall) < 1.5, (started, due, killed_wall)
    finally:
        client.loop_stop()
        client.disconnect()
        for proc, _ in workers.values():
            if proc.poll() is None:
                proc.terminate()
                proc.wait(15)
    survivor_log = next(log for n, (_, log) in workers.items() if n != owner).read_text()
    assert "attempt 1" in survivor_log
    # Each attempt's SMS went out once: count what the attempts that ran should have sent.
    from hub.core.escalation import plan
    from hub.config.site import load_site
    ran = {int(e["attempt"]) for e in store.timeline(alarm.alarm_id)
           if e["event"] == "escalation"}
    stored = store.get_alarm(alarm.alarm_id)
    store.r.close()
    assert ran == set(range(max(ran) + 1))
    fast = load_site(site)
    expected: dict[str, int] = {}
    for number in ran:
        for item in plan(fast, stored, fast.kinds["emergency"].steps, number, drill=False):
            if item.key.channel == "sms":
                expected[item.contact.phone] = expected.get(item.contact.phone, 0) + 1
    sent: dict[str, int] = {}
    for r in fake_twilio.accepted():
        sent[r.form["To"]] = sent.get(r.form["To"], 0) + 1
    assert sent == expected


def test_redis_restarted_mid_escalation_carries_on_from_its_append_only_file(
        tmp_path, mosquitto, redis_service, fake_twilio, sample_site):
    from hub.app.localservices import start_redis
    from hub.store.alarms import Store
    site = fast_site(tmp_path)
    proc, log = start_worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
    client = publisher(mosquitto)
    alarm = new_alarm("main-circ-01", "emergency")
    step1 = {c.phone for c in sample_site.recipients("emergency", "main")}
    revived = None
    try:
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        assert len(fake_twilio.wait_for(len(step1), timeout=5)) == len(step1)
        time.sleep(0.3)  # attempt 0 recorded
        redis_service.stop()  # SIGTERM: redis-server flushes its append-only file
        time.sleep(1.0)
        revived = start_redis(redis_service.workdir, port=redis_service.port)
        got = fake_twilio.wait_for(len(step1) + 4, timeout=15)  # attempt 1: step 2, 4 contacts
        assert len(got) >= len(step1) + 4, log.read_text()[-3000:]
        store = Store.from_url(revived.url)
        ran = [e["attempt"] for e in store.timeline(alarm.alarm_id) if e["event"] == "escalation"]
        store.r.close()
        assert ran[:2] == ["0", "1"], ran
    finally:
        client.loop_stop()
        client.disconnect()
        proc.terminate()
        proc.wait(15)
        if revived:
            revived.stop()
    per_phone: dict[str, int] = {}
    for r in fake_twilio.accepted():
        per_phone[r.form["To"]] = per_phone.get(r.form["To"], 0) + 1
    assert max(per_phone.values()) <= len(set(ran)), per_phone  # one SMS per attempt at most


def test_workers_read_retained_statuses_and_store_live_ones_in_order(
        tmp_path, mosquitto, redis_service, fake_twilio):
    """Statuses come on a plain subscription: retained ones (a device's last word) reach a
    worker that starts later, and each worker stores a device's statuses in order, so its
    latest word is the one that stays."""
    from device.protocol import Health, StatusMessage
    from hub.store.alarms import Store
    client = publisher(mosquitto)
    store = Store.from_url(redis_service.url)
    offline = StatusMessage(device="west-front-01", state="offline", at=1_000)
    client.publish(Topics().status("west-front-01"), offline.to_json(), qos=1,
                   retain=True).wait_for_publish(2)
    workers = [start_worker(f"w{i}", tmp_path, SAMPLE_SITE, mosquitto, redis_service,
                            fake_twilio) for i in (1, 2)]
    try:
        deadline = time.monotonic() + 5  # the retained word reached the store
        while store.devices.device_status("west-front-01").get("state") != "offline":
            assert time.monotonic() < deadline, "the retained status was not read"
            time.sleep(0.02)
        for n in range(40):  # live heartbeats, batched: the last one is what stays
            beat = StatusMessage(device="main-circ-01", state="online", at=2_000 + n,
                                 health=Health(uptime_s=n, battery_pct=90, outbox=0))
            client.publish(Topics().status("main-circ-01"), beat.to_json(), qos=1)
        deadline = time.monotonic() + 5
        while store.devices.device_status("main-circ-01").get("since_ms") != str(2_039):
            assert time.monotonic() < deadline, store.devices.device_status("main-circ-01")
            time.sleep(0.02)
        assert "heartbeat_ms" not in store.devices.device_status("west-front-01")  # retained only
    finally:
        client.loop_stop()
        client.disconnect()
        for proc, _ in workers:
            proc.terminate()
            proc.wait(15)
        store.r.close()


def _heartbeats_counted(port: int) -> float:
    """The heartbeats a worker stored, from its /metrics."""
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        text = answer.read().decode()
    m = re.search(r'^haven_messages_total\{channel="heartbeat",outcome="status"\} (\S+)$',
                  text, re.M)
    return float(m[1]) if m else 0.0


def test_two_workers_split_heartbeats_and_a_heartbeat_never_revives_a_dead_device(
        tmp_path, mosquitto, redis_service, fake_twilio):
    """Heartbeats come on the shared subscription: each is stored by one worker, not by
    every worker (so more workers mean more heartbeats per second), and presence stays
    the statuses' alone."""
    from device.protocol import Health, Heartbeat, StatusMessage
    from hub.app.localservices import free_port
    from hub.store.alarms import Store
    ports = [free_port(), free_port()]
    workers = [start_hub(tmp_path / f"w{i}.log", mosquitto, redis_service, site=SAMPLE_SITE,
                         fake_twilio=fake_twilio,
                         args=("--hub-id", f"w{i}", "--metrics-port", str(port)))
               for i, port in enumerate(ports)]
    client = publisher(mosquitto)
    store = Store.from_url(redis_service.url)
    devices = ["main-circ-01", "main-ref-01", "main-child-01", "west-front-01"]
    try:
        will = StatusMessage(device="west-front-01", state="offline")
        client.publish(Topics().status("west-front-01"), will.to_json(), qos=1,
                       retain=True).wait_for_publish(2)

        def beats(numbers) -> None:
            for n in numbers:
                beat = Heartbeat(device=devices[n % 4], at=1_000 + n,
                                 health=Health(uptime_s=n, battery_pct=50, outbox=0))
                client.publish(Topics().heartbeat(beat.device), beat.to_json(), qos=1)

        def wait_for(total: int) -> list[float]:
            deadline = time.monotonic() + 10
            while sum(counts := [_heartbeats_counted(p) for p in ports]) < total:
                assert time.monotonic() < deadline, counts
                time.sleep(0.05)
            return counts

        beats(range(396))
        wait_for(396)
        # A device's next heartbeat comes heartbeat_s later: by then the one before is stored.
        beats(range(1000, 1004))
        wait_for(400)
        time.sleep(0.3)
        counts = [_heartbeats_counted(p) for p in ports]
        assert sum(counts) == 400 and min(counts) > 0, counts  # split, none stored twice
        west = store.devices.device_status("west-front-01")
        assert west["state"] == "offline" and "heartbeat_ms" in west
        assert sorted(store.devices.device_status(d)["uptime_s"] for d in devices) == [
            "1000", "1001", "1002", "1003"]
    finally:
        client.loop_stop()
        client.disconnect()
        for proc in workers:
            proc.terminate()
            proc.wait(15)
        store.r.close()
