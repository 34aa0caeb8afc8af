"""Haven's wire contract: MQTT topics and JSON payloads between devices and the hub.

Stdlib only: the Pi firmware and the hub both import this module, so there is
one source of truth for what travels on the broker.

Topics (``prefix`` defaults to ``haven/v1``)::

    <prefix>/dev/<device_id>/alarm    device -> hub   QoS 1   an alarm press
    <prefix>/dev/<device_id>/status   device -> hub   QoS 1   retained presence: "online" on
                                                              connect, Last Will "offline"
    <prefix>/dev/<device_id>/heartbeat device -> hub  QoS 1   health, every heartbeat_s
    <prefix>/dev/<device_id>/event    device -> hub   QoS 1   cancel, check-in, self-test result
    <prefix>/dev/<device_id>/cmd      hub -> device   QoS 1   confirmations and requests

Payloads are UTF-8 JSON objects carrying ``"v": 1`` (the schema version).

An alarm::

    {"v": 1, "alarm_id": "<uuid4>", "kind": "emergency",
     "device": "main-circ-01", "pressed_at": 1763840000123}

``alarm_id`` is made once per press on the device and reused on every resend,
so the hub can drop duplicates; ``pressed_at`` is the device clock in Unix
milliseconds. The device id in the payload must match the one in the topic
(the broker ACL ties the topic to the device's identity).

Every decode function returns a frozen dataclass or raises
:class:`ProtocolError`, whose message names the topic, the field and the
problem.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Collection

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "haven/v1"

#: Alarm kinds a device may send when no site config narrows them down.
#: The hub validates against the kinds its site config declares.
DEFAULT_KINDS = ("assist", "emergency", "safe_room", "missed_checkin", "welfare", "test")
#: The only kinds a device may cancel from its own button, within the kind's
#: ``cancel_window_s``: never an emergency (a coerced cancel is a real risk). The firmware
#: offers the cancel only for these; the hub refuses a cancel window on any other kind.
DEVICE_CANCELLABLE_KINDS = frozenset({"assist", "test"})

#: Device ids and alarm ids: letters, digits, ``-`` and ``_``; no MQTT wildcards or
#: separators, so an id can stand in a topic level.
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")
KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,31}\Z")

#: The last topic level of every device topic.
CHANNELS = ("alarm", "status", "heartbeat", "event", "cmd")

#: Largest payload accepted, in bytes (an alarm is ~130 bytes).
MAX_PAYLOAD_BYTES = 4096

#: ``status`` payload states.
STATUS_ONLINE = "online"
STATUS_OFFLINE = "offline"
STATUS_STATES = (STATUS_ONLINE, STATUS_OFFLINE)

#: Commands the hub sends on a device's ``cmd`` topic. The alarm commands are about
#: one alarm and carry its ``alarm_id``; the rest are about the device.
CMD_RECEIVED = "received"          # the hub stored the alarm (not just the broker PUBACK)
CMD_ACKNOWLEDGED = "acknowledged"  # a person acknowledged: help is coming
CMD_RESOLVED = "resolved"          # an operator resolved the alarm, or it was cancelled
CMD_NOT_DELIVERED = "not_delivered"  # no contact could be reached: use the phone
#: After ``not_delivered``: pages are getting through again, help is being called (hub
#: 0.4 on; firmware before 0.4 logs it as an unknown command and keeps "use the phone"
#: until ``acknowledged`` or ``resolved``).
CMD_PAGING = "paging"
CMD_LOCATE = "locate"              # blink/vibrate so IT can find the device
CMD_TEST = "test"                  # run the self-test and report it as an event
CMD_CHECKIN_REQUEST = "checkin_request"  # lone worker: press once to check in
ALARM_COMMANDS = (CMD_RECEIVED, CMD_ACKNOWLEDGED, CMD_RESOLVED, CMD_NOT_DELIVERED, CMD_PAGING)
#: Colleagues' alerts (hub.engine.colleagues; hub and firmware 0.5 on). About a *colleague's*
#: alarm at this device's branch, never this device's own; both carry its ``alarm_id``.
#: ``alert`` names its ``kind`` and ``room`` (the room's id in the site file): show it
#: silently until answered, dismissed, cleared or ``alert_s`` has passed. ``alert_clear``
#: ends it, with a ``reason`` (ALERT_CLEAR_REASONS). The hub sends them only to devices
#: whose status says firmware ALERTS_SINCE or later (:func:`supports_alerts`); older
#: firmware would log them as unknown commands and show nothing.
CMD_ALERT = "alert"
CMD_ALERT_CLEAR = "alert_clear"
ALERT_COMMANDS = (CMD_ALERT, CMD_ALERT_CLEAR)
#: Why an alert ends: this device's answer acknowledged the alarm (or joined the one who
#: did); someone else acknowledged it; it was resolved or cancelled.
CLEAR_ANSWERED, CLEAR_ACKNOWLEDGED, CLEAR_CLOSED = "answered", "acknowledged", "closed"
ALERT_CLEAR_REASONS = (CLEAR_ANSWERED, CLEAR_ACKNOWLEDGED, CLEAR_CLOSED)
#: The first firmware version that shows ``alert`` and answers with ``responding``.
ALERTS_SINCE = (0, 5)
COMMANDS = ALARM_COMMANDS + (CMD_LOCATE, CMD_TEST, CMD_CHECKIN_REQUEST) + ALERT_COMMANDS

#: Events a device sends on its ``event`` topic.
EVENT_CANCEL = "cancel"            # the wearer cancels an alarm (assist only, within its window)
EVENT_CHECKIN = "checkin"          # the wearer answered a check-in request
EVENT_SELFTEST = "selftest"        # the result of a self-test (``ok``, ``detail``)
EVENT_SAFE_ROOM_LEFT = "safe_room_left"  # the safe-room door opened: staff left the refuge
#: The holder answers a colleague's ``alert``: "I'm responding" (names ``alarm_id``;
#: firmware 0.5 on, only ever in answer to an ``alert``).
EVENT_RESPONDING = "responding"
EVENTS = (EVENT_CANCEL, EVENT_CHECKIN, EVENT_SELFTEST, EVENT_SAFE_ROOM_LEFT, EVENT_RESPONDING)


class ProtocolError(ValueError):
    """A message that breaks the wire contract.

    ``where`` is the topic (or "payload"), ``field`` the offending JSON field
    (or ``None`` for the whole message), ``problem`` what is wrong with it.
    """

    def __init__(self, where: str, field: str | None, problem: str):
        self.where, self.field, self.problem = where, field, problem
        target = f"field '{field}'" if field else "message"
        super().__init__(f"{where}: {target}: {problem}")


@dataclass(frozen=True)
class Topics:
    """Topic names under one prefix. ``Topics().alarm("d1") == "haven/v1/dev/d1/alarm"``."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or self.prefix.startswith("/") or self.prefix.endswith("/") \
                or any(c in self.prefix for c in "+#\0"):
            raise ProtocolError("topic prefix", None,
                                f"{self.prefix!r} must be non-empty, without '+', '#', "
                                "or a leading/trailing '/'")

    def alarm(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{device_id}/alarm"

    def status(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{device_id}/status"

    def heartbeat(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{device_id}/heartbeat"

    def cmd(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{device_id}/cmd"

    def event(self, device_id: str) -> str:
        return f"{self.prefix}/dev/{device_id}/event"

    def device_filter(self, channel: str) -> str:
        """Subscription filter for one channel of every device, e.g. ``.../dev/+/alarm``."""
        return f"{self.prefix}/dev/+/{channel}"

    def parse(self, topic: str) -> tuple[str, str]:
        """Split a device topic into ``(device_id, channel)`` or raise ProtocolError."""
        head = f"{self.prefix}/dev/"
        if not topic.startswith(head):
            raise ProtocolError(f"topic {topic}", None, f"not under '{head}'")
        parts = topic[len(head):].split("/")
        if len(parts) != 2 or parts[1] not in CHANNELS:
            raise ProtocolError(f"topic {topic}", None,
                                f"expected '{head}<device_id>/{'|'.join(CHANNELS)}'")
        if not ID_RE.match(parts[0]):
            raise ProtocolError(f"topic {topic}", None, f"device id {parts[0]!r} is not valid")
        return parts[0], parts[1]


@dataclass(frozen=True)
class AlarmMessage:
    """One press, as the device sent it. ``pressed_at`` is Unix milliseconds (device clock)."""

    device: str
    alarm_id: str
    kind: str
    pressed_at: int
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "alarm_id": self.alarm_id, "kind": self.kind,
                      "device": self.device, "pressed_at": self.pressed_at})


@dataclass(frozen=True)
class Health:
    """A heartbeat's readings. A sensor that cannot be read is ``None`` (absent), never a guess.

    ``uptime_s`` seconds since the firmware started; ``outbox`` alarms not yet
    confirmed by the hub; ``wifi_dbm`` signal level; ``cpu_temp_c`` degrees
    Celsius; ``battery_pct`` 0-100.
    """

    uptime_s: int
    outbox: int
    wifi_dbm: float | None = None
    cpu_temp_c: float | None = None
    battery_pct: float | None = None

    def to_obj(self) -> dict[str, Any]:
        return {"uptime_s": self.uptime_s, "outbox": self.outbox, "wifi_dbm": self.wifi_dbm,
                "cpu_temp_c": self.cpu_temp_c, "battery_pct": self.battery_pct}


@dataclass(frozen=True)
class StatusMessage:
    """A device's retained presence: ``online`` on connect, ``offline`` as its Last Will.

    ``at`` is Unix milliseconds, or ``None`` in a Last Will (written at connect
    time, so any time in it would be stale). Presence is published once per
    connection and retained, so every hub worker (a plain subscription) and a
    restarted hub learn it; the periodic readings travel as :class:`Heartbeat`.
    Firmware before 0.3 sent its heartbeats as statuses; the hub still takes them.
    """

    device: str
    state: str
    at: int | None = None
    firmware: str | None = None
    health: Health | None = None
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"v": self.v, "device": self.device, "state": self.state}
        if self.at is not None:
            obj["at"] = self.at
        if self.firmware is not None:
            obj["firmware"] = self.firmware
        if self.health is not None:
            obj["health"] = self.health.to_obj()
        return _dump(obj)


@dataclass(frozen=True)
class Heartbeat:
    """Device -> hub every ``heartbeat_s``, not retained: the device is alive, with its
    readings. ``at`` is Unix ms (device clock).

    Heartbeats go to the hub workers' shared subscription, so N workers split them
    (presence, which every worker must see, stays on the retained ``status``). A
    heartbeat never changes presence: one delayed past its device's Last Will must
    not make a dead device look online.
    """

    device: str
    at: int
    health: Health
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        return _dump({"v": self.v, "device": self.device, "at": self.at,
                      "health": self.health.to_obj()})


@dataclass(frozen=True)
class Command:
    """Hub -> device. ``alarm_id`` names the alarm an alarm command is about (``None``
    for device commands such as ``locate``); ``at`` is Unix ms (hub clock).

    ``drill`` (on ``received``): the alarm was stored as a drill, so police are not
    paged (hub.core.drill); the device shows it. It travels only when true, and firmware
    that predates it ignores it (decode_command reads only the fields it knows), so
    the schema version stays 1. A later plain ``received`` for the same alarm means
    someone said REAL: it is no longer a drill.

    ``kind`` and ``room`` (on ``alert``) and ``reason`` (on ``alert_clear``) travel only
    with those commands, added in firmware 0.5 the same way: optional fields an older
    decoder never reads, so the schema version stays 1 (``drill`` on an ``alert``: the
    colleague's alarm is a drill)."""

    cmd: str
    alarm_id: str | None
    at: int
    drill: bool = False
    kind: str | None = None
    room: str | None = None
    reason: str | None = None
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"v": self.v, "cmd": self.cmd, "at": self.at}
        if self.alarm_id is not None:
            obj["alarm_id"] = self.alarm_id
        if self.drill:
            obj["drill"] = True
        for name in ("kind", "room", "reason"):
            if getattr(self, name) is not None:
                obj[name] = getattr(self, name)
        return _dump(obj)


