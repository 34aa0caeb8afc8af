"""A device's own config (``/etc/haven/device.toml``), validated once at start.

::

    [device]
    id = "main-circ-01"          # the id the site config knows this device by

    [broker]
    host = "haven-hub.local"
    port = 1883
    topic_prefix = "haven/v1"    # optional

    [button]
    pin = 17                     # BCM number; wire the button between the pin and GND
    hold_seconds = 2.0           # a hold this long raises an emergency; a press, an assist

Stdlib only, like the rest of the firmware's core.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import DEFAULT_PREFIX, ID_RE


class DeviceConfigError(ValueError):
    """A device config that cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class DeviceConfig:
    device_id: str
    broker_host: str
    broker_port: int = 1883
    topic_prefix: str = DEFAULT_PREFIX
    button_pin: int = 17
    hold_seconds: float = 2.0


def load_device_config(path: str | Path) -> DeviceConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DeviceConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeviceConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_device_config(data, str(path))


def parse_device_config(data: dict[str, Any], source: str = "<device>") -> DeviceConfig:
    problems: list[str] = []

    def get(table: str, key: str, kind: type | tuple[type, ...], default: Any = None,
            required: bool = False) -> Any:
        section = data.get(table, {})
        if not isinstance(section, dict):
            problems.append(f"{source}: [{table}]: must be a table")
            return default
        if key not in section:
            if required:
                problems.append(f"{source}: {table}.{key}: missing")
            return default
        value = section[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            problems.append(f"{source}: {table}.{key}: {value!r} has the wrong type")
            return default
        return value

    device_id = get("device", "id", str, required=True)
    if device_id is not None and not ID_RE.match(device_id):
        problems.append(f"{source}: device.id: {device_id!r} is not valid "
                        "(letters, digits, '-' or '_')")
    host = get("broker", "host", str, required=True)
    port = get("broker", "port", int, 1883)
    if not 0 < port < 65536:
        problems.append(f"{source}: broker.port: {port} is not a TCP port")
    prefix = get("broker", "topic_prefix", str, DEFAULT_PREFIX)
    pin = get("button", "pin", int, 17)
    if not 0 <= pin <= 27:
        problems.append(f"{source}: button.pin: {pin} is not a BCM GPIO number (0-27)")
    hold = float(get("button", "hold_seconds", (int, float), 2.0))
    if not 0.5 <= hold <= 10:
        problems.append(f"{source}: button.hold_seconds: {hold} must be 0.5 to 10 seconds")
    if problems:
        raise DeviceConfigError("\n".join(problems))
    return DeviceConfig(device_id, host, port, prefix, pin, hold)
