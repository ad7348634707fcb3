"""SQLite repositories for caller blocks and local extensions (I/O).

Decisions: a block pattern matches a caller when it is a prefix of the
caller's number (an exact number is its own prefix). The registrar, not the
store, enforces `max_contacts`; `set_binding` replaces a contact's binding.
"""

from __future__ import annotations

import builtins
from dataclasses import replace

from pbx.errors import ConflictError, NotFoundError
from pbx.store.base import PROMPT_FIELDS, Binding, Block, Extension, StoredPrompt
from pbx.store.rows import build, columns_of
from pbx.store.sqlite.cache import ConfigCache, cached
from pbx.store.sqlite.db import Db, Tx
from pbx.store.sqlite.named import SqliteNamedRows

_EXT_COLS = columns_of(Extension)


def _scope(number: str | None) -> str:
    return "everywhere" if number is None else f"for {number}"


BlockIndex = dict[str, tuple[Block, ...]]  # pattern -> its blocks, in id order


class SqliteBlocks:
    def __init__(self, db: Db, cache: ConfigCache | None = None) -> None:
        self._db = db
        self._cache = cache

    async def add(self, block: Block) -> Block:
        async with self._db.write() as tx:
            if block.number is not None:
                known = await tx.one("SELECT 1 FROM numbers WHERE number = ?", (block.number,))
                if known is None:
                    raise NotFoundError(f"no tracking number {block.number}")
            found = await tx.one(
                "SELECT 1 FROM blocks WHERE pattern = ? AND number IS ?",
                (block.pattern, block.number),
            )
            if found is not None:
                raise ConflictError(f"{block.pattern} is already blocked {_scope(block.number)}")
            block_id = await tx.insert(
                "INSERT INTO blocks (pattern, number) VALUES (?, ?)", (block.pattern, block.number)
            )
        return replace(block, id=block_id)

    async def list(self, *, number: str | None = None) -> list[Block]:
        where, params = ("WHERE number = ?", (number,)) if number is not None else ("", ())
        async with self._db.read() as tx:
            rows = await tx.all(f"SELECT * FROM blocks {where} ORDER BY pattern, number", params)
        return [build(Block, r) for r in rows]

    async def remove(self, pattern: str, number: str | None = None) -> None:
        async with self._db.write() as tx:
            changed = await tx.run(
                "DELETE FROM blocks WHERE pattern = ? AND number IS ?", (pattern, number)
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
        async with self._db.read() as tx:
            rows = await tx.all(
                "SELECT * FROM blocks WHERE (number IS NULL OR number = ?) "
                "AND substr(?, 1, length(pattern)) = pattern ORDER BY length(pattern) DESC",
                (number, caller),
            )
        return [build(Block, r) for r in rows]


class SqliteExtensions(SqliteNamedRows[Extension]):
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
            "SELECT name FROM destinations WHERE kind = 'extension' AND target = ? ORDER BY name",
            (f"ext:{name}",),
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
            await tx.run("DELETE FROM extensions WHERE id = ?", (ext.id,))

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

    async def remove_binding(self, name: str, contact: str) -> None:
        async with self._db.write() as tx:
            ext = await self._need(tx, name)
            changed = await tx.run(
                "DELETE FROM extension_bindings WHERE extension_id = ? AND contact = ?",
                (ext.id, contact),
            )
            if not changed:
                raise NotFoundError(f"extension '{name}' has no binding for {contact}")


_PROMPT_USERS = "disclosure = ? OR whisper = ? OR voicemail = ?"


class SqlitePrompts(SqliteNamedRows[StoredPrompt]):
    """Prompts with their PCM as a blob (see `pbx.store.base` for removal rules)."""

    def __init__(self, db: Db, cache: ConfigCache | None = None) -> None:
        super().__init__(db, "prompts", StoredPrompt, "prompt", cache=cache)

    async def add(self, prompt: StoredPrompt) -> StoredPrompt:
        return await self._add(prompt)

    async def get(self, name_or_id: str | int) -> StoredPrompt | None:
        """Cached (read per call by intake); prompt changes bump the config version."""
        return await self._cached(("prompt", name_or_id), lambda: self._read(name_or_id))

    async def list(self) -> builtins.list[StoredPrompt]:
        return await self._all()

    async def users(self, name: str) -> builtins.list[str]:
        async with self._db.read() as tx:
            rows = await tx.all(
                f"SELECT number FROM numbers WHERE {_PROMPT_USERS} ORDER BY number", (name,) * 3
            )
        return [r["number"] for r in rows]

    async def remove(self, name: str, *, force: bool = False) -> None:
        async with self._db.write() as tx:
            prompt = await self._need(tx, name)
            rows = await tx.all(
                f"SELECT number FROM numbers WHERE {_PROMPT_USERS} ORDER BY number", (name,) * 3
            )
            rows += await tx.all(
                "SELECT 'source ' || name AS number FROM sources WHERE disclosure = ? "
                "ORDER BY name", (name,),
            )  # fmt: skip
            if rows and not force:
                used = ", ".join(r["number"] for r in rows)
                raise ConflictError(
                    f"prompt '{name}' is used by {used}; remove it there first or use --force"
                )
            for field in PROMPT_FIELDS:
                extra = ", record = 0" if field == "disclosure" else ""
                await tx.run(f"UPDATE numbers SET {field} = NULL{extra} WHERE {field} = ?", (name,))
            await tx.run(
                "UPDATE sources SET disclosure = NULL, record = 0 WHERE disclosure = ?", (name,)
            )
            await tx.run("DELETE FROM prompts WHERE id = ?", (prompt.id,))
