"""A device's own config (``/etc/haven/device.toml``), validated once at start.

Every problem is collected and reported at once (unknown key, bad pin, a pin
used twice, a pattern that cannot parse, a missing TLS file), each as
``FILE: FIELD: problem``. A wearable needs only this::

    [device]
    id = "west-front-01"               # the id the site config knows this device by

    [broker]
    host = "haven-hub.local"

Everything else has a default suited to a wearable: one button on BCM 17
(wired between the pin and GND), ``hold 2s`` -> emergency, ``3 presses within
2s`` -> assist, ``press`` -> test (the daily test press; no one is paged),
``2 presses within 1s`` -> cancel (an assist alarm, within ``cancel_window_s``);
no single-press alarm, so brushing the button pages no one. Full form::

    [device]
    id = "main-safe-01"
    outbox = "/var/lib/haven/outbox.sqlite3"   # durable queue of unconfirmed alarms
    heartbeat_s = 30                # heartbeat period (readings on dev/<id>/heartbeat), seconds
    not_delivered_after_s = 10      # no hub confirmation by then: show NOT delivered
    resend_every_s = 5              # resend unconfirmed alarms this often, seconds
    cancel_window_s = 10            # an assist may be cancelled this long after the press
    alert_s = 120                   # a colleague's alert shows this long unless answered
    battery_reader = "mypkg.ups:percent"       # optional: module:function -> 0..100

    [broker]
    host = "haven-hub.local"
    port = 8883
    # or, for a site with a pair of brokers: the first is home, the next takes over when
    # it is unreachable, and the device goes back once home answers for 30 s
    # brokers = ["hub-a.local:8883", "hub-b.local:8883"]
    topic_prefix = "haven/v1"
    keepalive_s = 10
    ca_file = "/etc/haven/ca.crt"   # TLS when set
    cert_file = "/etc/haven/device.crt"        # client certificate (with key_file) ...
    key_file = "/etc/haven/device.key"
    username = "main-safe-01"       # ... or a username and a password file
    password_file = "/etc/haven/device.password"

    [[input]]
    pin = 17
    role = "button"                 # or "door_contact" (active = door closed)
    patterns = { "hold 2s" = "emergency", "3 presses within 2s" = "assist" }

    [outputs]                       # all optional
    led = 22
    vibration = 23
    buzzer = 24
    buzzer_for = ["locate"]         # signals that may sound the buzzer (silent by default)

Actions are alarm kinds (``emergency``, ``assist``, ``safe_room``, ``test``, ...)
or ``cancel``, ``checkin`` and ``safe_room_left``. Stdlib only.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .brokers import Endpoint
from .patterns import PatternError, PressDecoder, parse_pattern
from .protocol import DEFAULT_PREFIX, ID_RE, KIND_RE
from .tomlpos import Positions, undotted

#: Actions that are not alarm kinds.
ACTION_CANCEL, ACTION_CHECKIN, ACTION_SAFE_ROOM_LEFT = "cancel", "checkin", "safe_room_left"
SPECIAL_ACTIONS = (ACTION_CANCEL, ACTION_CHECKIN, ACTION_SAFE_ROOM_LEFT)
ROLES = ("button", "door_contact")
SIGNAL_NAMES = ("idle", "sending", "received", "acknowledged", "resolved", "not_delivered",
                "fault", "locate", "checkin", "test_ok")
#: Signals shown silently whatever ``buzzer_for`` says (device.feedback.NEVER_BUZZER).
SILENT_SIGNALS = ("alert", "answered", "alert_over")

WEARABLE_PATTERNS = {"hold 2s": "emergency", "3 presses within 2s": "assist",
                     "press": "test", "2 presses within 1s": ACTION_CANCEL}
DOOR_PATTERNS = {"closed": "safe_room", "opened": ACTION_SAFE_ROOM_LEFT}


class DeviceConfigError(ValueError):
    """A device config that cannot be used; the message lists every problem."""


@dataclass(frozen=True)
class InputConfig:
    pin: int
    role: str
    patterns: tuple[tuple[str, str], ...]   # (pattern text, action), in config order


@dataclass(frozen=True)
class OutputsConfig:
    led: int | None = None
    vibration: int | None = None
    buzzer: int | None = None
    buzzer_for: tuple[str, ...] = ("locate",)


@dataclass(frozen=True)
class BrokerConfig:
    """The broker (``host``, ``port``), or with ``alternates`` an ordered list whose
    first is ``host``:``port`` (device.brokers picks one); TLS and credentials apply to
    every one of them."""

    host: str
    port: int = 1883
    topic_prefix: str = DEFAULT_PREFIX
    keepalive_s: int = 10
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_file: str | None = None
    alternates: tuple[tuple[str, int], ...] = ()

    @property
    def tls(self) -> bool:
        return self.ca_file is not None

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every broker in order of preference, the first the device's home."""
        return (Endpoint(self.host, self.port),
                *(Endpoint(host, port) for host, port in self.alternates))


