"""Values valid for one `config_version` (pure): what both provisioning caches keep.

Each backend reads the version its own way (SQLite: a synchronous read on a
second connection; PostgreSQL: one round trip) and calls `at(version)`; the
rest - lookup, put, bounds, patching - is the same and lives here.

Decisions: a value fetched while the version moved is not kept (`put` names
the version the fetch started at); at most `MAX_ENTRIES` values, then the
cache empties and refills (a flood of unknown numbers cannot grow it).

Pinning (`pinned()`): the reads one INVITE makes (trunks, number, blocks,
visit, targets) share one version read instead of one each: inside the
block the first read asks the database and the rest take that answer. The
pin lives in a ContextVar, so each call's task has its own and concurrent
admissions never see each other's. A change committed before the block
starts is still seen by every read in it ("CLI changes apply to the next
call"), and one call now routes by one consistent configuration rather than
by a mixture read across a change. A pinned version older than the one the
cache already holds never rolls it back (newer values are fine to use).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from contextlib import AbstractContextManager
from contextvars import ContextVar, Token
from typing import TypeVar, cast

MAX_ENTRIES = 10_000
T = TypeVar("T")


class _Pin:
    """One context's pinned version; also the context manager that sets and resets it
    (a plain class: a generator-based context manager costs a generator per call)."""

    __slots__ = ("token", "var", "version")

    def __init__(self, var: ContextVar[_Pin | None]) -> None:
        self.version: int | None = None
        self.var = var
        self.token: Token[_Pin | None] | None = None

    def __enter__(self) -> None:
        self.token = self.var.set(self)

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            self.var.reset(self.token)


class VersionedValues:
    def __init__(self) -> None:
        self._version = -1
        self._values: dict[Hashable, object] = {}
        self._pin: ContextVar[_Pin | None] = ContextVar(f"config-pin-{id(self)}", default=None)
        self.hits = 0
        self.misses = 0
        self.version_reads = 0

    def pinned(self) -> AbstractContextManager[None]:
        """Inside: the version is read once, by the first read that needs it."""
        return _Pin(self._pin)

    def pinned_version(self) -> int | None:
        """The version this context pinned, if it pinned one and read it already."""
        pin = self._pin.get()
        if pin is None or pin.version is None:
            return None
        return self._version if self._version >= pin.version else self.at(pin.version)

    def read_version(self, version: int) -> int:
        """A version just read from the database: remember it for the pin, then `at` it."""
        self.version_reads += 1
        pin = self._pin.get()
        if pin is not None:
            pin.version = version
        return self.at(version)

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

    def through(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """`fetch()`'s answer, from the cache when the version has not moved since it was
        kept: `answer(lookup(version, key), ...)` once the backend has read the version."""
        raise NotImplementedError

    async def answer(
        self, looked: tuple[int, bool, object], key: Hashable, fetch: Callable[[], Awaitable[T]]
    ) -> T:
        """The value `looked` up, else `fetch()`'s answer, kept for the version looked at."""
        version, found, value = looked
        if found:
            return cast(T, value)
        fresh = await fetch()
        self.put(key, fresh, version)
        return fresh

    def peek(self, key: Hashable) -> object:
        """The cached value without a version check (None when absent)."""
        return self._values.get(key)

    def replace(self, key: Hashable, value: object) -> None:
        """Overwrite a cached value (only if present): for changes the version does not count."""
        if key in self._values:
            self._values[key] = value
