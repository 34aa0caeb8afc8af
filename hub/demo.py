"""``haven demo``: a whole Haven on this machine, and ``haven press`` to drive it.

The demo starts, in a temp dir, private mosquitto and redis-server instances on
free loopback ports, a hub worker and the dashboard as child processes, and one
simulated device per device of the site config: the real firmware
(:class:`device.firmware.DeviceApp`) on gpiozero mock pins. A small control
server on loopback lets ``haven press`` and the dashboard's demo buttons push
a simulated button. Ctrl-C (or SIGTERM) stops everything in order; children
also die with the demo if it is killed outright.

SMS go to the console notifier (printed here) unless TWILIO_* credentials are
set in the environment.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from device.config import DeviceConfig
from device.protocol import DEFAULT_PREFIX

from .settings import demo_state_file
from .localservices import LocalService, free_port, spawn, start_mosquitto, start_redis
from .site import Site, load_site
from .store import Store

SAMPLE_SITE = Path(__file__).resolve().parents[1] / "deploy" / "examples" / "site.toml"
#: Seconds a press waits for the hub's "received" confirmation.
CONFIRM_TIMEOUT_S = 5.0
#: BCM pins handed to simulated devices (a mock Pi has GPIO0-27).
FIRST_PIN, LAST_PIN = 2, 27


class Simulator:
    """The site's devices running the real firmware on mock pins."""

    def __init__(self, site: Site, broker_port: int, prefix: str = DEFAULT_PREFIX):
        from gpiozero.pins.mock import MockFactory

        from device.firmware import DeviceApp
        self.factory = MockFactory()
        self.apps: dict[str, DeviceApp] = {}
        self.pins: dict[str, int] = {}
        self._changed = threading.Condition()
        self._seen: dict[tuple[str, str], float] = {}  # (alarm id, event) -> time.monotonic()
        for pin, device in zip(range(FIRST_PIN, LAST_PIN + 1), site.devices.values()):
            config = DeviceConfig(device_id=device.id, broker_host="127.0.0.1",
                                  broker_port=broker_port, topic_prefix=prefix, button_pin=pin)
            self.apps[device.id] = DeviceApp(config, pin_factory=self.factory,
                                             on_event=self._on_event)
            self.pins[device.id] = pin
        self.skipped = [d for d in site.devices if d not in self.apps]

    def _on_event(self, event: str, alarm_id: str) -> None:
        with self._changed:
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

    def press(self, device_id: str, hold: bool = False) -> dict:
        """Push the button (``hold``: for the hold time) and wait for the hub's confirmation."""
        app = self.apps.get(device_id)
        if app is None:
            return {"ok": False, "error": f"no simulated device {device_id!r}; "
                                          f"devices: {', '.join(self.apps)}"}
        before = set(app.alarms)
        pin = self.factory.pin(self.pins[device_id])
        pin.drive_low()
        if hold:
            time.sleep(app.config.hold_seconds + 0.3)
        else:
            time.sleep(0.05)
        pin.drive_high()
        deadline = time.monotonic() + CONFIRM_TIMEOUT_S
        with self._changed:
            while True:
                new = [a for a in app.alarms if a not in before]
                if new and app.alarms[new[0]] == "received":
                    break
                if time.monotonic() > deadline:
                    state = app.alarms[new[0]] if new else "no alarm raised"
                    return {"ok": False, "alarm_id": new[0] if new else None,
                            "error": f"the hub did not confirm within {CONFIRM_TIMEOUT_S:.0f} s "
                                     f"(last state: {state})"}
                self._changed.wait(0.05)
            sent, received = self._seen[(new[0], "sending")], self._seen[(new[0], "received")]
        return {"ok": True, "alarm_id": new[0], "kind": "emergency" if hold else "assist",
                "device": device_id, "confirmed_ms": round((received - sent) * 1000, 1)}


def _control_server(sim: Simulator) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            url = urlsplit(self.path)
            parts = url.path.strip("/").split("/")
            if len(parts) != 2 or parts[0] != "press":
                return self._reply(404, {"ok": False, "error": "POST /press/<device_id>"})
            hold = parse_qs(url.query).get("hold", ["0"])[0] in ("1", "true")
            result = sim.press(parts[1], hold)
            if result["ok"]:
                print(f"demo: pressed {parts[1]}{' (held)' if hold else ''} -> "
                      f"{result['kind']} alarm {result['alarm_id'][:8]}: the hub confirmed it "
                      f"{result['confirmed_ms']} ms after the device sent it", flush=True)
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
        if all(store.device_status(d).get("state") == "online" for d in sim.apps):
            return
        time.sleep(0.05)
    missing = [d for d in sim.apps if store.device_status(d).get("state") != "online"]
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


