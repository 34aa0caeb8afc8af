"""Redis store on fakeredis: atomic raise, claims, timeline, events."""

import json

import redis

from hub.core.model import Alarm, AlarmState, Channel, Delivery, PageKey


def alarm(alarm_id="a1", received=2000, **kw):
    return Alarm(id=alarm_id, kind=kw.get("kind", "assist"), device="main-circ-01",
                 branch="main", room="circulation", pressed_at_ms=1000, received_at_ms=received)


def test_an_alarm_is_stored_once(fake_store):
    assert fake_store.raise_alarm(alarm()) is True
    assert fake_store.raise_alarm(alarm(received=9999)) is False
    assert fake_store.get_alarm("a1") == alarm()
    assert fake_store.get_alarm("a1").state is AlarmState.RAISED
    assert [e["event"] for e in fake_store.timeline("a1")] == ["raised"]


def test_active_alarms_are_newest_first(fake_store):
    fake_store.raise_alarm(alarm("old", received=1))
    fake_store.raise_alarm(alarm("new", received=3))
    fake_store.raise_alarm(alarm("mid", received=2))
    assert [a.id for a in fake_store.active_alarms()] == ["new", "mid", "old"]


def test_a_notification_is_claimed_once_and_its_outcome_recorded(fake_store):
    fake_store.raise_alarm(alarm())
    key = PageKey("a1", 0, "+12065550101", Channel.SMS)
    assert fake_store.pages.claim(key, 1000, 4000) == 1
    assert fake_store.pages.claim(key, 4999, 4000) == 0  # its worker may be sending
    # ... no: it died; take over, told when it claimed (to ask the API what got through)
    assert fake_store.pages.claim(key, 5001, 4000) == 1000
    assert fake_store.pages.claim(PageKey("a1", 1, "+12065550101", Channel.SMS),
                                  5001, 4000)
    fake_store.pages.record(key, "Circ desk", Delivery.sent("SM1"), 2500)
    assert fake_store.pages.outcome(key) == "sent:SM1"
    assert fake_store.pages.claim(key, 99_999, 4000) == 0  # sent: never again
    failed = PageKey("a1", 0, "+12065550102", Channel.SMS)
    fake_store.pages.claim(failed, 1000, 4000)
    fake_store.pages.record(failed, "Manager",
                            Delivery.failed("HTTP 400", code=21211, retryable=False), 2600)
    assert fake_store.pages.outcome(failed) == "failed:21211:permanent"
    events = fake_store.timeline("a1")
    assert [(e["event"], e["contact"]) for e in events[1:]] == [("notified", "Circ desk"),
                                                               ("notify_failed", "Manager")]
    assert events[2]["code"] == "21211"


def test_changes_are_published_for_dashboards(fake_store):
    pubsub = fake_store.r.pubsub()
    pubsub.subscribe(fake_store.events_channel)
    pubsub.get_message(timeout=1)  # subscribe confirmation
    fake_store.raise_alarm(alarm())
    fake_store.devices.set_device_status("main-circ-01", "online", 5)
    first = json.loads(pubsub.get_message(timeout=1)["data"])
    second = json.loads(pubsub.get_message(timeout=1)["data"])
    pubsub.close()
    assert first["type"] == "alarm.raised" and first["alarm"]["room"] == "circulation"
    assert second == {"type": "device.status", "device": "main-circ-01", "state": "online"}
    assert fake_store.devices.device_status("main-circ-01") == {"state": "online", "since_ms": "5"}


def test_rejected_messages_are_kept_newest_first(fake_store):
    fake_store.devices.record_rejected("t/1", "bad one", 1)
    fake_store.devices.record_rejected("t/2", "bad two", 2)
    assert [r["reason"] for r in fake_store.devices.rejected()] == ["bad two", "bad one"]


