"""Device firmware benchmark: idle cost, and press-to-hub-receipt latency against raw MQTT.

    .venv/bin/python bench/device_bench.py [--presses 200] [--idle-seconds 60]

Everything runs on loopback with a private mosquitto and redis-server and a
real hub process (console notifier, output discarded), all started here.

1. Raw floor: a paho client publishes QoS 1 to a topic; a second paho client,
   subscribed, publishes a QoS 1 reply; the round trip back to the first (both
   with TCP_NODELAY, as Haven's clients, on a broker with set_tcp_nodelay). This
   is the least any device -> hub -> device confirmation can take on this broker.
2. Haven: the firmware (``DeviceApp``, mock pins) raises an alarm: written to
   its SQLite outbox (fsynced), published; the hub validates, places and stores
   it in Redis, then answers ``received``; the round trip ends when the device
   has that confirmation. Reported with the added latency over the raw floor.
3. Idle: ``haven device run`` as its own process (mock pins), connected and
   idle; RSS and CPU share over ``--idle-seconds``.

Targets (issue #3): idle RSS <= 40 MB, idle CPU <= 1 %, added p99 <= 5 ms.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from device.transport import tcp_nodelay  # noqa: E402
from hub.app.localservices import spawn, start_mosquitto, start_redis  # noqa: E402

SITE = ROOT / "deploy" / "examples" / "site.toml"


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(name: str, ms: list[float]) -> str:
    return (f"{name:<34} p50 {pct(ms, 50):7.3f}  p90 {pct(ms, 90):7.3f}  "
            f"p99 {pct(ms, 99):7.3f}  max {max(ms):7.3f} ms  (n={len(ms)})")


def raw_round_trips(port: int, n: int) -> list[float]:
    replies: queue.Queue = queue.Queue()
    echo = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-echo", protocol=mqtt.MQTTv5)
    echo.on_socket_open = pinger_nodelay = tcp_nodelay
    echo.on_message = lambda c, u, m: c.publish("bench/reply", m.payload, qos=1)
    echo.connect("127.0.0.1", port)
    echo.subscribe("bench/ping", qos=1)
    echo.loop_start()
    pinger = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-ping", protocol=mqtt.MQTTv5)
    pinger.on_socket_open = pinger_nodelay
    pinger.on_message = lambda c, u, m: replies.put(time.perf_counter())
    pinger.connect("127.0.0.1", port)
    pinger.subscribe("bench/reply", qos=1)
    pinger.loop_start()
    time.sleep(0.3)
    samples = []
    for i in range(n + 20):
        start = time.perf_counter()
        pinger.publish("bench/ping", f"{i}".encode(), qos=1)
        end = replies.get(timeout=5)
        if i >= 20:
            samples.append((end - start) * 1000)
    for client in (pinger, echo):
        client.loop_stop()
        client.disconnect()
    return samples


def haven_round_trips(port: int, workdir: Path, n: int) -> list[float]:
    from gpiozero.pins.mock import MockFactory

    from device.config import BrokerConfig, DeviceConfig, InputConfig
    from device.firmware import DeviceApp
    confirmed: dict[str, float] = {}
    done = threading.Condition()

    def on_event(event: str, alarm_id: str) -> None:
        if event == "received":
            with done:
                confirmed[alarm_id] = time.perf_counter()
                done.notify_all()

    factory = MockFactory()
    config = DeviceConfig("main-circ-01", BrokerConfig("127.0.0.1", port),
                          inputs=(InputConfig(17, "button", (("hold 2s", "emergency"),)),),
                          outbox=str(workdir / "outbox.sqlite3"))
    app = DeviceApp(config, pin_factory=factory, on_event=on_event)
    app.start()
    assert app.connected.wait(10), "device did not connect"
    samples = []
    try:
        for i in range(n + 20):
            start = time.perf_counter()
            alarm = app.raise_alarm("test")  # recorded by the hub, pages no one
            with done:
                if not done.wait_for(lambda: alarm.alarm_id in confirmed, timeout=5):
                    raise RuntimeError(f"alarm {alarm.alarm_id} not confirmed within 5 s")
            if i >= 20:
                samples.append((confirmed[alarm.alarm_id] - start) * 1000)
    finally:
        app.stop()
        factory.close()
    return samples


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle_cost(port: int, workdir: Path, seconds: float) -> tuple[float, float, float]:
    config = workdir / "device.toml"
    config.write_text(f'[device]\nid = "west-front-01"\noutbox = "{workdir}/idle.sqlite3"\n'
                      f'[broker]\nhost = "127.0.0.1"\nport = {port}\n'
                      '[outputs]\nled = 22\nvibration = 23\n')
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock")
    proc = spawn([sys.executable, "-m", "hub.app.cli", "--log-level", "warning", "device", "run",
                  "--config", str(config)], log=workdir / "idle-device.log", env=env)
    try:
        time.sleep(3)  # start-up (imports, connect) is not idle
        if proc.poll() is not None:
            raise RuntimeError(f"device exited: {(workdir / 'idle-device.log').read_text()}")
        cpu0, t0 = cpu_s(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = cpu_s(proc.pid), time.monotonic()
        return rss_mb(proc.pid), (cpu1 - cpu0) / (t1 - t0) * 100, t1 - t0
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=60)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haven-bench-"))
    broker = start_mosquitto(workdir / "mosquitto")
    redis_srv = start_redis(workdir / "redis")
    hub = spawn([sys.executable, "-m", "hub.app.cli", "--log-level", "warning", "hub", "--site",
                 str(SITE), "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url],
                log=workdir / "hub.log")
    try:
        time.sleep(1.5)
        raw = raw_round_trips(broker.port, args.presses)
        haven = haven_round_trips(broker.port, workdir, args.presses)
        rss, cpu, span = idle_cost(broker.port, workdir, args.idle_seconds)
    finally:
        hub.terminate()
        hub.wait(10)
        broker.stop()
        redis_srv.stop()
    print(f"Device benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    print(summary("raw MQTT round trip (QoS 1 echo)", raw))
    print(summary("press -> hub stored -> device", haven))
    added = {p: pct(haven, p) - pct(raw, p) for p in (50, 99)}
    print(f"{'added by Haven over raw MQTT':<34} p50 {added[50]:7.3f}  p99 {added[99]:7.3f} ms"
          f"   (target p99 <= 5 ms: {'met' if added[99] <= 5 else 'NOT met'})")
    print(f"{'idle firmware over %.0f s' % span:<34} RSS {rss:.1f} MB "
          f"({'met' if rss <= 40 else 'NOT met'} <= 40)   CPU {cpu:.2f} % of one core "
          f"({'met' if cpu <= 1 else 'NOT met'} <= 1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
