"""kill -9 of hub workers mid-escalation: restarted, or (with two) one left dead.

tests/engine/test_workers.py already kills one of two workers once a single alarm's first
pages are recorded; here many alarms are in flight, a lone worker is restarted, and
the kill also lands while pages are on the wire."""

from __future__ import annotations

import signal
import time

import pytest

from device.protocol import Topics, new_alarm
from hub.store.alarms import Store
from tests.faults.harness import (RESUME_S, WAIT_S, assert_none_lost,
                                  assert_nothing_paged_twice, assert_resumed, attempts_run,
                                  due_monotonic, fast_site, publisher, stop, wait_until, worker)

pytestmark = pytest.mark.faults

DEVICES = ["main-circ-01", "main-ref-01", "main-child-01", "main-work-01"]


def raise_alarms(client, count: int, kind: str = "emergency") -> list[str]:
    alarms = [new_alarm(DEVICES[i % len(DEVICES)], kind) for i in range(count)]
    for alarm in alarms:
        client.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
    return [a.alarm_id for a in alarms]


def attempt_done(store: Store, alarm_id: str, number: int) -> bool:
    """Attempt ``number`` ran and every page it planned has its outcome recorded."""
    timeline = store.timeline(alarm_id)
    planned = [int(e["notifications"]) for e in timeline
               if e["event"] == "escalation" and int(e["attempt"]) == number]
    recorded = sum(1 for e in timeline if e["event"] in ("notified", "notify_failed")
                   and int(e["step"]) == number)
    return bool(planned) and recorded >= planned[0]


def kill(proc) -> float:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return time.monotonic()


def test_a_lone_worker_killed_between_attempts_and_restarted_resumes_every_alarm(
        tmp_path, mosquitto, redis_service, fake_twilio):
    site = fast_site(tmp_path)
    proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
    store = Store.from_url(redis_service.url)
    client = publisher(mosquitto)
    try:
        ids = raise_alarms(client, 8)
        wait_until(lambda: all(attempt_done(store, a, 0) for a in ids), 10, "attempt 0 of all")
        killed = kill(proc)
        due = {a: due_monotonic(store, a) for a in ids}
        time.sleep(1.0)
        proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
        back = time.monotonic()
        for a in ids:
            assert_resumed(fake_twilio, a, killed, due=max(back, due[a]))
        wait_until(lambda: all(attempt_done(store, a, 1) for a in ids), 10, "attempt 1 of all")
        time.sleep(0.3)
        assert_none_lost(store, fake_twilio, ids)
        assert_nothing_paged_twice(fake_twilio)
    finally:
        client.loop_stop()
        client.disconnect()
        stop(proc)
        store.r.close()


def test_two_workers_one_killed_mid_escalation_and_never_restarted(
        tmp_path, mosquitto, redis_service, fake_twilio):
    """30 emergencies shared by two workers; the busier one dies after their first pages.
    The survivor takes over every one of the dead worker's escalations when due."""
    site = fast_site(tmp_path)
    workers = {n: worker(n, tmp_path, site, mosquitto, redis_service, fake_twilio)
               for n in ("w1", "w2")}
    store = Store.from_url(redis_service.url)
    client = publisher(mosquitto)
    try:
        ids = raise_alarms(client, 30)
        wait_until(lambda: all(attempt_done(store, a, 0) for a in ids), 15, "attempt 0 of all")
        handled = {n: log.read_text().count("escalating") for n, (_, log) in workers.items()}
        assert min(handled.values()) > 0, handled  # both took a share
        victim = max(handled, key=handled.get)
        killed = kill(workers[victim][0])
        due = {a: due_monotonic(store, a) for a in ids}
        for a in ids:
            assert_resumed(fake_twilio, a, killed, due=due[a])
        wait_until(lambda: all(attempt_done(store, a, 1) for a in ids), 15, "attempt 1 of all")
        time.sleep(0.3)
        assert_none_lost(store, fake_twilio, ids)
        assert_nothing_paged_twice(fake_twilio)
    finally:
        client.loop_stop()
        client.disconnect()
        for proc, _ in workers.values():
            stop(proc)
        store.r.close()


def test_a_worker_killed_while_its_pages_are_on_the_wire(tmp_path, mosquitto, redis_service,
                                                         fake_twilio):
    """The API answers after 1 s; the worker dies once the first page reached it. After the
    restart the attempt runs again when its lease ends: Twilio must not get that page twice
    (the re-run asks the API what the dead worker's claims got through, and records it),
    and the escalation goes on to its next attempt on time."""
    site = fast_site(tmp_path)
    fake_twilio.delay_s = 1.0
    proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
    store = Store.from_url(redis_service.url)
    client = publisher(mosquitto)
    try:
        [alarm_id] = raise_alarms(client, 1)
        wait_until(lambda: any(r.form.get("To") for r in fake_twilio.requests), 5,
                   "the first page on the wire")
        killed = kill(proc)
        due = due_monotonic(store, alarm_id)  # the dead worker's lease
        fake_twilio.delay_s = 0.0
        proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
        wait_until(lambda: attempts_run(store, alarm_id).count(0) >= 2
                   and attempt_done(store, alarm_id, 0),
                   max(0.0, due + RESUME_S - time.monotonic()), "attempt 0 re-run")
        # every page of attempt 0 had reached the API: the re-run sent none again, and the
        # next attempt follows WAIT_S later
        assert_resumed(fake_twilio, alarm_id, killed + 0.5, due=due + WAIT_S)
        time.sleep(0.5)
        assert_none_lost(store, fake_twilio, [alarm_id])
        assert_nothing_paged_twice(fake_twilio)
    finally:
        client.loop_stop()
        client.disconnect()
        stop(proc)
        store.r.close()
