"""SQLite repositories for activity: call records, visits, the outbox (I/O).

Decisions: a call's attempts are one JSON column (always written and read
whole with the row). `calls.finish` is an upsert, so a final row lands even
if the `ringing` insert never did. `mark_interrupted` sets `ended_at` only
where it is empty, `hangup_by` to 'system' where empty, and gives an answered
call the talk time up to its last media checkpoint (`media_at`, written by
`touch_media` from `pbx.service.checkpoint`; a column of the table, not a
field of the record), else leaves the seconds as last written.

Pool holds (`visits.add_holding`): ONE `INSERT ... SELECT` that takes the
first candidate (in the caller's order, `json_each` of a JSON array) that no
unexpired non-fallback visit holds; SQLite runs one writing statement at a
time on the file, so the check and the insert are atomic across every
connection and process, and nothing is locked between the caller's reads.
"""

from __future__ import annotations

import builtins
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

from pbx.errors import ConflictError, NotFoundError
from pbx.records import (
    FIELD_NAMES,
    CallRecord,
    Disposition,
    changed_fields,
    column_values,
    from_dict,
    to_dict,
)
from pbx.store.base import OutboxItem, Visit
from pbx.store.rows import build, check_changes, columns_of
from pbx.store.sqlite.db import (
    Db,
    Statement,
    Tx,
    insert_sql,
    integrity_error,
    update_sql,
    values_of,
)

_CALL_COLS = list(FIELD_NAMES)
_ID_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")
_MAX_TOUCH = 500  # ids per touch_media statement (SQLite's default limit is 999 variables)
# The crash sweep: an answered call gets the talk time up to its last media
# checkpoint (`media_at`, at most one interval old), never less than written.
_SWEEP = """
UPDATE calls SET disposition = 'interrupted',
    ended_at = coalesce(ended_at, ?),
    hangup_by = coalesce(hangup_by, 'system'),
    talk_seconds = CASE
        WHEN answered_at IS NOT NULL AND media_at IS NOT NULL AND media_at > answered_at
        THEN max(talk_seconds,
                 round((julianday(media_at) - julianday(answered_at)) * 86400.0, 3))
        ELSE talk_seconds END
WHERE ended_at IS NULL AND disposition IN ('ringing', 'answered')
"""
_CALL_INSERT = insert_sql("calls", _CALL_COLS)
_CALL_UPDATE = update_sql("calls", _CALL_COLS[1:])
_VISIT_COLS = ["id", *columns_of(Visit)]
_OUTBOX_COLS = columns_of(OutboxItem)
_OUTBOX_INSERT = insert_sql("outbox", _OUTBOX_COLS)
MAX_HELD_QUERY = 1000  # numbers per held_until query (SQLite's default variable limit is 32766)
# Per number, its latest hold: one step down the (number, expires_at) index, however
# many visits the number had before (a synchronous read must not scan history).
_HELD_UNTIL = (
    "SELECT c.value, (SELECT v.expires_at FROM visits AS v WHERE v.number = c.value"
    " AND v.fallback = 0 ORDER BY v.expires_at DESC LIMIT 1) FROM json_each(?) AS c"
)
_VISIT_INSERT = insert_sql("visits", _VISIT_COLS) + " RETURNING *"
_VISIT_HOLD = (
    f"INSERT INTO visits ({', '.join(_VISIT_COLS)}) SELECT "
    + ", ".join("c.value" if c == "number" else f":{c}" for c in _VISIT_COLS)
    + " FROM json_each(:candidates) AS c WHERE NOT EXISTS (SELECT 1 FROM visits AS v"
    " WHERE v.number = c.value AND v.expires_at > :now AND v.fallback = 0)"
    " ORDER BY c.key LIMIT 1 RETURNING *"
)


def _call_params(record: CallRecord) -> dict[str, Any]:
    params = to_dict(record)
    params["attempts"] = json.dumps(params["attempts"], separators=(",", ":"))
    return params


@lru_cache(maxsize=256)
def _update_of(cols: tuple[str, ...]) -> str:
    return update_sql("calls", cols)


@lru_cache(maxsize=256)
def _upsert_of(cols: tuple[str, ...]) -> str:
    """The final row: whole if missing, else only `cols` (each index holding none of
    them is left alone: the calls table has 14)."""
    return (
        insert_sql("calls", _CALL_COLS)
        + " ON CONFLICT (id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in cols)
    )


_CALL_UPSERT = _upsert_of(tuple(_CALL_COLS[1:]))  # every column but the key


def _changed_params(record: CallRecord, cols: tuple[str, ...]) -> dict[str, Any]:
    return column_values(record, cols) | {"id": record.id}


def _call_from_row(row: sqlite3.Row) -> CallRecord:
    data = dict(zip(row.keys(), tuple(row), strict=True))
    data["attempts"] = json.loads(data["attempts"] or "[]")
    return from_dict(data)


