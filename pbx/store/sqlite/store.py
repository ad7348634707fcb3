"""SQLite backend of the store: opening, migrations, the `SqliteStore` (I/O).

`open_sqlite(path)` creates the parent directory, opens one aiosqlite
connection (WAL, foreign_keys=ON, busy_timeout=5000, synchronous=NORMAL,
autocommit mode so only our explicit BEGIN IMMEDIATE opens transactions)
and applies the numbered migrations in `pbx/store/sqlite/migrations/NNNN_name.sql`
that the database's `PRAGMA user_version` has not seen, each in its own
transaction together with the new user_version. Re-opening is a no-op; a
database with a newer user_version raises `SchemaVersionError`.

Callers use `pbx.store.open_store(url)`, which calls `open_sqlite` for a
path or a `sqlite:///` URL.

Decisions:
- The database file is created mode 0600 (owner only: it holds trunk
  passwords, extension HA1 hashes, callers' numbers), by `os.open` before
  SQLite opens it; SQLite's own default would be 0644 less the umask. SQLite
  creates the `-wal` and `-shm` files with the mode of the database file
  (its unix VFS copies it), so they are 0600 too; a test checks all three.
  An existing file's mode is left alone (an admin may have chosen it).
- `create=False` (read-only CLI commands): a path that does not exist is an
  `InputError` and nothing is created, not even the parent directory.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from pbx.errors import InputError
from pbx.store.base import SchemaVersionError, Store
from pbx.store.dump import neutral_json
from pbx.store.migrations import Migration, load_numbered
from pbx.store.sqlite.activity import SqliteCalls, SqliteOutbox, SqliteVisits
from pbx.store.sqlite.cache import ConfigCache, open_cache
from pbx.store.sqlite.call_log import SqliteCallLog
from pbx.store.sqlite.config import SqliteDestinations, SqliteSources, SqliteTrunks
from pbx.store.sqlite.db import Db, Reader, Writer
from pbx.store.sqlite.local import SqliteBlocks, SqliteExtensions, SqlitePrompts
from pbx.store.sqlite.nodes import SqliteNodes
from pbx.store.sqlite.numbers import SqliteNumbers
from pbx.store.sqlite.users import SqliteAudit, SqliteTokens, SqliteUsers

_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
_PRAGMAS = (
    "PRAGMA busy_timeout = 5000",
    "PRAGMA foreign_keys = ON",
    "PRAGMA synchronous = NORMAL",
)
WAL_TRIES = 50  # x 0.1 s: how long a first open waits for another opener's lock


def load_migrations() -> list[Migration]:
    """This backend's shipped migrations in order (`pbx.store.migrations`)."""
    return load_numbered("pbx.store.sqlite")


async def user_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def split_statements(sql: str) -> list[str]:
    """Split a migration script into complete SQL statements (comments kept)."""
    statements: list[str] = []
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    leftover = "\n".join(x for x in buf.splitlines() if not x.strip().startswith("--"))
    if leftover.strip():
        raise RuntimeError(f"incomplete SQL statement at the end of a migration: {leftover!r}")
    return statements


def _too_new(current: int, latest: int) -> SchemaVersionError:
    return SchemaVersionError(
        f"database schema version {current} is newer than this pbx knows ({latest}); "
        "upgrade pbx or use another --db"
    )


FOREIGN_KEYS_OFF = "-- pbx: foreign_keys off"  # a migration's first line: it rebuilds a table


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    """One migration and its user_version in one transaction.

    The version is re-read after BEGIN IMMEDIATE: another process (or
    connection) opening the same new file may have applied it meanwhile.
    A migration whose first line is FOREIGN_KEYS_OFF rebuilds a table
    (SQLite cannot change a CHECK in place): foreign keys are off around its
    transaction, so dropping the old table neither cascades nor refuses, and
    `PRAGMA foreign_key_check` must find nothing before COMMIT.
    """
    keys_off = migration.sql.startswith(FOREIGN_KEYS_OFF)
    if keys_off:
        await conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction
    try:
        await conn.execute("BEGIN IMMEDIATE")
        try:
            if await user_version(conn) < migration.version:
                for statement in split_statements(migration.sql):
                    await conn.execute(statement)
                if keys_off:
                    async with conn.execute("PRAGMA foreign_key_check") as cur:
                        broken = await cur.fetchall()
                    if broken:
                        raise RuntimeError(
                            f"migration {migration.name}: foreign keys broken: {list(broken)[:3]}"
                        )
                await conn.execute(f"PRAGMA user_version = {migration.version:d}")
        except BaseException:
            await asyncio.shield(conn.execute("ROLLBACK"))
            raise
        await conn.execute("COMMIT")
    finally:
        if keys_off:
            await conn.execute("PRAGMA foreign_keys = ON")


