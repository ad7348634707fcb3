"""`pbx doctor`: check config, database, ports and trunks (I/O shell over pbx.admin.doctor).

Decision: prints `ok|warn|FAIL  what` lines and exits 1 when any check
FAILs (findings are not bad input); bad flags still exit 2.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import click

from pbx.commands.common import (
    config_option,
    db_override,
    listen_options,
    listen_overrides,
    with_params,
)


@click.command()
@config_option("Daemon settings (TOML) to check, as given to 'pbx serve --config'.")
@with_params(*listen_options())
@click.pass_context
def doctor(
    ctx: click.Context,
    config_path: Path | None,
    sip: str | None,
    rtp_ports: str | None,
    http: str | None,
) -> None:
    """Check config, database, ports and trunks; print what is wrong in plain words.

    Takes the same --sip, --rtp-ports and --http as 'pbx serve', to check what
    serve would use. One line per check: ok, warn or FAIL. Exit code 0 when
    nothing FAILs, 1 otherwise; a trunk that does not answer is a warning.
    """
    from pbx.admin import doctor as checks

    overrides = listen_overrides(sip, rtp_ports, http) | db_override(ctx)
    findings = asyncio.run(checks.run_doctor(config_path, os.environ, overrides))
    for finding in findings:
        click.echo(finding.line())
    if checks.failed(findings):
        sys.exit(1)
