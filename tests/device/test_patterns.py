"""The press-pattern decoder: never miss an emergency, never invent one.

Each table row drives a decoder with raw events ``(kind, seconds)`` - kind is
``down`` / ``up`` (raw pin edges) or ``tick`` - and pins every action *and the
call it fired in*, written ``"action@time"``. The debounce is 0.03 s.
"""

from __future__ import annotations

import math
import random

import pytest

from device.patterns import (Contact, Hold, PatternError, Press, PressDecoder, Presses,
                             parse_pattern)

BUTTON = ("press -> test", "3 presses within 2s -> assist", "hold 2s -> emergency")
WEARABLE = BUTTON + ("2 presses within 1s -> cancel",)        # the config's default button
PRESS_HOLD = ("press -> assist", "hold 2s -> emergency")     # no N-press rule
TWO_HOLDS = ("hold 5s -> test", "press -> assist", "hold 2s -> emergency")  # any order
FOUR = ("press -> test", "4 presses within 3s -> assist", "hold 2s -> emergency")
DOOR = ("closed -> safe_room_entered", "opened -> safe_room_left")


def decoder(rules, **options) -> PressDecoder:
    pairs = [(parse_pattern(p), a) for p, a in (r.split(" -> ") for r in rules)]
    return PressDecoder(pairs, **options)


def drive(d: PressDecoder, events) -> list[str]:
    """Feed events to ``d``; returns ``"action@time"`` for each action, in order."""
    out = []
    for kind, t in events:
        fired = d.tick(t) if kind == "tick" else d.edge(kind in ("down", "closed"), t)
        out += [f"{a}@{t:g}" for a in fired]
    return out


def presses(*spans):
    """Clean presses, each ``(down, up)`` in seconds."""
    return [e for down, up in spans for e in (("down", down), ("up", up))]