@dataclass(frozen=True)
class DeviceEvent:
    """Device -> hub, on the ``event`` topic: a cancel or check-in (about ``alarm_id``
    when it names one), or a self-test result (``ok``, ``detail``). ``at`` is Unix ms."""

    device: str
    event: str
    at: int
    alarm_id: str | None = None
    ok: bool | None = None
    detail: str | None = None
    v: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        obj: dict[str, Any] = {"v": self.v, "device": self.device, "event": self.event,
                               "at": self.at}
        for name in ("alarm_id", "ok", "detail"):
            if getattr(self, name) is not None:
                obj[name] = getattr(self, name)
        return _dump(obj)


def new_alarm(device: str, kind: str, now_s: float | None = None) -> AlarmMessage:
    """A fresh alarm for one press, with a new uuid4 id; ``now_s`` is Unix seconds."""
    pressed = time.time() if now_s is None else now_s
    return AlarmMessage(device=device, alarm_id=str(uuid.uuid4()), kind=kind,
                        pressed_at=int(pressed * 1000))


def decode_alarm(topic: str, payload: bytes, *, topics: Topics = Topics(),
                 kinds: Collection[str] = DEFAULT_KINDS) -> AlarmMessage:
    """Validate an alarm publish; the device id in the payload must match the topic's."""
    where, obj, device = _open(topic, payload, topics, "alarm")
    kind = _str(where, obj, "kind")
    if kind not in kinds:
        raise ProtocolError(where, "kind",
                            f"unknown kind {kind!r}; expected one of {', '.join(sorted(kinds))}")
    return AlarmMessage(device=device, alarm_id=_id(where, obj, "alarm_id"), kind=kind,
                        pressed_at=_millis(where, obj, "pressed_at"))


