"""Ingest benchmark: heartbeats from 10,000 simulated devices, 1, 2 and 4 hub workers.

    .venv/bin/python bench/ingest_bench.py [--devices 10000] [--beats 1] [--workers 1,2,4]

Each device publishes ``--beats`` heartbeats (its readings on ``dev/<id>/heartbeat``, QoS 1,
not retained, as firmware 0.3 does), all from one paho client as fast as it can. Each
measurement gets a fresh private mosquitto and redis-server:

- baseline: a bare paho subscriber in a process of its own, subscribed to the same
  topics on the same kind of broker, counting messages (nothing else);
- Haven: N ``haven hub`` workers and the site's 10,000 devices; done when the workers'
  ``haven_messages_total{channel="heartbeat"}`` (their /metrics) add up to every
  heartbeat. Heartbeats are on the workers' shared subscription, so each is stored by
  one worker: the line shows each worker's share. (Presence, the retained ``status``,
  stays on a plain subscription that every worker reads; it is sent once per
  connection, not per heartbeat.) Afterwards the store is checked for every device's
  last heartbeat.

msgs/s = heartbeats / (first publish -> last one handled), both timed with
CLOCK_MONOTONIC (comparable across processes). One publisher bounds that rate (the bare
subscriber's figure is mostly the publisher's), so a second measurement takes it away:

- drain: the subscribers are connected, then stopped (SIGSTOP) while the heartbeats are
  published (the broker holds them), then continued together (SIGCONT) and timed until
  the last one is handled. Haven: N workers; baseline: N bare subscribers in one shared
  group. This is each side's capacity, free of the publisher, and what a hub that
  stalled with 10,000 devices' heartbeats waiting meets.
 Target (issue #9): one worker >= 50 %
of the bare subscriber; workers scale.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchsite import site_toml, storm_groups  # noqa: E402
from bench.hub_bench import client  # noqa: E402
from bench.procs import clean_env, cpu_s, hub_python, start_workers, stop_workers  # noqa: E402
from device.protocol import Health, Heartbeat, Topics  # noqa: E402
from hub.app.localservices import start_mosquitto, start_redis  # noqa: E402
from hub.store.alarms import Store  # noqa: E402

BEAT_RE = re.compile(r'^haven_messages_total\{channel="heartbeat",outcome="status"\} (\S+)$',
                     re.M)
BARE_SUBSCRIBER = """
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, n, topic = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
count, done = [0], threading.Event()
def on_message(c, u, m):
    count[0] += 1
    if count[0] == n:
        print("last", time.monotonic(), flush=True)
        done.set()
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="ingest-bare", protocol=mqtt.MQTTv5)
c.on_message = on_message
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
c.connect("127.0.0.1", port)
c.loop_start()
done.wait(300)
"""


BARE_DRAINER = """
import sys, threading, time
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, topic, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
times = []
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
c.on_message = lambda c, u, m: times.append(time.monotonic())
c.on_subscribe = lambda *a: print("ready", flush=True)
c.on_connect = lambda cl, *a: cl.subscribe(topic, qos=1)
c.connect("127.0.0.1", port)
c.loop_start()
sys.stdin.readline()  # the bench says when the drain is over for everyone
print(len(times), times[-1] if times else 0, flush=True)
"""


@dataclass
class DrainResult:
    workers: int
    messages: int
    bare_per_s: float         # N bare subscribers in one shared group
    hub_per_s: float | None
    shares: list[float]

    def line(self) -> str:
        hub = f"{self.hub_per_s:8.0f}" if self.hub_per_s else "     n/a"
        ratio = f"{self.hub_per_s / self.bare_per_s:5.2f}" if self.hub_per_s else "  n/a"
        return (f"drain  {self.messages} heartbeats, {self.workers} worker(s): hub {hub} msgs/s"
                f"   {self.workers} bare subscriber(s) {self.bare_per_s:8.0f} msgs/s   ratio "
                f"{ratio}   per worker: " + ", ".join(f"{n:.0f}" for n in self.shares))


@dataclass
class IngestResult:
    workers: int
    messages: int
    bare_per_s: float
    hub_per_s: float | None   # None: not every heartbeat was handled in time
    stored_ok: bool           # every device's last heartbeat is in the store
    cpu_s: list[float]        # per worker
    shares: list[float]       # heartbeats each worker stored

    def line(self) -> str:
        hub = f"{self.hub_per_s:8.0f}" if self.hub_per_s else "     n/a"
        ratio = f"{self.hub_per_s / self.bare_per_s:5.2f}" if self.hub_per_s else "  n/a"
        return (f"ingest {self.messages} heartbeats, {self.workers} worker(s): hub {hub} msgs/s"
                f"   bare subscriber {self.bare_per_s:8.0f} msgs/s   ratio {ratio}   "
                f"stored {'all' if self.stored_ok else 'NOT ALL'}   per worker: "
                + ", ".join(f"{n:.0f}" for n in self.shares) + " heartbeats, "
                + ", ".join(f"{c:.2f}" for c in self.cpu_s) + " s CPU")


def beats(devices: list[str], per_device: int) -> list[tuple[str, bytes, str, int]]:
    """(topic, payload, device, uptime_s) for each heartbeat, device by device in turns;
    each device's heartbeats have their own uptimes, so the store shows which came last."""
    out, topics = [], Topics()
    for round_ in range(per_device):
        for i, device in enumerate(devices):
            uptime = round_ * 30 + i
            beat = Heartbeat(device=device, at=1_700_000_000_000 + round_ * 30_000,
                             health=Health(uptime_s=uptime, outbox=0))
            out.append((topics.heartbeat(device), beat.to_json(), device, uptime))
    return out


