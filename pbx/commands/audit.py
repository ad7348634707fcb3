"""`pbx audit list`: who changed what, when (I/O shell over the store's audit log)."""

from __future__ import annotations

import json
from typing import Any

import click

from pbx.commands import verbs
from pbx.commands.common import run_store
from pbx.store.base import AuditEntry

_COLUMNS = ("id", "at", "actor", "action", "subject", "detail")
_LIMIT = click.option(
    "--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="At most N."
)


@click.group()
def audit() -> None:
    """The audit log of changes made through the CLI and the admin API."""


def _json_row(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": entry.at,
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "detail": json.loads(entry.detail),
    }


def _row(entry: AuditEntry) -> dict[str, Any]:
    return _json_row(entry) | {"detail": entry.detail}


@verbs.list_command(audit, _COLUMNS, _LIMIT, row=_row, json_row=_json_row)
def audit_list(ctx: click.Context, limit: int) -> list[AuditEntry]:
    """List recent changes, newest first."""
    return run_store(ctx, lambda s: s.audit.list(limit=limit))
