"""PostgreSQL repository for tracking numbers and the per-INVITE lookup (I/O).

Same tables as SQLite: destination lists in `number_destinations`, source
and trunk referenced by id. A number is read with its source name, trunk
name and both destination lists in ONE statement (array sub-selects), and
`lookup` returns the whole route in one statement too (JSON sub-selects),
so each is one round trip and one snapshot. The round-robin cursor is one
`UPDATE ... RETURNING`: atomic across connections and nodes. The rules and
messages are `pbx.store.rows.Numbers`; this class holds the statements.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg

from pbx.errors import NotFoundError
from pbx.store.base import Destination, RouteInfo, Source, TrackingNumber, Trunk
from pbx.store.postgres.db import Db, Tx, insert_sql, key_clause, update_sql
from pbx.store.rows import Numbers, build, columns_of, listed_once, no_such

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


class PgNumbers(Numbers[Tx]):
    _db: Db

    async def _get(self, tx: Tx, number_or_id: str | int) -> TrackingNumber | None:
        where, params = key_clause(number_or_id, name_col="number")
        row = await tx.one(f"{_SELECT} WHERE n.{where}", *params)
        return None if row is None else _number(row)

    async def _find_id(self, tx: Tx, table: str, name: str) -> int | None:
        found = await tx.value(f"SELECT id FROM {table} WHERE name = $1", name)
        return None if found is None else int(found)

    async def _prompt_exists(self, tx: Tx, name: str) -> bool:
        return await tx.value("SELECT 1 FROM prompts WHERE name = $1", name) is not None

    async def _row_values(self, tx: Tx, number: TrackingNumber) -> list[Any]:
        source_id = await self._id_of(tx, "sources", "source", number.source)
        refs = {"source_id": source_id, "trunk_id": await self._trunk_id(tx, number)}
        await self._check_prompts(tx, number)
        return [refs[c] if c in refs else getattr(number, c) for c in _NUM_COLS]

    async def _insert(self, tx: Tx, number: TrackingNumber) -> int:
        values = await self._row_values(tx, number)
        number_id: int = await tx.value(insert_sql("numbers", _NUM_COLS), *values)
        return number_id

    async def _rewrite(self, tx: Tx, new: TrackingNumber) -> None:
        values = await self._row_values(tx, new)
        await tx.run(update_sql("numbers", _NUM_COLS), *values, new.id)

    async def _dest_ids(self, tx: Tx, number: str, names: Sequence[str]) -> list[int]:
        listed_once(number, names)
        rows = await tx.all(
            "SELECT name, id FROM destinations WHERE name = ANY($1::text[])", list(names)
        )
        ids = {r["name"]: r["id"] for r in rows}
        for name in names:
            if name not in ids:
                raise no_such("destination", name)
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

    async def _list(self, source: str | None) -> builtins.list[TrackingNumber]:
        if source is None:
            rows = await self._db.all(f"{_SELECT} ORDER BY n.number")
        else:
            rows = await self._db.all(f"{_SELECT} WHERE s.name = $1 ORDER BY n.number", source)
        return [_number(r) for r in rows]

    async def _delete(self, tx: Tx, number_id: int) -> None:
        await tx.run("DELETE FROM numbers WHERE id = $1", number_id)

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

    async def _lookup(self, e164: str) -> RouteInfo | None:
        row = await self._db.one(_LOOKUP, e164)
        return None if row is None else _route(row)
