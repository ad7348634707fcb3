"""Numbered migrations shipped with a store backend: `NNNN_name.sql` files (I/O: package data).

Each backend keeps its own `migrations/` folder; `load_numbered(package)`
reads it in order and refuses gaps, so both backends number the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_MIGRATION_NAME = re.compile(r"(\d{4})_[a-z0-9_]+\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_numbered(package: str) -> list[Migration]:
    """`package`'s migrations in order; numbering must be 1, 2, 3... without gaps."""
    folder = resources.files(package).joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.fullmatch(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise RuntimeError(f"migration {migration.name}: expected number {expected:04d}")
    return found
