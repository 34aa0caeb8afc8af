"""Feedback patterns on mock pins: what the person who pressed would feel and see."""

from __future__ import annotations

import logging
import random
import threading
import time
from itertools import combinations

import pytest
from gpiozero import LED, Buzzer, DigitalOutputDevice

from device.feedback import (DEFAULT_BUZZER_FOR, ENDS, PATTERNS, PERSISTENT, STEADY, Cue,
                             FeedbackPlayer, Pattern, Signal, pulses)

S = Signal
U = 0.01  # one time unit of the test patterns, seconds
ALARM_SIGNALS = [S.SENDING, S.RECEIVED, S.ACKNOWLEDGED, S.RESOLVED, S.NOT_DELIVERED]

#: Short patterns whose shapes can be counted on the pins.
TEST_PATTERNS = {
    S.IDLE: Cue(),
    S.SENDING: Cue(led=STEADY),
    S.RECEIVED: Cue(vibration=pulses(1, U, 0)),
    S.DRILL: Cue(vibration=pulses(2, U, U)),
    S.ACKNOWLEDGED: Cue(led=STEADY, vibration=pulses(3, U, U)),
    S.RESOLVED: Cue(vibration=pulses(2, U, U)),
    S.NOT_DELIVERED: Cue(led=pulses(1, U, U, repeat=None),
                         vibration=pulses(1, 2 * U, U, repeat=None)),
    S.FAULT: Cue(led=pulses(1, 10.0, 10.0, repeat=None)),  # slow: proves a new signal interrupts
    S.LOCATE: Cue(led=pulses(2, U, U), buzzer=pulses(2, U, U)),
    S.CHECKIN: Cue(vibration=pulses(4, U, U)),
    S.TEST_OK: Cue(led=pulses(1, U, 0)),
    S.ALERT: Cue(vibration=pulses(1, U, U, repeat=None), buzzer=pulses(1, U, U, repeat=None)),
    S.ANSWERED: Cue(vibration=pulses(1, 3 * U, 0)),
    S.ALERT_OVER: Cue(led=pulses(2, U, U)),
}
#: Every signal: one blip on every output, then off.
BLIPS = {s: Cue(pulses(1, U / 2, 0), pulses(1, U / 2, 0), pulses(1, U / 2, 0)) for s in Signal}


def levels(device) -> list[bool]:
    """The levels the device's pin went through, from its start (always off)."""
    return [bool(state.state) for state in device.pin.states]


def rises(device) -> int:
    return sum(1 for a, b in zip(levels(device), levels(device)[1:]) if b and not a)


