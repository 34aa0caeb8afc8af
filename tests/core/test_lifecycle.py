"""The alarm lifecycle: every (state, event) pair, legal or not."""

import pytest

from hub.core.lifecycle import AlarmEvent, IllegalTransition, transition
from hub.core.model import Alarm, AlarmState

RAISED_AT = 1_000_000
LEGAL = {
    (AlarmState.RAISED, AlarmEvent.ACKNOWLEDGE): (AlarmState.ACKNOWLEDGED, "acknowledged"),
    (AlarmState.RAISED, AlarmEvent.RESOLVE): (AlarmState.RESOLVED, "resolved"),
    (AlarmState.ACKNOWLEDGED, AlarmEvent.RESOLVE): (AlarmState.RESOLVED, "resolved"),
    (AlarmState.RAISED, AlarmEvent.CANCEL_DEVICE): (AlarmState.CANCELLED, "resolved"),
    (AlarmState.RAISED, AlarmEvent.CANCEL_OPERATOR): (AlarmState.CANCELLED, "resolved"),
    (AlarmState.ACKNOWLEDGED, AlarmEvent.CANCEL_OPERATOR): (AlarmState.CANCELLED, "resolved"),
}


def alarm(state=AlarmState.RAISED, kind="assist"):
    return Alarm(id="a1", kind=kind, device="d1", branch="main", room="circ",
                 pressed_at_ms=RAISED_AT - 5, received_at_ms=RAISED_AT, state=state)


@pytest.mark.parametrize("state", list(AlarmState))
@pytest.mark.parametrize("event", list(AlarmEvent))
def test_every_state_and_event(state, event):
    now = RAISED_AT + 3000
    kwargs = dict(by="Dana", reason="false alarm", cancel_window_ms=10_000)
    if (state, event) in LEGAL:
        new_state, command = LEGAL[(state, event)]
        result = transition(alarm(state), event, now, **kwargs)
        assert result.alarm.state is new_state and result.device_command == command
        if new_state is AlarmState.ACKNOWLEDGED:
            assert (result.alarm.acknowledged_by, result.alarm.acknowledged_at_ms) == ("Dana", now)
        else:
            assert (result.alarm.closed_by, result.alarm.closed_at_ms) == ("Dana", now)
    else:
        with pytest.raises(IllegalTransition, match=f"is {state}: cannot {event}"):
            transition(alarm(state), event, now, **kwargs)


def test_an_emergency_cannot_be_cancelled_from_the_device():
    with pytest.raises(IllegalTransition, match="cannot be cancelled from the device"):
        transition(alarm(kind="emergency"), AlarmEvent.CANCEL_DEVICE, RAISED_AT + 1, by="d1",
                   cancel_window_ms=0)


@pytest.mark.parametrize("after_ms, allowed", [(0, True), (10_000, True), (10_001, False)])
def test_device_cancel_window_is_inclusive(after_ms, allowed):
    def cancel():
        return transition(alarm(), AlarmEvent.CANCEL_DEVICE, RAISED_AT + after_ms, by="d1",
                          cancel_window_ms=10_000)
    if allowed:
        assert cancel().alarm.reason == "cancelled from the device"
    else:
        with pytest.raises(IllegalTransition, match="cancel window"):
            cancel()


@pytest.mark.parametrize("event", [AlarmEvent.RESOLVE, AlarmEvent.CANCEL_OPERATOR])
def test_operators_give_a_reason(event):
    with pytest.raises(IllegalTransition, match="needs a reason"):
        transition(alarm(), event, RAISED_AT, by="Dana", reason="  ")
