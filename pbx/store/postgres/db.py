"""PostgreSQL plumbing shared by the repositories: the pool, transactions, errors (I/O).

One `asyncpg` pool per store. A read is one statement on a pooled
connection (autocommit: one statement sees one snapshot, so every read
that needs several tables is written as ONE statement with array or JSON
sub-selects). A write that needs several statements runs in `write()`: one
transaction on one connection, rolled back on any exception.

Decisions:
- Provisioning writes (trunks, destinations, sources, numbers, blocks,
  extensions) take a transaction-scoped advisory lock first: one such
  writer at a time across every node, so their check-then-write sequences
  ("is the name free?", "is it in use?") behave as under SQLite's single
  writer. Per-call writes never take it.
- Per-call writes (calls insert/update/finish, outbox, cursor) are ONE
  statement each, so one round trip and atomic on their own. There is no
  client-side group commit: PostgreSQL's WAL writer already flushes the
  commits that arrive together in one fsync, and the pool size bounds how
  many are in flight.
- Constraint violations become the one-line `InputError` / `ConflictError`
  of `integrity_error`; a value PostgreSQL cannot take (a wrong type, a NUL
  character in text) is an `InputError` too.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from pbx.errors import ConflictError, InputError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Conn: TypeAlias = PoolConnectionProxy[asyncpg.Record]
PROVISIONING_LOCK = 0x7062_7801  # advisory lock key of provisioning writers ("pbx" 1)


def integrity_error(exc: asyncpg.PostgresError) -> InputError:
    """A constraint the repositories did not pre-check, as one line for a human."""
    table = getattr(exc, "table_name", None) or "?"
    constraint = getattr(exc, "constraint_name", None) or "?"
    column = getattr(exc, "column_name", None)
    if isinstance(exc, asyncpg.CheckViolationError):
        return InputError(f"invalid value: {table} check {constraint} must hold")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ConflictError(f"already exists: {table} ({constraint})")
    if isinstance(exc, asyncpg.NotNullViolationError):
        return InputError(f"missing value: {table}.{column or '?'}")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ConflictError(f"the change would break a reference between records ({constraint})")
    return InputError(f"invalid value: {one_line(str(exc))}")


def one_line(text: str) -> str:
    return " ".join(text.split())


def as_input_error(exc: Exception) -> InputError:
    """asyncpg's errors for bad values and broken constraints, as our one-line errors."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return integrity_error(exc)
    return InputError(f"invalid value: {one_line(str(exc))}")


BAD_VALUE = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


@dataclass(slots=True)
class Identity:
    """Who a store is among the nodes sharing the database.

    `name` names it as an outbox claimer: a random token until
    `nodes.acquire_node(name)` makes it the node's name (`leased`); from then
    on it also goes into the calls it writes that name no node themselves
    (`calls.node`). `token` is this open of the store (one incarnation).
    """

    name: str
    token: str
    leased: bool = False


class Tx:
    """Statement helpers on one connection; errors mapped to one-line `InputError`s."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    async def one(self, sql: str, *args: Any) -> asyncpg.Record | None:
        try:
            return await self.conn.fetchrow(sql, *args)
        except BAD_VALUE as exc:
            raise as_input_error(exc) from None

    async def all(self, sql: str, *args: Any) -> builtins.list[asyncpg.Record]:
        try:
            return await self.conn.fetch(sql, *args)
        except BAD_VALUE as exc:
            raise as_input_error(exc) from None

    async def run(self, sql: str, *args: Any) -> int:
        """Execute one statement; returns the number of rows it changed."""
        try:
            status = await self.conn.execute(sql, *args)
        except BAD_VALUE as exc:
            raise as_input_error(exc) from None
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def value(self, sql: str, *args: Any) -> Any:
        try:
            return await self.conn.fetchval(sql, *args)
        except BAD_VALUE as exc:
            raise as_input_error(exc) from None

    async def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if not batch:
            return
        try:
            await self.conn.executemany(sql, batch)
        except BAD_VALUE as exc:
            raise as_input_error(exc) from None


class Db:
    """The pool of a store."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record]) -> None:
        self.pool = pool

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """A pooled connection outside any transaction (each statement is atomic)."""
        async with self.pool.acquire() as conn:
            yield Tx(conn)

    @asynccontextmanager
    async def write(self, *, provisioning: bool = True) -> AsyncIterator[Tx]:
        """One transaction: committed on success, rolled back on any exception."""
        async with self.pool.acquire() as conn, conn.transaction():
            if provisioning:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", PROVISIONING_LOCK)
            yield Tx(conn)

    async def one(self, sql: str, *args: Any) -> asyncpg.Record | None:
        async with self.read() as tx:
            return await tx.one(sql, *args)

    async def all(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self.read() as tx:
            return await tx.all(sql, *args)

    async def run(self, sql: str, *args: Any) -> int:
        async with self.read() as tx:
            return await tx.run(sql, *args)


# --- statement helpers (the row helpers are pbx.store.rows) -------------------


def insert_sql(table: str, cols: Sequence[str], returning: str = "id") -> str:
    marks = ", ".join(f"${i}" for i in range(1, len(cols) + 1))
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})"
    return f"{sql} RETURNING {returning}" if returning else sql


def update_sql(table: str, cols: Sequence[str], key: str = "id") -> str:
    """`UPDATE table SET c1 = $1, ... WHERE key = $n+1`."""
    sets = ", ".join(f"{c} = ${i}" for i, c in enumerate(cols, start=1))
    return f"UPDATE {table} SET {sets} WHERE {key} = ${len(cols) + 1}"


def values_of(obj: object, cols: Iterable[str]) -> list[Any]:
    return [getattr(obj, c) for c in cols]


def key_clause(name_or_id: str | int, name_col: str = "name") -> tuple[str, tuple[Any, ...]]:
    """`id = $1` for an integer key, `<name_col> = $1` for a name."""
    if isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        return "id = $1", (name_or_id,)
    return f"{name_col} = $1", (str(name_or_id),)
