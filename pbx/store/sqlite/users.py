"""SQLite repositories for dashboard users, API tokens and the audit log (I/O).

Decisions: users are named rows (`NamedRows`, the same checks as sources);
a token's name is unique only among active tokens (partial unique index in
migration 3), so `revoke` targets the active one and a name can be reused
after it. `touch` is a single autocommit statement (it runs on every API
request made with a token). The audit log is append-only here: no update,
no remove.
"""

from __future__ import annotations

import builtins
from dataclasses import replace

from pbx.errors import ConflictError, NotFoundError
from pbx.store.base import ApiToken, AuditEntry, User
from pbx.store.rows import Users, build, columns_of
from pbx.store.sqlite.db import Db, Tx, insert_sql, values_of
from pbx.store.sqlite.named import SqliteNamedRows

_TOKEN_COLS = columns_of(ApiToken)
_AUDIT_COLS = columns_of(AuditEntry)
MAX_AUDIT_ROWS = 10_000  # per `audit.list` call


class SqliteUsers(SqliteNamedRows[User], Users[Tx]):
    """Named rows: the rules are `pbx.store.rows.Users`."""


class SqliteTokens:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, token: ApiToken) -> ApiToken:
        async with self._db.write() as tx:
            active = await tx.one(
                "SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL", (token.name,)
            )
            if active is not None:
                raise ConflictError(f"token '{token.name}' already exists")
            token_id = await tx.insert(
                insert_sql("tokens", _TOKEN_COLS), values_of(token, _TOKEN_COLS)
            )
        return replace(token, id=token_id)

    async def get(self, name: str) -> ApiToken | None:
        async with self._db.read() as tx:
            row = await tx.one(
                "SELECT * FROM tokens WHERE name = ? "
                "ORDER BY revoked_at IS NOT NULL, id DESC LIMIT 1",
                (name,),
            )
        return None if row is None else build(ApiToken, row)

    async def find(self, token_sha256: str) -> ApiToken | None:
        async with self._db.read() as tx:
            row = await tx.one("SELECT * FROM tokens WHERE token_sha256 = ?", (token_sha256,))
        return None if row is None else build(ApiToken, row)

    async def list(self) -> builtins.list[ApiToken]:
        async with self._db.read() as tx:
            rows = await tx.all("SELECT * FROM tokens ORDER BY name, id")
        return [build(ApiToken, r) for r in rows]

    async def revoke(self, name: str, at: str) -> ApiToken:
        async with self._db.write() as tx:
            row = await tx.one(
                "SELECT * FROM tokens WHERE name = ? AND revoked_at IS NULL", (name,)
            )
            if row is None:
                raise NotFoundError(f"no active token named '{name}'")
            await tx.run("UPDATE tokens SET revoked_at = ? WHERE id = ?", (at, row["id"]))
        return replace(build(ApiToken, row), revoked_at=at)

    async def touch(self, token_id: int, at: str) -> None:
        async with self._db.single() as tx:
            await tx.run("UPDATE tokens SET last_used_at = ? WHERE id = ?", (at, token_id))


class SqliteAudit:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, entry: AuditEntry) -> AuditEntry:
        async with self._db.single() as tx:
            entry_id = await tx.insert(
                insert_sql("audit", _AUDIT_COLS), values_of(entry, _AUDIT_COLS)
            )
        return replace(entry, id=entry_id)

    async def list(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> builtins.list[AuditEntry]:
        where, params = ("WHERE id < ?", [before_id]) if before_id is not None else ("", [])
        params.append(max(0, min(limit, MAX_AUDIT_ROWS)))
        async with self._db.read() as tx:
            rows = await tx.all(f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?", params)
        return [build(AuditEntry, r) for r in rows]
