"""PostgreSQL repositories for activity: call records, visits, the outbox (I/O).

Same decisions as SQLite (attempts as one JSON text column, `finish` an
upsert, `mark_interrupted` fills only what is empty and gives an answered
call the talk time up to its last media checkpoint, `media_at`, a column of
the table written by `touch_media`, not a field of the record; the figure
comes from the SQL function `pbx_talk_to_media` of migration 0005, which
the node sweep in `nodes.py` uses too). Every per-call write
is ONE statement, so one round trip and atomic alone: `finish` writes the
row and its outbox items with one data-modifying CTE (the items travel as
arrays and are unnested), so either all land or none.

Outbox claims (several nodes share one outbox): `due(now)` is an
`UPDATE ... FROM (SELECT ... FOR UPDATE SKIP LOCKED)` that claims the items
it returns for this store (`claimed_by`, `claimed_until = now + CLAIM_S`).
Another store skips an item while its claim holds; the claimer itself
sees it again (asking twice returns the same items, as on SQLite), and
`mark_delivered` / `mark_failed` release the claim. A node that dies while
holding items only delays them by `CLAIM_S`. The claim columns exist only
in PostgreSQL and are left out of `dump()`.

Pool holds (`visits.add_holding`, several nodes share one pool): one short
transaction takes the cluster-wide transaction advisory lock `POOL_LOCK`,
then ONE `INSERT ... SELECT` holds the first candidate (in the caller's
order) that no unexpired non-fallback visit holds. Under READ COMMITTED the
insert's snapshot is taken after the lock is granted, so it sees every hold
committed before; the lock ends with the transaction (two statements and
the COMMIT, inside the database), never across the visitor API's reads.
"""

from __future__ import annotations

import builtins
import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any

import asyncpg

from pbx.errors import ConflictError, InputError, NotFoundError
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
from pbx.store.postgres.db import (
    BAD_VALUE,
    Db,
    Identity,
    as_input_error,
    insert_sql,
    update_sql,
    values_of,
)
from pbx.store.rows import build, check_changes, columns_of

POOL_LOCK = 0x7062_7802  # advisory lock key of pool-number picks ("pbx" 2)
CLAIM_S = 300.0  # how long an outbox item handed out by due() is reserved for its claimer
MAX_HELD_QUERY = 1000  # numbers per held_until query, as on SQLite

_CALL_COLS = list(FIELD_NAMES)
_ID_PREFIX = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as on SQLite
# What a crash sweep sets on a live call ({ended} = the sweep's time): shared
# with the node sweep (nodes.py), so both give the same talk time.
INTERRUPT_SET = (
    "disposition = 'interrupted', ended_at = coalesce(ended_at, {ended}), "
    "hangup_by = coalesce(hangup_by, 'system'), "
    "talk_seconds = pbx_talk_to_media(answered_at, media_at, talk_seconds)"
)
LIVE = "ended_at IS NULL AND disposition IN ('ringing', 'answered')"
_SWEEP = f"UPDATE calls SET {INTERRUPT_SET.format(ended='$1')} WHERE {LIVE}"
_CALL_INSERT = insert_sql("calls", _CALL_COLS, "")  # node: the daemon's ([node] id)
_CALL_UPSERT = (  # a call keeps the node that inserted it
    _CALL_INSERT
    + " ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _CALL_COLS if c not in ("id", "node"))
)
_UPDATE_COLS = [c for c in _CALL_COLS[1:] if c != "node"]  # the inserting node stays
_CALL_UPDATE = update_sql("calls", _UPDATE_COLS)
_VISIT_COLS = ["id", *columns_of(Visit)]
_OUTBOX_COLS = columns_of(OutboxItem)
_OUTBOX_TYPES = {"attempts": "bigint", "gave_up": "boolean"}


