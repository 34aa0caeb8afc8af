"""Failover benchmark: kill -9 of the Redis primary while devices press 300 alarms at 20/s.

    .venv/bin/python bench/failover_bench.py [--alarms 300] [--rate 20] [--kill-after 100]
                                             [--workers 2] [--runs 1]

The set-up of tests/faults/test_sentinel_failover.py (tests/faults/sentinel_kit.py), at
full size: a private mosquitto, 1 Redis primary + 2 replicas + 3 Sentinels (Debian's
redis-server; ``down-after-milliseconds 1000``), N ``haven hub`` workers reaching the
primary through Sentinel and waiting for 1 replica before confirming, the local fake
Twilio API, and 4 devices running the real firmware on gpiozero mock pins (resending
unconfirmed alarms every second).

Reported per run: the failover gap (last page accepted before the kill -> first after),
how long after the kill the first alarm was confirmed to a device again, alarms lost
(confirmed to a device but missing on the new primary), alarms never confirmed, pages
sent twice, and whether every alarm raised before the kill got its next round.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gpiozero.pins.mock import MockFactory  # noqa: E402

from hub.app.localservices import start_mosquitto  # noqa: E402
from hub.app.replicaset import start_replica_set  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402
from tests.faults.harness import pages  # noqa: E402
from tests.faults.sentinel_kit import (ROUND_S, Devices, failover_gap, failover_site,  # noqa: E402
                                       page_counts, press_and_kill, stop_all, stored_after,
                                       workers)


def one_run(args, workdir: Path) -> dict:
    mosquitto = start_mosquitto(workdir / "mosquitto")
    fake = FakeTwilio().start()
    replica_set = start_replica_set(workdir / "redis")
    pins = MockFactory()
    procs, devices = [], None
    try:
        procs = workers(args.workers, workdir, failover_site(workdir), mosquitto, replica_set,
                        fake)
        devices = Devices.start(pins, mosquitto.port, workdir / "outbox")
        run = press_and_kill(devices, replica_set, count=args.alarms, rate=args.rate,
                             kill_after=args.kill_after)
        all_confirmed = devices.wait_confirmed(run.alarm_ids, 60)
        after_kill = sorted(t - run.killed_at for a, t in devices.confirmed.items()
                            if t > run.killed_at)
        before = set(run.alarm_ids[:args.kill_after])
        deadline = time.monotonic() + ROUND_S + 15
        while time.monotonic() < deadline and not before <= {
                p.alarm_id for p in pages(fake) if p.attempt == 1}:
            time.sleep(0.1)
        round1 = before <= {p.alarm_id for p in pages(fake) if p.attempt == 1}
        counts = page_counts(fake)
        ids = set(run.alarm_ids)
        paged = {k[0] for k in counts if k[1] == 0}
        last, first, gap = failover_gap(pages(fake), run)
        return {"gap_s": gap, "page_before_kill_s": run.killed_at - last,
                "page_after_kill_s": first - run.killed_at,
                "first_confirm_after_kill_s": after_kill[0] if after_kill else None,
                "confirmed_before_kill": len(run.confirmed_before_kill),
                "lost": len(stored_after(replica_set, run.confirmed_before_kill)),
                "missing": len(stored_after(replica_set, run.alarm_ids)),
                "never_confirmed": len(ids - set(devices.confirmed)) if not all_confirmed else 0,
                "unpaged": len(ids - paged),
                "paged_twice": sum(1 for n in counts.values() if n > 1),
                "twice": [(k[0][:8], k[1], round(min(p.at for p in pages(fake) if p.key == k)
                                                - run.killed_at, 3))
                          for k, n in counts.items() if n > 1],
                "round_1_continued": round1,
                "failovers": len(replica_set.failovers())}
    finally:
        if devices is not None:
            devices.stop()
        pins.close()
        stop_all(procs)
        replica_set.stop()
        fake.stop()
        mosquitto.stop()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alarms", type=int, default=300)
    p.add_argument("--rate", type=float, default=20.0, help="alarms a second")
    p.add_argument("--kill-after", type=int, default=100,
                   help="SIGKILL the primary after this many alarms")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--runs", type=int, default=1)
    args = p.parse_args(argv)
    print(f"{args.alarms} alarms at {args.rate:g}/s from 4 firmware devices, {args.workers} "
          f"workers, primary killed after {args.kill_after}")
    ok = True
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="haven-failover-") as tmp:
            result = one_run(args, Path(tmp))
        print(f"run {i + 1}: " + ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in result.items()
            if k != "twice" or v))
        ok &= (result["lost"] == result["missing"] == result["unpaged"]
               == result["paged_twice"] == result["never_confirmed"] == 0
               and result["round_1_continued"])
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