def decode_status(topic: str, payload: bytes, *, topics: Topics = Topics()) -> StatusMessage:
    """Validate a status publish (retained presence or Last Will)."""
    where, obj, device = _open(topic, payload, topics, "status")
    state = _one_of(where, obj, "state", STATUS_STATES)
    at = _millis(where, obj, "at") if "at" in obj else None
    firmware = _str(where, obj, "firmware") if "firmware" in obj else None
    health = _health(where, obj["health"]) if "health" in obj else None
    return StatusMessage(device=device, state=state, at=at, firmware=firmware, health=health)


def decode_heartbeat(topic: str, payload: bytes, *, topics: Topics = Topics()) -> Heartbeat:
    """Validate a heartbeat (``at`` and ``health`` are required)."""
    where, obj, device = _open(topic, payload, topics, "heartbeat")
    if "health" not in obj:
        raise ProtocolError(where, "health", "missing: a heartbeat carries the device's readings")
    return Heartbeat(device=device, at=_millis(where, obj, "at"),
                     health=_health(where, obj["health"]))


def decode_event(topic: str, payload: bytes, *, topics: Topics = Topics()) -> DeviceEvent:
    """Validate a device event (cancel, check-in, self-test result)."""
    where, obj, device = _open(topic, payload, topics, "event")
    event = _one_of(where, obj, "event", EVENTS)
    alarm_id = _id(where, obj, "alarm_id") if "alarm_id" in obj else None
    if event == EVENT_CANCEL and alarm_id is None:
        raise ProtocolError(where, "alarm_id", "missing: a cancel names the alarm it cancels")
    if event == EVENT_RESPONDING and alarm_id is None:
        raise ProtocolError(where, "alarm_id", "missing: an answer names the alarm it answers")
    ok = obj.get("ok")
    if ok is not None and not isinstance(ok, bool):
        raise ProtocolError(where, "ok", f"must be true or false, not {type(ok).__name__}")
    detail = _str(where, obj, "detail") if "detail" in obj else None
    return DeviceEvent(device=device, event=event, at=_millis(where, obj, "at"),
                       alarm_id=alarm_id, ok=ok, detail=detail)


