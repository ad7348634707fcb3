"""`pbx tokens ...`: API bearer tokens (I/O shell over pbx.admin.users).

Decision: `tokens add` prints the token once, as the last line of stdout
(so `pbx tokens add ci --role viewer | tail -1` captures it); only its
SHA-256 is stored, so a lost token is revoked and replaced, not recovered.
"""

from __future__ import annotations

from typing import Any

import click

from pbx.admin import users as admin_users
from pbx.commands import verbs
from pbx.commands.common import run_store
from pbx.store.base import ROLES, ApiToken

_COLUMNS = ("name", "role", "state", "created_at", "last_used_at", "revoked_at")


@click.group()
def tokens() -> None:
    """API bearer tokens (Authorization: Bearer TOKEN) for the admin REST API."""


def _token_row(token: ApiToken) -> dict[str, Any]:
    return {
        "name": token.name,
        "role": token.role,
        "state": "revoked" if token.revoked_at else "active",
        "created_at": token.created_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
    }


@tokens.command("add")
@verbs.NAME
@click.option("--role", type=click.Choice(ROLES), required=True, help="admin or viewer.")
@click.pass_context
def tokens_add(ctx: click.Context, name: str, role: str) -> None:
    """Add token NAME; prints the token once, as the last line."""
    actor = admin_users.cli_actor()
    row, token = run_store(ctx, lambda s: admin_users.add_token(s, actor, name, role), create=True)
    click.echo(f"token {row.name} added ({row.role}); it is shown only now:")
    click.echo(token)


@verbs.list_command(tokens, _COLUMNS, row=_token_row)
def tokens_list(ctx: click.Context) -> list[ApiToken]:
    """List tokens, revoked ones too (never the tokens themselves)."""
    return run_store(ctx, lambda s: s.tokens.list())


@verbs.change_command(tokens, "revoke", verbs.NAME)
def tokens_revoke(ctx: click.Context, name: str) -> str:
    """Revoke the active token NAME: requests with it get 401 from now on."""
    actor = admin_users.cli_actor()
    run_store(ctx, lambda s: admin_users.revoke_token(s, actor, name))
    return f"token {name} revoked"
