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

import redis.connection

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.benchsite import site_from_contacts  # noqa: E402
from device.protocol import Topics, new_alarm  # noqa: E402
from hub.engine.groupcommit import GroupCommit  # noqa: E402
from hub.app.localservices import start_redis  # noqa: E402
from hub.edges.metrics import Metrics  # noqa: E402
from hub.edges.notify import TwilioNotifier  # noqa: E402
from hub.engine.service import AlarmService  # noqa: E402
from hub.config.site import parse_site  # noqa: E402
from hub.store.alarms import Store  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

FROM = "+12065559999"
DEVICES = [f"bench-dev-{i:03d}" for i in range(10)]


def quiet_fake() -> FakeTwilio:
    """The fake Twilio API without its status callbacks: they would go to the (unreachable)
    public URL from threads of this process, and their DNS lookups and retries would be
    measured as the press path's time."""
    fake = FakeTwilio()
    fake._post_statuses = lambda *args: None
    return fake.start()


class Inline(Executor):
    """Runs each submitted call at once, in the caller's thread."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - handed to the future, as a pool does
            future.set_exception(exc)
        return future


class Stages:
    """Low-overhead timing of the press path's stages: wraps chosen callables so each call
    adds its CPU (this thread) and wall time to its stage. Only the outermost wrapped call
    counts, so a store method calling another is not counted twice."""

    def __init__(self):
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._depth = 0

    def wrap(self, owner, name: str, stage: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            if self._depth:
                return fn(*args, **kwargs)
            self._depth += 1
            c0, w0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                self.cpu[stage] = self.cpu.get(stage, 0.0) + time.thread_time() - c0
                self.wall[stage] = self.wall.get(stage, 0.0) + time.perf_counter() - w0
        setattr(owner, name, timed)

    def wrap_public(self, obj, stage_prefix: str) -> None:
        for name in dir(obj):
            if not name.startswith("_") and callable(getattr(obj, name)) \
                    and not isinstance(getattr(type(obj), name, None), (staticmethod, type)):
                self.wrap(obj, name, f"{stage_prefix}{name}")


def stages(alarms: int, workdir: Path) -> tuple[dict[str, float], dict[str, float], float, float]:
    """(CPU s, wall s) per stage per alarm, and total CPU and wall per alarm, unprofiled."""
    import device.protocol
    import hub.engine.intake
    import hub.engine.service
    site = parse_site(site_from_contacts({"default": ["+15005550100"]}, DEVICES), "bench")
    redis_srv = start_redis(workdir / "redis-stages")
    fake = quiet_fake()
    store = Store.from_url(redis_srv.url)
    timing = Stages()
    saved = [(hub.engine.intake, "decode_alarm"), (hub.engine.service, "plan")]
    saved = [(module, name, getattr(module, name)) for module, name in saved]
    try:
        notifier = TwilioNotifier(fake.account_sid, fake.auth_token, from_number=FROM,
                                  api_base=fake.url)
        metrics = Metrics()
        service = AlarmService(site, store, notifier, lambda topic, payload: None, Inline(),
                               escalators=Inline(), metrics=metrics,
                               public_url="https://haven.bench.invalid")
        topics = Topics()
        payloads = []
        for i in range(50 + alarms):
            alarm = device.protocol.new_alarm(DEVICES[i % len(DEVICES)], "emergency")
            payloads.append((topics.alarm(alarm.device), alarm.to_json()))
        for topic, payload in payloads[:50]:
            service.handle(topic, payload)
        timing.wrap_public(store, "redis: ")
        service.records = GroupCommit(store.pages.record_many)  # through the wrapper
        timing.wrap(notifier, "send_sms", "twilio SDK + HTTP round trip")
        timing.wrap_public(metrics, "metrics: ")
        timing.wrap(hub.engine.intake, "decode_alarm", "decode + validate JSON")
        timing.wrap(hub.engine.service, "plan", "plan (who, texts)")
        for handler in logging.getLogger().handlers:
            timing.wrap(handler, "handle", "logging (INFO, to a file)")
        sends = [0]
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(self, *args, **kwargs):
            sends[0] += 1
            return send(self, *args, **kwargs)
        redis.connection.AbstractConnection.send_packed_command = counted
        c0, w0 = time.thread_time(), time.perf_counter()
        try:
            for topic, payload in payloads[50:]:
                service.handle(topic, payload)
        finally:
            redis.connection.AbstractConnection.send_packed_command = send
        cpu, wall = (time.thread_time() - c0) / alarms, (time.perf_counter() - w0) / alarms
        timing.cpu["(Redis round trips, count)"] = sends[0]
        return ({k: v / alarms for k, v in timing.cpu.items()},
                {k: v / alarms for k, v in timing.wall.items()}, cpu, wall)
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
        store.r.close()
        fake.stop()
        redis_srv.stop()


def commandstats(store: Store) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): int(v["calls"])
            for name, v in store.r.info("commandstats").items()}


def profile(alarms: int, workdir: Path, timer) -> tuple[pstats.Stats, float, dict[str, int]]:
    """Profile ``alarms`` presses; returns (stats, seconds per alarm by ``timer``, Redis
    commands per alarm by name)."""
    site = parse_site(site_from_contacts({"default": ["+15005550100"]}, DEVICES), "bench")
    redis_srv = start_redis(workdir / f"redis-{timer.__name__}")
    fake = quiet_fake()
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
    stage_cpu, stage_wall, total_cpu, total_wall = stages(args.alarms, workdir)
    print(f"press path, {args.alarms} alarms, one SMS each, in-process, NOT profiled: "
          f"{total_cpu * 1000:.3f} ms CPU, {total_wall * 1000:.3f} ms wall per alarm; by stage "
          "(ms per alarm, CPU / wall):")
    print(f"  Redis round trips per alarm: {stage_cpu.pop('(Redis round trips, count)'):.1f}")
    for stage in sorted(stage_cpu, key=lambda k: -stage_cpu[k]):
        print(f"  {stage_cpu[stage] * 1000:7.3f} / {stage_wall[stage] * 1000:7.3f}  {stage}")
    rest_cpu = total_cpu - sum(stage_cpu.values())
    rest_wall = total_wall - sum(stage_wall.values())
    print(f"  {rest_cpu * 1000:7.3f} / {rest_wall * 1000:7.3f}  everything else (the service's "
          "own code, executors, models)\n")
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