def wait_for(predicate, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


@pytest.fixture
def outputs(pins):
    devices = (LED(5, pin_factory=pins), DigitalOutputDevice(6, pin_factory=pins),
               Buzzer(13, pin_factory=pins))
    yield devices
    for device in devices:
        device.close()


@pytest.fixture
def make_player(outputs):
    players = []
    led, vibration, buzzer = outputs

    def make(**options) -> FeedbackPlayer:
        options.setdefault("patterns", TEST_PATTERNS)
        player = FeedbackPlayer(led=led, vibration=vibration, buzzer=buzzer, **options)
        players.append(player)
        return player

    yield make
    for player in players:
        player.close()


# --- the default patterns (pure) -------------------------------------------------

def test_every_signal_has_a_pattern():
    assert set(PATTERNS) == set(Signal)
    assert set(ENDS) <= set(Signal) - PERSISTENT


@pytest.mark.parametrize("a, b",
                         list(combinations([S.RECEIVED, S.DRILL, S.ACKNOWLEDGED,
                                            S.NOT_DELIVERED], 2)))
def test_alarm_outcomes_differ_by_feel_and_by_sight(a, b):
    assert PATTERNS[a].vibration != PATTERNS[b].vibration
    assert PATTERNS[a].led != PATTERNS[b].led


def test_every_signal_looks_or_feels_different():
    for a, b in combinations(Signal, 2):
        assert (PATTERNS[a].led, PATTERNS[a].vibration) != (PATTERNS[b].led, PATTERNS[b].vibration)


def test_not_delivered_never_ends_by_itself():
    for pattern in (PATTERNS[S.NOT_DELIVERED].vibration, PATTERNS[S.NOT_DELIVERED].led):
        assert pattern.repeat is None and any(level for level, _ in pattern.steps)


@pytest.mark.parametrize("signal", sorted(set(Signal) - PERSISTENT))
def test_transient_patterns_end(signal):
    cue = PATTERNS[signal]
    assert all(p.repeat is not None for p in (cue.led, cue.vibration, cue.buzzer))
    assert sum(s for _, s in cue.led.steps) * cue.led.repeat <= 30


def test_buzzer_silent_by_default_for_alarms():
    assert DEFAULT_BUZZER_FOR == {S.LOCATE}
    assert not DEFAULT_BUZZER_FOR & set(ALARM_SIGNALS)


@pytest.mark.parametrize("steps, repeat", [(((True, -1.0),), 1), (((True, 1.0),), 0),
                                           ((), None), (((True, 0.0),), None)])
def test_bad_patterns_are_refused(steps, repeat):
    with pytest.raises(ValueError):
        Pattern(steps, repeat)


def test_patterns_must_cover_every_signal():
    with pytest.raises(ValueError, match="checkin"):
        FeedbackPlayer(patterns={s: c for s, c in PATTERNS.items() if s is not S.CHECKIN})


def test_scaled_keeps_the_rhythm():
    assert pulses(2, 1.0, 0.5).scaled(0.1) == Pattern(((True, 0.1), (False, 0.05), (True, 0.1)))


# --- which signal shows (no outputs: history and state only) ---------------------

@pytest.mark.parametrize("shown, cleared, expected", [
    ([], None, S.IDLE),
    ([S.SENDING], None, S.SENDING),
    ([S.SENDING, S.RECEIVED], None, S.IDLE),
    ([S.SENDING, S.RECEIVED, S.ACKNOWLEDGED], None, S.ACKNOWLEDGED),
    ([S.ACKNOWLEDGED, S.RESOLVED], None, S.IDLE),
    ([S.ACKNOWLEDGED, S.IDLE], None, S.IDLE),
    ([S.NOT_DELIVERED, S.IDLE], None, S.NOT_DELIVERED),
    ([S.NOT_DELIVERED, S.FAULT], None, S.NOT_DELIVERED),
    ([S.NOT_DELIVERED, S.RECEIVED, S.RESOLVED, S.LOCATE], None, S.NOT_DELIVERED),
    ([S.NOT_DELIVERED, S.FAULT], S.NOT_DELIVERED, S.FAULT),
    ([S.NOT_DELIVERED], S.NOT_DELIVERED, S.IDLE),
    ([S.NOT_DELIVERED, S.SENDING], None, S.SENDING),
    ([S.FAULT, S.IDLE], None, S.FAULT),
    ([S.FAULT, S.TEST_OK], None, S.FAULT),
    ([S.FAULT], S.FAULT, S.IDLE),
    ([S.FAULT, S.SENDING], None, S.SENDING),
    ([S.FAULT, S.SENDING, S.RECEIVED], None, S.FAULT),
    ([S.FAULT, S.ACKNOWLEDGED], S.FAULT, S.ACKNOWLEDGED),
    ([S.SENDING, S.FAULT], None, S.FAULT),
    ([S.ACKNOWLEDGED, S.FAULT, S.RESOLVED], None, S.FAULT),
    ([S.FAULT, S.SENDING], S.FAULT, S.SENDING),
    ([S.CHECKIN], S.CHECKIN, S.IDLE),
    ([S.IDLE], S.IDLE, S.IDLE),
])
def test_which_signal_persists(shown, cleared, expected):
    player = FeedbackPlayer()
    try:
        for signal in shown:
            player.show(signal)
        if cleared:
            player.clear(cleared)
        assert player.persistent is expected
        assert player.history == shown
    finally:
        player.close()


def test_a_player_without_outputs_records_history_and_never_fails(caplog):
    player = FeedbackPlayer()
    shown = list(Signal) + ["sending", "not_delivered"]
    for signal in shown:
        player.show(signal)
    player.clear(S.NOT_DELIVERED)
    player.clear(S.CHECKIN)
    player.close()
    player.show(S.SENDING)  # after close: recorded, nothing plays, no error
    assert player.history == [Signal(s) for s in shown] + [S.SENDING]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_unknown_signal_is_refused():
    player = FeedbackPlayer()
    try:
        with pytest.raises(ValueError):
            player.show("panic")
        assert player.history == []
    finally:
        player.close()


# --- what appears on the pins ------------------------------------------------------

def test_sending_received_acknowledged_in_order(make_player, outputs):
    led, vibration, _ = outputs
    player = make_player()
    player.show(S.SENDING)
    wait_for(lambda: led.is_lit, what="SENDING on the LED")
    player.show(S.RECEIVED)
    wait_for(lambda: levels(vibration) == [False, True, False], what="RECEIVED's buzz")
    assert not led.is_lit and player.persistent is S.IDLE
    player.show(S.ACKNOWLEDGED)
    wait_for(lambda: rises(vibration) == 4 and not vibration.value, what="three buzzes")
    assert levels(led) == [False, True, False, True]  # sending, received, acknowledged (steady)
    assert levels(vibration) == [False] + [True, False] * 4
    assert player.history == [S.SENDING, S.RECEIVED, S.ACKNOWLEDGED]


def test_a_transient_returns_to_the_persistent_signal(make_player, outputs):
    led, vibration, _ = outputs
    player = make_player()
    player.show(S.ACKNOWLEDGED)
    wait_for(lambda: rises(vibration) == 3 and not vibration.value, what="acknowledged")
    player.show(S.RECEIVED)  # a late duplicate: plays, then help-is-coming resumes
    wait_for(lambda: rises(vibration) == 7 and not vibration.value, what="acknowledged again")
    assert levels(led) == [False, True, False, True]
    assert player.persistent is S.ACKNOWLEDGED


def test_default_patterns_on_the_pins(make_player, outputs):
    led, vibration, buzzer = outputs
    fast = {s: cue.scaled(0.01) for s, cue in PATTERNS.items()} | {S.IDLE: Cue()}
    player = make_player(patterns=fast)
    player.show(S.ACKNOWLEDGED)
    wait_for(lambda: rises(vibration) == 3 and not vibration.value, what="three long buzzes")
    assert led.is_lit and levels(led) == [False, True]  # steady
    assert levels(buzzer) == [False]


def test_not_delivered_persists_and_resumes_after_a_transient(make_player, outputs):
    led, vibration, buzzer = outputs
    player = make_player()
    player.show(S.NOT_DELIVERED)
    wait_for(lambda: rises(vibration) >= 5, what="repeating urgent vibration")
    player.show(S.IDLE)  # does not hide it
    player.show(S.LOCATE)
    wait_for(lambda: rises(buzzer) == 2 and not buzzer.value, what="LOCATE")
    before = rises(vibration)
    wait_for(lambda: rises(vibration) >= before + 3, what="NOT_DELIVERED resumed")
    assert player.persistent is S.NOT_DELIVERED
    player.show(S.SENDING)  # a new attempt replaces it
    wait_for(lambda: not vibration.value and led.is_lit, what="SENDING")
    count = rises(vibration)
    later = time.monotonic() + 10 * U
    wait_for(lambda: time.monotonic() > later)
    assert rises(vibration) == count


def test_clear_not_delivered_returns_to_idle(make_player, outputs):
    _, vibration, _ = outputs
    player = make_player()
    player.show(S.NOT_DELIVERED)
    wait_for(lambda: rises(vibration) >= 2)
    player.clear(S.NOT_DELIVERED)
    wait_for(lambda: not vibration.value, what="vibration off")
    assert player.persistent is S.IDLE


def test_clear_stops_a_transient(make_player, outputs):
    led, vibration, _ = outputs
    player = make_player(patterns=TEST_PATTERNS | {S.CHECKIN: Cue(vibration=STEADY)})
    player.show(S.SENDING)
    player.show(S.CHECKIN)
    wait_for(lambda: vibration.value and not led.is_lit, what="CHECKIN")
    player.clear(S.CHECKIN)  # the wearer checked in
    wait_for(lambda: not vibration.value and led.is_lit, what="SENDING resumed")


def test_a_new_signal_interrupts_a_long_step(make_player, outputs):
    led, vibration, _ = outputs
    player = make_player()
    player.show(S.FAULT)  # a 10 s LED step
    wait_for(lambda: led.is_lit)
    shown = time.monotonic()
    player.show(S.CHECKIN)
    wait_for(lambda: vibration.value, timeout=1, what="CHECKIN")
    assert time.monotonic() - shown < 0.1
    assert not led.is_lit


def test_buzzer_never_sounds_unless_configured(make_player, outputs):
    led, _, buzzer = outputs
    player = make_player(patterns=BLIPS)
    order = [S.IDLE, S.SENDING, S.RECEIVED, S.DRILL, S.ACKNOWLEDGED, S.RESOLVED, S.ALERT,
             S.ANSWERED, S.ALERT, S.ALERT_OVER, S.FAULT, S.NOT_DELIVERED, S.CHECKIN,
             S.TEST_OK]  # each one shows (none is hidden)
    assert set(order) == set(Signal) - {S.LOCATE}
    wait_for(lambda: levels(led) == [False, True, False], what="IDLE at start")
    for signal in order:
        # a blip; a transient's blip is followed by its persistent signal's blip
        expected = len(led.pin.states) + (2 if signal in PERSISTENT else 4)
        player.show(signal)
        wait_for(lambda: len(led.pin.states) == expected, what=f"{signal} on the LED")
    assert levels(buzzer) == [False]
    player.show(S.LOCATE)
    wait_for(lambda: levels(buzzer) == [False, True, False], what="LOCATE's chirp")


def test_buzzer_sounds_for_configured_signals(make_player, outputs):
    _, _, buzzer = outputs
    player = make_player(patterns=BLIPS, buzzer_for=frozenset({S.SENDING}))
    player.show(S.SENDING)
    wait_for(lambda: levels(buzzer) == [False, True, False], what="SENDING's chirp")


def test_a_failing_output_is_logged_and_the_others_still_play(pins, caplog):
    class Broken:
        def on(self):
            raise RuntimeError("motor driver gone")
        off = on

    led = LED(5, pin_factory=pins)
    player = FeedbackPlayer(led=led, vibration=Broken(), patterns=TEST_PATTERNS)
    try:
        player.show(S.NOT_DELIVERED)
        wait_for(lambda: rises(led) >= 3, what="LED still blinking")
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1 and "vibration" in errors[0].getMessage()
    finally:
        player.close()
        led.close()


def test_close_turns_outputs_off_and_stops_the_thread(make_player, outputs):
    led, vibration, buzzer = outputs
    player = make_player(patterns=BLIPS | {S.NOT_DELIVERED: Cue(STEADY, STEADY, STEADY)},
                         buzzer_for=frozenset(Signal))
    player.show(S.NOT_DELIVERED)
    wait_for(lambda: led.is_lit and vibration.value and buzzer.value)
    player.close()
    assert (led.value, vibration.value, buzzer.value) == (0, 0, 0)
    assert not [t for t in threading.enumerate() if t.name == "haven-feedback"]
    before = levels(vibration)
    player.show(S.NOT_DELIVERED)  # after close: recorded, nothing plays
    player.close()  # idempotent
    assert levels(vibration) == before and player.history[-1] is S.NOT_DELIVERED


def test_show_from_many_threads_at_once(make_player, outputs, caplog):
    led, _, _ = outputs
    player = make_player()
    barrier = threading.Barrier(8)
    sequences = [[random.Random(n).choice(list(Signal)) for _ in range(200)] for n in range(8)]

    def hammer(sequence):
        barrier.wait()
        for signal in sequence:
            player.show(signal)

    threads = [threading.Thread(target=hammer, args=(seq,)) for seq in sequences]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(player.history) == 1600
    for sequence in sequences:  # each thread's signals kept their order
        it = iter(player.history)
        assert all(signal in it for signal in sequence)
    player.clear(S.NOT_DELIVERED)
    player.clear(S.FAULT)
    player.show(S.SENDING)  # still responsive afterwards
    wait_for(lambda: player.persistent is S.SENDING and led.is_lit, what="SENDING after the storm")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
