"""`pbx destinations ...`: where calls are delivered (I/O shell over pbx.admin)."""

from __future__ import annotations

import click

from pbx import admin
from pbx.commands.common import region_of, run_store
from pbx.commands.verbs import (
    NAME,
    change_command,
    force_option,
    list_command,
    remove_named,
    show_named,
)
from pbx.store.base import Destination, Store


@click.group()
def destinations() -> None:
    """Where calls are delivered: a number, a SIP URI or a local extension."""


@change_command(destinations, "add", NAME, click.argument("target"))
def destinations_add(ctx: click.Context, name: str, target: str) -> str:
    """Add destination NAME delivering to TARGET: +14155550101, sip:agent@host or ext:NAME."""
    dest = run_store(ctx, lambda s: admin.add_destination(s, name, target, region_of(ctx)))
    return f"destination {dest.name} added ({dest.target})"


@list_command(destinations, ("name", "target", "kind"))
def destinations_list(ctx: click.Context) -> list[Destination]:
    """List destinations."""
    return run_store(ctx, lambda s: s.destinations.list())


@show_named(destinations, "destination")
async def destinations_show(store: Store, name: str) -> Destination | None:
    """Show destination NAME."""
    return await store.destinations.get(name)


@change_command(
    destinations,
    "update",
    NAME,
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


_FORCE = force_option("Also drop it from the numbers that use it.")


@remove_named(destinations, "destination", _FORCE)
async def destinations_remove(store: Store, name: str, force: bool) -> None:
    """Remove destination NAME (refused while numbers use it, unless --force)."""
    await store.destinations.remove(name, force=force)
