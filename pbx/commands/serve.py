"""`pbx serve`: run the daemon (I/O shell over pbx.config and pbx.daemon).

Decision: bad settings exit 2 like any bad input; a daemon that cannot
start (e.g. a port in use) prints `Error: cannot start: ...` and exits 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from pbx.commands.common import (
    AdminError,
    config_option,
    db_override,
    fail,
    listen_options,
    listen_overrides,
    one_line,
    with_params,
)
from pbx.errors import InputError


@click.command()
@config_option("Daemon settings (TOML), e.g. config/pbx.example.toml.")
@with_params(*listen_options())
@click.option("--admin", metavar="HOST:PORT", help="Dashboard and REST API listen address.")
@click.option("--node", metavar="NAME", help="This node's name in a cluster (default: host name).")
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None,
    sip: str | None,
    rtp_ports: str | None,
    http: str | None,
    admin: str | None,
    node: str | None,
) -> None:
    """Run the call-tracking daemon until SIGTERM (then drain calls and stop)."""
    from pbx import daemon
    from pbx.config import load_settings, parse_listen
    from pbx.rtp.media import MediaError
    from pbx.sip.transport import server_context

    overrides = listen_overrides(sip, rtp_ports, http)
    try:
        if admin:
            overrides["admin.host"], overrides["admin.port"] = parse_listen(admin, "--admin")
        if node is not None:
            overrides["node.id"] = node
        settings = load_settings(config_path, os.environ, overrides | db_override(ctx))
        if "tls" in settings.sip.transports:  # an unreadable or bad cert/key is a bad setting
            server_context(settings.sip.tls_cert, settings.sip.tls_key)
    except InputError as exc:
        raise AdminError(str(exc)) from None
    try:
        daemon.run(settings)
    except (OSError, InputError, MediaError) as exc:  # a port in use, no store, a live twin
        fail(f"cannot start: {one_line(str(exc))}", 1)
