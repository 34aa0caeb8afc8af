"""A device's network drops in the middle of a hold: the alarm waits in its outbox and
pages once the link is back, exactly once."""

from __future__ import annotations

import time

import pytest

from hub.store.alarms import Store
from tests.faults.harness import (assert_none_lost, assert_nothing_paged_twice,
                                  assert_resumed, fast_site, stop, wait_until, worker)
from tests.faults.netcut import TcpRelay
from tests.faults.test_services import firmware

pytestmark = pytest.mark.faults


def test_a_device_cut_off_during_a_hold_delivers_its_emergency_once_back(
        tmp_path, pins, mosquitto, redis_service, fake_twilio):
    site = fast_site(tmp_path)
    proc, log = worker("w1", tmp_path, site, mosquitto, redis_service, fake_twilio)
    store = Store.from_url(redis_service.url)
    link = TcpRelay(mosquitto.port).start()
    app = firmware(pins, mosquitto, tmp_path, "main-circ-01", 17, port=link.port)
    try:
        button = pins.pin(17)
        button.drive_low()            # the hold starts on a good link...
        time.sleep(0.5)
        link.cut()                    # ...which drops half-way through
        wait_until(lambda: not app.connected.is_set(), 5, "the device to notice the cut")
        time.sleep(1.8)               # past the 2 s hold
        button.drive_high()
        [track] = wait_until(lambda: [t for t in app.tracks.values()], 5, "the alarm")
        assert track.kind == "emergency"
        assert app.outbox.depth() == 1
        assert store.active_alarms() == []  # the hub has heard nothing
        link.restore()
        back = time.monotonic()
        [alarm_id] = list(app.tracks)
        assert_resumed(fake_twilio, alarm_id, 0, due=back)
        wait_until(lambda: app.outbox.depth() == 0, 5, "the device to hear 'received'")
        time.sleep(1.2)  # two resend periods
        assert_none_lost(store, fake_twilio, [alarm_id])
        assert_nothing_paged_twice(fake_twilio)
        assert [e["event"] for e in store.timeline(alarm_id)].count("raised") == 1
        assert link.connections >= 2  # it really reconnected through the relay
    finally:
        app.stop()
        link.stop()
        stop(proc)
        store.r.close()
