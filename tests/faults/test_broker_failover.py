"""kill -9 of one of a site's two brokers mid-stream (issue #17, "No single broker").

Two private mosquittos A and B, one Redis, 2 hub workers each on both brokers
(``--broker A,B``: hub.edges.brokerset), 4 devices running the real firmware on mock pins,
two at home on A (``brokers = [A, B]``) and two on B. They press 40 assist alarms at
20/s; after 15, A is killed with SIGKILL. Then:

- every alarm is confirmed to its device, stored once (one ``raised`` entry) and its
  first round paged once per contact (nothing paged twice);
- A's devices re-home to B (device.brokers: after 2 failed connects), and the time from
  the kill to their reconnection is printed;
- A is started again on its port: its devices go back to it once it has answered their
  probe for a while (shortened here), and an alarm raised there is confirmed.
"""

from __future__ import annotations

import time

import pytest

from device import firmware
from device.config import BrokerConfig, DeviceConfig, InputConfig, WEARABLE_PATTERNS
from device.firmware import DeviceApp
from hub.app.localservices import start_mosquitto
from hub.config.site import load_site
from hub.store.alarms import Store
from tests.faults.harness import PUBLIC_URL, pages, stop, wait_pages, wait_until
from tests.faults.sentinel_kit import DEVICES, RESEND_S, failover_site
from tests.hubproc import start_hub

pytestmark = pytest.mark.faults

COUNT, RATE, KILL_AFTER = 40, 20.0, 15
#: The return-home window and probe period of the test's devices, seconds (30 and 5 live).
HOME_AFTER_S, PROBE_S = 2.0, 0.25


def _devices(pins, workdir, a: int, b: int, confirmed: dict) -> dict[str, DeviceApp]:
    apps = {}
    for n, (pin, device_id) in enumerate(zip(range(5, 9), DEVICES)):
        first, second = (a, b) if n < 2 else (b, a)
        config = DeviceConfig(
            device_id=device_id,
            broker=BrokerConfig(host="127.0.0.1", port=first,
                                alternates=(("127.0.0.1", second),)),
            inputs=(InputConfig(pin, "button", tuple(WEARABLE_PATTERNS.items())),),
            outbox=str(workdir / f"{device_id}.sqlite3"), resend_every_s=RESEND_S)
        app = DeviceApp(config, pin_factory=pins, on_event=lambda event, alarm_id: (
            confirmed.setdefault(alarm_id, time.monotonic()) if event == "received" else None))
        app.brokers.home_after_s = HOME_AFTER_S
        apps[device_id] = app
    return apps


def test_killing_one_of_two_brokers_loses_and_repeats_no_alarm(
        tmp_path, mosquitto, redis_service, fake_twilio, pins, monkeypatch):
    monkeypatch.setattr(firmware, "HOME_PROBE_S", PROBE_S)
    broker_b = start_mosquitto(tmp_path / "mosquitto-b")
    a_port, b_port = mosquitto.port, broker_b.port
    site = failover_site(tmp_path)
    round_pages = sum(1 for c in load_site(site).contacts if "main" in c.branches
                      and c.roles & {"staff", "security"})
    procs, apps = [], {}
    confirmed: dict[str, float] = {}
    try:
        for name in ("w1", "w2"):
            procs.append(start_hub(
                tmp_path / f"{name}.log", mosquitto, redis_service, site=site,
                fake_twilio=fake_twilio, extra_env={"HAVEN_PUBLIC_URL": PUBLIC_URL},
                args=("--hub-id", name, "--broker", f"127.0.0.1:{a_port},127.0.0.1:{b_port}")))
        apps = _devices(pins, tmp_path, a_port, b_port, confirmed)
        for app in apps.values():
            app.start()
        for app in apps.values():
            assert app.connected.wait(10), "a device did not connect"
        on_a = [apps[d] for d in DEVICES[:2]]
        ids, killed_at = [], 0.0
        start = time.monotonic()
        for i in range(COUNT):
            if i == KILL_AFTER:
                mosquitto.kill()
                killed_at = time.monotonic()
            time.sleep(max(0.0, start + i / RATE - time.monotonic()))
            ids.append(list(apps.values())[i % len(apps)].raise_alarm("assist").alarm_id)

        # A's devices re-home to B
        rehomed = []
        for app in on_a:
            wait_until(lambda: app.connected.is_set() and app.brokers.current.port == b_port,
                       20, f"{app.config.device_id} to re-home to broker B")
            rehomed.append(time.monotonic() - killed_at)
        wait_until(lambda: all(a in confirmed for a in ids), 20,
                   f"every alarm confirmed ({len(set(ids) - set(confirmed))} not yet)")
        wait_until(lambda: sum(app.outbox.depth() for app in apps.values()) == 0, 10,
                   "the devices' outboxes to empty")
        store = Store.from_url(redis_service.url)
        raised = {a: sum(1 for e in store.timeline(a) if e["event"] == "raised") for a in ids}
        assert set(raised.values()) == {1}, f"alarms stored other than once: {raised}"

        def first_rounds(ps) -> dict[str, int]:
            keys = {p.key for p in ps if p.attempt == 0}
            return {a: sum(1 for k in keys if k[0] == a) for a in ids}
        found = wait_pages(fake_twilio,
                           lambda ps: set(first_rounds(ps).values()) == {round_pages}, 10,
                           f"every alarm's first round ({round_pages} texts each)")
        keys = [p.key for p in pages(fake_twilio)]
        twice = {k for k in keys if keys.count(k) > 1}
        assert not twice, f"paged more than once: {twice}"

        # A is back: its devices return once it has answered for HOME_AFTER_S
        back = start_mosquitto(tmp_path / "mosquitto", port=a_port)
        restarted_at = time.monotonic()
        try:
            for app in on_a:
                wait_until(lambda: app.connected.is_set() and app.brokers.current.port == a_port,
                           HOME_AFTER_S + 15, f"{app.config.device_id} to go back to broker A")
            returned = time.monotonic() - restarted_at
            late = on_a[0].raise_alarm("assist").alarm_id
            wait_until(lambda: late in confirmed, 10, "an alarm raised back on broker A")
        finally:
            back.stop()
        print(f"\nre-homed to B {min(rehomed):.2f}-{max(rehomed):.2f} s after the kill; "
              f"{len(found)} pages, none twice; back on A {returned:.2f} s after its restart "
              f"(window {HOME_AFTER_S:g} s)")
    finally:
        for app in apps.values():
            app.stop()
        for proc in procs:
            stop(proc)
        broker_b.stop()
