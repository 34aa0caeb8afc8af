"""The wire contract: every malformed message is rejected with the field and the reason."""

import json

import pytest

from device.protocol import (AlarmMessage, Command, ProtocolError, StatusMessage, Topics,
                             decode_alarm, decode_command, decode_status, new_alarm)

T = Topics()
TOPIC = T.alarm("main-circ-01")
GOOD = {"v": 1, "alarm_id": "0b6f2a7e-5c1d-4c55-9d0e-2f7f6f1c9a10", "kind": "assist",
        "device": "main-circ-01", "pressed_at": 1763840000123}


def payload(**changes):
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def test_topics_under_the_default_prefix():
    assert T.alarm("d1") == "haven/v1/dev/d1/alarm"
    assert T.status("d1") == "haven/v1/dev/d1/status"
    assert T.heartbeat("d1") == "haven/v1/dev/d1/heartbeat"
    assert T.parse("haven/v1/dev/d1/heartbeat") == ("d1", "heartbeat")
    assert T.cmd("d1") == "haven/v1/dev/d1/cmd"
    assert T.device_filter("alarm") == "haven/v1/dev/+/alarm"
    assert Topics("site7/haven").alarm("d1") == "site7/haven/dev/d1/alarm"
    assert T.parse("haven/v1/dev/d1/status") == ("d1", "status")


@pytest.mark.parametrize("prefix", ["", "/haven", "haven/", "haven/+", "a/#"])
def test_bad_prefix_is_refused(prefix):
    with pytest.raises(ProtocolError, match="topic prefix"):
        Topics(prefix)


def test_a_good_alarm_round_trips():
    alarm = decode_alarm(TOPIC, payload())
    assert alarm == AlarmMessage(device="main-circ-01", alarm_id=GOOD["alarm_id"], kind="assist",
                                 pressed_at=GOOD["pressed_at"])
    assert decode_alarm(TOPIC, alarm.to_json()) == alarm


def test_new_alarm_has_a_fresh_id_per_press_and_millisecond_time():
    a, b = new_alarm("d1", "assist", 1763840000.5), new_alarm("d1", "assist", 1763840000.5)
    assert a.alarm_id != b.alarm_id
    assert a.pressed_at == 1763840000500


@pytest.mark.parametrize("topic, raw, field, reason", [
    (TOPIC, b"{not json", None, "not valid UTF-8 JSON"),
    (TOPIC, b"\xff\xfe", None, "not valid UTF-8 JSON"),
    (TOPIC, b"[1, 2]", None, "must be a JSON object, not list"),
    (TOPIC, b"x" * 5000, None, "at most 4096"),
    (TOPIC, payload(v=...), "v", "missing"),
    (TOPIC, payload(v=2), "v", "not supported"),
    (TOPIC, payload(v=True), "v", "not supported"),
    (TOPIC, payload(alarm_id=...), "alarm_id", "missing"),
    (TOPIC, payload(alarm_id=42), "alarm_id", "must be a string, not int"),
    (TOPIC, payload(alarm_id="a/b"), "alarm_id", "not a valid id"),
    (TOPIC, payload(kind="party"), "kind", "unknown kind 'party'"),
    (TOPIC, payload(kind=None), "kind", "must be a string, not NoneType"),
    (TOPIC, payload(pressed_at="now"), "pressed_at", "must be an integer"),
    (TOPIC, payload(pressed_at=1.5), "pressed_at", "must be an integer"),
    (TOPIC, payload(pressed_at=True), "pressed_at", "must be an integer"),
    (TOPIC, payload(pressed_at=-1), "pressed_at", "negative"),
    (TOPIC, payload(device="main-ref-01"), "device", "does not match the topic's device"),
    (TOPIC, payload(device=...), "device", "missing"),
    ("haven/v1/dev/main-circ-01/status", payload(), None, "not an alarm topic"),
    ("other/v1/dev/main-circ-01/alarm", payload(), None, "not under"),
    ("haven/v1/dev/main-circ-01/alarm/extra", payload(), None, "expected"),
    ("haven/v1/dev/bad id/alarm", payload(), None, "device id 'bad id' is not valid"),
])
def test_malformed_alarms_are_rejected_naming_field_and_reason(topic, raw, field, reason):
    with pytest.raises(ProtocolError) as err:
        decode_alarm(topic, raw)
    assert err.value.field == field
    assert reason in str(err.value)
    assert topic in str(err.value)
    if field:
        assert f"field '{field}'" in str(err.value)


def test_kinds_can_be_narrowed_to_the_sites_kinds():
    with pytest.raises(ProtocolError, match="expected one of assist, emergency"):
        decode_alarm(TOPIC, payload(kind="welfare"), kinds=("assist", "emergency"))


