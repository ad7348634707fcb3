"""Read-only check of a SQLite store file for `pbx doctor` (I/O: the file system).

Never creates, migrates or writes the file: it is opened with `mode=ro`.
Reports, in plain words: a directory or a missing file (and whether `pbx
serve` could create it), permissions (SQLite's WAL needs the directory
writable), a file that is not a database, the schema version against this
pbx's migrations, and `PRAGMA quick_check`.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pbx.store.probe import Level, StoreCheck, version_check
from pbx.store.sqlite.store import load_migrations


def probe_sqlite(path: Path) -> StoreCheck:
    """(schema is current, findings) for the SQLite file at `path`."""
    if path.is_dir():
        return _fail(f"database {path} is a directory, not a file")
    if not path.exists():
        return StoreCheck(False, [_missing(path)])
    if not os.access(path, os.R_OK | os.W_OK):
        return _fail(f"database {path} is not readable and writable by this user")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return _fail(f"directory {path.parent} is not writable: SQLite needs it for its WAL")
    try:
        version, integrity = _read_only(path)
    except sqlite3.Error as exc:
        return _fail(f"database {path} cannot be read: {exc}")
    if integrity != "ok":
        return _fail(f"database {path} fails its integrity check: {integrity}")
    return version_check(str(path), version, len(load_migrations()))


def _fail(text: str) -> StoreCheck:
    return StoreCheck(False, [("FAIL", text)])


def _read_only(path: Path) -> tuple[int, str]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        row = conn.execute("PRAGMA user_version").fetchone()
        check = conn.execute("PRAGMA quick_check").fetchone()
    finally:
        conn.close()
    return int(row[0]), str(check[0]) if check else "no answer"


def _missing(path: Path) -> tuple[Level, str]:
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        return ("FAIL", f"database {path} cannot be created: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        return ("FAIL", f"database {path} cannot be created: no write permission on {ancestor}")
    return ("warn", f"database {path} does not exist yet: pbx serve will create it")
