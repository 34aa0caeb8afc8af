"""The demo announces lone-worker check-ins: in its banner, and each request as it comes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from types import SimpleNamespace

from hub.app.demo import CheckinNotes, _banner

NOW_MS = 1_780_000_000_000


def test_each_check_in_request_is_announced_once_with_how_and_by_when(sample_site,
                                                                      fake_store):
    notes = CheckinNotes(sample_site, fake_store, list(sample_site.devices), "haven")
    assert notes.poll() == []  # nothing asked yet
    fake_store.r.hset("haven:checkin:west-front-01", "requested_ms", NOW_MS)
    [line] = notes.poll()
    assert "the hub asked west-front-01 (Evening librarian, alone at Westside Branch)" in line
    assert "'haven press west-front-01' by" in line
    asked, by = re.findall(r"\d\d:\d\d:\d\d", line)
    minutes = lambda t: int(t[:2]) * 60 + int(t[3:5]) + int(t[6:]) / 60
    assert (minutes(by) - minutes(asked)) % (24 * 60) == 2  # checkin_grace_s = 120
    assert "'Lone worker missed check-in' alarm" in line
    assert notes.poll() == []  # once
    fake_store.r.hset("haven:checkin:west-front-01", "requested_ms", NOW_MS + 1_800_000)
    assert len(notes.poll()) == 1  # the next one, 30 min later


def test_the_banner_says_the_demo_will_ask_the_worn_device_to_check_in(sample_site, capsys):
    sim = SimpleNamespace(apps=dict.fromkeys(sample_site.devices), skipped=[])
    _banner(sample_site, "http://127.0.0.1:8080/", sim, "redis://127.0.0.1:1", ("pw", "tok"))
    out = capsys.readouterr().out
    assert ("west-front-01   every 30 min while Sam Lee (westside supervisor) is alone on "
            "duty at Westside Branch") in out
    assert "unanswered after 120 s,\n               a missed check-in alarm is paged" in out


def test_a_single_press_that_answers_a_check_in_says_so(sample_site, mosquitto, tmp_path):
    """The simulated wearable (real firmware, mock pins) asked to check in: `haven press`
    reports the check-in, not "no alarm raised by that pattern"."""
    import time

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from device.feedback import Signal
    from device.protocol import CMD_CHECKIN_REQUEST, Command, Topics
    from hub.app.demo import Simulator
    sim = Simulator(sample_site, mosquitto.port, tmp_path)
    hub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="hub-stand-in")
    hub.connect("127.0.0.1", mosquitto.port)
    hub.loop_start()
    try:
        sim.start()
        app = sim.apps["west-front-01"]
        assert app.connected.wait(5)
        hub.publish(Topics().cmd("west-front-01"),
                    Command(cmd=CMD_CHECKIN_REQUEST, alarm_id=None, at=0).to_json(), qos=1)
        deadline = time.monotonic() + 5
        while Signal.CHECKIN not in app.feedback.history:
            assert time.monotonic() < deadline, "the wearable was not asked"
            time.sleep(0.02)
        result = sim.press("west-front-01")
        assert result["ok"] and result["alarm_id"] is None
        assert result["note"] == "checked in: the press answered the hub's check-in request"
    finally:
        hub.loop_stop()
        hub.disconnect()
        sim.stop()


# --- issue 20: the banner and the state file ------------------------------------------

def banner(sample_site, capsys, **kw) -> str:
    sim = SimpleNamespace(apps=dict.fromkeys(sample_site.devices), skipped=[])
    _banner(sample_site, "http://127.0.0.1:8080/", sim, "redis://127.0.0.1:1",
            ("s3cret-Pw", "tok"), **kw)
    return capsys.readouterr().out


def test_the_banner_says_where_texts_go(sample_site, capsys):
    console = banner(sample_site, capsys)
    assert "printed below by the console notifier" in console and "through Twilio" not in console
    twilio = banner(sample_site, capsys, twilio=True)
    assert "go out through Twilio" in twilio and "console notifier" not in twilio


def test_the_banner_prints_the_password_alone_on_its_line(sample_site, capsys):
    out = banner(sample_site, capsys)
    [line] = [line for line in out.splitlines() if "s3cret-Pw" in line]
    assert line.split() == ["password:", "s3cret-Pw"]


def test_a_second_demo_does_not_take_the_first_ones_state_file(tmp_path):
    from hub.app.demo import claim_state_file
    state = tmp_path / "demo.json"
    assert claim_state_file(state) is None  # ours: this test process, alive
    refused = claim_state_file(state)
    assert refused and f"pid {os.getpid()}" in refused and "HAVEN_DEMO_STATE=" in refused
    assert json.loads(state.read_text()) == {"pid": os.getpid()}  # untouched


def test_a_dead_demos_state_file_is_taken(tmp_path):
    from hub.app.demo import claim_state_file
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = tmp_path / "demo.json"
    state.write_text(json.dumps({"pid": dead.pid, "control_url": "http://127.0.0.1:1"}))
    assert claim_state_file(state) is None
    assert json.loads(state.read_text()) == {"pid": os.getpid()}


def test_press_while_the_demo_starts_says_so(tmp_path, monkeypatch, capsys):
    from hub.app.demo import press
    state = tmp_path / "demo.json"
    state.write_text(json.dumps({"pid": os.getpid()}))
    monkeypatch.setenv("HAVEN_DEMO_STATE", str(state))
    assert press("main-circ-01") == 1
    assert "still starting" in capsys.readouterr().err
