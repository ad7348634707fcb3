"""The backend-neutral half of the store's repositories (pure: no I/O).

Both backends (`pbx.store.sqlite`, `pbx.store.postgres`) keep the same
rules and the same one-line errors (`pbx.store.base`); they differ only in
their SQL and their driver calls. What is the same lives here, once:

- row helpers: a row dataclass from a DB row (`build`), a dataclass's
  columns, the check of an `update(**changes)`, names listed in a message;
- the check-then-write sequences of the repositories ("is the name free?",
  "is it in use?", which error when) as base classes. A backend subclass
  supplies only the statements, as the abstract methods named for what they
  do (`_get`, `_insert`, `_rewrite`, `_all`, `_delete`, ...), each running
  on the backend's own transaction type `TxT` handed out by its `Db`
  (`Transactions`).

Backends import this module, never the other way round.
"""

from __future__ import annotations

import builtins
import ipaddress
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import fields, replace
from typing import Any, Generic, Protocol, TypeVar

from pbx.errors import ConflictError, InputError, NotFoundError
from pbx.store.base import (
    PROMPT_FIELDS,
    Block,
    Destination,
    Extension,
    RouteInfo,
    Source,
    StoredPrompt,
    TrackingNumber,
    Trunk,
    User,
)
from pbx.store.versioned import VersionedValues

T = TypeVar("T")
TxT = TypeVar("TxT")
TxT_co = TypeVar("TxT_co", covariant=True)
_BOOL_FIELDS: dict[type, frozenset[str]] = {}


# --- row helpers ---------------------------------------------------------------


class DbRow(Protocol):
    """A row as either driver returns it (`sqlite3.Row`, `asyncpg.Record`) or a mapping."""

    def keys(self) -> Iterable[str]: ...
    def __getitem__(self, key: str, /) -> Any: ...


def bool_fields(cls: type) -> frozenset[str]:
    """Names of a dataclass's `bool` fields; computed once per class."""
    known = _BOOL_FIELDS.get(cls)
    if known is None:
        known = _BOOL_FIELDS[cls] = frozenset(
            f.name for f in fields(cls) if f.type in ("bool", bool)
        )
    return known


def build(cls: type[T], row: DbRow | Mapping[str, Any], **override: Any) -> T:
    """A row dataclass from a DB row: takes the columns named like its fields.

    `bool` fields go through `bool()`: SQLite stores them as 0/1; PostgreSQL
    already returns booleans (its boolean columns are all NOT NULL).
    """
    keys = set(row.keys())
    bools = bool_fields(cls)
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in override:
            values[f.name] = override[f.name]
        elif f.name in keys:
            value = row[f.name]
            values[f.name] = bool(value) if f.name in bools else value
    return cls(**values)


def check_changes(kind: str, cls: type, changes: Mapping[str, object]) -> None:
    """Reject unknown or read-only field names in an `update(**changes)`."""
    allowed = {f.name for f in fields(cls)} - {"id"}
    unknown = sorted(set(changes) - allowed)
    if unknown:
        raise InputError(f"cannot update {kind} field(s): {', '.join(unknown)}")


def columns_of(cls: type, exclude: Iterable[str] = ()) -> list[str]:
    """A row dataclass's stored columns: its fields but `id` and `exclude`."""
    skip = {"id", *exclude}
    return [f.name for f in fields(cls) if f.name not in skip]


def quote_list(names: Iterable[str], limit: int = 5) -> str:
    """`'a', 'b', 'c' and 2 more` for messages."""
    items = list(names)
    shown = ", ".join(f"'{n}'" if not n.startswith("+") else n for n in items[:limit])
    rest = len(items) - limit
    return f"{shown} and {rest} more" if rest > 0 else shown


def no_such(kind: str, name: str) -> NotFoundError:
    """The one form of "that name is unknown": `no destination named 'x'`."""
    return NotFoundError(f"no {kind} named '{name}'")


