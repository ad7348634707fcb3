"""In-memory cache of the provisioning the daemon reads per INVITE (I/O: SQLite).

The per-call reads (`trunks.list`, `numbers.lookup`, `blocks.matching`,
`sources.get`) cost an aiosqlite thread hop each (~300 us of CPU). Their
answers only change when provisioning does, which `config_version` counts:
triggers on every provisioning table bump it in the writer's own
transaction, whichever connection writes (daemon, CLI, sqlite3 shell).

The table and its triggers are migration 0002_config_version.sql; a
trigger on `numbers` fires only for the columns routing reads, so the
round-robin cursor advancing per call does not count as a change.

Freshness guarantee: every cached read first reads `config_version` on a
second, plain `sqlite3` connection, synchronously (a few microseconds, no
thread hop; a WAL reader never waits for a writer). A change committed
before a read starts is therefore seen by that read: "CLI changes apply to
the next call" holds exactly as without the cache.

Decisions:
- A value fetched while the version moved is returned but not kept (`put`
  names the version the fetch started at).
- At most `MAX_ENTRIES` values (unknown numbers are cached as None too, so
  a flood of random numbers cannot grow it without bound): when full, the
  cache is emptied and refills.
- The round-robin cursor does not bump the version; `advance_cursor`
  patches the cached route of its number instead.
- A `:memory:` database cannot be shared with a second connection: no
  cache (`open_cache` returns None) and every read goes to the database.
- Values are frozen dataclasses; lists are copied on the way out.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Hashable
from pathlib import Path
from typing import TypeVar

from pbx.store.versioned import MAX_ENTRIES, VersionedValues

T = TypeVar("T")
__all__ = ["MAX_ENTRIES", "ConfigCache", "open_cache"]

_VERSION = "SELECT version FROM config_version WHERE id = 1"


class ConfigCache(VersionedValues):
    """Values keyed by what was asked, valid for one `config_version`."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        super().__init__()
        self._conn = conn

    def version(self) -> int:
        """Read the current version (once per pin); empty the cache if it moved."""
        pinned = self.pinned_version()
        if pinned is not None:
            return pinned
        row = self._conn.execute(_VERSION).fetchone()
        return self.read_version(int(row[0]) if row else -1)

    def get(self, key: Hashable) -> tuple[int, bool, object]:
        """(version, found, value) after checking the version (None is a value)."""
        return self.lookup(self.version(), key)

    def through(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """`fetch()`'s answer, from the cache when the version has not moved since it was kept."""
        return self.answer(self.get(key), key, fetch)

    def close(self) -> None:
        self._conn.close()


def open_cache(path: Path) -> ConfigCache | None:
    """A cache reading the version of the database at `path` (None for `:memory:`)."""
    if str(path) in ("", ":memory:") or str(path).startswith("file:"):
        return None
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return ConfigCache(conn)
