"""The alarm service with fakeredis, a recording notifier and a recording publisher."""

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from device.protocol import Topics, decode_command, new_alarm
from hub.core.messages import SMS_SEGMENT_CHARS, sms_text
from hub.core.model import Alarm, Delivery
from hub.core.escalation import plan
from hub.engine.service import AlarmService, MessageOutcome

NOW = 1763840000.0  # 2025-11-22 19:33:20 UTC


class RecordingNotifier:
    name = "recording"

    def __init__(self, fail: dict[str, Delivery] | None = None):
        self.sent: list[tuple[str, str]] = []
        self.calls: list[tuple[str, str]] = []
        self.fail = fail or {}

    def send_sms(self, to, body, *, status_url=None):
        self.sent.append((to, body))
        return self.fail.get(to) or Delivery.sent(f"SM{len(self.sent)}")

    def place_call(self, to, text, *, voice_url=None, status_url=None):
        self.calls.append((to, text))
        return Delivery.sent(f"CA{len(self.calls)}")


class Pools:
    """Escalation and sender pools; ``shutdown`` drains both, attempts first."""

    def __init__(self):
        self.escalators, self.senders = ThreadPoolExecutor(2), ThreadPoolExecutor(4)

    def shutdown(self, wait=True):
        self.escalators.shutdown(wait=True)
        self.senders.shutdown(wait=True)


@pytest.fixture
def parts(sample_site, fake_store):
    notifier, published = RecordingNotifier(), []
    pool = Pools()
    service = AlarmService(sample_site, fake_store, notifier,
                           lambda t, p: published.append((t, p)), pool.senders,
                           escalators=pool.escalators, clock=lambda: NOW)
    yield service, notifier, published, pool
    pool.shutdown()




def test_an_alarm_is_stored_placed_paged_and_confirmed(parts, fake_store, sample_site):
    service, notifier, published, pool = parts
    msg = new_alarm("main-safe-01", "safe_room", NOW - 1)
    assert service.handle(Topics().alarm(msg.device), msg.to_json()) is MessageOutcome.STORED
    pool.shutdown(wait=True)
    stored = fake_store.get_alarm(msg.alarm_id)
    assert (stored.branch, stored.room, stored.kind) == ("main", "safe-room", "safe_room")
    assert stored.received_at_ms == NOW * 1000 and stored.pressed_at_ms == msg.pressed_at
    expected = {c.phone for c in sample_site.recipients("safe_room", "main")}
    assert {to for to, _ in notifier.sent} == expected
    [(topic, payload)] = published
    cmd = decode_command(topic, payload)
    assert topic == Topics().cmd("main-safe-01") and cmd.cmd == "received"
    assert cmd.alarm_id == msg.alarm_id
    events = [e["event"] for e in fake_store.timeline(msg.alarm_id)]
    assert events == ["raised", "escalation"] + ["notified"] * len(expected)


def test_a_duplicate_is_confirmed_again_but_pages_nobody(parts):
    service, notifier, published, pool = parts
    msg = new_alarm("main-circ-01", "assist", NOW)
    topic = Topics().alarm(msg.device)
    assert service.handle(topic, msg.to_json()) is MessageOutcome.STORED
    assert service.handle(topic, msg.to_json()) is MessageOutcome.DUPLICATE
    pool.shutdown(wait=True)
    assert len(notifier.sent) == 2
    assert len(published) == 2  # the device hears "received" both times


def test_the_test_kind_is_recorded_and_pages_no_one(parts, fake_store):
    service, notifier, _, pool = parts
    msg = new_alarm("main-circ-01", "test", NOW)
    assert service.handle(Topics().alarm(msg.device), msg.to_json()) is MessageOutcome.STORED
    pool.shutdown(wait=True)
    stored = fake_store.get_alarm(msg.alarm_id)
    assert notifier.sent == [] and stored.state == "resolved" and stored.closed_by == "hub"
    assert fake_store.active_alarms() == []  # a test press never sits on the board
    [(_, fields)] = fake_store.devices.read_device_commands("w", block_ms=10)
    assert (fields["device"], fields["cmd"]) == ("main-circ-01", "resolved")
    device = fake_store.devices.device_status("main-circ-01")  # the last test press, for the board
    assert (device["test_ms"], device["test_alarm"]) == (str(int(NOW * 1000)), msg.alarm_id)