def default_allow(host: str) -> tuple[str, ...]:
    """`host/32` (or `/128`) for an IP literal; nothing for a host name."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return ()
    return (f"{addr}/{addr.max_prefixlen}",)


# --- repositories ----------------------------------------------------------------


class Transactions(Protocol[TxT_co]):
    """A backend's `Db` as the shared code uses it: a read and an atomic write."""

    def read(self) -> AbstractAsyncContextManager[TxT_co]: ...
    def write(self) -> AbstractAsyncContextManager[TxT_co]: ...


class Repo(ABC, Generic[TxT]):
    """A repository over a backend's `Db`, with its provisioning cache if it has one."""

    _db: Transactions[TxT]

    def __init__(self, db: Transactions[TxT], cache: VersionedValues | None = None) -> None:
        self._db = db
        self._cache = cache

    def _cached(self, key: Hashable, fetch: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """`fetch()`'s answer, from the cache when it kept one for the current version."""
        return fetch() if self._cache is None else self._cache.through(key, fetch)


class NamedRow(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=NamedRow)


class NamedRows(Repo[TxT], Generic[R, TxT]):
    """Reads and writes of one table keyed by `id` and a unique `name`.

    Destinations, sources, extensions, prompts and trunks are read, added,
    listed and renamed the same way; each repository adds only its own rules
    (what blocks a removal or a rename). Messages: "no destination named
    'x'", "source 'x' already exists".
    """

    def __init__(
        self,
        db: Transactions[TxT],
        table: str,
        kind: type[R],
        noun: str,
        *,
        order: str = "name",
        cache: VersionedValues | None = None,
    ) -> None:
        super().__init__(db, cache)
        self._table = table
        self._kind = kind
        self._noun = noun
        self._order = order
        self._cols = columns_of(kind)

    @abstractmethod
    async def _get(self, tx: TxT, name_or_id: str | int) -> R | None:
        """The row by id (an int) or name, None when absent."""

    @abstractmethod
    async def _insert(self, tx: TxT, row: R) -> None:
        """Insert `row` (its `id` ignored)."""

    @abstractmethod
    async def _rewrite(self, tx: TxT, new: R, changes: Mapping[str, object]) -> None:
        """Write `new` over the row of `new.id`; `changes` names the fields that changed."""

    @abstractmethod
    async def _all(self) -> builtins.list[R]:
        """Every row, in the table's order."""

    @abstractmethod
    async def _delete(self, tx: TxT, row_id: int) -> None:
        """Delete the row of `row_id`."""

    async def add(self, row: R) -> R:
        async with self._db.write() as tx:
            await self._free_name(tx, row.name)
            await self._insert(tx, row)
            return await self._need(tx, row.name)

    async def get(self, name_or_id: str | int) -> R | None:
        return await self._read(name_or_id)

    async def list(self) -> builtins.list[R]:
        return await self._all()

    async def _need(self, tx: TxT, name: str) -> R:
        found = await self._get(tx, name)
        if found is None:
            raise no_such(self._noun, name)
        return found

    async def _free_name(self, tx: TxT, name: str) -> None:
        if await self._get(tx, name) is not None:
            raise ConflictError(f"{self._noun} '{name}' already exists")

    async def _read(self, name_or_id: str | int) -> R | None:
        async with self._db.read() as tx:
            return await self._get(tx, name_or_id)

    async def _update(self, name: str, changes: Mapping[str, object]) -> R:
        check_changes(self._noun, self._kind, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, name)
            new = replace(current, **changes)  # type: ignore[type-var]
            if new.name != name:
                await self._free_name(tx, new.name)
                await self._renaming(tx, name)
            await self._rewrite(tx, new, changes)
            return await self._need(tx, new.name)

    async def _renaming(self, tx: TxT, old: str) -> None:
        """Refuse a rename that would break a reference (none by default)."""

    async def _users(self, tx: TxT, row_id: int) -> builtins.list[str]:
        """What uses the row and so refuses its removal, in order (nothing by default)."""
        return []

    async def _detach(self, tx: TxT, row_id: int) -> None:
        """Let go of what uses the row, before a forced removal (nothing by default)."""

    async def _remove(self, name: str, force: bool, refusal: Callable[[str], str]) -> None:
        """Delete the row named `name`. While `_users` lists anything: ConflictError
        `refusal(users listed)` unless `force`, which `_detach`es them first."""
        async with self._db.write() as tx:
            row = await self._need(tx, name)
            users = await self._users(tx, row.id)
            if users and not force:
                raise ConflictError(refusal(quote_list(users)))
            await self._detach(tx, row.id)
            await self._delete(tx, row.id)


class Trunks(NamedRows[Trunk, TxT]):
    """Trunks with their allow lists (`allow` empty on add: the host's /32 or /128)."""

    def __init__(self, db: Transactions[TxT], cache: VersionedValues | None = None) -> None:
        super().__init__(db, "trunks", Trunk, "trunk", cache=cache)

    @abstractmethod
    async def _insert_row(self, tx: TxT, trunk: Trunk) -> int:
        """Insert the trunk's own row (not its allow list); its new id."""

    @abstractmethod
    async def _rewrite_row(self, tx: TxT, trunk: Trunk) -> None:
        """Write the trunk's own row (not its allow list) over the row of `trunk.id`."""

    @abstractmethod
    async def _write_allow(self, tx: TxT, trunk_id: int, allow: tuple[str, ...]) -> None:
        """Replace the trunk's allow list, in order."""

    @abstractmethod
    async def _users(self, tx: TxT, row_id: int) -> builtins.list[str]:
        """The numbers dialled out through this trunk, in order."""

    @abstractmethod
    async def _detach(self, tx: TxT, row_id: int) -> None:
        """Move the trunk's numbers to the default trunk (None)."""

    async def _insert(self, tx: TxT, trunk: Trunk) -> None:
        trunk_id = await self._insert_row(tx, trunk)
        await self._write_allow(tx, trunk_id, trunk.allow or default_allow(trunk.host))

    async def _rewrite(self, tx: TxT, new: Trunk, changes: Mapping[str, object]) -> None:
        await self._rewrite_row(tx, new)
        if "allow" in changes:
            await self._write_allow(tx, new.id, new.allow)

    async def list(self) -> builtins.list[Trunk]:
        """Every trunk by name (cached: read per INVITE)."""
        return list(await self._cached(("trunks",), self._all))

    async def update(self, name: str, /, **changes: object) -> Trunk:
        return await self._update(name, changes)

    async def remove(self, name: str, *, force: bool = False) -> None:
        await self._remove(name, force, lambda users: (
            f"trunk '{name}' is used by {users}; move those numbers to another trunk "
            f"first, or use --force to detach them"
        ))  # fmt: skip


class Destinations(NamedRows[Destination, TxT]):
    def __init__(self, db: Transactions[TxT]) -> None:
        super().__init__(db, "destinations", Destination, "destination")

    @abstractmethod
    async def _users(self, tx: TxT, row_id: int) -> builtins.list[str]:
        """The numbers listing this destination (business or after hours), in order."""

    @abstractmethod
    async def _detach(self, tx: TxT, row_id: int) -> None:
        """Take the destination out of every number's lists."""

    async def update(self, name: str, /, **changes: object) -> Destination:
        return await self._update(name, changes)

    async def remove(self, name: str, *, force: bool = False) -> None:
        await self._remove(name, force, lambda users: (
            f"destination '{name}' is used by {users}; change those numbers first, "
            f"or use --force to drop it from them"
        ))  # fmt: skip


class Sources(NamedRows[Source, TxT]):
    def __init__(self, db: Transactions[TxT], cache: VersionedValues | None = None) -> None:
        super().__init__(db, "sources", Source, "source", order="position, name", cache=cache)

    @abstractmethod
    async def _users(self, tx: TxT, row_id: int) -> builtins.list[str]:
        """The source's numbers, in order."""

    async def get(self, name_or_id: str | int) -> Source | None:
        """A source by name or id (cached: read when each call ends)."""
        return await self._cached(("source", name_or_id), lambda: self._read(name_or_id))

    async def list(self) -> builtins.list[Source]:
        """Every source (cached: read per visitor API request)."""
        return list(await self._cached(("sources",), self._all))

    async def update(self, name: str, /, **changes: object) -> Source:
        return await self._update(name, changes)

    async def remove(self, name: str) -> None:
        await self._remove(name, False, lambda users: (
            f"source '{name}' still has numbers {users}; remove them first"
        ))  # fmt: skip


class Users(NamedRows[User, TxT]):
    """Dashboard users: named rows with the checks of sources."""

    def __init__(self, db: Transactions[TxT]) -> None:
        super().__init__(db, "users", User, "user")

    async def update(self, name: str, /, **changes: object) -> User:
        return await self._update(name, changes)

    async def remove(self, name: str) -> None:
        async with self._db.write() as tx:
            user = await self._need(tx, name)
            await self._delete(tx, user.id)


class Extensions(NamedRows[Extension, TxT]):
    """Local extensions; one a destination points to (`ext:NAME`) is neither renamed
    nor removed. The registrar, not the store, enforces `max_contacts`."""

    def __init__(self, db: Transactions[TxT]) -> None:
        super().__init__(db, "extensions", Extension, "extension")

    @abstractmethod
    async def _pointing(self, tx: TxT, name: str) -> builtins.list[str]:
        """Names of the destinations whose target is `ext:NAME`, by name."""

    @abstractmethod
    def _binding_write(self) -> AbstractAsyncContextManager[TxT]:
        """The transaction a binding change runs in."""

    @abstractmethod
    async def _unbind(self, tx: TxT, extension_id: int, contact: str) -> int:
        """Delete one binding; how many rows went."""

    async def update(self, name: str, /, **changes: object) -> Extension:
        return await self._update(name, changes)

    async def _renaming(self, tx: TxT, old: str) -> None:
        await self._not_a_destination(tx, old, "rename")

    async def _not_a_destination(self, tx: TxT, name: str, verb: str) -> None:
        users = await self._pointing(tx, name)
        if users:
            names = ", ".join(f"'{u}'" for u in users)
            raise ConflictError(
                f"cannot {verb} extension '{name}': destination {names} points to it"
            )

    async def remove(self, name: str) -> None:
        async with self._db.write() as tx:
            ext = await self._need(tx, name)
            await self._not_a_destination(tx, name, "remove")
            await self._delete(tx, ext.id)

    async def remove_binding(self, name: str, contact: str) -> None:
        async with self._binding_write() as tx:
            ext = await self._need(tx, name)
            if not await self._unbind(tx, ext.id, contact):
                raise NotFoundError(f"extension '{name}' has no binding for {contact}")


class Prompts(NamedRows[StoredPrompt, TxT]):
    """Prompts with their PCM (see `pbx.store.base` for the removal rules)."""

    def __init__(self, db: Transactions[TxT], cache: VersionedValues | None = None) -> None:
        super().__init__(db, "prompts", StoredPrompt, "prompt", cache=cache)

    @abstractmethod
    async def _used_by(self, tx: TxT, name: str) -> builtins.list[str]:
        """The numbers naming the prompt, by number, then `source NAME` for each source."""

    @abstractmethod
    async def _clear(self, tx: TxT, name: str) -> None:
        """Clear the prompt from every number and source; `record` with a disclosure."""

    async def get(self, name_or_id: str | int) -> StoredPrompt | None:
        """Cached (read per call by intake); prompt changes bump the config version."""
        return await self._cached(("prompt", name_or_id), lambda: self._read(name_or_id))

    async def remove(self, name: str, *, force: bool = False) -> None:
        async with self._db.write() as tx:
            prompt = await self._need(tx, name)
            used = await self._used_by(tx, name)
            if used and not force:
                raise ConflictError(
                    f"prompt '{name}' is used by {', '.join(used)}; "
                    "remove it there first or use --force"
                )
            await self._clear(tx, name)
            await self._delete(tx, prompt.id)


BlockIndex = dict[str, tuple[Block, ...]]  # pattern -> its blocks, in id order


def block_scope(number: str | None) -> str:
    return "everywhere" if number is None else f"for {number}"


class Blocks(Repo[TxT]):
    """Caller blocks: a pattern matches a caller when it is a prefix of the caller's
    number (an exact number is its own prefix)."""

    @abstractmethod
    async def _number_known(self, tx: TxT, number: str) -> bool:
        """Is `number` a tracking number?"""

    @abstractmethod
    async def _blocked(self, tx: TxT, pattern: str, number: str | None) -> bool:
        """Is `pattern` blocked for exactly `number` (None: everywhere)?"""

    @abstractmethod
    async def _insert(self, tx: TxT, block: Block) -> int:
        """Insert the block; its new id."""

    @abstractmethod
    async def _unblock(self, tx: TxT, pattern: str, number: str | None) -> int:
        """Delete the block of exactly `pattern` and `number`; how many rows went."""

    @abstractmethod
    async def list(self, *, number: str | None = None) -> builtins.list[Block]:
        """By pattern, then number (global ones first)."""

    @abstractmethod
    async def _matching(self, caller: str, number: str) -> builtins.list[Block]:
        """`matching` read from the database."""

    async def add(self, block: Block) -> Block:
        async with self._db.write() as tx:
            if block.number is not None and not await self._number_known(tx, block.number):
                raise NotFoundError(f"no tracking number {block.number}")
            if await self._blocked(tx, block.pattern, block.number):
                raise ConflictError(
                    f"{block.pattern} is already blocked {block_scope(block.number)}"
                )
            block_id = await self._insert(tx, block)
        return replace(block, id=block_id)

    async def remove(self, pattern: str, number: str | None = None) -> None:
        async with self._db.write() as tx:
            if not await self._unblock(tx, pattern, number):
                raise NotFoundError(f"{pattern} is not blocked {block_scope(number)}")

    async def matching(self, caller: str, number: str) -> builtins.list[Block]:
        """Longest pattern first; with a cache, from an in-memory index of every block."""
        if self._cache is None:
            return await self._matching(caller, number)
        index = await self._cached(("blocks",), self._index)
        found: builtins.list[Block] = []
        for length in range(len(caller), -1, -1):  # every prefix, the whole caller first
            found += [b for b in index.get(caller[:length], ()) if b.number in (None, number)]
        return found

    async def _index(self) -> BlockIndex:
        index: dict[str, builtins.list[Block]] = {}
        for block in sorted(await self.list(), key=lambda b: b.id):
            index.setdefault(block.pattern, []).append(block)
        return {pattern: tuple(blocks) for pattern, blocks in index.items()}


def listed_once(number: str, names: Sequence[str]) -> None:
    """A destination list names each destination once."""
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"destination '{dup}' is listed twice for {number}")