async def migrate(conn: aiosqlite.Connection, migrations: list[Migration]) -> int:
    """Apply the migrations newer than the DB's user_version; returns the version."""
    current = await user_version(conn)
    latest = migrations[-1].version if migrations else 0
    if current > latest:
        raise _too_new(current, latest)
    for migration in migrations[current:]:
        await _apply(conn, migration)
    return max(current, latest)


class SqliteStore:
    """The `Store` on one SQLite file; every repository shares one `Db`."""

    def __init__(self, db: Db, path: Path, cache: ConfigCache | None = None) -> None:
        self.path = path
        self._db = db
        self.cache = cache
        self.trunks = SqliteTrunks(self._db, cache)
        self.destinations = SqliteDestinations(self._db)
        self.sources = SqliteSources(self._db, cache)
        self.numbers = SqliteNumbers(self._db, cache)
        self.calls = SqliteCalls(self._db)
        self.visits = SqliteVisits(self._db)
        self.outbox = SqliteOutbox(self._db)
        self.blocks = SqliteBlocks(self._db, cache)
        self.extensions = SqliteExtensions(self._db)
        self.nodes = SqliteNodes(self.calls)
        self.users = SqliteUsers(self._db)
        self.tokens = SqliteTokens(self._db)
        self.audit = SqliteAudit(self._db)
        self.call_log = SqliteCallLog(self._db)
        self.prompts = SqlitePrompts(self._db, cache)
        self._closed = False

    async def schema_version(self) -> int:
        async with self._db.read():
            return await user_version(self._db.conn)

    async def dump(self) -> str:
        async with self._db.read() as tx:
            names = await tx.all(_TABLES)
            tables = {
                # table names come from sqlite_master, not from input
                row[0]: [dict(r) for r in await tx.all(f"SELECT * FROM {row[0]}")]
                for row in names
            }
        return neutral_json(tables)

    def pinned_config(self) -> AbstractContextManager[None]:
        """Provisioning reads inside share one `config_version` read (`pbx.store.versioned`)."""
        return self.cache.pinned() if self.cache is not None else nullcontext()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._db.drain()
        if self.cache is not None:
            self.cache.close()
        if self._db.reader is not None:
            self._db.reader.close()
        async with self._db.lock:
            await self._db.conn.close()
            await self._db.writer.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _prepare_file(path: Path, *, create: bool) -> None:
    """Refuse a missing file unless `create`; else create it (and its folder), owner-only."""
    if not create and not path.exists():
        raise InputError(
            f"no database at {path} (it is created by `pbx serve` or an `add` command)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


async def open_sqlite(path: str | Path, *, cache: bool = True, create: bool = True) -> SqliteStore:
    """Open the database at `path` (creating it if `create`) and bring its schema up to date.

    `cache=False` reads provisioning from the database every time (see
    `pbx.store.sqlite.cache`; the contract suite runs both ways).
    """
    if str(path) in ("", ":memory:"):
        raise InputError("the SQLite store needs a file path, not an in-memory database")
    db_path = Path(path)
    _prepare_file(db_path, create=create)  # a few syscalls, once per open
    conn = await aiosqlite.connect(db_path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in _PRAGMAS:
            await conn.execute(pragma)
        await _wal(conn)
        await migrate(conn, load_migrations())
        config_cache = open_cache(db_path) if cache else None
        writer = await Writer.open(db_path)
        reader = Reader(db_path)  # after the migrations: the schema is in place
    except BaseException:
        await conn.close()
        raise
    return SqliteStore(Db(conn, writer, reader), db_path, config_cache)


async def _wal(conn: aiosqlite.Connection) -> None:
    """WAL mode; switching needs the file to itself, which SQLite does not wait for
    (no busy handler), so a new file opened by two processes at once retries."""
    for attempt in range(WAL_TRIES):
        try:
            await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == WAL_TRIES - 1:
                raise
            await asyncio.sleep(0.1)


def _conforms(store: SqliteStore) -> Store:
    """Never called: makes mypy prove that `SqliteStore` implements `Store`."""
    return store
