"""Where a store lives: a path, `sqlite:///path` or `postgresql://...` (pure).

`parse_store_url` turns what an admin gives `--db`, `PBX_DB` or `[store]
url` into a `StoreLocation`. Decisions:
- Anything that is not a URL with a scheme is a SQLite file path (relative
  to the working directory), so `--db data/pbx.sqlite3` keeps working.
- `sqlite:///abs/path` and `sqlite:relative/path` are SQLite too.
- `postgresql://` and `postgres://` are PostgreSQL; the URL is kept whole
  (asyncpg reads user, host, port, database, and the password from the URL,
  `PGPASSWORD` or `.pgpass`). `display` hides a password in the URL, for
  messages and logs.
- Any other scheme is an `InputError` naming the two that work.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pbx.errors import InputError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(?!\\)")


@dataclass(frozen=True, slots=True)
class StoreLocation:
    kind: Literal["sqlite", "postgresql"]
    path: Path | None = None  # for sqlite
    url: str = ""  # for postgresql

    @property
    def display(self) -> str:
        """The location for humans: a path, or the URL without its password."""
        if self.kind == "sqlite":
            return str(self.path)
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        return urlunsplit(parts._replace(netloc=netloc))


def parse_store_url(raw: str | Path) -> StoreLocation:
    """Where the store is; `InputError` for an empty value or an unknown scheme."""
    if isinstance(raw, Path):
        return StoreLocation("sqlite", path=raw)
    text = raw.strip()
    if not text:
        raise InputError("database: empty location (give a file path or a postgresql:// URL)")
    match = _SCHEME.match(text)
    if match is None or len(match.group(1)) == 1:  # no scheme, or a drive letter
        return StoreLocation("sqlite", path=Path(text))
    scheme = match.group(1).lower()
    if scheme == "sqlite":
        rest = text[len("sqlite:") :]
        path = rest[2:] if rest.startswith("//") else rest  # sqlite:///abs -> /abs
        if not path:
            raise InputError(f"database: no file path in {text!r}")
        return StoreLocation("sqlite", path=Path(path))
    if scheme in ("postgresql", "postgres"):
        return StoreLocation("postgresql", url=text)
    raise InputError(
        f"database: unknown scheme {scheme!r} (use a file path, sqlite:///PATH or postgresql://...)"
    )
