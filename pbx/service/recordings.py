"""Recording files on disk: the start-up repair sweep, retention purge, the daily task (I/O).

Files are `<[recording] dir>/<call record id>.wav`, written by the media
engine (`pbx.rtp.recording`). The functions here are blocking file-system
work; the daemon runs them in a worker thread (`asyncio.to_thread`), the
CLI calls them directly.

Decisions:
- Repair (start-up sweep): a file whose header does not match its size
  (`pbx.audio.wav.needs_repair`) was cut off by a crash or a full disk; its
  header is rewritten and a trailing partial frame cut, so every file in
  the directory plays. Only `*.wav` files directly in the directory are
  touched; a file that cannot be read or written is counted, not fatal.
- A repaired file is named in its call record (`<id>.wav` is record `id`),
  with a note, because a crash leaves the record without it: the name is
  written with the final record.
- Purge: files whose modification time is older than the retention are
  deleted (mtime = when the recording stopped being written). 0 days keeps
  everything. The call records keep their `recording` name; `pbx calls
  recording` then says the file is gone.
- The daemon runs the purge once at start and then every `PURGE_EVERY`
  seconds (a day); one log line per run that removed or repaired anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from pbx.audio import wav
from pbx.rtp.recording import repair_file
from pbx.store import Store

log = structlog.get_logger("pbx.recordings")

PURGE_EVERY = 24 * 3600.0
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class SweepResult:
    repaired: int = 0
    removed: int = 0
    failed: int = 0
    bytes_freed: int = 0
    paths: tuple[tuple[Path, int], ...] = ()  # the files repaired, with their sizes now


def _recordings(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.suffix == ".wav" and p.is_file())
    except OSError:  # missing or unusable (prepare() logged it): nothing to sweep
        return []


def repair_all(folder: Path) -> SweepResult:
    """The start-up sweep: every recording in `folder` gets a header matching its size."""
    repaired: list[tuple[Path, int]] = []
    failed = 0
    for path in _recordings(folder):
        try:
            if repair_file(path):
                repaired.append((path, path.stat().st_size))
        except OSError:
            failed += 1
    return SweepResult(repaired=len(repaired), failed=failed, paths=tuple(repaired))


def purge(folder: Path, older_than_days: float, now: float) -> SweepResult:
    """Delete recordings last written more than `older_than_days` before `now` (epoch s)."""
    if older_than_days <= 0:
        return SweepResult()
    cutoff = now - older_than_days * DAY
    removed = failed = freed = 0
    for path in _recordings(folder):
        try:
            stat = path.stat()
            if stat.st_mtime < cutoff:
                path.unlink()
                removed += 1
                freed += stat.st_size
        except OSError:
            failed += 1
    return SweepResult(removed=removed, failed=failed, bytes_freed=freed)


def prepare(folder: Path) -> None:
    """Create the directory (a failure is one log line: calls then note the failure)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.warning("recording.dir_unusable", dir=str(folder), error=exc.strerror or str(exc))


async def start_up(folder: Path, store: Store) -> None:
    """Create the directory, repair files a crash cut off (in a worker thread) and name
    each in its call record (a crash leaves the record without it: it is written at the end).
    """
    prepare(folder)
    result = await asyncio.to_thread(repair_all, folder)
    if result.repaired or result.failed:
        log.warning("recording.repaired", dir=str(folder), repaired=result.repaired,
                    failed=result.failed)  # fmt: skip
    for path, size in result.paths:
        await _name_in_record(store, path, size)


async def _name_in_record(store: Store, path: Path, size: int) -> None:
    record = await store.calls.get(path.stem)
    if record is None or record.recording is not None:
        return
    note = "recording cut off by a restart"
    await store.calls.update(replace(
        record, recording=path.name, recording_bytes=size,
        recording_seconds=round(max(0, size - wav.HEADER_SIZE) / 32000, 3),
        media_note=note if record.media_note is None else f"{record.media_note}; {note}",
    ))  # fmt: skip


async def purge_daily(folder: Path, retention_days: int) -> None:
    """Run forever: purge now, then once a day (cancel the task to stop it)."""
    while True:
        with contextlib.suppress(OSError):
            result = await asyncio.to_thread(purge, folder, retention_days, time.time())
            if result.removed or result.failed:
                log.info("recording.purged", dir=str(folder), removed=result.removed,
                         failed=result.failed, bytes_freed=result.bytes_freed)  # fmt: skip
        await asyncio.sleep(PURGE_EVERY)
