"""Drill alarms, and the one way out of a drill: someone says REAL. Pure.

While a branch runs a drill (``haven branch drill BRANCH on --minutes N``, ending by
itself), an alarm raised there is a **drill alarm**: the ``drill`` contacts are paged
instead of police and every text and call says it is a drill. A real emergency can
happen during a drill, and the person pressing cannot tell the hub so; so:

- **Per alarm, decided once.** The raise (hub.store.alarms, in the same Redis step that stores
  the alarm) sets ``Alarm.drill`` from the branch's drill switch at ``received_at_ms``.
  Later attempts read the alarm, not the branch: a drill switched on after a real
  alarm was raised leaves that alarm real, and a drill that runs out does not send a
  practice alarm to the police.
- **Every drill page says how to leave the drill**: texts end "Reply REAL if this is
  not a drill", calls say "press 9 if this is not a drill" (when Twilio's replies reach
  the dashboard); the alarm page has a *This is real* button; the CLI has
  ``haven alarm real ID``.
- **REAL turns the alarm real at once** (:func:`make_real`, applied atomically by
  ``Store.make_real``): ``drill`` is cleared for good, a ``real`` timeline entry says
  who and how, and the alarm's next escalation attempt is due *now* with the real
  policy: the hub's timer (every 0.2 s) pages the step's contacts, police included,
  without the DRILL prefix. An alarm already acknowledged during the drill still gets
  that one attempt (police never heard of it); escalation then stays stopped.
- **The person pressing feels it**: the hub's ``received`` says ``drill`` and the device
  shows DRILL (four blinks, two buzzes) instead of RECEIVED; on REAL the hub sends a
  plain ``received`` and the device shows RECEIVED (device.protocol, device.feedback).
- **Nothing else turns a drill alarm real**: not the drill ending, not an
  acknowledgement. Drill alarms never reach police otherwise.

Times are Unix milliseconds.
"""

from __future__ import annotations

from dataclasses import replace

from hub.core.escalation import POLICE_ROLE
from hub.core.lifecycle import IllegalTransition
from hub.core.model import Alarm, AlarmState
from hub.core.site import Site

#: The longest drill, in minutes (CLI and dashboard): a drill must end by itself, so a
#: mistyped ``--minutes`` cannot keep police away from a branch for days.
MAX_DRILL_MIN = 12 * 60

#: SMS replies (trimmed, lower-cased, a final "." or "!" dropped) that turn a drill real.
REAL_WORDS = frozenset({"real", "not a drill", "this is real", "real emergency", "9"})
#: The key pressed on a drill call to turn it real.
REAL_DIGIT = "9"


def make_real(alarm: Alarm, now_ms: int, *, by: str) -> Alarm:
    """The alarm, no longer a drill, as said by ``by`` at ``now_ms``.

    Raises :class:`hub.core.lifecycle.IllegalTransition` when it is not a drill alarm (it
    already pages with the real policy) or is no longer active (resolved or cancelled:
    raise a new alarm instead).
    """
    if not alarm.state.active:
        raise IllegalTransition(f"alarm {alarm.id} is {alarm.state}: it cannot be made real; "
                                "if someone is in danger, raise a new alarm")
    if not alarm.drill:
        raise IllegalTransition(f"alarm {alarm.id} is not a drill: it already pages with "
                                "the real policy")
    return replace(alarm, drill=False, real_at_ms=now_ms, real_by=by)


def pages_after_acknowledge(alarm: Alarm) -> bool:
    """Whether an acknowledged alarm still has one attempt to run: it was made real after
    its acknowledgement, so police (left out while it was a drill) must still be paged."""
    return (alarm.state is AlarmState.ACKNOWLEDGED and alarm.real_at_ms is not None
            and alarm.acknowledged_at_ms is not None
            and alarm.real_at_ms >= alarm.acknowledged_at_ms)


def who_is_paged(site: Site, alarm: Alarm) -> str:
    """What to tell whoever said REAL about who is paged now: police only where the
    kind's policy has them (an assist pages police only in a lone-worker branch)."""
    kind = site.kinds.get(alarm.kind)
    police = [kind is not None and any(POLICE_ROLE in step.notify
                                       for step in kind.policy(lone_worker=lone))
              for lone in (False, True)]
    if all(police):
        return "Police and everyone on its list are being paged now."
    if any(police):
        return ("Everyone on its list is being paged now, police too if the branch has "
                "a lone worker.")
    return "Everyone on its list is being paged now (its policy does not page police)."
