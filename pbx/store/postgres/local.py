"""PostgreSQL repositories for caller blocks and local extensions (I/O).

Same decisions as SQLite: a block pattern matches a caller when it is a
prefix of the caller's number; the registrar, not the store, enforces
`max_contacts`; `set_binding` replaces a contact's binding (one upsert).
"""

from __future__ import annotations

import builtins
from dataclasses import replace

from pbx.errors import ConflictError, NotFoundError
from pbx.store.base import PROMPT_FIELDS, Binding, Block, Extension, StoredPrompt
from pbx.store.postgres.cache import PgConfigCache, cached
from pbx.store.postgres.config import PgNamedRows
from pbx.store.postgres.db import Db, Tx
from pbx.store.rows import build

BlockIndex = dict[str, tuple[Block, ...]]  # pattern -> its blocks, in id order


def _scope(number: str | None) -> str:
    return "everywhere" if number is None else f"for {number}"


class PgBlocks:
    def __init__(self, db: Db, cache: PgConfigCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def add(self, block: Block) -> Block:
        async with self._db.write() as tx:
            if block.number is not None:
                known = await tx.one("SELECT 1 FROM numbers WHERE number = $1", block.number)
                if known is None:
                    raise NotFoundError(f"no tracking number {block.number}")
            found = await tx.one(
                "SELECT 1 FROM blocks WHERE pattern = $1 AND number IS NOT DISTINCT FROM $2",
                block.pattern,
                block.number,
            )
            if found is not None:
                raise ConflictError(f"{block.pattern} is already blocked {_scope(block.number)}")
            block_id = await tx.value(
                "INSERT INTO blocks (pattern, number) VALUES ($1, $2) RETURNING id",
                block.pattern,
                block.number,
            )
        return replace(block, id=block_id)

    async def list(self, *, number: str | None = None) -> list[Block]:
        # NULLS FIRST: SQLite sorts NULL before any value, PostgreSQL after.
        sql = "SELECT * FROM blocks {} ORDER BY pattern, number NULLS FIRST"
        if number is None:
            rows = await self._db.all(sql.format(""))
        else:
            rows = await self._db.all(sql.format("WHERE number = $1"), number)
        return [build(Block, r) for r in rows]

    async def remove(self, pattern: str, number: str | None = None) -> None:
        async with self._db.write() as tx:
            changed = await tx.run(
                "DELETE FROM blocks WHERE pattern = $1 AND number IS NOT DISTINCT FROM $2",
                pattern,
                number,
            )
            if not changed:
                raise NotFoundError(f"{pattern} is not blocked {_scope(number)}")

    async def matching(self, caller: str, number: str) -> builtins.list[Block]:
        """Longest pattern first; with a cache, from an in-memory index of every block."""
        if self._cache is None:
            return await self._matching(caller, number)
        index = await cached(self._cache, ("blocks",), self._index)
        found: list[Block] = []
        for length in range(len(caller), -1, -1):  # every prefix, the whole caller first
            found += [b for b in index.get(caller[:length], ()) if b.number in (None, number)]
        return found

    async def _index(self) -> BlockIndex:
        index: dict[str, list[Block]] = {}
        for block in sorted(await self.list(), key=lambda b: b.id):
            index.setdefault(block.pattern, []).append(block)
        return {pattern: tuple(blocks) for pattern, blocks in index.items()}

    async def _matching(self, caller: str, number: str) -> builtins.list[Block]:
        rows = await self._db.all(
            "SELECT * FROM blocks WHERE (number IS NULL OR number = $1) "
            "AND left($2::text, length(pattern)) = pattern ORDER BY length(pattern) DESC",
            number,
            caller,
        )
        return [build(Block, r) for r in rows]


class PgExtensions(PgNamedRows[Extension]):
    def __init__(self, db: Db) -> None:
        super().__init__(db, "extensions", Extension, "extension")

    async def add(self, extension: Extension) -> Extension:
        return await self._add(extension)

    async def get(self, name_or_id: str | int) -> Extension | None:
        return await self._read(name_or_id)

    async def list(self) -> list[Extension]:
        return await self._all()

    async def update(self, name: str, /, **changes: object) -> Extension:
        return await self._update(name, changes)

    async def _renaming(self, tx: Tx, old: str) -> None:
        await self._not_a_destination(tx, old, "rename")

    async def _not_a_destination(self, tx: Tx, name: str, verb: str) -> None:
        users = await tx.all(
            "SELECT name FROM destinations WHERE kind = 'extension' AND target = $1 ORDER BY name",
            f"ext:{name}",
        )
        if users:
            names = ", ".join(f"'{u['name']}'" for u in users)
            raise ConflictError(
                f"cannot {verb} extension '{name}': destination {names} points to it"
            )

    async def remove(self, name: str) -> None:
        async with self._db.write() as tx:
            ext = await self._need(tx, name)
            await self._not_a_destination(tx, name, "remove")
            await tx.run("DELETE FROM extensions WHERE id = $1", ext.id)

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
            raise NotFoundError(f"no extension named '{binding.extension}'")

    async def remove_binding(self, name: str, contact: str) -> None:
        async with self._db.write(provisioning=False) as tx:
            ext = await self._need(tx, name)
            changed = await tx.run(
                "DELETE FROM extension_bindings WHERE extension_id = $1 AND contact = $2",
                ext.id,
                contact,
            )
            if not changed:
                raise NotFoundError(f"extension '{name}' has no binding for {contact}")


_PROMPT_USERS = "SELECT number FROM numbers WHERE disclosure = $1 OR whisper = $1 OR voicemail = $1"


class PgPrompts(PgNamedRows[StoredPrompt]):
    """Prompts with their PCM as bytea (see `pbx.store.base` for removal rules)."""

    def __init__(self, db: Db, cache: PgConfigCache | None = None) -> None:
        super().__init__(db, "prompts", StoredPrompt, "prompt", cache=cache)

    async def add(self, prompt: StoredPrompt) -> StoredPrompt:
        return await self._add(prompt)

    async def get(self, name_or_id: str | int) -> StoredPrompt | None:
        """Cached (read per call by intake); prompt changes bump the config version."""
        return await self._cached(("prompt", name_or_id), lambda: self._read(name_or_id))

    async def list(self) -> builtins.list[StoredPrompt]:
        return await self._all()

    async def users(self, name: str) -> builtins.list[str]:
        rows = await self._db.all(f"{_PROMPT_USERS} ORDER BY number", name)
        return [r["number"] for r in rows]

    async def remove(self, name: str, *, force: bool = False) -> None:
        async with self._db.write() as tx:
            prompt = await self._need(tx, name)
            rows = await tx.all(f"{_PROMPT_USERS} ORDER BY number", name)
            rows += await tx.all(
                "SELECT 'source ' || name AS number FROM sources WHERE disclosure = $1 "
                "ORDER BY name", name,
            )  # fmt: skip
            if rows and not force:
                used = ", ".join(r["number"] for r in rows)
                raise ConflictError(
                    f"prompt '{name}' is used by {used}; remove it there first or use --force"
                )
            for field in PROMPT_FIELDS:
                extra = ", record = false" if field == "disclosure" else ""
                await tx.run(f"UPDATE numbers SET {field} = NULL{extra} WHERE {field} = $1", name)
            await tx.run(
                "UPDATE sources SET disclosure = NULL, record = false WHERE disclosure = $1", name
            )
            await tx.run("DELETE FROM prompts WHERE id = $1", prompt.id)
