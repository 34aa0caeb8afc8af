"""``haven demo``: a whole Haven on this machine, and ``haven press`` to drive it.

The demo starts, in a temp dir, private mosquitto and redis-server instances on
free loopback ports, a hub worker and the dashboard as child processes, and one
simulated device per device of the site config: the real firmware
(:class:`device.firmware.DeviceApp`) on gpiozero mock pins. A small control
server on loopback lets ``haven press`` and the dashboard's demo buttons push
a simulated button. Ctrl-C (or SIGTERM) stops everything in order; children
also die with the demo if it is killed outright.

SMS go to the console notifier (printed here) unless TWILIO_* credentials are
set in the environment; the banner says which. The hub gets the demo's dashboard URL as
``HAVEN_DASHBOARD_URL`` (unless one is set), so texts that link to the dashboard (a
supervisor's "report is due") link to this one. Not as ``HAVEN_PUBLIC_URL``: Twilio
cannot call back a loopback address, and texts would invite replies nobody can send.

One demo per state file (``HAVEN_DEMO_STATE``, default per user): a second demo
refuses to start while the first runs, rather than taking over its presses; give it
a state file of its own to run both.

Lone-worker check-ins run in the demo as in production (while a branch has one
person on duty, its worn devices are asked to check in; unanswered, a
``missed_checkin`` alarm is raised and paged): the banner says so, and
:class:`CheckinNotes` prints each request as the hub makes it, with the command
that answers it and the time by which it must. An operator trying Haven sees a
real safety path working instead of a surprise alarm two minutes in, and the demo
stays the production flow (no switch that exists only for demos).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import redis

from device.signals import SignalPipe
from device.config import (DOOR_PATTERNS, WEARABLE_PATTERNS, BrokerConfig, DeviceConfig,
                           InputConfig)
from device.protocol import DEFAULT_PREFIX

from hub.core.escalation import SHIFT_ROLES
from hub.config.settings import demo_state_file, twilio_from_env
from hub.app.localservices import LocalService, free_port, spawn, start_mosquitto, start_redis
from hub.config.site import Site, load_site
from hub.store.alarms import Store

SAMPLE_SITE = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "site.toml"
#: Seconds a press waits for the hub's "received" confirmation.
CONFIRM_TIMEOUT_S = 5.0
#: BCM pins handed to simulated devices (a mock Pi has GPIO0-27).
FIRST_PIN, LAST_PIN = 2, 27


#: Press patterns of the simulated devices, by the site's device type.
DEMO_PATTERNS = {
    "wall": {"press": "assist", "hold 2s": "emergency"},
    "wearable": dict(WEARABLE_PATTERNS),
    "safe_room": dict(DOOR_PATTERNS),
}


class Simulator:
    """The site's devices running the real firmware on mock pins, outboxes in ``workdir``."""

    def __init__(self, site: Site, broker_port: int, workdir: Path,
                 prefix: str = DEFAULT_PREFIX):
        from gpiozero.pins.mock import MockFactory

        from device.firmware import DeviceApp
        self.factory = MockFactory()
        self.apps: dict[str, DeviceApp] = {}
        self.pins: dict[str, int] = {}
        self.worn: dict[str, bool] = {}
        self._changed = threading.Condition()
        self._seen: dict[tuple[str, str], float] = {}  # (alarm id, event) -> time.monotonic()
        self._alarms: dict[str, list[str]] = {}        # device id -> its alarm ids, in order
        self._answers: dict[str, list[str]] = {}       # device id -> alerts it answered
        for pin, device in zip(range(FIRST_PIN, LAST_PIN + 1), site.devices.values()):
            role = "door_contact" if device.type == "safe_room" else "button"
            config = DeviceConfig(
                device_id=device.id,
                broker=BrokerConfig(host="127.0.0.1", port=broker_port, topic_prefix=prefix),
                inputs=(InputConfig(pin, role, tuple(DEMO_PATTERNS[device.type].items())),),
                outbox=str(workdir / "outbox" / f"{device.id}.sqlite3"))
            self.apps[device.id] = DeviceApp(
                config, pin_factory=self.factory,
                on_event=lambda event, alarm_id, d=device.id: self._on_event(d, event, alarm_id))
            self.pins[device.id] = pin
            self._alarms[device.id] = []
            # a single press of a worn device is a test press, or a check-in while one is asked
            self.worn[device.id] = device.type == "wearable"
        self.skipped = [d for d in site.devices if d not in self.apps]

    def _on_event(self, device_id: str, event: str, alarm_id: str) -> None:
        with self._changed:
            if event == "sending":
                self._alarms[device_id].append(alarm_id)
            elif event == "responding":  # answered a colleague's alert (hub.colleagues)
                self._answers.setdefault(device_id, []).append(alarm_id)
            self._seen.setdefault((alarm_id, event), time.monotonic())
            self._changed.notify_all()

    def start(self) -> None:
        for app in self.apps.values():
            app.start()

    def stop(self) -> None:
        threads = [threading.Thread(target=app.stop) for app in self.apps.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        self.factory.close()

    def press(self, device_id: str, *, hold: bool = False, times: int = 1,
              door: str | None = None) -> dict:
        """Drive the device's input like a person would, then wait for the hub to confirm
        the alarm it raised (if its pattern raises one)."""
        app = self.apps.get(device_id)
        if app is None:
            return {"ok": False, "error": f"no simulated device {device_id!r}; "
                                          f"devices: {', '.join(self.apps)}"}
        is_door = app.config.inputs[0].role == "door_contact"
        if is_door != (door is not None):
            return {"ok": False, "error": f"{device_id} is a "
                    f"{'door contact: use --door close|open' if is_door else 'button: press it'}"}
        with self._changed:
            before = len(self._alarms[device_id])
            answers = len(self._answers.get(device_id, []))
        pin = self.factory.pin(self.pins[device_id])
        if door == "close":
            pin.drive_low()
        elif door == "open":
            pin.drive_high()
        else:
            for _ in range(times):
                pin.drive_low()
                time.sleep(2.3 if hold else 0.08)
                pin.drive_high()
                time.sleep(0.12)
        deadline = time.monotonic() + 2.5 + CONFIRM_TIMEOUT_S  # press windows, then the hub
        with self._changed:
            while len(self._alarms[device_id]) == before:
                if time.monotonic() > deadline - CONFIRM_TIMEOUT_S:
                    answered = self.worn.get(device_id) and times == 1 and not hold
                    note = "checked in: the press answered the hub's check-in request" \
                        if answered else "no alarm raised by that pattern"
                    if len(self._answers.get(device_id, [])) > answers:
                        note = (f"answered a colleague's alert: I'm responding (alarm "
                                f"{self._answers[device_id][-1]})")
                    return {"ok": True, "alarm_id": None, "device": device_id, "note": note}
                self._changed.wait(0.05)
            alarm_id = self._alarms[device_id][before]
            while (alarm_id, "received") not in self._seen:
                if time.monotonic() > deadline:
                    return {"ok": False, "alarm_id": alarm_id,
                            "error": f"the hub did not confirm within {CONFIRM_TIMEOUT_S:.0f} s"}
                self._changed.wait(0.05)
            sent, received = self._seen[(alarm_id, "sending")], self._seen[(alarm_id, "received")]
        kind = app.tracks[alarm_id].kind
        return {"ok": True, "alarm_id": alarm_id, "kind": kind, "device": device_id,
                "confirmed_ms": round((received - sent) * 1000, 1)}


def _control_server(sim: Simulator) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 2 or parts[0] != "press":
                return self._reply(404, {"ok": False, "error": "POST /press/<device_id>"})
            query = parse_qs(url.query)
            hold = query.get("hold", ["0"])[0] in ("1", "true")
            door = query.get("door", [None])[0]
            try:
                times = int(query.get("times", ["1"])[0])
            except ValueError:
                times = 0
            if not 1 <= times <= 10 or door not in (None, "close", "open"):
                return self._reply(400, {"ok": False, "error": "times must be 1-10, "
                                                               "door close or open"})
            result = sim.press(parts[1], hold=hold, times=times, door=door)
            if result["ok"] and result["alarm_id"]:
                print(f"demo: {parts[1]} -> {result['kind']} alarm {result['alarm_id'][:8]}: "
                      f"the hub confirmed it {result['confirmed_ms']} ms after the device "
                      "sent it", flush=True)
            self._reply(200 if result["ok"] else 409, result)

        def _reply(self, status: int, obj: dict) -> None:
            body = json.dumps(obj).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet: the demo prints its own line per press
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    return server


def _port_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the dashboard exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"the dashboard did not answer at {url} within {timeout:.0f} s")


