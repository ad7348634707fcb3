"""Copy a SQLite store into an empty PostgreSQL one (I/O: sqlite3 read-only, asyncpg).

`copy_sqlite_to(sqlite, postgres_url)` is what `pbx db migrate --to URL`
runs. It refuses a database holding someone else's tables, brings the
target's schema up to date, then in ONE target
transaction: refuses a target holding any row (`TargetNotEmptyError`, one
line, before anything is written), copies every table of the SQLite schema
in foreign-key order with COPY (ids kept), sets `config_version` to the
source's value, and resets the id sequences past the copied ids. Returns
`(table, source_rows, target_rows)` per table.

Decisions:
- The source is opened read-only (`mode=ro`); it must have exactly the
  tables and columns of the PostgreSQL schema's shared part (a store
  written by this pbx), else one-line `InputError` naming the table.
- Values convert by the target column's type (0/1 -> boolean, ints and
  floats as such); a value PostgreSQL refuses (e.g. a NUL in text) aborts
  the whole copy with an `InputError` naming the table.
- `call_days` (per-day counts) is copied as it is, with the triggers that
  keep it from `calls` disabled meanwhile: they would count every copied
  call a second time, and the copy keeps rows whose counts fell to 0.
- The copy holds the provisioning lock and locks every table it writes, so
  nothing else writes to the target meanwhile.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from pbx.errors import InputError
from pbx.store.postgres.db import BAD_VALUE, PROVISIONING_LOCK, one_line
from pbx.store.postgres.store import PRIVATE_COLUMNS, create_pool, load_migrations, migrate, redact

if TYPE_CHECKING:
    from pbx.store.postgres.db import Conn

# Every table of the SQLite schema, parents before children.
TABLES = (
    "trunks",
    "trunk_allow",
    "destinations",
    "sources",
    "numbers",
    "number_destinations",
    "blocks",
    "extensions",
    "extension_bindings",
    "prompts",
    "calls",
    "call_days",
    "visits",
    "outbox",
    "users",
    "tokens",
    "audit",
    "config_version",
)
_WITH_IDENTITY = (
    "trunks",
    "destinations",
    "sources",
    "numbers",
    "blocks",
    "extensions",
    "prompts",
    "outbox",
    "users",
    "tokens",
    "audit",
)
# The triggers that keep call_days in step with calls: off while calls are
# copied, since call_days is copied as it is (rows whose counts fell to 0 too).
_CALL_DAYS_TRIGGERS = ("calls_days_insert", "calls_days_update", "calls_days_delete")
CHUNK_ROWS = 5000  # rows per COPY: bounds memory on a large call history

Counts = list[tuple[str, int, int]]


class TargetNotEmptyError(InputError):
    """The PostgreSQL store already holds rows: a copy would mix two stores."""


def sqlite_path(source: str | Path) -> Path:
    """`sqlite:///abs/path` (or `sqlite:////abs/path`), `sqlite:rel/path` or a path -> a path."""
    text = str(source)
    if text.startswith("sqlite://"):
        text = "/" + text.removeprefix("sqlite://").lstrip("/")
    elif text.startswith("sqlite:"):
        text = text.removeprefix("sqlite:")
    return Path(text)


def _open_source(source: str | Path) -> sqlite3.Connection:
    path = sqlite_path(source)
    if not path.is_file():
        raise InputError(f"no SQLite store at {path}")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as exc:
        raise InputError(f"cannot read SQLite store {path}: {exc}") from None
    return conn


def _source_columns(src: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {
        name: [r[1] for r in src.execute(f'PRAGMA table_info("{name}")')]
        for name in names
        if not name.startswith("sqlite_")
    }


async def _target_types(conn: Conn) -> dict[str, dict[str, str]]:
    """table -> column -> data type, for the shared tables (private columns left out)."""
    rows = await conn.fetch(
        "SELECT table_name::text AS t, column_name::text AS c, data_type::text AS d, "
        "domain_name::text AS dom FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = ANY($1::text[])",
        list(TABLES),
    )
    types: dict[str, dict[str, str]] = {}
    for r in rows:
        if r["c"] not in PRIVATE_COLUMNS.get(r["t"], frozenset()):
            types.setdefault(r["t"], {})[r["c"]] = r["d"]
    return types


def _check_shapes(source: dict[str, list[str]], target: dict[str, dict[str, str]]) -> None:
    extra = sorted(set(source) - set(TABLES))
    if extra:
        raise InputError(f"the SQLite store has tables this pbx does not know: {', '.join(extra)}")
    for table in TABLES:
        have, want = set(source.get(table, ())), set(target.get(table, {}))
        if have != want:
            diff = ", ".join(sorted(have ^ want)) or table
            raise InputError(
                f"table {table}: the SQLite store and PostgreSQL differ ({diff}); "
                "open the SQLite store once with this pbx to upgrade it"
            )


async def _refuse_foreign(conn: Conn, url: str) -> None:
    """A database holding tables but no pbx schema is someone else's: touch nothing."""
    if await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
        return
    tables = await conn.fetchval(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    if tables:
        raise TargetNotEmptyError(
            f"PostgreSQL database {redact(url)} holds {tables} table(s) but no pbx store; "
            "copy into an empty database"
        )


async def _refuse_non_empty(conn: Conn, url: str) -> None:
    for table in TABLES[:-1]:  # config_version always holds its one row
        if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
            raise TargetNotEmptyError(
                f"PostgreSQL store {redact(url)} is not empty (table {table} has rows); "
                "copy into an empty database"
            )


def _converter(data_type: str) -> Any:
    if data_type == "boolean":
        return lambda v: None if v is None else bool(v)
    if data_type == "double precision":
        return lambda v: None if v is None else float(v)
    if data_type == "bigint":
        return lambda v: None if v is None else int(v)
    return lambda v: v


def _chunks(
    src: sqlite3.Connection, table: str, cols: list[str], types: dict[str, str]
) -> Iterator[list[tuple[Any, ...]]]:
    convert = [_converter(types[c]) for c in cols]
    names = ", ".join(f'"{c}"' for c in cols)
    cursor = src.execute(f'SELECT {names} FROM "{table}"')
    while rows := cursor.fetchmany(CHUNK_ROWS):
        yield [tuple(f(v) for f, v in zip(convert, row, strict=True)) for row in rows]


async def _copy_table(
    conn: Conn, src: sqlite3.Connection, table: str, types: dict[str, str]
) -> tuple[str, int, int]:
    cols = sorted(types)
    source_rows = int(src.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
    if table == "config_version":
        row = src.execute("SELECT version FROM config_version WHERE id = 1").fetchone()
        await conn.execute(
            "UPDATE config_version SET version = $1 WHERE id = 1", row[0] if row else 0
        )
    else:
        for chunk in _chunks(src, table, cols, types):
            try:
                await conn.copy_records_to_table(table, records=chunk, columns=cols)
            except BAD_VALUE as exc:
                raise InputError(
                    f"table {table}: a row cannot be copied: {one_line(str(exc))}"
                ) from None
    target_rows = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    return table, source_rows, target_rows


async def _call_days_triggers(conn: Conn, state: str) -> None:
    """ENABLE or DISABLE them, inside the copy's transaction (a rollback restores them)."""
    for trigger in _CALL_DAYS_TRIGGERS:
        await conn.execute(f"ALTER TABLE calls {state} TRIGGER {trigger}")


async def _reset_sequences(conn: Conn) -> None:
    for table in _WITH_IDENTITY:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"coalesce(max(id), 0) + 1, false) FROM {table}"
        )


async def copy_sqlite_to(source: str | Path, postgres_url: str) -> Counts:
    """Copy the SQLite store at `source` into the empty PostgreSQL store at `postgres_url`."""
    src = _open_source(source)
    try:
        pool = await create_pool(postgres_url, 1)
        try:
            async with pool.acquire() as conn:
                await _refuse_foreign(conn, postgres_url)
            await migrate(pool, load_migrations())
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", PROVISIONING_LOCK)
                await conn.execute(f"LOCK TABLE {', '.join(TABLES)} IN EXCLUSIVE MODE")
                await _refuse_non_empty(conn, postgres_url)
                types = await _target_types(conn)
                _check_shapes(_source_columns(src), types)
                await _call_days_triggers(conn, "DISABLE")
                counts = [await _copy_table(conn, src, t, types[t]) for t in TABLES]
                await _call_days_triggers(conn, "ENABLE")
                await _reset_sequences(conn)
            return counts
        finally:
            await pool.close()
    except asyncpg.PostgresError as exc:
        raise InputError(f"copy to {redact(postgres_url)} failed: {one_line(str(exc))}") from None
    finally:
        src.close()
