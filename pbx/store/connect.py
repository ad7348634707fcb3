"""The one door to the store backends: open, probe, and their errors (I/O).

`open_store(url)` returns a ready store for a path, `sqlite:///path` or
`postgresql://...` (`pbx.store.url`); `probe_store(url)` checks one without
changing it (for `pbx doctor`); `store_errors()` are the engine errors a
caller may see besides the `pbx.errors` ones. A backend module is imported
only when a store of its kind is opened (no asyncpg import for SQLite).
"""

from __future__ import annotations

import sys
from pathlib import Path

from pbx.store.base import Store
from pbx.store.probe import StoreCheck
from pbx.store.url import parse_store_url

__all__ = ["open_store", "probe_store", "store_errors"]


async def open_store(url: str | Path, *, cache: bool = True, create: bool = True) -> Store:
    """Open (creating or migrating as needed) the store at `url`.

    `cache=False` reads provisioning from the database on every lookup
    (the contract suite runs both ways). `create=False`: a SQLite file that
    does not exist is an `InputError` and nothing is created (a PostgreSQL
    database is never created by pbx anyway).
    """
    location = parse_store_url(url)
    if location.kind == "sqlite":
        from pbx.store.sqlite.store import open_sqlite

        assert location.path is not None
        return await open_sqlite(location.path, cache=cache, create=create)
    from pbx.store.postgres.store import open_postgres

    return await open_postgres(location.url, cache=cache)


async def probe_store(url: str | Path) -> StoreCheck:
    """Whether the store at `url` opens and its schema is current; never writes it."""
    location = parse_store_url(url)
    if location.kind == "sqlite":
        from pbx.store.sqlite.probe import probe_sqlite

        assert location.path is not None
        return probe_sqlite(location.path)
    from pbx.store.postgres.store import probe_postgres

    return await probe_postgres(location.url)


def store_errors() -> tuple[type[BaseException], ...]:
    """The engine errors a store operation may raise (only of engines in use)."""
    import sqlite3  # stdlib; imported here so that importing the interface stays pure

    errors: list[type[BaseException]] = [sqlite3.Error]
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None:
        errors.append(asyncpg.PostgresError)
        errors.append(asyncpg.InterfaceError)
    return tuple(errors)
