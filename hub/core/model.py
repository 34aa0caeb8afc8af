"""The hub's vocabulary as data: alarm states, alarms, and page keys.

An alarm's timeline::

    raised ──(a person acknowledges)──> acknowledged ──(operator)──> resolved
       └──────────(device within its window, or operator)──────────> cancelled

Times are Unix milliseconds (``*_ms``) throughout: they travel as JSON and
sort as integers in Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: An alarm arriving this long after its press (device clock) is late, in ms: it sat in a
#: device's outbox while the network or broker was down. Its pages say how long ago it
#: was pressed.
LATE_MS = 30_000
#: A device clock saying the press came more than this long before the hub received it
#: is not believed (no outbox holds an alarm a day), in ms: people are told the receipt.
PRESS_CLOCK_LIMIT_MS = 86_400_000
#: The kind a safe-room door contact raises when its door closes: staff shelter there.
SAFE_ROOM_KIND = "safe_room"


class AlarmState(StrEnum):
    """Where an alarm is in its life; reads the same in Redis, JSON and logs."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Raised or acknowledged: someone may still be in danger."""
        return self in (AlarmState.RAISED, AlarmState.ACKNOWLEDGED)


class Channel(StrEnum):
    SMS = "sms"
    CALL = "call"
    PUSH = "push"     # Web Push to the contact's subscribed browsers (hub.edges.push)


@dataclass(frozen=True)
class Alarm:
    """One press, placed by the site config and stamped by the hub.

    ``pressed_at_ms`` is the device clock; ``received_at_ms`` the hub clock when
    it stored the alarm.

    ``drill``: the alarm was raised while its branch ran a drill, so it pages the
    ``drill`` contacts instead of police and its texts say DRILL. It is decided once,
    by the raise (hub.store.alarms), never again from the branch's state: a drill switched on
    later cannot turn a real alarm into practice, and one that runs out cannot send
    practice to the police. Someone saying REAL (hub.core.drill) clears it for good and
    records who and when in ``real_by`` / ``real_at_ms``.
    """

    id: str
    kind: str
    device: str
    branch: str
    room: str
    pressed_at_ms: int
    received_at_ms: int
    state: AlarmState = AlarmState.RAISED
    acknowledged_at_ms: int | None = None
    acknowledged_by: str | None = None
    closed_at_ms: int | None = None     # resolved or cancelled
    closed_by: str | None = None
    reason: str | None = None           # the outcome, or why it was cancelled
    #: When an attempt's pages all ended without reaching a person (refused by the API,
    #: or reported undelivered / unanswered); cleared when a later page reaches someone.
    nobody_reached_ms: int | None = None
    drill: bool = False
    real_at_ms: int | None = None       # when someone said it is not a drill
    real_by: str | None = None

    @property
    def press_trusted(self) -> bool:
        """The device clock's press time is believable: not after the hub received the
        alarm, nor more than :data:`PRESS_CLOCK_LIMIT_MS` before."""
        return 0 <= self.received_at_ms - self.pressed_at_ms <= PRESS_CLOCK_LIMIT_MS

    @property
    def told_pressed_ms(self) -> int:
        """When to tell people the button was pressed (Unix ms): the device clock's time if
        :attr:`press_trusted`, else the hub's receipt time."""
        return self.pressed_at_ms if self.press_trusted else self.received_at_ms

    def to_fields(self) -> dict[str, str]:
        """Flat string fields for a Redis hash (unset optional fields are left out)."""
        # drill is stored as "1"/"0", as the raise script writes it
        return {k: (("1" if v else "0") if k == "drill" else str(v))
                for k, v in self._items() if v is not None}

    def _items(self):
        # Not dataclasses.asdict: it deep-copies every field, ~70 us per call on the
        # press path (all fields here are immutable scalars); the instance dict holds the
        # fields in declaration order.
        return vars(self).items()

    @classmethod
    def from_fields(cls, fields: dict[str, str]) -> "Alarm":
        def opt_int(name: str) -> int | None:
            return int(fields[name]) if fields.get(name) else None

        return cls(id=fields["id"], kind=fields["kind"], device=fields["device"],
                   branch=fields["branch"], room=fields["room"],
                   pressed_at_ms=int(fields["pressed_at_ms"]),
                   received_at_ms=int(fields["received_at_ms"]),
                   state=AlarmState(fields["state"]),
                   acknowledged_at_ms=opt_int("acknowledged_at_ms"),
                   acknowledged_by=fields.get("acknowledged_by"),
                   closed_at_ms=opt_int("closed_at_ms"), closed_by=fields.get("closed_by"),
                   reason=fields.get("reason"),
                   nobody_reached_ms=opt_int("nobody_reached_ms"),
                   drill=fields.get("drill") == "1",
                   real_at_ms=opt_int("real_at_ms"), real_by=fields.get("real_by"))

    def to_json(self) -> dict[str, Any]:
        return {**dict(self._items()), "state": str(self.state)}


@dataclass(frozen=True)
class Shelter:
    """Staff sheltering in a safe room of a branch: its ``room`` id, since when (Unix ms,
    the press time told for its ``safe_room`` alarm), and that alarm's id. Recorded when
    the alarm is raised; gone when the door opens or the alarm closes."""

    room: str
    since_ms: int
    alarm_id: str


@dataclass(frozen=True)
class PageKey:
    """What makes a page unique: sent at most once per (alarm, step, contact, channel).

    ``contact`` is the contact's E.164 phone number; ``step`` counts escalation
    steps from 0.
    """

    alarm_id: str
    step: int
    contact: str
    channel: Channel

    def __str__(self) -> str:
        return f"{self.alarm_id}:{self.step}:{self.contact}:{self.channel}"

    @classmethod
    def parse(cls, text: str) -> "PageKey":
        """The key from its ``str()`` (``alarm:step:contact:channel``)."""
        alarm_id, step, contact, channel = text.split(":")
        return cls(alarm_id, int(step), contact, Channel(channel))

    @property
    def slot(self) -> str:
        """``alarm:contact:channel``: the same person by the same channel for the same
        alarm, whichever attempt. A page waiting to be tried again holds its slot; a later
        attempt's page to the slot replaces it, so a person gets one page, not one per
        attempt missed in an outage."""
        return f"{self.alarm_id}:{self.contact}:{self.channel}"


@dataclass(frozen=True)
class Delivery:
    """What a notifier reports for one message: accepted (``ok``) or a failure.

    ``retryable`` failures (HTTP 429, 5xx, timeouts, connection errors) may
    succeed if sent again; the others (an invalid number, say) will not.
    ``code`` is the provider's error code when it gave one (Twilio's 21211 ...).
    """

    ok: bool
    sid: str | None = None
    error: str | None = None
    code: int | None = None
    retryable: bool = False

    @classmethod
    def sent(cls, sid: str) -> "Delivery":
        return cls(ok=True, sid=sid)

    @classmethod
    def failed(cls, error: str, *, retryable: bool, code: int | None = None) -> "Delivery":
        return cls(ok=False, error=error, retryable=retryable, code=code)
