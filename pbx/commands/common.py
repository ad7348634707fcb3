"""Plumbing every `pbx` command shares (I/O shell): store access, errors, output formats.

Decisions:
- Bad input raises `AdminError`: one line `Error: ...` on stderr, exit code 2,
  nothing changed (`run_store` turns `pbx.errors.InputError` into it).
- Output goes to stdout; logs and errors to stderr (see `pbx.logs`).
- Passwords are never printed: `********` stands for a set password;
  internal fields (`INTERNAL`: the round-robin cursor) are not shown.
- Only `add` commands create the database (`run_store(create=True)`).
- Money is shown as entered, `12.50`, in every format (`money_fields`: a
  store's `cost_per_call_cents` is printed as `cost_per_call`).
- `--format json` prints a JSON array for listings and an object for `show`;
  `csv` has a header row (cells a spreadsheet would run as formulas are
  defused by `pbx.records`); `table` is aligned text for people.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pbx import records
from pbx.errors import InputError
from pbx.numbers import normalise
from pbx.store import SchemaVersionError, Store, parse_store_url
from pbx.store.connect import open_store, store_errors

T = TypeVar("T")
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
FORMATS = ("table", "json", "csv")
MASK = "********"
# Store fields that are bookkeeping, not configuration: never listed or shown.
INTERNAL = frozenset({"rr_cursor", "ha1_md5", "ha1_sha256"})


class AdminError(click.ClickException):
    """Bad admin input: one line on stderr, exit code 2, nothing changed."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class CliState:
    """The root group's options, found by every command through its context."""

    db: str  # a path or a store URL (`pbx.store.url`)
    region: str


def one_line(text: str) -> str:
    return " ".join(text.split())


def fail(message: str, code: int) -> NoReturn:
    """Print `Error: message` on stderr and exit with `code`."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def _state(ctx: click.Context) -> CliState:
    state = ctx.find_object(CliState)
    assert state is not None
    return state


def run_store(
    ctx: click.Context, fn: Callable[[Store], Awaitable[T]], *, create: bool = False
) -> T:
    """Run `await fn(store)` on the `--db` store; InputError -> `AdminError`.

    Only `add` commands pass `create=True`: any other command on a `--db`
    that does not exist exits 2 with one line and creates nothing (a typo in
    `--db` must not leave an empty database behind and report "no rows").
    """
    state = _state(ctx)

    async def _go() -> T:
        async with await open_store(state.db, create=create) as store:
            result = await fn(store)
            await _audit(ctx, store)
            return result

    try:
        return asyncio.run(_go())
    except InputError as exc:
        raise AdminError(one_line(str(exc))) from None
    except SchemaVersionError as exc:
        raise click.ClickException(one_line(str(exc))) from None
    except Exception as exc:
        if not isinstance(exc, (OSError, *store_errors())):
            raise
        where = parse_store_url(state.db).display  # parsed fine already: open_store ran
        raise click.ClickException(one_line(f"cannot use database {where}: {exc}")) from None


_CHANGES = frozenset({"add", "update", "remove", "rename"})
_SELF_AUDITED = frozenset({"users", "tokens"})  # their use cases write the audit row
_SECRET = ("password", "secret", "token")


async def _audit(ctx: click.Context, store: Store) -> None:
    """One audit row for a provisioning change made from the CLI (who: the login)."""
    group = ctx.parent.command.name if ctx.parent is not None else None
    if ctx.command.name not in _CHANGES or group is None or group in _SELF_AUDITED:
        return
    from pbx.admin import users as admin_users  # argon2 only when auditing

    params = {k: v for k, v in ctx.params.items() if v not in (None, (), False)}
    detail = {k: v for k, v in params.items() if not any(s in k for s in _SECRET)}
    subject = next((str(params[k]) for k in ("name", "number", "pattern") if k in params), "")
    await admin_users.record(store, admin_users.cli_actor(), f"{group}.{ctx.command.name}",
                             subject, detail)  # fmt: skip


def region_of(ctx: click.Context) -> str:
    return _state(ctx).region


def db_override(ctx: click.Context) -> dict[str, object]:
    """`{"store.url": DB}` when `--db`/PBX_DB was given, for daemon settings."""
    root = ctx.find_root()
    if root.get_parameter_source("db") == click.core.ParameterSource.DEFAULT:
        return {}
    return {"store.url": root.params["db"]}


def number_arg(raw: str, region: str) -> str:
    """A phone number option in E.164 (bad input: `AdminError`)."""
    try:
        return normalise(raw, region)
    except InputError as exc:
        raise AdminError(str(exc)) from None


def with_params(*decorators: Decorator) -> Decorator:
    """Apply click option/argument decorators in the order written (top first)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        for add_param in reversed(decorators):
            fn = add_param(fn)
        return fn

    return decorate


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