def test_status_and_last_will():
    topic = T.status("d1")
    online = StatusMessage(device="d1", state="online", at=5, firmware="0.1.0")
    assert decode_status(topic, online.to_json()) == online
    will = StatusMessage(device="d1", state="offline")
    assert decode_status(topic, will.to_json()) == will
    with pytest.raises(ProtocolError, match="field 'state'"):
        decode_status(topic, b'{"v":1,"device":"d1","state":"asleep"}')
    with pytest.raises(ProtocolError, match="does not match"):
        decode_status(topic, StatusMessage(device="d2", state="online").to_json())


def test_commands():
    topic = T.cmd("d1")
    cmd = Command(cmd="received", alarm_id="a1", at=7)
    assert decode_command(topic, cmd.to_json()) == cmd
    with pytest.raises(ProtocolError, match="field 'cmd'"):
        decode_command(topic, b'{"v":1,"cmd":"self_destruct","alarm_id":"a1","at":7}')


def test_a_drill_confirmation_says_drill_and_an_older_one_does_not():
    """``drill`` travels only when true: the plain "received" firmware before it knew is
    byte for byte what it was, and a payload without it decodes as not a drill."""
    topic = T.cmd("d1")
    drill = Command(cmd="received", alarm_id="a1", at=7, drill=True)
    assert json.loads(drill.to_json())["drill"] is True
    assert decode_command(topic, drill.to_json()) == drill
    plain = Command(cmd="received", alarm_id="a1", at=7)
    assert plain.to_json() == b'{"v":1,"cmd":"received","at":7,"alarm_id":"a1"}'
    assert decode_command(topic, plain.to_json()).drill is False
    with pytest.raises(ProtocolError, match="field 'drill': must be true or false"):
        decode_command(topic, b'{"v":1,"cmd":"received","alarm_id":"a1","at":7,"drill":"yes"}')


def test_heartbeat_health_round_trips_and_absent_sensors_are_null():
    from device.protocol import Health
    topic = T.status("d1")
    beat = StatusMessage(device="d1", state="online", at=5, firmware="0.2.0",
                         health=Health(uptime_s=60, outbox=2, wifi_dbm=-61.0))
    decoded = decode_status(topic, beat.to_json())
    assert decoded == beat and decoded.health.cpu_temp_c is None
    assert json.loads(beat.to_json())["health"]["battery_pct"] is None
    with pytest.raises(ProtocolError, match="field 'health.wifi_dbm': must be a number"):
        decode_status(topic, b'{"v":1,"device":"d1","state":"online","health":{"wifi_dbm":"x"}}')
    with pytest.raises(ProtocolError, match=r"field 'outbox': must be an integer \(alarms"):
        decode_status(topic, b'{"v":1,"device":"d1","state":"online","health":{"outbox":1.5}}')


def test_a_heartbeat_carries_time_and_readings_and_needs_both():
    from device.protocol import Health, Heartbeat, decode_heartbeat
    topic = T.heartbeat("d1")
    beat = Heartbeat(device="d1", at=5, health=Health(uptime_s=60, outbox=0, battery_pct=88.5))
    assert decode_heartbeat(topic, beat.to_json()) == beat
    with pytest.raises(ProtocolError, match="field 'health': missing"):
        decode_heartbeat(topic, b'{"v":1,"device":"d1","at":5}')
    with pytest.raises(ProtocolError, match="field 'at': missing"):
        decode_heartbeat(topic, b'{"v":1,"device":"d1","health":{}}')
    with pytest.raises(ProtocolError, match="does not match"):
        decode_heartbeat(topic, Heartbeat(device="d2", at=5, health=Health(0, 0)).to_json())
    with pytest.raises(ProtocolError, match="heartbeat"):  # a status is not a heartbeat
        decode_heartbeat(T.status("d1"), beat.to_json())


def test_device_events():
    from device.protocol import DeviceEvent, decode_event
    topic = T.event("d1")
    cancel = DeviceEvent(device="d1", event="cancel", at=9, alarm_id="a1")
    assert decode_event(topic, cancel.to_json()) == cancel
    result = DeviceEvent(device="d1", event="selftest", at=9, ok=False, detail="broker: refused")
    assert decode_event(topic, result.to_json()) == result
    with pytest.raises(ProtocolError, match="field 'alarm_id': missing: a cancel names"):
        decode_event(topic, b'{"v":1,"device":"d1","event":"cancel","at":9}')
    with pytest.raises(ProtocolError, match="field 'event': 'dance' is not one of"):
        decode_event(topic, b'{"v":1,"device":"d1","event":"dance","at":9}')
    with pytest.raises(ProtocolError, match="does not match the topic's device"):
        decode_event(topic, DeviceEvent(device="d2", event="checkin", at=1).to_json())


def test_device_commands_need_no_alarm_id_but_alarm_commands_do():
    topic = T.cmd("d1")
    locate = Command(cmd="locate", alarm_id=None, at=3)
    assert decode_command(topic, locate.to_json()) == locate
    with pytest.raises(ProtocolError, match="field 'alarm_id': missing"):
        decode_command(topic, b'{"v":1,"cmd":"acknowledged","at":3}')