# Per number, its latest hold: one step down the (number, expires_at) index, however
# many visits the number had before.
_HELD_UNTIL = (
    "SELECT c.number, (SELECT v.expires_at FROM visits AS v WHERE v.number = c.number"
    " AND NOT v.fallback ORDER BY v.expires_at DESC LIMIT 1) AS until"
    " FROM unnest($1::text[]) AS c(number)"
)
_HOLD_PARAMS = [c for c in _VISIT_COLS if c != "number"]  # the number comes from the pick
_VISIT_HOLD = (
    f"INSERT INTO visits ({', '.join(_VISIT_COLS)}) SELECT "
    + ", ".join(
        "c.number" if c == "number" else f"${_HOLD_PARAMS.index(c) + 1}" for c in _VISIT_COLS
    )
    + f" FROM unnest(${len(_HOLD_PARAMS) + 1}::text[]) WITH ORDINALITY AS c(number, rank)"
    " WHERE NOT EXISTS (SELECT 1 FROM visits AS v WHERE v.number = c.number"
    f" AND v.expires_at > ${len(_HOLD_PARAMS) + 2} AND NOT v.fallback)"
    " ORDER BY c.rank LIMIT 1 RETURNING *"
)


def _outbox_from_arrays(first: int) -> str:
    """`INSERT INTO outbox ... SELECT FROM unnest($first::text[], ...)`: items as columns."""
    arrays = ", ".join(
        f"${first + i}::{_OUTBOX_TYPES.get(c, 'text')}[]" for i, c in enumerate(_OUTBOX_COLS)
    )
    names = ", ".join(_OUTBOX_COLS)
    return (
        f"INSERT INTO outbox ({names}) SELECT {names} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS item({names}, ord) ORDER BY ord"
    )


_FINISH_WITH_OUTBOX = (
    f"WITH final AS ({_CALL_UPSERT} RETURNING 1) {_outbox_from_arrays(len(_CALL_COLS) + 1)}"
)


def _call_values(record: CallRecord, who: Identity) -> list[Any]:
    params = to_dict(record)
    if params["node"] is None and who.leased:
        params["node"] = who.name
    params["attempts"] = json.dumps(params["attempts"], separators=(",", ":"))
    return [params[c] for c in _CALL_COLS]


@lru_cache(maxsize=256)
def _update_of(cols: tuple[str, ...]) -> str:
    return update_sql("calls", cols)


def _call_from_row(row: asyncpg.Record) -> CallRecord:
    data = dict(row.items())
    data["attempts"] = json.loads(data["attempts"] or "[]")
    return from_dict(data)


class PgCalls:
    def __init__(self, db: Db, who: Identity) -> None:
        self._db = db
        self._who = who

    async def insert(self, record: CallRecord) -> None:
        """One statement: returns once the row is committed."""
        try:
            async with self._db.pool.acquire() as conn:
                await conn.execute(_CALL_INSERT, *_call_values(record, self._who))
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name != "calls_pkey":
                raise as_input_error(exc) from None
            raise ConflictError(f"call record {record.id} already exists") from None
        except BAD_VALUE as exc:
            raise as_input_error(exc) from None

    async def update(self, record: CallRecord, previous: CallRecord | None = None) -> None:
        """One statement; with `previous`, only the changed columns (never `node`)."""
        if previous is None:
            params = dict(zip(_CALL_COLS, _call_values(record, self._who), strict=True))
            sql, args = _CALL_UPDATE, [params[c] for c in _UPDATE_COLS]
        else:
            cols = changed_fields(previous, record, keep=("node",))
            values = column_values(record, cols)
            sql, args = _update_of(cols), [values[c] for c in cols]
        if not await self._db.run(sql, *args, record.id):
            raise NotFoundError(f"no call record {record.id}")

    async def get(self, call_id: str) -> CallRecord | None:
        row = await self._db.one("SELECT * FROM calls WHERE id = $1", call_id)
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
        for col, op, value in (
            ("started_at", ">=", since),
            ("source", "=", source),
            ("tracking_number", "=", number),
            ("disposition", "=", None if disposition is None else Disposition(disposition).value),
        ):
            if value is not None:
                params.append(value)
                conds.append(f"{col} {op} ${len(params)}")
        where = f"WHERE {' AND '.join(conds)}" if conds else ""
        sql = f"SELECT * FROM calls {where} ORDER BY started_at DESC, id DESC"
        if limit is not None:
            params.append(max(0, limit))
            sql += f" LIMIT ${len(params)}"
        return [_call_from_row(r) for r in await self._db.all(sql, *params)]

    async def ids_with_prefix(self, prefix: str, limit: int) -> builtins.list[str]:
        if not _ID_PREFIX.fullmatch(prefix):
            return []  # nothing but letters, digits, `-` and `_` reaches the pattern
        rows = await self._db.all(
            "SELECT id FROM calls WHERE id LIKE $1 ESCAPE '\\' ORDER BY id LIMIT $2",
            prefix.replace("_", "\\_") + "%",  # `_` is LIKE's one-character wildcard
            max(0, limit),
        )
        return [str(r["id"]) for r in rows]

    async def touch_media(self, call_ids: Sequence[str], at: str) -> None:
        """One statement for any number of ids (an array: no placeholder limit here)."""
        ids = list(dict.fromkeys(call_ids))
        if ids:
            await self._db.run(
                "UPDATE calls SET media_at = $1 WHERE ended_at IS NULL AND id = ANY($2::text[])",
                at,
                ids,
            )

    async def mark_interrupted(self, ended_at: str) -> int:
        return await self._db.run(_SWEEP, ended_at)

    async def finish(
        self,
        record: CallRecord,
        outbox: Sequence[OutboxItem] = (),
        previous: CallRecord | None = None,  # unused: the whole row is one statement either way
    ) -> None:
        """The final row and its outbox items: one statement, one transaction."""
        if not outbox:
            await self._db.run(_CALL_UPSERT, *_call_values(record, self._who))
            return
        columns = [[getattr(item, c) for item in outbox] for c in _OUTBOX_COLS]
        await self._db.run(_FINISH_WITH_OUTBOX, *_call_values(record, self._who), *columns)


