"""`haven demo` and `haven press` as a new user runs them: real processes, then Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hub.app.localservices import free_port

pytestmark = pytest.mark.slow


def descendants(pid: int) -> set[int]:
    """Every live process whose parent chain leads to ``pid``."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_demo_press_shows_on_the_board_prints_the_sms_and_stops_clean(tmp_path):
    port = free_port()
    env = dict(os.environ, HAVEN_DEMO_STATE=str(tmp_path / "demo.json"), PYTHONUNBUFFERED="1")
    for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "TWILIO_FROM_NUMBER"):
        env.pop(name, None)
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        demo = subprocess.Popen([sys.executable, "-m", "hub.app.cli", "demo", "--port", str(port)],
                                stdout=sink, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 30
        while "Haven demo is running" not in out.read_text():
            assert demo.poll() is None, out.read_text()
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        assert f"http://127.0.0.1:{port}/" in out.read_text()
        # the banner's one-time link logs a browser in and lands on the board
        link = re.search(rf"http://127\.0\.0\.1:{port}/login/token/\S+", out.read_text())
        browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with browser.open(link.group(0), timeout=5) as landed:
            assert landed.url == f"http://127.0.0.1:{port}/" and landed.status == 200
        children = descendants(demo.pid)
        assert len(children) >= 4  # mosquitto, redis-server, hub, dashboard

        press = subprocess.run([sys.executable, "-m", "hub.app.cli", "press", "main-ref-01"],
                               env=env, capture_output=True, text=True, timeout=20)
        assert press.returncode == 0, press.stderr
        pressed = time.monotonic()
        alarm_id = re.search(r"assist alarm ([0-9a-f-]{36})", press.stdout).group(1)

        while True:  # the board shows the room active within 1 s
            with browser.open(f"http://127.0.0.1:{port}/api/board", timeout=2) as r:
                board = json.load(r)
            if [a["id"] for a in board["active"]] == [alarm_id]:
                break
            assert time.monotonic() - pressed < 1.0, board
            time.sleep(0.02)
        room = next(r for b in board["branches"] if b["id"] == "main"
                    for r in b["rooms"] if r["id"] == "reference")
        assert room["state"] == "assist"

        deadline = time.monotonic() + 5
        while out.read_text().count("[SMS to ") < 2:
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)
        sms = [line for line in out.read_text().splitlines() if line.startswith("[SMS to ")]
        assert all("Main Library, Reference Desk" in line and alarm_id[:8] in line
                   for line in sms)
        assert not any("Reply 1" in line for line in sms)  # nobody can reply to the console
        # responders' texts link the alarm's floor plan, which opens without a login
        plan = re.search(rf"Plan: (http://127\.0\.0\.1:{port}/p/\S+)", "\n".join(sms))
        assert plan, sms
        with urllib.request.urlopen(plan.group(1), timeout=5) as opened:
            assert opened.status == 200 and b'data-room="reference"' in opened.read()

        # resolved by its text's Ref: the supervisor's "report is due" links to the incident
        redis_url = re.search(r"--redis (redis://\S+)", out.read_text()).group(1)
        done = subprocess.run([sys.executable, "-m", "hub.app.cli", "alarm", "resolve",
                               f"{alarm_id[:8]}-1", "--by", "Dana", "--reason", "handled",
                               "--redis", redis_url], env=env, capture_output=True, text=True,
                              timeout=20)
        assert done.returncode == 0, done.stderr
        link = f"http://127.0.0.1:{port}/incidents/{alarm_id}"
        deadline = time.monotonic() + 10
        while not any("A report is due" in line and link in line
                      for line in out.read_text().splitlines()):
            assert time.monotonic() < deadline, out.read_text()
            time.sleep(0.05)

        bad = subprocess.run([sys.executable, "-m", "hub.app.cli", "press", "no-such-device"],
                             env=env, capture_output=True, text=True, timeout=20)
        assert bad.returncode == 1 and "no simulated device 'no-such-device'" in bad.stderr
    finally:
        demo.send_signal(signal.SIGINT)  # what Ctrl-C sends
        status = demo.wait(30)
    assert status == 0, out.read_text()
    assert "demo: stopped" in out.read_text()
    time.sleep(0.2)
    assert [pid for pid in children if alive(pid)] == []
    assert not (tmp_path / "demo.json").exists()


def test_press_without_a_demo_says_how_to_start_one(tmp_path):
    env = dict(os.environ, HAVEN_DEMO_STATE=str(tmp_path / "none.json"))
    result = subprocess.run([sys.executable, "-m", "hub.app.cli", "press", "main-circ-01"],
                            env=env, capture_output=True, text=True, timeout=20)
    assert result.returncode == 1 and "make demo" in result.stderr
