"""`pbx db migrate --to URL`: copy the SQLite store into an empty PostgreSQL one (I/O shell).

The source is the global `--db` (a SQLite file); the target must be a
`postgresql://` URL of a database with no pbx rows (a non-empty one is
refused with one line, exit 2, nothing written). Prints, per table, the
rows read and the rows the target then holds.
"""

from __future__ import annotations

import asyncio

import click

from pbx.commands.common import AdminError, emit, format_option, one_line
from pbx.errors import InputError
from pbx.store.url import parse_store_url

_COLUMNS = ("table", "source_rows", "target_rows")


@click.group()
def db() -> None:
    """The store itself: move it to another backend."""


@db.command("migrate")
@click.option("--to", "target", required=True, metavar="URL", help="postgresql://USER@HOST:PORT/DB")
@format_option
@click.pass_context
def db_migrate(ctx: click.Context, target: str, fmt: str) -> None:
    """Copy every table of the --db SQLite store into an empty PostgreSQL database."""
    from pbx.store.transfer import copy_sqlite_to  # asyncpg only for this command

    root = ctx.find_root().params["db"]
    try:
        source, dest = parse_store_url(root), parse_store_url(target)
        if source.kind != "sqlite" or source.path is None:
            raise InputError("db migrate: --db must be the SQLite store to copy from")
        if dest.kind != "postgresql":
            raise InputError("db migrate: --to must be a postgresql:// URL")
        if not source.path.is_file():
            raise InputError(f"db migrate: no SQLite store at {source.path}")
        counts = asyncio.run(copy_sqlite_to(source.path, dest.url))
    except InputError as exc:
        raise AdminError(one_line(str(exc))) from None
    rows = [{"table": t, "source_rows": s, "target_rows": d} for t, s, d in counts]
    emit(rows, fmt, _COLUMNS)
