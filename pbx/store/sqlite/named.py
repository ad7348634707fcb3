"""The SQLite statements of a table of rows with a unique `name` (I/O).

The rules (which error when, in which order) are `pbx.store.rows.NamedRows`;
this class only reads and writes the table.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from pbx.store.rows import NamedRows, R, build
from pbx.store.sqlite.db import Db, Tx, insert_sql, update_sql, values_of


def key_clause(name_or_id: str | int, name_col: str = "name") -> tuple[str, tuple[Any, ...]]:
    """`id = ?` for an integer key, `<name_col> = ?` for a name."""
    if isinstance(name_or_id, int) and not isinstance(name_or_id, bool):
        return "id = ?", (name_or_id,)
    return f"{name_col} = ?", (name_or_id,)


class SqliteNamedRows(NamedRows[R, Tx]):
    """`NamedRows` on one SQLite table keyed by `id` and a unique `name`."""

    _db: Db

    async def _get(self, tx: Tx, name_or_id: str | int) -> R | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"SELECT * FROM {self._table} WHERE {where}", params)
        return None if row is None else build(self._kind, row)

    async def _insert(self, tx: Tx, row: R) -> None:
        await tx.insert(insert_sql(self._table, self._cols), values_of(row, self._cols))

    async def _rewrite(self, tx: Tx, new: R, changes: Mapping[str, object]) -> None:
        cols = self._cols
        await tx.run(update_sql(self._table, cols), values_of(new, ["id", *cols]))

    async def _all(self) -> builtins.list[R]:
        async with self._db.read() as tx:
            rows = await tx.all(f"SELECT * FROM {self._table} ORDER BY {self._order}")
        return [build(self._kind, r) for r in rows]

    async def _delete(self, tx: Tx, row_id: int) -> None:
        await tx.run(f"DELETE FROM {self._table} WHERE id = ?", (row_id,))
