"""``haven device selftest``: can this device raise an alarm right now?

Checks, each reported with what failed and how to fix it: the input and output
pins can be claimed, the broker is reachable (and its TLS certificate and our
client certificate are valid), the clock is sane (TLS and press times need
it), and the outbox is writable. Also run on the hub's ``test`` command, with
the running firmware's own pins and connection.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from .config import DeviceConfig
from .outbox import Outbox

#: How long the broker has to answer a connection, in seconds.
BROKER_TIMEOUT_S = 5.0
#: Earliest plausible wall clock (Unix s): a Pi without RTC boots in 1970 until NTP syncs.
CLOCK_FLOOR_S = 1_735_689_600  # 2025-01-01


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _pins(config: DeviceConfig, pin_factory) -> Check:
    from gpiozero import DigitalInputDevice, DigitalOutputDevice
    claimed, problems = [], []
    pins = [(f"input BCM {i.pin}", i.pin, DigitalInputDevice) for i in config.inputs]
    pins += [(f"{name} BCM {pin}", pin, DigitalOutputDevice)
             for name in ("led", "vibration", "buzzer")
             if (pin := getattr(config.outputs, name)) is not None]
    for label, pin, kind in pins:
        try:
            claimed.append(kind(pin, pin_factory=pin_factory))
        except Exception as exc:  # gpiozero raises many kinds: report, don't crash
            problems.append(f"{label}: {exc}")
    for device in claimed:
        device.close()
    return Check("pins", not problems, "; ".join(problems) or f"{len(pins)} pins claimable")


def _broker(config: DeviceConfig) -> Check:
    """A real MQTT connection, answered by the broker: with TLS 1.3 the broker judges the
    client certificate only after the handshake has completed on this side, so a revoked
    or foreign certificate shows as the broker hanging up, not as a failed handshake.
    Connects as ``<device id>-selftest`` (the device's own id would take its running
    firmware's session over)."""
    import paho.mqtt.client as mqtt

    from .transport import broker_client
    b = config.broker
    answers, errors = [], []
    try:
        client = broker_client(b, f"{config.device_id}-selftest")
    except OSError as exc:
        return Check("broker", False, f"cannot read broker.password_file: {exc}")
    client.on_connect = lambda c, u, flags, reason, props: answers.append(reason)
    client.on_log = lambda c, u, level, text: errors.append(text) \
        if level == mqtt.MQTT_LOG_ERR else None
    try:
        client.connect(b.host, b.port, keepalive=10)
        deadline = time.monotonic() + BROKER_TIMEOUT_S
        while not answers and time.monotonic() < deadline:
            if client.loop(timeout=0.2) != mqtt.MQTT_ERR_SUCCESS:
                break
    except ssl.SSLError as exc:
        return Check("broker", False, f"TLS with {b.host}:{b.port} failed: {exc.reason}; "
                                      "check ca_file, cert_file, key_file and the clock")
    except OSError as exc:
        return Check("broker", False, f"cannot reach {b.host}:{b.port}: {exc}; check the "
                                      "network and broker.host/port")
    finally:
        try:
            client.disconnect()
        except Exception:  # noqa: BLE001 - already gone: nothing to close politely
            pass
    where = f"{b.host}:{b.port}{' over TLS' if b.tls else ''}"
    if not answers:
        why = "; ".join(errors) or f"no answer within {BROKER_TIMEOUT_S:.0f} s"
        hint = ("the broker may have refused this device's certificate (revoked, or not "
                "issued by this site's CA): re-provision it" if b.tls else
                "check that broker.host/port is the site's MQTT broker")
        return Check("broker", False, f"{where} hung up without accepting the connection "
                                      f"({why}); {hint}")
    if answers[0].is_failure:
        return Check("broker", False, f"{where} refused the connection: {answers[0]}; "
                                      "check broker.username/password_file or the "
                                      "certificate, and the broker's access list")
    return Check("broker", True, f"{where}: connection accepted")


def _clock(now_s: float) -> Check:
    if now_s < CLOCK_FLOOR_S:
        day = time.strftime('%Y-%m-%d', time.gmtime(now_s))
        return Check("clock", False, f"the clock says {day}"
                                     "; wait for NTP or fit an RTC")
    return Check("clock", True, time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(now_s)))


def _outbox(config: DeviceConfig, outbox: Outbox | None) -> Check:
    try:
        box = outbox or Outbox(config.outbox)
        ok = box.writable()
        depth = box.depth()
        if outbox is None:
            box.close()
    except Exception as exc:
        return Check("outbox", False, f"{config.outbox}: {exc}")
    return Check("outbox", ok, f"{config.outbox} writable, {depth} waiting" if ok
                 else f"{config.outbox} is not writable")


@dataclass(frozen=True)
class Running:
    """What the running firmware (device.firmware.DeviceApp) tells the self-test: whether
    it is connected to the broker now, and its open outbox."""

    connected: bool
    outbox: Outbox


def run_selftest(config: DeviceConfig, *, running: Running | None = None,
                 pin_factory=None, now_s: float | None = None) -> list[Check]:
    """Every check's result. With the firmware ``running``, its pins are in use by it (so
    fine) and its connection state stands for the broker check."""
    if running is not None:
        pins = Check("pins", True, "in use by the running firmware")
        broker = Check("broker", running.connected,
                       "connected" if running.connected else "not connected")
    else:
        pins, broker = _pins(config, pin_factory), _broker(config)
    return [pins, broker, _clock(time.time() if now_s is None else now_s),
            _outbox(config, running.outbox if running is not None else None)]
