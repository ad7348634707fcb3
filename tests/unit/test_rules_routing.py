"""Route plans, hunting, final status and business-hours schedules."""

from __future__ import annotations

import datetime as dt

import pytest

from pbx.errors import InputError
from pbx.rules.routing import (
    Interval,
    Reject,
    RoutePlan,
    Schedule,
    choose_destinations,
    final_status,
    hunt_continues,
    is_open,
    parse_schedule,
    plan,
    register_strategy,
    strategy_names,
)

UTC = dt.UTC
DESTS = ["+14155550101", "+12125550123", "sip:agent@192.0.2.10"]


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ---------------------------------------------------------------- plans


def test_sequential_one_target_per_step_in_order() -> None:
    p = plan("sequential", DESTS, cursor=5)
    assert p.steps == ((DESTS[0],), (DESTS[1],), (DESTS[2],))
    assert p.next_cursor == 5


def test_simultaneous_one_step_with_all() -> None:
    p = plan("simultaneous", DESTS)
    assert p.steps == (tuple(DESTS),)
    assert p.targets() == DESTS


@pytest.mark.parametrize(
    ("cursor", "first", "next_cursor"), [(0, 0, 1), (1, 1, 2), (2, 2, 0), (7, 1, 2), (-1, 2, 0)]
)
def test_round_robin_starts_at_cursor_and_wraps(cursor: int, first: int, next_cursor: int) -> None:
    p = plan("round-robin", DESTS, cursor)
    assert p.steps[0] == (DESTS[first],)
    assert sorted(p.targets()) == sorted(DESTS)
    assert p.targets() == DESTS[first:] + DESTS[:first]
    assert p.next_cursor == next_cursor


@pytest.mark.parametrize("strategy", ["sequential", "simultaneous", "round-robin"])
def test_empty_destinations_give_empty_plan(strategy: str) -> None:
    assert plan(strategy, [], 3).steps == ()


def test_unknown_strategy_is_input_error() -> None:
    with pytest.raises(InputError, match="unknown strategy 'random'"):
        plan("random", DESTS)


def test_registered_strategy_is_used() -> None:
    def reverse(dests: list[str], cursor: int) -> RoutePlan[str]:
        return RoutePlan(tuple((d,) for d in reversed(dests)), cursor)

    register_strategy("test-reverse", reverse)  # type: ignore[arg-type]
    assert "test-reverse" in strategy_names()
    assert plan("test-reverse", DESTS).targets() == DESTS[::-1]


# ---------------------------------------------------- hunting / final status


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, True),
        (180, False),
        (200, False),
        (302, True),
        (404, True),
        (408, True),
        (486, True),
        (487, True),
        (500, True),
        (503, True),
        (600, False),
        (603, False),
        (699, False),
    ],
)
def test_hunt_continues(status: int | None, expected: bool) -> None:
    assert hunt_continues(status) is expected


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], 480),
        ([None], 480),
        ([None, None], 480),
        ([486, 603], 603),
        ([603, 600], 603),
        ([500, 486, 480], 486),
        ([None, 408], 480),
        ([408, 404], 408),
        ([404, 500], 404),
        ([503], 500),
        ([503, 502], 502),
        ([302], 480),
        ([407], 500),
        ([401, 404], 404),
        ([487], 480),
        ([410, 404], 410),
        ([799], 500),
        ([200, 486], 486),
    ],
)
def test_final_status(statuses: list[int | None], expected: int) -> None:
    assert final_status(statuses) == expected


# -------------------------------------------------------------- schedules

NY = "America/New_York mon-fri 09:00-17:00; sat 10:00-14:00; closed 2026-12-25,2027-01-01"


def test_parse_example_from_cli() -> None:
    s = parse_schedule(NY)
    assert s.zone == "America/New_York"
    assert Interval(0, 540, 1020) in s.intervals
    assert Interval(5, 600, 840) in s.intervals
    assert len(s.intervals) == 6
    assert s.closed == {dt.date(2026, 12, 25), dt.date(2027, 1, 1)}


def test_parse_lists_wraps_and_split_shifts() -> None:
    s = parse_schedule("Europe/Berlin fri-mon 08:00-12:00,13:00-18:00; WED 22:00-02:00")
    days = {i.day for i in s.intervals if i.start == 480}
    assert days == {4, 5, 6, 0}
    assert Interval(2, 1320, 1560) in s.intervals
    assert len(s.intervals) == 9


def test_parse_daily_and_24h() -> None:
    s = parse_schedule("UTC daily 00:00-24:00")
    assert len(s.intervals) == 7
    assert all(is_open(s, utc(2026, 5, d, h)) for d in range(1, 8) for h in (0, 12, 23))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty schedule"),
        ("Mars/Olympus mon 09:00-17:00", "unknown time zone"),
        ("America/New_York", "no open hours"),
        ("America/New_York mon", "invalid schedule clause"),
        ("America/New_York moon 09:00-17:00", "invalid days"),
        ("America/New_York mon 9-17", "invalid time"),
        ("America/New_York mon 09:00", "invalid hours"),
        ("America/New_York mon 25:00-26:00", "invalid time"),
        ("America/New_York mon 09:60-10:00", "invalid time"),
        ("America/New_York mon 09:00-09:00", "empty"),
        ("America/New_York mon 24:00-01:00", "invalid hours"),
        ("America/New_York mon 09:00-17:00; closed 2026-13-01", "invalid closed date"),
        ("America/New_York mon 09:00-17:00; closed 20261225", "invalid closed date"),
        ("America/New_York mon 09:00-17:00; closed", "needs dates"),
    ],
)
def test_bad_schedule_text_is_one_line_input_error(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment) as info:
        parse_schedule(text)
    assert "\n" not in str(info.value)


