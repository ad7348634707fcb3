"""`pbx calls ...`: call records written by the daemon (I/O shell over pbx.records).

Decision: `calls export` prints every field of every matching record (no
default limit, unlike `calls list`); CSV by default, values that a
spreadsheet would run as formulas are defused by `pbx.records.to_csv`.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from pbx import records
from pbx.admin import audio as admin_audio
from pbx.admin import calls as calls_admin
from pbx.commands.common import (
    AdminError,
    config_option,
    emit,
    emit_one,
    format_option,
    number_arg,
    region_of,
    run_store,
    with_params,
)
from pbx.errors import InputError
from pbx.records import CallRecord

MAX_CALL_ROWS = 100_000
_COLUMNS = ("started_at", "caller", "tracking_number", "source", "destination",
            "disposition", "ring_seconds", "talk_seconds", "id")  # fmt: skip


@click.group()
def calls() -> None:
    """Call records (written by the daemon)."""


def parse_since(text: str) -> str:
    """`YYYY-MM-DD` or an ISO 8601 time -> the UTC stamp form records use."""
    try:
        stamp = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise AdminError(f"invalid --since {text!r}: use YYYY-MM-DD or an ISO 8601 time") from None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(dt.UTC).replace(tzinfo=None)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_filters = with_params(
    click.option("--since", metavar="DATE", help="Only calls started at or after DATE (UTC)."),
    click.option("--source", metavar="NAME", help="Only calls attributed to this source."),
    click.option("--number", metavar="NUMBER", help="Only calls to this tracking number."),
    click.option(
        "--disposition",
        type=click.Choice([d.value for d in records.Disposition]),
        help="Only calls that ended so.",
    ),
)


def _matching(
    ctx: click.Context,
    since: str | None,
    source: str | None,
    number: str | None,
    disposition: str | None,
    limit: int | None,
) -> list[CallRecord]:
    """The call records the filter options select, newest first."""
    since_stamp = parse_since(since) if since else None
    e164 = number_arg(number, region_of(ctx)) if number else None
    return run_store(
        ctx,
        lambda s: s.calls.list(
            since=since_stamp, source=source, number=e164, disposition=disposition, limit=limit
        ),
    )


@calls.command("list")
@_filters
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_CALL_ROWS),
    default=100,
    show_default=True,
    help="Newest calls shown.",
)
@format_option
@click.pass_context
def calls_list(ctx: click.Context, /, fmt: str, **filters: Any) -> None:
    """List call records, newest first."""
    rows = _matching(ctx, **filters)
    if fmt == "csv":
        click.echo(records.to_csv(rows).rstrip("\r\n"))
        return
    json_rows = records.to_json_rows(rows)
    emit(json_rows, fmt, _COLUMNS, json_rows)


@calls.command("export")
@_filters
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
def calls_export(ctx: click.Context, /, fmt: str, **filters: Any) -> None:
    """Print every field of the matching call records, newest first, for spreadsheets."""
    rows = _matching(ctx, **filters)
    if fmt == "json":
        click.echo(json.dumps(records.to_json_rows(rows), indent=2))
    else:
        click.echo(records.to_csv(rows), nl=False)


@calls.command("recording")
@click.argument("call_id")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="Write the WAV here (default: CALL_ID.wav in the current directory; - for stdout).",
)  # fmt: skip
@config_option("Daemon settings (TOML) naming [recording] dir.")
@click.pass_context
def calls_recording(
    ctx: click.Context, call_id: str, output: Path | None, config_path: Path | None
) -> None:
    """Write call CALL_ID's recording (stereo WAV: caller left, answerer right)."""
    from pbx.commands.audio import recording_settings

    record = run_store(ctx, lambda s: s.calls.get(call_id))
    if record is None:
        raise AdminError(f"no call record {call_id}")
    folder, _ = recording_settings(ctx, config_path)
    try:
        path = admin_audio.recording_path(folder, record.recording, call_id)
        data = path.read_bytes()
    except InputError as exc:
        raise AdminError(str(exc)) from None
    except OSError as exc:
        raise AdminError(f"cannot read the recording: {exc.strerror or exc}") from None
    if output is not None and str(output) == "-":
        click.get_binary_stream("stdout").write(data)
        return
    target = output or Path(f"{call_id}.wav")
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise AdminError(f"cannot write {target}: {exc.strerror or exc}") from None
    click.echo(f"recording of {call_id} written to {target} ({record.recording_seconds:.1f} s)")
@calls.command("show")
@click.argument("call_id", metavar="ID")
@format_option
@click.pass_context
def calls_show(ctx: click.Context, call_id: str, fmt: str) -> None:
    """Show every field of call record ID (or of the one record whose id starts with ID)."""
    record: CallRecord = run_store(ctx, lambda s: calls_admin.find_call(s, call_id))
    row = records.to_dict(record)
    if fmt != "json":  # the same text as in `calls export` CSV: one format per field
        row["attempts"] = records.attempts_text(record.attempts)
    emit_one(row, fmt)
