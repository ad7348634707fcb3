"""Reading a password without putting it on the command line (I/O shell: terminal, files).

A command line is public on a shared machine: any user sees it in `ps` or
`/proc/PID/cmdline`, and it lands in the shell's history. So the commands
that take a password (`pbx trunks add|update`, `pbx extensions add|update`)
read it from one of:
- `--password-stdin`: the first line of standard input (a pipe, a here-doc,
  a secrets manager's output: `vault read ... | pbx trunks add ...`);
- `--password-file FILE`: the first line of FILE (mode 0600, say);
- a hidden prompt, asked twice, when the command needs a password, none
  of the above was given and standard input is a terminal;
- `--password VALUE`: still works for scripts written before, with a warning
  on stderr that the value shows in `ps`.

Decisions: only the first line counts and its line ending is removed (so
`echo pw | ...` and a file written by an editor both work); leading and
trailing spaces are kept (they may be part of a password). An empty first
line is the empty password: for trunks that clears it, as `--password ''`
does. Giving two sources is an error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from pbx.commands.common import AdminError, Decorator

__all__ = ["WARNING", "password_from", "password_options"]

WARNING = (
    "Warning: --password shows the password to every user of this machine "
    "(ps, /proc, shell history); use --password-stdin or --password-file"
)
_KEYS = ("password", "password_stdin", "password_file")


def password_options(help_text: str) -> list[Decorator]:
    """`--password-stdin`, `--password-file FILE` and the old `--password VALUE`."""
    path = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)
    return [
        click.option(
            "--password-stdin", is_flag=True, help=f"{help_text} Read it from standard input."
        ),
        click.option("--password-file", type=path, metavar="FILE", help="Read it from FILE."),
        click.option(
            "--password",
            metavar="VALUE",
            help="The password itself: visible in `ps`, prefer --password-stdin.",
        ),
    ]


def _first_line(text: str) -> str:
    line = text.split("\n", 1)[0]
    return line.removesuffix("\r")


def password_from(kw: dict[str, Any], *, needed: bool) -> str | None:
    """Take the password options out of `kw` and return the password (None: not given).

    `needed`: ask on the terminal when no option gave one (and stdin is one).
    """
    given = {k: kw.pop(k, None) for k in _KEYS}
    chosen = [k for k in _KEYS if given[k] not in (None, False)]
    if len(chosen) > 1:
        raise AdminError("give only one of --password, --password-stdin, --password-file")
    if given["password"] is not None:
        click.echo(WARNING, err=True)
        return str(given["password"])
    if given["password_stdin"]:
        return _first_line(sys.stdin.readline())  # no need to wait for EOF
    if given["password_file"] is not None:
        try:
            return _first_line(Path(given["password_file"]).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise AdminError(f"cannot read --password-file: {exc}") from None
    if needed and sys.stdin.isatty():
        value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
        return value
    return None