def publish_all(port: int, messages) -> float:
    """Publish every message (QoS 1) as fast as one client can; returns the
    CLOCK_MONOTONIC time of the first publish."""
    pub = client(port, "ingest-devices")
    time.sleep(0.2)
    start = time.monotonic()
    infos = [pub.publish(topic, payload, qos=1) for topic, payload, *_ in messages]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()  # first: it wakes paho's thread, which loop_stop then joins at once
    pub.loop_stop()   # (alone, it waits out the thread's 1 s select timeout)
    return start


def publish_in_background(port: int, messages) -> Callable[[], float]:
    """:func:`publish_all` on a thread of its own, so the caller can watch the hub while
    the heartbeats go out; returns a function that waits and gives the start time."""
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(publish_all(port, messages)),
                              name="ingest-publisher", daemon=True)
    thread.start()

    def started() -> float:
        thread.join(120)
        if not out:
            raise RuntimeError("publishing the heartbeats did not finish in 120 s")
        return out[0]
    return started


def bare_rate(workdir: Path, messages, timeout_s: float = 120.0) -> float:
    """msgs/s of a bare paho subscriber (its own process) on a fresh broker."""
    broker = start_mosquitto(workdir / "mosquitto-bare")
    sub = subprocess.Popen([hub_python(), "-c", BARE_SUBSCRIBER, str(broker.port),
                            str(len(messages)), Topics().device_filter("heartbeat")],
                           stdout=subprocess.PIPE, text=True, env=clean_env())
    try:
        if sub.stdout.readline().strip() != "ready":
            raise RuntimeError("the bare subscriber did not subscribe")
        start = publish_all(broker.port, messages)
        sub.wait(timeout_s)
        line = sub.stdout.readline().split()
        if not line or line[0] != "last":
            raise RuntimeError(f"the bare subscriber did not get all {len(messages)} messages")
        return len(messages) / (float(line[1]) - start)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
        broker.stop()


def beat_count(port: int) -> float:
    """Heartbeats a worker has stored, from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
        m = BEAT_RE.search(answer.read().decode())
    return float(m[1]) if m else 0.0


class _Hub:
    """N hub workers with /metrics on a fresh mosquitto and redis-server (a context
    manager); ``stored()`` is the heartbeats each has stored since it started."""

    def __init__(self, workdir: Path, site: Path, workers: int):
        self.broker = start_mosquitto(workdir / "mosquitto")
        self.redis = start_redis(workdir / "redis")
        self.procs = []
        try:
            self.procs = start_workers(workers, site=site, broker=f"127.0.0.1:{self.broker.port}",
                                       redis_url=self.redis.url, env=clean_env(),
                                       workdir=workdir, metrics=True, log_level="info")
            time.sleep(0.5)
            self._base = [beat_count(w.metrics_port) for w in self.procs]
        except BaseException:
            self.__exit__()
            raise

    def stored(self) -> list[float]:
        return [beat_count(w.metrics_port) - b for w, b in zip(self.procs, self._base)]

    def __enter__(self) -> "_Hub":
        return self

    def __exit__(self, *exc) -> None:
        stop_workers(self.procs)
        self.broker.stop()
        self.redis.stop()


def hub_rate(workdir: Path, site: Path, workers: int, messages, timeout_s: float = 120.0
             ) -> tuple[float | None, bool, list[float], list[float]]:
    """(msgs/s or None, every last heartbeat stored, CPU s per worker, heartbeats per
    worker) for ``workers``."""
    with _Hub(workdir, site, workers) as hub:
        cpu0 = [cpu_s(w.pid) for w in hub.procs]
        started = publish_in_background(hub.broker.port, messages)
        end = _drained(lambda: sum(hub.stored()), len(messages), timeout_s)
        start = started()
        cpu = [cpu_s(w.pid) - c for w, c in zip(hub.procs, cpu0)]
        last = {device: uptime for _, _, device, uptime in messages}
        store = Store.from_url(hub.redis.url)
        stored_ok = all(store.devices.device_status(d).get("uptime_s") == str(uptime)
                        for d, uptime in last.items())
        store.r.close()
        rate = None if end is None else len(messages) / (end - start)
        return rate, stored_ok, cpu, hub.stored()


def _drained(counts, expected: int, timeout_s: float) -> float | None:
    """Poll ``counts()`` (a sum) until it reaches ``expected``; the CLOCK_MONOTONIC time
    it did, or None after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if counts() >= expected:
            return time.monotonic()
        time.sleep(0.02)  # each poll is an HTTP request to every worker: not too often
    return None


