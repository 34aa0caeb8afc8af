"""Health readings for the heartbeat. Each reader returns ``None`` when the sensor
is absent or unreadable: a missing sensor is reported as absent, never a crash.

- Wi-Fi signal: ``/proc/net/wireless`` (the "level" column, in dBm).
- CPU temperature: ``/sys/class/thermal/thermal_zone0/temp`` (millidegrees C).
- Battery: pluggable; a device config may name a ``module:function`` returning
  a percentage (0-100) or ``None``. No reader by default.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Callable

log = logging.getLogger("haven.device")

WIRELESS = Path("/proc/net/wireless")
THERMAL = Path("/sys/class/thermal/thermal_zone0/temp")

Reader = Callable[[], float | None]


def wifi_dbm(path: Path = WIRELESS) -> float | None:
    """Signal level of the first wireless interface, in dBm."""
    try:
        lines = path.read_text().splitlines()[2:]
        if not lines:
            return None
        level = lines[0].split()[3].rstrip(".")
        return float(level)
    except (OSError, IndexError, ValueError):
        return None


def cpu_temp_c(path: Path = THERMAL) -> float | None:
    try:
        return round(int(path.read_text().strip()) / 1000, 1)
    except (OSError, ValueError):
        return None


def load_reader(spec: str | None) -> Reader | None:
    """``"package.module:function"`` -> the function (config validation calls this)."""
    if not spec:
        return None
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise ValueError(f"{spec!r} must look like 'package.module:function'")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{spec!r} cannot be loaded: {exc}") from None
    if not callable(func):
        raise ValueError(f"{spec!r} is not callable")
    return func


def read(reader: Reader | None) -> float | None:
    """Call a pluggable reader; its failure is logged and reported as absent."""
    if reader is None:
        return None
    try:
        value = reader()
    except Exception as exc:  # a broken sensor must not stop the heartbeat
        log.warning("health reader %r failed: %s", reader, exc)
        return None
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)
