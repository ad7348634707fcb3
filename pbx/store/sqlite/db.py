"""SQLite plumbing shared by the repositories: one connection, one lock (I/O).

Every read and every write runs under one `asyncio.Lock`. Tasks sharing one
aiosqlite connection share its transaction, so a reader that slipped in
between a writer's statements would see (and could act on) rows that are
later rolled back; the lock rules that out. Writes run in explicit
`BEGIN IMMEDIATE` ... `COMMIT`, rolled back on any exception (cancellation
included); a write that is one statement may run in autocommit (`single`).
aiosqlite runs statements in order on its one thread, so a ROLLBACK queued
after a cancelled statement still runs after it.

Group commit (`submit`): the per-call writes (call rows, the outbox) are
units of one or more statements queued to one flush task, which runs every
unit queued so far in ONE transaction with ONE hop to aiosqlite's thread
(a savepoint per unit: a unit that fails is rolled back alone and its
waiter gets the error; if the transaction itself fails, every waiter of
the batch gets the error, so no write is lost silently); a batch of one
unit, the common case at a few calls in flight, runs without the savepoint,
and one statement alone in autocommit (`_run_alone`). Each waiter is
resumed only after the COMMIT, so "the ringing row is committed before the
outbound INVITE is sent" still holds, and one call's writes stay in order
because its runner awaits each one. At most `MAX_BATCH` units per
transaction. A unit whose waiter was cancelled after queueing still runs.
The batch runs on a `Writer`: a second, plain `sqlite3` connection that
lives on one thread of its own (public APIs only: no aiosqlite internals).
Both connections are used under the same lock, so the store still has one
writer at a time; WAL lets the aiosqlite connection read what it committed.
So the store needs a file: `:memory:` is refused at open.

Hot reads (`Reader`): a third, read-only `sqlite3` connection answers the
one-row indexed lookups of the per-request paths (a website visit, the
visit holding a called number) synchronously on the event loop, without the
lock or a thread hop (~20 us instead of ~300 us of CPU). It sees only
committed rows, and a WAL reader never waits for a writer, so it never
blocks on the lock holders; it is used for single SELECT statements only.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from pbx.errors import ConflictError, InputError

T = TypeVar("T")
Params = Sequence[Any] | Mapping[str, Any]
Statement = tuple[str, Params]
Done = tuple[int, int | None]  # (rowcount, lastrowid) of one statement
MAX_BATCH = 256  # units per group-commit transaction
Queued = tuple[Sequence[Statement], "asyncio.Future[list[Done]]"]


def run_batch(conn: sqlite3.Connection, units: Sequence[Sequence[Statement]]) -> list[object]:
    """On the writer's thread: every unit in one transaction, each under a savepoint.

    Returns, per unit, its statements' `Done` list or the `sqlite3.Error` that
    undid it. Raises (after ROLLBACK) when the transaction itself fails.
    """
    if len(units) == 1:
        return [_run_alone(conn, units[0])]
    results: list[object] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for unit in units:
            conn.execute("SAVEPOINT unit")
            try:
                results.append(_execute(conn, unit))
            except sqlite3.Error as exc:
                if not conn.in_transaction:  # SQLite undid it all (e.g. SQLITE_FULL): fail all
                    raise
                conn.execute("ROLLBACK TO unit")
                results.append(exc)
            conn.execute("RELEASE unit")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def _run_alone(conn: sqlite3.Connection, unit: Sequence[Statement]) -> object:
    """A batch of one unit: its own transaction, no savepoint (one statement: autocommit).

    Each `execute` releases and retakes the GIL, and the loop thread holds it
    for up to the switch interval each time, so BEGIN/SAVEPOINT/RELEASE/COMMIT
    around one statement cost ~5x its latency at load; at a few calls per
    second in flight most batches are one unit. Same answers as `run_batch`.
    """
    if len(unit) == 1:
        try:
            return _execute(conn, unit)
        except sqlite3.Error as exc:
            return exc  # autocommit: the statement left nothing behind
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = _execute(conn, unit)
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            return exc  # undone whole: the waiter gets it, as from a savepoint
        raise
    return done


def _execute(conn: sqlite3.Connection, unit: Sequence[Statement]) -> list[Done]:
    done: list[Done] = []
    for sql, params in unit:
        cur = conn.execute(sql, params)
        done.append((cur.rowcount, cur.lastrowid))
    return done


WRITER_PRAGMAS = (
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 5000",
    "PRAGMA synchronous = NORMAL",
)


class Writer:
    """A plain `sqlite3` connection on a thread of its own, for group commits.

    The thread takes jobs from a queue and answers through the loop's
    `call_soon_threadsafe`: one hop costs the event loop ~37 us of CPU
    instead of ~60 us through `run_in_executor` (no concurrent Future, lock
    and future chaining per hop; three hops a call). A job whose waiter was
    cancelled still runs, as with an executor. The thread is a daemon so a
    Writer left unclosed never holds the interpreter at exit (SQLite rolls
    an unfinished transaction back; `close` runs what was queued first).
    """

    def __init__(
        self, jobs: queue.SimpleQueue[_Job | None], thread: threading.Thread,
        conn: sqlite3.Connection,
    ) -> None:  # fmt: skip
        self._jobs = jobs
        self._thread = thread
        self._conn = conn

    @classmethod
    async def open(cls, path: Path) -> Writer:
        """Connect on the writer's own thread (never blocking the event loop)."""
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        thread = threading.Thread(target=_serve, args=(jobs,), name="pbx-store-writer", daemon=True)
        thread.start()
        try:
            conn = await _hop(jobs, _connect_writer, path)
        except BaseException:
            jobs.put(None)
            raise
        return cls(jobs, thread, conn)

    def call(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """`fn(*args)` on the writer's thread, after what was queued before; await it."""
        return _hop(self._jobs, fn, *args)

    async def run(self, units: list[Sequence[Statement]]) -> list[object]:
        """`run_batch` on the writer's thread (one hop)."""
        return await self.call(run_batch, self._conn, units)

    async def close(self) -> None:
        try:
            await self.call(self._conn.close)
        finally:
            self._jobs.put(None)
            self._thread.join()


_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _hop(
    jobs: queue.SimpleQueue[_Job | None], fn: Callable[..., T], *args: Any
) -> asyncio.Future[T]:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    jobs.put((fn, args, loop, future))
    return future


def _serve(jobs: queue.SimpleQueue[_Job | None]) -> None:
    """The writer thread: run each job in order until the None that closes it."""
    while (job := jobs.get()) is not None:
        fn, args, loop, future = job
        del job
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiter, as an executor does
            _answer(loop, _fail, future, exc)
            del exc
        else:
            _answer(loop, _resolve, future, result)
            del result
        del fn, args, loop, future


def _answer(
    loop: asyncio.AbstractEventLoop,
    how: Callable[[asyncio.Future[Any], Any], None],
    future: asyncio.Future[Any],
    value: Any,
) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
        loop.call_soon_threadsafe(how, future, value)


def _resolve(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def _connect_writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    for pragma in WRITER_PRAGMAS:
        conn.execute(pragma)
    return conn


class Reader:
    """A read-only plain `sqlite3` connection used synchronously (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                                     check_same_thread=False)  # fmt: skip
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA busy_timeout = 1000")

    def one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._conn.execute(sql, params).fetchone()
        return row

    def all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        return list(self._conn.execute(sql, params).fetchall())

    def close(self) -> None:
        self._conn.close()


class Db:
    """The connections of a store and the lock that serialises their use."""

    def __init__(
        self, conn: aiosqlite.Connection, writer: Writer, reader: Reader | None = None
    ) -> None:
        self.conn = conn
        self.writer = writer
        self.reader = reader
        self.lock = asyncio.Lock()
        self._queued: list[Queued] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0  # transactions run by the flush task (for tests and figures)

    async def submit(self, unit: Sequence[Statement], *, raw: bool = False) -> list[Done]:
        """Run `unit` atomically in the next group commit; returns after its COMMIT.

        An `sqlite3.IntegrityError` becomes the one-line `InputError` /
        `ConflictError` of `integrity_error` unless `raw`.
        """
        future: asyncio.Future[list[Done]] = asyncio.get_running_loop().create_future()
        self._queued.append((unit, future))
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        try:
            return await future
        except sqlite3.IntegrityError as exc:
            if raw:
                raise
            raise integrity_error(exc) from None

    async def _flush(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued[:MAX_BATCH], self._queued[MAX_BATCH:]
                await self._run(batch)
        finally:
            self._flusher = None

    async def _run(self, batch: list[Queued]) -> None:
        try:
            async with self.lock:
                units = [unit for unit, _ in batch]
                results = await self.writer.run(units)
            self.batches += 1
        except BaseException as exc:  # the transaction failed: every waiter learns it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(cast(list[Done], result))

    async def drain(self) -> None:
        """Wait until every queued unit has run (before closing the connection)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)

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


def insert_sql(table: str, cols: Sequence[str]) -> str:
    names = ", ".join(cols)
    marks = ", ".join(f":{c}" for c in cols)
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"


def update_sql(table: str, cols: Sequence[str], key: str = "id") -> str:
    sets = ", ".join(f"{c} = :{c}" for c in cols)
    return f"UPDATE {table} SET {sets} WHERE {key} = :{key}"


def values_of(obj: object, cols: Iterable[str]) -> dict[str, Any]:
    return {c: getattr(obj, c) for c in cols}
