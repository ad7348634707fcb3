"""`pbx destinations ...`: where calls are delivered (I/O shell over pbx.admin.provisioning)."""

from __future__ import annotations

import click

from pbx.admin import provisioning as admin
from pbx.commands import verbs
from pbx.commands.common import region_of, run_store


@click.group()
def destinations() -> None:
    """Where calls are delivered: a number, a SIP URI or a local extension."""


@verbs.change_command(destinations, "add", verbs.NAME, click.argument("target"))
def destinations_add(ctx: click.Context, name: str, target: str) -> str:
    """Add destination NAME delivering to TARGET: +14155550101, sip:agent@host or ext:NAME."""
    dest = run_store(
        ctx, lambda s: admin.add_destination(s, name, target, region_of(ctx)), create=True
    )
    return f"destination {dest.name} added ({dest.target})"


@verbs.change_command(
    destinations,
    "update",
    verbs.NAME,
    click.option("--target", help="New target: +14155550101, sip:agent@host or ext:NAME."),
    click.option("--rename", metavar="NEW", help="New name."),
)
def destinations_update(
    ctx: click.Context, name: str, target: str | None, rename: str | None
) -> str:
    """Change destination NAME."""
    region = region_of(ctx)
    dest = run_store(
        ctx,
        lambda s: admin.update_destination(s, name, target=target, rename=rename, region=region),
    )
    return f"destination {dest.name} updated ({dest.target})"


_DESTINATIONS = verbs.Named(destinations, "destination", lambda s: s.destinations)
_DESTINATIONS.list_command("List destinations.", ("name", "target", "kind"))
_DESTINATIONS.show_command("Show destination NAME.")
_DESTINATIONS.remove_command(
    "Remove destination NAME (refused while numbers use it, unless --force).",
    "Also drop it from the numbers that use it.",
)
