"""What the person who pressed feels and sees: LED, vibration motor, optional buzzer.

Each :class:`Signal` has a :class:`Cue`: one :class:`Pattern` per output, (level,
seconds) steps played ``repeat`` times (``None``: until replaced). They are told
apart by feel and at a glance (P persistent, T transient):

=================  =================================  ==================================
signal             LED                                vibration
=================  =================================  ==================================
IDLE (P)           0.05 s blip every 5 s              --
SENDING (P)        even blink 0.15/0.15 s             one 0.1 s tick (press registered)
RECEIVED (T)       on 1 s                             one 0.4 s buzz
DRILL (T)          four 0.25/0.25 s blinks            two 0.4 s buzzes
ACKNOWLEDGED (P)   steady on                          three long 0.6 s buzzes
RESOLVED (T)       three slow 0.5/0.5 s blinks        double tap 0.15 s
NOT_DELIVERED (P)  double flash every 1 s             1.5 s on / 1 s off until replaced
FAULT (P)          slow blink 1/1 s                   --
LOCATE (T)         fast blink 0.1/0.1 s for 10 s      --
CHECKIN (T)        short-long, 5 times (14.5 s)       short-long, 5 times
TEST_OK (T)        on 2 s                             --
ALERT (P)          three 0.1 s flashes every 2 s      long-short-short every 2.5 s
ANSWERED (T)       on 1.5 s                           one long 1 s buzz
ALERT_OVER (T)     two 0.1 s blinks                   --
=================  =================================  ==================================

ALERT, ANSWERED and ALERT_OVER are about a *colleague's* alarm (hub.engine.colleagues): a
colleague at this branch needs help (press to answer "I'm responding"); your answer
reached the hub and the person who pressed is told help is coming; the alert is over
here (someone else is responding, the alarm ended, you dismissed it, or it timed out).
They never sound the buzzer, whatever ``buzzer_for`` says (NEVER_BUZZER).

Silent by default: the buzzer sounds only for signals in ``buzzer_for``, by
default LOCATE (0.2 s chirp every 1 s for 10 s, for IT finding a device). The
staff procedure (seed 001) says "Stay calm" and "Do not attempt to ...
direct/influence customer behavior": a device beeping in a confrontation can
escalate it. (The other buzzer patterns, if enabled, are short beeps.)

Persistent signals stay until another one replaces them, except that IDLE never
hides NOT_DELIVERED or FAULT and FAULT never hides NOT_DELIVERED: those leave by
:meth:`FeedbackPlayer.clear` or another alarm signal. A transient plays once,
then the persistent signal resumes from its start; RECEIVED (or DRILL) ends SENDING and
RESOLVED ends SENDING and ACKNOWLEDGED (back to IDLE, or to FAULT if a FAULT
shown was not cleared since). The newest signal takes over every output within
~10 ms.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Iterator, Mapping

log = logging.getLogger("haven.device.feedback")

#: Steps more than this late (seconds) are not caught up; the rhythm restarts from now.
LATE_SLACK_S = 0.25
#: :attr:`FeedbackPlayer.history` keeps this many of the latest signals.
HISTORY_LIMIT = 10_000


class Signal(StrEnum):
    IDLE = "idle"                    # connected and idle
    SENDING = "sending"              # alarm published, the hub has not confirmed it yet
    RECEIVED = "received"            # the hub stored the alarm: people are being paged
    DRILL = "drill"                  # stored as a DRILL: police are NOT paged (hub.core.drill)
    ACKNOWLEDGED = "acknowledged"    # a person acknowledged: help is coming
    RESOLVED = "resolved"
    NOT_DELIVERED = "not_delivered"  # no confirmation from the hub in time: use the phone
    FAULT = "fault"                  # no broker, bad config: this device cannot alarm
    LOCATE = "locate"                # IT is looking for the device
    CHECKIN = "checkin"              # the hub asks a lone worker to check in (one press)
    TEST_OK = "test_ok"              # self-test passed
    ALERT = "alert"                  # a colleague's alarm at this branch: press to answer
    ANSWERED = "answered"            # your answer was taken: the presser hears help is coming
    ALERT_OVER = "alert_over"        # the colleague's alert ended on this device


PERSISTENT = frozenset({Signal.IDLE, Signal.SENDING, Signal.ACKNOWLEDGED,
                        Signal.NOT_DELIVERED, Signal.FAULT, Signal.ALERT})
#: The persistent signals a transient one concludes.
ENDS: Mapping[Signal, frozenset[Signal]] = MappingProxyType({
    Signal.RECEIVED: frozenset({Signal.SENDING}),
    Signal.DRILL: frozenset({Signal.SENDING}),
    Signal.RESOLVED: frozenset({Signal.SENDING, Signal.ACKNOWLEDGED}),
    Signal.ANSWERED: frozenset({Signal.ALERT}),
    Signal.ALERT_OVER: frozenset({Signal.ALERT}),
})
#: Priorities: a persistent signal is ignored while one it must not hide is on.
_NOT_HIDDEN_BY: Mapping[Signal, frozenset[Signal]] = MappingProxyType({
    Signal.IDLE: frozenset({Signal.NOT_DELIVERED, Signal.FAULT}),
    Signal.FAULT: frozenset({Signal.NOT_DELIVERED}),
    Signal.ALERT: frozenset({Signal.NOT_DELIVERED}),
})
DEFAULT_BUZZER_FOR = frozenset({Signal.LOCATE})
#: Signals that never sound the buzzer (a colleague's alert: the procedures say stay calm,
#: and a beeping device near the person who pressed can provoke).
NEVER_BUZZER = frozenset({Signal.ALERT, Signal.ANSWERED, Signal.ALERT_OVER})
OUTPUTS = ("led", "vibration", "buzzer")


@dataclass(frozen=True)
class Pattern:
    """(level, seconds) steps, played ``repeat`` times, or until replaced if ``None``."""
    steps: tuple[tuple[bool, float], ...] = ()
    repeat: int | None = 1

    def __post_init__(self):
        if any(seconds < 0 for _, seconds in self.steps):
            raise ValueError(f"pattern step durations must be >= 0 s: {self.steps}")
        if self.repeat is not None and self.repeat < 1:
            raise ValueError(f"pattern repeat must be None or >= 1, not {self.repeat}")
        if self.repeat is None and sum(s for _, s in self.steps) <= 0:
            raise ValueError("a pattern repeated forever needs steps lasting > 0 s")

    def levels(self) -> Iterator[tuple[bool, float]]:
        rounds = itertools.repeat(self.steps, *(() if self.repeat is None else (self.repeat,)))
        return itertools.chain.from_iterable(rounds)

    def scaled(self, factor: float) -> Pattern:
        """The same rhythm ``factor`` times as long (tests and demos use 0.01)."""
        return Pattern(tuple((lv, s * factor) for lv, s in self.steps), self.repeat)


@dataclass(frozen=True)
class Cue:
    """One signal's pattern on each output; an output without one stays off."""
    led: Pattern = field(default_factory=Pattern)
    vibration: Pattern = field(default_factory=Pattern)
    buzzer: Pattern = field(default_factory=Pattern)

    def scaled(self, factor: float) -> Cue:
        return Cue(*(getattr(self, name).scaled(factor) for name in OUTPUTS))


