"""Colleagues' alerts, fast: the wire contract, the site file's device contact, who is
alerted (pure), and the hub's answer and clear on a fakeredis store."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from device.protocol import (CMD_ALERT, CMD_ALERT_CLEAR, Command, ProtocolError, Topics,
                             decode_command, decode_event, supports_alerts)
from hub.config.site import parse_site
from hub.core.colleagues import devices_to_alert
from hub.core.lifecycle import AlarmEvent
from hub.core.model import Alarm, AlarmState
from hub.core.schedule import Override
from hub.engine.colleagues import Colleagues
from hub.errors import ConfigError
from tests.app.test_colleagues_e2e import SITE

NOW = 1_765_000_000_000
TOPIC = Topics().cmd("main-b")
ONLINE = {"state": "online", "firmware": "0.5.0"}


@pytest.fixture
def site():
    return parse_site(SITE, "site.toml")


def alarm(kind="assist", device="main-a", branch="main", room="circulation", **kw) -> Alarm:
    return Alarm(id=f"alarm-{device}", kind=kind, device=device, branch=branch, room=room,
                 pressed_at_ms=NOW, received_at_ms=NOW, **kw)


def everyone_online(site):
    return {d: dict(ONLINE) for d in site.devices}


# --- the wire contract ----------------------------------------------------------------

def test_alert_and_its_clear_travel_with_their_fields():
    alert = Command(CMD_ALERT, "a-1", NOW, kind="emergency", room="circulation", drill=True)
    assert decode_command(TOPIC, alert.to_json()) == alert
    clear = Command(CMD_ALERT_CLEAR, "a-1", NOW, reason="acknowledged")
    assert decode_command(TOPIC, clear.to_json()) == clear
    # the fields older commands never carry stay off the wire
    assert set(json.loads(Command("received", "a-1", NOW).to_json())) == {"v", "cmd", "at",
                                                                         "alarm_id"}


@pytest.mark.parametrize("obj, field", [
    ({"cmd": "alert", "alarm_id": "a-1", "room": "circulation"}, "kind"),
    ({"cmd": "alert", "alarm_id": "a-1", "kind": "assist"}, "room"),
    ({"cmd": "alert", "kind": "assist", "room": "circulation"}, "alarm_id"),
    ({"cmd": "alert_clear", "alarm_id": "a-1", "reason": "bored"}, "reason"),
])
def test_a_bad_alert_names_its_field(obj, field):
    with pytest.raises(ProtocolError) as err:
        decode_command(TOPIC, json.dumps({"v": 1, "at": NOW, **obj}).encode())
    assert err.value.field == field


def test_an_answer_names_its_alarm():
    topic = Topics().event("main-b")
    with pytest.raises(ProtocolError, match="alarm_id"):
        decode_event(topic, json.dumps({"v": 1, "device": "main-b", "event": "responding",
                                        "at": NOW}).encode())


@pytest.mark.parametrize("firmware, ok", [("0.5.0", True), ("0.10.1", True), ("1.0", True),
                                          ("0.5.0-rc1", True), ("0.4.0", False), ("0.4", False),
                                          (None, False), ("", False), ("garbage", False)])
def test_only_firmware_that_shows_alerts_is_sent_them(firmware, ok):
    assert supports_alerts(firmware) is ok


# --- the site file: who answers from a device --------------------------------------------

def test_a_device_contact_is_a_phone_or_name_of_its_branch(site):
    assert site.devices["main-a"].contact == "+12065550201"  # written as a name
    assert site.devices["main-b"].contact == "+12065550202"  # written as a phone


@pytest.mark.parametrize("written", ["Nobody Here", "+12065550204"])  # west's Dee at main
def test_a_device_contact_that_is_not_a_contact_of_its_branch_is_refused(written):
    text = SITE.replace('contact = "Cat Moss"', f'contact = "{written}"')
    with pytest.raises(ConfigError) as err:
        parse_site(text, "site.toml")
    (problem,) = [str(p) for p in err.value.problems]
    line = next(n for n, t in enumerate(text.splitlines(), 1) if written in t)
    assert problem.startswith(f"site.toml:{line}: device[2].contact: '{written}' is not")
    assert "'Ana Diaz'" in problem and "add" not in problem.split(";")[0]


# --- who is alerted (pure) -----------------------------------------------------------

def test_every_on_duty_colleague_at_the_branch_but_the_presser(site):
    targets = devices_to_alert(site, alarm(), everyone_online(site), [], NOW)
    assert [(t.device, t.contact.name) for t in targets] == [("main-b", "Ben Ortiz"),
                                                             ("main-c", "Cat Moss")]
    west = devices_to_alert(site, alarm(device="west-d", branch="west", room="front"),
                            everyone_online(site), [], NOW)
    assert [t.device for t in west] == ["west-e"]


@pytest.mark.parametrize("kind", ["safe_room", "missed_checkin", "welfare", "test"])
def test_only_assist_and_emergency_alert(site, kind):
    assert devices_to_alert(site, alarm(kind=kind), everyone_online(site), [], NOW) == ()


@pytest.mark.parametrize("status", [{"state": "offline", "firmware": "0.5.0"},
                                    {"state": "online", "firmware": "0.4.0"},
                                    {"state": "online"}, {}])
def test_offline_or_old_firmware_is_never_asked(site, status):
    statuses = {**everyone_online(site), "main-b": status}
    assert [t.device for t in devices_to_alert(site, alarm(), statuses, [], NOW)] == ["main-c"]


def test_a_contact_off_duty_is_an_empty_room(site):
    off = [Override("+12065550203", "main", False, NOW + 60_000)]
    assert [t.device for t in devices_to_alert(site, alarm(), everyone_online(site), off,
                                               NOW)] == ["main-b"]
    over = [Override("+12065550203", "main", False, NOW - 1)]  # ran out: on duty
    assert len(devices_to_alert(site, alarm(), everyone_online(site), over, NOW)) == 2


def test_no_alert_for_the_pressers_other_device_or_a_safe_room_door(site):
    extra = SITE + """
