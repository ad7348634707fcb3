"""Node leases on the shared PostgreSQL store (I/O; PostgreSQL only).

Several `pbx serve` nodes share one store. Each holds a lease in `nodes`
(name, token of the holding incarnation, `lease_expires_at`) and renews it
well before it runs out; the calls a node writes carry its name
(`calls.node`). When a node dies its lease runs out, and any node's
`sweep_expired()` marks that node's unfinished calls `interrupted` and
drops its lease row, in ONE statement: the row's deletion is the "exactly
once" (two sweepers at once: the second finds the row gone and does
nothing). This replaces, across nodes, the single-node startup sweep
`calls.mark_interrupted()` (which would interrupt other nodes' live calls).

Decisions:
- Lease times are the database's clock (`now()`), one clock for every
  node, in the records' ISO text form; tests pass `now` explicitly.
- `acquire_node(name)` refuses a name whose lease is live
  (`ConflictError`). Taking over an expired (or swept) name first
  interrupts that name's unfinished calls: they belong to a dead
  incarnation, and the new one starts with none.
- `renew` succeeds while the row exists, even past its expiry (no sweeper
  came yet: nothing was interrupted); once swept it raises
  `LeaseLostError`: the node must stop taking calls and acquire again. A
  late `finish()` of a swept call still writes its real final row.
- `ended_at` of a swept call is the sweep's `now`, as `mark_interrupted`
  uses the restart time: the moment of death is unknown. Its talk time,
  as there, runs to its last media checkpoint (`calls.media_at`).
"""

from __future__ import annotations

from pbx.errors import ConflictError
from pbx.store.base import Lease, LeaseLostError
from pbx.store.postgres.activity import INTERRUPT_SET, LIVE
from pbx.store.postgres.db import Db, Identity

_FMT = '\'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\''
_AT = "coalesce($1::text::timestamptz, now())"  # $1: an explicit ISO `now`, or NULL
_NOW = f"to_char({_AT} AT TIME ZONE 'UTC', {_FMT})"
_EXPIRES = f"to_char(({_AT} + make_interval(secs => $2)) AT TIME ZONE 'UTC', {_FMT})"
# What calls.mark_interrupted sets (talk time to the last media_at included),
# on one node's live calls.
_INTERRUPT = f"UPDATE calls SET {INTERRUPT_SET.format(ended=_NOW)} WHERE node {{match}} AND {LIVE}"
_SWEEP = (  # one statement: the lease row's deletion is the "exactly once"
    f"WITH dead AS (DELETE FROM nodes WHERE lease_expires_at <= {_NOW} RETURNING name), "
    f"hit AS ({_INTERRUPT.format(match='IN (SELECT name FROM dead)')} RETURNING node) "
    "SELECT d.name::text AS name, (SELECT count(*) FROM hit WHERE hit.node = d.name) AS n "
    "FROM dead d ORDER BY d.name"
)


__all__ = ["Lease", "LeaseLostError", "PgNodes"]


class PgNodes:
    def __init__(self, db: Db, who: Identity) -> None:
        self._db = db
        self._who = who

    async def acquire_node(self, name: str, lease_s: float, now: str | None = None) -> Lease:
        """Hold `name`'s lease for `lease_s` seconds; this store's calls then carry `name`."""
        async with self._db.write(provisioning=False) as tx:
            await tx.run(
                f"DELETE FROM nodes WHERE name = $2 AND lease_expires_at <= {_NOW}", now, name
            )
            expires = await tx.value(
                f"INSERT INTO nodes (name, token, lease_expires_at) VALUES ($3, $4, {_EXPIRES}) "
                "ON CONFLICT (name) DO NOTHING RETURNING lease_expires_at",
                now,
                lease_s,
                name,
                self._who.token,
            )
            if expires is None:
                until = await tx.value("SELECT lease_expires_at FROM nodes WHERE name = $1", name)
                raise ConflictError(
                    f"node '{name}' is already running (its lease runs until {until}); "
                    "give this node another name or wait for that lease to expire"
                )
            interrupted = await tx.run(_INTERRUPT.format(match="= $2"), now, name)
        self._who.name = name
        self._who.leased = True
        return Lease(name, str(expires), interrupted)

    async def renew(self, name: str, lease_s: float, now: str | None = None) -> str:
        """Extend this store's lease of `name`; returns the new expiry."""
        expires = await self._db.one(
            f"UPDATE nodes SET lease_expires_at = {_EXPIRES} "
            "WHERE name = $3 AND token = $4 RETURNING lease_expires_at",
            now,
            lease_s,
            name,
            self._who.token,
        )
        if expires is None:
            raise LeaseLostError(
                f"node '{name}' lost its lease (it expired and was swept); "
                "stop taking calls and acquire the name again"
            )
        return str(expires["lease_expires_at"])

    async def release(self, name: str) -> None:
        """Give the lease up (clean shutdown, after the node's calls have ended)."""
        token = self._who.token
        await self._db.run("DELETE FROM nodes WHERE name = $1 AND token = $2", name, token)

    async def sweep_expired(self, now: str | None = None) -> dict[str, int]:
        """Node -> calls marked interrupted, for every node whose lease ran out (once each)."""
        rows = await self._db.all(_SWEEP, now)
        return {r["name"]: int(r["n"]) for r in rows}

    async def live(self, now: str | None = None) -> dict[str, str]:
        """Node -> lease expiry, for the leases still running."""
        rows = await self._db.all(
            f"SELECT name::text AS name, lease_expires_at FROM nodes "
            f"WHERE lease_expires_at > {_NOW} ORDER BY name",
            now,
        )
        return {r["name"]: r["lease_expires_at"] for r in rows}
