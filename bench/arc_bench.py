"""ARC benchmark: press -> ACK from a DC-09 receiver, next to press -> first SMS request,
in the same run; and receiver stopped -> trouble shown.

    .venv/bin/python bench/arc_bench.py [--alarms 300] [--encrypted]

All on loopback, started here: a private mosquitto and redis-server, the local fake
Twilio API, a pysiaalarm receiver (the ARC) and one hub worker process with ``[arc]``.
Emergency alarms are published one at a time on a device's topic; for each, the time
until the receiver has ACKed its PA event (pysiaalarm's callback runs just after it
sends the ACK) and until the fake Twilio API received its first Messages request. Then
the receiver is stopped and the time until ``haven:arc:trouble`` names it (what the
board shows) is measured, with ``supervision_s = 10``. Last, the same presses against a
hub without ``[arc]`` (fresh servers): the SMS figure the ARC must not change.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.device_bench import summary  # noqa: E402
from bench.hub_bench import client  # noqa: E402
from device.protocol import Topics, new_alarm  # noqa: E402
from hub.app.localservices import spawn, start_mosquitto, start_redis  # noqa: E402
from hub.store.alarms import Store  # noqa: E402
from tests.arc_kit import TEXT_KEY, Receiver  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

SITE = ROOT / "deploy" / "examples" / "site.toml"
SUPERVISION_S = 10


def arc_site(workdir: Path, port: int, encrypted: bool) -> Path:
    path = workdir / "site.toml"
    path.write_text(SITE.read_text() + f"""
[arc]
accounts = {{ main = "1001", westside = "1002" }}
kinds = {{ emergency = "panic" }}
supervision_s = {SUPERVISION_S}
[[arc.receiver]]
host = "127.0.0.1"
port = {port}
""" + ('key_env = "HAVEN_ARC_KEY"\nkey_format = "text"\n' if encrypted else ""))
    return path


def presses(port: int, fake: FakeTwilio, arc: Receiver | None, n: int,
            warm: int = 20) -> tuple[list[float], list[float]]:
    """Press -> receiver's ACK and press -> first SMS request, in ms (no ARC: [] and SMS)."""
    pub = client(port, "bench-arc")
    time.sleep(0.3)
    to_ack, to_sms = [], []
    for i in range(n + warm):
        alarm = new_alarm("main-circ-01", "emergency")
        seen = len(fake.accepted("Messages"))
        heard = len(arc.arrived) if arc else 0
        start = time.monotonic()
        pub.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        got = fake.wait_for(seen + 1, timeout=5, resource="Messages")
        deadline = time.monotonic() + 5
        while arc and not (acks := [at for at, e in arc.arrived[heard:] if e.code == "PA"]):
            if time.monotonic() > deadline:
                raise RuntimeError("the ARC did not receive the alarm within 5 s")
            time.sleep(0.0005)
        if i >= warm:
            if arc:
                to_ack.append((acks[0] - start) * 1000)
            to_sms.append((min(r.at for r in got[seen:]) - start) * 1000)
        time.sleep(0.05)  # the step's other pages go out before the next press
    pub.loop_stop()
    pub.disconnect()
    return to_ack, to_sms


def trouble_after_stop(arc: Receiver, store: Store) -> float:
    arc.stop()
    stopped = time.monotonic()
    while "primary" not in store.r.hgetall("haven:arc:trouble"):
        if time.monotonic() - stopped > 3 * SUPERVISION_S:
            raise RuntimeError("no trouble within three supervision intervals")
        time.sleep(0.01)
    return time.monotonic() - stopped


def run(workdir: Path, site: Path, arc: Receiver | None, n: int
        ) -> tuple[list[float], list[float], float | None]:
    """A fresh broker, Redis, fake Twilio and hub on ``site``; ``n`` presses, then (with
    ``arc``) the receiver stopped. Returns (to ACK, to first SMS, to trouble in s)."""
    workdir.mkdir(parents=True)
    broker = start_mosquitto(workdir / "mosquitto")
    redis_srv = start_redis(workdir / "redis")
    fake = FakeTwilio().start()
    env = dict(os.environ, TWILIO_ACCOUNT_SID=fake.account_sid,
               TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_FROM_NUMBER="+12065550000",
               HAVEN_TWILIO_API_BASE=fake.url, HAVEN_ARC_KEY=TEXT_KEY)
    hub = spawn([sys.executable, "-m", "hub.app.cli", "--log-level", "warning", "hub", "--site",
                 str(site), "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url],
                log=workdir / "hub.log", env=env)
    store = Store.from_url(redis_srv.url)
    try:
        time.sleep(1.5)
        to_ack, to_sms = presses(broker.port, fake, arc, n)
        trouble_s = trouble_after_stop(arc, store) if arc else None
    finally:
        store.r.close()
        hub.terminate()
        hub.wait(15)
        fake.stop()
        broker.stop()
        redis_srv.stop()
    return to_ack, to_sms, trouble_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=300)
    parser.add_argument("--encrypted", action="store_true", help="AES (a text key)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haven-arc-bench-"))
    arc = Receiver(key=TEXT_KEY if args.encrypted else None)
    with_arc = arc_site(workdir, arc.port, args.encrypted)
    to_ack, to_sms, trouble_s = run(workdir / "arc", with_arc, arc, args.alarms)
    _, baseline, _ = run(workdir / "plain", SITE, None, args.alarms)
    print(f"ARC benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{'AES' if args.encrypted else 'plain'} SIA-DCS over TCP)")
    print(summary("press -> ARC receiver's ACK", to_ack))
    print(summary("press -> first SMS request", to_sms))
    print(summary("... same, hub without [arc]", baseline))
    print(f"receiver stopped -> trouble shown   {trouble_s:.2f} s "
          f"(supervision_s = {SUPERVISION_S})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
