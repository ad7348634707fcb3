"""One call's recording file: RTP in, stereo WAV on disk (I/O edge: writes a file).

The media engine owns one `RecordingFile` per recorded session and feeds it
every RTP packet it forwards, with the leg it came from and the loop time
it arrived. The pure parts do the work: `pbx.audio.recorder.StereoRecorder`
decodes G.711 and puts both legs on one sample clock (caller left,
answerer right; its docstring gives the alignment rule and the offset
allowed between the channels), `pbx.audio.wav.StereoWavWriter` counts the
data and builds the headers.

Decisions:
- Streamed, header fixed at close: the file starts with a zero-size header
  and frames are appended as the recorder emits them, so a crash leaves a
  file `pbx.service.recordings.repair_all` (the start-up sweep) can fix.
- Writes go through a 64 KiB buffered file object on the event loop: at
  32 kB/s of stereo audio that is one write(2) every two seconds, into the
  page cache (it does not wait for the disk). No per-packet allocation here
  beyond the recorder's output bytes.
- A write error (disk full, I/O error, the directory removed) stops the
  recording for the rest of the call: the call goes on, what was written
  stays (with its zero-size header, which the next start-up sweep fixes),
  and `result().error` carries the reason for the record and one log line.
- `repair_file` fixes the header of a file whose writer is gone (a crash,
  a media worker that died): the start-up sweep
  (`pbx.service.recordings.repair_all`) and the worker-process engine,
  for a worker that died while recording, use it; `salvaged` is then the
  `RecordingResult` of what the file holds.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from pbx.audio import wav
from pbx.audio.recorder import RATE, Side, StereoRecorder
from pbx.audio.wav import StereoWavWriter
from pbx.rtp.media import Leg, MediaError, RecordingResult

BUFFER = 64 * 1024
_SIDES: dict[Leg, Side] = {"inbound": Side.CALLER, "outbound": Side.ANSWERER}


class RecordingFile:
    """A stereo WAV being written from a call's RTP; see the module docstring."""

    __slots__ = ("_file", "_start", "error", "path", "recorder", "writer")

    def __init__(self, path: str, start: float) -> None:
        self.path = path
        self.recorder = StereoRecorder()
        self.writer = StereoWavWriter()
        self.error: str | None = None
        self._start = start
        try:
            self._file: BinaryIO | None = open(path, "wb", buffering=BUFFER)  # noqa: SIM115
            self._file.write(self.writer.begin())
        except OSError as exc:
            raise MediaError(f"cannot write {path}: {exc.strerror or exc}") from None

    def feed(self, leg: Leg, packet: bytes, now: float) -> None:
        """One forwarded RTP packet from `leg`, arrived at loop time `now`."""
        if self._file is None:
            return
        arrival = round((now - self._start) * RATE)
        frames = self.recorder.feed_rtp(_SIDES[leg], packet, arrival=arrival)
        if frames:
            self._append(frames)

    def advance(self, now: float) -> None:
        """Time passed: silence on both sides is written too."""
        if self._file is not None:
            frames = self.recorder.advance(round((now - self._start) * RATE))
            if frames:
                self._append(frames)

    def close(self) -> RecordingResult:
        """Flush, fix the header, close; idempotent."""
        file = self._file
        if file is not None:
            self._append(self.recorder.flush())
            file = self._file  # a failed last write closed it
        if file is not None:
            try:
                file.flush()
                file.seek(0)
                file.write(self.writer.finish())
                file.close()
            except OSError as exc:
                self._fail(exc)
            self._file = None
        return self.result()

    def abandon(self) -> None:
        """Flush what was recorded but leave the header saying 0 bytes, and close: the
        writer's owner is gone (a media worker whose daemon died), so the start-up sweep
        repairs the file and names it in its call record, as after a crash."""
        file = self._file
        if file is None:
            return
        self._append(self.recorder.flush())
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()

    def result(self) -> RecordingResult:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            size = 0
        return RecordingResult(self.path, round(self.writer.seconds, 3), size, self.error)

    def _append(self, frames: bytes) -> None:
        if self._file is None or not frames:
            return
        try:
            self._file.write(self.writer.append(frames))
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: OSError) -> None:
        self.error = exc.strerror or str(exc)
        file, self._file = self._file, None
        if file is not None:
            with contextlib.suppress(OSError):
                file.close()


def repair_file(path: Path) -> bool:
    """Fix the header of one recording if it needs it; True if it was changed."""
    with path.open("r+b") as file:
        head = file.read(wav.HEADER_SIZE)
        size = os.fstat(file.fileno()).st_size
        if not wav.needs_repair(head, size):
            return False
        fix = wav.repair(size)
        if size < wav.HEADER_SIZE:
            file.seek(0)
            file.write(fix.header)
        else:
            file.truncate(fix.size)
            file.seek(0)
            file.write(fix.header)
    return True


def salvaged(path: str, error: str) -> RecordingResult:
    """Repair `path` (its writer died) and say what it holds, with `error` as the note."""
    try:
        repair_file(Path(path))
        size = os.path.getsize(path)
    except OSError as exc:
        return RecordingResult(path, 0.0, 0, f"{error}; {exc.strerror or exc}")
    frames = max(0, size - wav.HEADER_SIZE) // (wav.RECORDING_CHANNELS * 2)
    return RecordingResult(path, round(frames / RATE, 3), size, error)
