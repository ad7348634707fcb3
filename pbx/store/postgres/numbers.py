"""PostgreSQL repository for tracking numbers and the per-INVITE lookup (I/O).

Same tables as SQLite: destination lists in `number_destinations`, source
and trunk referenced by id. A number is read with its source name, trunk
name and both destination lists in ONE statement (array sub-selects), and
`lookup` returns the whole route in one statement too (JSON sub-selects),
so each is one round trip and one snapshot. The round-robin cursor is one
`UPDATE ... RETURNING`: atomic across connections and nodes.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import asyncpg

from pbx.errors import ConflictError, InputError, NotFoundError
from pbx.store.base import PROMPT_FIELDS, Destination, RouteInfo, Source, TrackingNumber, Trunk
from pbx.store.postgres.cache import PgConfigCache, cached
from pbx.store.postgres.db import Db, Tx, insert_sql, key_clause, update_sql
from pbx.store.rows import build, check_changes, columns_of

_REFS = ("source", "destinations", "trunk", "after_hours")
_NUM_COLS = [*columns_of(TrackingNumber, exclude=_REFS), "source_id", "trunk_id"]


def _names(after_hours: bool) -> str:
    return (
        "ARRAY(SELECT d.name FROM number_destinations nd "
        "JOIN destinations d ON d.id = nd.destination_id "
        f"WHERE nd.number_id = n.id AND {'' if after_hours else 'NOT '}nd.after_hours "
        "ORDER BY nd.position)::text[]"
    )


_SELECT = (
    f"SELECT n.*, s.name AS source, t.name AS trunk, {_names(False)} AS destinations, "
    f"{_names(True)} AS after_hours FROM numbers n "
    "JOIN sources s ON s.id = n.source_id LEFT JOIN trunks t ON t.id = n.trunk_id"
)
_LOOKUP = (
    f"SELECT n.*, s.name AS source, t.name AS trunk, {_names(False)} AS destinations, "
    f"{_names(True)} AS after_hours, to_json(s) AS source_row, "
    "CASE WHEN t.id IS NULL THEN NULL ELSE to_jsonb(t) || jsonb_build_object('allow', "
    "ARRAY(SELECT a.cidr FROM trunk_allow a WHERE a.trunk_id = t.id ORDER BY a.position)) "
    "END AS trunk_row, "
    "(SELECT json_agg(json_build_object('id', d.id, 'name', d.name, 'target', d.target, "
    "'kind', d.kind, 'after_hours', nd.after_hours) ORDER BY nd.after_hours, nd.position) "
    "FROM number_destinations nd JOIN destinations d ON d.id = nd.destination_id "
    "WHERE nd.number_id = n.id) AS destination_rows "
    "FROM numbers n JOIN sources s ON s.id = n.source_id LEFT JOIN trunks t ON t.id = n.trunk_id "
    "WHERE n.number = $1"
)


def _number(row: asyncpg.Record) -> TrackingNumber:
    return build(
        TrackingNumber,
        row,
        destinations=tuple(row["destinations"]),
        after_hours=tuple(row["after_hours"]),
    )


def _route(row: asyncpg.Record) -> RouteInfo:
    dests: list[dict[str, Any]] = json.loads(row["destination_rows"] or "[]")
    trunk_row: Mapping[str, Any] | None = (
        None if row["trunk_row"] is None else json.loads(row["trunk_row"])
    )
    trunk = None
    if trunk_row is not None:
        trunk = build(Trunk, trunk_row, allow=tuple(trunk_row["allow"]))
    return RouteInfo(
        number=_number(row),
        source=build(Source, json.loads(row["source_row"])),
        destinations=tuple(build(Destination, d) for d in dests if not d["after_hours"]),
        after_hours=tuple(build(Destination, d) for d in dests if d["after_hours"]),
        trunk=trunk,
    )


class PgNumbers:
    def __init__(self, db: Db, cache: PgConfigCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def _get(self, tx: Tx, number_or_id: str | int) -> TrackingNumber | None:
        where, params = key_clause(number_or_id, name_col="number")
        row = await tx.one(f"{_SELECT} WHERE n.{where}", *params)
        return None if row is None else _number(row)

    async def _need(self, tx: Tx, number: str) -> TrackingNumber:
        found = await self._get(tx, number)
        if found is None:
            raise NotFoundError(f"no tracking number {number}")
        return found

    async def _id_of(self, tx: Tx, table: str, kind: str, name: str) -> int:
        found = await tx.value(f"SELECT id FROM {table} WHERE name = $1", name)
        if found is None:
            raise NotFoundError(f"no {kind} named '{name}'")
        return int(found)

    async def _row_values(self, tx: Tx, number: TrackingNumber) -> list[Any]:
        source_id = await self._id_of(tx, "sources", "source", number.source)
        trunk = number.trunk
        trunk_id = None if trunk is None else await self._id_of(tx, "trunks", "trunk", trunk)
        refs = {"source_id": source_id, "trunk_id": trunk_id}
        for field in PROMPT_FIELDS:
            name = getattr(number, field)
            if (
                name is not None
                and await tx.value("SELECT 1 FROM prompts WHERE name = $1", name) is None
            ):
                raise NotFoundError(f"no prompt named '{name}' (pbx prompts add {name} ...)")
        return [refs[c] if c in refs else getattr(number, c) for c in _NUM_COLS]

    async def _dest_ids(self, tx: Tx, number: str, names: Sequence[str]) -> list[int]:
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise InputError(f"destination '{dup}' is listed twice for {number}")
        rows = await tx.all(
            "SELECT name, id FROM destinations WHERE name = ANY($1::text[])", list(names)
        )
        ids = {r["name"]: r["id"] for r in rows}
        for name in names:
            if name not in ids:
                raise NotFoundError(f"no destination named '{name}'")
        return [ids[n] for n in names]

    async def _write_lists(self, tx: Tx, number_id: int, number: TrackingNumber) -> None:
        await tx.run("DELETE FROM number_destinations WHERE number_id = $1", number_id)
        for after, names in ((False, number.destinations), (True, number.after_hours)):
            ids = await self._dest_ids(tx, number.number, names)
            if ids:
                await tx.run(
                    "INSERT INTO number_destinations "
                    "(number_id, after_hours, position, destination_id) "
                    "SELECT $1, $2, ord - 1, id FROM unnest($3::bigint[]) "
                    "WITH ORDINALITY AS x(id, ord)",
                    number_id,
                    after,
                    ids,
                )

    async def add(self, number: TrackingNumber) -> TrackingNumber:
        async with self._db.write() as tx:
            if await self._get(tx, number.number) is not None:
                raise ConflictError(f"tracking number {number.number} already exists")
            values = await self._row_values(tx, number)
            number_id = await tx.value(insert_sql("numbers", _NUM_COLS), *values)
            await self._write_lists(tx, number_id, number)
            return await self._need(tx, number.number)

    async def get(self, number_or_id: str | int) -> TrackingNumber | None:
        async with self._db.read() as tx:
            return await self._get(tx, number_or_id)

    async def list(self, *, source: str | None = None) -> list[TrackingNumber]:
        """One source's numbers are cached (its pool, read per new website visit)."""
        if source is None:
            return await self._list(None)
        return list(await cached(self._cache, ("numbers", source), lambda: self._list(source)))

    async def _list(self, source: str | None) -> builtins.list[TrackingNumber]:
        if source is None:
            rows = await self._db.all(f"{_SELECT} ORDER BY n.number")
        else:
            rows = await self._db.all(f"{_SELECT} WHERE s.name = $1 ORDER BY n.number", source)
        return [_number(r) for r in rows]

    async def update(self, number: str, /, **changes: object) -> TrackingNumber:
        check_changes("number", TrackingNumber, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, number)
            new = replace(current, **changes)  # type: ignore[arg-type]
            if new.number != number and await self._get(tx, new.number) is not None:
                raise ConflictError(f"tracking number {new.number} already exists")
            values = await self._row_values(tx, new)
            await tx.run(update_sql("numbers", _NUM_COLS), *values, current.id)
            if "destinations" in changes or "after_hours" in changes:
                await self._write_lists(tx, current.id, new)
            return await self._need(tx, new.number)

    async def remove(self, number: str) -> None:
        async with self._db.write() as tx:
            found = await self._need(tx, number)
            await tx.run("DELETE FROM numbers WHERE id = $1", found.id)

    async def advance_cursor(self, number: str) -> int:
        cursor = await self._db.one(
            "UPDATE numbers SET rr_cursor = rr_cursor + 1 WHERE number = $1 "
            "RETURNING rr_cursor - 1 AS cursor, "
            "(SELECT name FROM sources WHERE sources.id = numbers.source_id) AS source",
            number,
        )
        if cursor is None:
            raise NotFoundError(f"no tracking number {number}")
        value: int = cursor["cursor"]
        self._patch_cursor(number, value + 1, str(cursor["source"]))
        return value

    def _patch_cursor(self, number: str, rr_cursor: int, source: str) -> None:
        """Keep the cached route's and the source's cached list's cursor current (the
        cursor does not bump the version)."""
        if self._cache is None:
            return
        route = self._cache.peek(("lookup", number))
        if isinstance(route, RouteInfo) and route.number.rr_cursor < rr_cursor:
            patched = replace(route.number, rr_cursor=rr_cursor)
            self._cache.replace(("lookup", number), replace(route, number=patched))
        pool = self._cache.peek(("numbers", source))
        if isinstance(pool, list):
            fresh = [replace(n, rr_cursor=rr_cursor) if n.number == number
                     and n.rr_cursor < rr_cursor else n for n in pool]  # fmt: skip
            self._cache.replace(("numbers", source), fresh)

    async def lookup(self, e164: str) -> RouteInfo | None:
        """The route of one INVITE (cached: read per INVITE)."""
        return await cached(self._cache, ("lookup", e164), lambda: self._lookup(e164))

    async def _lookup(self, e164: str) -> RouteInfo | None:
        row = await self._db.one(_LOOKUP, e164)
        return None if row is None else _route(row)