CASES = {
    # --- one press ---------------------------------------------------------------
    "press waits for the window (2 s after its down)": (
        BUTTON, presses((0, 0.1)) + [("tick", 1.99), ("tick", 2.0), ("tick", 2.01)],
        ["test@2.01"]),
    "press without N-press rules fires at the confirmed release": (
        PRESS_HOLD, presses((0, 0.1)) + [("tick", 0.12), ("tick", 0.13), ("tick", 9)],
        ["assist@0.13"]),
    "a press nobody asked for fires nothing": (
        ("hold 2s -> emergency",), presses((0, 0.1)) + [("tick", 9)], []),
    # --- N presses -----------------------------------------------------------------
    "triple press fires at the 3rd down, not its release": (
        BUTTON, presses((0, 0.1), (0.3, 0.4)) + [("down", 0.6), ("tick", 0.65),
                                                  ("up", 0.7), ("tick", 9)],
        ["assist@0.65"]),
    "double press with {press, 3 presses} fires nothing": (
        BUTTON, presses((0, 0.1), (0.3, 0.4)) + [("tick", 9)], []),
    "double press within 1 s cancels when the 2 s window closes": (
        WEARABLE, presses((0, 0.1), (0.5, 0.6)) + [("tick", 2), ("tick", 2.1)],
        ["cancel@2.1"]),
    "double press with the 2nd down exactly at 1 s still cancels": (
        WEARABLE, presses((0, 0.1), (1.0, 1.1)) + [("tick", 9)], ["cancel@9"]),
    "double press outside its own 1 s window fires nothing": (
        WEARABLE, presses((0, 0.1), (1.5, 1.6)) + [("tick", 9)], []),
    "3rd down exactly at the window counts, even after a tick at that instant": (
        BUTTON, presses((0, 0.1), (1, 1.1)) + [("tick", 2.0), ("down", 2.0), ("tick", 2.05)],
        ["assist@2.05"]),
    "presses spread beyond the window start new sequences": (
        BUTTON, presses((0, 0.1), (1.5, 1.6), (2.5, 2.6)) + [("tick", 4.5), ("tick", 4.6)],
        ["test@4.6"]),
    "six quick presses are two triples (no ticks: found at the next edge)": (
        BUTTON, presses(*[(0.3 * i, 0.3 * i + 0.1) for i in range(6)]) + [("tick", 9)],
        ["assist@0.7", "assist@1.6"]),
    "the window waits for a counted press still down, then counts it": (
        BUTTON, presses((0, 0.1)) + [("down", 1.5), ("tick", 2.5), ("up", 3.0), ("tick", 3.1)],
        []),
    "without hold rules a long press is still a press, decided at its release": (
        ("press -> test", "3 presses within 2s -> assist"),
        [("down", 0), ("tick", 2.5), ("up", 3), ("tick", 3.05)], ["test@3.05"]),
    # --- holds ---------------------------------------------------------------------
    "hold exactly at the threshold fires, before the release": (
        PRESS_HOLD, [("down", 0), ("tick", 1.99), ("tick", 2.0), ("up", 2.5), ("tick", 9)],
        ["emergency@2"]),
    "release exactly at the threshold is a hold": (
        PRESS_HOLD, presses((0, 2.0)) + [("tick", 9)], ["emergency@2"]),
    "hold just under the threshold is a short press": (
        PRESS_HOLD, presses((0, 1.99)) + [("tick", 2.0), ("tick", 2.05), ("tick", 9)],
        ["assist@2.05"]),
    "a hold is not also a press, with or without N-press rules": (
        BUTTON, [("down", 0), ("tick", 2), ("up", 3), ("tick", 9)], ["emergency@2"]),
    "a hold discards the presses before it": (
        WEARABLE, presses((0, 0.1)) + [("down", 0.3), ("tick", 2.3), ("up", 3), ("tick", 9)],
        ["emergency@2.3"]),
    "one long hold fires each hold rule at its threshold": (
        TWO_HOLDS, [("down", 0), ("tick", 2), ("tick", 5), ("up", 6), ("tick", 9)],
        ["emergency@2", "test@5"]),
    "a hold that starts as a double press is only a hold": (
        BUTTON, presses((0, 0.1)) + [("down", 0.3), ("tick", 2.3), ("up", 3), ("tick", 9)],
        ["emergency@2.3"]),
    "a hold that starts as a triple press, below the largest N, is only a hold": (
        FOUR, presses((0, 0.1), (0.3, 0.4)) + [("down", 0.6), ("tick", 2.6), ("up", 3),
                                                ("tick", 9)],
        ["emergency@2.6"]),
    "triple press whose 3rd press is held: assist, then emergency": (
        BUTTON, presses((0, 0.1), (0.3, 0.4)) + [("down", 0.6), ("tick", 0.65),
                                                  ("tick", 2.6), ("up", 3), ("tick", 9)],
        ["assist@0.65", "emergency@2.6"]),
    "a hold found late by an edge still fires, first": (
        PRESS_HOLD, [("down", 0), ("up", 7), ("down", 8), ("tick", 8.05), ("up", 8.1),
                     ("tick", 9)],
        ["emergency@7", "assist@9"]),
    # --- contact bounce --------------------------------------------------------------
    "bounce on press and on release collapses to one press": (
        PRESS_HOLD, [("down", 0.000), ("up", 0.004), ("down", 0.008), ("up", 0.012),
                     ("down", 0.016), ("tick", 0.05), ("up", 0.5), ("down", 0.504),
                     ("up", 0.508), ("tick", 0.53), ("tick", 0.54), ("tick", 9)],
        ["assist@0.54"]),
    "bounce does not count as extra presses": (
        BUTTON, [("down", 0.000), ("up", 0.004), ("down", 0.008), ("up", 0.012),
                 ("down", 0.016), ("up", 0.2), ("down", 0.204), ("up", 0.208),
                 ("tick", 2.016), ("tick", 2.02)],
        ["test@2.02"]),
    "a bounce back to released fires nothing": (
        BUTTON, [("down", 0), ("up", 0.01), ("down", 0.02), ("up", 0.04), ("tick", 9)], []),
    "a bounce while held does not end the press": (
        PRESS_HOLD, [("down", 0), ("up", 1.0), ("down", 1.01), ("tick", 2), ("up", 3),
                     ("tick", 9)],
        ["emergency@2"]),
    "a release bouncing across the threshold is a hold, fired when it bounces back": (
        PRESS_HOLD, [("down", 0), ("up", 1.99), ("tick", 2.0), ("down", 2.01), ("up", 2.02),
                     ("tick", 9)],
        ["emergency@2.01"]),
    "repeated raw levels are ignored and do not restart the debounce": (
        PRESS_HOLD, [("down", 0), ("down", 0.02), ("tick", 2.0), ("up", 2.5), ("up", 2.51),
                     ("tick", 9)],
        ["emergency@2"]),
    "equal timestamps are allowed": (
        PRESS_HOLD, [("down", 1), ("up", 1), ("down", 1), ("tick", 1), ("up", 1.5),
                     ("tick", 1.54)],
        ["assist@1.54"]),
    # --- door contact ----------------------------------------------------------------
    "door closed and opened, each through bounce": (
        DOOR, [("closed", 0), ("opened", 0.005), ("closed", 0.01), ("tick", 0.03),
               ("tick", 0.05), ("tick", 60), ("opened", 60), ("closed", 60.01),
               ("opened", 60.02), ("tick", 60.06)],
        ["safe_room_entered@0.05", "safe_room_left@60.06"]),
    "a door that bounces back fires nothing": (
        DOOR, [("closed", 0), ("opened", 0.02), ("tick", 9)], []),
}