class SqliteCalls:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def insert(self, record: CallRecord) -> None:
        """Group-committed (`Db.submit`): returns once the row is committed."""
        try:
            await self._db.submit([(_CALL_INSERT, _call_params(record))], raw=True)
        except sqlite3.IntegrityError as exc:
            if "calls.id" not in str(exc):
                raise integrity_error(exc) from None
            raise ConflictError(f"call record {record.id} already exists") from None

    async def update(self, record: CallRecord, previous: CallRecord | None = None) -> None:
        """Group-committed, like `insert`; with `previous`, only the changed columns."""
        if previous is None:
            statement = (_CALL_UPDATE, _call_params(record))
        else:
            cols = changed_fields(previous, record)
            statement = (_update_of(cols), _changed_params(record, cols))
        [(changed, _)] = await self._db.submit([statement])
        if not changed:
            raise NotFoundError(f"no call record {record.id}")

    async def get(self, call_id: str) -> CallRecord | None:
        async with self._db.read() as tx:
            row = await tx.one("SELECT * FROM calls WHERE id = ?", (call_id,))
        return None if row is None else _call_from_row(row)

    async def list(
        self,
        *,
        since: str | None = None,
        source: str | None = None,
        number: str | None = None,
        disposition: Disposition | str | None = None,
        limit: int | None = None,
    ) -> list[CallRecord]:
        conds: list[str] = []
        params: list[Any] = []
        for cond, value in (
            ("started_at >= ?", since),
            ("source = ?", source),
            ("tracking_number = ?", number),
            ("disposition = ?", None if disposition is None else Disposition(disposition).value),
        ):
            if value is not None:
                conds.append(cond)
                params.append(value)
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        sql = f"SELECT * FROM calls {where} ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, limit))
        async with self._db.read() as tx:
            rows = await tx.all(sql, params)
        return [_call_from_row(r) for r in rows]

    async def ids_with_prefix(self, prefix: str, limit: int) -> builtins.list[str]:
        if not _ID_PREFIX.fullmatch(prefix):
            return []  # no GLOB metacharacter ever reaches the query
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT id FROM calls WHERE id GLOB ? ORDER BY id LIMIT ?", (prefix + "*", limit)
            )
        return [str(r["id"]) for r in rows]

    async def touch_media(self, call_ids: Sequence[str], at: str) -> None:
        """Stamp every live call of `call_ids`, `_MAX_TOUCH` ids per statement."""
        ids = list(call_ids)
        for start in range(0, len(ids), _MAX_TOUCH):
            chunk = ids[start : start + _MAX_TOUCH]
            marks = ", ".join("?" for _ in chunk)
            async with self._db.single() as tx:
                await tx.run(
                    f"UPDATE calls SET media_at = ? WHERE ended_at IS NULL AND id IN ({marks})",
                    (at, *chunk),
                )

    async def mark_interrupted(self, ended_at: str) -> int:
        async with self._db.single() as tx:
            return await tx.run(_SWEEP, (ended_at,))

    async def finish(
        self,
        record: CallRecord,
        outbox: Sequence[OutboxItem] = (),
        previous: CallRecord | None = None,
    ) -> None:
        """The final row and its outbox items: one unit of a group commit."""
        upsert = _CALL_UPSERT if previous is None else _upsert_of(changed_fields(previous, record))
        unit: list[Statement] = [(upsert, _call_params(record))]
        unit += [(_OUTBOX_INSERT, values_of(item, _OUTBOX_COLS)) for item in outbox]
        await self._db.submit(unit)