def test_a_failed_delivery_is_recorded_with_its_code(sample_site, fake_store):
    bad = sample_site.recipients("assist", "main")[0].phone
    notifier = RecordingNotifier({bad: Delivery.failed("HTTP 400: invalid", code=21211,
                                                       retryable=False)})
    pool = Pools()
    service = AlarmService(sample_site, fake_store, notifier, lambda t, p: None, pool.senders,
                           escalators=pool.escalators, clock=lambda: NOW)
    msg = new_alarm("main-circ-01", "assist", NOW)
    service.handle(Topics().alarm(msg.device), msg.to_json())
    pool.shutdown()
    failed = [e for e in fake_store.timeline(msg.alarm_id) if e["event"] == "notify_failed"]
    assert [(e["to"], e["code"]) for e in failed] == [(bad, "21211")]


@pytest.mark.parametrize("topic, payload, reason", [
    ("haven/v1/dev/main-circ-01/alarm", b"nope", "not valid UTF-8 JSON"),
    ("haven/v1/dev/ghost/alarm", new_alarm("ghost", "assist").to_json(),
     "'ghost' is not in the site config"),
    ("haven/v1/dev/ghost/status", b'{"v":1,"device":"ghost","state":"online"}',
     "'ghost' is not in the site config"),
    ("elsewhere/x", b"{}", "not under 'haven/v1/dev/'"),
])
def test_bad_messages_are_rejected_and_recorded(parts, fake_store, topic, payload, reason):
    service, notifier, published, _ = parts
    assert service.handle(topic, payload) is MessageOutcome.REJECTED
    [rejected] = fake_store.devices.rejected()
    assert reason in rejected["reason"] and rejected["topic"] == topic
    assert notifier.sent == [] and published == []


def test_device_status_is_recorded(parts, fake_store):
    service, *_ = parts
    payload = b'{"v":1,"device":"main-circ-01","state":"online","at":5,"firmware":"0.1.0"}'
    assert service.handle(Topics().status("main-circ-01"), payload) is MessageOutcome.STATUS
    assert fake_store.devices.device_status("main-circ-01") == {"state": "online", "since_ms": "5",
                                                        "firmware": "0.1.0"}


def test_an_unreachable_store_raises_so_the_message_is_not_acknowledged(sample_site):
    from hub.app.localservices import free_port
    from hub.store.alarms import Store
    store = Store.from_url(f"redis://127.0.0.1:{free_port()}")
    with ThreadPoolExecutor(1) as pool:
        service = AlarmService(sample_site, store, RecordingNotifier(), lambda t, p: None, pool)
        msg = new_alarm("main-circ-01", "assist")
        with pytest.raises(redis.ConnectionError):
            service.handle(Topics().alarm(msg.device), msg.to_json())


def test_the_sms_names_kind_branch_room_and_holder_in_one_segment(sample_site):
    alarm = Alarm(id="0b6f2a7e-5c1d-4c55-9d0e-2f7f6f1c9a10", kind="emergency",
                  device="west-front-01", branch="westside", room="front-desk",
                  pressed_at_ms=0, received_at_ms=int(NOW * 1000))
    text = sms_text(alarm, sample_site)
    assert text == ("HAVEN EMERGENCY: Westside Branch, Front Desk (Evening librarian). "
                    "Alarm at 11:33 PST. Ref 0b6f2a7e-1")
    assert len(text) <= SMS_SEGMENT_CHARS
    planned = plan(sample_site, alarm, sample_site.kinds["emergency"].steps, 0, drill=False)
    phones = [c.phone for c in sample_site.recipients("emergency", "westside")]
    assert [(p.key.contact, str(p.key.channel)) for p in planned] == (
        [(phone, "call") for phone in phones] + [(phone, "sms") for phone in phones])
    assert {p.key.step for p in planned} == {0}


def test_a_retained_heartbeat_replayed_on_subscribe_is_not_proof_of_life(parts, fake_store):
    service, *_ = parts
    beat = (b'{"v":1,"device":"main-circ-01","state":"online","at":5,'
            b'"health":{"uptime_s":9,"outbox":0}}')
    service.handle(Topics().status("main-circ-01"), beat, retained=True)
    assert "heartbeat_ms" not in fake_store.devices.device_status("main-circ-01")
    service.handle(Topics().status("main-circ-01"), beat)
    assert fake_store.devices.device_status("main-circ-01")["heartbeat_ms"] == str(int(NOW * 1000))


def test_a_replayed_status_keeps_presence_but_not_its_old_readings(parts, fake_store):
    """Firmware 0.3 retains the readings it had when it connected: a hub restarting days
    later must not put them over the last heartbeat's."""
    from device.protocol import Health, Heartbeat, StatusMessage
    service, *_ = parts
    at_connect = StatusMessage(device="main-circ-01", state="online", at=5, firmware="0.3.0",
                               health=Health(uptime_s=1, outbox=0, battery_pct=95))
    service.handle(Topics().status("main-circ-01"), at_connect.to_json())
    later = Heartbeat(device="main-circ-01", at=9_000,
                      health=Health(uptime_s=86_400, outbox=0, battery_pct=21))
    service.handle(Topics().heartbeat("main-circ-01"), later.to_json())
    service.handle(Topics().status("main-circ-01"), at_connect.to_json(), retained=True)
    record = fake_store.devices.device_status("main-circ-01")
    assert (record["state"], record["firmware"], record["battery_pct"], record["uptime_s"]) == (
        "online", "0.3.0", "21", "86400")