[[device]]
id = "main-a-desk"
branch = "main"
room = "circulation"
type = "wall"
contact = "Ana Diaz"

[[device]]
id = "main-door"
branch = "main"
room = "reference"
type = "safe_room"
contact = "Ben Ortiz"
"""
    site = parse_site(extra, "site.toml")
    targets = devices_to_alert(site, alarm(), everyone_online(site), [], NOW)
    assert [t.device for t in targets] == ["main-b", "main-c"]


# --- the hub's edge on a store ------------------------------------------------------

@pytest.fixture
def part(site, fake_store) -> Colleagues:
    """The hub's part on fakeredis, its clock at NOW."""
    return Colleagues(site, fake_store, clock=lambda: NOW / 1000)


def commands(store) -> list[dict[str, str]]:
    return [fields for _, fields in store.devices.read_device_commands("t", 0)]


def test_alerts_are_queued_with_kind_room_and_drill_and_recorded(site, fake_store, part):
    a = alarm(kind="emergency", drill=True)
    fake_store.raise_alarm(a)
    fake_store.devices.set_device_statuses([(d, "online", NOW, "0.5.0", {})
                                            for d in site.devices])
    part.alert(a, [])
    assert commands(fake_store) == [
        {"device": d, "cmd": "alert", "alarm_id": a.id, "kind": "emergency",
         "room": "circulation", "drill": "1"} for d in ("main-b", "main-c")]
    alerted = [e for e in fake_store.timeline(a.id) if e["event"] == "alerted"]
    assert [(e["device"], e["to"], e["contact"]) for e in alerted] == [
        ("main-b", "+12065550202", "Ben Ortiz"), ("main-c", "+12065550203", "Cat Moss")]


def test_the_first_answer_acknowledges_as_the_holder_a_later_one_joins(site, fake_store, part):
    a = alarm()
    fake_store.raise_alarm(a)
    assert part.answer("main-b", a.id, NOW + 900) is None
    stored = fake_store.get_alarm(a.id)
    assert stored.state is AlarmState.ACKNOWLEDGED and stored.acknowledged_by == "Ben Ortiz"
    assert commands(fake_store) == [{"device": "main-a", "cmd": "acknowledged",
                                     "alarm_id": a.id}]  # help is coming, to the presser
    assert part.answer("main-c", a.id, NOW + 950) is None
    assert fake_store.get_alarm(a.id).acknowledged_by == "Ben Ortiz"
    assert commands(fake_store) == [{"device": "main-c", "cmd": "alert_clear",
                                     "alarm_id": a.id, "reason": "answered"}]
    responded = [(e["device"], e["by"]) for e in fake_store.timeline(a.id)
                 if e["event"] == "responded"]
    assert responded == [("main-b", "Ben Ortiz"), ("main-c", "Cat Moss")]


def test_an_answer_to_another_branchs_or_an_ended_alarm(site, fake_store, part):
    west = alarm(device="west-d", branch="west", room="front")
    fake_store.raise_alarm(west)
    assert "not an alarm of branch 'main'" in part.answer("main-b", west.id, NOW)
    assert "not an alarm" in part.answer("main-b", "no-such-alarm", NOW)
    a = alarm()
    fake_store.raise_alarm(a)
    fake_store.transition(a.id, AlarmEvent.RESOLVE, by="op", now_ms=NOW, reason="fine")
    commands(fake_store)
    assert part.answer("main-b", a.id, NOW) is None
    assert commands(fake_store) == [{"device": "main-b", "cmd": "alert_clear",
                                     "alarm_id": a.id, "reason": "closed"}]
    assert fake_store.get_alarm(a.id).state is AlarmState.RESOLVED