def _pause(pids, sig) -> float:
    for pid in pids:
        os.kill(pid, sig)
    return time.monotonic()


def bare_drain_rate(workdir: Path, n: int, messages, timeout_s: float = 60.0) -> float:
    """msgs/s of ``n`` bare subscribers (processes) in one shared group, stopped
    (SIGSTOP) while ``messages`` are published and continued together: from SIGCONT
    to the last message any of them got."""
    broker = start_mosquitto(workdir / "mosquitto-bare")
    topic = f"$share/bare/{Topics().device_filter('heartbeat')}"
    subs = [subprocess.Popen([hub_python(), "-c", BARE_DRAINER, str(broker.port), topic,
                              f"bare-{i}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True, env=clean_env()) for i in range(n)]
    try:
        for sub in subs:
            if sub.stdout.readline().strip() != "ready":
                raise RuntimeError("a bare subscriber did not subscribe")
        _pause([sub.pid for sub in subs], signal.SIGSTOP)
        publish_all(broker.port, messages)
        start = _pause([sub.pid for sub in subs], signal.SIGCONT)
        time.sleep(min(timeout_s, 1.0 + len(messages) / 5000))
        counts, lasts = [], []
        for sub in subs:
            sub.stdin.write("done\n")
            sub.stdin.flush()
            count, last = sub.stdout.readline().split()
            counts.append(int(count))
            lasts.append(float(last))
        if sum(counts) != len(messages):
            raise RuntimeError(f"the bare subscribers got {sum(counts)} of {len(messages)}")
        return len(messages) / (max(lasts) - start)
    finally:
        for sub in subs:
            if sub.poll() is None:
                sub.kill()
            sub.wait()
        broker.stop()


def hub_drain_rate(workdir: Path, site: Path, workers: int, messages,
                   timeout_s: float = 120.0) -> tuple[float | None, list[float]]:
    """(msgs/s or None, heartbeats per worker) of ``workers`` stopped (SIGSTOP) while
    ``messages`` are published and continued together: from SIGCONT to all stored."""
    with _Hub(workdir, site, workers) as hub:
        _pause([w.pid for w in hub.procs], signal.SIGSTOP)
        publish_all(hub.broker.port, messages)
        start = _pause([w.pid for w in hub.procs], signal.SIGCONT)
        end = _drained(lambda: sum(hub.stored()), len(messages), timeout_s)
        return (None if end is None else len(messages) / (end - start)), hub.stored()


def _setup(devices: int, per_device: int, workdir: Path | None, prefix: str):
    """(work dir, site file, heartbeats) for a run: a site of ``devices`` in 10 branches."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix=prefix))
    workdir.mkdir(parents=True, exist_ok=True)
    groups = storm_groups(devices, branches=10, contacts=1)
    site = workdir / "site.toml"
    site.write_text(site_toml(groups, name="Ingest benchmark"))
    return workdir, site, beats([d for g in groups.values() for d in g.devices], per_device)


def ingest(devices: int = 10_000, per_device: int = 1, workers=(1, 2, 4),
           workdir: Path | None = None) -> list[IngestResult]:
    """The live measurement, for each worker count."""
    workdir, site, messages = _setup(devices, per_device, workdir, "haven-ingest-")
    results = []
    for n in workers:
        bare = bare_rate(workdir / f"bare-{n}", messages)
        rate, stored_ok, cpu, shares = hub_rate(workdir / f"hub-{n}", site, n, messages)
        results.append(IngestResult(n, len(messages), bare, rate, stored_ok, cpu, shares))
    return results


def drain(devices: int = 10_000, per_device: int = 1, workers=(1, 2, 4),
          workdir: Path | None = None) -> list[DrainResult]:
    """The drain measurement, for each worker count."""
    workdir, site, messages = _setup(devices, per_device, workdir, "haven-drain-")
    results = []
    for n in workers:
        bare = bare_drain_rate(workdir / f"bare-{n}", n, messages)
        rate, shares = hub_drain_rate(workdir / f"hub-{n}", site, n, messages)
        results.append(DrainResult(n, len(messages), bare, rate, shares))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--beats", type=int, default=1, help="heartbeats per device")
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    args = parser.parse_args()
    workers = tuple(int(x) for x in args.workers.split(","))
    for result in ingest(args.devices, args.beats, workers):
        print(result.line(), flush=True)
    for result in drain(args.devices, args.beats, workers):
        print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
