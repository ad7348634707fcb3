"""`pbx users ...`: dashboard logins (I/O shell over pbx.admin.users).

Decisions: the password comes from a hidden prompt typed twice, or with
`--password-stdin` from the first line of stdin (for scripts; the trailing
newline is dropped), never from an option (it would sit in shell history
and `ps`). The CLI acts as `cli:LOGIN` with the admin role in the audit log.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from pbx.admin import users as admin_users
from pbx.commands import verbs
from pbx.commands.common import AdminError, run_store
from pbx.errors import InputError
from pbx.store.base import ROLES, User

_COLUMNS = ("name", "role", "created_at")
_ROLE = click.option(
    "--role", type=click.Choice(ROLES), required=True, help="admin: change; viewer: read."
)
_STDIN = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)


@click.group()
def users() -> None:
    """Dashboard logins: admins change things, viewers read."""


def read_password(from_stdin: bool) -> str:
    """The new password: stdin's first line, or a hidden prompt typed twice."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise AdminError("--password-stdin: stdin is empty")
        return line.rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


def _user_row(user: User) -> dict[str, Any]:
    return {"name": user.name, "role": user.role, "created_at": user.created_at}


@verbs.change_command(users, "add", verbs.NAME, _ROLE, _STDIN)
def users_add(ctx: click.Context, name: str, role: str, password_stdin: bool) -> str:
    """Add dashboard user NAME with a role."""
    try:
        admin_users.check_user_name(name)  # before asking for a password
    except InputError as exc:
        raise AdminError(str(exc)) from None
    password = read_password(password_stdin)
    actor = admin_users.cli_actor()
    user = run_store(
        ctx, lambda s: admin_users.add_user(s, actor, name, role, password), create=True
    )
    return f"user {user.name} added ({user.role})"


@verbs.list_command(users, _COLUMNS, row=_user_row)
def users_list(ctx: click.Context) -> list[User]:
    """List dashboard users (never their password hashes)."""
    return run_store(ctx, admin_users.list_users)


@verbs.change_command(users, "remove", verbs.NAME)
def users_remove(ctx: click.Context, name: str) -> str:
    """Remove dashboard user NAME (refused for the last admin)."""
    actor = admin_users.cli_actor()
    run_store(ctx, lambda s: admin_users.remove_user(s, actor, name))
    return f"user {name} removed"


@verbs.change_command(users, "passwd", verbs.NAME, _STDIN)
def users_passwd(ctx: click.Context, name: str, password_stdin: bool) -> str:
    """Set a new password for dashboard user NAME."""
    password = read_password(password_stdin)
    actor = admin_users.cli_actor()
    run_store(ctx, lambda s: admin_users.set_password(s, actor, name, password))
    return f"password of user {name} changed"
