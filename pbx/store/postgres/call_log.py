"""PostgreSQL reads behind the dashboard: call log pages, counts, ROI facts (I/O).

The same queries and results as pbx/store/sqlite/call_log.py, over the same
indexes (migration 3). Each read is one statement (one snapshot).

Decisions:
- Keyset paging: `(started_at, id) < before`, newest first, LIMIT; no
  OFFSET. PostgreSQL has no index hints: its planner picks among the
  `calls_*_page` indexes from its statistics, so SQLite's count-first
  choice for caller prefixes (`NARROW_PREFIX`) has no counterpart here.
- A caller prefix is the range `caller >= p AND caller < bound(p)`, exact
  because every text column is `ctext` (COLLATE "C": code point order, as
  SQLite's BINARY). `prefix_bound` steps over the surrogate code points
  (PostgreSQL cannot store them) and past U+10FFFF, so every prefix a
  caller can hold has a bound the server accepts.
- `per_source_per_day` reads `call_days` (kept by the triggers of
  migration 3); "answered" means the call has an `answered_at`.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from pbx.records import CallFact, CallRecord
from pbx.store.base import CallFilter
from pbx.store.postgres.activity import _call_from_row
from pbx.store.postgres.db import Db

MAX_PAGE = 1000
MAX_CALLERS_QUERY = 5000  # callers per prior_callers query (one array parameter)
_SURROGATES = range(0xD800, 0xE000)


def prefix_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix`.

    None when there is none (a prefix of only U+10FFFF characters): no upper bound.
    """
    head = prefix.rstrip(chr(0x10FFFF))
    if not head:
        return None
    code = ord(head[-1]) + 1
    if code in _SURROGATES:
        code = _SURROGATES.stop
    return head[:-1] + chr(code)


class _Params:
    """Numbered parameters ($1, $2, ...) collected while a query is built."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def __call__(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _where(where: CallFilter, p: _Params) -> str:
    """The WHERE clause of a filter (parameters added to `p`)."""
    conds: list[str] = []
    for column, value in (
        ("disposition", where.disposition),
        ("tracking_number", where.number),
        ("source", where.source),
    ):
        if value is not None:
            conds.append(f"{column} = {p(value)}")
    if where.caller_prefix:
        conds.append(f"caller >= {p(where.caller_prefix)}")
        bound = prefix_bound(where.caller_prefix)
        if bound is not None:
            conds.append(f"caller < {p(bound)}")
    if where.since is not None:
        conds.append(f"started_at >= {p(where.since)}")
    if where.until is not None:
        conds.append(f"started_at < {p(where.until)}")
    if where.before is not None:
        started, call_id = where.before
        conds.append(f"(started_at, id) < ({p(started)}::ctext, {p(call_id)}::ctext)")
    return f"WHERE {' AND '.join(conds)}" if conds else ""


class PgCallLog:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def page(self, where: CallFilter, limit: int) -> builtins.list[CallRecord]:
        p = _Params()
        clause = _where(where, p)
        sql = (
            f"SELECT * FROM calls {clause} ORDER BY started_at DESC, id DESC "
            f"LIMIT {p(max(0, min(limit, MAX_PAGE)))}"
        )
        return [_call_from_row(r) for r in await self._db.all(sql, *p.values)]

    async def signature(self, since: str, until: str) -> tuple[int, int, str | None]:
        """(calls, answered, latest started_at) in [since, until): changes with any new
        call or answer in the range (what the ROI cache is keyed on)."""
        row = await self._db.one(
            "SELECT count(*) AS n, count(*) FILTER (WHERE answered_at IS NOT NULL) AS a, "
            "max(started_at)::text AS m FROM calls WHERE started_at >= $1 AND started_at < $2",
            since,
            until,
        )
        return (int(row["n"]), int(row["a"]), row["m"]) if row is not None else (0, 0, None)

    async def totals(self, since: str, until: str) -> tuple[int, int]:
        calls, answered, _ = await self.signature(since, until)
        return calls, answered

    async def per_source_per_day(
        self, first_day: str, last_day: str
    ) -> builtins.list[tuple[str, str | None, int, int]]:
        rows = await self._db.all(
            "SELECT day, source, calls, answered FROM call_days "
            "WHERE day >= $1 AND day <= $2 AND calls > 0 ORDER BY day, source",
            first_day,
            last_day,
        )
        return [(str(r[0]), r[1] or None, int(r[2]), int(r[3])) for r in rows]

    async def facts(self, since: str, until: str) -> builtins.list[CallFact]:
        rows = await self._db.all(
            "SELECT source, started_at, CASE WHEN left(caller, 1) = '+' THEN caller END, "
            "answered_at IS NOT NULL FROM calls WHERE started_at >= $1 AND started_at < $2",
            since,
            until,
        )
        return [CallFact(r[0], r[1], r[2], bool(r[3])) for r in rows]

    async def prior_callers(self, before: str, callers: Sequence[str]) -> set[str]:
        found: set[str] = set()
        unique = sorted(set(callers))
        for start in range(0, len(unique), MAX_CALLERS_QUERY):
            rows = await self._db.all(
                "SELECT DISTINCT caller FROM calls "
                "WHERE caller = ANY($1::text[]) AND started_at < $2",
                unique[start : start + MAX_CALLERS_QUERY],
                before,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def live(self) -> builtins.list[CallRecord]:
        rows = await self._db.all(
            "SELECT * FROM calls WHERE ended_at IS NULL "
            "AND disposition IN ('ringing', 'answered') ORDER BY started_at DESC, id DESC "
            "LIMIT $1",
            MAX_PAGE,
        )
        return [_call_from_row(r) for r in rows]
