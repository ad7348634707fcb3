"""PostgreSQL repositories for caller blocks, local extensions and prompts (I/O).

The rules and messages are `pbx.store.rows` (`Blocks`, `Extensions`,
`Prompts`), as on SQLite; these classes hold the statements. `set_binding`
replaces a contact's binding (one upsert).
"""

from __future__ import annotations

import builtins
from contextlib import AbstractAsyncContextManager

from pbx.store.base import PROMPT_FIELDS, Binding, Block, Extension, StoredPrompt
from pbx.store.postgres.config import PgNamedRows
from pbx.store.postgres.db import Db, Tx
from pbx.store.rows import Blocks, Extensions, Prompts, build, no_such


class PgBlocks(Blocks[Tx]):
    _db: Db

    async def _number_known(self, tx: Tx, number: str) -> bool:
        return await tx.one("SELECT 1 FROM numbers WHERE number = $1", number) is not None

    async def _blocked(self, tx: Tx, pattern: str, number: str | None) -> bool:
        found = await tx.one(
            "SELECT 1 FROM blocks WHERE pattern = $1 AND number IS NOT DISTINCT FROM $2",
            pattern,
            number,
        )
        return found is not None

    async def _insert(self, tx: Tx, block: Block) -> int:
        block_id: int = await tx.value(
            "INSERT INTO blocks (pattern, number) VALUES ($1, $2) RETURNING id",
            block.pattern,
            block.number,
        )
        return block_id

    async def _unblock(self, tx: Tx, pattern: str, number: str | None) -> int:
        return await tx.run(
            "DELETE FROM blocks WHERE pattern = $1 AND number IS NOT DISTINCT FROM $2",
            pattern,
            number,
        )

    async def list(self, *, number: str | None = None) -> builtins.list[Block]:
        # NULLS FIRST: SQLite sorts NULL before any value, PostgreSQL after.
        sql = "SELECT * FROM blocks {} ORDER BY pattern, number NULLS FIRST"
        if number is None:
            rows = await self._db.all(sql.format(""))
        else:
            rows = await self._db.all(sql.format("WHERE number = $1"), number)
        return [build(Block, r) for r in rows]

    async def _matching(self, caller: str, number: str) -> builtins.list[Block]:
        rows = await self._db.all(
            "SELECT * FROM blocks WHERE (number IS NULL OR number = $1) "
            "AND left($2::text, length(pattern)) = pattern ORDER BY length(pattern) DESC",
            number,
            caller,
        )
        return [build(Block, r) for r in rows]


class PgExtensions(PgNamedRows[Extension], Extensions[Tx]):
    async def _pointing(self, tx: Tx, name: str) -> builtins.list[str]:
        users = await tx.all(
            "SELECT name FROM destinations WHERE kind = 'extension' AND target = $1 ORDER BY name",
            f"ext:{name}",
        )
        return [u["name"] for u in users]

    def _binding_write(self) -> AbstractAsyncContextManager[Tx]:
        # Registrations are per-call traffic: outside the provisioning lock.
        return self._db.write(provisioning=False)

    async def _unbind(self, tx: Tx, extension_id: int, contact: str) -> int:
        return await tx.run(
            "DELETE FROM extension_bindings WHERE extension_id = $1 AND contact = $2",
            extension_id,
            contact,
        )

    async def bindings(self, name: str, now: str | None = None) -> builtins.list[Binding]:
        sql = (
            "SELECT e.name AS extension, b.* FROM extension_bindings b "
            "JOIN extensions e ON e.id = b.extension_id WHERE e.name = $1"
        )
        order = " ORDER BY b.expires_at DESC, b.contact"
        if now is None:
            rows = await self._db.all(sql + order, name)
        else:
            rows = await self._db.all(sql + " AND b.expires_at > $2" + order, name, now)
        return [build(Binding, r) for r in rows]

    async def set_binding(self, binding: Binding) -> None:
        """One upsert; an unknown extension inserts nothing and is a NotFoundError."""
        changed = await self._db.run(
            "INSERT INTO extension_bindings "
            "(extension_id, contact, expires_at, call_id, cseq, received) "
            "SELECT id, $2, $3, $4, $5, $6 FROM extensions WHERE name = $1 "
            "ON CONFLICT (extension_id, contact) DO UPDATE SET "
            "expires_at = excluded.expires_at, call_id = excluded.call_id, "
            "cseq = excluded.cseq, received = excluded.received",
            binding.extension,
            binding.contact,
            binding.expires_at,
            binding.call_id,
            binding.cseq,
            binding.received,
        )
        if not changed:
            raise no_such("extension", binding.extension)


_PROMPT_USERS = "SELECT number FROM numbers WHERE disclosure = $1 OR whisper = $1 OR voicemail = $1"


class PgPrompts(PgNamedRows[StoredPrompt], Prompts[Tx]):
    """Prompts with their PCM as bytea."""

    async def users(self, name: str) -> builtins.list[str]:
        rows = await self._db.all(f"{_PROMPT_USERS} ORDER BY number", name)
        return [r["number"] for r in rows]

    async def _used_by(self, tx: Tx, name: str) -> builtins.list[str]:
        rows = await tx.all(f"{_PROMPT_USERS} ORDER BY number", name)
        rows += await tx.all(
            "SELECT 'source ' || name AS number FROM sources WHERE disclosure = $1 "
            "ORDER BY name", name,
        )  # fmt: skip
        return [r["number"] for r in rows]

    async def _clear(self, tx: Tx, name: str) -> None:
        for field in PROMPT_FIELDS:
            extra = ", record = false" if field == "disclosure" else ""
            await tx.run(f"UPDATE numbers SET {field} = NULL{extra} WHERE {field} = $1", name)
        await tx.run(
            "UPDATE sources SET disclosure = NULL, record = false WHERE disclosure = $1", name
        )