def _wait_devices_seen(store: Store, sim: Simulator, hub: subprocess.Popen,
                       timeout: float = 15.0) -> None:
    """Ready when the hub has stored every simulated device's online status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hub.poll() is not None:
            raise RuntimeError(f"the hub exited with {hub.returncode}")
        if all(store.devices.device_status(d).get("state") == "online" for d in sim.apps):
            return
        time.sleep(0.05)
    missing = [d for d in sim.apps if store.devices.device_status(d).get("state") != "online"]
    raise RuntimeError(f"the hub did not report devices online within {timeout:.0f} s: "
                       f"{', '.join(missing)}")


def _haven_command() -> str:
    exe = Path(sys.argv[0]).resolve()
    if exe.name == "haven":
        try:
            return str(exe.relative_to(Path.cwd()))
        except ValueError:
            return str(exe)
    return "haven"


def claim_state_file(state_file: Path) -> str | None:
    """Make ``state_file`` this demo's (created exclusively, holding our pid); ``None``, or
    why not: another demo that is still running holds it. A dead demo's file is taken."""
    for _ in range(2):
        try:
            fd = os.open(state_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            try:
                other = json.loads(state_file.read_text())
            except (OSError, ValueError):
                other = {}
            pid = other.get("pid") if isinstance(other, dict) else None
            if isinstance(pid, int) and _running(pid):
                return (f"another demo is running (pid {pid}, "
                        f"{other.get('dashboard_url') or 'starting'}) and owns {state_file}: "
                        "stop it first, or run this one with its own state file, "
                        "HAVEN_DEMO_STATE=/tmp/haven-demo-2.json, for 'haven demo' and its "
                        "'haven press'")
            state_file.unlink(missing_ok=True)  # a demo that died without cleaning up
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid()}, f)
        return None
    return f"{state_file} keeps reappearing: another demo is starting; try again"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def run_demo(site_path: str | None = None, port: int = 8080) -> int:
    state_file = Path(demo_state_file())
    site_file = Path(site_path) if site_path else SAMPLE_SITE
    site = load_site(site_file)
    twilio = twilio_from_env() is not None  # a partial set stops here, with the field named
    refused = claim_state_file(state_file)
    if refused:
        print(f"demo: {refused}", file=sys.stderr)
        return 1
    logging.getLogger("haven.device").setLevel(logging.WARNING)  # one line per press instead
    workdir = Path(tempfile.mkdtemp(prefix="haven-demo-"))
    children: list[tuple[str, subprocess.Popen]] = []
    services: list[LocalService] = []
    sim: Simulator | None = None
    store: Store | None = None
    control = None
    signals = SignalPipe()  # Ctrl-C and SIGTERM, handled on this thread outside the handler
    status = 0
    try:
        broker = start_mosquitto(workdir / "mosquitto")
        services.append(broker)
        redis_srv = start_redis(workdir / "redis")
        services.append(redis_srv)

        sim = Simulator(site, broker.port, workdir)
        control = _control_server(sim)
        threading.Thread(target=control.serve_forever, name="demo-control", daemon=True).start()
        control_url = f"http://127.0.0.1:{control.server_address[1]}"

        py = [sys.executable, "-m", "hub.app.cli"]
        dash_port = port if _port_free(port) else free_port()
        url = f"http://127.0.0.1:{dash_port}/"
        env = {**os.environ,
               "HAVEN_DASHBOARD_URL": os.environ.get("HAVEN_DASHBOARD_URL") or url}
        if not (os.environ.get("HAVEN_PLAN_LINK_URL") or os.environ.get("HAVEN_PLAN_LINK_SECRET")):
            # responders' texts link the alarm's floor plan (hub.core.planlink), this dashboard's
            env.update(HAVEN_PLAN_LINK_URL=url.rstrip("/"),
                       HAVEN_PLAN_LINK_SECRET=secrets.token_hex(32))
        hub = spawn(py + ["--log-level", "warning", "hub", "--site", str(site_file),
                          "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url,
                          "--hub-id", "haven-demo-hub"], log=None, env=env)
        children.append(("hub", hub))
        dashboard = spawn(py + ["--log-level", "warning", "dashboard", "--site", str(site_file),
                                "--redis", redis_srv.url, "--port", str(dash_port),
                                "--state-dir", str(workdir), "--demo-control", control_url],
                          log=workdir / "dashboard.log", env=env)
        children.append(("dashboard", dashboard))

        sim.start()
        store = Store.from_url(redis_srv.url)
        _wait_devices_seen(store, sim, hub)
        login = _demo_user(store)
        _wait_http(url + "login", dashboard)
        state_file.write_text(json.dumps({"pid": os.getpid(), "control_url": control_url,
                                          "dashboard_url": url, "workdir": str(workdir)}))
        _banner(site, url, sim, redis_srv.url, login, twilio=twilio)
        notes = CheckinNotes(site, store, list(sim.apps), _haven_command())

        while status == 0 and signals.wait(0.5) is None:
            for line in notes.poll():
                print(line, flush=True)
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"demo: the {name} exited with {proc.returncode}; stopping "
                          f"(logs in {workdir})", file=sys.stderr)
                    status = 1
            for service in services:
                if not service.alive():
                    print(f"demo: {service.name} died; its log ends:\n{service.tail()}",
                          file=sys.stderr)
                    status = 1
    except RuntimeError as exc:
        print(f"demo: {exc} (logs in {workdir})", file=sys.stderr)
        status = 1
    finally:
        print("demo: stopping", flush=True)
        signals.close()
        if store is not None:
            store.r.close()
        if sim is not None:
            sim.stop()
        if control is not None:
            control.shutdown()
            control.server_close()
        for _, proc in reversed(children):
            if proc.poll() is None:
                proc.terminate()
        for _, proc in reversed(children):
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for service in reversed(services):
            service.stop()
        try:
            if json.loads(state_file.read_text()).get("pid") == os.getpid():
                state_file.unlink()
        except (OSError, ValueError):
            pass
        if status == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        print("demo: stopped", flush=True)
    return status


