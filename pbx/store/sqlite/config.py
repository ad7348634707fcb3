"""SQLite repositories for configuration: trunks, destinations, sources (I/O).

Tracking numbers live in `sqlite_numbers.py`; blocks and extensions in
`sqlite_local.py`. Rules (removal, conflicts) are documented in `base.py`.
"""

from __future__ import annotations

import builtins
from dataclasses import replace
from typing import Any

from pbx.errors import ConflictError, NotFoundError
from pbx.store.base import Destination, Source, Trunk
from pbx.store.rows import build, check_changes, columns_of, default_allow, quote_list
from pbx.store.sqlite.cache import ConfigCache, cached
from pbx.store.sqlite.db import Db, Tx, insert_sql, update_sql, values_of
from pbx.store.sqlite.named import NamedRows, key_clause

_TRUNK_COLS = columns_of(Trunk, exclude=("allow",))
_DEST_COLS = columns_of(Destination)
_SOURCE_COLS = columns_of(Source)


async def numbers_using(tx: Tx, where: str, params: tuple[Any, ...]) -> list[str]:
    rows = await tx.all(f"SELECT number FROM numbers WHERE {where} ORDER BY number", params)
    return [r["number"] for r in rows]


class SqliteTrunks:
    def __init__(self, db: Db, cache: ConfigCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def _get(self, tx: Tx, name_or_id: str | int) -> Trunk | None:
        where, params = key_clause(name_or_id)
        row = await tx.one(f"SELECT * FROM trunks WHERE {where}", params)
        if row is None:
            return None
        allow = await tx.all(
            "SELECT cidr FROM trunk_allow WHERE trunk_id = ? ORDER BY position", (row["id"],)
        )
        return build(Trunk, row, allow=tuple(a["cidr"] for a in allow))

    async def _need(self, tx: Tx, name: str) -> Trunk:
        trunk = await self._get(tx, name)
        if trunk is None:
            raise NotFoundError(f"no trunk named '{name}'")
        return trunk

    async def _write_allow(self, tx: Tx, trunk_id: int, allow: tuple[str, ...]) -> None:
        await tx.run("DELETE FROM trunk_allow WHERE trunk_id = ?", (trunk_id,))
        await tx.many(
            "INSERT INTO trunk_allow (trunk_id, position, cidr) VALUES (?, ?, ?)",
            [(trunk_id, i, cidr) for i, cidr in enumerate(allow)],
        )

    async def add(self, trunk: Trunk) -> Trunk:
        async with self._db.write() as tx:
            if await self._get(tx, trunk.name) is not None:
                raise ConflictError(f"trunk '{trunk.name}' already exists")
            trunk_id = await tx.insert(
                insert_sql("trunks", _TRUNK_COLS), values_of(trunk, _TRUNK_COLS)
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
        async with self._db.read() as tx:
            rows = await tx.all("SELECT * FROM trunks ORDER BY name")
            allow: dict[int, list[str]] = {}
            for a in await tx.all("SELECT * FROM trunk_allow ORDER BY trunk_id, position"):
                allow.setdefault(a["trunk_id"], []).append(a["cidr"])
        return [build(Trunk, r, allow=tuple(allow.get(r["id"], ()))) for r in rows]

    async def update(self, name: str, /, **changes: object) -> Trunk:
        check_changes("trunk", Trunk, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, name)
            new = replace(current, **changes)  # type: ignore[arg-type]
            if new.name != name and await self._get(tx, new.name) is not None:
                raise ConflictError(f"trunk '{new.name}' already exists")
            params = values_of(new, _TRUNK_COLS) | {"id": current.id}
            await tx.run(update_sql("trunks", _TRUNK_COLS), params)
            if "allow" in changes:
                await self._write_allow(tx, current.id, new.allow)
            return await self._need(tx, new.name)

    async def remove(self, name: str, *, force: bool = False) -> None:
        async with self._db.write() as tx:
            trunk = await self._need(tx, name)
            users = await numbers_using(tx, "trunk_id = ?", (trunk.id,))
            if users and not force:
                raise ConflictError(
                    f"trunk '{name}' is used by {quote_list(users)}; "
                    "move those numbers to another trunk first, or use --force to detach them"
                )
            await tx.run("UPDATE numbers SET trunk_id = NULL WHERE trunk_id = ?", (trunk.id,))
            await tx.run("DELETE FROM trunks WHERE id = ?", (trunk.id,))


class SqliteDestinations(NamedRows[Destination]):
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
                "id IN (SELECT number_id FROM number_destinations WHERE destination_id = ?)",
                (dest.id,),
            )
            if users and not force:
                raise ConflictError(
                    f"destination '{name}' is used by {quote_list(users)}; "
                    "change those numbers first, or use --force to drop it from them"
                )
            await tx.run("DELETE FROM number_destinations WHERE destination_id = ?", (dest.id,))
            await tx.run("DELETE FROM destinations WHERE id = ?", (dest.id,))


class SqliteSources(NamedRows[Source]):
    def __init__(self, db: Db, cache: ConfigCache | None = None) -> None:
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
            users = await numbers_using(tx, "source_id = ?", (source.id,))
            if users:
                raise ConflictError(
                    f"source '{name}' still has numbers {quote_list(users)}; remove them first"
                )
            await tx.run("DELETE FROM sources WHERE id = ?", (source.id,))
