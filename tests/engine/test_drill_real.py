"""A real emergency during a drill (issue 15, item 5): each alarm is a drill or not by
itself, decided when it is raised; anyone paged or any operator can say REAL (SMS reply,
key 9 on a call, the alarm page, ``haven alarm real``), and the next attempt, due at once,
pages with the real policy, police included. Nothing else turns a drill alarm real."""

from __future__ import annotations

import time

import pytest

from dashboard import create_app
from device.protocol import Topics, decode_command, new_alarm
from hub.app import cli
from hub.core.drill import MAX_DRILL_MIN, who_is_paged
from hub.incidents.store import timeline_summary
from hub.core.lifecycle import AlarmEvent, IllegalTransition
from hub.core.model import Alarm
from hub.engine.service import TICK_S, AlarmService
from tests.dashboard_login import logged_in_client
from tests.engine.test_escalation import T0, Clock, InlinePool, Recorder, phones, rig  # noqa: F401
from tests.dashboard.test_twilio_hooks import CIRC, TOKEN, post, reply, twiml, said

DRILL_MINUTES = 30


def start_drill(store, branch="main", minutes=DRILL_MINUTES, at=T0):
    store.branches.set_branch_switches(branch, by="Dana", now_ms=int(at * 1000),
                                       drill_until_ms=int((at + minutes * 60) * 1000))


def press(service, device="main-circ-01", kind="emergency"):
    msg = new_alarm(device, kind, service.clock())
    service.handle(Topics().alarm(device), msg.to_json())
    return msg.alarm_id


def paged(notifier):
    return {to for _, to, _ in notifier.sent}


@pytest.fixture
def drilling(rig, sample_site):  # noqa: F811
    """An emergency pressed during a drill at main (staffed by switch), paged as a drill:
    no police. The hub's clock starts at the wall clock, as the dashboard's does."""
    service, clock, notifier, store = rig
    clock.now = time.time()
    store.branches.set_branch_switches("main", by="Dana", now_ms=int(clock.now * 1000),
                                       lone_worker=False)
    start_drill(store, at=clock.now)
    alarm_id = press(service)
    police = phones(sample_site, "Police dispatch")
    assert police and notifier.sent and not police & paged(notifier)
    assert store.get_alarm(alarm_id).drill
    notifier.sent.clear()
    return service, clock, notifier, store, alarm_id, police


def run_hub_until(service, clock, notifier, wanted, *, seconds, tick=TICK_S):
    """Run the hub's timer the way its thread does (a tick every ``tick`` s of the injected
    clock, TICK_S by default) until ``wanted`` were paged; returns how long that took in
    hub seconds, or ``None`` if they were not paged within ``seconds``."""
    start = clock.now
    while clock.now - start <= seconds:
        service.run_due()
        if wanted <= paged(notifier):
            return clock.now - start
        clock.now += tick
    return None


# --- the hub: drill-ness is the alarm's own, REAL pages police at once --------------------

def test_drill_alarms_never_reach_police_through_the_drill_and_after_it(drilling):
    service, clock, notifier, store, alarm_id, police = drilling
    # every attempt for two hours: through the drill's 30 min, and long after it ran out
    assert run_hub_until(service, clock, notifier, police, seconds=2 * 3600, tick=5) is None
    assert len(notifier.sent) > 100  # it did keep escalating, to the others
    assert all(text.startswith(("DRILL", "This is a drill")) for _, _, text in notifier.sent)
    assert store.get_alarm(alarm_id).drill


def test_an_acknowledged_drill_alarm_reaches_no_police_either(drilling):
    service, clock, notifier, store, alarm_id, police = drilling
    store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana", now_ms=int(clock.now * 1000))
    assert run_hub_until(service, clock, notifier, police, seconds=600, tick=5) is None
    assert notifier.sent == []


@pytest.mark.parametrize("acknowledged_first", [False, True], ids=["raised", "acknowledged"])
def test_real_pages_police_at_the_next_tick_with_the_real_text(drilling, acknowledged_first):
    service, clock, notifier, store, alarm_id, police = drilling
    clock.now += 5  # 5 s into a 60 s wait: the next step is 55 s away
    if acknowledged_first:  # a responder came, and found it real
        store.transition(alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana",
                         now_ms=int(clock.now * 1000))
        clock.now += 1
    said_ms = int(clock.now * 1000)
    store.make_real(alarm_id, by="Dana", via="cli", now_ms=said_ms)

    took = run_hub_until(service, clock, notifier, police, seconds=60)
    assert took is not None and took <= TICK_S  # the first tick after REAL, not a step later
    to_police = [text for _, to, text in notifier.sent if to in police]
    assert to_police and not any("drill" in text.lower() for _, _, text in notifier.sent)
    alarm = store.get_alarm(alarm_id)
    assert not alarm.drill and (alarm.real_by, alarm.real_at_ms) == ("Dana", said_ms)
    real = [e for e in store.timeline(alarm_id) if e["event"] == "real"]
    assert [(e["by"], e["via"]) for e in real] == [("Dana", "cli")]
    escalations = [e for e in store.timeline(alarm_id) if e["event"] == "escalation"]
    assert escalations[-1]["branch_state"] != "drill"
    if acknowledged_first:  # one attempt for the police, then quiet again
        notifier.sent.clear()
        clock.now += 3600
        service.run_due()
        assert notifier.sent == [] and store.escalation_due(alarm_id) is None


