"""Storm benchmark: 1,000 devices raise an alarm within one second.

    .venv/bin/python bench/storm_bench.py [--alarms 1000] [--window-s 1] [--workers 1,2,4]

For each worker count, all fresh and on loopback: a private mosquitto (as the hub's
own: persistence on, no queue limit, no Nagle), redis-server (append-only file,
fsync every second), the local fake Twilio API (in this process, answering at once)
and N ``haven hub`` workers sending through the real twilio SDK. The site has
``--alarms`` devices over 10 branches, each branch paging ``--contacts`` people by
SMS at once. The devices' alarms are published evenly over ``--window-s`` from 10
MQTT connections.

Reported, from the first publish:
- every alarm stored (checked in Redis afterwards) and each of its first-step SMS
  accepted by the API; time until the last alarm had all of them (``done``);
  alarms/s = alarms / done;
- baseline, same run: a bare paho subscriber on the same broker receiving the same
  alarms (time to the last one);
- the most API connections open at once (counted in the fake: accepted minus
  closed), and opened in all; target at most 64;
- each worker's peak RSS sampled every 20 ms during the storm (target <= 80 MB) and
  its CPU seconds.
"""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchsite import site_toml, storm_groups  # noqa: E402
from bench.hub_bench import client  # noqa: E402
from bench.procs import RssSampler, clean_env, cpu_s, start_workers, stop_workers  # noqa: E402
from device.protocol import AlarmMessage, Topics  # noqa: E402
from hub.app.localservices import start_mosquitto, start_redis  # noqa: E402
from hub.store.alarms import Store  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

FROM = "+12065559999"
PUBLISHERS = 10
#: Target: API connections open at once, all workers together.
MAX_CONNECTIONS = 64
#: Target: a worker's RSS under the storm, in MB.
MAX_RSS_MB = 80
#: Accept queue of the fake API (Twilio's front end does not refuse a burst of connects).
LISTEN_BACKLOG = 1024
REF_RE = re.compile(r"Ref ([0-9a-f]{8})")


class ConnectionCounter:
    """Counts a FakeTwilio's TCP connections: open now, most open at once, opened in all.

    Wraps its ThreadingHTTPServer: ``process_request`` runs once per accepted
    connection, ``shutdown_request`` once when it is closed."""

    def __init__(self, fake: FakeTwilio):
        server = fake._server
        self._lock = threading.Lock()
        self.open = self.peak = self.opened = 0
        accept, close = server.process_request, server.shutdown_request

        def process_request(request, address):
            with self._lock:
                self.open += 1
                self.opened += 1
                self.peak = max(self.peak, self.open)
            accept(request, address)

        def shutdown_request(request):
            try:
                close(request)
            finally:
                with self._lock:
                    self.open -= 1

        server.process_request, server.shutdown_request = process_request, shutdown_request

    def reset_peak(self) -> None:
        with self._lock:
            self.peak, self.opened = self.open, 0


@dataclass
class StormResult:
    workers: int
    alarms: int
    pages_per_alarm: int
    window_s: float
    publish_s: float          # first publish -> last publish handed to paho
    bare_s: float             # first publish -> bare subscriber has every alarm
    done_s: float | None      # first publish -> last alarm has all its first-step pages
    stored: int               # alarms found in Redis afterwards
    complete: int             # alarms with every first-step page accepted
    duplicates: int           # accepted requests beyond one per (alarm, contact)
    peak_connections: int
    connections_opened: int
    peak_rss_mb: list[float]  # per worker
    cpu_s: list[float]        # per worker, during the storm

    @property
    def alarms_per_s(self) -> float | None:
        return self.alarms / self.done_s if self.done_s else None

    def lines(self) -> list[str]:
        rate = f"{self.alarms_per_s:7.0f}" if self.alarms_per_s else "    n/a"
        done = f"{self.done_s:6.2f} s" if self.done_s is not None else "NOT DONE"
        return [
            f"storm {self.alarms} alarms in {self.window_s:g} s, {self.workers} worker(s): "
            f"all paged in {done} ({rate} alarms/s); bare subscriber had them all at "
            f"{self.bare_s:.2f} s",
            f"  stored {self.stored}/{self.alarms}, all {self.pages_per_alarm} first pages "
            f"{self.complete}/{self.alarms}, duplicates {self.duplicates}; API connections: "
            f"{self.peak_connections} open at most (target <= {MAX_CONNECTIONS}), "
            f"{self.connections_opened} opened",
            "  worker peak RSS " + ", ".join(f"{m:.0f}" for m in self.peak_rss_mb)
            + f" MB (target <= {MAX_RSS_MB}); CPU " + ", ".join(f"{c:.2f}" for c in self.cpu_s)
            + " s"]


