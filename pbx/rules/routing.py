"""Routing rules: route plans, hunting, the caller's final status, business hours (pure).

A route plan is Kamailio's idea (tm README, serial/parallel forking): *a list
of steps, each a list of parallel targets*. The call controller rings every
target of a step at once; when the whole step fails and `hunt_continues`
allows it, it moves to the next step; with no steps left it answers the
caller `final_status(...)`.

Strategies (a registry, as aioquic registers congestion controls):
- `sequential`: one target per step, in the given order.
- `simultaneous`: one step holding every target.
- `round-robin`: sequential, starting at `cursor % n` and wrapping; the plan
  carries `next_cursor = (cursor % n + 1) % n` for the caller to store, so
  n consecutive calls each start on a different destination.
`sequential` and `simultaneous` return `next_cursor == cursor`. An empty
destination list gives an empty plan (the caller answers `final_status([])`).

Decisions (the spec is silent):
- `hunt_continues`: a 3xx from a destination is a failed branch and hunting
  continues. A B2BUA never follows a redirect (DESIGN: never dial anything
  that is not a configured destination) and never passes it back either.
  4xx/5xx and no answer (None) continue; 6xx stops (RFC 3261 §16.7 step 5:
  a 6xx ends the search). 1xx and 2xx are not failures: False.
- `final_status` follows RFC 3261 §16.7 step 6: any 6xx wins (the first one
  seen); otherwise 486 > 480 > 408 > other 4xx (first seen) > other 5xx
  (first seen) > 503, which is sent as 500 (§16.7: a 503 goes upstream only
  when the server itself is unavailable). Responses that make no sense to
  the caller are translated first: 3xx -> 480 (we never redirect), 401/407
  (our trunk credentials were refused) -> 500, 487 (a branch we CANCELled on
  ring timeout) -> 480. No answer (None) and no attempt at all -> 480, as
  RFC 3398 §8.2.6.1 maps Q.850 cause 19 "no answer from user" to 480.
- Schedules are wall-clock hours in an IANA zone. An interval whose end is at
  or before its start crosses midnight (`22:00-02:00`); `24:00` is allowed as
  an end. An interval belongs to the day it starts on: a closed date closes
  intervals starting that day (including their part after midnight), not
  the tail of the previous night's interval. On DST days the local clock
  decides: a 09:00-17:00 interval opens at 09:00 local whatever the UTC
  offset; a local time skipped by spring-forward never happens, a repeated
  one (fall-back) is open both times if the interval covers it.
- Outside hours, `choose_destinations` returns the after-hours list, or
  `Reject(480)` when that list is empty.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pbx.errors import InputError

T = TypeVar("T")

# ---------------------------------------------------------------- route plans


@dataclass(frozen=True)
class RoutePlan(Generic[T]):
    """Steps tried in order; the targets of one step ring in parallel."""

    steps: tuple[tuple[T, ...], ...]
    next_cursor: int = 0

    def targets(self) -> list[T]:
        """Every target of the plan, in the order they would be tried."""
        return [target for step in self.steps for target in step]


StrategyFn = Callable[[Sequence[Any], int], RoutePlan[Any]]
_STRATEGIES: dict[str, StrategyFn] = {}


def register_strategy(name: str, fn: StrategyFn) -> None:
    """Make `fn(destinations, cursor) -> RoutePlan` available as `name`."""
    _STRATEGIES[name] = fn


def strategy_names() -> list[str]:
    """Names `plan` accepts, sorted (for CLI choices and messages)."""
    return sorted(_STRATEGIES)


def plan(strategy: str, destinations: Sequence[T], cursor: int = 0) -> RoutePlan[T]:
    """The route plan for `destinations` under `strategy`.

    Raises `InputError` for an unknown strategy name.
    """
    fn = _STRATEGIES.get(strategy)
    if fn is None:
        raise InputError(f"unknown strategy {strategy!r} (one of: {', '.join(strategy_names())})")
    result: RoutePlan[T] = fn(destinations, cursor)
    return result


def _sequential(destinations: Sequence[Any], cursor: int) -> RoutePlan[Any]:
    return RoutePlan(tuple((d,) for d in destinations), cursor)


def _simultaneous(destinations: Sequence[Any], cursor: int) -> RoutePlan[Any]:
    steps = (tuple(destinations),) if destinations else ()
    return RoutePlan(steps, cursor)


def _round_robin(destinations: Sequence[Any], cursor: int) -> RoutePlan[Any]:
    n = len(destinations)
    if n == 0:
        return RoutePlan((), cursor)
    start = cursor % n
    order = [*destinations[start:], *destinations[:start]]
    return RoutePlan(tuple((d,) for d in order), (start + 1) % n)


register_strategy("sequential", _sequential)
register_strategy("simultaneous", _simultaneous)
register_strategy("round-robin", _round_robin)

# ------------------------------------------------------ hunting, final status


def hunt_continues(status: int | None) -> bool:
    """After a failed step: may the next step be tried? None = no answer."""
    if status is None:
        return True
    if status < 300:
        return False
    return not 600 <= status < 700  # RFC 3261 §16.7 step 5: 6xx ends the search


_TRANSLATED = {401: 500, 407: 500, 487: 480}
_PREFERRED = (486, 480, 408)
NO_ANSWER = 480  # RFC 3398 §8.2.6.1: Q.850 cause 19 -> 480


def _for_caller(status: int | None) -> int | None:
    """A branch's outcome as the caller should see it; None = not a failure."""
    if status is None:
        return NO_ANSWER
    if status < 300:
        return None
    if status < 400:
        return NO_ANSWER
    if status >= 700:  # RFC 3261 §8.1.3.2: unknown codes count as x00 of their class
        return 500
    return _TRANSLATED.get(status, status)