@dataclass(frozen=True)
class DeviceConfig:
    device_id: str
    broker: BrokerConfig
    inputs: tuple[InputConfig, ...] = field(
        default_factory=lambda: (InputConfig(17, "button", tuple(WEARABLE_PATTERNS.items())),))
    outputs: OutputsConfig = OutputsConfig()
    outbox: str = "/var/lib/haven/outbox.sqlite3"
    heartbeat_s: float = 30.0
    not_delivered_after_s: float = 10.0
    resend_every_s: float = 5.0
    cancel_window_s: float = 10.0
    #: How long a colleague's alert shows unless answered, dismissed or cleared, seconds.
    alert_s: float = 120.0
    battery_reader: str | None = None


def load_device_config(path: str | Path) -> DeviceConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise DeviceConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeviceConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_device_config(data, str(path), positions=Positions(text))


class _Reader:
    """Typed access to one TOML table, collecting problems as ``FILE:LINE: FIELD: why``
    (``FILE: FIELD: why`` without ``positions``)."""

    def __init__(self, source: str, problems: list[str], positions: Positions | None = None):
        self.source, self.problems, self.positions = source, problems, positions

    def add(self, where: str, problem: str) -> None:
        line = self.positions.line(undotted(where)) if self.positions else None
        at = self.source if line is None else f"{self.source}:{line}"
        self.problems.append(f"{at}: {where}: {problem}")

    def table(self, data: dict, name: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            self.add(name, "must be a table")
            return {}
        for key in raw:
            if key not in allowed:
                self.add(f"{name}.{key}", f"unknown key; expected one of {', '.join(allowed)}")
        return raw

    def get(self, raw: dict, where: str, key: str, kind, default=None, *, required=False,
            low=None, high=None):
        if key not in raw:
            if required:
                self.add(f"{where}.{key}", "missing")
            return default
        value = raw[key]
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
            self.add(f"{where}.{key}", f"{value!r} has the wrong type")
            return default
        if low is not None and not low <= value <= high:
            self.add(f"{where}.{key}", f"{value} must be {low} to {high}")
            return default
        return value

    def file(self, raw: dict, where: str, key: str) -> str | None:
        value = self.get(raw, where, key, str)
        if value is not None and not os.access(value, os.R_OK):
            self.add(f"{where}.{key}", f"{value} does not exist or cannot be read")
        return value


def parse_device_config(data: dict[str, Any], source: str = "<device>", *,
                        positions: Positions | None = None) -> DeviceConfig:
    """The typed config; raises :class:`DeviceConfigError` listing every problem, each
    with its line when ``positions`` (of the TOML text) are given."""
    problems: list[str] = []
    r = _Reader(source, problems, positions)
    for key in data:
        if key not in ("device", "broker", "input", "outputs"):
            r.add(key, "unknown section; expected device, broker, input, outputs")

    dev = r.table(data, "device", ("id", "outbox", "heartbeat_s", "not_delivered_after_s",
                                   "resend_every_s", "cancel_window_s", "alert_s",
                                   "battery_reader"))
    device_id = r.get(dev, "device", "id", str, required=True)
    if device_id is not None and not ID_RE.match(device_id):
        r.add("device.id", f"{device_id!r} is not valid (letters, digits, '-' or '_')")
    number = (int, float)
    timings = {key: float(r.get(dev, "device", key, number, default, low=low, high=high))
               for key, default, low, high in (("heartbeat_s", 30.0, 1, 3600),
                                               ("not_delivered_after_s", 10.0, 1, 300),
                                               ("resend_every_s", 5.0, 0.5, 300),
                                               ("cancel_window_s", 10.0, 0, 120),
                                               ("alert_s", 120.0, 10, 900))}
    outbox = r.get(dev, "device", "outbox", str, "/var/lib/haven/outbox.sqlite3")
    battery = r.get(dev, "device", "battery_reader", str)
    if battery:
        from .health import load_reader
        try:
            load_reader(battery)
        except ValueError as exc:
            r.add("device.battery_reader", str(exc))

    broker = _broker(r, data)
    outputs = _outputs(r, data)
    inputs = _inputs(r, data)

    pins = [(f"input[{i}].pin", inp.pin) for i, inp in enumerate(inputs)]
    pins += [(f"outputs.{name}", getattr(outputs, name)) for name in ("led", "vibration", "buzzer")
             if getattr(outputs, name) is not None]
    seen: dict[int, str] = {}
    for where, pin in pins:
        if pin in seen:
            r.add(where, f"BCM {pin} is already used by {seen[pin]}")
        seen.setdefault(pin, where)

    if problems:
        raise DeviceConfigError("\n".join(problems))
    return DeviceConfig(device_id=device_id, broker=broker, inputs=inputs, outputs=outputs,
                        outbox=outbox, battery_reader=battery or None, **timings)


def _broker(r: _Reader, data: dict) -> BrokerConfig:
    raw = r.table(data, "broker", ("host", "port", "brokers", "topic_prefix", "keepalive_s",
                                   "ca_file", "cert_file", "key_file", "username",
                                   "password_file"))
    port = r.get(raw, "broker", "port", int, 1883, low=1, high=65535)
    if "brokers" in raw:
        if "host" in raw:
            r.add("broker.host", "give either host (one broker) or brokers (a list), not both")
        endpoints = _broker_list(r, raw["brokers"], port)
    else:
        endpoints = [(r.get(raw, "broker", "host", str, "", required=True), port)]
    broker = BrokerConfig(
        host=endpoints[0][0],
        port=endpoints[0][1],
        alternates=tuple(endpoints[1:]),
        topic_prefix=r.get(raw, "broker", "topic_prefix", str, DEFAULT_PREFIX),
        keepalive_s=r.get(raw, "broker", "keepalive_s", int, 10, low=2, high=600),
        ca_file=r.file(raw, "broker", "ca_file"),
        cert_file=r.file(raw, "broker", "cert_file"),
        key_file=r.file(raw, "broker", "key_file"),
        username=r.get(raw, "broker", "username", str),
        password_file=r.file(raw, "broker", "password_file"))
    if (broker.cert_file is None) != (broker.key_file is None):
        r.add("broker.cert_file", "a client certificate needs both cert_file and key_file")
    if broker.cert_file and not broker.ca_file:
        r.add("broker.ca_file", "missing: a client certificate needs TLS (set ca_file)")
    if broker.password_file and not broker.username:
        r.add("broker.username", "missing: password_file is set but username is not")
    return broker


def _broker_list(r: _Reader, value: Any, port: int) -> list[tuple[str, int]]:
    """``brokers = ["hub-a.local:8883", "hub-b.local"]``: (host, port) each, in order; a
    host without a port takes ``port``."""
    example = 'e.g. brokers = ["hub-a.local:8883", "hub-b.local:8883"]'
    if not isinstance(value, list) or not value:
        r.add("broker.brokers", f"must be a non-empty list of host or host:port; {example}")
        return [("", port)]
    found: list[tuple[str, int]] = []
    for item in value:
        host, sep, digits = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if isinstance(item, str) and not sep:
            host, digits = item, str(port)
        if not (host and digits.isdigit() and 0 < int(digits) < 65536) or any(
                c.isspace() for c in host):
            r.add("broker.brokers", f"{item!r} is not host or host:port; {example}")
            continue
        if (host, int(digits)) in found:
            r.add("broker.brokers", f"{item!r} is listed twice")
            continue
        found.append((host, int(digits)))
    return found or [("", port)]


def _outputs(r: _Reader, data: dict) -> OutputsConfig:
    raw = r.table(data, "outputs", ("led", "vibration", "buzzer", "buzzer_for"))
    pins = {name: r.get(raw, "outputs", name, int, low=0, high=27)
            for name in ("led", "vibration", "buzzer")}
    buzzer_for = r.get(raw, "outputs", "buzzer_for", list, ["locate"])
    for name in buzzer_for:
        if name in SILENT_SIGNALS:
            r.add("outputs.buzzer_for", f"{name!r} never sounds the buzzer: a colleague's "
                                        "alert is silent (stay calm, do not provoke); remove it")
        elif name not in SIGNAL_NAMES:
            r.add("outputs.buzzer_for", f"{name!r} is not one of {', '.join(SIGNAL_NAMES)}")
    return OutputsConfig(**pins, buzzer_for=tuple(n for n in buzzer_for if n in SIGNAL_NAMES))


def _inputs(r: _Reader, data: dict) -> tuple[InputConfig, ...]:
    raw_inputs = data.get("input")
    if raw_inputs is None:
        return DeviceConfig.__dataclass_fields__["inputs"].default_factory()
    if not isinstance(raw_inputs, list) or not raw_inputs:
        r.add("input", "must be one or more [[input]] tables")
        return ()
    inputs = []
    for i, raw in enumerate(raw_inputs):
        where = f"input[{i}]"
        if not isinstance(raw, dict):
            r.add(where, "must be a table")
            continue
        for key in raw:
            if key not in ("pin", "role", "patterns"):
                r.add(f"{where}.{key}", "unknown key; expected one of pin, role, patterns")
        pin = r.get(raw, where, "pin", int, required=True, low=0, high=27)
        role = r.get(raw, where, "role", str, "button")
        if role not in ROLES:
            r.add(f"{where}.role", f"{role!r} is not one of {', '.join(ROLES)}")
            continue
        default = WEARABLE_PATTERNS if role == "button" else DOOR_PATTERNS
        patterns = r.get(raw, where, "patterns", dict, default)
        rules, bad = [], len(r.problems)
        for text, action in patterns.items():
            if not isinstance(action, str) or not (action in SPECIAL_ACTIONS
                                                    or KIND_RE.match(action)):
                r.add(f"{where}.patterns.{text!r}",
                      f"action {action!r} must be an alarm kind or one of "
                      f"{', '.join(SPECIAL_ACTIONS)}")
                continue
            try:
                rules.append((parse_pattern(text), action))
            except PatternError as exc:
                r.add(f"{where}.patterns", str(exc))
        if len(r.problems) == bad:  # the rules as a set, once each one reads
            try:
                PressDecoder(rules)
            except PatternError as exc:
                r.add(f"{where}.patterns", str(exc))
        if pin is not None:
            inputs.append(InputConfig(pin, role, tuple(patterns.items())))
    return tuple(inputs)
