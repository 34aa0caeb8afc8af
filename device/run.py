"""``haven device run``: the firmware as a service, or driven from the keyboard.

Under systemd (``Type=notify``, ``WatchdogSec=``) the firmware reports
``READY=1`` once its pins and outbox are open, and pings the watchdog from its
ticker thread. SIGTERM or SIGINT stop it cleanly (``offline`` status, pins
released). With ``--keyboard`` the inputs are gpiozero mock pins driven by
typed commands, to try a config on a laptop:

    p        a short press of input 0        3   three quick presses
    h        a 2.5 s hold                    c/o close/open a door contact
    N:...    the same on input N (e.g. 1:c)  q   quit
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time

from .config import DeviceConfig
from .signals import SignalPipe

log = logging.getLogger("haven.device")


def _keyboard(app, factory, signals: SignalPipe) -> None:
    print(__doc__.split("typed commands, to try a config on a laptop:")[1], flush=True)
    for line in sys.stdin:
        text = line.strip()
        index, _, key = text.rpartition(":")
        try:
            spec = app.config.inputs[int(index or 0)]
        except (ValueError, IndexError):
            print(f"no input {index!r}", flush=True)
            continue
        pin = factory.pin(spec.pin)
        if key == "q":
            break
        elif key in ("p", "3"):
            for _ in range(3 if key == "3" else 1):
                pin.drive_low()
                time.sleep(0.1)
                pin.drive_high()
                time.sleep(0.15)
        elif key == "h":
            pin.drive_low()
            time.sleep(2.5)
            pin.drive_high()
        elif key == "c":
            pin.drive_low()
        elif key == "o":
            pin.drive_high()
        elif key:
            print(f"unknown command {key!r}", flush=True)
    signals.raise_signal(signal.SIGTERM)  # end of input: stop


def run_device(config: DeviceConfig, *, keyboard: bool = False) -> int:
    from .firmware import FIRMWARE_VERSION, DeviceApp
    factory = None
    if keyboard:
        from gpiozero.pins.mock import MockFactory
        factory = MockFactory()
    app = DeviceApp(config, pin_factory=factory)
    signals = SignalPipe()
    app.start()
    log.info("device %s running (firmware %s), broker %s:%d", config.device_id,
             FIRMWARE_VERSION, config.broker.host,
             config.broker.port)
    if keyboard:
        threading.Thread(target=_keyboard, args=(app, factory, signals), daemon=True).start()
    signals.wait()
    app.stop()
    signals.close()
    return 0