def pulses(n: int, on: float, off: float, *, repeat: int | None = 1) -> Pattern:
    """``n`` pulses of ``on`` seconds with ``off`` seconds between (and after, if repeated)."""
    steps = ((True, on), (False, off)) * n
    return Pattern(steps if repeat != 1 else steps[:-1], repeat)


STEADY = Pattern(((True, 3600.0),), None)
_SHORT_LONG = ((True, 0.15), (False, 0.15), (True, 0.6), (False, 2.0))
_DOUBLE_FLASH = ((True, 0.1), (False, 0.1), (True, 0.1), (False, 0.7))
PATTERNS: Mapping[Signal, Cue] = MappingProxyType({
    Signal.IDLE: Cue(led=Pattern(((True, 0.05), (False, 4.95)), None)),
    Signal.SENDING: Cue(led=pulses(1, 0.15, 0.15, repeat=None), vibration=pulses(1, 0.1, 0),
                        buzzer=pulses(1, 0.05, 0)),
    Signal.RECEIVED: Cue(led=pulses(1, 1.0, 0), vibration=pulses(1, 0.4, 0),
                         buzzer=pulses(1, 0.1, 0)),
    Signal.DRILL: Cue(led=pulses(4, 0.25, 0.25), vibration=pulses(2, 0.4, 0.4),
                      buzzer=pulses(2, 0.1, 0.1)),
    Signal.ACKNOWLEDGED: Cue(led=STEADY, vibration=pulses(3, 0.6, 0.3),
                             buzzer=pulses(3, 0.15, 0.15)),
    Signal.RESOLVED: Cue(led=pulses(3, 0.5, 0.5), vibration=pulses(2, 0.15, 0.15),
                         buzzer=pulses(2, 0.1, 0.1)),
    Signal.NOT_DELIVERED: Cue(led=Pattern(_DOUBLE_FLASH, None),
                              vibration=pulses(1, 1.5, 1.0, repeat=None),
                              buzzer=pulses(1, 1.0, 1.0, repeat=None)),
    Signal.FAULT: Cue(led=pulses(1, 1.0, 1.0, repeat=None)),
    Signal.LOCATE: Cue(led=pulses(1, 0.1, 0.1, repeat=50), buzzer=pulses(1, 0.2, 0.8, repeat=10)),
    Signal.CHECKIN: Cue(led=Pattern(_SHORT_LONG, 5), vibration=Pattern(_SHORT_LONG, 5)),
    Signal.TEST_OK: Cue(led=pulses(1, 2.0, 0), buzzer=pulses(1, 0.1, 0)),
    Signal.ALERT: Cue(led=Pattern(((True, 0.1), (False, 0.1)) * 2 + ((True, 0.1), (False, 1.5)),
                                  None),
                      vibration=Pattern(((True, 0.5), (False, 0.15), (True, 0.15), (False, 0.15),
                                         (True, 0.15), (False, 1.4)), None)),
    Signal.ANSWERED: Cue(led=pulses(1, 1.5, 0), vibration=pulses(1, 1.0, 0)),
    Signal.ALERT_OVER: Cue(led=pulses(2, 0.1, 0.3)),
})