def unique_alarms(devices: list[str]) -> list[AlarmMessage]:
    """One alarm per device, ids unique in their first 8 characters (the SMS's 'Ref')."""
    alarms, refs = [], set()
    now_ms = int(time.time() * 1000)
    for device in devices:
        while (alarm_id := secrets.token_hex(16))[:8] in refs:
            pass
        refs.add(alarm_id[:8])
        alarms.append(AlarmMessage(device=device, alarm_id=alarm_id, kind="emergency",
                                   pressed_at=now_ms))
    return alarms


def storm(alarms: int = 1000, workers: int = 1, *, window_s: float = 1.0, contacts: int = 2,
          workdir: Path | None = None, timeout_s: float = 120.0) -> StormResult:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="haven-storm-"))
    groups = storm_groups(alarms, branches=min(10, alarms), contacts=contacts)
    site = workdir / "site.toml"
    site.write_text(site_toml(groups, name="Storm benchmark"))
    devices = [d for g in groups.values() for d in g.devices]
    topics = Topics()
    broker = start_mosquitto(workdir / "mosquitto")
    redis_srv = start_redis(workdir / "redis")
    fake = FakeTwilio().start()
    # socketserver listens with a backlog of 5: a burst of new connections from several
    # workers would overflow it and be reset, which the real API does not do.
    fake._server.socket.listen(LISTEN_BACKLOG)
    counter = ConnectionCounter(fake)
    env = clean_env(TWILIO_ACCOUNT_SID=fake.account_sid, TWILIO_AUTH_TOKEN=fake.auth_token,
                    TWILIO_FROM_NUMBER=FROM, HAVEN_TWILIO_API_BASE=fake.url)
    procs, pubs, bare = [], [], None
    try:
        procs = start_workers(workers, site=site, broker=f"127.0.0.1:{broker.port}",
                              redis_url=redis_srv.url, env=env, workdir=workdir)
        msgs = unique_alarms(devices)
        payloads = [(topics.alarm(m.device), m.to_json()) for m in msgs]
        got, all_in = [0], threading.Event()

        def on_bare(c, u, m):
            got[0] += 1
            if got[0] == len(payloads):
                all_in.set()
        bare = client(broker.port, "storm-bare")
        bare.on_message = on_bare
        bare.subscribe(topics.device_filter("alarm"), qos=1)
        pubs = [client(broker.port, f"storm-devices-{i}") for i in range(PUBLISHERS)]
        time.sleep(0.5)
        counter.reset_peak()
        cpu0 = [cpu_s(p.pid) for p in procs]
        with RssSampler([p.pid for p in procs]) as rss:
            start = time.monotonic()
            for i, (topic, payload) in enumerate(payloads):
                due = start + window_s * i / len(payloads)
                while (ahead := due - time.monotonic()) > 0:
                    time.sleep(ahead)
                pubs[i % PUBLISHERS].publish(topic, payload, qos=1)
            publish_s = time.monotonic() - start
            all_in.wait(timeout_s)
            bare_s = time.monotonic() - start
            expected = len(payloads) * contacts
            fake.wait_for(expected, timeout=timeout_s)
            time.sleep(0.2)  # a duplicate would come now
        cpu = [cpu_s(p.pid) - c for p, c in zip(procs, cpu0)]
        pages: dict[str, set[str]] = {}
        last: dict[str, float] = {}
        accepted = fake.accepted("Messages")
        for r in accepted:
            m = REF_RE.search(r.form.get("Body", ""))
            if m:
                pages.setdefault(m[1], set()).add(r.form["To"])
                last[m[1]] = max(last.get(m[1], 0.0), r.at)
        complete = [m for m in msgs if len(pages.get(m.alarm_id[:8], ())) >= contacts]
        done_s = (max(last[m.alarm_id[:8]] for m in msgs) - start
                  if len(complete) == len(msgs) else None)
        store = Store.from_url(redis_srv.url)
        stored = sum(1 for m in msgs if store.get_alarm(m.alarm_id) is not None)
        store.r.close()
        return StormResult(
            workers=workers, alarms=len(msgs), pages_per_alarm=contacts, window_s=window_s,
            publish_s=publish_s, bare_s=bare_s, done_s=done_s, stored=stored,
            complete=len(complete),
            duplicates=len(accepted) - sum(len(v) for v in pages.values()),
            peak_connections=counter.peak, connections_opened=counter.opened,
            peak_rss_mb=[rss.peak_mb[p.pid] for p in procs], cpu_s=cpu)
    finally:
        for c in pubs + ([bare] if bare else []):
            c.loop_stop()
            c.disconnect()
        stop_workers(procs)
        fake.stop()
        broker.stop()
        redis_srv.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=1000)
    parser.add_argument("--window-s", type=float, default=1.0)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--contacts", type=int, default=2, help="SMS per alarm (first step)")
    args = parser.parse_args()
    for n in (int(x) for x in args.workers.split(",")):
        result = storm(args.alarms, n, window_s=args.window_s, contacts=args.contacts)
        print("\n".join(result.lines()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
