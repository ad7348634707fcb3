"""SQLite repositories for caller blocks, local extensions and prompts (I/O).

The rules and messages are `pbx.store.rows` (`Blocks`, `Extensions`,
`Prompts`); these classes hold the statements. `set_binding` replaces a
contact's binding.
"""

from __future__ import annotations

import builtins
from contextlib import AbstractAsyncContextManager

from pbx.store.base import PROMPT_FIELDS, Binding, Block, Extension, StoredPrompt
from pbx.store.rows import Blocks, Extensions, Prompts, build
from pbx.store.sqlite.db import Db, Tx
from pbx.store.sqlite.named import SqliteNamedRows


class SqliteBlocks(Blocks[Tx]):
    _db: Db

    async def _number_known(self, tx: Tx, number: str) -> bool:
        return await tx.one("SELECT 1 FROM numbers WHERE number = ?", (number,)) is not None

    async def _blocked(self, tx: Tx, pattern: str, number: str | None) -> bool:
        found = await tx.one(
            "SELECT 1 FROM blocks WHERE pattern = ? AND number IS ?", (pattern, number)
        )
        return found is not None

    async def _insert(self, tx: Tx, block: Block) -> int:
        return await tx.insert(
            "INSERT INTO blocks (pattern, number) VALUES (?, ?)", (block.pattern, block.number)
        )

    async def _unblock(self, tx: Tx, pattern: str, number: str | None) -> int:
        return await tx.run(
            "DELETE FROM blocks WHERE pattern = ? AND number IS ?", (pattern, number)
        )

    async def list(self, *, number: str | None = None) -> builtins.list[Block]:
        where, params = ("WHERE number = ?", (number,)) if number is not None else ("", ())
        async with self._db.read() as tx:
            rows = await tx.all(f"SELECT * FROM blocks {where} ORDER BY pattern, number", params)
        return [build(Block, r) for r in rows]

    async def _matching(self, caller: str, number: str) -> builtins.list[Block]:
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT * FROM blocks WHERE (number IS NULL OR number = ?) "
                "AND substr(?, 1, length(pattern)) = pattern ORDER BY length(pattern) DESC",
                (number, caller),
            )
        return [build(Block, r) for r in rows]


class SqliteExtensions(SqliteNamedRows[Extension], Extensions[Tx]):
    async def _pointing(self, tx: Tx, name: str) -> builtins.list[str]:
        users = await tx.all(
            "SELECT name FROM destinations WHERE kind = 'extension' AND target = ? ORDER BY name",
            (f"ext:{name}",),
        )
        return [u["name"] for u in users]

    def _binding_write(self) -> AbstractAsyncContextManager[Tx]:
        return self._db.write()

    async def _unbind(self, tx: Tx, extension_id: int, contact: str) -> int:
        return await tx.run(
            "DELETE FROM extension_bindings WHERE extension_id = ? AND contact = ?",
            (extension_id, contact),
        )

    async def bindings(self, name: str, now: str | None = None) -> builtins.list[Binding]:
        sql = (
            "SELECT e.name AS extension, b.* FROM extension_bindings b "
            "JOIN extensions e ON e.id = b.extension_id WHERE e.name = ?"
        )
        params: tuple[str, ...] = (name,)
        if now is not None:
            sql += " AND b.expires_at > ?"
            params = (name, now)
        async with self._db.read() as tx:
            rows = await tx.all(sql + " ORDER BY b.expires_at DESC, b.contact", params)
        return [build(Binding, r) for r in rows]

    async def set_binding(self, binding: Binding) -> None:
        async with self._db.write() as tx:
            ext = await self._need(tx, binding.extension)
            await tx.run(
                "INSERT INTO extension_bindings "
                "(extension_id, contact, expires_at, call_id, cseq, received) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (extension_id, contact) DO UPDATE SET "
                "expires_at = excluded.expires_at, call_id = excluded.call_id, "
                "cseq = excluded.cseq, received = excluded.received",
                (
                    ext.id,
                    binding.contact,
                    binding.expires_at,
                    binding.call_id,
                    binding.cseq,
                    binding.received,
                ),
            )


_PROMPT_USERS = "disclosure = ? OR whisper = ? OR voicemail = ?"


class SqlitePrompts(SqliteNamedRows[StoredPrompt], Prompts[Tx]):
    """Prompts with their PCM as a blob."""

    async def users(self, name: str) -> builtins.list[str]:
        async with self._db.read() as tx:
            rows = await tx.all(
                f"SELECT number FROM numbers WHERE {_PROMPT_USERS} ORDER BY number", (name,) * 3
            )
        return [r["number"] for r in rows]

    async def _used_by(self, tx: Tx, name: str) -> builtins.list[str]:
        rows = await tx.all(
            f"SELECT number FROM numbers WHERE {_PROMPT_USERS} ORDER BY number", (name,) * 3
        )
        rows += await tx.all(
            "SELECT 'source ' || name AS number FROM sources WHERE disclosure = ? "
            "ORDER BY name", (name,),
        )  # fmt: skip
        return [r["number"] for r in rows]

    async def _clear(self, tx: Tx, name: str) -> None:
        for field in PROMPT_FIELDS:
            extra = ", record = 0" if field == "disclosure" else ""
            await tx.run(f"UPDATE numbers SET {field} = NULL{extra} WHERE {field} = ?", (name,))
        await tx.run(
            "UPDATE sources SET disclosure = NULL, record = 0 WHERE disclosure = ?", (name,)
        )
