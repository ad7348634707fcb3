"""Admin use cases for issue 13: prompts, recordings (through the store and the file system).

Decisions:
- Prompts live in the store (table `prompts`, the converted PCM as a blob:
  8 kHz mono 16-bit, at most 60 s = 960 kB), not as files beside it: one
  backup (`pbx db`), one transaction for "add" (a bad file stores nothing),
  the same on SQLite and PostgreSQL, and every node of a cluster sees them.
- `prompts add --file` reads at most `prompt.MAX_FILE_BYTES` and converts
  once (`pbx.audio.prompt.convert_prompt`); `--text` is spoken by espeak-ng
  (`pbx.audio.tts`). Either failure is one line and nothing is stored.
- A recording is `<[recording] dir>/<record.recording>`; `recording_path`
  refuses a record without one, and a name that is not a plain file name
  (a tampered row must not point outside the directory).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from pbx.admin.provisioning import check_name
from pbx.audio import prompt as prompts
from pbx.audio import tts
from pbx.errors import InputError, NotFoundError
from pbx.records import iso_utc
from pbx.store import Store, StoredPrompt


@dataclass(frozen=True, slots=True)
class PromptSource:
    """What `prompts add` was given: a WAV file's path, or text to speak."""

    file: Path | None = None
    text: str | None = None


def read_wav(path: Path) -> bytes:
    """The bytes of a prompt file, bounded; InputError (one line) if unreadable."""
    try:
        with path.open("rb") as file:
            data = file.read(prompts.MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from None
    return data


def convert(source: PromptSource) -> tuple[prompts.Prompt, str]:
    """The converted prompt and its origin text; InputError for a bad file or text."""
    if (source.file is None) == (source.text is None):
        raise InputError("give exactly one of --file and --text")
    if source.file is not None:
        return prompts.convert_prompt(read_wav(source.file)), f"file {source.file.name}"
    assert source.text is not None
    return tts.text_prompt(source.text), "text"


async def add_prompt(store: Store, name: str, source: PromptSource) -> StoredPrompt:
    name = check_name("prompt", name)
    if await store.prompts.get(name) is not None:  # before converting: a quick clear error
        raise InputError(f"prompt '{name}' already exists")
    converted, origin = convert(source)
    row = StoredPrompt(
        name=name,
        pcm=converted.pcm,
        seconds=round(converted.seconds, 3),
        origin=origin,
        text=source.text,
        created_at=iso_utc(time.time()),
    )
    return await store.prompts.add(row)


async def get_prompt(store: Store, name: str) -> StoredPrompt:
    found = await store.prompts.get(name)
    if found is None:
        raise NotFoundError(f"no prompt named '{name}'")
    return found


def recording_path(folder: Path, name: str | None, call_id: str) -> Path:
    """Where call `call_id`'s recording is; InputError if it has none or it is gone."""
    if not name:
        raise InputError(f"call {call_id} has no recording")
    if Path(name).name != name or not name.endswith(".wav"):
        raise InputError(f"call {call_id} names a bad recording file {name!r}")
    path = folder / name
    if not path.is_file():
        raise InputError(f"recording {path} is gone (purged after the retention time?)")
    return path