class Numbers(Repo[TxT]):
    """Tracking numbers: source and trunk referenced by name, two ordered destination
    lists (business hours, after hours), the prompts they name checked."""

    @abstractmethod
    async def _get(self, tx: TxT, number_or_id: str | int) -> TrackingNumber | None:
        """The number by id (an int) or E.164 string, with its lists; None when absent."""

    @abstractmethod
    async def _find_id(self, tx: TxT, table: str, name: str) -> int | None:
        """The id of the row of `table` named `name`, None when absent."""

    @abstractmethod
    async def _prompt_exists(self, tx: TxT, name: str) -> bool: ...

    @abstractmethod
    async def _insert(self, tx: TxT, number: TrackingNumber) -> int:
        """Insert the number's own row (not its lists); its new id."""

    @abstractmethod
    async def _rewrite(self, tx: TxT, new: TrackingNumber) -> None:
        """Write the number's own row (not its lists) over the row of `new.id`."""

    @abstractmethod
    async def _write_lists(self, tx: TxT, number_id: int, number: TrackingNumber) -> None:
        """Replace both destination lists of the number."""

    @abstractmethod
    async def _list(self, source: str | None) -> builtins.list[TrackingNumber]:
        """Every number (or one source's) by number, read from the database."""

    @abstractmethod
    async def _delete(self, tx: TxT, number_id: int) -> None: ...

    @abstractmethod
    async def _lookup(self, e164: str) -> RouteInfo | None:
        """`lookup` read from the database."""

    async def _need(self, tx: TxT, number: str) -> TrackingNumber:
        found = await self._get(tx, number)
        if found is None:
            raise NotFoundError(f"no tracking number {number}")
        return found

    async def _id_of(self, tx: TxT, table: str, kind: str, name: str) -> int:
        found = await self._find_id(tx, table, name)
        if found is None:
            raise no_such(kind, name)
        return found

    async def _trunk_id(self, tx: TxT, number: TrackingNumber) -> int | None:
        trunk = number.trunk
        return None if trunk is None else await self._id_of(tx, "trunks", "trunk", trunk)

    async def _check_prompts(self, tx: TxT, number: TrackingNumber) -> None:
        for field in PROMPT_FIELDS:
            name = getattr(number, field)
            if name is not None and not await self._prompt_exists(tx, name):
                raise NotFoundError(f"no prompt named '{name}' (pbx prompts add {name} ...)")

    async def add(self, number: TrackingNumber) -> TrackingNumber:
        async with self._db.write() as tx:
            if await self._get(tx, number.number) is not None:
                raise ConflictError(f"tracking number {number.number} already exists")
            number_id = await self._insert(tx, number)
            await self._write_lists(tx, number_id, number)
            return await self._need(tx, number.number)

    async def get(self, number_or_id: str | int) -> TrackingNumber | None:
        async with self._db.read() as tx:
            return await self._get(tx, number_or_id)

    async def list(self, *, source: str | None = None) -> builtins.list[TrackingNumber]:
        """One source's numbers are cached (its pool, read per new website visit)."""
        if source is None:
            return await self._list(None)
        return list(await self._cached(("numbers", source), lambda: self._list(source)))

    async def update(self, number: str, /, **changes: object) -> TrackingNumber:
        check_changes("number", TrackingNumber, changes)
        async with self._db.write() as tx:
            current = await self._need(tx, number)
            new = replace(current, **changes)  # type: ignore[arg-type]
            if new.number != number and await self._get(tx, new.number) is not None:
                raise ConflictError(f"tracking number {new.number} already exists")
            await self._rewrite(tx, new)
            if "destinations" in changes or "after_hours" in changes:
                await self._write_lists(tx, current.id, new)
            return await self._need(tx, new.number)

    async def remove(self, number: str) -> None:
        async with self._db.write() as tx:
            found = await self._need(tx, number)
            await self._delete(tx, found.id)

    def _patch_cursor(self, number: str, rr_cursor: int, source: str) -> None:
        """Keep the cached route's and the source's cached list's cursor current (the
        cursor does not bump the version)."""
        if self._cache is None:
            return
        route = self._cache.peek(("lookup", number))
        if isinstance(route, RouteInfo) and route.number.rr_cursor < rr_cursor:
            patched = replace(route.number, rr_cursor=rr_cursor)
            self._cache.replace(("lookup", number), replace(route, number=patched))
        pool = self._cache.peek(("numbers", source))
        if isinstance(pool, list):
            fresh = [replace(n, rr_cursor=rr_cursor) if n.number == number
                     and n.rr_cursor < rr_cursor else n for n in pool]  # fmt: skip
            self._cache.replace(("numbers", source), fresh)

    async def lookup(self, e164: str) -> RouteInfo | None:
        """The route of one INVITE (cached: read per INVITE)."""
        return await self._cached(("lookup", e164), lambda: self._lookup(e164))
