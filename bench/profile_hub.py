"""Where a real hub worker spends its CPU: every thread of ``haven hub`` under cProfile.

    .venv/bin/python bench/profile_hub.py [--alarms 1000] [--burst 2000] [--top 25]

A private mosquitto (Haven's own config: no Nagle), redis-server (append-only file)
and the local fake Twilio API (in this process, status callbacks off); one hub
worker started as ``haven hub`` is, except that every thread it starts (MQTT
network loop, escalation and sender pools, timers, supervisor...) runs under its
own ``cProfile.Profile(time.thread_time)``: CPU of that thread only. The worker
gets ``--alarms`` alarms one after another (each awaited, as the harness's
pipeline phase), then ``--burst`` at once; on SIGTERM it writes the merged
profile, and this prints CPU per thread group and the top functions.

cProfile slows Python-heavy code several fold, so read shares, not absolute times.
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import marshal
import pstats
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def child(out: str, argv: list[str]) -> int:
    """In the hub process: profile every thread, run ``haven`` with ``argv``, dump stats."""
    profiles: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()
    run = threading.Thread.run

    def profiled_run(self):
        profiler = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append((self.name, profiler))
        profiler.enable()
        try:
            run(self)
        finally:
            profiler.disable()
    threading.Thread.run = profiled_run
    from hub.app.cli import main
    try:
        return main(argv)
    finally:
        groups: dict[str, dict] = collections.defaultdict(dict)
        with lock:
            for name, profiler in profiles:
                profiler.create_stats()
                group = name.split("_")[0].rstrip("-0123456789") or name
                stats = pstats.Stats(profiler)
                merged = groups[group]
                if merged:
                    merged["stats"].add(stats)
                else:
                    merged["stats"] = stats
                merged["threads"] = merged.get("threads", 0) + 1
        with open(out, "wb") as f:
            marshal.dump({g: (v["threads"], v["stats"].stats) for g, v in groups.items()}, f)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=1000)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], args.child[1:])

    from bench.benchsite import site_from_contacts
    from bench.hub_bench import client
    from bench.peers_adapter import harness_devices
    from bench.procs import clean_env, hub_python
    from device.protocol import Topics, new_alarm
    from hub.app.localservices import spawn, start_mosquitto, start_redis
    from tests.fake_twilio import FakeTwilio

    workdir = Path(tempfile.mkdtemp(prefix="haven-profile-hub-"))
    site = workdir / "site.toml"
    devices = harness_devices(50)
    site.write_text(site_from_contacts({"default": ["+15005550100"]}, devices))
    broker, redis_srv = start_mosquitto(workdir / "mosquitto"), start_redis(workdir / "redis")
    fake = FakeTwilio()
    fake._post_statuses = lambda *a: None
    fake.start()
    out, log = workdir / "profile.marshal", workdir / "hub.log"
    env = clean_env(TWILIO_ACCOUNT_SID=fake.account_sid, TWILIO_AUTH_TOKEN=fake.auth_token,
                    TWILIO_FROM_NUMBER="+12065559999", HAVEN_TWILIO_API_BASE=fake.url,
                    HAVEN_PUBLIC_URL="https://haven.bench.invalid")
    hub = spawn([hub_python(), str(Path(__file__).resolve()), "--child", str(out), "hub",
                 "--site", str(site), "--broker", f"127.0.0.1:{broker.port}", "--redis",
                 redis_srv.url, "--hub-id", "haven-profiled"], log=log, env=env, cwd=ROOT)
    topics, pub = Topics(), None
    try:
        deadline = time.monotonic() + 30
        while "hub ready" not in log.read_text(errors="replace"):
            if hub.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"hub not ready; {log}:\n{log.read_text()[-2000:]}")
            time.sleep(0.05)
        pub = client(broker.port, "profile-devices")
        time.sleep(0.3)
        for i in range(args.alarms):
            alarm = new_alarm(devices[1 + i % 10], "emergency")
            seen = len(fake.requests)
            pub.publish(topics.alarm(alarm.device), alarm.to_json(), qos=1)
            fake.wait_for(seen + 1, timeout=10)
        seen = len(fake.requests)
        for i in range(args.burst):
            alarm = new_alarm(devices[1 + i % 50], "emergency")
            pub.publish(topics.alarm(alarm.device), alarm.to_json(), qos=1)
        fake.wait_for(seen + args.burst, timeout=120)
        sent = len(fake.accepted())
    finally:
        if pub is not None:
            pub.loop_stop()
            pub.disconnect()
        hub.send_signal(signal.SIGTERM)
        hub.wait(60)
        fake.stop()
        broker.stop()
        redis_srv.stop()
    groups = marshal.loads(out.read_bytes())
    total = sum(sum(v[2] for v in stats.values()) for _, stats in groups.values())
    alarms = args.alarms + args.burst
    print(f"one hub worker, {alarms} alarms ({sent} SMS accepted), profiled: "
          f"{total:.2f} CPU s in Python threads, {1000 * total / alarms:.2f} ms per alarm "
          "(inflated by cProfile)")
    print("\nCPU by thread group (own time of all its functions):")
    for group, (threads, stats) in sorted(groups.items(),
                                          key=lambda g: -sum(v[2] for v in g[1][1].values())):
        own = sum(v[2] for v in stats.values())
        print(f"  {100 * own / total:5.1f} %  {own:6.2f} s  {group} ({threads} thread(s))")
    merged: dict[tuple, list[float]] = {}
    for _, stats in groups.values():
        for key, (_, calls, tottime, cum, _) in stats.items():
            row = merged.setdefault(key, [0, 0.0, 0.0])
            row[0] += calls
            row[1] += tottime
            row[2] += cum
    rows = []
    ours_roots = (str(ROOT / "hub"), str(ROOT / "device"))
    for (path, line, name), (calls, tottime, cum) in merged.items():
        short = "/".join(Path(path).parts[-3 if path.startswith(ours_roots) else -2:]) \
            if path != "~" else ""
        rows.append((tottime, cum, calls, f"{short}:{line} {name}", path.startswith(ours_roots)))
    print("\nfunctions with the most CPU of their own (% of all):")
    for tottime, cum, calls, where, _ in sorted(rows, reverse=True)[:args.top]:
        print(f"  {100 * tottime / total:5.1f} %  {calls / alarms:7.1f} calls/alarm  {where}")
    print("\nhub code by cumulative CPU (% of all; nested calls overlap):")
    ours = [r for r in rows if r[4]]
    for tottime, cum, calls, where, _ in sorted(ours, key=lambda r: -r[1])[:args.top]:
        print(f"  {100 * cum / total:5.1f} %  {calls / alarms:7.1f} calls/alarm  {where}")
    print(f"\n(hub log: {log})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
