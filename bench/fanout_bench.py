"""Fan-out benchmark: one escalation step to 20 contacts, the API answering after 250 ms.

    .venv/bin/python bench/fanout_bench.py [--trials 5] [--delay-ms 250]

A private mosquitto, redis-server, the local fake Twilio API (answering every
request after ``--delay-ms``) and a hub worker sending through the real twilio
SDK. An alarm whose kind pages 20 contacts is published; reported: the time
from the publish until the 20th request reaches the API, and until all 20 are
answered (median of the trials). In the same run, the same 20 messages sent one
after another through the same SDK client: what serial sending costs.
Targets (issue #5): 20th request <= 15 ms, all answered <= 300 ms.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hub_bench import client  # noqa: E402
from device.protocol import Topics, new_alarm  # noqa: E402
from hub.app.localservices import spawn, start_mosquitto, start_redis  # noqa: E402
from hub.edges.notify import TwilioNotifier  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402

SITE = ROOT / "deploy" / "examples" / "site.toml"
FROM = "+12065550000"
CONTACTS = 20


def fanout_site(path: Path) -> list[str]:
    phones = [f"+120655520{i:02d}" for i in range(CONTACTS)]
    extra = ["", "[kinds.fanout]", 'label = "Fan-out test"', 'notify = ["fanout"]', ""]
    for i, phone in enumerate(phones):
        extra += ["[[contact]]", f'name = "Responder {i + 1}"', f'phone = "{phone}"',
                  'branches = ["main", "westside"]', 'roles = ["fanout"]', ""]
    text = SITE.read_text().replace("[kinds.test]", "\n".join(extra) + "\n[kinds.test]", 1)
    path.write_text(text)
    return phones


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--delay-ms", type=float, default=250)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haven-bench-"))
    site = workdir / "site.toml"
    phones = fanout_site(site)
    broker = start_mosquitto(workdir / "mosquitto")
    redis_srv = start_redis(workdir / "redis")
    fake = FakeTwilio(delay_s=args.delay_ms / 1000).start()
    env = dict(os.environ, TWILIO_ACCOUNT_SID=fake.account_sid,
               TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_FROM_NUMBER=FROM,
               HAVEN_TWILIO_API_BASE=fake.url)
    hub = spawn([sys.executable, "-m", "hub.app.cli", "--log-level", "warning", "hub", "--site",
                 str(site), "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url],
                log=workdir / "hub.log", env=env)
    pub = client(broker.port, "bench-fanout")
    twentieth, answered = [], []
    try:
        time.sleep(1.5)
        for _ in range(args.trials + 1):  # the first warms connections up, not counted
            seen = len(fake.requests)
            alarm = new_alarm("main-circ-01", "fanout")
            start = time.monotonic()
            pub.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
            got = fake.wait_for(seen + CONTACTS, timeout=10)[seen:]
            if len(got) < CONTACTS:
                raise RuntimeError(f"only {len(got)} of {CONTACTS} requests arrived")
            deadline = time.monotonic() + 10
            while any(r.answered == 0 for r in got) and time.monotonic() < deadline:
                time.sleep(0.002)
            twentieth.append((max(r.at for r in got) - start) * 1000)
            answered.append((max(r.answered for r in got) - start) * 1000)
            time.sleep(0.5)
        twentieth, answered = twentieth[1:], answered[1:]
        serial = TwilioNotifier(fake.account_sid, fake.auth_token, from_number=FROM,
                                api_base=fake.url)
        seen = len(fake.requests)
        start = time.monotonic()
        for phone in phones:
            serial.send_sms(phone, "serial baseline")
        got = fake.requests[seen:]
        serial_20th = (max(r.at for r in got) - start) * 1000
        serial_all = (time.monotonic() - start) * 1000
    finally:
        pub.loop_stop()
        pub.disconnect()
        hub.terminate()
        hub.wait(15)
        fake.stop()
        broker.stop()
        redis_srv.stop()
    print(f"Fan-out benchmark: {CONTACTS} contacts, API answering after {args.delay_ms:.0f} ms "
          f"({os.cpu_count()} cores), median of {args.trials}")
    print(f"  Haven:  publish -> 20th request {statistics.median(twentieth):7.1f} ms "
          f"(target <= 15)   -> all answered {statistics.median(answered):7.1f} ms "
          f"(target <= 300)")
    print(f"  serial: start -> 20th request {serial_20th:7.1f} ms             -> all answered "
          f"{serial_all:7.1f} ms   (theory {CONTACTS} x {args.delay_ms:.0f} = "
          f"{CONTACTS * args.delay_ms:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
