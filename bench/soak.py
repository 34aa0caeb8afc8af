"""Soak: N devices for T minutes - heartbeats, a trickle of alarms, acknowledgements and
resolves - against a real hub, mosquitto and redis-server, sampling every process's memory
and CPU each minute. A command, not a CI test:

    .venv/bin/python bench/soak.py --devices 2000 --minutes 10

Wiring: private mosquitto and redis-server (hub.app.localservices) and the fake Twilio API
(tests.fake_twilio) on loopback; ``--workers`` hub processes started as ``haven hub``
with a generated site of N devices (100 per branch). Every device is its own MQTT
connection (paho, MQTT v5, its own client id, Last Will, subscribed to its command
topic), all driven from one selector thread; each says ``online`` (retained) when it
connects and sends a heartbeat every ``--heartbeat-s`` seconds, phases spread, as
firmware 0.3 does. Every ``--alarm-every-s`` seconds a random
device raises an alarm (a quarter of them emergencies); ``--ack-after-s`` later it is
acknowledged and ``--resolve-after-s`` after that resolved, through the store as the
dashboard does. Prints one table row a minute (RSS in MB; CPU in % of one core over the
minute) and a summary that checks nothing was lost or paged twice.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import re
import selectors
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from device.protocol import (STATUS_OFFLINE, STATUS_ONLINE, Health, Heartbeat,  # noqa: E402
                             StatusMessage, Topics, new_alarm)
from hub.core.lifecycle import AlarmEvent  # noqa: E402
from hub.app.localservices import free_port, spawn, start_mosquitto, start_redis  # noqa: E402
from hub.store.alarms import Store  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

SAMPLE = ROOT / "deploy" / "examples" / "site.toml"
PER_BRANCH = 100
ROLES = (("staff",), ("manager",), ("security", "fallback"), ("police",), ("it",))


def kinds_text(sample: str) -> str:
    """The sample site's ``[kinds.*]`` tables, verbatim."""
    out, keep = [], False
    for line in sample.splitlines():
        header = re.match(r"\s*\[\[?\s*([A-Za-z_.]+)", line)
        if header:
            keep = header.group(1).startswith("kinds.")
        if keep:
            out.append(line)
    return "\n".join(out)


