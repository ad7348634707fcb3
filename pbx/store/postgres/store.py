"""PostgreSQL backend of the store: opening, migrations, dump, the `PostgresStore` (I/O).

`open_postgres(url)` opens a small asyncpg pool on
`postgresql://USER@HOST:PORT/DB` (a password from the URL, PGPASSWORD or
~/.pgpass, as libpq does; `?host=/dir` for a unix socket directory) and
applies the numbered migrations `pbx/store/postgres/migrations/NNNN_name.sql`
that the database's `schema_version` table has not recorded, each in its
own transaction together with its version row. The whole run holds a
session advisory lock, so two nodes opening a new database at once migrate
it once: the second waits, then finds nothing to do. A database whose
schema is newer than this code raises `SchemaVersionError`.

`dump()` is the backend-neutral JSON text of `pbx.store.dump` (booleans
as 0/1, as SQLite stores them) over every table of the shared schema. Left out:
PostgreSQL's own bookkeeping (`PRIVATE_TABLES`) and columns
(`PRIVATE_COLUMNS`). It reads one snapshot (REPEATABLE READ, read only).

Decisions: the store's node name (in its calls' `node` column and its
outbox claims) defaults to a random token per open, until
`store.nodes.acquire_node(name)` (pbx/store/postgres/nodes.py); a
connection failure is a `PostgresUnavailableError` (an `InputError`: one
line, the URL's password never shown).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pbx.errors import InputError
from pbx.store.base import SchemaVersionError, Store
from pbx.store.dump import neutral_json
from pbx.store.migrations import Migration, load_numbered
from pbx.store.postgres.activity import PgCalls, PgOutbox, PgVisits
from pbx.store.postgres.cache import PgConfigCache
from pbx.store.postgres.call_log import PgCallLog
from pbx.store.postgres.config import PgDestinations, PgSources, PgTrunks
from pbx.store.postgres.db import Db, Identity, one_line
from pbx.store.postgres.local import PgBlocks, PgExtensions, PgPrompts
from pbx.store.postgres.nodes import PgNodes
from pbx.store.postgres.numbers import PgNumbers
from pbx.store.postgres.users import PgAudit, PgTokens, PgUsers
from pbx.store.probe import StoreCheck, version_check

POOL_SIZE = 4  # connections per store: a node's per-call writes in flight at once
MIGRATION_LOCK = 0x7062_7802  # session advisory lock key held while migrating
CLOSE_TIMEOUT_S = 10.0
PRIVATE_TABLES = frozenset({"schema_version", "nodes"})
PRIVATE_COLUMNS: dict[str, frozenset[str]] = {
    "outbox": frozenset({"claimed_by", "claimed_until"}),
}
_SCHEMA_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version bigint PRIMARY KEY, name text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())"
)


class PostgresUnavailableError(InputError):
    """The PostgreSQL server could not be reached or refused us (one line, no password)."""


def load_migrations() -> list[Migration]:
    """This backend's shipped migrations in order (`pbx.store.migrations`)."""
    return load_numbered("pbx.store.postgres")


