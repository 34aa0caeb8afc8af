"""Devices' troubles in Redis (hub.store.troubles): recorded once, texts taken once."""

import json

from hub.store.troubles import ATTEMPTS


def test_an_update_records_the_changes_their_history_and_tells_the_dashboards(fake_store):
    troubles, r = fake_store.troubles, fake_store.r
    r.hset(fake_store.key("device", "d1"), mapping={"state": "offline"})
    r.sadd(fake_store.key("troubles", "d1"), "low_battery")
    events = r.pubsub()
    events.subscribe(fake_store.events_channel)
    events.get_message(timeout=1)  # the subscription's confirmation

    def decide(record, old_since, members):
        assert record == {"state": "offline"} and old_since is None
        assert members == {"low_battery"}
        return "1000", ["offline"], ["low_battery"]

    assert troubles.update("d1", "main", "circ", 5000, decide) == [("offline", True),
                                                                 ("low_battery", False)]
    assert troubles.current(["d1", "d2"]) == [{"offline"}, set()]
    assert troubles.read(["d1"]) == [({"state": "offline"}, "1000", {"offline"})]
    history = [fields for _, fields in r.xrange(fake_store.key("troubles"))]
    assert history == [
        {"device": "d1", "trouble": "offline", "raised": "1", "branch": "main",
         "room": "circ", "at_ms": "5000"},
        {"device": "d1", "trouble": "low_battery", "raised": "0", "branch": "main",
         "room": "circ", "at_ms": "5000"}]
    told = [json.loads(events.get_message(timeout=1)["data"]) for _ in range(2)]
    assert [(e["trouble"], e["raised"]) for e in told] == [("offline", True),
                                                           ("low_battery", False)]


def test_a_device_that_changes_during_an_update_is_decided_again_on_fresh_data(fake_store):
    """A heartbeat lands between the read and the write: the write is dropped and the
    decision made again from what the device says now."""
    troubles, r = fake_store.troubles, fake_store.r
    device = fake_store.key("device", "d1")
    r.hset(device, "heartbeat_ms", "1")
    seen = []

    def decide(record, old_since, members):
        seen.append(record["heartbeat_ms"])
        if len(seen) == 1:
            r.hset(device, "heartbeat_ms", "2")  # another client, under the WATCH
        return None, ["silent"] if record["heartbeat_ms"] == "1" else [], []

    assert troubles.update("d1", "main", "circ", 9000, decide) == []
    assert seen == ["1", "2"]
    assert troubles.current(["d1"]) == [set()]


def test_a_device_changing_under_every_attempt_is_left_for_the_next_check(fake_store):
    troubles, r = fake_store.troubles, fake_store.r
    device = fake_store.key("device", "d1")
    calls = []

    def decide(record, old_since, members):
        calls.append(1)
        r.hincrby(device, "heartbeat_ms", 1)
        return None, ["silent"], []

    assert troubles.update("d1", "main", "circ", 9000, decide) is None
    assert len(calls) == ATTEMPTS
    assert troubles.current(["d1"]) == [set()]


def devices_of(taken):
    token, items = taken
    return [item["device"] for item in items]


def test_a_branchs_pending_changes_are_taken_once_and_at_most_once_a_period(fake_store):
    troubles = fake_store.troubles
    troubles.queue_text("main", {"device": "d1", "trouble": "offline", "raised": True})
    troubles.queue_text("main", {"device": "d2", "trouble": "offline", "raised": True})
    first = troubles.take_texts("main", 1000, 60_000)
    assert devices_of(first) == ["d1", "d2"]
    assert troubles.take_texts("main", 1000, 60_000) is None  # another worker: nothing left
    troubles.texts_sent("main", first[0])
    troubles.queue_text("main", {"device": "d3", "trouble": "offline", "raised": True})
    assert troubles.take_texts("main", 59_999, 60_000) is None  # within the minute: waits
    assert devices_of(troubles.take_texts("main", 61_000, 60_000)) == ["d3"]


def test_a_batch_its_worker_never_sent_goes_out_once_its_lease_runs_out(fake_store):
    """The worker that took it died before texting it: the batch is not lost, and it goes
    to one other worker, once, after the lease; a batch marked sent never goes again."""
    troubles = fake_store.troubles
    troubles.queue_text("main", {"device": "d1", "trouble": "offline", "raised": True})
    taken = troubles.take_texts("main", 1000, 60_000, lease_ms=120_000)  # then it died
    assert troubles.take_texts("main", 120_999, 60_000, lease_ms=120_000) is None
    again = troubles.take_texts("main", 121_000, 60_000, lease_ms=120_000)
    assert again == taken
    assert troubles.take_texts("main", 121_000, 60_000, lease_ms=120_000) is None  # leased
    troubles.texts_sent("main", again[0])
    assert troubles.take_texts("main", 500_000, 60_000, lease_ms=120_000) is None


def test_a_broker_outage_is_reported_once_and_ended_once(fake_store):
    troubles = fake_store.troubles
    assert troubles.report_broker_outage(1000) is True
    assert troubles.report_broker_outage(1000) is False
    assert troubles.end_broker_outage() is True
    assert troubles.end_broker_outage() is False
