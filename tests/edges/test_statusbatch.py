"""hub/edges/statusbatch.py and AlarmService.handle_statuses: heartbeats stored in batches, acked
only once stored, kept and retried while Redis is down."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import redis

from device.protocol import Health, Heartbeat, StatusMessage, Topics
from hub.engine.service import AlarmService, MessageOutcome
from hub.edges.statusbatch import StatusBatcher

NOW = 1_780_000_000.0


def beat(device: str, battery: float = 80.0) -> tuple[str, bytes]:
    msg = StatusMessage(device=device, state="online", at=int(NOW * 1000), firmware="1.0",
                        health=Health(uptime_s=5, battery_pct=battery, outbox=0))
    return Topics().status(device), msg.to_json()


def test_a_batch_is_stored_in_one_round_trip_and_bad_ones_rejected_alone(
        sample_site, fake_store):
    service = AlarmService(sample_site, fake_store, None, lambda t, p: None,
                           ThreadPoolExecutor(1), clock=lambda: NOW)
    trips = []
    script = fake_store.devices._statuses

    def counting_script(*a, **k):
        trips.append(len(k["keys"]))
        return script(*a, **k)

    fake_store.devices._statuses = counting_script
    messages = [(*beat("main-circ-01", 81), False), (*beat("west-front-01", 42), True),
                (Topics().status("main-ref-01"), b"{not json", False),
                (*beat("nobody-01"), False)]
    assert service.handle_statuses(messages) == [
        MessageOutcome.STATUS, MessageOutcome.STATUS, MessageOutcome.REJECTED, MessageOutcome.REJECTED]
    assert trips == [2]  # every good status in one script call
    assert len(fake_store.devices.rejected()) == 2  # each bad one recorded on its own
    circ, west = (fake_store.devices.device_status(d) for d in ("main-circ-01", "west-front-01"))
    assert circ["battery_pct"] == "81" and circ["heartbeat_ms"] == str(int(NOW * 1000))
    # retained: presence only, neither proof of life nor current readings
    assert west["state"] == "online" and "heartbeat_ms" not in west
    assert "battery_pct" not in west


def heartbeat(device: str, battery: float, outbox: int = 0) -> tuple[str, bytes, bool]:
    msg = Heartbeat(device=device, at=int(NOW * 1000) + 30_000,
                    health=Health(uptime_s=35, battery_pct=battery, outbox=outbox))
    return Topics().heartbeat(device), msg.to_json(), False


def test_a_heartbeat_records_readings_and_never_changes_presence(sample_site, fake_store):
    """A heartbeat delayed past its device's Last Will (another worker stored the will
    first) must not make the dead device look online; its readings are still kept."""
    service = AlarmService(sample_site, fake_store, None, lambda t, p: None,
                           ThreadPoolExecutor(1), clock=lambda: NOW)
    will = StatusMessage(device="main-circ-01", state="offline")
    events = fake_store.r.pubsub(ignore_subscribe_messages=True)
    events.subscribe(fake_store.events_channel)
    assert service.handle_statuses([(*beat("main-circ-01", 81), False),
                                    (Topics().status("main-circ-01"), will.to_json(), False),
                                    heartbeat("main-circ-01", 79, outbox=1),
                                    heartbeat("main-ref-01", 55),
                                    (Topics().heartbeat("nobody-01"),
                                     heartbeat("nobody-01", 1)[1], False),
                                    (Topics().heartbeat("main-ref-01"), b'{"v": 1}', False)]
                                   ) == [MessageOutcome.STATUS] * 4 + [MessageOutcome.REJECTED] * 2
    circ = fake_store.devices.device_status("main-circ-01")
    assert (circ["state"], circ["battery_pct"], circ["outbox"]) == ("offline", "79", "1")
    assert circ["heartbeat_ms"] == str(int(NOW * 1000))
    assert circ["since_ms"] == str(int(NOW * 1000))  # the will's (hub time), not the beat's
    ref = fake_store.devices.device_status("main-ref-01")
    assert "state" not in ref and ref["battery_pct"] == "55"  # presence unknown, still
    reasons = [r["reason"] for r in fake_store.devices.rejected()]
    assert any("'nobody-01' is not in the site config" in r for r in reasons)
    assert any("field 'device': missing" in r for r in reasons), reasons
    announced = []  # statuses are announced to dashboards, heartbeats are not
    for _ in range(20):  # None for the subscribe confirmation, and at the end
        if (event := events.get_message(timeout=0.01)) is not None:
            announced.append(json.loads(event["data"]))
    assert [(e["type"], e["state"]) for e in announced] == [("device.status", "online"),
                                                           ("device.status", "offline")]


class Message(SimpleNamespace):
    pass


def test_the_batcher_acks_only_after_storing_and_holds_a_batch_while_redis_is_down():
    stored: list[list] = []
    acked: list[int] = []
    down = threading.Event()
    down.set()

    def store(batch):
        if down.is_set():
            raise redis.ConnectionError("Connection refused")
        stored.append(batch)

    batcher = StatusBatcher(store, lambda m: acked.append(m.mid))
    batcher.start()
    try:
        for mid in range(1, 6):
            batcher.put(Message(topic=f"haven/v1/dev/d{mid}/status", payload=b"{}",
                                retain=False, mid=mid, qos=1))
        time.sleep(0.5)
        assert stored == [] and acked == []  # nothing acknowledged while not stored
        down.clear()
        deadline = time.monotonic() + 5
        while len(acked) < 5:
            assert time.monotonic() < deadline, (stored, acked)
            time.sleep(0.01)
        assert acked == [1, 2, 3, 4, 5]  # in order, each once
        assert [t for batch in stored for t, _, _ in batch] == [
            f"haven/v1/dev/d{mid}/status" for mid in range(1, 6)]
        assert len(stored) == 1  # what queued meanwhile went in one round trip
    finally:
        batcher.stop()
