"""`pbx sources ...`: advertising channels (I/O shell over pbx.admin: provisioning, presets)."""

from __future__ import annotations

from typing import Any

import click

from pbx.admin import provisioning as admin
from pbx.admin.presets import load_presets
from pbx.commands import verbs
from pbx.commands.common import (
    AdminError,
    Decorator,
    as_dict,
    emit,
    format_option,
    money,
    money_fields,
    one_line,
    region_of,
    run_store,
)
from pbx.errors import InputError
from pbx.numbers import normalise
from pbx.store.base import Source


@click.group()
def sources() -> None:
    """Advertising channels that tracking numbers stand for."""


_COLUMNS = ("name", "preset", "type", "position", "tag", "cost", "enabled")


def _options(*, adding: bool) -> list[Decorator]:
    opts: list[Decorator] = [
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
        click.option("--cost-per-call", metavar="AMOUNT", help="Cost of each call, e.g. 12.50."),
        click.option("--monthly-budget", metavar="AMOUNT", help="Monthly spend, e.g. 300.00."),
        click.option(
            "--record/--no-record",
            default=None,
            help="Record the calls of every number of this source (docs/recording.md).",
        ),
        click.option(
            "--disclosure",
            metavar="PROMPT",
            help="Consent prompt for its numbers that name none ('' clears).",
        ),
    ]
    if not adding:
        opts += [
            click.option("--no-cost", is_flag=True, help="Clear the cost."),
            click.option(
                "--enable/--disable", "enabled", default=None, help="Use or ignore this source."
            ),
            click.option("--rename", metavar="NEW", help="New name."),
        ]
    return _attribution_options() + opts  # listed first in --help


def _attribution_options() -> list[Decorator]:
    """Issue 6 source options: GA4 fields, GeoContact, pool fallback number."""
    ga = "GA4 for this source's calls"
    return [
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


def _source_opts(kw: dict[str, Any], region: str) -> admin.SourceOptions:
    """The CLI's source options with --fallback-number in E.164 (bad input: exit 2)."""
    fallback = kw.get("fallback_number")
    if fallback:
        try:
            kw = {**kw, "fallback_number": normalise(fallback, region)}
        except InputError as exc:
            raise AdminError(one_line(f"--fallback-number: {exc}")) from None
    return admin.SourceOptions(**kw)


def _source_public(source: Source) -> dict[str, Any]:
    """Every field, money as entered (`12.50`, not cents), in every format."""
    return money_fields(as_dict(source))


def _source_row(source: Source) -> dict[str, Any]:
    row = _source_public(source)
    row["type"] = "onsite" if source.onsite else "offsite"
    if source.cost_per_call_cents is not None:
        row["cost"] = f"{money(source.cost_per_call_cents)}/call"
    elif source.monthly_budget_cents is not None:
        row["cost"] = f"{money(source.monthly_budget_cents)}/month"
    return row


_PRESET = "Start from a preset (see 'pbx sources presets')."


@verbs.change_command(
    sources,
    "add",
    click.argument("name", required=False),
    click.option("--preset", metavar="KEY", help=_PRESET),
    *_options(adding=True),
)
def sources_add(ctx: click.Context, /, name: str | None, preset: str | None, **kw: Any) -> str:
    """Add source NAME (NAME defaults to the preset's name)."""
    opts = _source_opts(kw, region_of(ctx))
    source = run_store(ctx, lambda s: admin.add_source(s, name, preset, opts), create=True)
    return f"source {source.name} added ({'onsite' if source.onsite else 'offsite'})"


@sources.command("presets")
@format_option
def sources_presets(fmt: str) -> None:
    """List the ready-made sources for --preset."""
    try:
        presets = load_presets()
    except InputError as exc:
        raise click.ClickException(one_line(str(exc))) from None
    rows = [as_dict(p) for p in presets.values()]
    emit(rows, fmt, ("key", "name", "type", "position", "description"))


@verbs.change_command(sources, "update", verbs.NAME, *_options(adding=False))
def sources_update(ctx: click.Context, /, name: str, **kw: Any) -> str:
    """Change source NAME (only the options given)."""
    opts = _source_opts(kw, region_of(ctx))
    source = run_store(ctx, lambda s: admin.update_source(s, name, opts))
    return f"source {source.name} updated"


_SOURCES = verbs.Named(sources, "source", lambda s: s.sources)
_SOURCES.list_command(
    "List sources (onsite ones in rule order).", _COLUMNS, row=_source_row,
    json_row=_source_public,
)  # fmt: skip
_SOURCES.show_command("Show every field of source NAME.", row=_source_public)
_SOURCES.remove_command("Remove source NAME (refused while it has numbers).")