def test_json_and_text_round_trip() -> None:
    s = parse_schedule(NY + "; sun 22:00-01:30")
    assert Schedule.from_json(s.to_json()) == s
    assert parse_schedule(s.to_text()) == s


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"zone": "UTC"}',
        '{"zone": "UTC", "intervals": [[9, 0, 60]], "closed": []}',
        '{"zone": "Nowhere/Land", "intervals": [], "closed": []}',
        '{"zone": "UTC", "intervals": [[0, 60, 30]], "closed": []}',
    ],
)
def test_from_json_rejects_garbage(text: str) -> None:
    with pytest.raises(InputError):
        Schedule.from_json(text)
    with pytest.raises(InputError):  # the memo does not keep a failure as a value
        Schedule.parsed(text)


def test_parsed_is_parsed_once_per_text() -> None:
    text = parse_schedule(NY).to_json()
    first = Schedule.parsed(text)
    assert first == Schedule.from_json(text)
    assert Schedule.parsed(text) is first
    assert Schedule.parsed(parse_schedule(NY + "; sun 22:00-01:30").to_json()) != first


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (utc(2026, 6, 15, 12, 59), False),  # Mon 08:59 EDT
        (utc(2026, 6, 15, 13, 0), True),  # Mon 09:00 EDT
        (utc(2026, 6, 15, 20, 59), True),  # Mon 16:59 EDT
        (utc(2026, 6, 15, 21, 0), False),  # Mon 17:00 EDT
        (utc(2026, 6, 20, 14, 0), True),  # Sat 10:00 EDT
        (utc(2026, 6, 20, 18, 0), False),  # Sat 14:00 EDT
        (utc(2026, 6, 21, 15, 0), False),  # Sunday
        (utc(2026, 12, 25, 15, 0), False),  # Fri, closed date
        (utc(2026, 12, 24, 15, 0), True),  # Thu before
        (utc(2026, 1, 5, 14, 0), True),  # Mon 09:00 EST (winter offset)
        (utc(2026, 1, 5, 13, 30), False),  # Mon 08:30 EST
    ],
)
def test_is_open_new_york(instant: dt.datetime, expected: bool) -> None:
    assert is_open(parse_schedule(NY), instant) is expected


def test_spring_forward_day_uses_local_clock() -> None:
    # 2026-03-08: US clocks jump from 02:00 EST to 03:00 EDT.
    s = parse_schedule("America/New_York sun 01:00-03:00,09:00-17:00")
    assert is_open(s, utc(2026, 3, 8, 13, 0))  # 09:00 EDT
    assert not is_open(s, utc(2026, 3, 1, 13, 0))  # a week before: 08:00 EST
    assert is_open(s, utc(2026, 3, 8, 6, 59))  # 01:59 EST
    assert not is_open(s, utc(2026, 3, 8, 7, 0))  # 03:00 EDT: the 02:xx hour never happened


def test_fall_back_day_repeated_hour_open_twice() -> None:
    # 2026-11-01: US clocks go back from 02:00 EDT to 01:00 EST.
    s = parse_schedule("America/New_York sun 01:00-02:00,09:00-17:00")
    assert is_open(s, utc(2026, 11, 1, 5, 30))  # 01:30 EDT
    assert is_open(s, utc(2026, 11, 1, 6, 30))  # 01:30 EST, the second time
    assert not is_open(s, utc(2026, 11, 1, 7, 0))  # 02:00 EST
    assert is_open(s, utc(2026, 11, 1, 14, 0))  # 09:00 EST
    assert not is_open(s, utc(2026, 11, 1, 13, 30))  # 08:30 EST


def test_interval_crossing_midnight_belongs_to_its_start_day() -> None:
    s = parse_schedule("UTC fri 22:00-02:00; closed 2026-05-16,2026-05-22")
    assert is_open(s, utc(2026, 5, 15, 23, 0))  # Fri 23:00
    assert is_open(s, utc(2026, 5, 16, 1, 59))  # Sat 01:59, closed date but Friday's shift
    assert not is_open(s, utc(2026, 5, 16, 2, 0))
    assert not is_open(s, utc(2026, 5, 22, 23, 0))  # Fri closed
    assert not is_open(s, utc(2026, 5, 23, 1, 0))  # ... including after midnight


def test_week_wrap_sunday_night_into_monday() -> None:
    s = parse_schedule("UTC sun 23:00-01:00")
    assert is_open(s, utc(2026, 5, 18, 0, 30))  # Mon 00:30
    assert not is_open(s, utc(2026, 5, 19, 0, 30))  # Tue 00:30


def test_is_open_needs_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(parse_schedule(NY), dt.datetime(2026, 6, 15, 13, 0))


def test_choose_destinations() -> None:
    s = parse_schedule(NY)
    open_list, after = ["office"], ["voicemail"]
    monday_noon, sunday = utc(2026, 6, 15, 16, 0), utc(2026, 6, 21, 16, 0)
    assert choose_destinations(None, open_list, after, sunday) == open_list
    assert choose_destinations(s, open_list, after, monday_noon) == open_list
    assert choose_destinations(s, open_list, after, sunday) == after
    rejected = choose_destinations(s, open_list, [], sunday)
    assert isinstance(rejected, Reject)
    assert rejected.status == 480