def test_a_drill_switched_on_later_leaves_a_real_alarm_real(rig, sample_site):
    service, clock, notifier, store = rig
    alarm_id = press(service)  # no drill yet
    start_drill(store, at=clock.now + 1)
    notifier.sent.clear()
    clock.now += 60
    service.run_due()
    assert phones(sample_site, "Police dispatch") <= paged(notifier)
    assert not store.get_alarm(alarm_id).drill


@pytest.mark.parametrize("kind, told", [
    ("emergency", "Police and everyone on its list are being paged now."),
    ("assist", "Everyone on its list is being paged now, police too if the branch has a "
               "lone worker."),
    ("welfare", "Everyone on its list is being paged now (its policy does not page police)."),
])
def test_whoever_says_real_is_told_whether_police_are_paged(sample_site, kind, told):
    alarm = Alarm(id="a1", kind=kind, device="main-circ-01", branch="main",
                  room="circulation", pressed_at_ms=0, received_at_ms=0, drill=True)
    assert who_is_paged(sample_site, alarm) == told


def test_real_twice_or_on_a_real_or_closed_alarm_is_refused_with_the_reason(drilling):
    service, clock, notifier, store, alarm_id, police = drilling
    now = int(clock.now * 1000)
    store.make_real(alarm_id, by="Dana", via="dashboard", now_ms=now)
    with pytest.raises(IllegalTransition, match="not a drill"):
        store.make_real(alarm_id, by="Sam", via="dashboard", now_ms=now)
    store.transition(alarm_id, AlarmEvent.RESOLVE, by="Dana", now_ms=now, reason="police came")
    with pytest.raises(IllegalTransition, match="raise a new alarm"):
        store.make_real(alarm_id, by="Sam", via="cli", now_ms=now)
    with pytest.raises(KeyError):
        store.make_real("no-such-alarm", by="Sam", via="cli", now_ms=now)


# --- every way of saying REAL: SMS, key 9, the alarm page, the CLI ------------------------

@pytest.fixture
def hooks_client(sample_site, rig):  # noqa: F811
    service, clock, notifier, store = rig
    return create_app(sample_site, store, twilio_auth_token=TOKEN).test_client()


def test_a_drill_text_says_how_to_make_it_real(rig, sample_site):  # noqa: F811
    _, clock, notifier, store = rig
    pool = InlinePool()  # replies reach the dashboard: the service has its public URL
    service = AlarmService(sample_site, store, notifier, lambda t, p: None, pool,
                           escalators=pool, clock=clock, public_url="https://haven.example.org")
    start_drill(store)
    press(service)
    texts = [text for ch, _, text in notifier.sent if ch == "sms"]
    assert texts and all(t.endswith("Reply REAL if this is not a drill.") for t in texts)
    notifier.sent.clear()
    store.branches.set_branch_switches("main", by="Dana", now_ms=int(clock.now * 1000),
                                       drill_until_ms=None)
    press(service, device="main-ref-01")
    assert not any("REAL" in text for _, _, text in notifier.sent)  # real texts do not


def say_real(way, client, store, alarm_id, sample_site):
    """Say REAL as a paged person or an operator would; returns what they were told."""
    if way == "sms":
        return reply(post(client, "/twilio/sms", {"From": CIRC[0], "Body": " Real. "}))
    if way == "call":
        return said(twiml(post(client, f"/twilio/voice/gather?alarm={alarm_id}",
                               {"To": CIRC[0], "Digits": "9"})))
    if way == "dashboard":
        web = logged_in_client(create_app(sample_site, store), store, "ana")
        assert b">This is real</button>" in web.get(f"/alarms/{alarm_id}").data
        answer = web.post(f"/alarms/{alarm_id}/real", follow_redirects=True)
        assert b">This is real</button>" not in answer.data  # it is real now
        return answer.data.decode()
    raise AssertionError(way)


