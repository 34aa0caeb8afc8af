"""What every fault test needs: a fast site, hub workers, and the three promises checked.

The promises, after any fault (issue #9):

1. **No alarm lost**: every alarm a device raised is stored and paged.
2. **Nothing paged twice**: at most one request Twilio accepted per notification key
   ``(alarm, attempt, contact, channel)``. Hubs run with ``HAVEN_PUBLIC_URL`` set, so
   every page carries its key in its ``StatusCallback`` URL; the fake API records it.
3. **Escalation resumes within 5 s** of the fault's end (or of the attempt's due time,
   when that is later).

Times are ``time.monotonic()`` of this test process, like the fake's ``Request.at``.
"""

from __future__ import annotations

import collections
import os
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from hub.app.localservices import free_port
from hub.store.alarms import Store
from tests.conftest import SAMPLE_SITE, write_site
from tests.hubproc import start_hub

#: The promise: pages flow again this long after a fault ends, in seconds.
RESUME_S = 5.0
#: The fast policies' wait between attempts, in seconds (60 in the sample site).
WAIT_S = 5


def fast_site(tmp_path: Path, wait_s: int = WAIT_S) -> Path:
    """The sample site with every step ``wait_s`` apart; returns its path."""
    path = tmp_path / "site.toml"
    write_site(path, SAMPLE_SITE.read_text().replace("wait_s = 60", f"wait_s = {wait_s}"))
    return path


#: Where status callbacks go: a closed port (the fault tests read keys, not statuses).
PUBLIC_URL = f"http://127.0.0.1:{free_port()}"


def worker(name: str, tmp_path: Path, site: Path, mosquitto, redis_service, fake_twilio,
           **kwargs):
    """A hub worker sending through ``fake_twilio`` with keys in every page; returns
    ``(process, log path)``."""
    log = tmp_path / f"{name}.log"
    env = {"HAVEN_PUBLIC_URL": PUBLIC_URL, **kwargs.pop("extra_env", {})}
    proc = start_hub(log, mosquitto, redis_service, site=site, fake_twilio=fake_twilio,
                     extra_env=env, args=("--hub-id", name), **kwargs)
    return proc, log


def stop(proc) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(15)


def publisher(mosquitto, client_id: str = "presses") -> mqtt.Client:
    """A raw MQTT client standing in for devices (QoS 1, like the firmware)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", mosquitto.port)
    client.loop_start()
    return client


@dataclass(frozen=True)
class Page:
    """One request the fake API accepted, with the notification key it carried."""

    alarm_id: str
    attempt: int
    to: str
    channel: str
    at: float          # monotonic, at receipt

    @property
    def key(self) -> tuple[str, int, str, str]:
        return self.alarm_id, self.attempt, self.to, self.channel


def pages(fake_twilio) -> list[Page]:
    """Every accepted alarm page (calls and texts), oldest first. Device-trouble texts to
    IT carry no key and are left out."""
    with fake_twilio._cond:
        requests = [r for r in fake_twilio.requests if r.status == 201]
    found = []
    for r in requests:
        url = r.form.get("StatusCallback")
        if not url:
            continue
        alarm_id, attempt, to, channel = parse_qs(urlsplit(url).query)["key"][0].split(":")
        found.append(Page(alarm_id, int(attempt), to, channel, r.at))
    return found


def wait_pages(fake_twilio, until, timeout: float, what: str) -> list[Page]:
    """Wait until ``until(pages)`` holds; fails naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        found = pages(fake_twilio)
        if until(found):
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {len(found)} pages"
        with fake_twilio._cond:
            fake_twilio._cond.wait(0.05)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)
    return value


# --- the promises -----------------------------------------------------------------------

def assert_nothing_paged_twice(fake_twilio) -> collections.Counter:
    """Promise 2; returns the per-key counts."""
    counts = collections.Counter(p.key for p in pages(fake_twilio))
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"paged more than once for the same (alarm, attempt, to, channel): {twice}"
    return counts


def assert_none_lost(store: Store, fake_twilio, alarm_ids) -> None:
    """Promise 1: each alarm stored, and someone accepted a page for it."""
    paged = {p.alarm_id for p in pages(fake_twilio)}
    missing = [a for a in alarm_ids if store.get_alarm(a) is None]
    assert not missing, f"alarms never stored: {missing}"
    unpaged = [a for a in alarm_ids if a not in paged]
    assert not unpaged, f"alarms stored but nobody paged: {unpaged}"


def assert_resumed(fake_twilio, alarm_id: str, after: float, *,
                   due: float | None = None) -> float:
    """Promise 3: the alarm's first page received after monotonic ``after`` came within
    RESUME_S of ``max(after, due)``; returns how long after that it came, in seconds."""
    start = max(after, due or after)
    timeout = max(0.0, start + RESUME_S - time.monotonic()) + 2.0
    got = wait_pages(fake_twilio, lambda ps: any(p.alarm_id == alarm_id and p.at > after
                                                 for p in ps), timeout,
                     f"alarm {alarm_id[:8]} paged again within {RESUME_S:.0f} s of the fault")
    first = first_after(got, alarm_id, after)
    test = os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    RESUMED.append((test, first - start))
    assert first - start <= RESUME_S, \
        f"alarm {alarm_id[:8]}: escalation resumed {first - start:.2f} s after the fault"
    return first - start


def first_after(found: list[Page], alarm_id: str, after: float) -> float:
    return min(p.at for p in found if p.alarm_id == alarm_id and p.at > after)


#: Every resumption measured in this process: (test, seconds); printed by the faults conftest.
RESUMED: list[tuple[str, float]] = []


def due_monotonic(store: Store, alarm_id: str) -> float | None:
    """When the alarm's next attempt (or its dead worker's lease) is due, as monotonic."""
    due_ms = store.escalation_due(alarm_id)
    if due_ms is None:
        return None
    return time.monotonic() + (due_ms / 1000 - time.time())


def attempts_run(store: Store, alarm_id: str) -> list[int]:
    return [int(e["attempt"]) for e in store.timeline(alarm_id) if e["event"] == "escalation"]