def test_a_transition_is_applied_recorded_and_queued_for_the_device(fake_store):
    import pytest

    from hub.core.lifecycle import AlarmEvent, IllegalTransition
    fake_store.raise_alarm(alarm())
    acked = fake_store.transition("a1", AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=3000)
    assert acked.state is AlarmState.ACKNOWLEDGED and fake_store.get_alarm("a1") == acked
    assert [a.id for a in fake_store.active_alarms()] == ["a1"]
    done = fake_store.transition("a1", AlarmEvent.RESOLVE, by="Dana", now_ms=4000,
                                 reason="patron left")
    assert done.state is AlarmState.RESOLVED and fake_store.active_alarms() == []
    assert [(e["event"], e.get("by")) for e in fake_store.timeline("a1")] == [
        ("raised", None), ("acknowledged", "Dana"), ("resolved", "Dana")]
    commands = fake_store.devices.read_device_commands("w1", block_ms=10)
    assert [(f["device"], f["cmd"], f["alarm_id"]) for _, f in commands] == [
        ("main-circ-01", "acknowledged", "a1"), ("main-circ-01", "resolved", "a1")]
    with pytest.raises(IllegalTransition):
        fake_store.transition("a1", AlarmEvent.ACKNOWLEDGE, by="Sam", now_ms=5000)
    with pytest.raises(KeyError):
        fake_store.transition("nope", AlarmEvent.ACKNOWLEDGE, by="Sam", now_ms=5000)


def test_device_commands_go_to_one_worker_and_survive_a_dead_one(fake_store):
    fake_store.devices.queue_device_command("main-circ-01", "locate")
    [(entry_id, fields)] = fake_store.devices.read_device_commands("w1", block_ms=10)
    assert fields == {"device": "main-circ-01", "cmd": "locate"}
    assert fake_store.devices.read_device_commands("w2", block_ms=10) == []  # w1 has it
    # w1 dies before acknowledging; after 5 s idle another worker claims it
    fake_store.r.xclaim(fake_store.key("device-commands"), "hub", "w1", 0, [entry_id],
                        idle=6000)
    [(claimed_id, _)] = fake_store.devices.read_device_commands("w2", block_ms=10)
    assert claimed_id == entry_id
    fake_store.devices.ack_device_command(entry_id)
    assert fake_store.devices.read_device_commands("w3", block_ms=10) == []


def test_alarms_raised_together_are_each_stored_once_even_after_redis_lost_its_scripts(
        store):
    from hub.store.alarms import RaiseRequest
    alarms = [Alarm(id=f"a{i}", kind="assist", device="d1", branch="main", room="circ",
                    pressed_at_ms=1000 + i, received_at_ms=2000 + i) for i in range(3)]
    store.r.script_flush()  # as after a Redis restart without its script cache
    raised = store.raise_many([RaiseRequest(a, True, 4000) for a in alarms + alarms[:1]])
    assert [r.created for r in raised] == [True, True, True, False]
    assert {a.id for a in store.active_alarms()} == {"a0", "a1", "a2"}
    assert store.escalation_due("a1") == 2001 + 4000


def escalating(store, alarm_id):
    """An alarm raised with its escalation (attempt 0 leased, due at 6000), and the
    keys of an SMS and a call of its attempt 0."""
    from hub.store.alarms import RaiseRequest
    alarm = Alarm(id=alarm_id, kind="assist", device="d1", branch="main", room="circ",
                  pressed_at_ms=1000, received_at_ms=2000)
    store.raise_many([RaiseRequest(alarm, True, 4000)])
    return (PageKey(alarm_id, 0, "+15550001", Channel.SMS),
            PageKey(alarm_id, 0, "+15550002", Channel.CALL))


def test_records_made_together_each_answer_their_own_after_redis_lost_its_scripts(store):
    from hub.store.pages import PageRecord
    from hub.core.tally import FinishCheck
    sms, call = escalating(store, "a8")
    store.r.script_flush()  # as after a Redis restart without its script cache
    store.r.set(store.key("timeline", "zz"), "not a stream")  # its XADD fails
    bad = PageRecord(PageKey("zz", 0, "+15550003", Channel.SMS), "Cy",
                     Delivery.sent("SM3"), 2150)
    results = store.pages.record_many([
        PageRecord(sms, "Ann", Delivery.sent("SM1"), 2100), bad,
        PageRecord(call, "Bob", Delivery.sent("CA1"), 2200, FinishCheck("a8", 0, 9000,
                                                                        (sms, call)))])
    assert results[0] is None and results[2] is True
    assert isinstance(results[1], redis.ResponseError)  # its own error, the others ran
    assert store.pages.outcomes([sms, call]) == ["sent:SM1", "sent:CA1"]
    assert store.escalation_due("a8") == 9000
    assert [e["sid"] for e in store.timeline("a8") if e["event"] == "notified"] == \
        ["SM1", "CA1"]


