"""The one node of a SQLite store (I/O: the calls table).

A SQLite file lives on one box and is written by one daemon, so its "cluster"
has one node: acquiring the name is the start-up crash sweep (every call
left unfinished by a previous run is marked `interrupted`), the lease never
runs out (`renew` just answers, `sweep_expired` finds nobody), and `live`
names this node while it holds the name. Multi-node deployments use the
PostgreSQL store (pbx/store/postgres/nodes.py).
"""

from __future__ import annotations

import datetime as dt

from pbx.records import iso_utc
from pbx.store.base import CallRepo, Lease

FOREVER = "9999-12-31T23:59:59.000000Z"


class SqliteNodes:
    def __init__(self, calls: CallRepo) -> None:
        self._calls = calls
        self._name: str | None = None

    async def acquire_node(self, name: str, lease_s: float, now: str | None = None) -> Lease:
        when = now or iso_utc(dt.datetime.now(dt.UTC).timestamp())
        interrupted = await self._calls.mark_interrupted(when)
        self._name = name
        return Lease(name, FOREVER, interrupted)

    async def renew(self, name: str, lease_s: float, now: str | None = None) -> str:
        return FOREVER

    async def release(self, name: str) -> None:
        if self._name == name:
            self._name = None

    async def sweep_expired(self, now: str | None = None) -> dict[str, int]:
        return {}

    async def live(self, now: str | None = None) -> dict[str, str]:
        return {self._name: FOREVER} if self._name else {}
