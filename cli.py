"""`pbx`: the admin command line (I/O shell: parses options, calls pbx.admin, prints).

Thin on purpose: every rule lives in `pbx.admin` (validation, then one store
call) and `pbx.store`. Each command opens the store with `asyncio.run`.

Conventions for anyone adding a command group (`serve`, `visits`, ...):
- define a `@click.group()` or `@click.command()` below and register it
  with `cli.add_command(...)` at the end of the file, as the groups here;
- use `run_store(ctx, fn)` to run `async fn(store)` against `--db`, and
  `emit(rows, fmt, columns)` / `emit_one(row, fmt)` with `@format_option`
  for output;
- raise `pbx.errors.InputError` (or subclasses) for bad input: `run_store`
  and `main` turn it into one line `Error: ...` on stderr and exit code 2.

Decisions:
- Every error, click's usage errors included, is printed as exactly one line
  (click's usage block is dropped; the line says to try `--help`).
- Output goes to stdout; logs and errors to stderr (see `pbx.logs`).
- Passwords are never printed: `********` stands for a set password.
- `--format json` prints a JSON array for listings and an object for `show`;
  `csv` has a header row; `table` is aligned text for people.
- `numbers list` keeps its table/CSV columns (the README quickstart shows
  them); business hours, after-hours list and caller-ID option are in its
  JSON and in `numbers show`, hours as the text `--hours` accepts.
- `calls export` prints every field of every matching record (no default
  limit, unlike `calls list`); CSV by default, values that a spreadsheet
  would run as formulas are defused by `pbx.records.to_csv`.
- `block`: the pattern is a full number (stored E.164), `+` and digits for a
  prefix, or `anonymous` (see `pbx.rules.blocking`); `--number` scopes it to
  one tracking number, and `block list --number N` shows only N's own blocks.
- `doctor` prints `ok|warn|FAIL  what` lines and exits 1 when any check
  FAILs (findings are not bad input); bad flags still exit 2.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from pbx import admin, records
from pbx import extensions as extensions_admin
from pbx.config import DEFAULT_DB
from pbx.errors import InputError
from pbx.logs import setup_logging
from pbx.numbers import normalise
from pbx.presets import load_presets
from pbx.store.base import SchemaVersionError, Store
from pbx.store.sqlite import open_store

T = TypeVar("T")
FORMATS = ("table", "json", "csv")
MASK = "********"


class AdminError(click.ClickException):
    """Bad admin input: one line on stderr, exit code 2, nothing changed."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class CliState:
    db: Path
    region: str


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
            _fail(_one_line(exc.format_message()) + hint, exc.exit_code)
        except click.ClickException as exc:
            _fail(_one_line(exc.format_message()), exc.exit_code)
        except click.Abort:
            _fail("aborted", 1)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


# ---------------------------------------------------------------- shared helpers


