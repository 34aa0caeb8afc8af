"""Device supervision: the troubles table, exactly-once notices across workers, events."""

import json
import threading
from collections import Counter

import fakeredis
import pytest
import redis

from hub.engine import supervision
from hub.store.alarms import Store
from hub.core.troubles import Trouble, TroubleNotice, diff, troubles
from hub.engine.supervision import Supervisor

NOW = 1_800_000_000_000
HOUR = 3_600_000
OFF, NEVER, LOW, BACKLOG, SELFTEST = (Trouble.OFFLINE, Trouble.NEVER_SEEN, Trouble.LOW_BATTERY,
                                      Trouble.OUTBOX_BACKLOG, Trouble.SELFTEST_FAILED)
FRESH = {"state": "online", "since_ms": str(NOW - 9_000), "heartbeat_ms": str(NOW - 10_000),
         "outbox": "0", "battery_pct": "80", "selftest_ok": "1", "selftest_ms": str(NOW - HOUR)}


def beat_ms(ago_s: float) -> str:
    return str(NOW - int(ago_s * 1000))


@pytest.mark.parametrize("changes, started_ms, previous, expected", [
    ({}, NOW - HOUR, (), ()),
    ({"state": "offline"}, NOW - HOUR, (), (OFF,)),
    ({"heartbeat_ms": beat_ms(45)}, NOW - HOUR, (), ()),
    ({"heartbeat_ms": beat_ms(45.001)}, NOW - HOUR, (), (OFF,)),
    ({"heartbeat_ms": beat_ms(300), "checkin_ms": beat_ms(5)}, NOW - HOUR, (), ()),
    ({"heartbeat_ms": beat_ms(600)}, NOW - 30_000, (), ()),  # the hub itself was down
    ({"heartbeat_ms": beat_ms(600)}, NOW - 30_000, (OFF,), (OFF,)),  # grace: cannot tell yet
    ({"heartbeat_ms": beat_ms(5)}, NOW - 30_000, (OFF,), ()),  # heard since start: clear
    ({"battery_pct": "19.9"}, NOW - HOUR, (), (LOW,)),
    ({"battery_pct": "20"}, NOW - HOUR, (), ()),
    ({"outbox": "1", "outbox_since_ms": beat_ms(70)}, NOW - HOUR, (), (BACKLOG,)),
    ({"outbox": "1", "outbox_since_ms": beat_ms(40)}, NOW - HOUR, (), ()),
    ({"outbox": "6"}, NOW - HOUR, (), (BACKLOG,)),
    ({"outbox": "5"}, NOW - HOUR, (), ()),
    ({"selftest_ok": "0"}, NOW - HOUR, (), (SELFTEST,)),
    ({"selftest_ok": "1", "battery_pct": ""}, NOW - HOUR, (), ()),
    ({"heartbeat_ms": "soon", "selftest_ms": "", "battery_pct": "low", "outbox": "nan",
      "selftest_ok": "maybe", "outbox_since_ms": "x"}, NOW - HOUR, (), (OFF,)),
    ({"state": "", "heartbeat_ms": "inf", "selftest_ms": "-"}, NOW - HOUR, (), (NEVER,)),
    (None, NOW - 45_000, (), ()),
    (None, NOW - 45_001, (), (NEVER,)),
    (None, NOW - 10_000, (NEVER,), (NEVER,)),
], ids=["online fresh", "offline status", "silent exactly 45 s", "silent 45.001 s",
        "checkin is a sign of life", "hub restarted: silence from start",
        "grace keeps offline", "heard since start clears", "battery 19.9", "battery 20",
        "outbox non-empty 60 s", "outbox briefly non-empty", "outbox 6 at once",
        "outbox 5 at once", "selftest failed", "selftest passed", "garbage is absent",
        "garbage only: never seen", "never seen in grace", "never seen after grace",
        "never seen kept in grace"])
def test_troubles(changes, started_ms, previous, expected):
    record = {} if changes is None else {**FRESH, **changes}
    assert troubles(record, NOW, silent_after_s=45, started_ms=started_ms,
                    previous=frozenset(previous)) == frozenset(expected)