class CheckinNotes:
    """Announces, in the demo's output, each check-in the hub asks of a simulated worn
    device: when, how to answer, by when, and what follows if nobody does. Reads each
    device's check-in hash (hub.engine.checkins); :meth:`poll` returns the lines to print."""

    def __init__(self, site: Site, store: Store, device_ids: list[str], haven: str):
        self.site, self.store, self.haven = site, store, haven
        self.worn = [d for d in device_ids if site.devices[d].type == "wearable"]
        self._announced: dict[str, str] = {}  # device -> requested_ms already announced

    def poll(self) -> list[str]:
        """Lines for requests made since the last poll; none if Redis is unreachable (the
        demo's loop reports a dead redis-server itself)."""
        lines = []
        for device_id in self.worn:
            try:
                requested = self.store.devices.checkin_requested_ms(device_id)
            except redis.RedisError:
                return lines
            if not requested or self._announced.get(device_id) == requested:
                continue
            self._announced[device_id] = requested
            device = self.site.devices[device_id]
            branch = self.site.branches[device.branch_id]
            asked = datetime.fromtimestamp(int(requested) / 1000).astimezone()
            by = asked + timedelta(seconds=branch.checkin_grace_s)
            lines.append(
                f"demo: {asked:%H:%M:%S} the hub asked {device_id} "
                f"({device.holder or 'its wearer'}, alone at {branch.name}) to check in. "
                f"Answer with '{self.haven} press {device_id}' by {by:%H:%M:%S}, or the hub "
                "raises a 'Lone worker missed check-in' alarm and pages it (texts below).")
        return lines


