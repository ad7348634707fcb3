"""The PostgreSQL backend of the store (placeholder until the asyncpg backend lands)."""

from __future__ import annotations

from pbx.errors import InputError
from pbx.store.base import Store
from pbx.store.probe import StoreCheck


async def open_postgres(url: str, *, cache: bool = True) -> Store:
    raise InputError("database: the PostgreSQL backend is not part of this build")


async def probe_postgres(url: str) -> StoreCheck:
    return StoreCheck(False, [("FAIL", "the PostgreSQL backend is not part of this build")])
