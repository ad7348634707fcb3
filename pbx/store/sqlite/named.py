"""The shared shape of a SQLite table of rows with a unique `name` (I/O).

Destinations, sources and extensions are read, added, listed and renamed
the same way; each repository adds only its own rules (what blocks a
removal or a rename). Error messages keep the forms documented in
`pbx.store.base`: "no destination named 'x'", "source 'x' already exists".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Generic, Protocol, TypeVar

from pbx.errors import ConflictError, NotFoundError
from pbx.store.rows import build, check_changes, columns_of
from pbx.store.sqlite.db import Db, Tx, insert_sql, update_sql, values_of


class NamedRow(Protocol):
    @property
    def name(self) -> str: ...


R = TypeVar("R", bound=NamedRow)


def key_clause(name_or_id: str | int, name_col: str = "name") -> tuple[str, tuple[Any, ...]]:
    """`id = ?` for an integer key, `<name_col> = ?` for a name."""
    if isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        return "id = ?", (name_or_id,)
    return f"{name_col} = ?", (name_or_id,)


class NamedRows(Generic[R]):
    """Reads and writes of one table keyed by `id` and a unique `name`."""

    def __init__(self, db: Db, table: str, kind: type[R], noun: str, order: str = "name") -> None:
        self._db = db
        self._table = table
        self._kind = kind
        self._noun = noun
        self._order = order
        self._cols = columns_of(kind)

    async def _get(self, tx: Tx, name_or_id: str | int) -> R | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"SELECT * FROM {self._table} WHERE {where}", params)
        return None if row is None else build(self._kind, row)

    async def _need(self, tx: Tx, name: str) -> R:
        found = await self._get(tx, name)
        if found is None:
            raise NotFoundError(f"no {self._noun} named '{name}'")
        return found

    async def _free_name(self, tx: Tx, name: str) -> None:
        if await self._get(tx, name) is not None:
            raise ConflictError(f"{self._noun} '{name}' already exists")

    async def _add(self, row: R) -> R:
        async with self._db.write() as tx:
            await self._free_name(tx, row.name)
            await tx.insert(insert_sql(self._table, self._cols), values_of(row, self._cols))
            return await self._need(tx, row.name)

    async def _read(self, name_or_id: str | int) -> R | None:
        async with self._db.read() as tx:
            return await self._get(tx, name_or_id)

    async def _all(self) -> list[R]:
        async with self._db.read() as tx:
            rows = await tx.all(f"SELECT * FROM {self._table} ORDER BY {self._order}")
        return [build(self._kind, r) for r in rows]

    async def _update(self, name: str, changes: Mapping[str, object]) -> R:
        check_changes(self._noun, self._kind, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, name)
            new = replace(current, **changes)  # type: ignore[type-var]
            if new.name != name:
                await self._free_name(tx, new.name)
                await self._renaming(tx, name)
            cols = self._cols
            await tx.run(update_sql(self._table, cols), values_of(new, ["id", *cols]))
            return await self._need(tx, new.name)

    async def _renaming(self, tx: Tx, old: str) -> None:
        """Refuse a rename that would break a reference (none by default)."""