def decode_command(topic: str, payload: bytes, *, topics: Topics = Topics()) -> Command:
    """Validate a hub -> device command (used by the firmware)."""
    where, obj, _ = _open(topic, payload, topics, "cmd")
    cmd = _one_of(where, obj, "cmd", COMMANDS)
    if cmd in ALARM_COMMANDS or cmd in ALERT_COMMANDS or "alarm_id" in obj:
        alarm_id = _id(where, obj, "alarm_id")
    else:
        alarm_id = None
    drill = obj.get("drill", False)
    if not isinstance(drill, bool):
        raise ProtocolError(where, "drill", f"must be true or false, not {drill!r}")
    kind = room = reason = None
    if cmd == CMD_ALERT:
        kind = _str(where, obj, "kind")
        if not KIND_RE.match(kind):
            raise ProtocolError(where, "kind", f"{kind!r} is not a valid alarm kind")
        room = _id(where, obj, "room")
    elif cmd == CMD_ALERT_CLEAR:
        reason = _one_of(where, obj, "reason", ALERT_CLEAR_REASONS)
    return Command(cmd=cmd, alarm_id=alarm_id, at=_millis(where, obj, "at"), drill=drill,
                   kind=kind, room=room, reason=reason)


def firmware_version(text: str | None) -> tuple[int, ...] | None:
    """``"0.5.0"`` as ``(0, 5, 0)``; ``None`` for none or a version that does not read
    (``"0.5.0-dev"`` reads as ``(0, 5, 0)``: the numbers before anything else)."""
    if not text:
        return None
    m = re.match(r"(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(part) for part in m.group(1).split(".")) if m else None


def supports_alerts(firmware: str | None) -> bool:
    """Whether firmware ``firmware`` (as its status says it) shows ``alert`` and answers
    with ``responding``: version ALERTS_SINCE or later. Unknown: no (never ask an old
    firmware for what it cannot do)."""
    version = firmware_version(firmware)
    return version is not None and version >= ALERTS_SINCE


# --- helpers -----------------------------------------------------------------

def _open(topic: str, payload: bytes, topics: Topics,
          channel: str) -> tuple[str, dict[str, Any], str]:
    """Check topic, channel, JSON and version; returns ``(where, object, device id)``.

    Messages a device sends carry its id, which must match the topic's (the
    broker ACL ties the topic to the device's identity).
    """
    device_id, actual = topics.parse(topic)
    where = f"topic {topic}"
    if actual != channel:
        raise ProtocolError(where, None, f"not {'an' if channel in ('alarm', 'event') else 'a'} "
                                         f"{'command' if channel == 'cmd' else channel} topic")
    obj = _load(where, payload)
    _version(where, obj)
    if channel != "cmd":
        device = _id(where, obj, "device")
        if device != device_id:
            raise ProtocolError(where, "device",
                                f"{device!r} does not match the topic's device {device_id!r}")
    return where, obj, device_id


def _health(where: str, raw: Any) -> Health:
    if not isinstance(raw, dict):
        raise ProtocolError(where, "health", f"must be an object, not {type(raw).__name__}")
    values: dict[str, Any] = {}
    for name, unit in (("uptime_s", "seconds"), ("outbox", "alarms waiting")):
        values[name] = _millis(where, raw, name, unit) if name in raw else 0
    for name in ("wifi_dbm", "cpu_temp_c", "battery_pct"):
        value = raw.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ProtocolError(where, f"health.{name}",
                                f"must be a number or null, not {type(value).__name__}")
        values[name] = value
    return Health(**values)


def _dump(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _load(where: str, payload: bytes) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(where, None, f"payload is {len(payload)} bytes; "
                                         f"at most {MAX_PAYLOAD_BYTES} are accepted")
    try:
        obj = json.loads(payload)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(where, None, f"payload is not valid UTF-8 JSON ({exc})") from None
    except RecursionError:  # "[[[[..." nested past the interpreter's limit
        raise ProtocolError(where, None, "payload is nested too deeply") from None
    if not isinstance(obj, dict):
        raise ProtocolError(where, None, f"payload must be a JSON object, not {type(obj).__name__}")
    return obj


def _version(where: str, obj: dict[str, Any]) -> None:
    if "v" not in obj:
        raise ProtocolError(where, "v", "missing (schema version; expected 1)")
    if obj["v"] != SCHEMA_VERSION or isinstance(obj["v"], bool):
        raise ProtocolError(where, "v", f"schema version {obj['v']!r} is not supported; "
                                        f"expected {SCHEMA_VERSION}")


def _str(where: str, obj: dict[str, Any], field: str) -> str:
    if field not in obj:
        raise ProtocolError(where, field, "missing")
    value = obj[field]
    if not isinstance(value, str):
        raise ProtocolError(where, field, f"must be a string, not {type(value).__name__}")
    return value


def _one_of(where: str, obj: dict[str, Any], field: str, allowed: Collection[str]) -> str:
    value = _str(where, obj, field)
    if value not in allowed:
        raise ProtocolError(where, field, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _id(where: str, obj: dict[str, Any], field: str) -> str:
    value = _str(where, obj, field)
    if not ID_RE.match(value):
        raise ProtocolError(where, field, f"{value!r} is not a valid id "
                                          "(1-64 letters, digits, '-' or '_')")
    return value


def _millis(where: str, obj: dict[str, Any], field: str, unit: str = "Unix milliseconds") -> int:
    if field not in obj:
        raise ProtocolError(where, field, "missing")
    value = obj[field]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(where, field,
                            f"must be an integer ({unit}), not {type(value).__name__}")
    if value < 0:
        raise ProtocolError(where, field, f"{value} is negative")
    return value