def test_the_last_page_recorded_finishes_its_attempt_in_the_same_trip(store):
    from hub.core.tally import FinishCheck
    sms, call = escalating(store, "a9")
    check = FinishCheck("a9", 0, 9000, (sms, call))
    store.pages.record(sms, "Ann", Delivery.failed("busy", retryable=False), 2100)
    # Every page failed: nothing is finished; the caller reports it first.
    assert store.pages.record(call, "Bob", Delivery.failed("down", retryable=True),
                              2200, finish=check) is None
    assert store.escalation_due("a9") == 6000
    store.pages.record(call, "Bob", Delivery.sent("CA1"), 2300)
    assert store.finish_unless_all_failed("a9", 0, 9000, [sms, call]) is True
    assert store.escalation_due("a9") == 9000
    # Finished already (another worker's re-run): recorded, not moved on again.
    assert store.pages.record(call, "Bob", Delivery.sent("CA1"), 2400,
                              finish=check) is False
    assert int(store.r.hget(store.key("escalation", "a9"), "attempt")) == 1


def test_scripts_redis_lost_are_loaded_again_and_run_once(store):
    """A Redis restart (or SCRIPT FLUSH) forgets the hub's scripts: the raise and the
    records still run, each once."""
    store.warm_up()
    store.r.script_flush()
    assert store.raise_alarm(alarm("a1"))
    assert not store.raise_alarm(alarm("a1"))  # stored once
    store.r.script_flush()
    key = PageKey("a1", 0, "+12065550101", Channel.SMS)
    assert store.pages.claim(key, 5, 4000) == 1
    store.pages.record(key, "Sam", Delivery.sent("SM1"), 6)
    assert store.pages.outcome(key) == "sent:SM1"


def test_devices_heard_together_keep_each_ones_latest_time(fake_store):
    """A burst's presses of one device are one write each for the device and its check-in,
    and the latest time wins whatever the order they came in."""
    fake_store.devices.heard([("wall-1", "alarm_ms", 3000, False),
                              ("worn-1", "alarm_ms", 5000, True),
                              ("wall-1", "alarm_ms", 4000, False),
                              ("worn-1", "alarm_ms", 4500, True),
                              ("wall-1", "cancel_ms", 3500, False)])
    r = fake_store.r
    assert r.hgetall(fake_store.key("device", "wall-1")) == {"alarm_ms": "4000",
                                                             "cancel_ms": "3500"}
    assert r.hget(fake_store.key("device", "worn-1"), "alarm_ms") == "5000"
    assert r.hget(fake_store.key("checkin", "worn-1"), "answered_ms") == "5000"
    assert not r.exists(fake_store.key("checkin", "wall-1"))


def test_every_device_heard_of_is_listed_with_its_presence(fake_store):
    fake_store.devices.set_device_status("wall-1", "online", 1000)
    fake_store.devices.set_device_status("worn-1", "offline", 2000)
    fake_store.devices.heard([("new-1", "alarm_ms", 3000, False)])  # no status yet
    assert fake_store.devices.presences() == {"wall-1": "online", "worn-1": "offline",
                                              "new-1": "unknown"}


def test_a_worn_devices_checkin_is_requested_answered_and_missed_once(fake_store):
    devices = fake_store.devices
    assert devices.checkin_tick("worn-1", 1000, 60_000, 30_000, True) == ("request", 1000)
    assert devices.checkin_requested_ms("worn-1") == 1000
    assert devices.checkin_tick("worn-1", 2000, 60_000, 30_000, True) is None
    assert devices.checkin_tick("worn-1", 31_000, 60_000, 30_000, True) == ("missed", 1000)
    assert devices.checkin_tick("worn-1", 32_000, 60_000, 30_000, True) is None  # once
    assert devices.checkin_tick("worn-1", 61_000, 60_000, 30_000, True) == ("request", 61_000)
    devices.answer_checkin("worn-1", 70_000)
    assert devices.checkin_tick("worn-1", 91_000, 60_000, 30_000, True) is None
    assert devices.checkin_requested_ms("wall-1") is None
