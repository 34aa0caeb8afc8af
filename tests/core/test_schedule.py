"""Shifts, overrides and branch state: parsing, wall-clock coverage across DST, switches."""

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from hub.errors import HubError
from hub.core.schedule import (FORM, BranchState, Override, ScheduleError, Shift, Switches,
                          branch_state, on_duty, parse_shift)

LA = ZoneInfo("America/Los_Angeles")
ZONES = {"main": "America/Los_Angeles", "westside": "America/Los_Angeles",
         "harbor": "Europe/London"}
ALL = frozenset(range(7))
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)
PHONE = "+12065550104"


def la(text: str) -> datetime:
    """A Los Angeles wall-clock time ("2026-05-04 12:00", a Monday) as aware UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=LA).astimezone(timezone.utc)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def ms(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)


# --- parsing -------------------------------------------------------------------

@pytest.mark.parametrize("text, branch, days, start, end", [
    ("westside Mon-Fri 12:00-21:00", "westside", {MON, TUE, WED, THU, FRI}, 720, 1260),
    ("westside Sat,Sun 10:00-17:00", "westside", {SAT, SUN}, 600, 1020),
    ("main daily 08:00-20:00", "main", ALL, 480, 1200),
    ("main Fri 22:00-06:00", "main", {FRI}, 1320, 360),
    ("main Fri-Mon 09:00-17:00", "main", {FRI, SAT, SUN, MON}, 540, 1020),
    ("main Sun-Sat 00:00-24:00", "main", ALL, 0, 1440),
    ("main DAILY 00:00-24:00", "main", ALL, 0, 1440),
    ("main mon,WED-thu 9:30-17:45", "main", {MON, WED, THU}, 570, 1065),
    ("main Sat-Sun,Tue 23:59-00:01", "main", {SAT, SUN, TUE}, 1439, 1),
    ("  main  Sat, Sun   10:00 - 17:00  ", "main", {SAT, SUN}, 600, 1020),
    ("harbor Mon 07:00-15:00", "harbor", {MON}, 420, 900),
])
def test_parse_accepts(text, branch, days, start, end):
    shift = parse_shift(text, ZONES)
    assert shift == Shift(branch, frozenset(days), start, end, ZONES[branch])


@pytest.mark.parametrize("text, problem", [
    ("", "not a shift"),
    ("main", "not a shift"),
    ("main Mon-Fri", "not a shift"),
    ("main 09:00-17:00", "not a shift"),
    ("main Mon-Fri 09:00-17:00 weekly", "not a shift"),
    ("main Mon-Fri 9-17", "start time '9' is not HH:MM"),
    ("main Mon-Fri 09:00-5pm", "end time '5pm' is not HH:MM"),
    ("main Funday 09:00-17:00", "unknown day 'Funday'"),
    ("main Monday 09:00-17:00", "unknown day 'Monday'"),
    ("main Mon,,Tue 09:00-17:00", "unknown day ''"),
    ("main Mon- 09:00-17:00", "unknown day ''"),
    ("main Mon-Tue-Wed 09:00-17:00", "unknown day 'Tue-Wed'"),
    ("main daily,Sat 09:00-17:00", "unknown day 'daily'"),
    ("main Mon-Mon 09:00-17:00", "'Mon-Mon' is ambiguous"),
    ("main Mon 09:00-09:00", "start and end are both 09:00"),
    ("main Mon 00:00-00:00", "for all day write 00:00-24:00"),
    ("main Mon 24:00-06:00", "cannot start at 24:00"),
    ("main Mon 25:00-26:00", "start time '25:00' is not a time of day"),
    ("main Mon 09:60-10:00", "start time '09:60' is not a time of day"),
    ("main Mon 09:00-24:30", "end time '24:30' is not a time of day"),
])
def test_parse_rejects_with_the_accepted_form(text, problem):
    with pytest.raises(ScheduleError) as err:
        parse_shift(text, ZONES)
    message = str(err.value)
    assert message.startswith(f"shift {text!r}: ")
    assert problem in message
    assert message.endswith(f"write {FORM}")
    assert "westside Mon-Fri 12:00-21:00" in message and "daily" in message


def test_unknown_branch_names_the_known_ones():
    with pytest.raises(ScheduleError, match=r"^shift 'eastside Mon 09:00-17:00': unknown branch "
                                            r"'eastside'; known: main, westside, harbor$"):
        parse_shift("eastside Mon 09:00-17:00", ZONES)


def test_a_branch_with_a_bad_zone_is_named():
    with pytest.raises(ScheduleError, match="branch 'main' has time zone 'Mars/Olympus'"):
        parse_shift("main Mon 09:00-17:00", {"main": "Mars/Olympus"})


def test_not_a_string():
    with pytest.raises(ScheduleError, match="shift 9: must be a string"):
        parse_shift(9, ZONES)  # type: ignore[arg-type]


def test_schedule_error_is_a_value_error_and_a_hub_error():
    assert issubclass(ScheduleError, ValueError) and issubclass(ScheduleError, HubError)


# --- covers --------------------------------------------------------------------
# 2026-05-04 is a Monday; 2026-05-08 a Friday.

@pytest.mark.parametrize("text, local, covered", [
    # start inclusive, end exclusive
    ("main Mon-Fri 12:00-21:00", "2026-05-04 11:59:59", False),
    ("main Mon-Fri 12:00-21:00", "2026-05-04 12:00", True),
    ("main Mon-Fri 12:00-21:00", "2026-05-04 20:59:59", True),
    ("main Mon-Fri 12:00-21:00", "2026-05-04 21:00", False),
    ("main Mon-Fri 12:00-21:00", "2026-05-09 12:00", False),         # Saturday
    ("main Sat,Sun 10:00-17:00", "2026-05-09 10:00", True),
    ("main Sat,Sun 10:00-17:00", "2026-05-10 16:59", True),
    ("main Sat,Sun 10:00-17:00", "2026-05-11 10:00", False),         # Monday
    # overnight: Friday 22:00 to Saturday 06:00
    ("main Fri 22:00-06:00", "2026-05-08 21:59", False),
    ("main Fri 22:00-06:00", "2026-05-08 22:00", True),
    ("main Fri 22:00-06:00", "2026-05-08 23:59:59", True),
    ("main Fri 22:00-06:00", "2026-05-09 00:00", True),
    ("main Fri 22:00-06:00", "2026-05-09 05:59", True),
    ("main Fri 22:00-06:00", "2026-05-09 06:00", False),
    ("main Fri 22:00-06:00", "2026-05-09 22:00", False),             # Saturday night
    ("main Fri 22:00-06:00", "2026-05-08 03:00", False),             # Thursday's small hours
    ("main Sun 22:00-06:00", "2026-05-04 05:00", True),              # Sunday into Monday
    # Fri-Mon wraps over the weekend
    ("main Fri-Mon 09:00-17:00", "2026-05-08 09:00", True),
    ("main Fri-Mon 09:00-17:00", "2026-05-10 12:00", True),
    ("main Fri-Mon 09:00-17:00", "2026-05-11 16:59", True),
    ("main Fri-Mon 09:00-17:00", "2026-05-12 12:00", False),         # Tuesday
    ("main Fri-Mon 09:00-17:00", "2026-05-07 12:00", False),         # Thursday
    # daily, and to midnight
    ("main daily 08:00-20:00", "2026-05-06 08:00", True),
    ("main daily 08:00-20:00", "2026-05-10 19:59", True),
    ("main daily 08:00-20:00", "2026-05-10 20:00", False),
    ("main daily 00:00-24:00", "2026-05-10 00:00", True),
    ("main daily 00:00-24:00", "2026-05-10 23:59:59", True),
    ("main Mon 18:00-24:00", "2026-05-04 23:59:59", True),
    ("main Mon 18:00-24:00", "2026-05-05 00:00", False),
])
def test_covers(text, local, covered):
    assert parse_shift(text, ZONES).covers(la(local)) is covered


@pytest.mark.parametrize("moment, covered", [
    # spring forward: 2026-03-08 02:00 PST -> 03:00 PDT (UTC-8 -> UTC-7)
    ("2026-03-07 15:59", False),  # Sat 07:59 PST
    ("2026-03-07 16:00", True),   # Sat 08:00 PST
    ("2026-03-08 14:59", False),  # Sun 07:59 PDT
    ("2026-03-08 15:00", True),   # Sun 08:00 PDT (a fixed UTC-8 would say 07:00)
    ("2026-03-08 15:30", True),
    ("2026-03-08 03:59", True),   # Sat 19:59 PST
    ("2026-03-08 04:00", False),  # Sat 20:00 PST
    ("2026-03-09 02:59", True),   # Sun 19:59 PDT
    ("2026-03-09 03:00", False),  # Sun 20:00 PDT
    # fall back: 2026-11-01 02:00 PDT -> 01:00 PST (UTC-7 -> UTC-8)
    ("2026-10-31 14:59", False),  # Sat 07:59 PDT
    ("2026-10-31 15:00", True),   # Sat 08:00 PDT
    ("2026-11-01 15:00", False),  # Sun 07:00 PST (a fixed UTC-7 would say 08:00)
    ("2026-11-01 15:59", False),  # Sun 07:59 PST
    ("2026-11-01 16:00", True),   # Sun 08:00 PST
    ("2026-11-02 03:59", True),   # Sun 19:59 PST
    ("2026-11-02 04:00", False),  # Sun 20:00 PST
])
def test_a_day_shift_follows_the_wall_clock_across_dst(moment, covered):
    assert parse_shift("main daily 08:00-20:00", ZONES).covers(utc(moment)) is covered


@pytest.mark.parametrize("moment, covered", [
    ("2026-03-08 05:59", False),  # Sat 21:59 PST
    ("2026-03-08 06:00", True),   # Sat 22:00 PST
    ("2026-03-08 09:59", True),   # Sun 01:59 PST, just before the jump
    ("2026-03-08 10:00", True),   # Sun 03:00 PDT
    ("2026-03-08 12:59", True),   # Sun 05:59 PDT
    ("2026-03-08 13:00", False),  # Sun 06:00 PDT: 7 hours on the clock, as written
    ("2026-11-01 05:00", True),   # Sat 22:00 PDT
    ("2026-11-01 08:30", True),   # Sun 01:30 PDT
    ("2026-11-01 09:30", True),   # Sun 01:30 PST, the repeated hour
    ("2026-11-01 13:59", True),   # Sun 05:59 PST
    ("2026-11-01 14:00", False),  # Sun 06:00 PST
])
def test_an_overnight_shift_across_dst(moment, covered):
    assert parse_shift("main Sat 22:00-06:00", ZONES).covers(utc(moment)) is covered


def test_covers_uses_the_branch_zone_and_accepts_any_offset():
    harbor = parse_shift("harbor Mon 07:00-15:00", ZONES)      # Europe/London, BST in May
    assert harbor.covers(utc("2026-05-04 06:00"))               # 07:00 BST
    assert not harbor.covers(utc("2026-05-04 05:59"))
    tokyo = timezone(timedelta(hours=9))
    assert harbor.covers(datetime(2026, 5, 4, 15, 0, tzinfo=tokyo))  # 07:00 BST


def test_a_naive_time_is_refused():
    shift = parse_shift("main daily 08:00-20:00", ZONES)
    with pytest.raises(ValueError, match="has no time zone; pass an aware datetime"):
        shift.covers(datetime(2026, 5, 4, 12, 0))
    with pytest.raises(ValueError, match="has no time zone"):
        on_duty(PHONE, (), "main", datetime(2026, 5, 4, 12, 0))


# --- on_duty and overrides -------------------------------------------------------

WEEKDAYS = (parse_shift("westside Mon-Fri 12:00-21:00", ZONES),
            parse_shift("main Sat 10:00-17:00", ZONES))
MONDAY_NOON = la("2026-05-04 12:00")
MONDAY_NIGHT = la("2026-05-04 22:00")


@pytest.mark.parametrize("shifts, branch, now, expected", [
    ((), "main", MONDAY_NOON, True),            # a desk with no shifts is always on duty
    ((), "westside", MONDAY_NIGHT, True),
    (WEEKDAYS, "westside", MONDAY_NOON, True),
    (WEEKDAYS, "westside", MONDAY_NIGHT, False),
    (WEEKDAYS, "main", MONDAY_NOON, False),     # on shift, but at the other branch
    (WEEKDAYS, "main", la("2026-05-09 12:00"), True),
    (WEEKDAYS, "harbor", MONDAY_NOON, False),   # has shifts, none at this branch
])
def test_on_duty_by_schedule(shifts, branch, now, expected):
    assert on_duty(PHONE, shifts, branch, now) is expected


@pytest.mark.parametrize("shifts, now, override, expected", [
    # forced off during a shift, until later / until exactly now / until earlier
    (WEEKDAYS, MONDAY_NOON, (False, +60_000), False),
    (WEEKDAYS, MONDAY_NOON, (False, 0), True),
    (WEEKDAYS, MONDAY_NOON, (False, -1), True),
    # forced on outside any shift
    (WEEKDAYS, MONDAY_NIGHT, (True, +1), True),
    (WEEKDAYS, MONDAY_NIGHT, (True, 0), False),
    # the always-on desk can be stood down too
    ((), MONDAY_NIGHT, (False, +3_600_000), False),
    ((), MONDAY_NIGHT, (False, -3_600_000), True),
])
def test_an_override_in_force_wins(shifts, now, override, expected):
    flag, offset_ms = override
    overrides = (Override(PHONE, "westside", flag, ms(now) + offset_ms),)
    assert on_duty(PHONE, shifts, "westside", now, overrides) is expected


@pytest.mark.parametrize("override", [
    Override("+12065550199", "westside", False, 2**62),  # another contact
    Override(PHONE, "main", False, 2**62),               # another branch
])
def test_an_override_applies_to_its_contact_and_branch_only(override):
    assert on_duty(PHONE, WEEKDAYS, "westside", MONDAY_NOON, (override,)) is True


def test_the_latest_override_in_force_wins():
    now = ms(MONDAY_NOON)
    off, on = (Override(PHONE, "westside", False, now + 60_000),
               Override(PHONE, "westside", True, now + 60_000))
    expired_on = Override(PHONE, "westside", True, now)
    assert on_duty(PHONE, WEEKDAYS, "westside", MONDAY_NOON, (on, off)) is False
    assert on_duty(PHONE, WEEKDAYS, "westside", MONDAY_NOON, (off, on)) is True
    assert on_duty(PHONE, WEEKDAYS, "westside", MONDAY_NOON, (off, expired_on)) is False


# --- branch state ------------------------------------------------------------------

NOW = 1_780_000_000_000
DRILL = Switches(drill_until_ms=NOW + 1, by="Dana")
DRILL_OVER = Switches(drill_until_ms=NOW, by="Dana")
S, L, D = BranchState.STAFFED, BranchState.LONE_WORKER, BranchState.DRILL


@pytest.mark.parametrize("lone_worker, staff, expected", [
    (None, 0, L), (None, 1, L), (None, 2, S), (None, 5, S),
    (True, 0, L), (True, 1, L), (True, 2, L),
    (False, 0, S), (False, 1, S), (False, 2, S),
])
def test_lone_worker_switch_and_schedule(lone_worker, staff, expected):
    assert branch_state(staff, Switches(lone_worker=lone_worker, by="Sam"), NOW) is expected


@pytest.mark.parametrize("switches, expected", [
    (Switches(drill_until_ms=NOW + 1), D),
    (Switches(drill_until_ms=NOW + 1, lone_worker=True), D),   # drill outranks everything
    (Switches(drill_until_ms=NOW + 1, lone_worker=False), D),
    (Switches(drill_until_ms=NOW), S),                         # expired at now == until
    (Switches(drill_until_ms=NOW - 1), S),
    (Switches(drill_until_ms=NOW, lone_worker=True), L),
    (Switches(drill_until_ms=None), S),
    (Switches(), S),
])
def test_drill_while_in_force(switches, expected):
    assert branch_state(2, switches, NOW) is expected


def test_negative_staff_is_refused():
    with pytest.raises(ValueError, match="staff_on_duty is -1"):
        branch_state(-1, Switches(), NOW)


def test_states_read_well_in_redis_and_json():
    assert [str(s) for s in BranchState] == ["staffed", "lone_worker", "drill"]
