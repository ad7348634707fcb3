"""PostgreSQL repositories for dashboard users, API tokens and the audit log (I/O).

Same rules and messages as the SQLite ones (pbx/store/sqlite/users.py):
users are named rows (`NamedRows`, the checks of sources); a token's name
is unique only among active tokens (partial unique index of migration 3),
so `revoke` targets the active one and a name can be reused after it. The
check-then-write sequences (users, token add) run in `Db.write()` under the
provisioning lock, so two nodes cannot interleave them; token revoke and
`touch` (every API request made with a token) and `audit.add` are one
statement each, without the lock. The audit log is append-only: no update, no remove.
"""

from __future__ import annotations

import builtins
from dataclasses import replace

from pbx.errors import ConflictError, NotFoundError
from pbx.store.base import ApiToken, AuditEntry, User
from pbx.store.postgres.config import PgNamedRows
from pbx.store.postgres.db import Db, Tx, insert_sql, values_of
from pbx.store.rows import Users, build, columns_of

_TOKEN_COLS = columns_of(ApiToken)
_AUDIT_COLS = columns_of(AuditEntry)
MAX_AUDIT_ROWS = 10_000  # per `audit.list` call, as on SQLite


class PgUsers(PgNamedRows[User], Users[Tx]):
    """Named rows: the rules are `pbx.store.rows.Users`."""


class PgTokens:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, token: ApiToken) -> ApiToken:
        async with self._db.write() as tx:
            active = await tx.one(
                "SELECT 1 FROM tokens WHERE name = $1 AND revoked_at IS NULL", token.name
            )
            if active is not None:
                raise ConflictError(f"token '{token.name}' already exists")
            token_id = await tx.value(
                insert_sql("tokens", _TOKEN_COLS), *values_of(token, _TOKEN_COLS)
            )
        return replace(token, id=int(token_id))

    async def get(self, name: str) -> ApiToken | None:
        row = await self._db.one(
            "SELECT * FROM tokens WHERE name = $1 ORDER BY revoked_at IS NOT NULL, id DESC LIMIT 1",
            name,
        )
        return None if row is None else build(ApiToken, row)

    async def find(self, token_sha256: str) -> ApiToken | None:
        row = await self._db.one("SELECT * FROM tokens WHERE token_sha256 = $1", token_sha256)
        return None if row is None else build(ApiToken, row)

    async def list(self) -> builtins.list[ApiToken]:
        rows = await self._db.all("SELECT * FROM tokens ORDER BY name, id")
        return [build(ApiToken, r) for r in rows]

    async def revoke(self, name: str, at: str) -> ApiToken:
        """One statement: the partial unique index leaves at most one active `name`."""
        row = await self._db.one(
            "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING *",
            name,
            at,
        )
        if row is None:
            raise NotFoundError(f"no active token named '{name}'")
        return build(ApiToken, row)

    async def touch(self, token_id: int, at: str) -> None:
        await self._db.run("UPDATE tokens SET last_used_at = $1 WHERE id = $2", at, token_id)


class PgAudit:
    def __init__(self, db: Db) -> None:
        self._db = db

    async def add(self, entry: AuditEntry) -> AuditEntry:
        row = await self._db.one(insert_sql("audit", _AUDIT_COLS), *values_of(entry, _AUDIT_COLS))
        assert row is not None  # an INSERT ... RETURNING always returns its row
        return replace(entry, id=int(row["id"]))

    async def list(
        self, *, limit: int = 100, before_id: int | None = None
    ) -> builtins.list[AuditEntry]:
        capped = max(0, min(limit, MAX_AUDIT_ROWS))
        if before_id is None:
            rows = await self._db.all("SELECT * FROM audit ORDER BY id DESC LIMIT $1", capped)
        else:
            rows = await self._db.all(
                "SELECT * FROM audit WHERE id < $1 ORDER BY id DESC LIMIT $2", before_id, capped
            )
        return [build(AuditEntry, r) for r in rows]
