"""Prompts: any PCM WAV converted once to 8 kHz mono 16-bit (pure).

`convert_prompt(wav_bytes)` reads the file with `pbx.audio.wav`, checks the
limits on the header alone (so a huge file is refused before anything is
decoded), downmixes by averaging the channels, and resamples to 8 kHz with
libsoxr (the `soxr` package, "HQ" quality: a proper band-limited resampler,
so nothing above 4 kHz folds back into the telephone band). The result is
the stored form: a `Prompt` whose `pcm` the media engine encodes to G.711.

Limits, each refused with one line (`PromptError` or `WavError`, both
`InputError`): not a WAV or undecodable, no audio, longer than 60 s, a file
over `MAX_FILE_BYTES` (64 MiB: a minute of 96 kHz 24-bit stereo is 35 MB).
A stored prompt (already 8 kHz mono 16-bit) converts to itself exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr
from numpy.typing import NDArray

from pbx.audio import wav
from pbx.errors import InputError

RATE = 8000
MAX_SECONDS = 60.0
MAX_FILE_BYTES = 64 * 1024 * 1024
_FULL_SCALE = 32768.0  # wav.decode divides by this; multiplying back is exact for 16-bit


class PromptError(InputError):
    """A WAV that cannot be a prompt (too long, too large, empty): one line."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt as stored and played: 8 kHz mono signed 16-bit little-endian PCM."""

    pcm: bytes

    @property
    def frames(self) -> int:
        return len(self.pcm) // 2

    @property
    def seconds(self) -> float:
        return self.frames / RATE

    def samples(self) -> NDArray[np.int16]:
        return np.frombuffer(self.pcm, dtype="<i2")

    def to_wav(self) -> bytes:
        """The prompt as a WAV file (what the store keeps and `prompts show` can export)."""
        return wav.encode_pcm16(self.pcm, rate=RATE, channels=1)


def convert_prompt(wav_bytes: bytes) -> Prompt:
    """Any PCM WAV as a `Prompt`; WavError / PromptError (one line) when it cannot be one."""
    if len(wav_bytes) > MAX_FILE_BYTES:
        raise PromptError(
            f"prompt file is {len(wav_bytes)} bytes; the limit is {MAX_FILE_BYTES} (64 MiB)"
        )
    info = wav.read_info(wav_bytes)
    if info.seconds > MAX_SECONDS:
        raise PromptError(f"prompt is {info.seconds:.1f} s long; the limit is {MAX_SECONDS:.0f} s")
    audio = wav.decode(wav_bytes, info)
    mono = audio.samples.mean(axis=1, dtype=np.float64)
    if audio.rate != RATE:
        mono = soxr.resample(mono, audio.rate, RATE, quality="HQ")
    pcm = np.clip(np.round(mono * _FULL_SCALE), -32768, 32767).astype("<i2")
    if len(pcm) == 0:
        raise PromptError("prompt is shorter than one sample at 8 kHz")
    return Prompt(bytes(pcm.tobytes()))
