"""A device's ``device.toml`` and the bundle (tar.gz) IT copies to its Pi.

The bundle holds four flat files, installed by ``deploy/pi/install.sh`` into
``/etc/haven/``::

    device.toml   the firmware config (broker, TLS files, pins for its type)
    ca.crt        the site CA, to check the broker's certificate
    device.crt    this device's certificate (CN = device id)
    device.key    its private key (mode 0600 in the archive; the bundle is 0600 too)

Pins follow the wiring in ``deploy/examples/device-*.toml``: button on BCM 17
to GND, LED on BCM 22, vibration motor on BCM 23 (wearable), door contact on
BCM 27 (safe room).
"""

from __future__ import annotations

import io
import json
import tarfile
import time

from hub.provision.files import ProvisionSettings

#: Where install.sh puts the files on the Pi.
ETC = "/etc/haven"
OUTBOX = "/var/lib/haven/outbox.sqlite3"

_INPUTS = {
    "wearable": """\
# A worn button: hold 2 s = emergency, 3 presses within 2 s = assist,
# 1 press = the daily test, 2 presses within 1 s = cancel an assist.
[[input]]
pin = 17                                  # BCM 17 (header pin 11) to GND
role = "button"
patterns = { "hold 2s" = "emergency", "3 presses within 2s" = "assist", "press" = "test", "2 presses within 1s" = "cancel" }

[outputs]
led = 22                                  # through a resistor
vibration = 23                            # through a transistor (silent: no buzzer)
""",
    "wall": """\
# A button under a desk: a press calls colleagues, a 2 s hold calls police.
[[input]]
pin = 17                                  # BCM 17 (header pin 11) to GND
role = "button"
patterns = { "press" = "assist", "hold 2s" = "emergency" }

[outputs]
led = 22
""",
    "safe_room": """\
# A safe room: the door contact (closed and locked = staff sheltering) and a
# panic button inside.
[[input]]
pin = 27                                  # reed switch on the lock's bolt, to GND
role = "door_contact"
patterns = { "closed" = "safe_room", "opened" = "safe_room_left" }

[[input]]
pin = 17
role = "button"
patterns = { "hold 2s" = "emergency" }

[outputs]
led = 22
""",
}


def device_toml(device_id: str, device_type: str, s: ProvisionSettings, *,
                branch: str, room: str) -> str:
    q = json.dumps
    return f"""\
# Haven device {device_id}: {device_type} in {branch}/{room}.
# Written by 'haven provision device'. Check it on the Pi with:
#   haven device selftest --config {ETC}/device.toml
[device]
id = {q(device_id)}                  # the site config knows it by this id (and its certificate's CN)
outbox = "{OUTBOX}"  # unconfirmed alarms survive crashes and reboots

[broker]
host = {q(s.broker_host)}
port = {s.mqtt_port}
topic_prefix = {q(s.topic_prefix)}
ca_file = "{ETC}/ca.crt"             # the site CA
cert_file = "{ETC}/device.crt"       # this device's certificate (CN = device id)
key_file = "{ETC}/device.key"

{_INPUTS[device_type]}"""


def make_bundle(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A tar.gz of ``{name: (content, mode)}``, owned by root, in a stable order."""
    out = io.BytesIO()
    now = int(time.time())
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, (data, mode) in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, now
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()