def test_an_answer_from_a_device_with_no_contact_names_the_fix(site, fake_store):
    site = replace(site, devices={**site.devices,
                                  "main-b": replace(site.devices["main-b"], contact=None)})
    part = Colleagues(site, fake_store)
    a = alarm()
    fake_store.raise_alarm(a)
    assert "add contact = " in part.answer("main-b", a.id, NOW)
    assert fake_store.get_alarm(a.id).state is AlarmState.RAISED


def test_clears_follow_the_acknowledgement_or_the_end(site, fake_store, part):
    fake_store.devices.set_device_statuses([(d, "online", NOW, "0.5.0", {})
                                            for d in site.devices])
    a, b = alarm(), alarm(device="main-c", room="children")
    for each in (a, b):
        fake_store.raise_alarm(each)
        part.alert(each, [])
    commands(fake_store)
    part.answer("main-b", a.id, NOW)
    assert part.command_forwarded({"device": "main-a", "cmd": "acknowledged",
                                   "alarm_id": a.id}) == 2
    clears = commands(fake_store)[1:]
    assert {c["device"]: c["reason"] for c in clears} == {"main-b": "answered",
                                                          "main-c": "acknowledged"}
    fake_store.transition(a.id, AlarmEvent.RESOLVE, by="op", now_ms=NOW, reason="ok")
    assert part.command_forwarded({"cmd": "resolved", "alarm_id": a.id}) == 0
    # nobody acknowledged b: its end clears its alerts
    fake_store.transition(b.id, AlarmEvent.CANCEL_OPERATOR, by="op", now_ms=NOW, reason="x")
    commands(fake_store)
    assert part.command_forwarded({"cmd": "resolved", "alarm_id": b.id}) == 2
    assert {c["device"]: c["reason"] for c in commands(fake_store)} == {"main-a": "closed",
                                                                       "main-b": "closed"}
    assert part.command_forwarded({"cmd": "alert", "alarm_id": b.id}) == 0


# --- the benchmark's own pieces (bench/colleague_alert_bench.py) -----------------------

def test_the_benchmark_site_alerts_both_colleagues_and_reads_rises_from_the_pin(pins):
    import time

    from bench.colleague_alert_bench import SITE as BENCH_SITE, first_rise
    from gpiozero import DigitalOutputDevice
    site = parse_site(BENCH_SITE, "bench")
    a = alarm(device="bench-a")
    assert [t.device for t in devices_to_alert(site, a, everyone_online(site), [], NOW)] == [
        "bench-b", "bench-c"]
    motor = DigitalOutputDevice(23, pin_factory=pins)
    motor.pin.clear_states()
    cleared = time.monotonic()
    assert first_rise(motor.pin, cleared) is None
    motor.off()
    motor.on()
    on = time.monotonic()
    assert cleared <= first_rise(motor.pin, cleared) <= on + 0.001
    motor.close()


def test_an_alarms_colleagues_are_alerted_once_whoever_asks_again(site, fake_store, part):
    a = alarm(kind="emergency")
    fake_store.raise_alarm(a)
    fake_store.devices.set_device_statuses([(d, "online", NOW, "0.5.0", {})
                                            for d in site.devices])
    assert [t.device for t in part.alert(a, [])] == ["main-b", "main-c"]
    assert part.alert(a, []) == ()  # another worker, or the intake after a re-run
    assert len(commands(fake_store)) == 2
    assert len([e for e in fake_store.timeline(a.id) if e["event"] == "alerted"]) == 2


def test_a_worker_that_died_after_the_raise_leaves_the_alerts_to_the_one_that_reruns_it(
        site, fake_store):
    """The intake stored and leased the alarm, then its worker died before alerting the
    colleagues; when attempt 0's lease runs out, the worker that runs it again pages and
    alerts them, once."""
    from tests.engine.test_escalation import Clock, InlinePool, Recorder
    from hub.engine.pager import LEASE_MS
    from hub.engine.service import AlarmService
    clock, pool = Clock(NOW / 1000), InlinePool()
    service = AlarmService(site, fake_store, Recorder(), lambda t, p: None, pool,
                           escalators=pool, clock=clock)
    fake_store.devices.set_device_statuses([(d, "online", NOW, "0.5.0", {})
                                            for d in site.devices])
    a = alarm(kind="emergency")
    fake_store.raise_leased(a, escalate=True, lease_ms=LEASE_MS)  # ... and the worker died
    queued = lambda: [(c["device"], c["cmd"])  # noqa: E731 - read, never waiting
                      for _, c in fake_store.r.xrange(fake_store.key("device-commands"))]
    assert queued() == []
    clock.now = (NOW + LEASE_MS + 1) / 1000
    service.run_due()
    assert queued() == [("main-b", "alert"), ("main-c", "alert")]
    clock.now += 3600  # every later attempt runs too: none alerts again
    service.run_due()
    assert len([e for e in fake_store.timeline(a.id) if e["event"] == "alerted"]) == 2