def test_diff():
    assert diff(frozenset({OFF, LOW}), frozenset({LOW, SELFTEST})) == ({SELFTEST}, {OFF})


def beat(store, device, at_ms, **health):
    store.devices.set_device_status(device, "online", at_ms, "1.0")
    store.devices.update_device(device, "health", heartbeat_ms=at_ms, **{
        "uptime_s": 100, "outbox": 0, "wifi_dbm": -55.0, "cpu_temp_c": 48.0,
        "battery_pct": 80.0, **health})


def beat_all(store, site, at_ms, but=()):
    for device in site.devices:
        if device not in but:
            beat(store, device, at_ms)


def supervisor(site, store, sent=None, **kw):
    return Supervisor(site, store, (sent if sent is not None else []).append,
                      started_ms=NOW, clock=lambda: 0.0, **kw)


def test_silence_raises_once_and_clears_once(fake_store, sample_site):
    sent: list[TroubleNotice] = []
    sup = supervisor(sample_site, fake_store, sent)
    beat_all(fake_store, sample_site, NOW)
    assert sup.check(NOW + 10_000) == []
    beat_all(fake_store, sample_site, NOW + 30_000, but=("main-ref-01",))
    for t in (46, 50, 55):
        sup.check(NOW + t * 1000)
    assert sent == [TroubleNotice("main-ref-01", OFF, True, "main", "reference", NOW + 46_000)]
    beat(fake_store, "main-ref-01", NOW + 58_000)
    assert sup.check(NOW + 60_000) == [
        TroubleNotice("main-ref-01", OFF, False, "main", "reference", NOW + 60_000)]
    assert sup.check(NOW + 65_000) == [] and len(sent) == 2
    assert fake_store.r.smembers("haven:troubles:main-ref-01") == set()
    history = [f for _, f in fake_store.r.xrange("haven:troubles")]
    assert [(f["device"], f["trouble"], f["raised"]) for f in history] == [
        ("main-ref-01", "offline", "1"), ("main-ref-01", "offline", "0")]


def test_only_devices_whose_troubles_change_get_a_transaction(fake_store, sample_site,
                                                             monkeypatch):
    from hub.engine import supervision
    monkeypatch.setattr(supervision, "READ_CHUNK", 2)  # several read round trips
    sup = supervisor(sample_site, fake_store)
    checked = []
    check_device = sup._check_device
    sup._check_device = lambda device, now: checked.append(device.id) or \
        check_device(device, now)
    beat_all(fake_store, sample_site, NOW)
    assert sup.check(NOW + 10_000) == [] and checked == []
    beat_all(fake_store, sample_site, NOW + 30_000, but=("main-ref-01",))
    assert [(n.device_id, n.raised) for n in sup.check(NOW + 46_000)] == [("main-ref-01", True)]
    assert checked == ["main-ref-01"]
    assert sup.check(NOW + 50_000) == [] and checked == ["main-ref-01"]  # recorded: quiet


@pytest.mark.parametrize("outboxes, expected", [((1, 2, 1), [BACKLOG]), ((1, 0, 1), [])])
def test_outbox_backlog_needs_60_s_of_non_empty_heartbeats(fake_store, sample_site,
                                                           outboxes, expected):
    sup = supervisor(sample_site, fake_store)
    raised = []
    for i, outbox in enumerate(outboxes):
        beat_all(fake_store, sample_site, NOW + i * 30_000)
        beat(fake_store, "west-safe-01", NOW + i * 30_000, outbox=outbox)
        raised += [n.trouble for n in sup.check(NOW + i * 30_000 + 1000) if n.raised]
    assert raised == expected


def second_worker(store):
    """A store with its own client on the same fake server (fakeredis keys servers by host)."""
    kwargs = store.r.connection_pool.connection_kwargs
    return Store(fakeredis.FakeRedis(host=kwargs["host"], port=kwargs["port"],
                                     decode_responses=True))


