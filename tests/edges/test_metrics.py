"""Hub metrics: counters move, the exposition names them, /metrics is served, reasons class."""

import json
import urllib.error
import urllib.request

import fakeredis
import pytest

from device.protocol import Topics
from hub.edges.metrics import (MESSAGE_OUTCOMES, REASONS, Metrics, channel_of, delivery_outcome,
                         reason_class)
from hub.core.model import Delivery
from hub.engine.service import AlarmService, MessageOutcome
from hub.store.alarms import Store

NOW = 1763840000.0


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_messages_are_counted_by_channel_and_outcome():
    m = Metrics()
    m.message("alarm", MessageOutcome.STORED)
    m.message("alarm", MessageOutcome.STORED)
    m.message("cmd", MessageOutcome.IGNORED)
    assert value(m, "haven_messages_total", channel="alarm", outcome="stored") == 2
    assert value(m, "haven_messages_total", channel="cmd", outcome="ignored") == 1
    assert value(m, "haven_rejected_total", reason="other") is None  # nothing rejected


def test_a_rejection_counts_its_reason_class_and_an_unparsed_channel_as_invalid():
    m = Metrics()
    topic = "elsewhere/x"
    m.message(None, MessageOutcome.REJECTED, f"topic {topic}: message: not under 'haven/v1/dev/'",
              topic=topic)
    m.message("some/topic/text", MessageOutcome.REJECTED, None)
    assert value(m, "haven_messages_total", channel="invalid", outcome="rejected") == 2
    assert value(m, "haven_rejected_total", reason="topic") == 1
    assert value(m, "haven_rejected_total", reason="other") == 1


def test_the_outcomes_are_the_services():
    assert set(MESSAGE_OUTCOMES) == {str(o) for o in MessageOutcome}
    with pytest.raises(ValueError, match="'stord' is not one of"):
        Metrics().message("alarm", "stord")


def test_stored_alarms_count_by_kind_and_time_press_to_stored_clamped_at_zero():
    m = Metrics()
    m.alarm_stored("assist", 0.2)
    m.alarm_stored("assist", -5.0)  # the device clock runs ahead of the hub's
    m.alarm_stored("missed_checkin")  # raised by the hub: nobody pressed
    assert value(m, "haven_alarms_total", kind="assist") == 2
    assert value(m, "haven_alarms_total", kind="missed_checkin") == 1
    assert value(m, "haven_press_to_stored_seconds_count") == 2
    assert value(m, "haven_press_to_stored_seconds_sum") == pytest.approx(0.2)
    assert value(m, "haven_press_to_stored_seconds_bucket", le="0.001") == 1
    assert value(m, "haven_press_to_stored_seconds_bucket", le="60.0") == 2


@pytest.mark.parametrize("delivery, outcome", [
    (Delivery.sent("SM1"), "sent"),
    (Delivery.failed("HTTP 503", retryable=True), "failed_retryable"),
    (Delivery.failed("HTTP 400: invalid", code=21211, retryable=False), "failed_permanent"),
])
def test_deliveries_map_to_notification_outcomes(delivery, outcome):
    assert delivery_outcome(delivery) == outcome


def test_notifications_count_by_channel_and_outcome():
    m = Metrics()
    m.page("sms", "sent")
    m.page("call", "skipped_claimed")
    m.page("call", "skipped_claimed")
    assert value(m, "haven_pages_total", channel="sms", outcome="sent") == 1
    assert value(m, "haven_pages_total", channel="call", outcome="skipped_claimed") == 2
    with pytest.raises(ValueError, match="'delivered' is not one of"):
        m.page("sms", "delivered")


def test_escalation_lag_is_observed_in_seconds_clamped_at_zero():
    m = Metrics()
    m.escalation_started(0.3)
    m.escalation_started(-0.1)  # leased a hair before due
    assert value(m, "haven_escalation_lag_seconds_count") == 2
    assert value(m, "haven_escalation_lag_seconds_bucket", le="0.01") == 1
    assert value(m, "haven_escalation_lag_seconds_bucket", le="0.5") == 2
    assert value(m, "haven_escalation_lag_seconds_sum") == pytest.approx(0.3)


def test_devices_gauge_is_set_not_added():
    m = Metrics()
    assert value(m, "haven_devices", state="online") == 0
    m.set_devices(online=5, offline=2)
    m.set_devices(online=6, offline=1)
    assert value(m, "haven_devices", state="online") == 6
    assert value(m, "haven_devices", state="offline") == 1


def test_instances_do_not_share_a_registry():
    a, b = Metrics(), Metrics()
    a.alarm_stored("assist", 0.1)
    assert value(a, "haven_alarms_total", kind="assist") == 1
    assert value(b, "haven_alarms_total", kind="assist") is None


def test_render_is_the_text_exposition_with_every_metric():
    m = Metrics()
    m.message("alarm", MessageOutcome.REJECTED, "topic t: message: payload must be a JSON object, "
                                         "not list", topic="t")
    m.alarm_stored("assist", 0.01)
    m.page("sms", "sent")
    m.escalation_started(0.02)
    text = m.render().decode()
    for name in ("haven_messages_total", "haven_rejected_total", "haven_alarms_total",
                 "haven_pages_total", "haven_escalation_lag_seconds_bucket",
                 "haven_press_to_stored_seconds_bucket", "haven_devices"):
        assert f"\n{name}{{" in text, name
    assert 'haven_rejected_total{reason="json"} 1.0' in text
    assert m.content_type.startswith("text/plain")


