"""The alarm lifecycle as a pure function: ``transition(alarm, event, now_ms)``.

::

    raised ──acknowledge──> acknowledged ──resolve──> resolved
      │  └────────────────────resolve─────────────────────^
      ├──cancel_device (assist-like kinds, within the kind's window)──> cancelled
      └──cancel_operator (any kind, with a reason; also from acknowledged)──> cancelled

No I/O and no clock reads: the store applies the result atomically and the hub
sends the device the command it names (``acknowledged`` or ``resolved``). An
emergency is never cancelled from the device - a coerced cancel is a real
risk - so its kind has no cancel window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from hub.core.model import Alarm, AlarmState


class AlarmEvent(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"
    CANCEL_DEVICE = "cancel_device"
    CANCEL_OPERATOR = "cancel_operator"


class IllegalTransition(ValueError):
    """The event does not apply to the alarm in its current state; the message says why."""


@dataclass(frozen=True)
class Transition:
    alarm: Alarm
    device_command: str | None  # what the device that raised it is told


_NEXT: dict[tuple[AlarmState, AlarmEvent], AlarmState] = {
    (AlarmState.RAISED, AlarmEvent.ACKNOWLEDGE): AlarmState.ACKNOWLEDGED,
    (AlarmState.RAISED, AlarmEvent.RESOLVE): AlarmState.RESOLVED,
    (AlarmState.ACKNOWLEDGED, AlarmEvent.RESOLVE): AlarmState.RESOLVED,
    (AlarmState.RAISED, AlarmEvent.CANCEL_DEVICE): AlarmState.CANCELLED,
    (AlarmState.RAISED, AlarmEvent.CANCEL_OPERATOR): AlarmState.CANCELLED,
    (AlarmState.ACKNOWLEDGED, AlarmEvent.CANCEL_OPERATOR): AlarmState.CANCELLED,
}


def transition(alarm: Alarm, event: AlarmEvent, now_ms: int, *, by: str,
               reason: str | None = None, cancel_window_ms: int = 0) -> Transition:
    """The alarm after ``event`` by ``by`` at ``now_ms``, or IllegalTransition."""
    target = _NEXT.get((alarm.state, event))
    if target is None:
        raise IllegalTransition(f"alarm {alarm.id} is {alarm.state}: cannot {event}")
    if event is AlarmEvent.CANCEL_DEVICE:
        if cancel_window_ms <= 0:
            raise IllegalTransition(f"a {alarm.kind} alarm cannot be cancelled from the device; "
                                    "an operator resolves it")
        if now_ms - alarm.received_at_ms > cancel_window_ms:
            raise IllegalTransition(f"the {cancel_window_ms // 1000} s cancel window of alarm "
                                    f"{alarm.id} has passed")
    if event in (AlarmEvent.CANCEL_OPERATOR, AlarmEvent.RESOLVE) and not (reason or "").strip():
        raise IllegalTransition(f"{event} needs a reason (an outcome or why it was a false alarm)")
    if target is AlarmState.ACKNOWLEDGED:
        new = replace(alarm, state=target, acknowledged_at_ms=now_ms, acknowledged_by=by)
        return Transition(new, "acknowledged")
    new = replace(alarm, state=target, closed_at_ms=now_ms, closed_by=by,
                  reason=reason or "cancelled from the device")
    return Transition(new, "resolved")