def _checkin_lines(site: Site, sim: "Simulator", haven: str) -> list[str]:
    """The banner's word on lone-worker check-ins, if a simulated device is worn."""
    worn = [d for d in sim.apps if site.devices[d].type == "wearable"]
    if not worn:
        return []
    lines = ["  Check-ins:   while a branch has one person on duty (a lone worker), the hub",
             "               asks each worn device there to check in:"]
    for device_id in worn:
        branch = site.branches[site.devices[device_id].branch_id]
        staff = [c.name for c in site.contacts
                 if branch.id in c.branches and SHIFT_ROLES & c.roles]
        lines.append(f"    {device_id:<15} every {branch.checkin_every_s / 60:.0f} min while "
                     f"{' or '.join(staff) or 'one person'} is alone on duty at {branch.name}")
    grace_s = max(site.branches[site.devices[d].branch_id].checkin_grace_s for d in worn)
    lines += [f"               one press answers ({haven} press DEVICE); unanswered after "
              f"{grace_s:.0f} s,",
              "               a missed check-in alarm is paged. Each request is announced here."]
    return lines


#: How to drive each device type from the command line, for the banner.
HOW_TO_PRESS = {
    "wall": "press: assist    --hold: emergency",
    "wearable": "--times 3: assist    --hold: emergency    press: test    --times 2: cancel",
    "safe_room": "--door close: sheltering in the safe room    --door open: left it",
}