@pytest.mark.parametrize("rules, events, expected", CASES.values(), ids=CASES.keys())
def test_timeline(rules, events, expected):
    assert drive(decoder(rules), events) == expected


def test_confirmation_is_due_exactly_debounce_s_after_the_raw_change():
    d = decoder(PRESS_HOLD, debounce_s=0.25)
    d.edge(True, 1.0)
    assert d.next_deadline() == 1.25
    assert d.edge(False, 1.25) == []     # the down stayed 0.25 s: confirmed first, then released
    assert d.tick(1.5) == ["assist"]


def test_debounce_zero_confirms_at_once():
    d = decoder(PRESS_HOLD, debounce_s=0)
    assert d.edge(True, 1.0) == [] and d.edge(False, 1.1) == ["assist"]


WINDOW_END = math.nextafter(2.0, math.inf)   # a window closes the first instant after W


@pytest.mark.parametrize("rules, events, deadline", [
    (BUTTON, [], None),
    (BUTTON, [("down", 0)], 0 + 0.03),                       # the down's confirmation
    (BUTTON, [("down", 0), ("tick", 0.5)], 2.0),             # the hold
    (BUTTON, [("down", 0), ("up", 0.1)], 0.1 + 0.03),        # the release's confirmation
    (BUTTON, presses((0, 0.1)) + [("tick", 0.5)], WINDOW_END),
    (BUTTON, presses((0, 0.1)) + [("tick", 2), ("tick", WINDOW_END)], None),
    (BUTTON, presses((0, 0.1), (0.3, 0.4)) + [("down", 0.6), ("tick", 1)], 0.6 + 2.0),
    (TWO_HOLDS, [("down", 0), ("tick", 2)], 5.0),            # the next hold rule
    (TWO_HOLDS, [("down", 0), ("tick", 5)], None),           # held on, nothing left to fire
    (PRESS_HOLD, [("down", 0), ("tick", 1), ("up", 1.99)], 1.99 + 0.03),  # not the hold's 2.0
    (DOOR, [("closed", 0)], 0 + 0.03),
    (DOOR, [("closed", 0), ("tick", 1)], None),
])
def test_next_deadline_tells_the_firmware_when_to_tick(rules, events, deadline):
    d = decoder(rules)
    drive(d, events)
    assert d.next_deadline() == deadline
    if deadline is not None:
        before = math.nextafter(deadline, -math.inf)
        assert d.tick(before) == [] and d.next_deadline() == deadline
        d.tick(deadline)
        assert d.next_deadline() != deadline, "ticking at the deadline must make progress"