class SqliteVisits:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def _need(self, tx: Tx, visit_id: str) -> Visit:
        row = await tx.one("SELECT * FROM visits WHERE id = ?", (visit_id,))
        if row is None:
            raise NotFoundError(f"no visit {visit_id}")
        return build(Visit, row)

    async def add(self, visit: Visit) -> Visit:
        """One statement (a page view: one thread hop)."""
        try:
            async with self._db.single() as tx:
                row = await tx.one(_VISIT_INSERT, values_of(visit, _VISIT_COLS))
        except ConflictError as exc:
            if "visits.id" not in str(exc):
                raise
            raise ConflictError(f"visit {visit.id} already exists") from None
        assert row is not None  # an INSERT ... RETURNING returns its row
        return build(Visit, row)

    async def add_holding(self, visit: Visit, candidates: Sequence[str], now: str) -> Visit | None:
        """One statement: hold the first free candidate (see the module docstring)."""
        wanted = list(dict.fromkeys(candidates))[:MAX_HELD_QUERY]
        if not wanted:
            return None
        params = values_of(replace(visit, fallback=False), _VISIT_COLS)
        params |= {"candidates": json.dumps(wanted), "now": now}
        try:
            async with self._db.single() as tx:
                row = await tx.one(_VISIT_HOLD, params)
        except ConflictError as exc:
            if "visits.id" not in str(exc):
                raise
            raise ConflictError(f"visit {visit.id} already exists") from None
        return None if row is None else build(Visit, row)

    async def get(self, visit_id: str) -> Visit | None:
        async with self._db.read() as tx:
            row = await tx.one("SELECT * FROM visits WHERE id = ?", (visit_id,))
        return None if row is None else build(Visit, row)

    async def list(self, *, limit: int | None = None) -> list[Visit]:
        sql = "SELECT * FROM visits ORDER BY started_at DESC, id DESC"
        params: tuple[int, ...] = ()
        if limit is not None:
            sql += " LIMIT ?"
            params = (max(0, limit),)
        async with self._db.read() as tx:
            rows = await tx.all(sql, params)
        return [build(Visit, r) for r in rows]

    async def update(self, visit_id: str, /, **changes: object) -> Visit:
        """One statement setting only the changed columns (a ping: one thread hop)."""
        check_changes("visit", Visit, changes)
        if not changes:
            found = await self.get(visit_id)
            if found is None:
                raise NotFoundError(f"no visit {visit_id}")
            return found
        cols = sorted(changes)
        sets = ", ".join(f"{c} = :{c}" for c in cols)
        async with self._db.single() as tx:
            row = await tx.one(f"UPDATE visits SET {sets} WHERE id = :id RETURNING *",
                               {"id": visit_id, **changes})  # fmt: skip
        if row is None:
            raise NotFoundError(f"no visit {visit_id}")
        return build(Visit, row)

    async def _hot(self, sql: str, params: Sequence[object]) -> builtins.list[sqlite3.Row]:
        """An indexed SELECT of the per-request paths: on the hot reader when there is one."""
        if self._db.reader is not None:
            return self._db.reader.all(sql, params)
        async with self._db.read() as tx:
            return await tx.all(sql, params)

    async def active(self, number: str, now: str) -> Visit | None:
        rows = await self._hot(
            "SELECT * FROM visits WHERE number = ? AND expires_at > ? AND fallback = 0 "
            "ORDER BY last_seen_at DESC, id DESC LIMIT 1",
            (number, now),
        )
        return build(Visit, rows[0]) if rows else None

    async def held_until(self, numbers: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(numbers))[:MAX_HELD_QUERY]
        if not wanted:
            return {}
        rows = await self._hot(_HELD_UNTIL, (json.dumps(wanted),))
        return {str(r[0]): str(r[1]) for r in rows if r[1] is not None}

    async def latest_for_visitor(self, visitor_id: str) -> Visit | None:
        rows = await self._hot(
            "SELECT * FROM visits WHERE visitor_id = ? ORDER BY last_seen_at DESC, id DESC LIMIT 1",
            (visitor_id,),
        )
        return build(Visit, rows[0]) if rows else None


class SqliteOutbox:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, item: OutboxItem) -> OutboxItem:
        """Group-committed (queued with the call rows of the same moment)."""
        [(_, item_id)] = await self._db.submit([(_OUTBOX_INSERT, values_of(item, _OUTBOX_COLS))])
        assert item_id is not None  # an INSERT always sets it
        return replace(item, id=item_id)

    async def get(self, item_id: int) -> OutboxItem | None:
        async with self._db.read() as tx:
            row = await tx.one("SELECT * FROM outbox WHERE id = ?", (item_id,))
        return None if row is None else build(OutboxItem, row)

    async def due(self, now: str, limit: int = 100) -> list[OutboxItem]:
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT * FROM outbox WHERE delivered_at IS NULL AND gave_up = 0 "
                "AND (next_attempt_at IS NULL OR next_attempt_at <= ?) "
                "ORDER BY coalesce(next_attempt_at, ''), id LIMIT ?",
                (now, max(0, limit)),
            )
        return [build(OutboxItem, r) for r in rows]

    async def backlog(self) -> int:
        async with self._db.read() as tx:
            row = await tx.one(
                "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL AND gave_up = 0", ()
            )
        return int(row["n"]) if row is not None else 0

    async def mark_delivered(self, item_id: int, delivered_at: str) -> None:
        async with self._db.single() as tx:
            changed = await tx.run(
                "UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ?",
                (delivered_at, item_id),
            )
            if not changed:
                raise NotFoundError(f"no outbox item {item_id}")

    async def mark_failed(self, item_id: int, next_attempt_at: str | None, error: str) -> None:
        async with self._db.single() as tx:
            changed = await tx.run(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, "
                "next_attempt_at = ?, gave_up = ? WHERE id = ?",
                (error, next_attempt_at, int(next_attempt_at is None), item_id),
            )
            if not changed:
                raise NotFoundError(f"no outbox item {item_id}")
