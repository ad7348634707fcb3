"""In-memory cache of the provisioning the daemon reads per INVITE (I/O: PostgreSQL).

Same shape as the SQLite cache (`pbx.store.sqlite.cache`): values keyed by
what was asked, valid for one `config_version`, which row
triggers on every provisioning table bump in the writer's transaction,
whichever node or client commits it (a `pbx` CLI, psql, another node).

Freshness: every cached read first reads `config_version` (one primary-key
row, one round trip) and empties the cache when it moved. A change
committed before a read starts is therefore seen by that read, on every
node: "CLI changes apply to the next call" holds exactly as without the
cache. The cache saves the server the joins and aggregation of a lookup
and the client its decoding, not the round trip.

Decision: LISTEN/NOTIFY was not chosen. Notifications arrive
asynchronously after the commit, so for a moment after the CLI returned a
node could still route a call by the old configuration; and a node whose
listening connection dropped would have to notice before trusting its
cache. A version read per lookup has neither problem.

As on SQLite: a value fetched while the version moved is returned but not
kept; at most `MAX_ENTRIES` values; the round-robin cursor does not bump
the version (`advance_cursor` patches the cached route instead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from typing import TypeVar

from pbx.store.postgres.db import Db
from pbx.store.versioned import VersionedValues

T = TypeVar("T")

_VERSION = "SELECT version FROM config_version WHERE id = 1"


class PgConfigCache(VersionedValues):
    """Values keyed by what was asked, valid for one `config_version`."""

    def __init__(self, db: Db) -> None:
        super().__init__()
        self._db = db

    def version(self) -> int:
        """The version last read from the database (no I/O)."""
        return self._version

    async def refresh(self) -> int:
        """Read the current version (once per pin); empty the cache if it moved."""
        pinned = self.pinned_version()
        if pinned is not None:
            return pinned
        row = await self._db.one(_VERSION)
        return self.read_version(int(row["version"]) if row else -1)

    async def get(self, key: Hashable) -> tuple[int, bool, object]:
        """(version, found, value) after refreshing the version (None is a value)."""
        return self.lookup(await self.refresh(), key)

    async def through(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> T:
        """`fetch()`'s answer, from the cache when the version has not moved since it was kept."""
        return await self.answer(await self.get(key), key, fetch)

    def close(self) -> None:
        self._values.clear()
