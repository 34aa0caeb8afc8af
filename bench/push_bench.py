"""Web Push benchmark: press -> push request leaving the hub, next to press -> first SMS
request, in the same run (the same presses).

    .venv/bin/python bench/push_bench.py [--alarms 200] [--phones 1]

All on loopback, started here: a private mosquitto and redis-server, the local fake
Twilio API, a local push service (tests.pushkit.PushService, answering 201) and one hub
worker process with Web Push keys (HAVEN_PUSH_KEYS). The sample site's emergency policy's
first step pages by ``["call", "sms", "push"]``; ``--phones`` browsers are subscribed for
the Main circulation desk. Emergency alarms are published one at a time on a device's
topic; for each, the time until the fake API received its first Messages request and
until the push service received the first push (each request is timed when the server
has read it). One push per run is decrypted with the subscription's keys (both
http_ece and RFC 8291 written out), so the figure is of pushes a phone could read.
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
from hub.store.push import PushStore, parse_subscription  # noqa: E402
from tests.fake_twilio import FakeTwilio  # noqa: E402
from tests.pushkit import BrowserKeys, PushService, decrypted  # noqa: E402
from tests.engine.test_push import write_keys  # noqa: E402

SITE = ROOT / "deploy" / "examples" / "site.toml"
DESK = "+12065550101"


def push_site(workdir: Path) -> Path:
    """The sample site with push beside call and SMS in the emergency's first step."""
    text = SITE.read_text()
    head, tail = text.split("[[kinds.emergency.step]]", 1)
    tail = tail.replace('channels = ["call", "sms"]', 'channels = ["call", "sms", "push"]', 1)
    path = workdir / "site.toml"
    path.write_text(head + "[[kinds.emergency.step]]" + tail)
    return path


def presses(port: int, fake: FakeTwilio, push: PushService, n: int, warm: int = 20
            ) -> tuple[list[float], list[float]]:
    """Press -> first push request and press -> first SMS request, in ms."""
    pub = client(port, "bench-push")
    time.sleep(0.3)
    to_push, to_sms = [], []
    for i in range(n + warm):
        alarm = new_alarm("main-circ-01", "emergency")
        seen_sms, seen_push = len(fake.accepted("Messages")), push.count()
        start = time.monotonic()
        pub.publish(Topics().alarm(alarm.device), alarm.to_json(), qos=1)
        got = fake.wait_for(seen_sms + 1, timeout=5, resource="Messages")
        pushed = push.wait_for(seen_push + 1, timeout=5)
        if i >= warm:
            to_sms.append((min(r.at for r in got[seen_sms:]) - start) * 1000)
            to_push.append((min(r.at for r in pushed[seen_push:]) - start) * 1000)
        time.sleep(0.05)  # the step's other pages go out before the next press
    pub.loop_stop()
    pub.disconnect()
    return to_push, to_sms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--alarms", type=int, default=200)
    parser.add_argument("--phones", type=int, default=1,
                        help="browsers subscribed for the desk contact")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="haven-push-bench-"))
    keys_dir = workdir / "push-keys"
    write_keys(keys_dir)
    site = push_site(workdir)
    broker = start_mosquitto(workdir / "mosquitto")
    redis_srv = start_redis(workdir / "redis")
    fake = FakeTwilio().start()
    push = PushService()
    store = Store.from_url(redis_srv.url)
    browsers = []
    for i in range(args.phones):
        browser = BrowserKeys()
        PushStore(store).add(parse_subscription(browser.subscription(push.endpoint(f"p{i}")),
                                                DESK, label=f"phone {i}"))
        browsers.append(browser)
    env = dict(os.environ, TWILIO_ACCOUNT_SID=fake.account_sid,
               TWILIO_AUTH_TOKEN=fake.auth_token, TWILIO_FROM_NUMBER="+12065550000",
               HAVEN_TWILIO_API_BASE=fake.url, HAVEN_PUSH_KEYS=str(keys_dir))
    hub = spawn([sys.executable, "-m", "hub.app.cli", "--log-level", "info", "hub", "--site",
                 str(site), "--broker", f"127.0.0.1:{broker.port}", "--redis", redis_srv.url],
                log=workdir / "hub.log", env=env)
    try:
        deadline = time.monotonic() + 30
        while "hub ready" not in (workdir / "hub.log").read_text():
            if time.monotonic() > deadline or hub.poll() is not None:
                raise RuntimeError(f"the hub did not start: see {workdir / 'hub.log'}")
            time.sleep(0.05)
        to_push, to_sms = presses(broker.port, fake, push, args.alarms)
        first = push.received[0]
        readable = decrypted(browsers[int(first.path.rsplit("p", 1)[1])], first)
        assert readable["kind"] == "emergency", readable
    finally:
        store.r.close()
        hub.terminate()
        hub.wait(15)
        push.stop()
        fake.stop()
        broker.stop()
        redis_srv.stop()
    print(f"Web Push benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"{args.phones} subscribed browser(s), aes128gcm + VAPID ES256 per push)")
    print(summary("press -> first push request", to_push))
    print(summary("press -> first SMS request", to_sms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
