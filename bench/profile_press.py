"""Where the press path spends its time: cProfile of the hub's alarm service, in-process.

    .venv/bin/python bench/profile_press.py [--alarms 500] [--top 25]

The real AlarmService, Store (a private redis-server, append-only file on) and
TwilioNotifier (the real SDK, to the local fake Twilio API), with logging at INFO to
a file as a worker logs; only MQTT is left out (the device's confirmation goes to a
no-op ``publish``). Escalation attempts and sends run inline (a same-thread executor),
so one thread does the whole press -> first page path and the profile sees all of it.

Printed per alarm: CPU ms (this thread, ``time.thread_time``) and wall ms; the
hub's own functions by cumulative time (wall and CPU); the functions with the most
CPU of their own (library code included); and the Redis commands per alarm
(``INFO commandstats``), each a round trip unless pipelined.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import sys
import tempfile
import time
from concurrent.futures import Executor, Future
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchsite import site_from_contacts  # noqa: E402
from device.protocol import Topics, new_alarm  # noqa: E402
from hub.localservices import start_redis  # noqa: E402
from hub.metrics import Metrics  # noqa: E402
from hub.notify import TwilioNotifier  # noqa: E402
from hub.service import AlarmService  # noqa: E402
from hub.site import parse_site  # noqa: E402
from hub.store import Store  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

FROM = "+12065559999"
DEVICES = [f"bench-dev-{i:03d}" for i in range(10)]


class Inline(Executor):
    """Runs each submitted call at once, in the caller's thread."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool does
            future.set_exception(exc)
        return future


def commandstats(store: Store) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in store.r.info("commandstats").items()}


def profile(alarms: int, workdir: Path, timer) -> tuple[pstats.Stats, float, dict[str, int]]:
    """Profile ``alarms`` presses; returns (stats, seconds per alarm by ``timer``, Redis
    commands per alarm by name)."""
    site = parse_site(site_from_contacts({"default": ["+15005550100"]}, DEVICES), "bench")
    redis_srv = start_redis(workdir / f"redis-{timer.__name__}")
    fake = FakeTwilio().start()
    store = Store.from_url(redis_srv.url)
    try:
        notifier = TwilioNotifier(fake.account_sid, fake.auth_token, from_number=FROM,
                                  api_base=fake.url)
        service = AlarmService(site, store, notifier, lambda topic, payload: None, Inline(),
                               escalators=Inline(), metrics=Metrics(),
                               public_url="https://haven.bench.invalid")
        topics = Topics()

        def press(i: int) -> None:
            alarm = new_alarm(DEVICES[i % len(DEVICES)], "emergency")
            service.handle(topics.alarm(alarm.device), alarm.to_json())

        for i in range(50):  # warm-up: connections, lazy imports, Lua scripts loaded
            press(i)
        before = commandstats(store)
        profiler = cProfile.Profile(timer)
        start = timer()
        profiler.enable()
        for i in range(alarms):
            press(i)
        profiler.disable()
        per_alarm = (timer() - start) / alarms
        after = commandstats(store)
        if len(fake.accepted()) != 50 + alarms:
            raise RuntimeError(f"expected {50 + alarms} SMS, the fake accepted "
                               f"{len(fake.accepted())}")
        commands = {k: (after[k] - before.get(k, 0)) / alarms for k in after
                    if k != "info" and after[k] != before.get(k, 0)}
        return pstats.Stats(profiler), per_alarm, commands
    finally:
        store.r.close()
        fake.stop()
        redis_srv.stop()


def ours(stats: pstats.Stats, alarms: int, top: int) -> list[str]:
    """The hub's own functions, by cumulative ms per alarm."""
    rows = []
    for (path, line, name), (_, calls, _, cum, _) in stats.stats.items():
        if "/hub/" in path or "/device/" in path:
            rows.append((cum / alarms * 1000, calls / alarms,
                         f"{Path(path).parent.name}/{Path(path).name}:{line} {name}"))
    rows.sort(reverse=True)
    return [f"  {ms:8.3f} ms  {calls:6.1f} calls  {where}" for ms, calls, where in rows[:top]]


def own_time(stats: pstats.Stats, alarms: int, top: int) -> list[str]:
    rows = []
    for (path, line, name), (_, calls, tottime, _, _) in stats.stats.items():
        short = "/".join(Path(path).parts[-2:]) if path != "~" else ""
        rows.append((tottime / alarms * 1000, calls / alarms, f"{short}:{line} {name}"))
    rows.sort(reverse=True)
    return [f"  {ms:8.3f} ms  {calls:6.1f} calls  {where}" for ms, calls, where in rows[:top]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=500)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haven-profile-"))
    logging.basicConfig(level=logging.INFO, filename=str(workdir / "hub.log"),
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    cpu_stats, cpu, commands = profile(args.alarms, workdir, time.thread_time)
    wall_stats, wall, _ = profile(args.alarms, workdir, time.perf_counter)
    print(f"press path, {args.alarms} alarms, one SMS each, in-process (profiler overhead "
          f"included): {cpu * 1000:.3f} ms CPU and {wall * 1000:.3f} ms wall per alarm")
    print(f"Redis commands per alarm: {sum(commands.values()):.1f} ("
          + ", ".join(f"{k} {v:g}" for k, v in sorted(commands.items(), key=lambda kv: -kv[1]))
          + ")")
    print("\nhub and device code, cumulative WALL per alarm:")
    print("\n".join(ours(wall_stats, args.alarms, args.top)))
    print("\nhub and device code, cumulative CPU per alarm:")
    print("\n".join(ours(cpu_stats, args.alarms, args.top)))
    print("\nfunctions with the most CPU of their own, per alarm (library code included):")
    print("\n".join(own_time(cpu_stats, args.alarms, args.top)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
