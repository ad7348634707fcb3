"""PostgreSQL repositories for configuration: trunks, destinations, sources (I/O).

The rules and messages are `pbx.store.rows`, as on SQLite; these classes hold
the statements. Every write
runs in `Db.write()` under the provisioning lock; a trunk is read with its
allow list in one statement (an array sub-select).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from pbx.store.base import Destination, Source, Trunk
from pbx.store.postgres.db import Db, Tx, insert_sql, key_clause, update_sql, values_of
from pbx.store.rows import Destinations, NamedRows, R, Sources, Trunks, build, columns_of

_TRUNK_COLS = columns_of(Trunk, exclude=("allow",))
_TRUNK_SELECT = (
    "SELECT t.*, ARRAY(SELECT a.cidr FROM trunk_allow a WHERE a.trunk_id = t.id "
    "ORDER BY a.position)::text[] AS allow FROM trunks t"
)


async def numbers_using(tx: Tx, where: str, *args: Any) -> list[str]:
    rows = await tx.all(f"SELECT number FROM numbers WHERE {where} ORDER BY number", *args)
    return [r["number"] for r in rows]


class PgNamedRows(NamedRows[R, Tx]):
    """`NamedRows` on one PostgreSQL table keyed by `id` and a unique `name`."""

    _db: Db

    async def _get(self, tx: Tx, name_or_id: str | int) -> R | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"SELECT * FROM {self._table} WHERE {where}", *params)
        return None if row is None else build(self._kind, row)

    async def _insert(self, tx: Tx, row: R) -> None:
        await tx.run(insert_sql(self._table, self._cols, ""), *values_of(row, self._cols))

    async def _rewrite(self, tx: Tx, new: R, changes: Mapping[str, object]) -> None:
        sql = update_sql(self._table, self._cols)
        await tx.run(sql, *values_of(new, self._cols), new.id)

    async def _all(self) -> builtins.list[R]:
        rows = await self._db.all(f"SELECT * FROM {self._table} ORDER BY {self._order}")
        return [build(self._kind, r) for r in rows]

    async def _delete(self, tx: Tx, row_id: int) -> None:
        await tx.run(f"DELETE FROM {self._table} WHERE id = $1", row_id)


class PgTrunks(Trunks[Tx]):
    _db: Db

    async def _get(self, tx: Tx, name_or_id: str | int) -> Trunk | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"{_TRUNK_SELECT} WHERE t.{where}", *params)
        return None if row is None else build(Trunk, row, allow=tuple(row["allow"]))

    async def _write_allow(self, tx: Tx, trunk_id: int, allow: tuple[str, ...]) -> None:
        await tx.run("DELETE FROM trunk_allow WHERE trunk_id = $1", trunk_id)
        await tx.run(
            "INSERT INTO trunk_allow (trunk_id, position, cidr) "
            "SELECT $1, ord - 1, cidr FROM unnest($2::text[]) WITH ORDINALITY AS a(cidr, ord)",
            trunk_id,
            list(allow),
        )

    async def _insert_row(self, tx: Tx, trunk: Trunk) -> int:
        trunk_id: int = await tx.value(
            insert_sql("trunks", _TRUNK_COLS), *values_of(trunk, _TRUNK_COLS)
        )
        return trunk_id

    async def _rewrite_row(self, tx: Tx, trunk: Trunk) -> None:
        sql = update_sql("trunks", _TRUNK_COLS)
        await tx.run(sql, *values_of(trunk, _TRUNK_COLS), trunk.id)

    async def _all(self) -> builtins.list[Trunk]:
        rows = await self._db.all(f"{_TRUNK_SELECT} ORDER BY t.name")
        return [build(Trunk, r, allow=tuple(r["allow"])) for r in rows]

    async def _users(self, tx: Tx, trunk_id: int) -> builtins.list[str]:
        return await numbers_using(tx, "trunk_id = $1", trunk_id)

    async def _detach(self, tx: Tx, trunk_id: int) -> None:
        await tx.run("UPDATE numbers SET trunk_id = NULL WHERE trunk_id = $1", trunk_id)

    async def _delete(self, tx: Tx, row_id: int) -> None:
        await tx.run("DELETE FROM trunks WHERE id = $1", row_id)


class PgDestinations(PgNamedRows[Destination], Destinations[Tx]):

    async def _users(self, tx: Tx, destination_id: int) -> builtins.list[str]:
        return await numbers_using(
            tx,
            "id IN (SELECT number_id FROM number_destinations WHERE destination_id = $1)",
            destination_id,
        )

    async def _detach(self, tx: Tx, destination_id: int) -> None:
        await tx.run("DELETE FROM number_destinations WHERE destination_id = $1", destination_id)


class PgSources(PgNamedRows[Source], Sources[Tx]):
    async def _users(self, tx: Tx, source_id: int) -> builtins.list[str]:
        return await numbers_using(tx, "source_id = $1", source_id)