def test_door_closed_at_start_up_reports_the_opening():
    d = decoder(DOOR, initial_active=True)
    assert drive(d, [("closed", 1), ("opened", 5), ("tick", 6)]) == ["safe_room_left@6"]


@pytest.mark.parametrize("rules", [BUTTON, PRESS_HOLD])
def test_a_button_down_at_start_up_fires_nothing(rules):
    d = decoder(rules, initial_active=True)
    assert drive(d, [("tick", 9), ("up", 10), ("tick", 20)]) == []
    assert d.next_deadline() is None


@pytest.mark.parametrize("call", [lambda d: d.tick(0.5), lambda d: d.edge(True, 0.999)])
def test_a_clock_going_backwards_is_refused(call):
    d = decoder(BUTTON)
    d.tick(1.0)
    with pytest.raises(ValueError, match="backwards.*monotonic"):
        call(d)


@pytest.mark.parametrize("now", [math.nan, "1.0", None])
def test_a_now_that_is_not_a_number_is_refused(now):
    with pytest.raises(ValueError, match="monotonic seconds"):
        decoder(BUTTON).tick(now)


# --- parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, pattern", [
    ("hold 2s", Hold(2.0)),
    ("hold 2.5s", Hold(2.5)),
    ("Hold 2 s", Hold(2.0)),
    ("  HOLD   10s ", Hold(10.0)),
    ("hold 0.5 seconds", Hold(0.5)),
    ("3 presses within 2s", Presses(3, 2.0)),
    ("3 Presses  Within 2 s", Presses(3, 2.0)),
    ("2 presses within 0.3s", Presses(2, 0.3)),
    ("10 presses within 10s", Presses(10, 10.0)),
    ("press", Press()),
    (" Press ", Press()),
    ("closed", Contact(True)),
    ("OPENED", Contact(False)),
])
def test_accepted_patterns(text, pattern):
    assert parse_pattern(text) == pattern
    assert parse_pattern(str(pattern)) == pattern


@pytest.mark.parametrize("text, reason", [
    ("hold 0s", "a hold must be 0.5 to 10 seconds, not 0.0"),
    ("hold -1s", "a hold must be 0.5 to 10 seconds"),
    ("hold 0.4s", "a hold must be 0.5 to 10 seconds"),
    ("hold 11s", "a hold must be 0.5 to 10 seconds"),
    ("3 presses within 0s", "the window must be 0.3 to 10 seconds"),
    ("3 presses within 0.2s", "the window must be 0.3 to 10 seconds"),
    ("3 presses within 11s", "the window must be 0.3 to 10 seconds"),
    ("1 press within 2s", 'must be 2 to 10 (one is "press"), not 1'),
    ("0 presses within 2s", "must be 2 to 10"),
    ("11 presses within 2s", "must be 2 to 10"),
    ("hold 2", "not a pattern"),
    ("hold", "not a pattern"),
    ("hold 1e9s", "not a pattern"),
    ("hold nan s", "not a pattern"),
    ("holding 2s", "not a pattern"),
    ("double press", "not a pattern"),
    ("press twice", "not a pattern"),
    ("hold 2s press", "not a pattern"),
    ("3 presses", "not a pattern"),
    ("", "not a pattern"),
])
def test_rejected_patterns_quote_the_text_and_list_the_accepted_forms(text, reason):
    with pytest.raises(PatternError) as err:
        parse_pattern(text)
    message = str(err.value)
    assert message.startswith(f"pattern {text!r}: ")
    assert reason in message
    assert 'accepted: "hold <seconds>s"' in message and '"opened"' in message


def test_a_pattern_must_be_text():
    with pytest.raises(PatternError, match="pattern 2: not a pattern; accepted"):
        parse_pattern(2)


@pytest.mark.parametrize("build", [lambda: Hold(0), lambda: Presses(1, 2.0),
                                   lambda: Presses(3, math.inf), lambda: Hold(True)])
def test_patterns_built_directly_are_checked_too(build):
    with pytest.raises(PatternError):
        build()


# --- rule validation -------------------------------------------------------------------

