"""SQLite plumbing shared by the repositories: one connection, one lock (I/O).

Every read and every write runs under one `asyncio.Lock`. Tasks sharing one
aiosqlite connection share its transaction, so a reader that slipped in
between a writer's statements would see (and could act on) rows that are
later rolled back; the lock rules that out. Writes run in explicit
`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any exception (cancellation
included); a write that is one statement may run in autocommit (`single`).
aiosqlite runs statements in order on its one thread, so a ROLLBACK queued
after a cancelled statement still runs after it.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import fields
from typing import Any, TypeVar

import aiosqlite

from pbx.errors import ConflictError, InputError

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]


class Db:
    """The one connection of a store and the lock that serialises its use."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self.lock = asyncio.Lock()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """Exclusive use of the connection for reads (no transaction opened)."""
        async with self.lock:
            yield Tx(self.conn)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        """One atomic write transaction: committed on success, else rolled back."""
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self.conn)
            except sqlite3.IntegrityError as exc:
                await asyncio.shield(self.conn.execute("ROLLBACK"))
                raise integrity_error(exc) from None
            except BaseException:
                await asyncio.shield(self.conn.execute("ROLLBACK"))
                raise
            await self.conn.execute("COMMIT")

    @asynccontextmanager
    async def single(self) -> AsyncIterator[Tx]:
        """Exactly one writing statement, atomic on its own (SQLite autocommit).

        One thread hop instead of three (BEGIN, statement, COMMIT): used on
        the per-call hot path. Holding the lock, no other transaction is open.
        """
        async with self.lock:
            try:
                yield Tx(self.conn)
            except sqlite3.IntegrityError as exc:
                raise integrity_error(exc) from None


def integrity_error(exc: sqlite3.IntegrityError) -> InputError:
    """A constraint the repositories did not pre-check, as one line for a human."""
    text = str(exc)
    if text.startswith("CHECK constraint failed: "):
        return InputError(
            f"invalid value: {text.removeprefix('CHECK constraint failed: ')} must hold"
        )
    if text.startswith("UNIQUE constraint failed: "):
        return ConflictError(f"already exists: {text.removeprefix('UNIQUE constraint failed: ')}")
    if text.startswith("NOT NULL constraint failed: "):
        return InputError(f"missing value: {text.removeprefix('NOT NULL constraint failed: ')}")
    return ConflictError(f"the change would break a reference between records ({text})")


class Tx:
    """Statement helpers over the connection while the lock is held.

    Each helper is one hop to aiosqlite's thread (measured ~100-200 us on a
    busy 2-core box), so none of them opens-and-closes a cursor separately:
    DML cursors are left to the garbage collector, which is safe because
    their statements have already run to completion.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = list(await self.conn.execute_fetchall(sql, params))
        return rows[0] if rows else None

    async def all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def run(self, sql: str, params: Params = ()) -> int:
        """Execute one statement; returns the number of rows changed."""
        cur = await self.conn.execute(sql, params)
        return cur.rowcount

    async def insert(self, sql: str, params: Params = ()) -> int:
        """Execute an INSERT; returns the new rowid."""
        cur = await self.conn.execute(sql, params)
        rowid = cur.lastrowid
        assert rowid is not None  # an INSERT always sets it
        return rowid

    async def many(self, sql: str, rows: Iterable[Params]) -> None:
        await self.conn.executemany(sql, rows)


def bool_fields(cls: type) -> frozenset[str]:
    """Names of a dataclass's `bool` fields (stored as 0/1)."""
    return frozenset(f.name for f in fields(cls) if f.type in ("bool", bool))


def build(cls: type[T], row: Mapping[str, Any] | sqlite3.Row, **override: Any) -> T:
    """A row dataclass from a DB row: takes the columns named like its fields."""
    keys = set(row.keys())
    bools = bool_fields(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in override:
            values[f.name] = override[f.name]
        elif f.name in keys:
            value = row[f.name]
            values[f.name] = bool(value) if f.name in bools else value
    return cls(**values)


def check_changes(kind: str, cls: type, changes: Mapping[str, object]) -> None:
    """Reject unknown or read-only field names in an `update(**changes)`."""
    allowed = {f.name for f in fields(cls)} - {"id"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InputError(f"cannot update {kind} field(s): {', '.join(unknown)}")


def columns_of(cls: type, exclude: Iterable[str] = ()) -> list[str]:
    skip = {"id", *exclude}
    return [f.name for f in fields(cls) if f.name not in skip]


def insert_sql(table: str, cols: Sequence[str]) -> str:
    names = ", ".join(cols)
    marks = ", ".join(f":{c}" for c in cols)
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"


def update_sql(table: str, cols: Sequence[str], key: str = "id") -> str:
    sets = ", ".join(f"{c} = :{c}" for c in cols)
    return f"UPDATE {table} SET {sets} WHERE {key} = :{key}"


def values_of(obj: object, cols: Iterable[str]) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in cols}


def quote_list(names: Iterable[str], limit: int = 5) -> str:
    """`'a', 'b', 'c' and 2 more` for messages."""
    items = list(names)
    shown = ", ".join(f"'{n}'" if not n.startswith("+") else n for n in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown
