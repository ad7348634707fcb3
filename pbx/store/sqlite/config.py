"""SQLite repositories for configuration: trunks, destinations, sources (I/O).

Tracking numbers live in `numbers.py`; blocks and extensions in `local.py`.
The rules (removal, conflicts, messages) are `pbx.store.rows`, documented in
`pbx.store.base`; these classes hold the statements.
"""

from __future__ import annotations

import builtins
from typing import Any

from pbx.store.base import Destination, Source, Trunk
from pbx.store.rows import Destinations, Sources, Trunks, build, columns_of
from pbx.store.sqlite.db import Db, Tx, insert_sql, update_sql, values_of
from pbx.store.sqlite.named import SqliteNamedRows, key_clause

_TRUNK_COLS = columns_of(Trunk, exclude=("allow",))


async def numbers_using(tx: Tx, where: str, params: tuple[Any, ...]) -> list[str]:
    rows = await tx.all(f"SELECT number FROM numbers WHERE {where} ORDER BY number", params)
    return [r["number"] for r in rows]


class SqliteTrunks(Trunks[Tx]):
    _db: Db

    async def _get(self, tx: Tx, name_or_id: str | int) -> Trunk | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"SELECT * FROM trunks WHERE {where}", params)
        if row is None:
            return None
        allow = await tx.all(
            "SELECT cidr FROM trunk_allow WHERE trunk_id = ? ORDER BY position", (row["id"],)
        )
        return build(Trunk, row, allow=tuple(a["cidr"] for a in allow))

    async def _write_allow(self, tx: Tx, trunk_id: int, allow: tuple[str, ...]) -> None:
        await tx.run("DELETE FROM trunk_allow WHERE trunk_id = ?", (trunk_id,))
        await tx.many(
            "INSERT INTO trunk_allow (trunk_id, position, cidr) VALUES (?, ?, ?)",
            [(trunk_id, i, cidr) for i, cidr in enumerate(allow)],
        )

    async def _insert_row(self, tx: Tx, trunk: Trunk) -> int:
        return await tx.insert(insert_sql("trunks", _TRUNK_COLS), values_of(trunk, _TRUNK_COLS))

    async def _rewrite_row(self, tx: Tx, trunk: Trunk) -> None:
        params = values_of(trunk, _TRUNK_COLS) | {"id": trunk.id}
        await tx.run(update_sql("trunks", _TRUNK_COLS), params)

    async def _all(self) -> builtins.list[Trunk]:
        async with self._db.read() as tx:
            rows = await tx.all("SELECT * FROM trunks ORDER BY name")
            allow: dict[int, list[str]] = {}
            for a in await tx.all("SELECT * FROM trunk_allow ORDER BY trunk_id, position"):
                allow.setdefault(a["trunk_id"], []).append(a["cidr"])
        return [build(Trunk, r, allow=tuple(allow.get(r["id"], ()))) for r in rows]

    async def _users(self, tx: Tx, trunk_id: int) -> builtins.list[str]:
        return await numbers_using(tx, "trunk_id = ?", (trunk_id,))

    async def _detach(self, tx: Tx, trunk_id: int) -> None:
        await tx.run("UPDATE numbers SET trunk_id = NULL WHERE trunk_id = ?", (trunk_id,))

    async def _delete(self, tx: Tx, row_id: int) -> None:
        await tx.run("DELETE FROM trunks WHERE id = ?", (row_id,))


class SqliteDestinations(SqliteNamedRows[Destination], Destinations[Tx]):
    async def _users(self, tx: Tx, destination_id: int) -> builtins.list[str]:
        return await numbers_using(
            tx,
            "id IN (SELECT number_id FROM number_destinations WHERE destination_id = ?)",
            (destination_id,),
        )

    async def _detach(self, tx: Tx, destination_id: int) -> None:
        await tx.run(
            "DELETE FROM number_destinations WHERE destination_id = ?", (destination_id,)
        )


class SqliteSources(SqliteNamedRows[Source], Sources[Tx]):
    async def _users(self, tx: Tx, source_id: int) -> builtins.list[str]:
        return await numbers_using(tx, "source_id = ?", (source_id,))