@pytest.mark.parametrize("rules, reason", [
    ([], "no rules"),
    ([(Hold(2), "emergency"), (Hold(2.0), "test")], "'hold 2s' already raises 'emergency'"),
    ([(Presses(3, 2), "assist"), (Presses(3, 1), "test")], "already counts 3 presses"),
    ([(Contact(True), "safe_room"), (Press(), "test")], "cannot share one input"),
    ([(Contact(False), "x"), (Hold(2), "y")], "cannot share one input"),
    ([(Presses(2, 3), "cancel"), (Presses(3, 1), "assist")],
     "'3 presses within 1s' has a shorter window than '2 presses within 3s'"),
    ([(Hold(2), "")], "non-empty string"),
    ([(Hold(2), None)], "non-empty string"),
    ([("hold 2s", "emergency")], "not a pattern; use parse_pattern()"),
    ([Hold(2)], "is not a (pattern, action) pair"),
])
def test_rule_sets_that_cannot_work_are_refused(rules, reason):
    with pytest.raises(PatternError) as err:
        PressDecoder(rules)
    assert reason in str(err.value)


@pytest.mark.parametrize("debounce_s", [-0.01, 0.3, math.nan, "0.03"])
def test_debounce_out_of_range_is_refused(debounce_s):
    with pytest.raises(PatternError, match="debounce_s must be 0 to 0.25 seconds"):
        decoder(BUTTON, debounce_s=debounce_s)


@pytest.mark.parametrize("rules", [WEARABLE, PRESS_HOLD, TWO_HOLDS, FOUR, DOOR,
                                   ("closed -> safe_room",), ("hold 2s -> emergency",)])
def test_workable_rule_sets_are_accepted(rules):
    assert decoder(rules).next_deadline() is None


# --- randomized invariants -------------------------------------------------------------

DEBOUNCE = 0.03
HOLD_CONFIGS = {BUTTON: [(2.0, "emergency")], WEARABLE: [(2.0, "emergency")],
                PRESS_HOLD: [(2.0, "emergency")], FOUR: [(2.0, "emergency")],
                TWO_HOLDS: [(2.0, "emergency"), (5.0, "test")],
                ("hold 1.5s -> emergency",): [(1.5, "emergency")]}


def _burst(rng, events, t, active):
    """A raw edge to ``active`` at ``t``, maybe bouncing; returns when the level stuck."""
    events.append((active, t))
    for _ in range(rng.choice([0, 0, 1, 2, 3])):
        for level in (not active, active):
            t += rng.choice([0.0, rng.uniform(0, 0.9 * DEBOUNCE)])
            events.append((level, t))
    return t


def _random_presses(rng, holds):
    """Bouncy presses; returns raw ``(active, t)`` edges and the stuck ``(down, up)`` times."""
    events, spans, t = [], [], rng.uniform(0, 1)
    for _ in range(rng.randint(1, 7)):
        down = _burst(rng, events, t, True)
        hold_s = rng.choice(holds)[0]
        length = rng.choice([rng.uniform(1.5 * DEBOUNCE, 0.4), rng.uniform(0.4, hold_s),
                             hold_s, rng.uniform(hold_s - 0.02, hold_s + 0.02),
                             rng.uniform(hold_s, 7)])
        up = _burst(rng, events, max(down + length, down + 1.5 * DEBOUNCE), False)
        spans.append((down, up))
        t = up + rng.choice([rng.uniform(1.5 * DEBOUNCE, 0.5), rng.uniform(0.5, 4)])
    return events, spans


def _run(d, events, rng, diligent):
    """Edges in order; ticks at every deadline (diligent) or now and then. Returns (t, action)."""
    fired, last = [], events[0][1]
    for active, t in events:
        while diligent and (due := d.next_deadline()) is not None and due <= t:
            fired += [(due, a) for a in d.tick(due)]
        if not diligent and rng.random() < 0.3:
            tick_at = rng.uniform(last, t)
            fired += [(tick_at, a) for a in d.tick(tick_at)]
        fired += [(t, a) for a in d.edge(active, t)]
        last = t
    fired += [(last + 20, a) for a in d.tick(last + 20)]
    assert d.next_deadline() is None, "a quiet, released input must leave nothing pending"
    return fired