#: The demo's dashboard user: an admin, so drills and locate can be tried too.
DEMO_USER = "demo"
#: How long the demo's one-time login link works, in seconds.
DEMO_LINK_TTL_S = 24 * 3600


def _demo_user(store: Store) -> tuple[str, str]:
    """Make the demo's dashboard user with a fresh random password: (password, one-time
    login token). The private Redis starts empty, so the user is new every time."""
    import secrets

    from dashboard.users import Users
    users = Users(store)
    password = secrets.token_urlsafe(9)
    users.add(DEMO_USER, password, "admin")
    return password, users.issue_token(DEMO_USER, ttl_s=DEMO_LINK_TTL_S)


def _banner(site: Site, url: str, sim: Simulator, redis_url: str,
            login: tuple[str, str], *, twilio: bool = False) -> None:
    """``twilio``: TWILIO_* credentials are set, so the hub sends real texts and calls."""
    haven = _haven_command()
    first = next(iter(sim.apps), "DEVICE")
    password, token = login
    lines = ["", "Haven demo is running.", f"  Dashboard:   {url}login/token/{token}",
             "               opens the board logged in, once; after that, log in at",
             f"               {url}login",
             f"               user:     {DEMO_USER}",
             f"               password: {password}",
             f"  Press:       {haven} press {first} [--hold | --times N | --door close|open]",
             "               or the Press / Hold and Close / Open door buttons on the dashboard",
             "  Devices:"]
    for device_id in sim.apps:
        branch, room = site.locate(device_id)
        device = site.devices[device_id]
        lines.append(f"    {device_id:<15} {device.type:<9} {branch.name}, {room.name}")
        lines.append(f"    {'':<15} {'':<9} {HOW_TO_PRESS[device.type]}")
    if sim.skipped:
        lines.append(f"  Not simulated (more devices than mock pins): {', '.join(sim.skipped)}")
    lines += _checkin_lines(site, sim, haven)
    lines += (["  Texts and calls go out through Twilio (TWILIO_* is set): the site's contacts' "
               "phones get them."] if twilio else
              ["  Texts are printed below by the console notifier (set TWILIO_ACCOUNT_SID, "
               "TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER to send real ones)."])
    lines += [f"  Alarms:      {haven} alarm list --redis {redis_url}",
              f"               {haven} alarm ack REF --by NAME --redis {redis_url}",
              f"               {haven} alarm resolve REF --by NAME --reason TEXT --redis "
              f"{redis_url}",
              "               REF: a text's 'Ref' (86bce38e-1) or the start of an alarm id",
              "  Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


def press(device_id: str, hold: bool = False, times: int = 1, door: str | None = None) -> int:
    """``haven press``: ask the running demo to push a simulated button (or move a door)."""
    state_file = Path(demo_state_file())
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        print(f"haven press: no demo is running (no {state_file}); start one with 'make demo'",
              file=sys.stderr)
        return 1
    if "control_url" not in state:
        print(f"haven press: the demo (pid {state.get('pid')}) is still starting; try again "
              "when it prints 'Haven demo is running'", file=sys.stderr)
        return 1
    url = (f"{state['control_url']}/press/{device_id}?hold={'1' if hold else '0'}"
           f"&times={times}" + (f"&door={door}" if door else ""))
    request = urllib.request.Request(url, method="POST", data=b"")
    try:
        with urllib.request.urlopen(request, timeout=CONFIRM_TIMEOUT_S + 5) as resp:
            result = json.load(resp)
    except urllib.error.HTTPError as exc:
        result = json.load(exc)
    except (urllib.error.URLError, OSError) as exc:
        print(f"haven press: the demo at {state['control_url']} did not answer ({exc}); "
              "is 'make demo' still running?", file=sys.stderr)
        return 1
    if not result.get("ok"):
        print(f"haven press: {result.get('error')}", file=sys.stderr)
        return 1
    if not result.get("alarm_id"):
        print(f"{device_id}: {result.get('note', 'done')}")
        return 0
    print(f"{device_id}: {result['kind']} alarm {result['alarm_id']} stored by the hub "
          f"{result['confirmed_ms']} ms after the device sent it; see {state['dashboard_url']}")
    return 0