def run_demo(site_path: str | None = None, port: int = 8080) -> int:
    state_file = Path(demo_state_file())
    site_file = Path(site_path) if site_path else SAMPLE_SITE
    site = load_site(site_file)
    logging.getLogger("haven.device").setLevel(logging.WARNING)  # one line per press instead
    workdir = Path(tempfile.mkdtemp(prefix="haven-demo-"))
    children: list[tuple[str, subprocess.Popen]] = []
    services: list[LocalService] = []
    sim: Simulator | None = None
    control = None
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    status = 0
    try:
        broker = start_mosquitto(workdir / "mosquitto")
        services.append(broker)
        redis_srv = start_redis(workdir / "redis")
        services.append(redis_srv)

        sim = Simulator(site, broker.port)
        control = _control_server(sim)
        threading.Thread(target=control.serve_forever, name="demo-control", daemon=True).start()
        control_url = f"http://127.0.0.1:{control.server_address[1]}"

        py = [sys.executable, "-m", "hub.cli"]
        hub = spawn(py + ["--log-level", "warning", "hub", "--site", str(site_file),
                          "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url,
                          "--hub-id", "haven-demo-hub"], log=None)
        children.append(("hub", hub))
        dash_port = port if _port_free(port) else free_port()
        dashboard = spawn(py + ["--log-level", "warning", "dashboard", "--site", str(site_file),
                                "--redis", redis_srv.url, "--port", str(dash_port),
                                "--demo-control", control_url], log=workdir / "dashboard.log")
        children.append(("dashboard", dashboard))

        sim.start()
        store = Store.from_url(redis_srv.url)
        _wait_devices_seen(store, sim, hub)
        store.r.close()
        url = f"http://127.0.0.1:{dash_port}/"
        _wait_http(url + "api/board", dashboard)
        state_file.write_text(json.dumps({"pid": os.getpid(), "control_url": control_url,
                                          "dashboard_url": url, "workdir": str(workdir)}))
        _banner(site, url, sim)

        while not stop.wait(0.5):
            for name, proc in children:
                if proc.poll() is not None:
                    print(f"demo: the {name} exited with {proc.returncode}; stopping "
                          f"(logs in {workdir})", file=sys.stderr)
                    status = 1
                    stop.set()
            for service in services:
                if not service.alive():
                    print(f"demo: {service.name} died; its log ends:\n{service.tail()}",
                          file=sys.stderr)
                    status = 1
                    stop.set()
    except RuntimeError as exc:
        print(f"demo: {exc} (logs in {workdir})", file=sys.stderr)
        status = 1
    finally:
        print("demo: stopping", flush=True)
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


def _banner(site: Site, url: str, sim: Simulator) -> None:
    haven = _haven_command()
    first = next(iter(sim.apps), "DEVICE")
    lines = ["", "Haven demo is running.", f"  Dashboard:   {url}",
             f"  Press:       {haven} press {first}          (a press: assist alarm)",
             f"               {haven} press {first} --hold   (a 2 s hold: emergency alarm)",
             "               or the Press / Hold buttons on the dashboard", "  Devices:"]
    for device_id in sim.apps:
        branch, room = site.locate(device_id)
        lines.append(f"    {device_id:<16} {branch.name}, {room.name}"
                     f"{' (safe room)' if room.safe_room else ''}")
    if sim.skipped:
        lines.append(f"  Not simulated (more devices than mock pins): {', '.join(sim.skipped)}")
    lines += ["  SMS are printed below by the console notifier "
              "(set TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM_NUMBER to send real ones).",
              "  Ctrl-C stops everything.", ""]
    print("\n".join(lines), flush=True)


def press(device_id: str, hold: bool = False) -> int:
    """``haven press``: ask the running demo to push a simulated button."""
    state_file = Path(demo_state_file())
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        print(f"haven press: no demo is running (no {state_file}); start one with 'make demo'",
              file=sys.stderr)
        return 1
    url = f"{state['control_url']}/press/{device_id}?hold={'1' if hold else '0'}"
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
    print(f"{device_id}: {result['kind']} alarm {result['alarm_id']} stored by the hub "
          f"{result['confirmed_ms']} ms after the device sent it; see {state['dashboard_url']}")
    return 0