class FeedbackPlayer:
    """Plays signals on gpiozero output devices (``LED``, ``DigitalOutputDevice``,
    ``Buzzer``; ``None`` for an output the device lacks) from one background thread.

    :meth:`show` never blocks and may be called from any thread (paho, gpiozero).
    The caller keeps ownership of the output devices; :meth:`close` turns them off
    but does not close them.
    """

    def __init__(self, *, led=None, vibration=None, buzzer=None,
                 buzzer_for: frozenset[Signal] = DEFAULT_BUZZER_FOR,
                 patterns: Mapping[Signal, Cue] = PATTERNS):
        missing = [s.value for s in Signal if s not in patterns]
        if missing:
            raise ValueError(f"feedback patterns lack signals: {', '.join(missing)}")
        self._outputs = {name: dev for name, dev in zip(OUTPUTS, (led, vibration, buzzer))
                         if dev is not None}
        self.buzzer_for = frozenset(Signal(s) for s in buzzer_for) - NEVER_BUZZER
        self.patterns = dict(patterns)
        self.history: list[Signal] = []
        self._cond = threading.Condition()
        self._persistent = Signal.IDLE
        self._fault = False  # FAULT shown and not cleared: what ND or an ended alarm falls back to
        self._transient: Signal | None = None
        self._gen = 0  # bumped whenever what should play changes
        self._closed = False
        self._failing: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="haven-feedback", daemon=True)
        self._thread.start()

    @property
    def persistent(self) -> Signal:
        """The signal the outputs return to when nothing transient plays."""
        return self._persistent

    def show(self, signal: Signal | str) -> None:
        """Show ``signal`` now (see the module docstring for what replaces what)."""
        signal = Signal(signal)
        with self._cond:
            self.history.append(signal)
            if len(self.history) > HISTORY_LIMIT:
                del self.history[0]
            if signal not in PERSISTENT:
                if self._persistent in ENDS.get(signal, ()):
                    self._persistent = self._base()
                self._transient = signal
                self._replay()
                return
            self._fault = self._fault or signal is Signal.FAULT
            if self._persistent in _NOT_HIDDEN_BY.get(signal, ()):
                return
            if signal is self._persistent and self._transient is not None:
                return  # a playing transient returns to it anyway
            self._persistent, self._transient = signal, None
            self._replay()

    def clear(self, signal: Signal | str) -> None:
        """Withdraw ``signal``: a fault that is over, a NOT_DELIVERED the person has
        seen, a CHECKIN or LOCATE that was answered. No effect if it is not on."""
        signal = Signal(signal)
        with self._cond:
            if signal is Signal.FAULT:
                self._fault = False
            if signal is self._transient:
                self._transient = None
                self._replay()
            elif signal is self._persistent and signal is not Signal.IDLE:
                self._persistent = self._base()
                if self._transient is None:  # else the transient returns to it by itself
                    self._replay()

    def _base(self) -> Signal:
        return Signal.FAULT if self._fault else Signal.IDLE

    def close(self) -> None:
        """Stop the thread and turn every output off. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=2)
        for name in self._outputs:
            self._write(name, False)

    def _replay(self) -> None:  # with self._cond held
        self._gen += 1
        self._cond.notify_all()

    # --- the player thread: one, driving every output ---------------------------

    def _run(self) -> None:
        while True:
            try:
                with self._cond:
                    if self._closed:
                        return
                    gen = self._gen
                    signal = self._transient or self._persistent
                finished = self._play(signal, gen)
                with self._cond:
                    if finished and self._gen == gen:
                        if self._transient is not None:
                            self._transient = None  # back to the persistent signal
                        else:
                            while self._gen == gen and not self._closed:
                                self._cond.wait()
            except Exception:  # never let the feedback die: log, pause, go on
                log.exception("feedback player failed; continuing")
                time.sleep(0.1)

    def _play(self, signal: Signal, gen: int) -> bool:
        """Play ``signal`` on every output; False if replaced or closed before its end."""
        cue = self.patterns[signal]
        now = time.monotonic()
        tracks = []
        for name in self._outputs:
            silent = name == "buzzer" and signal not in self.buzzer_for
            pattern = Pattern() if silent else getattr(cue, name)
            tracks.append([name, pattern.levels(), now])
        while True:
            for track in tracks:
                name, steps, due = track
                while steps is not None and due <= now:
                    step = next(steps, None)
                    if step is None:
                        steps = None
                        self._write(name, False)
                    else:
                        self._write(name, step[0])
                        due = max(due, now - LATE_SLACK_S) + step[1]
                track[1:] = [steps, due]
            pending = [due for _, steps, due in tracks if steps is not None]
            if not pending:
                return True
            with self._cond:
                while self._gen == gen and not self._closed:
                    remaining = min(pending) - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                if self._gen != gen or self._closed:
                    return False
            now = time.monotonic()

    def _write(self, name: str, level: bool) -> None:
        device = self._outputs[name]
        try:
            device.on() if level else device.off()
        except Exception:
            if name not in self._failing:
                self._failing.add(name)
                log.exception("feedback output %s failed", name)
        else:
            self._failing.discard(name)
