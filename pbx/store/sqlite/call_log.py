"""SQLite reads behind the dashboard: call log pages, counts, ROI facts (I/O).

Each query is meant to be one index range of migration 3 (bench/dashboard.py
measures them over 1,000,000 calls):
- `page`: keyset paging, `(started_at, id) < before` walked newest first on
  the index whose leading column is the most selective equality filter
  (source, number, disposition) or on `calls_page`. No OFFSET: page 1,000
  costs what page 1 costs.
- A caller prefix is an index range on `calls_caller_page`
  (`caller >= p AND caller < p'` where p' is p with its last character
  bumped), which is exact for byte-wise (BINARY) ordering. Which index a
  prefix search walks depends on how many calls match, counted first on
  that index up to `NARROW_PREFIX` rows (~1 ms): a narrow prefix reads its
  matches from `calls_caller_page` and sorts them (at most that many); a
  broad one walks the time-ordered index and checks each row's caller
  (matches are dense, so a page fills quickly). Either way a page costs
  about the same over 1,000,000 calls, for `+1` as for a number that
  never called.
- `per_source_per_day` reads `call_days`, the per-day counts that triggers
  keep in step with every write to `calls` (migration 3); `totals` and
  `signature` read only `calls_page`. "Answered" means the call has an
  `answered_at` (as `pbx report roi` counts it: an answered call cut off by
  a crash is `interrupted` but was answered).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from pbx.records import CallFact, CallRecord
from pbx.store.base import CallFilter
from pbx.store.sqlite.activity import _call_from_row
from pbx.store.sqlite.db import Db

MAX_PAGE = 1000
NARROW_PREFIX = 5000  # matches up to which a caller search reads the caller index
MAX_CALLERS_QUERY = 500  # callers per prior_callers query (well under SQLite's variable limit)


def prefix_bound(prefix: str) -> str:
    """The smallest string greater than every string that starts with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _where(where: CallFilter) -> tuple[str, list[Any], str]:
    """(WHERE clause, parameters, index hint) for a filter."""
    conds: list[str] = []
    params: list[Any] = []
    index = "calls_page"
    for column, value, idx in (
        ("disposition", where.disposition, "calls_disposition_page"),
        ("tracking_number", where.number, "calls_number_page"),
        ("source", where.source, "calls_source_page"),
    ):
        if value is not None:
            conds.append(f"{column} = ?")
            params.append(value)
            index = idx
    if where.caller_prefix:
        conds.append("caller >= ? AND caller < ?")
        params += [where.caller_prefix, prefix_bound(where.caller_prefix)]
    if where.since is not None:
        conds.append("started_at >= ?")
        params.append(where.since)
    if where.until is not None:
        conds.append("started_at < ?")
        params.append(where.until)
    if where.before is not None:
        conds.append("(started_at, id) < (?, ?)")
        params += list(where.before)
    clause = f"WHERE {' AND '.join(conds)}" if conds else ""
    return clause, params, index


class SqliteCallLog:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def page(self, where: CallFilter, limit: int) -> builtins.list[CallRecord]:
        clause, params, index = _where(where)
        if where.caller_prefix and await self._narrow(where.caller_prefix):
            index = "calls_caller_page"
        sql = (
            f"SELECT * FROM calls INDEXED BY {index} {clause} "
            "ORDER BY started_at DESC, id DESC LIMIT ?"
        )
        params.append(max(0, min(limit, MAX_PAGE)))
        async with self._db.read() as tx:
            rows = await tx.all(sql, params)
        return [_call_from_row(r) for r in rows]

    async def _narrow(self, prefix: str) -> bool:
        """True when at most NARROW_PREFIX calls have a caller starting with `prefix`."""
        async with self._db.read() as tx:
            row = await tx.one(
                "SELECT count(*) AS n FROM (SELECT 1 FROM calls INDEXED BY calls_caller_page "
                "WHERE caller >= ? AND caller < ? LIMIT ?)",
                (prefix, prefix_bound(prefix), NARROW_PREFIX + 1),
            )
        return row is not None and int(row["n"]) <= NARROW_PREFIX

    async def signature(self, since: str, until: str) -> tuple[int, int, str | None]:
        """(calls, answered, latest started_at) in [since, until): changes with any new
        call or answer in the range (what the ROI cache is keyed on)."""
        async with self._db.read() as tx:
            row = await tx.one(
                "SELECT count(*) AS n, coalesce(sum(answered_at IS NOT NULL), 0) AS a, "
                "max(started_at) AS m FROM calls INDEXED BY calls_page "
                "WHERE started_at >= ? AND started_at < ?",
                (since, until),
            )
        return (int(row["n"]), int(row["a"]), row["m"]) if row is not None else (0, 0, None)

    async def totals(self, since: str, until: str) -> tuple[int, int]:
        async with self._db.read() as tx:
            row = await tx.one(
                "SELECT count(*) AS n, coalesce(sum(answered_at IS NOT NULL), 0) AS a "
                "FROM calls INDEXED BY calls_page WHERE started_at >= ? AND started_at < ?",
                (since, until),
            )
        return (int(row["n"]), int(row["a"])) if row is not None else (0, 0)

    async def per_source_per_day(
        self, first_day: str, last_day: str
    ) -> builtins.list[tuple[str, str | None, int, int]]:
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT day, source, calls, answered FROM call_days "
                "WHERE day >= ? AND day <= ? AND calls > 0 ORDER BY day, source",
                (first_day, last_day),
            )
        return [(str(r[0]), r[1] or None, int(r[2]), int(r[3])) for r in rows]

    async def facts(self, since: str, until: str) -> builtins.list[CallFact]:
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT source, started_at, CASE WHEN substr(caller, 1, 1) = '+' THEN caller END, "
                "answered_at IS NOT NULL AS answered "
                "FROM calls INDEXED BY calls_page WHERE started_at >= ? AND started_at < ?",
                (since, until),
            )
        return [CallFact(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def prior_callers(self, before: str, callers: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = sorted(set(callers))
        for start in range(0, len(unique), MAX_CALLERS_QUERY):
            chunk = unique[start : start + MAX_CALLERS_QUERY]
            marks = ", ".join("?" * len(chunk))
            async with self._db.read() as tx:
                rows = await tx.all(
                    f"SELECT DISTINCT caller FROM calls INDEXED BY calls_caller_page "
                    f"WHERE caller IN ({marks}) AND started_at < ?",
                    [*chunk, before],
                )
            found.update(str(r[0]) for r in rows)
        return found

    async def live(self) -> builtins.list[CallRecord]:
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT * FROM calls INDEXED BY calls_unfinished WHERE ended_at IS NULL "
                "AND disposition IN ('ringing', 'answered') ORDER BY started_at DESC, id DESC "
                "LIMIT ?",
                (MAX_PAGE,),
            )
        return [_call_from_row(r) for r in rows]
