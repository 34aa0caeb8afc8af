"""A replicated Haven for the failover test and bench: Redis primary + replicas + Sentinels,
hub workers on them, and devices running the real firmware on mock pins.

Used by tests/faults/test_sentinel_failover.py (60 alarms) and bench/failover_bench.py
(300): devices press at ``rate`` alarms a second, the primary is killed with SIGKILL
mid-stream, and :class:`Run` holds what each side saw.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from device.config import WEARABLE_PATTERNS, BrokerConfig, DeviceConfig, InputConfig
from device.firmware import DeviceApp
from hub.app.replicaset import ReplicaSet
from hub.store.alarms import Store
from tests.conftest import SAMPLE_SITE, write_site
from tests.faults.harness import Page, pages, stop, worker

#: The main branch's devices (a staffed branch: assist pages staff and security by SMS).
DEVICES = ["main-circ-01", "main-ref-01", "main-child-01", "main-work-01"]
#: Seconds between an assist alarm's rounds in the test site (60 s in the sample).
ROUND_S = 5
#: How often a device resends an unconfirmed alarm, in seconds (5 s by default).
RESEND_S = 1.0


def failover_site(tmp_path: Path) -> Path:
    """The sample site with assist as one SMS step every ROUND_S seconds."""
    text = SAMPLE_SITE.read_text().replace(
        'notify = ["staff", "security"]\ncancel_window_s = 10',
        'cancel_window_s = 10\n\n  [[kinds.assist.step]]\n  notify = ["staff", "security"]\n'
        f'  channels = ["sms"]\n  wait_s = {ROUND_S}\n')
    assert "[[kinds.assist.step]]" in text, "the sample site's assist kind changed"
    path = tmp_path / "site.toml"
    write_site(path, text)
    return path


@dataclass
class Devices:
    """Devices running the firmware, each recording when the hub confirmed its alarms."""

    apps: dict[str, DeviceApp]
    confirmed: dict[str, float] = field(default_factory=dict)   # alarm id -> monotonic
    cond: threading.Condition = field(default_factory=threading.Condition)

    @classmethod
    def start(cls, pins, broker_port: int, workdir: Path) -> "Devices":
        devices = cls({})
        for pin, device_id in enumerate(DEVICES, start=5):
            config = DeviceConfig(
                device_id=device_id,
                broker=BrokerConfig(host="127.0.0.1", port=broker_port),
                inputs=(InputConfig(pin, "button", tuple(WEARABLE_PATTERNS.items())),),
                outbox=str(workdir / f"{device_id}.sqlite3"), resend_every_s=RESEND_S)
            devices.apps[device_id] = DeviceApp(config, pin_factory=pins,
                                                on_event=devices._on_event)
        for app in devices.apps.values():
            app.start()
        for app in devices.apps.values():
            assert app.connected.wait(10), "a device did not connect"
        return devices

    def _on_event(self, event: str, alarm_id: str) -> None:
        if event == "received":
            with self.cond:
                self.confirmed.setdefault(alarm_id, time.monotonic())
                self.cond.notify_all()

    def wait_confirmed(self, alarm_ids, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            return self.cond.wait_for(lambda: all(a in self.confirmed for a in alarm_ids),
                                      max(0.0, deadline - time.monotonic()))

    def pending(self) -> int:
        return sum(app.outbox.depth() for app in self.apps.values())

    def stop(self) -> None:
        for app in self.apps.values():
            app.stop()


@dataclass
class Run:
    alarm_ids: list[str]
    killed_at: float                  # monotonic
    confirmed_before_kill: set[str]
    kill_after: int                   # alarm_ids[kill_after:] were raised after the kill


def workers(n: int, tmp_path: Path, site: Path, mosquitto, replica_set: ReplicaSet,
            fake_twilio) -> list:
    """``n`` hub workers on the replica set through Sentinel; ``[(process, log)]``."""
    env = replica_set.env()
    url = SimpleNamespace(url=env["HAVEN_REDIS_URL"])
    return [worker(f"w{i + 1}", tmp_path, site, mosquitto, url, fake_twilio, extra_env=env)
            for i in range(n)]


def press_and_kill(devices: Devices, replica_set: ReplicaSet, *, count: int, rate: float,
                   kill_after: int) -> Run:
    """Raise ``count`` assist alarms round-robin at ``rate`` a second (the firmware's own
    raise: outbox, publish, resend); SIGKILL the primary after ``kill_after`` of them."""
    apps = [devices.apps[d] for d in DEVICES]
    ids, killed_at, confirmed = [], 0.0, set()
    start = time.monotonic()
    for i in range(count):
        if i == kill_after:
            with devices.cond:
                confirmed = set(devices.confirmed)
            replica_set.primary().kill()
            killed_at = time.monotonic()
        time.sleep(max(0.0, start + i / rate - time.monotonic()))
        ids.append(apps[i % len(apps)].raise_alarm("assist").alarm_id)
    return Run(ids, killed_at, confirmed, kill_after)


def failover_gap(found: list[Page], run: Run) -> tuple[float, float, float]:
    """(last page before the kill, first page of an alarm raised after it, gap), monotonic
    seconds. Such an alarm is paged only once stored, on the new primary; a page sent just
    after the kill by a sender holding its claim from before does not end the gap."""
    after_kill = set(run.alarm_ids[run.kill_after:])
    before = max(p.at for p in found if p.at <= run.killed_at)
    after = min(p.at for p in found if p.alarm_id in after_kill)
    return before, after, after - before


def page_counts(fake_twilio) -> collections.Counter:
    return collections.Counter(p.key for p in pages(fake_twilio))


def stored_after(replica_set: ReplicaSet, alarm_ids) -> list[str]:
    """The alarms the (new) primary does not hold."""
    store = Store.from_url(replica_set.target())
    try:
        return [a for a in alarm_ids if store.get_alarm(a) is None]
    finally:
        store.r.close()


def stop_all(procs) -> None:
    for proc, _ in procs:
        stop(proc)