def run_store(ctx: click.Context, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run `await fn(store)` on the `--db` store; InputError -> `AdminError`."""
    state = ctx.find_object(CliState)
    assert state is not None

    async def _go() -> T:
        async with await open_store(state.db) as store:
            return await fn(store)

    try:
        return asyncio.run(_go())
    except InputError as exc:
        raise AdminError(_one_line(str(exc))) from None
    except SchemaVersionError as exc:
        raise click.ClickException(_one_line(str(exc))) from None
    except (sqlite3.Error, OSError) as exc:
        raise click.ClickException(f"cannot use database {state.db}: {exc}") from None


def region_of(ctx: click.Context) -> str:
    state = ctx.find_object(CliState)
    assert state is not None
    return state.region


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


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
        value = getattr(row, f.name)
        if f.name in ("password", "ga_api_secret") and value:
            value = MASK
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def _money(cents: int | None) -> str | None:
    return None if cents is None else f"{cents // 100}.{cents % 100:02d}"


@click.group(cls=PbxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="PBX_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="SQLite database file (env PBX_DB).",
)
@click.option(
    "--region",
    envvar="PBX_PHONE_DEFAULT_REGION",
    default="US",
    show_default=True,
    help="Country for numbers written without +code (env PBX_PHONE_DEFAULT_REGION).",
)
@click.pass_context
def cli(ctx: click.Context, db: Path, region: str) -> None:
    """pbx: SIP call tracking and forwarding. Manage trunks, destinations,
    sources and tracking numbers; read call records."""
    try:
        setup_logging("auto", os.environ.get("PBX_LOG_LEVEL", "warning"))
    except InputError as exc:
        raise AdminError(str(exc)) from None
    ctx.obj = CliState(db=db, region=region.upper())


# ---------------------------------------------------------------- trunks


@click.group()
def trunks() -> None:
    """SIP provider accounts: where calls come from and go out."""


_TRUNK_COLUMNS = (
    "name",
    "host",
    "port",
    "transport",
    "username",
    "register",
    "allow",
    "strip_plus",
    "prefix",
    "enabled",
)


def _trunk_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option(
                "--host", required=adding, help="Provider address HOST[:PORT] (port 5060)."
            ),
            click.option(
                "--transport", type=click.Choice(admin.TRANSPORTS), help="SIP transport (udp)."
            ),
            click.option("--username", help="Digest auth user name ('' clears)."),
            click.option("--password", help="Digest auth password ('' clears)."),
            click.option("--realm", help="Only answer challenges from this realm ('' = any)."),
            click.option(
                "--register/--no-register", default=None, help="Keep a REGISTER with the provider."
            ),
            click.option(
                "--allow",
                multiple=True,
                metavar="CIDR",
                help="Address allowed to send calls in; repeat. Default: the host's IP.",
            ),
            click.option(
                "--prefix", metavar="DIGITS", help="Digits put before dialled numbers ('' clears)."
            ),
            click.option(
                "--strip-plus/--keep-plus",
                default=None,
                help="Dial numbers without the leading + (default: keep it).",
            ),
            click.option(
                "--enable/--disable", "enabled", default=None, help="Use or ignore this trunk."
            ),
        ]
        if not adding:
            opts.append(click.option("--rename", metavar="NEW", help="New name."))
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _trunk_opts(kw: dict[str, Any]) -> admin.TrunkOptions:
    allow = tuple(kw.pop("allow", ())) or None
    return admin.TrunkOptions(allow=allow, **kw)


@trunks.command("add")
@click.argument("name")
@_trunk_options(adding=True)
@click.pass_context
def trunks_add(ctx: click.Context, /, name: str, **kw: Any) -> None:
    """Add a trunk NAME."""
    trunk = run_store(ctx, lambda s: admin.add_trunk(s, name, _trunk_opts(kw)))
    click.echo(f"trunk {trunk.name} added ({trunk.host}:{trunk.port}/{trunk.transport})")


@trunks.command("list")
@format_option
@click.pass_context
def trunks_list(ctx: click.Context, fmt: str) -> None:
    """List trunks."""
    rows = run_store(ctx, lambda s: s.trunks.list())
    emit([as_dict(r) for r in rows], fmt, _TRUNK_COLUMNS)


@trunks.command("show")
@click.argument("name")
@format_option
@click.pass_context
def trunks_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show every field of trunk NAME."""
    trunk = run_store(ctx, lambda s: admin.require(s.trunks.get(name), f"no trunk named '{name}'"))
    emit_one(as_dict(trunk), fmt)


@trunks.command("update")
@click.argument("name")
@_trunk_options(adding=False)
@click.pass_context
def trunks_update(ctx: click.Context, /, name: str, **kw: Any) -> None:
    """Change trunk NAME (only the options given)."""
    trunk = run_store(ctx, lambda s: admin.update_trunk(s, name, _trunk_opts(kw)))
    click.echo(f"trunk {trunk.name} updated")


@trunks.command("remove")
@click.argument("name")
@click.option(
    "--force", is_flag=True, help="Also detach numbers that use it (they use the default trunk)."
)
@click.pass_context
def trunks_remove(ctx: click.Context, name: str, force: bool) -> None:
    """Remove trunk NAME."""
    run_store(ctx, lambda s: s.trunks.remove(name, force=force))
    click.echo(f"trunk {name} removed")


# ---------------------------------------------------------------- destinations


@click.group()
def destinations() -> None:
    """Where calls are delivered: a number, a SIP URI or a local extension."""


@destinations.command("add")
@click.argument("name")
@click.argument("target")
@click.pass_context
def destinations_add(ctx: click.Context, name: str, target: str) -> None:
    """Add destination NAME delivering to TARGET: +14155550101, sip:agent@host or ext:NAME."""
    dest = run_store(ctx, lambda s: admin.add_destination(s, name, target, region_of(ctx)))
    click.echo(f"destination {dest.name} added ({dest.target})")


@destinations.command("list")
@format_option
@click.pass_context
def destinations_list(ctx: click.Context, fmt: str) -> None:
    """List destinations."""
    rows = run_store(ctx, lambda s: s.destinations.list())
    emit([as_dict(r) for r in rows], fmt, ("name", "target", "kind"))


@destinations.command("show")
@click.argument("name")
@format_option
@click.pass_context
def destinations_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show destination NAME."""
    dest = run_store(
        ctx, lambda s: admin.require(s.destinations.get(name), f"no destination named '{name}'")
    )
    emit_one(as_dict(dest), fmt)


@destinations.command("update")
@click.argument("name")
@click.option("--target", help="New target: +14155550101, sip:agent@host or ext:NAME.")
@click.option("--rename", metavar="NEW", help="New name.")
@click.pass_context
def destinations_update(
    ctx: click.Context, name: str, target: str | None, rename: str | None
) -> None:
    """Change destination NAME."""
    dest = run_store(
        ctx,
        lambda s: admin.update_destination(
            s, name, target=target, rename=rename, region=region_of(ctx)
        ),
    )
    click.echo(f"destination {dest.name} updated ({dest.target})")


@destinations.command("remove")
@click.argument("name")
@click.option("--force", is_flag=True, help="Also drop it from the numbers that use it.")
@click.pass_context
def destinations_remove(ctx: click.Context, name: str, force: bool) -> None:
    """Remove destination NAME (refused while numbers use it, unless --force)."""
    run_store(ctx, lambda s: s.destinations.remove(name, force=force))
    click.echo(f"destination {name} removed")


# ---------------------------------------------------------------- sources


@click.group()
def sources() -> None:
    """Advertising channels that tracking numbers stand for."""


_SOURCE_COLUMNS = ("name", "preset", "type", "position", "tag", "cost", "enabled")


def _source_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option("--description", metavar="TEXT", help="Free text."),
            click.option(
                "--onsite/--offsite",
                default=None,
                help="Onsite: picked by website rules. Offsite (custom default): a static number.",
            ),
            click.option(
                "--referrer",
                metavar="REGEX",
                help="Onsite rule: regex searched in the visitor's referrer ('' clears).",
            ),
            click.option(
                "--landing",
                metavar="REGEX",
                help="Onsite rule: regex searched in the landing page URL ('' clears).",
            ),
            click.option("--position", type=int, help="Onsite rule order, lowest first (0-10000)."),
            click.option(
                "--last-touch/--first-touch",
                default=None,
                help="Let this source take over returning visitors.",
            ),
            click.option("--tag", help="Tag written on its calls ('' clears)."),
            click.option(
                "--cost-per-call", metavar="AMOUNT", help="Cost of each call, e.g. 12.50."
            ),
            click.option("--monthly-budget", metavar="AMOUNT", help="Monthly spend, e.g. 300.00."),
        ]
        if not adding:
            opts += [
                click.option("--no-cost", is_flag=True, help="Clear the cost."),
                click.option(
                    "--enable/--disable", "enabled", default=None, help="Use or ignore this source."
                ),
                click.option("--rename", metavar="NEW", help="New name."),
            ]
        for opt in reversed(opts):
            fn = opt(fn)
        return _attribution_options(fn)

    return decorate


def _attribution_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Issue 6 source options: GA4 fields, GeoContact, pool fallback number."""
    ga = "GA4 for this source's calls"
    opts = [
        click.option("--ga-measurement-id", metavar="G-ID", help=f"{ga}: property ('' clears)."),
        click.option(
            "--ga-api-secret", metavar="SECRET", help=f"{ga}: Measurement Protocol secret."
        ),
        click.option("--ga-source", metavar="TEXT", help=f"{ga}: source when there is no visit."),
        click.option("--ga-medium", metavar="TEXT", help=f"{ga}: medium when there is no visit."),
        click.option("--ga-campaign", metavar="TEXT", help=f"{ga}: campaign when no visit."),
        click.option(
            "--geo/--no-geo",
            default=None,
            help="GeoContact: show each visitor the number nearest to them.",
        ),
        click.option(
            "--fallback-number",
            metavar="NUMBER",
            help="Shown when every pool number is held by a visit ('' clears).",
        ),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def _source_kw(kw: dict[str, Any], region: str) -> dict[str, Any]:
    """The CLI's source options with --fallback-number in E.164 (bad input: exit 2)."""
    fallback = kw.get("fallback_number")
    if fallback:
        try:
            kw = {**kw, "fallback_number": normalise(fallback, region)}
        except InputError as exc:
            raise AdminError(_one_line(f"--fallback-number: {exc}")) from None
    return kw


def _source_row(source: Any) -> dict[str, Any]:
    row = as_dict(source)
    row["type"] = "onsite" if source.onsite else "offsite"
    if source.cost_per_call_cents is not None:
        row["cost"] = f"{_money(source.cost_per_call_cents)}/call"
    elif source.monthly_budget_cents is not None:
        row["cost"] = f"{_money(source.monthly_budget_cents)}/month"
    return row


@sources.command("add")
@click.argument("name", required=False)
@click.option("--preset", metavar="KEY", help="Start from a preset (see 'pbx sources presets').")
@_source_options(adding=True)
@click.pass_context
def sources_add(ctx: click.Context, /, name: str | None, preset: str | None, **kw: Any) -> None:
    """Add source NAME (NAME defaults to the preset's name)."""
    opts = admin.SourceOptions(**_source_kw(kw, region_of(ctx)))
    source = run_store(ctx, lambda s: admin.add_source(s, name, preset, opts))
    kind = "onsite" if source.onsite else "offsite"
    click.echo(f"source {source.name} added ({kind})")


@sources.command("presets")
@format_option
def sources_presets(fmt: str) -> None:
    """List the ready-made sources for --preset."""
    try:
        presets = load_presets()
    except InputError as exc:
        raise click.ClickException(_one_line(str(exc))) from None
    rows = [as_dict(p) for p in presets.values()]
    emit(rows, fmt, ("key", "name", "type", "position", "description"))


@sources.command("list")
@format_option
@click.pass_context
def sources_list(ctx: click.Context, fmt: str) -> None:
    """List sources (onsite ones in rule order)."""
    rows = run_store(ctx, lambda s: s.sources.list())
    emit([_source_row(r) for r in rows], fmt, _SOURCE_COLUMNS, [as_dict(r) for r in rows])


@sources.command("show")
@click.argument("name")
@format_option
@click.pass_context
def sources_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show every field of source NAME."""
    source = run_store(
        ctx, lambda s: admin.require(s.sources.get(name), f"no source named '{name}'")
    )
    emit_one(as_dict(source), fmt)


@sources.command("update")
@click.argument("name")
@_source_options(adding=False)
@click.pass_context
def sources_update(ctx: click.Context, /, name: str, **kw: Any) -> None:
    """Change source NAME (only the options given)."""
    opts = admin.SourceOptions(**_source_kw(kw, region_of(ctx)))
    source = run_store(ctx, lambda s: admin.update_source(s, name, opts))
    click.echo(f"source {source.name} updated")


@sources.command("remove")
@click.argument("name")
@click.pass_context
def sources_remove(ctx: click.Context, name: str) -> None:
    """Remove source NAME (refused while it has numbers)."""
    run_store(ctx, lambda s: s.sources.remove(name))
    click.echo(f"source {name} removed")


# ---------------------------------------------------------------- numbers


@click.group()
def numbers() -> None:
    """Tracking numbers: the DIDs the public dials."""


_NUMBER_COLUMNS = (
    "number",
    "source",
    "destinations",
    "strategy",
    "ring_timeout",
    "trunk",
    "location",
)


def _number_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option(
                "--source", required=adding, metavar="NAME", help="Source the number stands for."
            ),
            click.option(
                "--destination",
                "destinations",
                multiple=True,
                required=adding,
                metavar="NAME",
                help="Where calls go; repeat, in order"
                + ("." if adding else " (replaces the list)."),
            ),
            click.option(
                "--strategy",
                type=click.Choice(admin.STRATEGIES),
                help="How destinations ring (sequential).",
            ),
            click.option(
                "--ring-timeout",
                type=int,
                metavar="SECONDS",
                help=f"Ring time per destination (default {admin.DEFAULT_RING_TIMEOUT}).",
            ),
            click.option(
                "--trunk", metavar="NAME", help="Trunk for outbound legs ('' = default trunk)."
            ),
            click.option(
                "--hours",
                metavar="TEXT",
                help="Business hours, e.g. 'America/New_York mon-fri 09:00-17:00; "
                "sat 10:00-14:00; closed 2026-12-25' ('' clears).",
            ),
            click.option("--no-hours", is_flag=True, help="Clear business hours (open always)."),
            click.option(
                "--after-hours",
                multiple=True,
                metavar="DEST",
                help="Destination outside business hours; repeat, in order "
                "('' = reject after-hours calls).",
            ),
            click.option(
                "--present-tracking-number/--pass-caller-id",
                default=None,
                help="Caller ID shown at the destination: the tracking number, or the "
                "caller's own (default).",
            ),
            click.option(
                "--enable/--disable", "enabled", default=None, help="Answer or refuse its calls."
            ),
        ]
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _number_opts(kw: dict[str, Any]) -> admin.NumberOptions:
    dests = tuple(kw.pop("destinations", ())) or None
    after = tuple(kw.pop("after_hours", ())) or None
    if kw.pop("no_hours", False):
        if kw.get("hours"):
            raise AdminError("give only one of --hours and --no-hours")
        kw["hours"] = ""
    return admin.NumberOptions(destinations=dests, after_hours=after, **kw)


def _number_row(number: Any) -> dict[str, Any]:
    """A number for output: `hours` as the text `--hours` takes, not the stored JSON."""
    row = as_dict(number)
    row["hours"] = admin.hours_text(number.hours)
    return row


@numbers.command("add")
@click.argument("number")
@_number_options(adding=True)
@click.pass_context
def numbers_add(ctx: click.Context, /, number: str, **kw: Any) -> None:
    """Add tracking NUMBER (any usual spelling; stored as E.164)."""
    opts = _number_opts(kw)
    row = run_store(ctx, lambda s: admin.add_number(s, number, opts, region_of(ctx)))
    where = f", {row.location}" if row.location else ""
    click.echo(f"number {row.number} added (source {row.source}{where})")


@numbers.command("list")
@click.option("--source", metavar="NAME", help="Only this source's numbers.")
@format_option
@click.pass_context
def numbers_list(ctx: click.Context, source: str | None, fmt: str) -> None:
    """List tracking numbers."""
    rows = run_store(ctx, lambda s: s.numbers.list(source=source))
    emit([_number_row(r) for r in rows], fmt, _NUMBER_COLUMNS)


@numbers.command("show")
@click.argument("number")
@format_option
@click.pass_context
def numbers_show(ctx: click.Context, number: str, fmt: str) -> None:
    """Show every field of tracking NUMBER."""
    row = run_store(ctx, lambda s: admin.get_number(s, number, region_of(ctx)))
    emit_one(_number_row(row), fmt)


@numbers.command("update")
@click.argument("number")
@_number_options(adding=False)
@click.pass_context
def numbers_update(ctx: click.Context, /, number: str, **kw: Any) -> None:
    """Change tracking NUMBER (only the options given)."""
    opts = _number_opts(kw)
    row = run_store(ctx, lambda s: admin.update_number(s, number, opts, region_of(ctx)))
    click.echo(f"number {row.number} updated")


@numbers.command("remove")
@click.argument("number")
@click.pass_context
def numbers_remove(ctx: click.Context, number: str) -> None:
    """Remove tracking NUMBER."""
    e164 = run_store(ctx, lambda s: admin.remove_number(s, number, region_of(ctx)))
    click.echo(f"number {e164} removed")


# ---------------------------------------------------------------- calls


@click.group()
def calls() -> None:
    """Call records (written by the daemon)."""


_CALL_COLUMNS = (
    "started_at",
    "caller",
    "tracking_number",
    "source",
    "destination",
    "disposition",
    "ring_seconds",
    "talk_seconds",
    "id",
)
MAX_CALL_ROWS = 100_000


def parse_since(text: str) -> str:
    """`YYYY-MM-DD` or an ISO 8601 time -> the UTC stamp form records use."""
    try:
        stamp = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(f"invalid --since {text!r}: use YYYY-MM-DD or an ISO 8601 time") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@calls.command("list")
@click.option("--since", metavar="DATE", help="Only calls started at or after DATE (UTC).")
@click.option("--source", metavar="NAME", help="Only calls attributed to this source.")
@click.option("--number", metavar="NUMBER", help="Only calls to this tracking number.")
@click.option(
    "--disposition",
    type=click.Choice([d.value for d in records.Disposition]),
    help="Only calls that ended so.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_CALL_ROWS),
    default=100,
    show_default=True,
    help="Newest calls shown.",
)
@format_option
@click.pass_context
def calls_list(
    ctx: click.Context,
    since: str | None,
    source: str | None,
    number: str | None,
    disposition: str | None,
    limit: int,
    fmt: str,
) -> None:
    """List call records, newest first."""
    since_stamp = parse_since(since) if since else None
    e164 = _number_arg(number, region_of(ctx)) if number else None
    rows = run_store(
        ctx,
        lambda s: s.calls.list(
            since=since_stamp, source=source, number=e164, disposition=disposition, limit=limit
        ),
    )
    if fmt == "csv":
        click.echo(records.to_csv(rows).rstrip("\r\n"))
        return
    json_rows = records.to_json_rows(rows)
    emit(json_rows, fmt, _CALL_COLUMNS, json_rows)


@calls.command("export")
@click.option("--since", metavar="DATE", help="Only calls started at or after DATE (UTC).")
@click.option("--source", metavar="NAME", help="Only calls attributed to this source.")
@click.option("--number", metavar="NUMBER", help="Only calls to this tracking number.")
@click.option(
    "--disposition",
    type=click.Choice([d.value for d in records.Disposition]),
    help="Only calls that ended so.",
)
@click.option(
    "--limit",
    type=click.IntRange(1, None),
    help="At most N newest calls (default: every matching call).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(("csv", "json")),
    default="csv",
    show_default=True,
    help="CSV (a header row, every field) or a JSON array.",
)
@click.pass_context
def calls_export(
    ctx: click.Context,
    since: str | None,
    source: str | None,
    number: str | None,
    disposition: str | None,
    limit: int | None,
    fmt: str,
) -> None:
    """Print every field of the matching call records, newest first, for spreadsheets."""
    since_stamp = parse_since(since) if since else None
    e164 = _number_arg(number, region_of(ctx)) if number else None
    rows = run_store(
        ctx,
        lambda s: s.calls.list(
            since=since_stamp, source=source, number=e164, disposition=disposition, limit=limit
        ),
    )
    if fmt == "json":
        click.echo(json.dumps(records.to_json_rows(rows), indent=2))
    else:
        click.echo(records.to_csv(rows), nl=False)


def _number_arg(raw: str, region: str) -> str:
    try:
        return normalise(raw, region)
    except InputError as exc:
        raise AdminError(str(exc)) from None


@calls.command("show")
@click.argument("call_id", metavar="ID")
@format_option
@click.pass_context
def calls_show(ctx: click.Context, call_id: str, fmt: str) -> None:
    """Show every field of call record ID."""
    row = run_store(ctx, lambda s: admin.require(s.calls.get(call_id), f"no call {call_id}"))
    emit_one(records.to_dict(row), fmt)


# ---------------------------------------------------------------- block list


@click.group()
def block() -> None:
    """Blocked callers: a number, a +prefix, or 'anonymous' (callers who hide their number).

    Global unless --number names a tracking number. The daemon rejects a
    blocked call and records it as 'blocked'.
    """


_scope_option = click.option(
    "--number",
    metavar="TRACKING-NUMBER",
    help="Only for calls to this tracking number (default: every number).",
)


def _block_row(b: Any) -> dict[str, Any]:
    return {"pattern": b.pattern, "number": b.number, "scope": b.number or "all numbers"}


@block.command("add")
@click.argument("pattern", metavar="NUMBER-OR-PREFIX")
@_scope_option
@click.pass_context
def block_add(ctx: click.Context, pattern: str, number: str | None) -> None:
    """Block NUMBER-OR-PREFIX: +12125550123, a prefix like +1212, or 'anonymous'."""
    row = run_store(ctx, lambda s: admin.add_block(s, pattern, number, region_of(ctx)))
    click.echo(f"blocked {row.pattern} for {_block_row(row)['scope']}")


@block.command("list")
@_scope_option
@format_option
@click.pass_context
def block_list(ctx: click.Context, number: str | None, fmt: str) -> None:
    """List blocked callers (with --number: only that number's own blocks)."""
    rows = run_store(ctx, lambda s: admin.list_blocks(s, number, region_of(ctx)))
    json_rows = [{"pattern": r.pattern, "number": r.number} for r in rows]
    emit([_block_row(r) for r in rows], fmt, ("pattern", "scope"), json_rows)


@block.command("remove")
@click.argument("pattern", metavar="NUMBER-OR-PREFIX")
@_scope_option
@click.pass_context
def block_remove(ctx: click.Context, pattern: str, number: str | None) -> None:
    """Unblock NUMBER-OR-PREFIX (global, or the block set with the same --number)."""
    row = run_store(ctx, lambda s: admin.remove_block(s, pattern, number, region_of(ctx)))
    click.echo(f"unblocked {row.pattern} for {_block_row(row)['scope']}")


# ---------------------------------------------------------------- extensions


@click.group()
def extensions() -> None:
    """Local SIP accounts that phones register to; use one as a destination with ext:NAME.

    Passwords are stored only as digest hashes (HA1) for the realm, never in
    clear. The realm defaults to 'pbx', the daemon's default registrar.realm.
    """


_EXT_COLUMNS = ("name", "realm", "max_contacts", "registered")


def _extension_options(*, adding: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        opts = [
            click.option(
                "--password",
                required=adding,
                help="SIP password, 8-128 printable characters (stored only as HA1).",
            ),
            click.option(
                "--max-contacts",
                type=int,
                help="Phones that may be registered at once (1-16, default 1); all ring.",
            ),
            click.option(
                "--realm",
                help="Digest realm (default 'pbx'; must match the daemon's registrar.realm).",
            ),
        ]
        if not adding:
            rename = click.option("--rename", metavar="NEW", help="New name (needs --password).")
            opts.append(rename)
        for opt in reversed(opts):
            fn = opt(fn)
        return fn

    return decorate


def _ext_opts(kw: Mapping[str, Any]) -> extensions_admin.ExtensionOptions:
    return extensions_admin.ExtensionOptions(
        password=kw.get("password"),
        max_contacts=kw.get("max_contacts"),
        realm=kw.get("realm"),
        rename=kw.get("rename"),
    )


@extensions.command("add")
@click.argument("name")
@_extension_options(adding=True)
@click.pass_context
def extensions_add(ctx: click.Context, /, name: str, **kw: Any) -> None:
    """Add extension NAME (the user name its phones register with)."""
    ext = run_store(ctx, lambda s: extensions_admin.add_extension(s, name, _ext_opts(kw)))
    click.echo(f"extension {ext.name} added (realm {ext.realm})")


@extensions.command("list")
@format_option
@click.pass_context
def extensions_list(ctx: click.Context, fmt: str) -> None:
    """List extensions and how many phones each has registered now."""
    now = dt.datetime.now(dt.UTC).timestamp()
    rows = run_store(ctx, lambda s: extensions_admin.list_extensions(s, now))
    emit(rows, fmt, _EXT_COLUMNS)


@extensions.command("show")
@click.argument("name")
@format_option
@click.pass_context
def extensions_show(ctx: click.Context, name: str, fmt: str) -> None:
    """Show extension NAME with its registered contacts."""
    now = dt.datetime.now(dt.UTC).timestamp()
    emit_one(run_store(ctx, lambda s: extensions_admin.show_extension(s, name, now)), fmt)


@extensions.command("update")
@click.argument("name")
@_extension_options(adding=False)
@click.pass_context
def extensions_update(ctx: click.Context, /, name: str, **kw: Any) -> None:
    """Change extension NAME (only the options given)."""
    ext = run_store(ctx, lambda s: extensions_admin.update_extension(s, name, _ext_opts(kw)))
    click.echo(f"extension {ext.name} updated")


@extensions.command("remove")
@click.argument("name")
@click.pass_context
def extensions_remove(ctx: click.Context, name: str) -> None:
    """Remove extension NAME and its bindings (refused while a destination uses it)."""
    run_store(ctx, lambda s: s.extensions.remove(name))
    click.echo(f"extension {name} removed")


# ---------------------------------------------------------------- doctor


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Daemon settings (TOML) to check, as given to 'pbx serve --config'.",
)
@click.pass_context
def doctor(ctx: click.Context, config_path: Path | None) -> None:
    """Check config, database, ports and trunks; print what is wrong in plain words.

    One line per check: ok, warn or FAIL. Exit code 0 when nothing FAILs, 1 otherwise.
    """
    from pbx import doctor as checks

    overrides: dict[str, object] = {}
    root = ctx.find_root()
    if root.get_parameter_source("db") != click.core.ParameterSource.DEFAULT:
        overrides["store.path"] = root.params["db"]
    findings = asyncio.run(checks.run_doctor(config_path, os.environ, overrides))
    for finding in findings:
        click.echo(finding.line())
    if checks.failed(findings):
        sys.exit(1)


# ---------------------------------------------------------------- serve


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Daemon settings (TOML), e.g. config/pbx.example.toml.",
)
@click.option("--sip", metavar="HOST:PORT", help="SIP listen address (UDP and TCP).")
@click.option("--rtp-ports", metavar="LOW-HIGH", help="RTP port range for the relay.")
@click.option("--http", metavar="HOST:PORT", help="HTTP listen address (/health).")
@click.pass_context
def serve(
    ctx: click.Context,
    config_path: Path | None,
    sip: str | None,
    rtp_ports: str | None,
    http: str | None,
) -> None:
    """Run the call-tracking daemon until SIGTERM (then drain calls and stop)."""
    from pbx import daemon
    from pbx.config import load_settings, parse_listen, parse_port_range

    overrides: dict[str, object] = {}
    try:
        if sip:
            overrides["sip.host"], overrides["sip.port"] = parse_listen(sip, "--sip")
        if http:
            overrides["http.host"], overrides["http.port"] = parse_listen(http, "--http")
        if rtp_ports:
            low, high = parse_port_range(rtp_ports, "--rtp-ports")
            overrides["rtp.port_low"], overrides["rtp.port_high"] = low, high
        root = ctx.find_root()
        if root.get_parameter_source("db") != click.core.ParameterSource.DEFAULT:
            overrides["store.path"] = root.params["db"]
        settings = load_settings(config_path, os.environ, overrides)
    except InputError as exc:
        raise AdminError(str(exc)) from None
    try:
        daemon.run(settings)
    except OSError as exc:
        _fail(f"cannot start: {exc}", 1)


# ---------------------------------------------------------------- visits, report (issue 6)

_VISIT_COLUMNS = ("started_at", "visitor_id", "source", "number", "fallback", "expires_at",
                  "landing_url", "referrer", "ip", "country", "city")  # fmt: skip


@click.group()
def visits() -> None:
    """Website visits seen by the swap script (newest first)."""


@visits.command("list")
@click.option(
    "--limit", type=click.IntRange(1, 100_000), default=100, show_default=True, help="At most N."
)
@format_option
@click.pass_context
def visits_list(ctx: click.Context, limit: int, fmt: str) -> None:
    """List recent visits: source, number held, landing page, referrer, location."""
    rows = run_store(ctx, lambda s: s.visits.list(limit=limit))
    emit([as_dict(r) for r in rows], fmt, _VISIT_COLUMNS)


@click.group()
def report() -> None:
    """Reports over call records."""


_ROI_COLUMNS = ("source", "calls", "answered", "unique_callers", "first_time_callers", "cost",
                "cost_per_call", "cost_per_answered")  # fmt: skip


def _roi_row(row: Any) -> dict[str, Any]:
    return as_dict(row) | {
        "cost": _money(row.cost_cents),
        "cost_per_call": _money(row.cost_per_call_cents),
        "cost_per_answered": _money(row.cost_per_answered_cents),
    }


@report.command("roi")
@click.option("--month", metavar="YYYY-MM", help="UTC month (default: this month).")
@format_option
@click.pass_context
def report_roi(ctx: click.Context, month: str | None, fmt: str) -> None:
    """Per source: calls, answered, unique and first-time callers, cost per call."""
    try:
        when = admin.parse_month(month or dt.datetime.now(dt.UTC).strftime("%Y-%m"))
    except InputError as exc:
        raise AdminError(_one_line(str(exc))) from None
    rows = run_store(ctx, lambda s: admin.roi_rows(s, when))
    table = [_roi_row(r) for r in rows]
    emit(table, fmt, _ROI_COLUMNS, [as_dict(r) for r in rows])


for _group in (visits, report):
    cli.add_command(_group)
for _group in (trunks, destinations, sources, numbers, calls, block, extensions):
    cli.add_command(_group)
cli.add_command(doctor)
cli.add_command(serve)


def main() -> None:
    """Console-script entry point (`pbx`)."""
    cli.main(prog_name="pbx")


if __name__ == "__main__":
    main()
