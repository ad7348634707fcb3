"""The backend-neutral half of the store's repositories (pure: no I/O).

Both backends (`pbx.store.sqlite`, `pbx.store.postgres`) keep the same
rules and the same one-line errors (`pbx.store.base`); they differ only in
their SQL and their driver calls. What is the same lives here, once:

- row helpers: a row dataclass from a DB row (`build`), a dataclass's
  columns, the check of an `update(**changes)`, names listed in a message.

Backends import this module, never the other way round.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Protocol, TypeVar

from pbx.errors import InputError

T = TypeVar("T")
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


def default_allow(host: str) -> tuple[str, ...]:
    """`host/32` (or `/128`) for an IP literal; nothing for a host name."""
    try:
        addr = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return ()
    return (f"{addr}/{addr.max_prefixlen}",)
