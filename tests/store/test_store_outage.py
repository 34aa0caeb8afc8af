"""A Redis restart in the hub's log: one line when the store goes, one when it is back,
per loop, and no traceback. Runs the follow-ups loop, the device-command forwarder, the
status batcher, supervision and the incident jobs against a real redis-server that is
stopped and started again on its port."""

from __future__ import annotations

import logging
import threading
import time
from collections import namedtuple

from device.protocol import StatusMessage, Topics
from hub.engine.commands import CommandForwarder
from hub.incidents.jobs import IncidentJobs, run_jobs
from hub.incidents.store import IncidentStore
from hub.app.localservices import start_redis
from hub.app.runner import _followup_loop
from hub.engine.service import AlarmService
from hub.edges.statusbatch import StatusBatcher
from hub.store.alarms import Store
from hub.engine.supervision import Supervisor
from tests.engine.test_escalation import Clock, InlinePool, Recorder

LOOPS = ("follow-ups", "device commands", "device statuses", "supervision", "incident jobs")
Message = namedtuple("Message", "topic payload retain")


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def status(device: str = "main-circ-01") -> Message:
    payload = StatusMessage(device=device, state="online", at=int(time.time() * 1000))
    return Message(Topics().status(device), payload.to_json(), True)


def test_a_redis_restart_is_one_line_down_and_one_back_per_loop(redis_service, sample_site,
                                                                 caplog):
    store = Store.from_url(redis_service.url)
    pool = InlinePool()
    service = AlarmService(sample_site, store, Recorder(), lambda t, p: None, pool,
                           escalators=pool, clock=Clock(time.time()))
    acked, tries = [], []

    def store_batch(messages):
        tries.append(messages)
        return service.handle_statuses(messages)

    batcher = StatusBatcher(store_batch, acked.append)
    forwarder = CommandForwarder(store, lambda t, p: None, consumer="w1")
    stop = threading.Event()
    supervisor = Supervisor(sample_site, store, lambda notice: None)
    jobs = IncidentJobs(sample_site, IncidentStore(store, sample_site), Recorder(),
                        consumer="w1")
    threads = [threading.Thread(target=_followup_loop, args=(service, store, "w1", stop)),
               threading.Thread(target=supervisor.run, args=(stop, 0.1)),
               threading.Thread(target=run_jobs, args=(jobs, stop, 0.1))]
    caplog.set_level(logging.INFO)
    for loop in (batcher, forwarder, *threads):
        loop.start()
    try:
        batcher.put(status())
        wait_for(lambda: len(acked) == 1, 5, "a status stored while Redis is up")

        redis_service.stop()
        batcher.put(status())  # held, unacknowledged, until the store is back
        wait_for(lambda: all(f"store unreachable ({loop})" in caplog.text for loop in LOOPS),
                 10, "each loop to notice the store is gone")
        failed = len(tries)  # let every loop fail again (>= 1.4 s of batcher backoff):
        wait_for(lambda: len(tries) >= failed + 3, 10, "more failed tries")  # no new lines
        back = start_redis(redis_service.workdir, port=redis_service.port)
        try:
            wait_for(lambda: all(f"store back ({loop})" in caplog.text for loop in LOOPS),
                     15, "each loop to see the store back")
            wait_for(lambda: len(acked) == 2, 5, "the held status stored")
        finally:
            stop.set()
            batcher.stop()
            forwarder.stop()
            for thread in threads:
                thread.join(3)
            back.stop()
    finally:
        stop.set()

    ours = [r for r in caplog.records if "store" in r.getMessage()
            and any(f"({loop})" in r.getMessage() for loop in LOOPS)]
    assert sorted((r.levelname, r.getMessage().split(":")[0].split(" after")[0])
                  for r in ours) == sorted(
        [("ERROR", f"store unreachable ({loop})") for loop in LOOPS]
        + [("WARNING", f"store back ({loop})") for loop in LOOPS])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and r not in ours]
    assert not [r for r in caplog.records if r.exc_info]
