"""`pbx`: the admin command line's root group (I/O shell: parses, calls pbx.*).

Thin on purpose: the command groups live in `pbx.commands` (one module per
concept), every rule in `pbx.admin.provisioning` and `pbx.store`. This file holds the
root group with the global `--db`/`--region` options, the one-line error
behaviour, and the console-script entry point `main` (`pbx = "cli:main"`).

Decisions:
- Every error, click's usage errors included, is printed as exactly one line
  (click's usage block is dropped; the line says to try `--help`).
- Other decisions (output formats, masking, exit codes per command) are in
  the docstrings of `pbx.commands.common` and the command modules.
"""

from __future__ import annotations

import os
from typing import Any

import click

from pbx.commands.audio import prompts, recordings
from pbx.commands.audit import audit
from pbx.commands.block import block
from pbx.commands.calls import calls
from pbx.commands.common import AdminError, CliState, fail, one_line
from pbx.commands.db import db
from pbx.commands.destinations import destinations
from pbx.commands.doctor import doctor
from pbx.commands.extensions import extensions
from pbx.commands.numbers import numbers
from pbx.commands.serve import serve
from pbx.commands.sources import sources
from pbx.commands.tokens import tokens
from pbx.commands.trunks import trunks
from pbx.commands.users import users
from pbx.commands.visits_report import report, visits
from pbx.config import DEFAULT_DB
from pbx.errors import InputError
from pbx.logs import setup_logging


class PbxGroup(click.Group):
    """Root group: prints every click error as one line (see the module docstring)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if not kwargs.get("standalone_mode", True):
            return super().main(*args, **kwargs)
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx else ""
            fail(one_line(exc.format_message()) + hint, exc.exit_code)
        except click.ClickException as exc:
            fail(one_line(exc.format_message()), exc.exit_code)
        except click.Abort:
            fail("aborted", 1)


@click.group(cls=PbxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    envvar="PBX_DB",
    default=str(DEFAULT_DB),
    show_default=True,
    help="The store: a SQLite file, sqlite:///PATH or postgresql://USER@HOST:PORT/DB (env PBX_DB).",
)
@click.option(
    "--region",
    envvar="PBX_PHONE_DEFAULT_REGION",
    default="US",
    show_default=True,
    help="Country for numbers written without +code (env PBX_PHONE_DEFAULT_REGION).",
)
@click.pass_context
def cli(ctx: click.Context, db: str, region: str) -> None:
    """pbx: SIP call tracking and forwarding. Manage trunks, destinations,
    sources and tracking numbers; read call records."""
    try:
        setup_logging("auto", os.environ.get("PBX_LOG_LEVEL", "warning"))
    except InputError as exc:
        raise AdminError(str(exc)) from None
    ctx.obj = CliState(db=db, region=region.upper())


for _command in (visits, report, trunks, destinations, sources, numbers, calls, block,
                 extensions, doctor, serve, db, users, tokens, audit, prompts,
                 recordings):  # fmt: skip
    cli.add_command(_command)


def main() -> None:
    """Console-script entry point (`pbx`)."""
    cli.main(prog_name="pbx")


if __name__ == "__main__":
    main()
