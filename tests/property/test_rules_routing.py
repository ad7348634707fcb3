"""Properties of route plans and schedules."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.routing import (
    DAYS,
    MINUTES_PER_DAY,
    Interval,
    Schedule,
    final_status,
    is_open,
    parse_schedule,
    plan,
)

destinations = st.lists(st.text(min_size=1, max_size=8), max_size=12, unique=True)
cursors = st.integers(min_value=-(10**6), max_value=10**6)


@given(destinations, cursors, st.sampled_from(["sequential", "round-robin"]))
def test_plan_covers_each_destination_once_one_per_step(
    dests: list[str], cursor: int, strategy: str
) -> None:
    p = plan(strategy, dests, cursor)
    assert all(len(step) == 1 for step in p.steps)
    assert Counter(p.targets()) == Counter(dests)


@given(destinations, cursors)
def test_simultaneous_is_one_step_of_everything(dests: list[str], cursor: int) -> None:
    p = plan("simultaneous", dests, cursor)
    assert len(p.steps) == (1 if dests else 0)
    assert p.targets() == dests


@given(destinations.filter(bool), cursors)
def test_round_robin_is_fair_over_n_calls(dests: list[str], cursor: int) -> None:
    firsts = []
    for _ in range(len(dests)):
        p = plan("round-robin", dests, cursor)
        firsts.append(p.steps[0][0])
        cursor = p.next_cursor
    assert sorted(firsts) == sorted(dests)  # each destination rang first exactly once


statuses = st.one_of(st.none(), st.integers(min_value=300, max_value=699))


@given(st.lists(statuses, max_size=8))
def test_final_status_is_a_sane_failure(attempts: list[int | None]) -> None:
    status = final_status(attempts)
    assert 400 <= status < 700
    assert status not in (401, 407, 487, 503)
    if any(a is not None and a >= 600 for a in attempts):
        assert status >= 600


# -------------------------------------------------------- schedules vs brute force


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    zone = draw(st.sampled_from(["UTC", "America/New_York", "Europe/London", "Australia/Sydney"]))
    clauses = []
    for _ in range(draw(st.integers(1, 4))):
        day = draw(st.sampled_from(DAYS))
        start = draw(st.integers(0, MINUTES_PER_DAY - 1))
        end = draw(st.integers(0, MINUTES_PER_DAY).filter(lambda e, s=start: e != s))
        clauses.append(f"{day} {start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
    closed = draw(st.lists(st.dates(dt.date(2026, 1, 1), dt.date(2026, 12, 31)), max_size=3))
    if closed:
        clauses.append("closed " + ",".join(d.isoformat() for d in closed))
    return parse_schedule(f"{zone} " + "; ".join(clauses))


def _brute_open(s: Schedule, local: dt.datetime) -> bool:
    """Mark every minute of the week each interval covers, with the date it started on."""
    owners: dict[int, list[int]] = {}  # minute of week -> offsets (0 today, -1 yesterday...)
    for iv in s.intervals:
        for m in range(iv.start, iv.end):
            owners.setdefault((iv.day * MINUTES_PER_DAY + m) % (7 * MINUTES_PER_DAY), []).append(
                iv.day
            )
    week_minute = local.weekday() * MINUTES_PER_DAY + local.hour * 60 + local.minute
    for start_day in owners.get(week_minute, []):
        back = (local.weekday() - start_day) % 7
        if local.date() - dt.timedelta(days=back) not in s.closed:
            return True
    return False


@given(schedules(), st.datetimes(dt.datetime(2026, 1, 1), dt.datetime(2026, 12, 31)))
def test_is_open_agrees_with_minute_brute_force(s: Schedule, naive: dt.datetime) -> None:
    instant = naive.replace(tzinfo=dt.UTC)
    local = instant.astimezone(ZoneInfo(s.zone))
    assert is_open(s, instant) == _brute_open(s, local)


@given(schedules())
def test_schedule_round_trips(s: Schedule) -> None:
    assert Schedule.from_json(s.to_json()) == s
    assert parse_schedule(s.to_text()) == s
    assert all(isinstance(i, Interval) for i in s.intervals)
