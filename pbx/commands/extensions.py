"""`pbx extensions ...`: local SIP accounts (I/O shell over pbx.admin.extensions).

Decision: `list` and `show` count registrations against the wall clock read
when the command runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from pbx.admin import extensions as extensions_admin
from pbx.commands import verbs
from pbx.commands.common import Decorator, run_store
from pbx.commands.secrets import password_from, password_options


@click.group()
def extensions() -> None:
    """Local SIP accounts that phones register to; use one as a destination with ext:NAME.

    Passwords are stored only as digest hashes (HA1) for the realm, never in
    clear. The realm defaults to 'pbx', the daemon's default registrar.realm.
    """


_COLUMNS = ("name", "realm", "max_contacts", "digest", "registered")


def _options(*, adding: bool) -> list[Decorator]:
    opts: list[Decorator] = [
        *password_options("SIP password, 8-128 printable characters (stored only as HA1)."),
        click.option(
            "--digest",
            type=click.Choice(extensions_admin.DIGESTS),
            help="Digest algorithms to challenge with (default both, SHA-256 first); "
            "md5 for phones that give up on SHA-256.",
        ),
        click.option(
            "--max-contacts",
            type=int,
            help="Phones that may be registered at once (1-16, default 1); all ring.",
        ),
        click.option(
            "--realm", help="Digest realm (default 'pbx'; must match the daemon's registrar.realm)."
        ),
    ]
    if not adding:
        opts.append(
            click.option("--rename", metavar="NEW", help="New name (needs the password again).")
        )
    return opts


def _ext_opts(kw: dict[str, Any], *, adding: bool) -> extensions_admin.ExtensionOptions:
    """The options as given; the password from stdin, a file or a prompt (`secrets`)."""
    return extensions_admin.ExtensionOptions(
        password=password_from(kw, needed=adding),
        max_contacts=kw.get("max_contacts"),
        realm=kw.get("realm"),
        rename=kw.get("rename"),
        digest=kw.get("digest"),
    )


def _now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


@verbs.change_command(extensions, "add", verbs.NAME, *_options(adding=True))
def extensions_add(ctx: click.Context, /, name: str, **kw: Any) -> str:
    """Add extension NAME (the user name its phones register with)."""
    opts = _ext_opts(kw, adding=True)  # before the store: a bad option creates nothing
    ext = run_store(ctx, lambda s: extensions_admin.add_extension(s, name, opts), create=True)
    return f"extension {ext.name} added (realm {ext.realm})"


@verbs.list_command(extensions, _COLUMNS, row=dict)
def extensions_list(ctx: click.Context) -> list[dict[str, object]]:
    """List extensions and how many phones each has registered now."""
    now = _now()
    return run_store(ctx, lambda s: extensions_admin.list_extensions(s, now))


@verbs.show_command(extensions, verbs.NAME, row=dict)
def extensions_show(ctx: click.Context, name: str) -> dict[str, object]:
    """Show extension NAME with its registered contacts."""
    now = _now()
    return run_store(ctx, lambda s: extensions_admin.show_extension(s, name, now))


@verbs.change_command(extensions, "update", verbs.NAME, *_options(adding=False))
def extensions_update(ctx: click.Context, /, name: str, **kw: Any) -> str:
    """Change extension NAME (only the options given)."""
    opts = _ext_opts(kw, adding=False)
    ext = run_store(ctx, lambda s: extensions_admin.update_extension(s, name, opts))
    return f"extension {ext.name} updated"


verbs.Named(extensions, "extension", lambda s: s.extensions).remove_command(
    "Remove extension NAME and its bindings (refused while a destination uses it)."
)