def redact(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


async def schema_version(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> int:
    found = await conn.fetchval(
        "SELECT coalesce(max(version), 0) FROM schema_version"
        if await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
        else "SELECT 0"
    )
    return int(found)


async def migrate(pool: asyncpg.Pool[asyncpg.Record], migrations: list[Migration]) -> int:
    """Apply the migrations newer than the database's; returns the version (see module doc)."""
    latest = migrations[-1].version if migrations else 0
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(_SCHEMA_TABLE)
            current = await schema_version(conn)
            if current > latest:
                raise SchemaVersionError(
                    f"database schema version {current} is newer than this pbx knows "
                    f"({latest}); upgrade pbx or use another --db"
                )
            for migration in migrations[current:]:
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return max(current, latest)


class PostgresStore:
    """The `Store` on one PostgreSQL database; every repository shares one pool."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], url: str, *, cache: bool, node: str):
        self.url = redact(url)
        self._who = Identity(name=node, token=uuid.uuid4().hex)
        self._db = Db(pool)
        self.cache = PgConfigCache(self._db) if cache else None
        self.trunks = PgTrunks(self._db, self.cache)
        self.destinations = PgDestinations(self._db)
        self.sources = PgSources(self._db, self.cache)
        self.numbers = PgNumbers(self._db, self.cache)
        self.calls = PgCalls(self._db, self._who)
        self.visits = PgVisits(self._db)
        self.outbox = PgOutbox(self._db, self._who)
        self.blocks = PgBlocks(self._db, self.cache)
        self.extensions = PgExtensions(self._db)
        self.prompts = PgPrompts(self._db, self.cache)
        self.nodes = PgNodes(self._db, self._who)  # PostgreSQL only: leases (nodes.py)
        self.users = PgUsers(self._db)
        self.tokens = PgTokens(self._db)
        self.audit = PgAudit(self._db)
        self.call_log = PgCallLog(self._db)
        self._closed = False

    @property
    def node(self) -> str:
        """This store's name among the nodes (a random token until `nodes.acquire_node`)."""
        return self._who.name

    @property
    def pool(self) -> asyncpg.Pool[asyncpg.Record]:
        return self._db.pool

    async def schema_version(self) -> int:
        async with self.pool.acquire() as conn:
            return await schema_version(conn)

    async def dump(self) -> str:
        """The shared tables as backend-neutral JSON text (see the module docstring)."""
        out: dict[str, list[dict[str, Any]]] = {}
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            tables = await conn.fetch(
                "SELECT table_name::text AS name FROM information_schema.tables "
                "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            )
            for table in sorted(t["name"] for t in tables if t["name"] not in PRIVATE_TABLES):
                hidden = PRIVATE_COLUMNS.get(table, frozenset())
                rows = await conn.fetch(f'SELECT * FROM "{table}"')
                out[table] = [{k: v for k, v in r.items() if k not in hidden} for r in rows]
        return neutral_json(out)

    def pinned_config(self) -> AbstractContextManager[None]:
        """Provisioning reads inside share one `config_version` read (`pbx.store.versioned`)."""
        return self.cache.pinned() if self.cache is not None else nullcontext()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self.cache is not None:
            self.cache.close()
        try:
            await asyncio.wait_for(self.pool.close(), CLOSE_TIMEOUT_S)
        except TimeoutError:
            self.pool.terminate()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def create_pool(url: str, size: int = POOL_SIZE) -> asyncpg.Pool[asyncpg.Record]:
    """A pool on `url`, or a one-line `PostgresUnavailableError` (password redacted)."""
    # While the server is away the pool retries its minimum size and logs a
    # traceback per try; pbx says it once itself (`store.unwritable`).
    logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=1,
            max_size=size,
            # jit off: pbx runs short OLTP queries; JIT only slows them (and asyncpg's
            # type introspection) down.
            server_settings={"application_name": "pbx", "jit": "off"},
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError) as exc:
        reason = one_line(str(exc)) or type(exc).__name__
        raise PostgresUnavailableError(
            f"cannot open PostgreSQL store {redact(url)}: {reason}"
        ) from None
    assert pool is not None  # create_pool returns the pool once initialised
    return pool


async def open_postgres(
    url: str, *, cache: bool = True, node: str | None = None, pool_size: int = POOL_SIZE
) -> PostgresStore:
    """Open the database at `url` and bring its schema up to date.

    `cache=False` reads provisioning from the database every time (see
    `pbx.store.postgres.cache`; the contract suite runs both ways).
    `node` names this store before any lease (default: a random token).
    """
    pool = await create_pool(url, pool_size)
    try:
        await migrate(pool, load_migrations())
    except BaseException:
        pool.terminate()
        raise
    return PostgresStore(pool, url, cache=cache, node=node or uuid.uuid4().hex)


def _conforms(store: PostgresStore) -> Store:
    """Never called: makes mypy prove that `PostgresStore` implements `Store`."""
    return store


async def probe_postgres(url: str) -> StoreCheck:
    """Whether the database at `url` answers and its schema is current; never writes it."""
    where = redact(url)
    try:
        pool = await create_pool(url, 1)
    except PostgresUnavailableError as exc:
        return StoreCheck(False, [("FAIL", str(exc))])
    try:
        async with pool.acquire() as conn:
            version = await schema_version(conn)
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return StoreCheck(False, [("FAIL", f"database {where} cannot be read: {exc}")])
    finally:
        await pool.close()
    return version_check(where, version, len(load_migrations()))
