"""`pbx prompts ...` and `pbx recordings purge` (I/O shell over pbx.admin.audio).

Decisions: prompt listings never print the PCM (seconds, origin and the text
instead); `prompts show NAME -o FILE` writes the stored prompt as a WAV so
an admin can hear what callers hear. `recordings purge` uses `[recording]
dir` and `retention_days` from `--config` / `PBX_RECORDING_*` unless
`--older-than` is given.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import click

from pbx.admin import audio as admin_audio
from pbx.audio.prompt import RATE
from pbx.audio.wav import encode_pcm16
from pbx.commands import verbs
from pbx.commands.common import (
    AdminError,
    config_option,
    db_override,
    emit_one,
    format_option,
    run_store,
)
from pbx.errors import InputError
from pbx.service.recordings import purge
from pbx.store import StoredPrompt


@click.group()
def prompts() -> None:
    """Audio prompts: consent disclosure, whisper, voicemail greeting."""


def _prompt_row(prompt: StoredPrompt) -> dict[str, Any]:
    return {
        "name": prompt.name,
        "seconds": prompt.seconds,
        "origin": prompt.origin,
        "text": prompt.text,
        "created_at": prompt.created_at,
        "id": prompt.id,
    }


_PROMPTS = verbs.Named(prompts, "prompt", lambda s: s.prompts)
_PROMPTS.list_command("List prompts.", ("name", "seconds", "origin", "text"), row=_prompt_row)
_PROMPTS.remove_command(
    "Remove prompt NAME (refused while a number uses it).",
    force_help="Remove it anyway and clear it from those numbers (they stop recording).",
)


@verbs.change_command(
    prompts,
    "add",
    verbs.NAME,
    click.option(
        "--file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="A PCM WAV (any rate, mono or stereo, at most 60 s); converted to 8 kHz mono.",
    ),
    click.option("--text", metavar="TEXT", help="Text spoken by espeak-ng instead of a file."),
)
def prompts_add(ctx: click.Context, /, name: str, file: Path | None, text: str | None) -> str:
    """Add prompt NAME from --file WAV or --text TEXT (stored converted)."""
    source = admin_audio.PromptSource(file=file, text=text)
    row = run_store(ctx, lambda s: admin_audio.add_prompt(s, name, source), create=True)
    return f"prompt {row.name} added ({row.seconds:.1f} s)"


@prompts.command("show")
@verbs.NAME
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write it as a WAV."
)
@format_option
@click.pass_context
def prompts_show(ctx: click.Context, name: str, output: Path | None, fmt: str) -> None:
    """Show prompt NAME (and with -o FILE write its audio as an 8 kHz WAV)."""
    row = run_store(ctx, lambda s: admin_audio.get_prompt(s, name))
    if output is not None:
        try:
            output.write_bytes(encode_pcm16(row.pcm, rate=RATE))
        except OSError as exc:
            raise AdminError(f"cannot write {output}: {exc.strerror or exc}") from None
    emit_one(_prompt_row(row), fmt)


@click.group()
def recordings() -> None:
    """Call recordings on disk ([recording] dir)."""


@recordings.command("purge")
@config_option("Daemon settings (TOML) naming [recording] dir and retention_days.")
@click.option(
    "--older-than",
    type=int,
    metavar="DAYS",
    help="Delete recordings older than DAYS (default: [recording] retention_days).",
)
@click.pass_context
def recordings_purge(ctx: click.Context, config_path: Path | None, older_than: int | None) -> None:
    """Delete recordings past the retention time (the daemon also does this daily)."""
    folder, retention = recording_settings(ctx, config_path)
    days = retention if older_than is None else older_than
    if days < 0:
        raise AdminError(f"--older-than must be 0 or more days (got {days})")
    result = purge(folder, days, time.time())
    note = f", {result.failed} could not be removed" if result.failed else ""
    click.echo(
        f"{result.removed} recordings removed from {folder} ({result.bytes_freed} bytes){note}"
    )


def recording_settings(ctx: click.Context, config_path: Path | None) -> tuple[Path, int]:
    """`[recording] dir` and `retention_days` as the daemon would see them."""
    from pbx.config import load_settings

    try:
        settings = load_settings(config_path, os.environ, db_override(ctx))
    except InputError as exc:
        raise AdminError(str(exc)) from None
    return settings.recording.dir, settings.recording.retention_days
