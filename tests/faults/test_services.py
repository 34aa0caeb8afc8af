"""mosquitto and redis-server killed -9 and restarted on the same port and files.

tests/app/test_e2e.py stops each with SIGTERM around a single alarm (the broker while one
device is offline, Redis before an alarm arrives), and tests/engine/test_workers.py restarts
Redis between two attempts; here the kills are -9, land mid-escalation, and several
devices (the real firmware on mock pins) hold unconfirmed alarms."""

from __future__ import annotations

import time

import pytest

from device.config import BrokerConfig, DeviceConfig, InputConfig
from device.firmware import DeviceApp
from hub.app.localservices import start_mosquitto, start_redis
from hub.store.alarms import Store
from tests.faults.harness import (RESUME_S, assert_none_lost, assert_nothing_paged_twice,
                                  assert_resumed, due_monotonic, fast_site, publisher,
                                  stop, wait_pages, wait_until, worker)
from tests.faults.test_hub_kill import attempt_done, raise_alarms

pytestmark = pytest.mark.faults


WALL = (("press", "assist"), ("hold 2s", "emergency"), ("2 presses within 0.5s", "cancel"))


def firmware(pins, mosquitto, tmp_path, device_id: str, pin: int, port: int | None = None,
             **kwargs) -> DeviceApp:
    """The real firmware (a wall button on ``pin``) with a file outbox, resending
    unconfirmed alarms every 0.5 s; it dials ``port`` (the broker's by default)."""
    config = DeviceConfig(device_id, BrokerConfig("127.0.0.1", port or mosquitto.port),
                          inputs=(InputConfig(pin, "button", WALL),),
                          outbox=str(tmp_path / f"{device_id}.outbox"), resend_every_s=0.5,
                          **kwargs)
    app = DeviceApp(config, pin_factory=pins)
    app.start()
    assert app.connected.wait(5)
    return app


def test_mosquitto_killed_while_devices_hold_unconfirmed_alarms(
        tmp_path, pins, mosquitto, redis_service, fake_twilio):
    site = fast_site(tmp_path)
    proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
    store = Store.from_url(redis_service.url)
    apps = [firmware(pins, mosquitto, tmp_path, d, pin)
            for d, pin in (("main-circ-01", 17), ("main-ref-01", 18), ("main-child-01", 19))]
    revived = None
    try:
        early = apps[0].raise_alarm("emergency").alarm_id  # escalating before the fault
        wait_until(lambda: attempt_done(store, early, 0), 5, "the early alarm's first pages")
        wait_until(lambda: apps[0].outbox.depth() == 0, 5, "the early alarm confirmed")
        racing = [app.raise_alarm("emergency").alarm_id for app in apps]  # on the wire
        mosquitto.kill()
        killed = time.monotonic()
        due = due_monotonic(store, early)
        wait_until(lambda: not any(app.connected.is_set() for app in apps), 5,
                   "devices to notice the dead broker")
        offline = [app.raise_alarm("emergency").alarm_id for app in apps]  # outbox only
        assert all(app.outbox.depth() >= 1 for app in apps)
        time.sleep(1.0)
        revived = start_mosquitto(mosquitto.workdir, port=mosquitto.port)
        back = time.monotonic()
        assert_resumed(fake_twilio, early, killed, due=due)  # Redis timers need no broker
        for alarm_id in racing + offline:
            assert_resumed(fake_twilio, alarm_id, 0, due=back)
        wait_until(lambda: all(app.outbox.depth() == 0 for app in apps), 10,
                   "every device to hear 'received'")
        time.sleep(1.2)  # two resend periods: a resent alarm must page no one again
        assert_none_lost(store, fake_twilio, [early, *racing, *offline])
        assert_nothing_paged_twice(fake_twilio)
        raised = [e for a in racing + offline for e in store.timeline(a) if e["event"] == "raised"]
        assert len(raised) == len(racing + offline)  # each stored once, however often resent
    finally:
        for app in apps:
            app.stop()
        stop(proc)
        store.r.close()
        if revived:
            revived.stop()


@pytest.mark.parametrize("moment", [
    "between attempts",
    # pages the API accepted while Redis was dying cannot be recorded; the attempt's re-run
    # asks the API what got through instead of sending them again
    "pages on the wire",
])
def test_redis_killed_mid_escalation_and_restarted_from_its_append_only_file(
        tmp_path, mosquitto, redis_service, fake_twilio, moment):
    """Redis is killed -9 right after the first attempt is recorded, or while the second
    attempt's pages are on the wire (the API answers after 0.5 s); alarms raised meanwhile
    wait unacknowledged in the broker. Its AOF (appendfsync everysec) keeps every write it
    acknowledged: a kill -9 loses nothing that reached the kernel."""
    site = fast_site(tmp_path)
    proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
    store = Store.from_url(redis_service.url)
    client = publisher(mosquitto)
    revived = None
    try:
        ids = raise_alarms(client, 5)
        wait_until(lambda: all(attempt_done(store, a, 0) for a in ids), 10, "attempt 0 of all")
        if moment == "pages on the wire":
            fake_twilio.delay_s = 0.5
            wait_pages(fake_twilio, lambda ps: any(p.attempt == 1 for p in ps), 10,
                       "the second attempt's first page")
        due = {a: due_monotonic(store, a) for a in ids} if moment == "between attempts" \
            else {}
        redis_service.kill()
        killed = time.monotonic()
        during = raise_alarms(client, 2)
        time.sleep(1.0)
        fake_twilio.delay_s = 0.0
        revived = start_redis(redis_service.workdir, port=redis_service.port)
        back = time.monotonic()
        store = Store.from_url(revived.url)
        if moment == "pages on the wire":
            # the second attempt re-runs once Redis is back; pages that had reached the API
            # are looked up and recorded, not sent again: it resumes without a new page
            wait_until(lambda: all(attempt_done(store, a, 1) for a in ids),
                       max(0.0, back + RESUME_S - time.monotonic()),
                       f"attempt 1 of every alarm re-run within {RESUME_S:.0f} s")
        for alarm_id in (ids if moment == "between attempts" else []) + during:
            assert_resumed(fake_twilio, alarm_id, killed, due=max(back, due.get(alarm_id, 0)))
        wait_until(lambda: all(attempt_done(store, a, 1) for a in ids), 15,
                   "attempt 1 of every alarm recorded")
        wait_until(lambda: all(attempt_done(store, a, 0) for a in during), 15,
                   "the alarms raised during the outage paged")
        time.sleep(0.5)
        assert_none_lost(store, fake_twilio, ids + during)
        assert_nothing_paged_twice(fake_twilio)
    finally:
        client.loop_stop()
        client.disconnect()
        stop(proc)
        store.r.close()
        if revived:
            revived.stop()
