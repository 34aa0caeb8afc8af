"""A real hub process with ``[arc]``: a press reaches a pysiaalarm receiver as well as the
fake Twilio API, and the acknowledgement's restore follows (runner wiring, the command
forwarder's hook); a hub with a bad ARC key stops with a clear error."""

from __future__ import annotations

import subprocess
import sys
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from device.protocol import Topics, new_alarm
from hub.core.lifecycle import AlarmEvent
from hub.store.alarms import Store
from tests.arc_kit import TEXT_KEY, Receiver, free_port
from tests.conftest import SAMPLE_SITE, write_site
from tests.hubproc import start_hub

ARC = """
[arc]
accounts = {{ main = "1001", westside = "1002" }}
kinds = {{ emergency = "panic" }}
supervision_s = 60
[[arc.receiver]]
host = "127.0.0.1"
port = {port}
key_env = "HAVEN_ARC_KEY"
key_format = "text"
"""


def test_a_press_reaches_the_arc_and_the_phones_and_the_ack_restores(
        tmp_path, mosquitto, redis_service, fake_twilio, sample_site):
    arc = Receiver(key=TEXT_KEY)
    site = tmp_path / "site.toml"
    write_site(site, SAMPLE_SITE.read_text() + ARC.format(port=arc.port))
    log = tmp_path / "hub.log"
    proc = start_hub(log, mosquitto, redis_service, site=site, fake_twilio=fake_twilio,
                     extra_env={"HAVEN_ARC_KEY": TEXT_KEY}, args=("--hub-id", "arc-hub"))
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="main-circ-01")
    try:
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        msg = new_alarm("main-circ-01", "emergency")
        pub.publish(Topics().alarm(msg.device), msg.to_json(), qos=1)
        event = arc.next_event(timeout=10)
        assert (event.account, event.code, event.message, event.encrypted) == \
            ("1001", "PA", "001", True)
        assert fake_twilio.wait_for(1, timeout=5)  # the phones are paged too
        store = Store.from_url(redis_service.url)
        store.transition(msg.alarm_id, AlarmEvent.ACKNOWLEDGE, by="Dana",
                         now_ms=int(time.time() * 1000))
        assert arc.next_event(timeout=10).code == "PR"
        deadline = time.monotonic() + 5
        while not any(e["event"] == "arc" and e.get("phase") == "restore"
                      and e["outcome"] == "ACK" for e in store.timeline(msg.alarm_id)):
            assert time.monotonic() < deadline, store.timeline(msg.alarm_id)
            time.sleep(0.02)
        store.r.close()
    finally:
        pub.loop_stop()
        arc.stop()
        proc.terminate()
        assert proc.wait(10) == 0, log.read_text()


def test_a_hub_without_its_arc_key_stops_with_a_clear_error(tmp_path, redis_service):
    site = tmp_path / "site.toml"
    write_site(site, SAMPLE_SITE.read_text() + ARC.format(port=free_port()))
    env = {"PATH": "/usr/bin:/bin", "HAVEN_REDIS_URL": redis_service.url}
    done = subprocess.run([sys.executable, "-m", "hub.app.cli", "hub", "--site", str(site),
                           "--broker", f"127.0.0.1:{free_port()}"], env=env,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "arc.receiver[0].key_env: environment variable HAVEN_ARC_KEY is not set" in \
        done.stderr and "Traceback" not in done.stderr
