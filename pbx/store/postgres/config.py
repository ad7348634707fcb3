"""PostgreSQL repositories for configuration: trunks, destinations, sources (I/O).

Same rules and messages as the SQLite ones (`pbx.store.base`). Every write
runs in `Db.write()` under the provisioning lock; a trunk is read with its
allow list in one statement (an array sub-select).
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Generic, Protocol, TypeVar

from pbx.errors import ConflictError, NotFoundError
from pbx.store.base import Destination, Source, Trunk
from pbx.store.postgres.cache import PgConfigCache, cached
from pbx.store.postgres.db import Db, Tx, insert_sql, key_clause, update_sql, values_of
from pbx.store.rows import build, check_changes, columns_of, default_allow, quote_list

_TRUNK_COLS = columns_of(Trunk, exclude=("allow",))
_TRUNK_SELECT = (
    "SELECT t.*, ARRAY(SELECT a.cidr FROM trunk_allow a WHERE a.trunk_id = t.id "
    "ORDER BY a.position)::text[] AS allow FROM trunks t"
)


class NamedRow(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=NamedRow)


async def numbers_using(tx: Tx, where: str, *args: Any) -> list[str]:
    rows = await tx.all(f"SELECT number FROM numbers WHERE {where} ORDER BY number", *args)
    return [r["number"] for r in rows]


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
        row = await tx.one(f"SELECT * FROM {self._table} WHERE {where}", *params)
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
            await tx.run(insert_sql(self._table, self._cols, ""), *values_of(row, self._cols))
            return await self._need(tx, row.name)

    async def _read(self, name_or_id: str | int) -> R | None:
        async with self._db.read() as tx:
            return await self._get(tx, name_or_id)

    async def _all(self) -> list[R]:
        rows = await self._db.all(f"SELECT * FROM {self._table} ORDER BY {self._order}")
        return [build(self._kind, r) for r in rows]

    async def _update(self, name: str, changes: Mapping[str, object]) -> R:
        check_changes(self._noun, self._kind, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, name)
            new = replace(current, **changes)  # type: ignore[type-var]
            if new.name != name:
                await self._free_name(tx, new.name)
                await self._renaming(tx, name)
            sql = update_sql(self._table, self._cols)
            await tx.run(sql, *values_of(new, self._cols), current.id)
            return await self._need(tx, new.name)

    async def _renaming(self, tx: Tx, old: str) -> None:
        """Refuse a rename that would break a reference (none by default)."""


class PgTrunks:
    def __init__(self, db: Db, cache: PgConfigCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def _get(self, tx: Tx, name_or_id: str | int) -> Trunk | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"{_TRUNK_SELECT} WHERE t.{where}", *params)
        return None if row is None else build(Trunk, row, allow=tuple(row["allow"]))

    async def _need(self, tx: Tx, name: str) -> Trunk:
        trunk = await self._get(tx, name)
        if trunk is None:
            raise NotFoundError(f"no trunk named '{name}'")
        return trunk

    async def _write_allow(self, tx: Tx, trunk_id: int, allow: tuple[str, ...]) -> None:
        await tx.run("DELETE FROM trunk_allow WHERE trunk_id = $1", trunk_id)
        await tx.run(
            "INSERT INTO trunk_allow (trunk_id, position, cidr) "
            "SELECT $1, ord - 1, cidr FROM unnest($2::text[]) WITH ORDINALITY AS a(cidr, ord)",
            trunk_id,
            list(allow),
        )

    async def add(self, trunk: Trunk) -> Trunk:
        async with self._db.write() as tx:
            if await self._get(tx, trunk.name) is not None:
                raise ConflictError(f"trunk '{trunk.name}' already exists")
            trunk_id = await tx.value(
                insert_sql("trunks", _TRUNK_COLS), *values_of(trunk, _TRUNK_COLS)
            )
            await self._write_allow(tx, trunk_id, trunk.allow or default_allow(trunk.host))
            return await self._need(tx, trunk.name)

    async def get(self, name_or_id: str | int) -> Trunk | None:
        async with self._db.read() as tx:
            return await self._get(tx, name_or_id)

    async def list(self) -> list[Trunk]:
        """Every trunk by name (cached: read per INVITE)."""
        return list(await cached(self._cache, ("trunks",), self._list))

    async def _list(self) -> builtins.list[Trunk]:
        rows = await self._db.all(f"{_TRUNK_SELECT} ORDER BY t.name")
        return [build(Trunk, r, allow=tuple(r["allow"])) for r in rows]

    async def update(self, name: str, /, **changes: object) -> Trunk:
        check_changes("trunk", Trunk, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, name)
            new = replace(current, **changes)  # type: ignore[arg-type]
            if new.name != name and await self._get(tx, new.name) is not None:
                raise ConflictError(f"trunk '{new.name}' already exists")
            sql = update_sql("trunks", _TRUNK_COLS)
            await tx.run(sql, *values_of(new, _TRUNK_COLS), current.id)
            if "allow" in changes:
                await self._write_allow(tx, current.id, new.allow)
            return await self._need(tx, new.name)

    async def remove(self, name: str, *, force: bool = False) -> None:
        async with self._db.write() as tx:
            trunk = await self._need(tx, name)
            users = await numbers_using(tx, "trunk_id = $1", trunk.id)
            if users and not force:
                raise ConflictError(
                    f"trunk '{name}' is used by {quote_list(users)}; "
                    "move those numbers to another trunk first, or force to detach them"
                )
            await tx.run("UPDATE numbers SET trunk_id = NULL WHERE trunk_id = $1", trunk.id)
            await tx.run("DELETE FROM trunks WHERE id = $1", trunk.id)


class PgDestinations(NamedRows[Destination]):
    def __init__(self, db: Db) -> None:
        super().__init__(db, "destinations", Destination, "destination")

    async def add(self, destination: Destination) -> Destination:
        return await self._add(destination)

    async def get(self, name_or_id: str | int) -> Destination | None:
        return await self._read(name_or_id)

    async def list(self) -> list[Destination]:
        return await self._all()

    async def update(self, name: str, /, **changes: object) -> Destination:
        return await self._update(name, changes)

    async def remove(self, name: str, *, force: bool = False) -> None:
        async with self._db.write() as tx:
            dest = await self._need(tx, name)
            users = await numbers_using(
                tx,
                "id IN (SELECT number_id FROM number_destinations WHERE destination_id = $1)",
                dest.id,
            )
            if users and not force:
                raise ConflictError(
                    f"destination '{name}' is used by {quote_list(users)}; "
                    "change those numbers first, or force to drop it from them"
                )
            await tx.run("DELETE FROM number_destinations WHERE destination_id = $1", dest.id)
            await tx.run("DELETE FROM destinations WHERE id = $1", dest.id)


class PgSources(NamedRows[Source]):
    def __init__(self, db: Db, cache: PgConfigCache | None = None) -> None:
        super().__init__(db, "sources", Source, "source", order="position, name")
        self._cache = cache

    async def add(self, source: Source) -> Source:
        return await self._add(source)

    async def get(self, name_or_id: str | int) -> Source | None:
        """A source by name or id (cached: read when each call ends)."""
        return await cached(self._cache, ("source", name_or_id), lambda: self._read(name_or_id))

    async def list(self) -> list[Source]:
        """Every source (cached: read per visitor API request)."""
        return list(await cached(self._cache, ("sources",), self._all))

    async def update(self, name: str, /, **changes: object) -> Source:
        return await self._update(name, changes)

    async def remove(self, name: str) -> None:
        async with self._db.write() as tx:
            source = await self._need(tx, name)
            users = await numbers_using(tx, "source_id = $1", source.id)
            if users:
                raise ConflictError(
                    f"source '{name}' still has numbers {quote_list(users)}; remove them first"
                )
            await tx.run("DELETE FROM sources WHERE id = $1", source.id)
