"""`pbx numbers ...`: tracking numbers (I/O shell over pbx.admin.provisioning).

Decision: `numbers list` keeps its table/CSV columns (the README quickstart
shows them); business hours, after-hours list and caller-ID option are in its
JSON and in `numbers show`, hours as the text `--hours` accepts.
"""

from __future__ import annotations

from typing import Any

import click

from pbx.admin import provisioning as admin
from pbx.commands import verbs
from pbx.commands.common import AdminError, Decorator, as_dict, region_of, run_store
from pbx.store.base import TrackingNumber


@click.group()
def numbers() -> None:
    """Tracking numbers: the DIDs the public dials."""


_COLUMNS = ("number", "source", "destinations", "strategy", "ring_timeout", "trunk", "location")
_NUMBER = click.argument("number")


# The options `numbers add` and `numbers update` share, in --help order.
_SETTINGS: list[Decorator] = [
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
    click.option("--trunk", metavar="NAME", help="Trunk for outbound legs ('' = default trunk)."),
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
    click.option("--enable/--disable", "enabled", default=None, help="Answer or refuse its calls."),
    # Audio (issue 13): see docs/recording.md; recording is off by default.
    click.option(
        "--record/--no-record",
        default=None,
        help="Record answered calls (stereo WAV under [recording] dir). Consent law "
        "differs: see docs/recording.md.",
    ),
    click.option(
        "--disclosure",
        metavar="PROMPT",
        help="Prompt both parties hear after answer, before being connected; "
        "recording starts after it ('' clears).",
    ),
    click.option(
        "--whisper", metavar="PROMPT", help="Prompt only the answerer hears first ('' clears)."
    ),
    click.option(
        "--whisper-text",
        metavar="TEXT",
        help='Whisper spoken per call, e.g. "Call from {source} on {number}" '
        "(fields: source, number, caller, tag; '' clears).",
    ),
    click.option(
        "--screen/--no-screen",
        default=None,
        help="The answerer must press 1 or the next destination is tried.",
    ),
    click.option(
        "--screen-seconds", type=int, metavar="SECONDS", help="Time to press 1 (default 5)."
    ),
    click.option(
        "--voicemail",
        metavar="PROMPT",
        help="Greeting when nobody answers; the caller is then recorded ('' clears).",
    ),
    click.option(
        "--voicemail-seconds",
        type=int,
        metavar="SECONDS",
        help="Longest voicemail message (default 120).",
    ),
]


def _options(*, adding: bool) -> list[Decorator]:
    """--source and --destination (required to add), then the options add and update share."""
    replaces = "." if adding else " (replaces the list)."
    return [
        click.option(
            "--source", required=adding, metavar="NAME", help="Source the number stands for."
        ),
        click.option(
            "--destination",
            "destinations",
            multiple=True,
            required=adding,
            metavar="NAME",
            help="Where calls go; repeat, in order" + replaces,
        ),
        *_SETTINGS,
    ]


def _number_opts(kw: dict[str, Any]) -> admin.NumberOptions:
    dests = tuple(kw.pop("destinations", ())) or None
    after = tuple(kw.pop("after_hours", ())) or None
    if kw.pop("no_hours", False):
        if kw.get("hours"):
            raise AdminError("give only one of --hours and --no-hours")
        kw["hours"] = ""
    return admin.NumberOptions(destinations=dests, after_hours=after, **kw)


def _number_row(number: TrackingNumber) -> dict[str, Any]:
    """A number for output: `hours` as the text `--hours` takes, not the stored JSON."""
    row = as_dict(number)
    row["hours"] = admin.hours_text(number.hours)
    return row


@verbs.change_command(numbers, "add", _NUMBER, *_options(adding=True))
def numbers_add(ctx: click.Context, /, number: str, **kw: Any) -> str:
    """Add tracking NUMBER (any usual spelling; stored as E.164)."""
    opts = _number_opts(kw)
    row = run_store(ctx, lambda s: admin.add_number(s, number, opts, region_of(ctx)), create=True)
    where = f", {row.location}" if row.location else ""
    return f"number {row.number} added (source {row.source}{where})"


_SOURCE = click.option("--source", metavar="NAME", help="Only this source's numbers.")


@verbs.list_command(numbers, _COLUMNS, _SOURCE, row=_number_row)
def numbers_list(ctx: click.Context, source: str | None) -> list[TrackingNumber]:
    """List tracking numbers."""
    return run_store(ctx, lambda s: s.numbers.list(source=source))


@verbs.show_command(numbers, _NUMBER, row=_number_row)
def numbers_show(ctx: click.Context, number: str) -> TrackingNumber:
    """Show every field of tracking NUMBER."""
    return run_store(ctx, lambda s: admin.get_number(s, number, region_of(ctx)))


@verbs.change_command(numbers, "update", _NUMBER, *_options(adding=False))
def numbers_update(ctx: click.Context, /, number: str, **kw: Any) -> str:
    """Change tracking NUMBER (only the options given)."""
    opts = _number_opts(kw)
    row = run_store(ctx, lambda s: admin.update_number(s, number, opts, region_of(ctx)))
    return f"number {row.number} updated"


@verbs.change_command(numbers, "remove", _NUMBER)
def numbers_remove(ctx: click.Context, number: str) -> str:
    """Remove tracking NUMBER."""
    e164 = run_store(ctx, lambda s: admin.remove_number(s, number, region_of(ctx)))
    return f"number {e164} removed"