def write_site(path: Path, devices: int) -> list[str]:
    """A site of ``devices`` wall buttons, 100 per branch; returns the device ids."""
    lines = ['[site]\nname = "Soak library system"\n', kinds_text(SAMPLE.read_text()), ""]
    ids, phone = [], 2065500000
    for b in range((devices + PER_BRANCH - 1) // PER_BRANCH):
        lines += [f'[[branch]]\nid = "b{b:03d}"\nname = "Branch {b}"\n'
                  'timezone = "America/Los_Angeles"\n']
        lines += [f'  [[branch.room]]\n  id = "r{r}"\n  name = "Room {r}"\n' for r in range(5)]
        lines += ['  [[branch.room]]\n  id = "safe"\n  name = "Safe room"\n  safe_room = true\n']
        for roles in ROLES:
            phone += 1
            lines += [f'[[contact]]\nname = "{roles[0]} {b}"\nphone = "+1{phone}"\n'
                      f'branches = ["b{b:03d}"]\nroles = {list(roles)!r}\n'.replace("'", '"')]
    for i in range(devices):
        device_id = f"soak-{i:05d}"
        ids.append(device_id)
        lines += [f'[[device]]\nid = "{device_id}"\nbranch = "b{i // PER_BRANCH:03d}"\n'
                  f'room = "r{i % 5}"\ntype = "wall"\n']
    path.write_text("\n".join(lines) + "\n")
    return ids


class Fleet:
    """N device connections driven by one selector loop (paho's external-loop API)."""

    def __init__(self, port: int, ids: list[str], heartbeat_s: float):
        self.topics, self.heartbeat_s = Topics(), heartbeat_s
        self.clients: dict[str, mqtt.Client] = {}
        self.confirmed: dict[str, float] = {}   # alarm id -> monotonic of the hub's 'received'
        self.published: dict[str, float] = {}   # alarm id -> monotonic of its publish
        self.commands = collections.Counter()
        self.heartbeats = 0
        self.started = time.monotonic()
        self.next_beat = {d: self.started + random.uniform(0, heartbeat_s) for d in ids}
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str, bytes]] = []  # (device, alarm id, payload)
        self._selector = selectors.DefaultSelector()
        self.stop = threading.Event()
        for device_id in ids:
            client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id,
                                 protocol=mqtt.MQTTv5)
            client.will_set(self.topics.status(device_id), StatusMessage(
                device=device_id, state=STATUS_OFFLINE).to_json(), qos=1, retain=True)
            client.on_connect = self._on_connect
            client.on_message = self._on_message
            client.connect("127.0.0.1", port, keepalive=60)
            self._selector.register(client.socket(), selectors.EVENT_READ, client)
            self.clients[device_id] = client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        device_id = client._client_id.decode()
        client.subscribe(self.topics.cmd(device_id), qos=1)
        online = StatusMessage(device=device_id, state=STATUS_ONLINE, at=int(time.time() * 1000),
                               firmware="soak")  # presence, once per connection (firmware 0.3)
        client.publish(self.topics.status(device_id), online.to_json(), qos=1, retain=True)

    def _on_message(self, client, userdata, msg):
        import json
        cmd = json.loads(msg.payload)
        self.commands[cmd.get("cmd")] += 1
        if cmd.get("cmd") == "received":
            self.confirmed.setdefault(cmd.get("alarm_id"), time.monotonic())

    def raise_alarm(self, device_id: str, kind: str) -> str:
        alarm = new_alarm(device_id, kind)
        with self._lock:
            self._pending.append((device_id, alarm.alarm_id, alarm.to_json()))
        return alarm.alarm_id

    def run(self) -> None:
        last_misc = 0.0
        while not self.stop.is_set():
            for key, _ in self._selector.select(timeout=0.05):
                key.data.loop_read()
            now = time.monotonic()
            with self._lock:
                pending, self._pending = self._pending, []
            for device_id, alarm_id, payload in pending:
                client = self.clients[device_id]
                client.publish(self.topics.alarm(device_id), payload, qos=1)
                client.loop_write()
                self.published[alarm_id] = time.monotonic()
            for device_id, due in self.next_beat.items():
                if due <= now:
                    self.next_beat[device_id] = due + self.heartbeat_s
                    self._beat(device_id, now)
            for client in self.clients.values():
                if client.want_write():
                    client.loop_write()
            if now - last_misc >= 1.0:
                last_misc = now
                for client in self.clients.values():
                    client.loop_misc()

    def _beat(self, device_id: str, now: float) -> None:
        beat = Heartbeat(device=device_id, at=int(time.time() * 1000),
                         health=Health(int(now - self.started), 0, -55.0))
        self.clients[device_id].publish(self.topics.heartbeat(device_id), beat.to_json(), qos=1)
        self.heartbeats += 1