class PgVisits:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add_holding(self, visit: Visit, candidates: Sequence[str], now: str) -> Visit | None:
        """Hold the first free candidate under `POOL_LOCK` (see the module docstring)."""
        wanted = list(dict.fromkeys(candidates))[:MAX_HELD_QUERY]
        if not wanted:
            return None
        values = values_of(replace(visit, fallback=False), _HOLD_PARAMS)
        try:
            async with self._db.write(provisioning=False) as tx:
                await tx.run("SELECT pg_advisory_xact_lock($1)", POOL_LOCK)
                row = await tx.one(_VISIT_HOLD, *values, wanted, now)
        except ConflictError as exc:
            if not str(exc).startswith("already exists: visits"):
                raise
            raise ConflictError(f"visit {visit.id} already exists") from None
        return None if row is None else build(Visit, row)

    async def add(self, visit: Visit) -> Visit:
        sql = insert_sql("visits", _VISIT_COLS, "*").replace(
            " RETURNING", " ON CONFLICT (id) DO NOTHING RETURNING"
        )
        row = await self._db.one(sql, *values_of(visit, _VISIT_COLS))
        if row is None:
            raise ConflictError(f"visit {visit.id} already exists")
        return build(Visit, row)

    async def get(self, visit_id: str) -> Visit | None:
        row = await self._db.one("SELECT * FROM visits WHERE id = $1", visit_id)
        return None if row is None else build(Visit, row)

    async def list(self, *, limit: int | None = None) -> list[Visit]:
        sql = "SELECT * FROM visits ORDER BY started_at DESC, id DESC"
        if limit is None:
            rows = await self._db.all(sql)
        else:
            rows = await self._db.all(sql + " LIMIT $1", max(0, limit))
        return [build(Visit, r) for r in rows]

    async def update(self, visit_id: str, /, **changes: object) -> Visit:
        """One statement setting only the changed columns (per page view: one round trip)."""
        check_changes("visit", Visit, changes)
        if not changes:
            found = await self.get(visit_id)
            if found is None:
                raise NotFoundError(f"no visit {visit_id}")
            return found
        cols = sorted(changes)
        sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=2))
        row = await self._db.one(
            f"UPDATE visits SET {sets} WHERE id = $1 RETURNING *",
            visit_id,
            *(changes[c] for c in cols),
        )
        if row is None:
            raise NotFoundError(f"no visit {visit_id}")
        return build(Visit, row)

    async def active(self, number: str, now: str) -> Visit | None:
        row = await self._db.one(
            "SELECT * FROM visits WHERE number = $1 AND expires_at > $2 AND NOT fallback "
            "ORDER BY last_seen_at DESC, id DESC LIMIT 1",
            number,
            now,
        )
        return None if row is None else build(Visit, row)

    async def held_until(self, numbers: Sequence[str]) -> dict[str, str]:
        wanted = list(dict.fromkeys(numbers))[:MAX_HELD_QUERY]
        if not wanted:
            return {}
        rows = await self._db.all(_HELD_UNTIL, wanted)
        return {str(r["number"]): str(r["until"]) for r in rows if r["until"] is not None}

    async def latest_for_visitor(self, visitor_id: str) -> Visit | None:
        row = await self._db.one(
            "SELECT * FROM visits WHERE visitor_id = $1 "
            "ORDER BY last_seen_at DESC, id DESC LIMIT 1",
            visitor_id,
        )
        return None if row is None else build(Visit, row)


