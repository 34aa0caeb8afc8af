"""Press patterns: one input's raw edges in, action names out.

Pure: no clock reads, threads or I/O. The firmware reports every raw level
change of one input with :meth:`PressDecoder.edge` (``active`` = button pressed
or door closed, i.e. the pin pulled to GND), and calls :meth:`PressDecoder.tick`
at :meth:`PressDecoder.next_deadline`; ``now`` is ``time.monotonic()`` seconds.
The debounce is ours: leave gpiozero's ``bounce_time`` unset.

Patterns, as written in the device config (case and spacing are free)::

    hold 2s               held down >= 2 s (0.5-10 s); fires while still held
    3 presses within 2s   3 short presses (2-10), the 3rd down <= 2 s (0.3-10 s) after the 1st
    press                 one short press, with no second one within the press window
    closed / opened       a door contact closed / opened

The timeline, rule by rule:

1. Debounce. A raw change counts once the level has stayed ``debounce_s``; the
   edge is then dated at the raw change that stuck, not at its confirmation. A
   burst of bounces collapses into one edge, or into none if the level comes
   back. Confirmation happens in whichever of edge()/tick() is called first at or
   after ``raw time + debounce_s``. A raw edge repeating the raw level is ignored.
2. Hold. Each hold rule fires once per press, as soon as ``now >= down +
   seconds`` while the input is down (exactly at the threshold counts), without
   waiting for the release. Then the release is not a press, and any press
   sequence in progress is discarded (a hold that starts as a multi-press is only
   a hold). A release that began before the threshold and is still in debounce
   makes the hold wait for it: released at 1.99 s of "hold 2s" is a short press.
3. A short press is a down->up in which no hold fired: shorter than the
   smallest hold (any length if there is no hold rule).
4. N presses. A sequence starts at a down; later downs count while they come at
   most W after its first down, W being the longest window configured (exactly W
   counts). Reaching the largest N fires that rule at once, at the Nth *down*: a
   frightened person need not let go. That press then counts for nothing more,
   but its hold still fires: an emergency is never swallowed. Otherwise, once W
   has passed and the last counted press is up, the rule for the exact count
   fires if its own window holds ("press" for one; two presses with rules
   {press, 3 presses} fire nothing). A down after W starts a new sequence.
5. "press" without N-press rules fires at the release. With them it fires only
   when W closes, W after the down: the price of telling one press from three.
6. closed / opened fire on the confirmed edges.
7. ``now`` may repeat but never go back (ValueError: the clock must be monotonic).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

HOLD_RANGE_S = (0.5, 10)       # seconds a hold may ask for
WINDOW_RANGE_S = (0.3, 10)     # seconds a press window may last
COUNT_RANGE = (2, 10)          # presses an "N presses" pattern may ask for
DEBOUNCE_RANGE_S = (0, 0.25)   # seconds a raw level may have to stay to count
ACCEPTED = ('accepted: "hold <seconds>s" (0.5-10 s, e.g. "hold 2s"), '
            '"<N> presses within <seconds>s" (N 2-10, 0.3-10 s, e.g. "3 presses within 2s"), '
            '"press", "closed", "opened"')


class PatternError(ValueError):
    """A pattern or rule set that cannot be used; ``where`` names it, ``problem`` the fix."""

    def __init__(self, where: str, problem: str):
        self.where, self.problem = where, problem
        super().__init__(f"{where}: {problem}")


def _check(where: str, what: str, value: object, bounds: tuple[float, float],
           kinds: tuple[type, ...] = (int, float), unit: str = " seconds") -> None:
    low, high = bounds
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise PatternError(where, f"{what} must be {low:g} to {high:g}{unit}, not {value!r}")


@dataclass(frozen=True)
class Hold:
    """Held down (pressed, or door closed) for at least ``seconds`` (0.5-10)."""

    seconds: float

    def __post_init__(self) -> None:
        _check(f"pattern '{self}'", "a hold", self.seconds, HOLD_RANGE_S)

    def __str__(self) -> str:
        return f"hold {self.seconds:g}s"


@dataclass(frozen=True)
class Presses:
    """``count`` (2-10) short presses, the last down at most ``within`` seconds after the first."""

    count: int
    within: float

    def __post_init__(self) -> None:
        _check(f"pattern '{self}'", "the number of presses", self.count, COUNT_RANGE, (int,),
               ' (one is "press")')
        _check(f"pattern '{self}'", "the window", self.within, WINDOW_RANGE_S)

    def __str__(self) -> str:
        return f"{self.count} presses within {self.within:g}s"


@dataclass(frozen=True)
class Press:
    """Exactly one short press."""

    def __str__(self) -> str:
        return "press"


@dataclass(frozen=True)
class Contact:
    """A door contact became closed (``closed=True``) or opened (``closed=False``)."""

    closed: bool

    def __str__(self) -> str:
        return "closed" if self.closed else "opened"


Pattern = Hold | Presses | Press | Contact

_NUM = r"(-?\d+(?:\.\d+)?|-?\.\d+)"
_SECONDS = r"\s*s(?:ec(?:ond)?s?)?"
_HOLD_RE = re.compile(rf"hold\s*{_NUM}{_SECONDS}")
_PRESSES_RE = re.compile(rf"(-?\d+)\s*press(?:es)?\s+within\s*{_NUM}{_SECONDS}")
_WORDS = {"press": Press(), "closed": Contact(True), "opened": Contact(False)}


def parse_pattern(text: str) -> Pattern:
    """One config pattern, e.g. ``"hold 2s"``, as a frozen dataclass; or :class:`PatternError`."""
    where = f"pattern {text!r}"
    norm = " ".join(text.lower().split()) if isinstance(text, str) else ""
    try:
        if norm in _WORDS:
            return _WORDS[norm]
        if m := _HOLD_RE.fullmatch(norm):
            return Hold(float(m[1]))
        if m := _PRESSES_RE.fullmatch(norm):
            return Presses(int(m[1]), float(m[2]))
    except PatternError as exc:
        raise PatternError(where, f"{exc.problem}; {ACCEPTED}") from None
    raise PatternError(where, f"not a pattern; {ACCEPTED}")


class PressDecoder:
    """One input's raw edges -> the actions of its rules (semantics: the module docstring).

    ``rules`` pairs patterns with action names, e.g. ``[(parse_pattern("hold 2s"),
    "emergency")]``; ``debounce_s`` (0-0.25 s) is how long a raw level must stay
    to count; ``initial_active`` is the input's level at start-up (a door closed
    at boot). A press already down at start-up has no known start and fires
    nothing. Not thread-safe: serialize the calls (one lock, or one thread).
    """

    def __init__(self, rules: Sequence[tuple[Pattern, str]], *, debounce_s: float = 0.03,
                 initial_active: bool = False):
        _check("PressDecoder", "debounce_s", debounce_s, DEBOUNCE_RANGE_S)
        self._debounce = debounce_s
        self._holds: list[tuple[float, str]] = []        # (seconds, action), shortest first
        self._counts: dict[int, tuple[float, str]] = {}  # presses -> (window s, action)
        self._door: dict[bool, str] = {}                 # closed? -> action
        self._add_rules(rules)
        self._top = max(self._counts, default=1)         # the count that fires at its down
        self._window = self._counts[self._top][0] if self._top > 1 else None   # W, seconds
        self._level = self._raw = bool(initial_active)   # confirmed level; latest raw level
        self._raw_at = -math.inf                         # when the raw level last changed
        self._down_at: float | None = None               # this press's down, if known
        self._held = 0                                   # hold rules fired in this press
        self._seq: list[float] = []                      # the open sequence's down times
        self._now: float | None = None                   # the latest call's now

    def _add_rules(self, rules: Sequence[tuple[Pattern, str]]) -> None:
        if not rules:
            raise PatternError("rules", "no rules; give at least one (pattern, action) pair")
        seen: dict[Pattern, str] = {}
        for i, rule in enumerate(rules, 1):
            if not isinstance(rule, (tuple, list)) or len(rule) != 2:
                raise PatternError(f"rule {i}", f"{rule!r} is not a (pattern, action) pair")
            pattern, action = rule
            where = f"rule {i} ({pattern} -> {action})"
            if not isinstance(pattern, Pattern):
                raise PatternError(where, f"{pattern!r} is not a pattern; use parse_pattern()")
            if not isinstance(action, str) or not action:
                raise PatternError(where, "the action must be a non-empty string")
            if pattern in seen:
                raise PatternError(where, f"'{pattern}' already raises {seen[pattern]!r}; keep one")
            seen[pattern] = action
            if isinstance(pattern, Hold):
                self._holds.append((pattern.seconds, action))
            elif isinstance(pattern, Contact):
                self._door[pattern.closed] = action
            else:
                n, window = (pattern.count, pattern.within) if isinstance(pattern, Presses) \
                    else (1, math.inf)
                if n in self._counts:
                    raise PatternError(where, f"another rule already counts {n} presses "
                                              f"({self._counts[n][1]!r}); keep one")
                self._counts[n] = (window, action)
        self._holds.sort()
        if self._door and (self._holds or self._counts):
            raise PatternError("rules", "door patterns (closed, opened) and button patterns "
                                        "(hold, press, N presses) cannot share one input; "
                                        "give each input its own decoder")
        multi = sorted((n, w) for n, (w, _) in self._counts.items() if n > 1)
        for (n1, w1), (n2, w2) in zip(multi, multi[1:]):
            if w2 < w1:
                raise PatternError("rules", f"'{n2} presses within {w2:g}s' has a shorter "
                                            f"window than '{n1} presses within {w1:g}s'; "
                                            "more presses need at least as long a window")

    def edge(self, active: bool, now: float) -> list[str]:
        """The raw level changed at ``now`` (seconds); returns the actions that fire, in order."""
        self._clock(now)
        fired = self._advance(now)                    # what was due before this edge
        if bool(active) != self._raw:
            self._raw, self._raw_at = bool(active), now
        return fired + self._advance(now)

    def tick(self, now: float) -> list[str]:
        """Time passed; returns the actions due by ``now`` (seconds), in order."""
        self._clock(now)
        return self._advance(now)

    def next_deadline(self) -> float | None:
        """The earliest ``now`` at which tick() could fire or confirm something; None if idle."""
        step = self._next()
        return step[0] if step else None

    # --- the timeline ---------------------------------------------------------------

    def _clock(self, now: float) -> None:
        if isinstance(now, bool) or not isinstance(now, (int, float)) or math.isnan(now):
            raise ValueError(f"now must be monotonic seconds (a float), not {now!r}")
        if self._now is not None and now < self._now:
            raise ValueError(f"now={now!r} is earlier than the previous call's {self._now!r}: "
                             "the clock went backwards; pass time.monotonic()")
        self._now = now

    def _next(self) -> tuple[float, Callable[[], list[str]]] | None:
        """``(when, what)`` comes next. A raw change in debounce holds back holds and
        window ends: any due by then were taken before edge() registered it."""
        if self._raw != self._level:
            return self._raw_at + self._debounce, self._confirm
        if self._down_at is not None and self._held < len(self._holds):
            return self._down_at + self._holds[self._held][0], self._hold
        if not self._level and self._seq:   # a down exactly at W counts: close just after W
            return math.nextafter(self._seq[0] + self._window, math.inf), self._close
        return None

    def _advance(self, now: float) -> list[str]:
        fired: list[str] = []
        while (step := self._next()) is not None and step[0] <= now:
            fired += step[1]()
        return fired

    def _confirm(self) -> list[str]:
        self._level = self._raw
        if self._door:
            return [self._door[self._level]] if self._level in self._door else []
        if not self._level:
            short, self._down_at = self._down_at is not None and self._held == 0, None
            no_window_press = short and self._window is None and 1 in self._counts
            return [self._counts[1][1]] if no_window_press else []   # else: wait for W
        self._down_at, self._held = self._raw_at, 0
        if self._window is None:
            return []                  # no N-press rules: a press is decided at its release
        self._seq.append(self._raw_at)
        if len(self._seq) < self._top:
            return []
        self._seq = []                 # this press counts for nothing more; its hold still fires
        return [self._counts[self._top][1]]

    def _hold(self) -> list[str]:
        self._held, self._seq = self._held + 1, []
        return [self._holds[self._held - 1][1]]

    def _close(self) -> list[str]:
        first, last, n = self._seq[0], self._seq[-1], len(self._seq)
        self._seq = []
        window, action = self._counts.get(n, (0.0, None))
        return [action] if action is not None and last <= first + window else []
