"""SQLite repository for tracking numbers and the per-INVITE lookup (I/O).

A number's destination lists live in `number_destinations` (business hours
and after hours, each ordered by position); its source and trunk are
references by id, shown by name in `TrackingNumber`. The rules and messages
are `pbx.store.rows.Numbers`; this class holds the statements.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from pbx.errors import NotFoundError
from pbx.store.base import Destination, RouteInfo, Source, TrackingNumber, Trunk
from pbx.store.rows import Numbers, build, columns_of, listed_once
from pbx.store.sqlite.db import Db, Tx, insert_sql, update_sql
from pbx.store.sqlite.named import key_clause

_REFS = ("source", "destinations", "trunk", "after_hours")
_NUM_COLS = [*columns_of(TrackingNumber, exclude=_REFS), "source_id", "trunk_id"]
_SELECT = (
    "SELECT n.*, s.name AS source, t.name AS trunk FROM numbers n "
    "JOIN sources s ON s.id = n.source_id LEFT JOIN trunks t ON t.id = n.trunk_id"
)
_DEST_NAMES = (
    "SELECT nd.number_id, nd.after_hours, d.name FROM number_destinations nd "
    "JOIN destinations d ON d.id = nd.destination_id"
)


def _lookup_sql() -> str:
    cols = [f"n.{c} AS n_{c}" for c in ["id", *_NUM_COLS]]
    cols += [f"s.{c} AS s_{c}" for c in ["id", *columns_of(Source)]]
    cols += [f"t.{c} AS t_{c}" for c in ["id", *columns_of(Trunk, exclude=("allow",))]]
    cols.append(
        "(SELECT json_group_array(cidr) FROM (SELECT cidr FROM trunk_allow "
        "WHERE trunk_id = n.trunk_id ORDER BY position)) AS t_allow"
    )
    return (
        f"SELECT {', '.join(cols)} FROM numbers n JOIN sources s ON s.id = n.source_id "
        "LEFT JOIN trunks t ON t.id = n.trunk_id WHERE n.number = ?"
    )


_LOOKUP = _lookup_sql()


def _with_lists(
    row: Mapping[str, Any] | sqlite3.Row, dests: Sequence[sqlite3.Row]
) -> TrackingNumber:
    business = tuple(d["name"] for d in dests if not d["after_hours"])  # in position order
    after = tuple(d["name"] for d in dests if d["after_hours"])
    return build(TrackingNumber, row, destinations=business, after_hours=after)


class SqliteNumbers(Numbers[Tx]):
    _db: Db

    async def _get(self, tx: Tx, number_or_id: str | int) -> TrackingNumber | None:
        where, params = key_clause(number_or_id, name_col="number")
        row = await tx.one(f"{_SELECT} WHERE n.{where}", params)
        if row is None:
            return None
        dests = await tx.all(
            f"{_DEST_NAMES} WHERE nd.number_id = ? ORDER BY nd.after_hours, nd.position",
            (row["id"],),
        )
        return _with_lists(row, dests)

    async def _find_id(self, tx: Tx, table: str, name: str) -> int | None:
        row = await tx.one(f"SELECT id FROM {table} WHERE name = ?", (name,))
        return None if row is None else int(row["id"])

    async def _prompt_exists(self, tx: Tx, name: str) -> bool:
        return await tx.one("SELECT 1 FROM prompts WHERE name = ?", (name,)) is not None

    async def _row_params(self, tx: Tx, number: TrackingNumber) -> dict[str, Any]:
        params = {c: getattr(number, c) for c in _NUM_COLS if c not in ("source_id", "trunk_id")}
        params["source_id"] = await self._id_of(tx, "sources", "source", number.source)
        await self._check_prompts(tx, number)
        params["trunk_id"] = await self._trunk_id(tx, number)
        return params

    async def _insert(self, tx: Tx, number: TrackingNumber) -> int:
        params = await self._row_params(tx, number)
        return await tx.insert(insert_sql("numbers", _NUM_COLS), params)

    async def _rewrite(self, tx: Tx, new: TrackingNumber) -> None:
        params = await self._row_params(tx, new) | {"id": new.id}
        await tx.run(update_sql("numbers", _NUM_COLS), params)

    async def _write_lists(self, tx: Tx, number_id: int, number: TrackingNumber) -> None:
        await tx.run("DELETE FROM number_destinations WHERE number_id = ?", (number_id,))
        rows: list[tuple[int, int, int, int]] = []
        for after, names in ((0, number.destinations), (1, number.after_hours)):
            listed_once(number.number, names)
            for position, name in enumerate(names):
                dest_id = await self._id_of(tx, "destinations", "destination", name)
                rows.append((number_id, after, position, dest_id))
        await tx.many(
            "INSERT INTO number_destinations (number_id, after_hours, position, destination_id) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )

    async def _list(self, source: str | None) -> builtins.list[TrackingNumber]:
        where, params = ("WHERE s.name = ?", (source,)) if source is not None else ("", ())
        async with self._db.read() as tx:
            rows = await tx.all(f"{_SELECT} {where} ORDER BY n.number", params)
            dests = await tx.all(f"{_DEST_NAMES} ORDER BY nd.after_hours, nd.position")
        by_number: dict[int, list[sqlite3.Row]] = {}
        for d in dests:
            by_number.setdefault(d["number_id"], []).append(d)
        return [_with_lists(r, by_number.get(r["id"], [])) for r in rows]

    async def _delete(self, tx: Tx, number_id: int) -> None:
        await tx.run("DELETE FROM numbers WHERE id = ?", (number_id,))

    async def advance_cursor(self, number: str) -> int:
        async with self._db.single() as tx:
            row = await tx.one(
                "UPDATE numbers SET rr_cursor = rr_cursor + 1 WHERE number = ? "
                "RETURNING rr_cursor - 1 AS cursor, "
                "(SELECT name FROM sources WHERE sources.id = numbers.source_id) AS source",
                (number,),
            )
            if row is None:
                raise NotFoundError(f"no tracking number {number}")
            cursor: int = row["cursor"]
            source: str = row["source"]
        self._patch_cursor(number, cursor + 1, source)
        return cursor

    async def _lookup(self, e164: str) -> RouteInfo | None:
        """Two queries: number + source + trunk (+ allow list) in one row, then destinations."""
        async with self._db.read() as tx:
            row = await tx.one(_LOOKUP, (e164,))
            if row is None:
                return None
            dests = await tx.all(
                "SELECT nd.number_id, nd.after_hours, d.* FROM number_destinations nd "
                "JOIN destinations d ON d.id = nd.destination_id WHERE nd.number_id = ? "
                "ORDER BY nd.after_hours, nd.position",
                (row["n_id"],),
            )
        parts: dict[str, dict[str, Any]] = {"n": {}, "s": {}, "t": {}}
        for key in row.keys():  # noqa: SIM118 - sqlite3.Row iterates values, not keys
            parts[key[0]][key[2:]] = row[key]
        parts["n"] |= {"source": parts["s"]["name"], "trunk": parts["t"]["name"]}
        trunk = None
        if parts["t"]["id"] is not None:
            trunk = build(Trunk, parts["t"], allow=tuple(json.loads(parts["t"]["allow"])))
        return RouteInfo(
            number=_with_lists(parts["n"], dests),
            source=build(Source, parts["s"]),
            destinations=tuple(build(Destination, d) for d in dests if not d["after_hours"]),
            after_hours=tuple(build(Destination, d) for d in dests if d["after_hours"]),
            trunk=trunk,
        )
