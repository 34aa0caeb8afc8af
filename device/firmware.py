"""The button firmware: a press raises ``assist``, a hold raises ``emergency``.

Wiring: a momentary button between the configured BCM pin and GND (the pin's
internal pull-up holds it high; a press pulls it low). A press shorter than
``hold_seconds`` publishes an ``assist`` alarm when released; holding it for
``hold_seconds`` publishes an ``emergency`` alarm at once, without waiting
for the release.

MQTT: v5, QoS 1, a persistent session, a retained ``online`` status on every
connect and a retained Last Will ``offline``. The hub answers each stored
alarm with a ``received`` command on the device's ``cmd`` topic; the firmware
records what happened to each alarm in :attr:`DeviceApp.alarms` and reports
it through ``on_event(event, alarm_id)``:

    sending    published, not yet confirmed by the broker
    sent       the broker has it (PUBACK)
    received   the hub has stored it: people are being paged
    acknowledged / resolved / not_delivered   as the hub reports

Pins come from gpiozero's pin factory: real GPIO on a Pi, ``MockFactory`` in
tests and the demo.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import paho.mqtt.client as mqtt
from gpiozero import Button
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .config import DeviceConfig
from .protocol import (STATUS_OFFLINE, STATUS_ONLINE, AlarmMessage, ProtocolError, StatusMessage,
                       Topics, decode_command, new_alarm)

log = logging.getLogger("haven.device")

FIRMWARE_VERSION = "0.1.0"
#: How long the broker keeps this device's session while it is away, in seconds.
SESSION_EXPIRY_S = 3600
KEEPALIVE_S = 10

EventSink = Callable[[str, str], None]


class DeviceApp:
    """One device: its button, its MQTT client, and what became of its alarms."""

    def __init__(self, config: DeviceConfig, *, pin_factory=None,
                 on_event: EventSink | None = None, clock: Callable[[], float] = time.time):
        self.config = config
        self.topics = Topics(config.topic_prefix)
        self.clock = clock
        self.on_event = on_event or (lambda event, alarm_id: None)
        self.alarms: dict[str, str] = {}  # alarm id -> last event
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._mids: dict[int, str | None] = {}  # publish mid -> alarm id (None: a status)
        self._early_acks: set[int] = set()   # PUBACKs that arrived before their mid was noted
        self._held = False

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.device_id,
                                  protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        will = StatusMessage(device=config.device_id, state=STATUS_OFFLINE)
        self.client.will_set(self.topics.status(config.device_id), will.to_json(), qos=1,
                             retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message

        self.button = Button(config.button_pin, pull_up=True, hold_time=config.hold_seconds,
                             pin_factory=pin_factory)
        self.button.when_pressed = self._pressed
        self.button.when_held = self._held_down
        self.button.when_released = self._released

    # --- button --------------------------------------------------------------

    def _pressed(self) -> None:
        self._held = False

    def _held_down(self) -> None:
        self._held = True
        self.raise_alarm("emergency")

    def _released(self) -> None:
        if not self._held:
            self.raise_alarm("assist")
        self._held = False

    def raise_alarm(self, kind: str) -> AlarmMessage:
        """Publish a new alarm of ``kind`` (QoS 1); returns it with its fresh id.

        Our lock is never held while calling into paho: paho holds its own
        message lock while it runs ``on_publish``, which takes ours, so holding
        both in the other order would deadlock a press against a PUBACK.
        """
        alarm = new_alarm(self.config.device_id, kind, self.clock())
        log.info("%s alarm %s: sending", kind, alarm.alarm_id)
        self._event("sending", alarm.alarm_id)
        self._publish(self.topics.alarm(alarm.device), alarm.to_json(), alarm_id=alarm.alarm_id)
        return alarm

    def _publish(self, topic: str, payload: bytes, *, retain: bool = False,
                 alarm_id: str | None = None):
        """QoS 1 publish, noting its mid so its PUBACK can be matched (and never mismatched)."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        with self._lock:
            acked_already = info.mid in self._early_acks
            if acked_already:
                self._early_acks.discard(info.mid)
            else:
                self._mids[info.mid] = alarm_id
        if acked_already and alarm_id is not None:
            self._sent(alarm_id)
        return info

    # --- MQTT callbacks ------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("broker refused device %s: %s", self.config.device_id, reason_code)
            return
        status = StatusMessage(device=self.config.device_id, state=STATUS_ONLINE,
                               at=int(self.clock() * 1000), firmware=FIRMWARE_VERSION)
        self._publish(self.topics.status(self.config.device_id), status.to_json(), retain=True)
        client.subscribe(self.topics.cmd(self.config.device_id), qos=1)
        self.connected.set()
        log.info("device %s connected", self.config.device_id)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        log.warning("device %s lost the broker (%s)", self.config.device_id, reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        with self._lock:
            if mid in self._mids:
                alarm_id = self._mids.pop(mid)
            else:  # the PUBACK beat _publish's bookkeeping
                alarm_id = None
                self._early_acks.add(mid)
        if alarm_id is not None:
            self._sent(alarm_id)

    def _sent(self, alarm_id: str) -> None:
        if self.alarms.get(alarm_id) == "sending":  # not if the hub's "received" came first
            self._event("sent", alarm_id)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            cmd = decode_command(msg.topic, msg.payload, topics=self.topics)
        except ProtocolError as exc:
            log.warning("ignored command: %s", exc)
            return
        log.info("alarm %s: %s", cmd.alarm_id, cmd.cmd)
        self._event(cmd.cmd, cmd.alarm_id)

    def _event(self, event: str, alarm_id: str) -> None:
        self.alarms[alarm_id] = event
        self.on_event(event, alarm_id)

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background; reconnects on its own."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(self.config.broker_host, self.config.broker_port,
                                  keepalive=KEEPALIVE_S, clean_start=False, properties=props)
        self.client.loop_start()

    def stop(self) -> None:
        """Say ``offline`` (a clean stop sends no Last Will), disconnect, release the pin."""
        if self.connected.is_set():
            status = StatusMessage(device=self.config.device_id, state=STATUS_OFFLINE,
                                   at=int(self.clock() * 1000))
            info = self._publish(self.topics.status(self.config.device_id), status.to_json(),
                                 retain=True)
            try:
                info.wait_for_publish(timeout=2)
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()
        self.button.close()
