"""Values valid for one `config_version` (pure): what both provisioning caches keep.

Each backend reads the version its own way (SQLite: a synchronous read on a
second connection; PostgreSQL: one round trip) and calls `at(version)`; the
rest - lookup, put, bounds, patching - is the same and lives here.

Decisions: a value fetched while the version moved is not kept (`put` names
the version the fetch started at); at most `MAX_ENTRIES` values, then the
cache empties and refills (a flood of unknown numbers cannot grow it).
"""

from __future__ import annotations

from collections.abc import Hashable

MAX_ENTRIES = 10_000


class VersionedValues:
    def __init__(self) -> None:
        self._version = -1
        self._values: dict[Hashable, object] = {}
        self.hits = 0
        self.misses = 0

    def at(self, version: int) -> int:
        """The store is at `version` now: forget every value of an older one."""
        if version != self._version:
            self._values.clear()
            self._version = version
        return version

    def lookup(self, version: int, key: Hashable) -> tuple[int, bool, object]:
        """(version, found, value) at `version` (None is a value)."""
        self.at(version)
        if key in self._values:
            self.hits += 1
            return version, True, self._values[key]
        self.misses += 1
        return version, False, None

    def put(self, key: Hashable, value: object, version: int) -> None:
        """Keep `value` if the version is still the one its fetch started at."""
        if version != self._version:
            return
        if len(self._values) >= MAX_ENTRIES:
            self._values.clear()
        self._values[key] = value

    def peek(self, key: Hashable) -> object:
        """The cached value without a version check (None when absent)."""
        return self._values.get(key)

    def replace(self, key: Hashable, value: object) -> None:
        """Overwrite a cached value (only if present): for changes the version does not count."""
        if key in self._values:
            self._values[key] = value
