"""Page texts: when the button was pressed (issue 15, item 9) and the safe rooms staff
shelter in (item 6). Pure: an alarm, the sample site, and ``now``."""

import pytest

from hub.core.escalation import plan
from hub.core.messages import call_text, pressed_words, sms_text
from hub.core.model import Alarm, Shelter

NOW_MS = 1763840000000          # 2025-11-22 19:33:20 UTC = 11:33:20 in Los Angeles
MIN = 60_000


def alarm_at(pressed_ms: int, received_ms: int = NOW_MS, *, kind: str = "emergency",
             device: str = "main-circ-01", room: str = "circulation") -> Alarm:
    return Alarm(id="0b6f2a7e-5c1d-4c55-9d0e-2f7f6f1c9a10", kind=kind, device=device,
                 branch="main", room=room, pressed_at_ms=pressed_ms,
                 received_at_ms=received_ms)


@pytest.mark.parametrize("pressed_ms, received_ms, now_ms, said", [
    (NOW_MS - 2_000, NOW_MS, None, "Pressed 11:33 PST"),                    # on time
    (NOW_MS - 10 * MIN, NOW_MS, None, "Pressed 11:23 PST, 10 min ago"),     # from an outbox
    (NOW_MS - 65 * MIN, NOW_MS, None, "Pressed 10:28 PST, 1 h 5 min ago"),
    (NOW_MS - 10 * MIN, NOW_MS, NOW_MS + 4 * MIN, "Pressed 11:23 PST, 14 min ago"),  # round 3
    (NOW_MS - 2_000, NOW_MS, NOW_MS + 4 * MIN, "Pressed 11:33 PST, 4 min ago"),
    (NOW_MS + 5 * MIN, NOW_MS, None, "Alarm at 11:33 PST"),          # device clock ahead
    (NOW_MS - 25 * 60 * MIN, NOW_MS, None, "Alarm at 11:33 PST"),    # a day behind
    (0, NOW_MS, NOW_MS + 3 * MIN, "Alarm at 11:33 PST, 3 min ago"),  # no clock at all
])
def test_a_page_says_when_the_button_was_pressed(sample_site, pressed_ms, received_ms,
                                                 now_ms, said):
    alarm = alarm_at(pressed_ms, received_ms)
    assert pressed_words(alarm, sample_site, now_ms=now_ms) == said
    assert f"Library, Circulation Desk. {said}. Ref 0b6f2a7e" in \
        sms_text(alarm, sample_site, now_ms=now_ms)


def test_a_late_alarm_pages_the_press_time_not_the_arrival(sample_site):
    """The incident: replayed from an outbox 10 minutes after the press, paged at once."""
    alarm = alarm_at(NOW_MS - 10 * MIN)
    planned = plan(sample_site, alarm, sample_site.kinds["emergency"].steps, 0, drill=False,
                   now_ms=NOW_MS)
    texts = {str(p.key.channel): p.text for p in planned}
    assert "Pressed 11:23 PST, 10 min ago." in texts["sms"]
    assert "11:33" not in texts["sms"]
    assert "Pressed 10 minutes ago." in texts["call"]
    assert len(texts["sms"]) <= 160


def test_a_timely_call_says_nothing_about_time(sample_site):
    assert "Pressed" not in call_text(alarm_at(NOW_MS - 2_000), sample_site, now_ms=NOW_MS)


SHELTER = Shelter("safe-room", NOW_MS - 3 * MIN, "11111111-safe")


def test_responders_hear_which_safe_room_staff_shelter_in_and_since_when(sample_site):
    alarm = alarm_at(NOW_MS - 1_000)
    planned = plan(sample_site, alarm, sample_site.kinds["emergency"].steps, 0, drill=False,
                   now_ms=NOW_MS, shelters=(SHELTER,))
    told = {(p.contact.name, str(p.key.channel)): p.text for p in planned}
    for name in ("Police dispatch (non-emergency line)", "Main circulation desk"):
        assert "Staff sheltering in Safe Room since 11:30 PST." in told[(name, "sms")]
        assert "Staff are sheltering in Safe Room since 11:30 AM." in told[(name, "call")]
    manager = "Dana Ortiz (branch manager)"
    assert "shelter" not in told[(manager, "sms")] + told[(manager, "call")]
    # safety beats the one-segment aim, but not by much
    assert len(told[("Police dispatch (non-emergency line)", "sms")]) <= 200


def test_the_safe_room_alarm_does_not_repeat_its_own_shelter(sample_site):
    own = alarm_at(SHELTER.since_ms, kind="safe_room", device="main-safe-01",
                   room="safe-room")
    own = Alarm(**{**vars(own), "id": SHELTER.alarm_id})
    assert "since" not in sms_text(own, sample_site, shelters=(SHELTER,))


def test_a_drill_names_shelters_to_the_drill_contact_in_place_of_police(sample_site):
    alarm = alarm_at(NOW_MS - 1_000)
    planned = plan(sample_site, alarm, sample_site.kinds["emergency"].steps, 0, drill=True,
                   now_ms=NOW_MS, shelters=(SHELTER,))
    [coordinator] = [p for p in planned if p.contact.name == "Drill coordinator"
                     and str(p.key.channel) == "sms"]
    assert coordinator.text.startswith("DRILL ") and "Safe Room since 11:30 PST" in coordinator.text