def _expected(rules, spans):
    """The semantics restated over clean, stuck ``(down, up)`` spans: the test oracle."""
    parsed = [(parse_pattern(text), action) for text, action in
              (rule.split(" -> ") for rule in rules)]
    holds = sorted((p.seconds, a) for p, a in parsed if isinstance(p, Hold))
    counts = {p.count: (p.within, a) for p, a in parsed if isinstance(p, Presses)}
    counts.update({1: (math.inf, a) for p, a in parsed if isinstance(p, Press)})
    top = max(counts, default=0)
    window = counts[top][0] if top > 1 else None
    out, seq = [], []

    def close():
        w, action = counts.get(len(seq), (None, None))
        return [action] if action and seq[-1] <= seq[0] + w else []

    for down, up in spans:
        if seq and down > seq[0] + window:
            out, seq = out + close(), []
        if window is not None:
            seq.append(down)
            if len(seq) == top:
                out, seq = out + [counts[top][1]], []
        held = [a for s, a in holds if up >= down + s]
        out += held
        if held:
            seq = []
        elif window is None and 1 in counts:
            out.append(counts[1][1])
    return out + (close() if seq else [])


@pytest.mark.parametrize("seed", range(20))
def test_random_bouncy_presses_fire_what_the_rules_say_and_holds_on_time(seed):
    rng = random.Random(seed)
    for _ in range(30):
        rules = rng.choice(list(HOLD_CONFIGS))
        holds = HOLD_CONFIGS[rules]
        events, spans = _random_presses(rng, holds)
        diligent = _run(decoder(rules), events, rng, diligent=True)
        sparse = _run(decoder(rules), events, rng, diligent=False)
        assert [a for _, a in diligent] == [a for _, a in sparse], "tick timing changed what fired"
        assert [a for _, a in diligent] == _expected(rules, spans), (rules, spans)
        for hold_s, action in holds:
            held = [down for down, up in spans if up >= down + hold_s]
            fired_at = [t for t, a in diligent if a == action]
            assert len(fired_at) == len(held), (rules, spans, diligent)
            for down, t in zip(held, fired_at):   # at the threshold, or as a bounce ends
                assert down + hold_s <= t <= down + hold_s + DEBOUNCE


@pytest.mark.parametrize("seed", range(10))
def test_random_bounce_alone_never_fires_anything(seed):
    rng = random.Random(seed)
    for _ in range(30):
        rules = rng.choice([BUTTON, WEARABLE, PRESS_HOLD, TWO_HOLDS, FOUR, DOOR])
        events, t = [], rng.uniform(0, 1)
        for _ in range(rng.randint(1, 5)):        # bursts that end where they began
            for level in [True, False] * rng.randint(1, 4):
                events.append((level, t))
                t += rng.choice([0.0, rng.uniform(0, 0.9 * DEBOUNCE)])
            t += rng.uniform(0, 3)
        assert _run(decoder(rules), events, rng, diligent=rng.random() < 0.5) == []


@pytest.mark.parametrize("seed", range(10))
def test_random_well_ordered_input_never_raises(seed):
    rng = random.Random(seed)
    for _ in range(30):
        rules = rng.choice([BUTTON, WEARABLE, PRESS_HOLD, TWO_HOLDS, FOUR, DOOR])
        actions = {r.split(" -> ")[1] for r in rules}
        d, t = decoder(rules, debounce_s=rng.choice([0, 0.01, 0.03, 0.25])), rng.uniform(-5, 5)
        for _ in range(rng.randint(1, 60)):
            t += rng.choice([0.0, rng.uniform(0, 0.05), rng.uniform(0, 3)])
            fired = d.tick(t) if rng.random() < 0.3 else d.edge(rng.random() < 0.5, t)
            assert set(fired) <= actions
            due = d.next_deadline()
            assert due is None or due >= t