def final_status(attempt_statuses: Iterable[int | None]) -> int:
    """The status to answer the caller after every branch failed (RFC 3261 §16.7 step 6)."""
    seen = [s for s in (_for_caller(a) for a in attempt_statuses) if s is not None]
    for status in seen:
        if status >= 600:
            return status
    for preferred in _PREFERRED:
        if preferred in seen:
            return preferred
    for cls in (4, 5):
        for status in seen:
            if status // 100 == cls and status != 503:
                return status
    return 500 if 503 in seen else NO_ANSWER  # RFC 3261 §16.7: a lone 503 becomes 500


# ------------------------------------------------------------------ schedules

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 24 * 60
MAX_INTERVALS = 64  # bounded: a week of split shifts fits easily
MAX_CLOSED_DATES = 1000  # a few years of holidays
MAX_TEXT_CHARS = 20_000
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIME = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")


@dataclass(frozen=True, order=True)
class Interval:
    """Open from `start` to `end` minutes after midnight of weekday `day` (0 = Monday).

    `end` may exceed 1440: the interval then runs past midnight into the next day.
    """

    day: int
    start: int
    end: int


@dataclass(frozen=True)
class Schedule:
    """Weekly open hours in an IANA time zone, minus closed local dates."""

    zone: str
    intervals: tuple[Interval, ...]
    closed: frozenset[dt.date] = frozenset()

    def to_json(self) -> str:
        """A JSON text that `Schedule.from_json` reads back."""
        return json.dumps(
            {
                "zone": self.zone,
                "intervals": [[i.day, i.start, i.end] for i in sorted(self.intervals)],
                "closed": sorted(d.isoformat() for d in self.closed),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Schedule:
        """Inverse of `to_json`; raises `InputError` on anything malformed."""
        try:
            raw = json.loads(text)
            intervals = tuple(Interval(int(d), int(s), int(e)) for d, s, e in raw["intervals"])
            closed = frozenset(dt.date.fromisoformat(str(d)) for d in raw["closed"])
            zone = str(raw["zone"])
        except (ValueError, TypeError, KeyError) as exc:
            raise InputError(f"invalid schedule JSON: {exc}") from None
        _zone(zone)
        for interval in intervals:
            _check_interval(interval)
        return cls(zone, intervals, closed)

    @staticmethod
    def parsed(text: str) -> Schedule:
        """`from_json`, memoised: a number's hours are parsed once, not per INVITE.

        Keyed by the stored JSON itself, so an edited schedule is a new key;
        bounded (a Schedule is immutable, so sharing one is safe)."""
        return _parsed_schedule(text)

    def to_text(self) -> str:
        """The compact form `parse_schedule` accepts (one day per clause)."""
        clauses = [
            f"{DAYS[i.day]} {_hhmm(i.start)}-{_hhmm(i.end % MINUTES_PER_DAY, end=True)}"
            for i in sorted(self.intervals)
        ]
        if self.closed:
            clauses.append("closed " + ",".join(sorted(d.isoformat() for d in self.closed)))
        return f"{self.zone} " + "; ".join(clauses)


@dataclass(frozen=True)
class Reject:
    """No destination now: answer the caller `status`."""

    status: int
    reason: str


def _hhmm(minutes: int, *, end: bool = False) -> str:
    if end and minutes == 0:
        return "24:00"
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        msg = f"unknown time zone {name!r} (use an IANA name like America/New_York)"
        raise InputError(msg) from None


def _check_interval(i: Interval) -> None:
    ok = 0 <= i.day < 7 and 0 <= i.start < MINUTES_PER_DAY and i.start < i.end
    if not ok or i.end - i.start > MINUTES_PER_DAY:
        raise InputError(f"invalid interval {i}")


def _parse_time(text: str) -> int:
    m = _TIME.match(text)
    minutes = int(m.group(1)) * 60 + int(m.group(2)) if m else -1
    if not 0 <= minutes <= MINUTES_PER_DAY:
        raise InputError(f"invalid time {text!r} in schedule (use HH:MM, 00:00 to 24:00)")
    return minutes


def _parse_days(text: str) -> list[int]:
    """`mon-fri`, `sat`, `mon,wed,fri`, `fri-mon` (wraps), `daily`."""
    if text == "daily":
        return list(range(7))
    days: list[int] = []
    for part in text.split(","):
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise InputError(f"invalid days {text!r} in schedule (use mon-fri, sat, daily)")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.extend((first + k) % 7 for k in range((last - first) % 7 + 1))
    return days


def _parse_hours(text: str) -> tuple[int, int]:
    start_text, sep, end_text = text.partition("-")
    if not sep:
        raise InputError(f"invalid hours {text!r} in schedule (use HH:MM-HH:MM)")
    start, end = _parse_time(start_text), _parse_time(end_text)
    if start in (MINUTES_PER_DAY, end):
        raise InputError(f"invalid hours {text!r} in schedule (empty; all day is 00:00-24:00)")
    if end < start:
        end += MINUTES_PER_DAY  # crosses midnight
    return start, end


def _parse_closed(text: str) -> set[dt.date]:
    dates: set[dt.date] = set()
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            if not _DATE.match(item):
                raise ValueError(item)
            dates.add(dt.date.fromisoformat(item))
        except ValueError:
            raise InputError(f"invalid closed date {item!r} in schedule (use YYYY-MM-DD)") from None
    if not dates:
        raise InputError("'closed' needs dates in schedule (use closed 2026-12-25,2027-01-01)")
    return dates


def _parse_clause(clause: str, intervals: list[Interval], closed: set[dt.date]) -> None:
    words = clause.split()
    if words[0] == "closed":
        closed.update(_parse_closed(" ".join(words[1:])))
        return
    if len(words) < 2:
        raise InputError(f"invalid schedule clause {clause!r} (use: mon-fri 09:00-17:00)")
    days = _parse_days(words[0])
    for hours in ",".join(words[1:]).split(","):
        if hours:
            start, end = _parse_hours(hours)
            intervals.extend(Interval(d, start, end) for d in days)


def parse_schedule(text: str) -> Schedule:
    """Parse `"ZONE DAYS HH:MM-HH:MM[,HH:MM-HH:MM]; DAYS ...; closed YYYY-MM-DD,..."`.

    Raises `InputError` with one line naming the bad part.
    """
    if len(text) > MAX_TEXT_CHARS:
        raise InputError("schedule text is too long")
    zone_name, _, rest = text.strip().partition(" ")
    if not zone_name:
        raise InputError("empty schedule (use: America/New_York mon-fri 09:00-17:00)")
    _zone(zone_name)
    intervals: list[Interval] = []
    closed: set[dt.date] = set()
    for clause in filter(None, (c.strip().lower() for c in rest.split(";"))):
        _parse_clause(clause, intervals, closed)
    if not intervals:
        raise InputError("schedule has no open hours (add e.g. mon-fri 09:00-17:00)")
    if len(intervals) > MAX_INTERVALS or len(closed) > MAX_CLOSED_DATES:
        raise InputError("schedule has too many intervals or closed dates")
    return Schedule(zone_name, tuple(sorted(set(intervals))), frozenset(closed))


def is_open(schedule: Schedule, now_utc: dt.datetime) -> bool:
    """Is the business open at the aware instant `now_utc`?"""
    if now_utc.tzinfo is None:
        raise ValueError("is_open needs an aware datetime")
    local = now_utc.astimezone(_zone(schedule.zone))
    minute = local.hour * 60 + local.minute
    today = local.date()
    yesterday = today - dt.timedelta(days=1)
    for i in schedule.intervals:
        if i.day == today.weekday() and i.start <= minute < i.end and today not in schedule.closed:
            return True
        late = minute + MINUTES_PER_DAY
        if i.day == yesterday.weekday() and late < i.end and yesterday not in schedule.closed:
            return True
    return False


def choose_destinations(
    schedule: Schedule | None,
    open_list: Sequence[T],
    after_hours_list: Sequence[T],
    now_utc: dt.datetime,
) -> list[T] | Reject:
    """Destinations for a call at `now_utc`, or a `Reject` the caller must answer."""
    if schedule is None or is_open(schedule, now_utc):
        return list(open_list)
    if after_hours_list:
        return list(after_hours_list)
    return Reject(NO_ANSWER, "closed: outside business hours")


@lru_cache(maxsize=1024)
def _parsed_schedule(text: str) -> Schedule:
    return Schedule.from_json(text)