def _burst(now_s):
    """Messages as one read from the broker might hold them: an alarm, its cancel, an alarm
    from a device the site does not know, another alarm, and the first one resent."""
    from device.protocol import DeviceEvent
    first = new_alarm("main-circ-01", "assist", now_s)
    second = new_alarm("main-safe-01", "safe_room", now_s)
    stranger = new_alarm("nowhere-01", "assist", now_s)
    cancel = DeviceEvent(device="main-circ-01", event="cancel", at=first.pressed_at + 500,
                         alarm_id=first.alarm_id)
    t = Topics()
    return [(t.alarm(first.device), first.to_json(), False),
            (t.event(cancel.device), cancel.to_json(), False),
            (t.alarm(stranger.device), stranger.to_json(), False),
            (t.alarm(second.device), second.to_json(), False),
            (t.alarm(first.device), first.to_json(), False)], (first, second)


def test_messages_read_together_are_handled_in_order_with_a_round_trip_per_run_of_alarms(
        parts, fake_store, sample_site):
    service, notifier, published, pool = parts
    batch, (first, second) = _burst(NOW)
    trips = []
    raise_many = fake_store.raise_many
    fake_store.raise_many = lambda requests: trips.append(len(requests)) or raise_many(requests)
    outcomes = service.handle_batch(batch)
    pool.shutdown(wait=True)

    # The cancel comes after its alarm is stored (so it applies), and the rest keep order.
    assert outcomes == [MessageOutcome.STORED, MessageOutcome.EVENT, MessageOutcome.REJECTED, MessageOutcome.STORED,
                        MessageOutcome.DUPLICATE]
    assert trips == [1, 2]  # the alarm before the cancel, then the two after it
    assert fake_store.get_alarm(first.alarm_id).state.value == "cancelled"
    assert fake_store.get_alarm(second.alarm_id).state.value == "raised"
    assert {to for to, _ in notifier.sent} >= {
        c.phone for c in sample_site.recipients("safe_room", "main")}
    confirmed = [decode_command(t, p).alarm_id for t, p in published
                 if decode_command(t, p).cmd == "received"]
    assert confirmed == [first.alarm_id, second.alarm_id, first.alarm_id]


def test_a_batch_handles_each_message_as_handle_would(sample_site):
    """The same messages one by one and as one batch, on two fresh stores: same outcomes,
    same pages."""
    import fakeredis
    from hub.store.alarms import Store
    results = []
    batch, _ = _burst(NOW)
    for together in (False, True):
        notifier, pool = RecordingNotifier(), Pools()
        service = AlarmService(sample_site, Store(fakeredis.FakeRedis(decode_responses=True)),
                               notifier, lambda t, p: None, pool.senders,
                               escalators=pool.escalators, clock=lambda: NOW)
        outcomes = (service.handle_batch(batch) if together else
                    [service.handle(t, p, retained=r) for t, p, r in batch])
        pool.shutdown()
        results.append((outcomes, sorted(notifier.sent)))
    assert results[0] == results[1]


def test_warm_up_readies_a_sender_thread_each_and_survives_a_store_that_is_down(
        sample_site, caplog):
    """Hub start: each warmed sender thread builds its own client and API connection;
    a store that cannot be reached is logged, and the hub starts anyway."""
    import threading
    import time

    class Warmed:
        def __init__(self):
            self.threads, self.lock = set(), threading.Lock()

        def warm_up(self):
            with self.lock:
                self.threads.add(threading.current_thread().name)

    from hub.app.localservices import free_port
    from hub.store.alarms import Store
    down = Store.from_url(f"redis://127.0.0.1:{free_port()}")
    notifier, senders = Warmed(), ThreadPoolExecutor(8, thread_name_prefix="sender")
    service = AlarmService(sample_site, down, notifier, lambda t, p: None, senders)
    with caplog.at_level("WARNING", logger="haven.hub"):
        service.warm_up(4)
    assert "store not reachable at start" in caplog.text
    deadline = time.monotonic() + 3
    while len(notifier.threads) < 4:
        assert time.monotonic() < deadline, notifier.threads
        time.sleep(0.01)
    senders.shutdown(wait=True)
    assert len(notifier.threads) == 4 and all(t.startswith("sender") for t in notifier.threads)
