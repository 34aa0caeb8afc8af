"""hub/statusbatch.py and AlarmService.handle_statuses: heartbeats stored in batches, acked
only once stored, kept and retried while Redis is down."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import redis

from device.protocol import Health, StatusMessage, Topics
from hub.service import AlarmService, Outcome
from hub.statusbatch import StatusBatcher

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
    script = fake_store._statuses

    def counting_script(*a, **k):
        trips.append(len(k["keys"]))
        return script(*a, **k)

    fake_store._statuses = counting_script
    messages = [(*beat("main-circ-01", 81), False), (*beat("west-front-01", 42), True),
                (Topics().status("main-ref-01"), b"{not json", False),
                (*beat("nobody-01"), False)]
    assert service.handle_statuses(messages) == [
        Outcome.STATUS, Outcome.STATUS, Outcome.REJECTED, Outcome.REJECTED]
    assert trips == [2]  # every good status in one script call
    assert len(fake_store.rejected()) == 2  # each bad one recorded on its own
    circ, west = (fake_store.device_status(d) for d in ("main-circ-01", "west-front-01"))
    assert circ["battery_pct"] == "81" and circ["heartbeat_ms"] == str(int(NOW * 1000))
    assert west["battery_pct"] == "42" and "heartbeat_ms" not in west  # retained: not live


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