def test_two_workers_alternating_notify_each_change_once(fake_store, sample_site):
    sent: list[TroubleNotice] = []
    workers = [supervisor(sample_site, fake_store, sent),
               supervisor(sample_site, second_worker(fake_store), sent)]
    for i, t in enumerate((10, 46, 50, 55)):
        workers[i % 2].check(NOW + t * 1000)
    beat_all(fake_store, sample_site, NOW + 56_000)
    for i, t in enumerate((57, 58, 59)):
        workers[i % 2].check(NOW + t * 1000)
    counts = Counter((n.device_id, n.trouble, n.raised) for n in sent)
    assert counts == Counter({(d, NEVER, up): 1 for d in sample_site.devices
                              for up in (True, False)})


def test_a_worker_racing_between_read_and_write_does_not_double_notify(fake_store, sample_site,
                                                                     monkeypatch):
    sent: list[TroubleNotice] = []
    a = supervisor(sample_site, fake_store, sent)
    b = supervisor(sample_site, second_worker(fake_store), sent)
    real, raced = supervision.troubles, []

    def racing(*args, **kwargs):  # b checks everything after a has read, before a writes
        if not raced:
            raced.append(None)
            raced[0] = b.check(NOW + 46_000)
        return real(*args, **kwargs)
    monkeypatch.setattr(supervision, "troubles", racing)
    assert a.check(NOW + 46_000) == []
    assert len(raced[0]) == len(sent) == len(sample_site.devices)


def test_concurrent_workers_notify_each_change_once(fake_store, sample_site):
    sent: list[TroubleNotice] = []
    workers = [supervisor(sample_site, fake_store if i == 0 else second_worker(fake_store), sent)
               for i in range(4)]
    for w in workers:  # fakeredis creates a client's server lazily, racily across threads
        w.store.r.ping()
    for t in (46, 47):
        barrier = threading.Barrier(len(workers))

        def work(sup, at=NOW + t * 1000):
            barrier.wait(5)
            sup.check(at)
        threads = [threading.Thread(target=work, args=(w,)) for w in workers]
        for th in threads:
            th.start()
        for th in threads:
            th.join(10)
        if t == 46:
            beat_all(fake_store, sample_site, NOW + 46_500)
    counts = Counter((n.device_id, n.trouble, n.raised) for n in sent)
    assert counts == Counter({(d, NEVER, up): 1 for d in sample_site.devices
                              for up in (True, False)})


def test_a_failing_notify_does_not_lose_the_others(fake_store, sample_site, caplog):
    calls = []

    def notify(notice):
        calls.append(notice)
        if len(calls) == 1:
            raise RuntimeError("sms gateway down")
    sup = Supervisor(sample_site, fake_store, notify, started_ms=NOW)
    notices = sup.check(NOW + 46_000)
    assert len(notices) == len(calls) == len(sample_site.devices)
    assert "sms gateway down" in caplog.text


def test_changes_are_published_for_the_dashboard(fake_store, sample_site):
    pubsub = fake_store.r.pubsub()
    try:
        pubsub.subscribe(fake_store.events_channel)
        beat_all(fake_store, sample_site, NOW + 40_000)
        beat(fake_store, "main-circ-01", NOW + 40_000, battery_pct=12.5)
        supervisor(sample_site, fake_store).check(NOW + 41_000)
        events = []
        while (message := pubsub.get_message(timeout=0)) is not None:
            if message["type"] == "message":
                events.append(json.loads(message["data"]))
    finally:
        pubsub.close()
    assert [e for e in events if e["type"] == "device.trouble"] == [
        {"type": "device.trouble", "device": "main-circ-01", "trouble": "low_battery",
         "raised": True}]


def test_run_survives_redis_errors(fake_store, sample_site, caplog):
    stop, calls = threading.Event(), []

    def check():
        calls.append(1)
        if len(calls) == 1:
            raise redis.ConnectionError("redis is down")
        stop.set()
    sup = supervisor(sample_site, fake_store)
    sup.check = check
    sup.run(stop, interval_s=0)
    assert len(calls) == 2 and "redis is down" in caplog.text
