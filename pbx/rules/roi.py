"""Return on investment: per-source calls, callers and cost for one month (pure).

`roi_report` turns the month's call facts and each source's cost settings
into one `RoiRow` per source. Money is integer cents (docs/contracts.md).

Decisions (the spec is silent):
- The month is the UTC calendar month of `CallFact.started_at` (records are
  stamped in UTC by the shell); an ISO 8601 stamp with another offset is
  converted to UTC first, a naive one is taken as UTC.
- Cost: a monthly budget counts for the month whether calls happened or
  not (a per-call cost wins if a source has both; the CLI forbids it).
  Otherwise the sum of the costs written on the month's call records
  (`CallFact.cost_cents`, the price in force when each call came in, set at
  intake; blocked and rejected calls carry none), so a price change never
  reprices past calls. A source with a per-call cost and no priced call
  this month costs 0; a source with neither setting nor priced calls has
  cost None ("not configured", unlike a free source's 0). Calls counts
  every call, priced or not.
- Per-call and per-answered cost are rounded to the nearest cent, halves up;
  a zero count or an unknown cost gives None.
- `unique_callers` counts distinct caller numbers; anonymous calls (no
  caller number) count as calls but not as callers. A first-time caller is
  one not in `prior_callers` (everyone who called before the month, any
  source); it is counted once, for the source of its earliest call of the
  month, so the column sums to the month's new callers.
- Rows: one per configured source (even without calls, so budgets show),
  plus one per other source name seen in the calls (cost None), plus
  `UNATTRIBUTED` for calls without a source; sorted by name, that last.
- `call_cost_cents` is the cost written on one call record: the source's
  per-call cost, or None for budget-funded sources (their cost per call is
  only known per month, here).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pbx.records import CallFact  # the call as reports see it (lives with the record)

UNATTRIBUTED = "(unattributed)"


@dataclass(frozen=True)
class SourceCost:
    """A source's cost settings, in cents."""

    name: str
    cost_per_call_cents: int | None = None
    monthly_budget_cents: int | None = None


@dataclass(frozen=True)
class RoiRow:
    source: str
    calls: int
    answered: int
    unique_callers: int
    first_time_callers: int
    cost_cents: int | None
    cost_per_call_cents: int | None
    cost_per_answered_cents: int | None


def call_cost_cents(cost: SourceCost | None) -> int | None:
    """The cost to write on one call record of this source (per-call cost only)."""
    return cost.cost_per_call_cents if cost is not None else None


def _utc(stamp: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(stamp)
    return moment.astimezone(dt.UTC) if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _per(cost: int | None, count: int) -> int | None:
    if cost is None or count == 0:
        return None
    return (2 * cost + count) // (2 * count)  # nearest cent, halves up


def _cost(setting: SourceCost | None, calls: Sequence[CallFact]) -> int | None:
    per_call = setting is not None and setting.cost_per_call_cents is not None
    if setting is not None and not per_call and setting.monthly_budget_cents is not None:
        return setting.monthly_budget_cents
    priced = [c.cost_cents for c in calls if c.cost_cents is not None]
    if priced:
        return sum(priced)
    return 0 if per_call else None


def _first_sources(
    month_calls: list[tuple[dt.datetime, CallFact]], prior: set[str]
) -> dict[str, str]:
    """New caller -> source name of its earliest call this month."""
    first: dict[str, str] = {}
    for _, call in sorted(month_calls, key=lambda item: item[0]):
        if call.caller and call.caller not in prior and call.caller not in first:
            first[call.caller] = call.source or UNATTRIBUTED
    return first


def roi_report(
    calls: Sequence[CallFact],
    sources: Sequence[SourceCost],
    month: tuple[int, int],
    prior_callers: set[str],
) -> list[RoiRow]:
    """Per-source figures for `month` = (year, month); see the module docstring."""
    year, number = month
    month_calls = [
        (moment, call)
        for call in calls
        if ((moment := _utc(call.started_at)).year, moment.month) == (year, number)
    ]
    first_sources = _first_sources(month_calls, prior_callers)
    settings = {s.name: s for s in sources}
    by_source: dict[str, list[CallFact]] = {name: [] for name in settings}
    for _, call in month_calls:  # one pass, not one per source (a month can be 100k calls)
        by_source.setdefault(call.source or UNATTRIBUTED, []).append(call)
    firsts = Counter(first_sources.values())
    rows = []
    for name in sorted(by_source, key=lambda n: (n == UNATTRIBUTED, n)):
        mine = by_source[name]
        answered = sum(1 for c in mine if c.answered)
        cost = _cost(settings.get(name), mine)
        rows.append(
            RoiRow(
                source=name,
                calls=len(mine),
                answered=answered,
                unique_callers=len({c.caller for c in mine if c.caller}),
                first_time_callers=firsts[name],
                cost_cents=cost,
                cost_per_call_cents=_per(cost, len(mine)),
                cost_per_answered_cents=_per(cost, answered),
            )
        )
    return rows
