"""Hub benchmark: press -> first notification, and heartbeat ingest, against raw MQTT.

    .venv/bin/python bench/hub_bench.py [--alarms 1000] [--heartbeats 10000]

All on loopback, started here: a private mosquitto and redis-server, a local
fake Twilio API, and one hub worker process sending through the real twilio SDK.

1. Raw floor: a paho client publishes QoS 1; a paho subscriber on the same broker
   receives it (one way). The least any MQTT pipeline can take.
2. Haven: an alarm published on a device's topic (as the peers harness does) until
   the fake Twilio API has received the first notification request for it: the hub
   validated, placed and stored it in Redis (escalation leased atomically) and the
   SDK posted a call or SMS. Sequential, one alarm at a time.
3. Ingest: heartbeats (firmware 0.3's, on dev/<id>/heartbeat) published as fast as one paho
   client can; time until the hub has stored the last one, against a bare paho
   subscriber counting the same messages on the same broker.
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

from bench.device_bench import pct, summary  # noqa: E402
from device.protocol import Health, Heartbeat, Topics, new_alarm  # noqa: E402
from device.transport import tcp_nodelay  # noqa: E402
from hub.app.localservices import spawn, start_mosquitto, start_redis  # noqa: E402
from hub.store.alarms import Store  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

SITE = ROOT / "deploy" / "examples" / "site.toml"


def client(port: int, name: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    c.on_socket_open = tcp_nodelay
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def raw_one_way(port: int, n: int) -> list[float]:
    got: queue.Queue = queue.Queue()
    sub = client(port, "bench-sub")
    sub.on_message = lambda c, u, m: got.put(time.perf_counter())
    sub.subscribe("bench/raw", qos=1)
    pub = client(port, "bench-pub")
    time.sleep(0.3)
    samples = []
    for i in range(n + 50):
        start = time.perf_counter()
        pub.publish("bench/raw", b"x" * 130, qos=1)
        end = got.get(timeout=5)
        if i >= 50:
            samples.append((end - start) * 1000)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return samples


def haven_first_notification(port: int, fake: FakeTwilio, n: int) -> list[float]:
    pub = client(port, "bench-alarms")
    time.sleep(0.3)
    samples = []
    devices = ["main-circ-01", "main-ref-01", "main-child-01", "main-work-01"]
    for i in range(n + 50):
        alarm = new_alarm(devices[i % 4], "assist")
        seen = len(fake.requests)
        start_mono = time.monotonic()
        pub.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        got = fake.wait_for(seen + 1, timeout=5, match=lambda r: True, resource="Messages")
        first = min(r.at for r in got[seen:])
        if i >= 50:
            samples.append((first - start_mono) * 1000)
        fake.wait_for(seen + 2, timeout=5)  # let the step finish before the next press
    pub.loop_stop()
    pub.disconnect()
    return samples


def ingest(port: int, store: Store, n: int) -> tuple[float, float]:
    """Messages/s: a bare subscriber, then the hub, for the same n heartbeats."""
    counted = threading.Event()
    count = [0]

    def on_message(c, u, m):
        count[0] += 1
        if count[0] == n:
            counted.set()
    sub = client(port, "bench-bare")
    sub.on_message = on_message
    sub.subscribe(Topics().device_filter("heartbeat"), qos=1)
    time.sleep(0.3)
    pub = client(port, "bench-beats")
    devices = ["main-circ-01", "main-ref-01", "main-child-01", "main-work-01",
               "main-safe-01", "west-front-01", "west-safe-01"]
    last_uptime = {}
    start = time.perf_counter()
    for i in range(n):
        device = devices[i % len(devices)]
        last_uptime[device] = i
        beat = Heartbeat(device=device, at=1_000_000 + i, health=Health(uptime_s=i, outbox=0))
        pub.publish(Topics().heartbeat(device), beat.to_json(), qos=1)
    counted.wait(60)
    bare_s = time.perf_counter() - start
    while any(store.devices.device_status(d).get("uptime_s") != str(uptime)
              for d, uptime in last_uptime.items()):
        if time.perf_counter() - start > 120:
            raise RuntimeError("the hub did not store every heartbeat within 120 s")
        time.sleep(0.005)
    hub_s = time.perf_counter() - start
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    return n / bare_s, n / hub_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=1000)
    parser.add_argument("--heartbeats", type=int, default=10000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haven-bench-"))
    broker = start_mosquitto(workdir / "mosquitto")
    redis_srv = start_redis(workdir / "redis")
    fake = FakeTwilio().start()
    env = dict(os.environ, TWILIO_ACCOUNT_SID=fake.account_sid,
               TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_FROM_NUMBER="+12065550000",
               HAVEN_TWILIO_API_BASE=fake.url)
    hub = spawn([sys.executable, "-m", "hub.app.cli", "--log-level", "warning", "hub", "--site",
                 str(SITE), "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url],
                log=workdir / "hub.log", env=env)
    store = Store.from_url(redis_srv.url)
    try:
        time.sleep(1.5)
        raw = raw_one_way(broker.port, args.alarms)
        haven = haven_first_notification(broker.port, fake, args.alarms)
        bare_rate, hub_rate = ingest(broker.port, store, args.heartbeats)
    finally:
        store.r.close()
        hub.terminate()
        hub.wait(15)
        fake.stop()
        broker.stop()
        redis_srv.stop()
    print(f"Hub benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    print(summary("raw MQTT publish -> receive", raw))
    print(summary("alarm publish -> first Twilio POST", haven))
    print(f"{'added by the hub over raw MQTT':<34} p50 {pct(haven, 50) - pct(raw, 50):7.3f}  "
          f"p99 {pct(haven, 99) - pct(raw, 99):7.3f} ms")
    print(f"{'heartbeat ingest (msgs/s)':<34} bare subscriber {bare_rate:8.0f}   hub "
          f"{hub_rate:8.0f}   ratio {hub_rate / bare_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
