"""What the dashboard pages and the REST API both show, read from the store (I/O via the store).

One function per view, returning plain JSON-able values, so a page and its
API route cannot disagree. Query parameters are checked here: bad input
raises `InputError` with one line (the app answers 400, nothing changes).

Decisions:
- Every time is UTC, as the records are; "today" is the UTC day.
- `since` is inclusive and `until` exclusive; a bare date `until=2024-05-02`
  includes that whole day (it becomes the next day's midnight).
- Cursor: the (started_at, id) of the last row shown, as base64url JSON; the
  next page is keyset paging on it (`CallFilter.before`), never an OFFSET.
- Caller search `q`: `+digits` is a prefix of the E.164 caller; digits
  without `+` are a national prefix of the region's country (`415555` ->
  `+1415555` in the US) unless they form a whole valid number (exact match);
  other text (e.g. `anonymous`) is a prefix of the caller as stored.
- Cost per call by source on the overview: this month's calls and the
  source's cost settings, with the rule of `pbx.rules.roi` (per-call cost,
  else the monthly budget over the month's calls, nearest cent halves up);
  a unit test checks it equals `roi_report`'s cost_per_call. The full ROI
  report (`roi`) runs `roi_report` itself over the month's call facts.
- Secrets never leave: trunk passwords and GA API secrets become
  `password_set` / `ga_api_secret_set` booleans.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import phonenumbers

from pbx.errors import InputError
from pbx.numbers import normalise
from pbx.records import CallRecord, Disposition, iso_utc, to_dict
from pbx.rules.roi import RoiRow, SourceCost, roi_report
from pbx.store.base import CallFilter, Source, Store, TrackingNumber, Trunk

DEFAULT_PAGE = 50
MAX_PAGE = 500
MAX_QUERY_CHARS = 64
CHART_DAYS = 30
FILTER_KEYS = ("since", "until", "source", "number", "disposition", "q", "limit")
_CALLER_TEXT = re.compile(r"^[A-Za-z0-9+@._-]{1,64}$")
_SEPARATORS = re.compile(r"[ ()\-./]")


# ---------------------------------------------------------------- parameters


def parse_time(text: str, name: str, *, end: bool = False) -> str:
    """`YYYY-MM-DD` or ISO 8601 -> the records' UTC stamp; a bare `end` date: next midnight."""
    raw = text.strip()
    try:
        stamp = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{name} must be YYYY-MM-DD or an ISO 8601 time (got {raw[:40]!r})"
        ) from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    if end and len(raw) == 10:
        stamp += dt.timedelta(days=1)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def encode_cursor(record: CallRecord) -> str:
    raw = json.dumps([record.started_at, record.id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[str, str]:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise InputError("cursor is not one this API gave out") from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise InputError("cursor is not one this API gave out")
    return value[0], value[1]


def caller_prefix(text: str, region: str) -> str | None:
    """The caller search `q` as a prefix of stored callers (see the module docstring)."""
    q = _SEPARATORS.sub("", text.strip())
    if not q:
        return None
    if len(q) > MAX_QUERY_CHARS or not _CALLER_TEXT.match(q):
        raise InputError("q must be part of a phone number (digits, optionally starting with +)")
    if q.startswith("+") or not q.isdigit():
        return q
    try:
        return normalise(q, region)
    except InputError:
        return f"+{phonenumbers.country_code_for_region(region)}{q}"


def parse_limit(text: str | None) -> int:
    if text is None or text == "":
        return DEFAULT_PAGE
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InputError(f"limit must be 1-{MAX_PAGE}")
    return int(text)


def call_filter(query: Mapping[str, str], region: str) -> CallFilter:
    """The call log's query parameters as a `CallFilter` (bad input: InputError)."""
    disposition = query.get("disposition") or None
    if disposition is not None and disposition not in {d.value for d in Disposition}:
        raise InputError(f"unknown disposition {disposition[:30]!r}")
    number = query.get("number") or None
    cursor = query.get("cursor") or None
    return CallFilter(
        since=parse_time(query["since"], "since") if query.get("since") else None,
        until=parse_time(query["until"], "until", end=True) if query.get("until") else None,
        source=(query.get("source") or None),
        number=normalise(number, region) if number else None,
        disposition=disposition,
        caller_prefix=caller_prefix(query.get("q", ""), region),
        before=decode_cursor(cursor) if cursor else None,
    )


# ---------------------------------------------------------------- rows


def call_row(record: CallRecord) -> dict[str, Any]:
    return to_dict(record)


def source_row(source: Source) -> dict[str, Any]:
    row = asdict(source)
    row["ga_api_secret_set"] = bool(row.pop("ga_api_secret"))
    row["type"] = "onsite" if source.onsite else "offsite"
    return row


def trunk_row(trunk: Trunk) -> dict[str, Any]:
    row = asdict(trunk)
    row["password_set"] = bool(row.pop("password"))
    row["allow"] = list(trunk.allow)
    return row


def number_row(number: TrackingNumber, held_until: str | None, now: str) -> dict[str, Any]:
    row = asdict(number)
    row["destinations"] = list(number.destinations)
    row["after_hours"] = list(number.after_hours)
    held = held_until is not None and held_until > now
    row["pool"] = {"held": held, "held_until": held_until if held else None}
    return row


def money(cents: int | None) -> str | None:
    return None if cents is None else f"{cents // 100}.{cents % 100:02d}"


# ---------------------------------------------------------------- views


async def call_page(
    store: Store, where: CallFilter, limit: int
) -> tuple[list[CallRecord], str | None]:
    """One page of the call log and the cursor of the next (None on the last page)."""
    rows = await store.call_log.page(where, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


async def numbers_view(store: Store, now: float) -> list[dict[str, Any]]:
    numbers = await store.numbers.list()
    held = await store.visits.held_until([n.number for n in numbers])
    stamp = iso_utc(now)
    return [number_row(n, held.get(n.number), stamp) for n in numbers]


def _day(now: float, days_back: int = 0) -> dt.datetime:
    today = dt.datetime.fromtimestamp(now, tz=dt.UTC).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return today - dt.timedelta(days=days_back)


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _month_bounds(year: int, month: int) -> tuple[str, str]:
    start = dt.datetime(year, month, 1)
    end = dt.datetime(year + month // 12, month % 12 + 1, 1)
    return _stamp(start), _stamp(end)


def cost_per_call_cents(setting: SourceCost | None, calls: int) -> int | None:
    """`pbx.rules.roi`'s cost per call for one source and its month's calls.

    From the source's settings now: equal to ROI's (which sums the price
    written on each record at intake) while the price has not changed in the
    window; after a change the ROI report is the exact figure.
    """
    if setting is None or calls == 0:
        return None
    if setting.cost_per_call_cents is not None:
        return setting.cost_per_call_cents
    if setting.monthly_budget_cents is None:
        return None
    return (2 * setting.monthly_budget_cents + calls) // (2 * calls)


def _window(label: str, calls: int, answered: int) -> dict[str, Any]:
    rate = None if calls == 0 else round(100.0 * answered / calls, 1)
    return {"label": label, "calls": calls, "answered": answered, "answer_rate": rate}


async def overview(store: Store, now: float) -> dict[str, Any]:
    """Calls and answer rate today / 7 / 30 days, calls per source per day, cost per call."""
    first = _day(now, CHART_DAYS - 1)
    rows = await store.call_log.per_source_per_day(
        first.strftime("%Y-%m-%d"), _day(now).strftime("%Y-%m-%d")
    )
    windows = []
    for label, days in (("today", 1), ("7 days", 7), ("30 days", CHART_DAYS)):
        since = _day(now, days - 1).strftime("%Y-%m-%d")
        mine = [r for r in rows if r[0] >= since]
        windows.append(_window(label, sum(r[2] for r in mine), sum(r[3] for r in mine)))
    day_names = [(first + dt.timedelta(days=i)).strftime("%Y-%m-%d") for i in range(CHART_DAYS)]
    per_source: dict[str, list[int]] = {}
    for day, source, calls, _ in rows:
        series = per_source.setdefault(source or "(unattributed)", [0] * CHART_DAYS)
        series[day_names.index(day)] += calls
    return {
        "windows": windows,
        "chart": {
            "days": day_names,
            "series": [{"source": k, "calls": v} for k, v in sorted(per_source.items())],
        },
        "cost_per_call": await _month_costs(store, now, rows, day_names[0]),
    }


async def _month_costs(
    store: Store, now: float, recent: list[tuple[str, str | None, int, int]], first_day: str
) -> list[dict[str, Any]]:
    """This month's cost per call by source; `recent` (from `first_day` on) is reused
    when the month starts inside it, which saves a second scan on most days."""
    month = _day(now).replace(day=1)
    if month.strftime("%Y-%m-%d") >= first_day:
        rows = [r for r in recent if r[0] >= month.strftime("%Y-%m-%d")]
    else:
        last = (month + dt.timedelta(days=31)).replace(day=1) - dt.timedelta(days=1)
        rows = await store.call_log.per_source_per_day(
            month.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")
        )
    counts: dict[str, int] = {}
    for _, source, calls, _ in rows:
        counts[source or "(unattributed)"] = counts.get(source or "(unattributed)", 0) + calls
    out = []
    for s in await store.sources.list():
        setting = SourceCost(s.name, s.cost_per_call_cents, s.monthly_budget_cents)
        cents = cost_per_call_cents(setting, counts.get(s.name, 0))
        out.append({"source": s.name, "month": month.strftime("%Y-%m"),
                    "calls": counts.get(s.name, 0), "cost_per_call": money(cents),
                    "cost_per_call_cents": cents})  # fmt: skip
    return out


def parse_month(text: str | None, now: float) -> tuple[int, int]:
    if not text:
        today = _day(now)
        return today.year, today.month
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InputError(f"month must be YYYY-MM (got {text[:20]!r})")
    return int(match.group(1)), int(match.group(2))


RoiKey = tuple[tuple[int, int], tuple[SourceCost, ...], tuple[int, int, str | None]]
MAX_CACHED_REPORTS = 24


async def roi(
    store: Store, month: tuple[int, int], cache: dict[RoiKey, list[RoiRow]] | None = None
) -> list[RoiRow]:
    """`pbx report roi`'s rows (pbx.rules.roi), reading only the month's calls.

    With `cache`, the rows are kept per (month, cost settings, the month's
    call count, answered count and latest start): any new call, answer or
    cost change gives a new key, so a cached report is never stale.
    """
    start, end = _month_bounds(*month)
    costs = tuple(SourceCost(s.name, s.cost_per_call_cents, s.monthly_budget_cents)
                  for s in await store.sources.list())  # fmt: skip
    key: RoiKey = (month, costs, await store.call_log.signature(start, end))
    if cache is not None and key in cache:
        return cache[key]
    rows = await _roi(store, month, start, end, list(costs))
    if cache is not None:
        while len(cache) >= MAX_CACHED_REPORTS:
            del cache[next(iter(cache))]
        cache[key] = rows
    return rows


async def _roi(
    store: Store, month: tuple[int, int], start: str, end: str, costs: list[SourceCost]
) -> list[RoiRow]:
    facts = await store.call_log.facts(start, end)
    prior = await store.call_log.prior_callers(start, [f.caller for f in facts if f.caller])
    return roi_report(facts, costs, month, prior)


def roi_row(row: RoiRow) -> dict[str, Any]:
    out = asdict(row)
    for key in ("cost", "cost_per_call", "cost_per_answered"):
        out[key] = money(out[f"{key}_cents"])
    return out


def parse_day(text: str, name: str) -> str:
    """A `YYYY-MM-DD` date (the per-day report's bounds)."""
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise InputError(f"{name} must be a date YYYY-MM-DD (got {text[:40]!r})") from None


async def calls_per_source(store: Store, first_day: str, last_day: str) -> list[dict[str, Any]]:
    rows = await store.call_log.per_source_per_day(first_day, last_day)
    return [{"day": d, "source": s, "calls": n, "answered": a} for d, s, n, a in rows]


async def live(store: Store) -> list[dict[str, Any]]:
    """Live calls from the store (ringing, or answered and not ended)."""
    return [live_row(to_dict(r)) for r in await store.call_log.live()]


def live_row(call: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("id", "started_at", "answered_at", "caller", "tracking_number", "source",
            "destination", "disposition")  # fmt: skip
    return {k: call.get(k) for k in keys}