_DUE = (
    "UPDATE outbox o SET claimed_by = $2, claimed_until = $3 FROM ("
    "SELECT id FROM outbox WHERE delivered_at IS NULL AND NOT gave_up "
    "AND (next_attempt_at IS NULL OR next_attempt_at <= $1) "
    "AND (claimed_by IS NULL OR claimed_by = $2 OR claimed_until <= $1) "
    "ORDER BY coalesce(next_attempt_at, ''), id LIMIT $4 FOR UPDATE SKIP LOCKED) picked "
    "WHERE o.id = picked.id RETURNING o.*"
)
_LATEST = "9999-12-31T23:59:59.999999Z"


def claim_until(now: str, seconds: float = CLAIM_S) -> str:
    """`now` (the records' ISO form) plus `seconds`, in the same form."""
    try:
        start = dt.datetime.fromisoformat(now)
    except ValueError:
        raise InputError(f"invalid time {now!r}: expected YYYY-MM-DDTHH:MM:SS.ffffffZ") from None
    try:
        later = start + dt.timedelta(seconds=seconds)
    except OverflowError:
        return _LATEST
    return later.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class PgOutbox:
    def __init__(self, db: Db, who: Identity) -> None:
        self._db = db
        self._who = who

    async def add(self, item: OutboxItem) -> OutboxItem:
        item_id = await self._db.one(
            insert_sql("outbox", _OUTBOX_COLS), *values_of(item, _OUTBOX_COLS)
        )
        assert item_id is not None  # an INSERT ... RETURNING always returns its row
        return replace(item, id=item_id["id"])

    async def get(self, item_id: int) -> OutboxItem | None:
        row = await self._db.one("SELECT * FROM outbox WHERE id = $1", item_id)
        return None if row is None else build(OutboxItem, row)

    async def due(self, now: str, limit: int = 100) -> list[OutboxItem]:
        """The due items, claimed for this store (see the module docstring)."""
        rows = await self._db.all(_DUE, now, self._who.name, claim_until(now), max(0, limit))
        items = [build(OutboxItem, r) for r in rows]
        return sorted(items, key=lambda i: (i.next_attempt_at or "", i.id))

    async def backlog(self) -> int:
        row = await self._db.one(
            "SELECT count(*) AS n FROM outbox WHERE delivered_at IS NULL AND NOT gave_up"
        )
        return int(row["n"]) if row is not None else 0

    async def mark_delivered(self, item_id: int, delivered_at: str) -> None:
        changed = await self._db.run(
            "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1, "
            "claimed_by = NULL, claimed_until = NULL WHERE id = $2",
            delivered_at,
            item_id,
        )
        if not changed:
            raise NotFoundError(f"no outbox item {item_id}")

    async def mark_failed(self, item_id: int, next_attempt_at: str | None, error: str) -> None:
        changed = await self._db.run(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $1, "
            "next_attempt_at = $2, gave_up = $3, claimed_by = NULL, claimed_until = NULL "
            "WHERE id = $4",
            error,
            next_attempt_at,
            next_attempt_at is None,
            item_id,
        )
        if not changed:
            raise NotFoundError(f"no outbox item {item_id}")