def proc_sample(pid: int) -> tuple[float, float]:
    """(RSS in MB, CPU seconds so far) of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss_kb / 1024, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def page_keys(fake: FakeTwilio) -> list[tuple[str, float]]:
    """(notification key, monotonic at receipt) of every accepted alarm page."""
    with fake._cond:
        accepted = [r for r in fake.requests if r.status == 201 and r.form.get("StatusCallback")]
    return [(parse_qs(urlsplit(r.form["StatusCallback"]).query)["key"][0], r.at)
            for r in accepted]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--heartbeat-s", type=float, default=30)
    parser.add_argument("--alarm-every-s", type=float, default=10)
    parser.add_argument("--ack-after-s", type=float, default=20)
    parser.add_argument("--resolve-after-s", type=float, default=20)
    parser.add_argument("--sample-s", type=float, default=60, help="seconds between rows")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="haven-soak-"))
    mosquitto, redis_service = start_mosquitto(work / "mosquitto"), start_redis(work / "redis")
    fake = FakeTwilio().start()
    site = work / "site.toml"
    ids = write_site(site, args.devices)
    env = dict(os.environ, TWILIO_ACCOUNT_SID=fake.account_sid, TWILIO_AUTH_TOKEN=fake.auth_token,
               TWILIO_FROM_NUMBER="+12065550000", HAVEN_TWILIO_API_BASE=fake.url,
               HAVEN_PUBLIC_URL=f"http://127.0.0.1:{free_port()}")  # keys in pages; no dashboard
    hubs = []
    for i in range(args.workers):
        log = work / f"hub{i}.log"
        hubs.append(spawn([sys.executable, "-m", "hub.app.cli", "hub", "--site", str(site),
                           "--broker", f"127.0.0.1:{mosquitto.port}", "--redis",
                           redis_service.url, "--hub-id", f"soak{i}"], log=log, env=env))
        deadline = time.monotonic() + 30
        while "hub ready" not in log.read_text():
            if hubs[-1].poll() is not None or time.monotonic() > deadline:
                sys.exit(f"hub {i} did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.1)
    store = Store.from_url(redis_service.url)
    t0 = time.monotonic()
    fleet = Fleet(mosquitto.port, ids, args.heartbeat_s)
    print(f"# soak: {args.devices} devices connected in {time.monotonic() - t0:.1f} s; "
          f"{args.workers} hub worker(s); {args.minutes:g} min; work dir {work}", flush=True)
    loop = threading.Thread(target=fleet.run, daemon=True)
    loop.start()

    procs = {**{f"hub{i}": p.pid for i, p in enumerate(hubs)},
             "mosquitto": mosquitto.process.pid, "redis": redis_service.process.pid,
             "soak (devices + fake API)": os.getpid()}
    print("| t (min) | " + " | ".join(f"{n} RSS MB / CPU %" for n in procs) +
          " | heartbeats | alarms | paged | acked | resolved |")
    print("|---" * (len(procs) + 6) + "|", flush=True)
    raised: dict[str, float] = {}
    acked, resolved = set(), set()
    last = {n: (*proc_sample(pid), time.monotonic()) for n, pid in procs.items()}
    start = time.monotonic()
    next_alarm, next_row = start, start + args.sample_s
    end = start + args.minutes * 60

    def row(now: float) -> None:
        cells = []
        for name, pid in procs.items():
            rss, cpu = proc_sample(pid)
            cells.append(f"{rss:.1f} / {100 * (cpu - last[name][1]) / (now - last[name][2]):.1f}")
            last[name] = (rss, cpu, now)
        paged = {k.split(":")[0] for k, _ in page_keys(fake)}
        print(f"| {(now - start) / 60:.1f} | " + " | ".join(cells) + f" | {fleet.heartbeats} | "
              f"{len(raised)} | {len(paged & set(raised))} | {len(acked)} | "
              f"{len(resolved)} |", flush=True)

    while (now := time.monotonic()) < end:
        if now >= next_alarm:
            next_alarm += args.alarm_every_s
            kind = "emergency" if random.random() < 0.25 else "assist"
            raised[fleet.raise_alarm(random.choice(ids), kind)] = now
        for alarm_id, at in raised.items():
            if alarm_id not in acked and now - at >= args.ack_after_s:
                if _apply(store, alarm_id, AlarmEvent.ACKNOWLEDGE):
                    acked.add(alarm_id)
            elif alarm_id in acked and alarm_id not in resolved \
                    and now - at >= args.ack_after_s + args.resolve_after_s:
                if _apply(store, alarm_id, AlarmEvent.RESOLVE):
                    resolved.add(alarm_id)
        if now >= next_row:
            next_row += args.sample_s
            row(now)
        time.sleep(0.2)

    row(time.monotonic())
    time.sleep(5)  # the last alarms' pages
    fleet.stop.set()
    loop.join(5)
    keys = page_keys(fake)
    counts = collections.Counter(k for k, _ in keys)
    first = {}
    for key, at in keys:
        alarm_id = key.split(":")[0]
        first[alarm_id] = min(first.get(alarm_id, at), at)
    latency = sorted(1000 * (first[a] - fleet.published[a]) for a in raised
                     if a in first and a in fleet.published)
    lost = [a for a in raised if store.get_alarm(a) is None or a not in first]
    unconfirmed = [a for a in raised if a not in fleet.confirmed]
    rejected = len(store.devices.rejected(count=1000))
    print(f"\n# {len(raised)} alarms: {len(raised) - len(lost)} stored and paged, "
          f"{len(lost)} lost; {len(keys)} pages, {sum(n - 1 for n in counts.values())} "
          f"duplicates; {len(unconfirmed)} not confirmed to their device; "
          f"{rejected} messages rejected; {fleet.heartbeats} heartbeats; device commands "
          f"{dict(fleet.commands)}")
    if latency:
        print(f"# device publish -> first page: p50 {statistics.median(latency):.1f} ms, max "
              f"{latency[-1]:.1f} ms over {len(latency)} alarms")
    for proc in hubs:
        proc.terminate()
        proc.wait(30)
    store.r.close()
    fake.stop()
    mosquitto.stop()
    redis_service.stop()
    return 1 if lost or any(n > 1 for n in counts.values()) else 0


def _apply(store: Store, alarm_id: str, event: AlarmEvent) -> bool:
    from hub.core.lifecycle import IllegalTransition
    try:
        store.transition(alarm_id, event, by="soak", now_ms=int(time.time() * 1000),
                         reason="soak" if event is AlarmEvent.RESOLVE else None)
        return True
    except (KeyError, IllegalTransition):
        return False  # not stored yet (retried next loop), or already closed


if __name__ == "__main__":
    sys.exit(main())
