"""`pbx block ...`: blocked callers (I/O shell over pbx.admin.provisioning).

Decision: the pattern is a full number (stored E.164), `+` and digits for a
prefix, or `anonymous` (see `pbx.rules.blocking`); `--number` scopes it to
one tracking number, and `block list --number N` shows only N's own blocks.
"""

from __future__ import annotations

from typing import Any

import click

from pbx.admin import provisioning as admin
from pbx.commands import verbs
from pbx.commands.common import region_of, run_store
from pbx.store.base import Block


@click.group()
def block() -> None:
    """Blocked callers: a number, a +prefix, or 'anonymous' (callers who hide their number).

    Global unless --number names a tracking number. The daemon rejects a
    blocked call and records it as 'blocked'.
    """


_PATTERN = click.argument("pattern", metavar="NUMBER-OR-PREFIX")
_SCOPE = click.option(
    "--number",
    metavar="TRACKING-NUMBER",
    help="Only for calls to this tracking number (default: every number).",
)


def _scope(b: Block) -> str:
    return b.number or "all numbers"


def _block_row(b: Block) -> dict[str, Any]:
    return {"pattern": b.pattern, "number": b.number, "scope": _scope(b)}


def _json_row(b: Block) -> dict[str, Any]:
    return {"pattern": b.pattern, "number": b.number}


@verbs.change_command(block, "add", _PATTERN, _SCOPE)
def block_add(ctx: click.Context, pattern: str, number: str | None) -> str:
    """Block NUMBER-OR-PREFIX: +12125550123, a prefix like +1212, or 'anonymous'."""
    row = run_store(ctx, lambda s: admin.add_block(s, pattern, number, region_of(ctx)), create=True)
    return f"blocked {row.pattern} for {_scope(row)}"


@verbs.list_command(block, ("pattern", "scope"), _SCOPE, row=_block_row, json_row=_json_row)
def block_list(ctx: click.Context, number: str | None) -> list[Block]:
    """List blocked callers (with --number: only that number's own blocks)."""
    return run_store(ctx, lambda s: admin.list_blocks(s, number, region_of(ctx)))


@verbs.change_command(block, "remove", _PATTERN, _SCOPE)
def block_remove(ctx: click.Context, pattern: str, number: str | None) -> str:
    """Unblock NUMBER-OR-PREFIX (global, or the block set with the same --number)."""
    row = run_store(ctx, lambda s: admin.remove_block(s, pattern, number, region_of(ctx)))
    return f"unblocked {row.pattern} for {_scope(row)}"