def test_metrics_are_served_over_http_on_a_free_port_until_closed():
    m = Metrics()
    m.alarm_stored("emergency", 0.5)
    server = m.serve("127.0.0.1", 0)
    try:
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics",
                                    timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            body = response.read().decode()
        assert 'haven_alarms_total{kind="emergency"} 1.0' in body
    finally:
        server.close()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


@pytest.mark.parametrize("topic, expected", [
    ("haven/v1/dev/main-circ-01/alarm", "alarm"),
    ("haven/v1/dev/main-circ-01/cmd", "cmd"),
    ("haven/v1/dev/main-circ-01/nope", "invalid"),
    ("elsewhere/alarm", "invalid"),
])
def test_channel_of_a_topic(topic, expected):
    assert channel_of(topic, Topics()) == expected


# --- reason classes of the rejections the service really produces -------------------------

ALARM = {"v": 1, "alarm_id": "a1", "kind": "assist", "device": "main-circ-01",
         "pressed_at": 1763840000000}
CIRC = "haven/v1/dev/main-circ-01"


NO_POOL = object()


def js(obj) -> bytes:
    return json.dumps(obj).encode()


@pytest.mark.parametrize("topic, payload, expected", [
    ("elsewhere/x", b"{}", "topic"),
    (f"{CIRC}/nope", b"{}", "topic"),
    ("haven/v1/dev/bad id/alarm", b"{}", "topic"),
    (f"{CIRC}/alarm", b" " * 5000, "too_large"),
    (f"{CIRC}/alarm", b"nope", "json"),
    (f"{CIRC}/alarm", b"\xff{}", "json"),
    (f"{CIRC}/alarm", b"[1]", "json"),
    (f"{CIRC}/alarm", b"[" * 2000, "json"),
    (f"{CIRC}/alarm", js({**ALARM, "v": 2}), "version"),
    (f"{CIRC}/alarm", js({k: v for k, v in ALARM.items() if k != "v"}), "version"),
    (f"{CIRC}/alarm", js({**ALARM, "kind": "party"}), "kind"),
    (f"{CIRC}/alarm", js({**ALARM, "kind": 3}), "kind"),
    (f"{CIRC}/alarm", js({**ALARM, "device": "main-ref-01"}), "device_mismatch"),
    (f"{CIRC}/alarm", js({k: v for k, v in ALARM.items() if k != "device"}), "field:device"),
    ("haven/v1/dev/ghost/alarm", js({**ALARM, "device": "ghost"}), "unknown_device"),
    ("haven/v1/dev/ghost/status", js({"v": 1, "device": "ghost", "state": "online"}),
     "unknown_device"),
    ("haven/v1/dev/ghost/event", js({"v": 1, "device": "ghost", "event": "checkin", "at": 1}),
     "unknown_device"),
    (f"{CIRC}/alarm", js({**ALARM, "alarm_id": "a b"}), "field:alarm_id"),
    (f"{CIRC}/alarm", js({**ALARM, "pressed_at": -1}), "field:pressed_at"),
    (f"{CIRC}/alarm", js({**ALARM, "pressed_at": 1.5}), "field:pressed_at"),
    (f"{CIRC}/status", js({"v": 1, "device": "main-circ-01", "state": "asleep"}),
     "field:state"),
    (f"{CIRC}/status", js({"v": 1, "device": "main-circ-01", "state": "online",
                           "health": {"wifi_dbm": "weak"}}), "field:health.wifi_dbm"),
    (f"{CIRC}/status", js({"v": 1, "device": "main-circ-01", "state": "online",
                           "health": {"uptime_s": -1}}), "field:uptime_s"),
    (f"{CIRC}/event", js({"v": 1, "device": "main-circ-01", "event": "dance", "at": 1}),
     "field:event"),
    (f"{CIRC}/event", js({"v": 1, "device": "main-circ-01", "event": "cancel", "at": 1,
                          "alarm_id": "nope"}), "unknown_alarm"),
    (f"{CIRC}/event", js({"v": 1, "device": "main-circ-01", "event": "cancel", "at": 1}),
     "field:alarm_id"),
])
def test_the_services_rejections_have_a_reason_class(sample_site, topic, payload, expected):
    store = Store(fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True))
    # A rejection pages and publishes nothing, so no notifier or pools are needed.
    service = AlarmService(sample_site, store, notifier=None, publish=None, senders=None,
                           escalators=NO_POOL, clock=lambda: NOW)
    assert service.handle(topic, payload) is MessageOutcome.REJECTED
    [rejected] = store.devices.rejected()
    assert reason_class(rejected["reason"], topic) == expected
    assert reason_class(rejected["reason"]) == expected  # these topics fool nothing
    assert expected in REASONS


HOSTILE = "x: field 'v': y"  # a topic that looks like a field


@pytest.mark.parametrize("message, topic, expected", [
    (f"topic {HOSTILE}: message: not under 'haven/v1/dev/'", HOSTILE, "topic"),
    (f"topic {HOSTILE}: message: not under 'haven/v1/dev/'", None, "version"),  # fooled
    ("topic t: field 'weird name': must be a string, not int", "t", "field:other"),
    ("topic t: field 'ok': must be true or false, not str", "t", "field:ok"),
    ("topic t: message: something new", "t", "other"),
    ("redis is down", None, "other"),
    ("", None, "other"),
    ("topic other: message: not under 'haven/v1/dev/'", "t", "topic"),  # topic differs
])
def test_reason_class_table(message, topic, expected):
    assert reason_class(message, topic) == expected
    assert expected in REASONS