def listen_options(http_help: str = "HTTP listen address (/health).") -> list[Decorator]:
    """`--sip HOST:PORT`, `--rtp-ports LOW-HIGH`, `--http HOST:PORT` (serve and doctor)."""
    return [
        click.option("--sip", metavar="HOST:PORT", help="SIP listen address (UDP and TCP)."),
        click.option("--rtp-ports", metavar="LOW-HIGH", help="RTP port range for the relay."),
        click.option("--http", metavar="HOST:PORT", help=http_help),
    ]


def listen_overrides(sip: str | None, rtp_ports: str | None, http: str | None) -> dict[str, object]:
    """Settings overrides from the listen options (bad values: `AdminError`)."""
    from pbx.config import parse_listen, parse_port_range

    overrides: dict[str, object] = {}
    try:
        if sip:
            overrides["sip.host"], overrides["sip.port"] = parse_listen(sip, "--sip")
        if http:
            overrides["http.host"], overrides["http.port"] = parse_listen(http, "--http")
        if rtp_ports:
            low, high = parse_port_range(rtp_ports, "--rtp-ports")
            overrides["rtp.port_low"], overrides["rtp.port_high"] = low, high
    except InputError as exc:
        raise AdminError(str(exc)) from None
    return overrides


def config_option(help_text: str) -> Decorator:
    """`--config FILE`: the daemon's TOML settings (must exist)."""
    path = click.Path(exists=True, dir_okay=False, path_type=Path)
    return click.option("--config", "config_path", type=path, help=help_text)


# ---------------------------------------------------------------- output


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, Mapping):
        return " ".join(f"{k}={_cell(v)}" for k, v in value.items() if v is not None)
    return str(value)


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(columns, widths, strict=True)).rstrip()]
    for r in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([records._csv_cell(_cell(row.get(c))) for c in columns])
    return buf.getvalue().rstrip("\n")


def emit(
    rows: Sequence[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[str],
    json_rows: Sequence[Mapping[str, Any]] | None = None,
) -> None:
    """Print a listing: `columns` for table/csv, every field (or `json_rows`) for JSON."""
    if fmt == "json":
        click.echo(json.dumps(list(json_rows if json_rows is not None else rows), indent=2))
    elif fmt == "csv":
        click.echo(_csv(rows, columns))
    else:
        click.echo(_table(rows, columns))


def emit_one(row: Mapping[str, Any], fmt: str) -> None:
    """Print one record: `field  value` lines, a JSON object, or a 2-line CSV."""
    if fmt == "json":
        click.echo(json.dumps(dict(row), indent=2))
    elif fmt == "csv":
        click.echo(_csv([row], list(row)))
    else:
        width = max(len(k) for k in row)
        click.echo("\n".join(f"{k.ljust(width)}  {_cell(v)}".rstrip() for k, v in row.items()))


def as_dict(row: object) -> dict[str, Any]:
    """A store row as plain values (tuples as lists, passwords masked)."""
    assert is_dataclass(row)
    out: dict[str, Any] = {}
    for f in fields(row):
        if f.name in INTERNAL:
            continue
        value = getattr(row, f.name)
        if f.name in ("password", "ga_api_secret") and value:
            value = MASK
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def money_fields(row: Mapping[str, Any]) -> dict[str, Any]:
    """`row` with each `X_cents` field as `X`, in money as entered (`12.50`): every format."""
    return {
        (key.removesuffix("_cents") if key.endswith("_cents") else key): (
            money(value) if key.endswith("_cents") else value
        )
        for key, value in row.items()
    }


def money(cents: int | None) -> str | None:
    """Cents as `D.CC` text (None stays None)."""
    return None if cents is None else f"{cents // 100}.{cents % 100:02d}"
