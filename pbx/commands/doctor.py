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

from pbx.commands.common import config_option, db_override


@click.command()
@config_option("Daemon settings (TOML) to check, as given to 'pbx serve --config'.")
@click.pass_context
def doctor(ctx: click.Context, config_path: Path | None) -> None:
    """Check config, database, ports and trunks; print what is wrong in plain words.

    One line per check: ok, warn or FAIL. Exit code 0 when nothing FAILs, 1 otherwise.
    """
    from pbx.admin import doctor as checks

    findings = asyncio.run(checks.run_doctor(config_path, os.environ, db_override(ctx)))
    for finding in findings:
        click.echo(finding.line())
    if checks.failed(findings):
        sys.exit(1)