@pytest.mark.parametrize("way, by, told", [
    ("sms", CIRC[1], "REAL: EMERGENCY at Main Library, Circulation Desk is no longer a "
                     "drill. Police and everyone on its list are being paged now."),
    ("call", CIRC[1], "This is no longer a drill. Police and everyone on its list are being "
                      "paged now."),
    ("dashboard", "ana", "Alarm made REAL by ana. Police and everyone on its list are being "
                         "paged now."),
])
def test_each_way_of_saying_real_pages_police_at_the_next_tick(drilling, hooks_client,
                                                               sample_site, way, by, told):
    service, clock, notifier, store, alarm_id, police = drilling
    clock.now += 5
    answer = say_real(way, hooks_client, store, alarm_id, sample_site)
    assert told in answer
    if way == "dashboard":  # and its timeline says so
        assert "Made REAL: not a drill" in answer and "via dashboard" in answer
    alarm = store.get_alarm(alarm_id)
    assert not alarm.drill and alarm.real_by == by
    took = run_hub_until(service, clock, notifier, police, seconds=60)
    assert took is not None and took <= TICK_S


def test_the_cli_makes_a_drill_alarm_real_on_a_real_redis(store, redis_service, sample_site,
                                                          capsys):
    """Also runs the raise script's drill rule on a real redis-server (not fakeredis)."""
    clock, notifier, pool = Clock(time.time()), Recorder(), InlinePool()
    service = AlarmService(sample_site, store, notifier, lambda t, p: None, pool,
                           escalators=pool, clock=clock)
    start_drill(store, at=clock.now)
    alarm_id = press(service)
    police = phones(sample_site, "Police dispatch")
    assert store.get_alarm(alarm_id).drill and not police & paged(notifier)
    assert [e.get("drill") for e in store.timeline(alarm_id) if e["event"] == "raised"] == ["1"]

    code = cli.main(["alarm", "--redis", redis_service.url, "real", alarm_id, "--by", "Ana"])

    assert code == 0 and "made REAL by Ana" in capsys.readouterr().out
    clock.now += 1
    assert run_hub_until(service, clock, notifier, police, seconds=60) == 0
    assert cli.main(["alarm", "--redis", redis_service.url, "real", alarm_id,
                     "--by", "Ana"]) == 1
    assert "is not a drill" in capsys.readouterr().err


# --- the device that pressed shows it ------------------------------------------------------

def test_the_device_is_told_drill_on_receipt_and_received_again_on_real(sample_site,
                                                                         fake_store):
    published = []
    pool = InlinePool()
    service = AlarmService(sample_site, fake_store, Recorder(),
                           lambda topic, payload: published.append((topic, payload)), pool,
                           escalators=pool, clock=Clock())
    start_drill(fake_store)
    # the worker's first alarm at main (branch state unseen), then one planned ahead, then
    # one at westside, where no drill runs
    ids = [press(service), press(service, device="main-ref-01"),
           press(service, device="west-front-01")]
    told = [decode_command(topic, payload) for topic, payload in published]
    assert [(c.cmd, c.alarm_id, c.drill) for c in told] == [
        ("received", ids[0], True), ("received", ids[1], True), ("received", ids[2], False)]
    assert [fake_store.get_alarm(i).drill for i in ids] == [True, True, False]

    fake_store.make_real(ids[1], by="Dana", via="dashboard", now_ms=int(T0 * 1000) + 5000)
    [(_, fields)] = fake_store.devices.read_device_commands("t", block_ms=5)
    assert fields == {"device": "main-ref-01", "cmd": "received", "alarm_id": ids[1]}


# --- the record follows REAL --------------------------------------------------------------

@pytest.mark.parametrize("made_real", [False, True], ids=["drill", "made-real"])
def test_the_incident_and_the_all_clear_follow_real(drilling, made_real):
    service, clock, notifier, store, alarm_id, police = drilling
    now = int(clock.now * 1000)
    if made_real:
        store.make_real(alarm_id, by="Dana", via="dashboard", now_ms=now)
        run_hub_until(service, clock, notifier, police, seconds=1)
    store.transition(alarm_id, AlarmEvent.RESOLVE, by="Dana", now_ms=now + 1000,
                     reason="handled")
    notifier.sent.clear()
    assert service.send_all_clear(alarm_id) > 0
    texts = [text for _, _, text in notifier.sent]
    assert texts and all(t.startswith("DRILL ") is not made_real for t in texts)
    drill, _ = timeline_summary(store.timeline(alarm_id))
    assert drill is not made_real  # a drill needs no report; an alarm made real does


@pytest.mark.parametrize("minutes", [0, -5, MAX_DRILL_MIN + 1, 100_000])
def test_the_cli_refuses_a_drill_that_would_not_end_soon(minutes, capsys):
    """Checked before any connection: the Redis URL here leads nowhere."""
    code = cli.main(["branch", "--redis", "redis://127.0.0.1:1", "drill", "main", "on",
                     "--minutes", str(minutes), "--by", "Dana"])
    assert code == 1
    assert f"--minutes {minutes}: give 1 to {MAX_DRILL_MIN}" in capsys.readouterr().err
