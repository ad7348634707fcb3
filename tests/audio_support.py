"""Builders of WAV files byte by byte, for the audio tests (formats `wave` cannot write)."""

from __future__ import annotations

import struct

import numpy as np
from numpy.typing import NDArray

EXTENSIBLE_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def fmt_chunk(
    tag: int, channels: int, rate: int, bits: int, *, container: int | None = None
) -> bytes:
    size = container if container is not None else (bits + 7) // 8
    block = channels * size
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    return b"fmt " + struct.pack("<I", len(body)) + body


def extensible_fmt_chunk(subformat: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
    guid = struct.pack("<H", subformat) + EXTENSIBLE_TAIL
    body += struct.pack("<HHI", 22, bits, 0x3 if channels == 2 else 0x4) + guid
    return b"fmt " + struct.pack("<I", len(body)) + body


def chunk(chunk_id: bytes, body: bytes, *, size: int | None = None) -> bytes:
    declared = len(body) if size is None else size
    return chunk_id + struct.pack("<I", declared) + body + (b"\0" if len(body) % 2 else b"")


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm_wav(tag: int, channels: int, rate: int, bits: int, data: bytes) -> bytes:
    return riff(fmt_chunk(tag, channels, rate, bits), chunk(b"data", data))


def wav16(samples: NDArray[np.int16], rate: int) -> bytes:
    """A 16-bit WAV of `samples`, shape (frames,) for mono or (frames, channels)."""
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    return pcm_wav(1, channels, rate, 16, samples.astype("<i2").tobytes())


def sine(freq: float, rate: int, seconds: float, amplitude: float = 0.5) -> NDArray[np.float64]:
    t = np.arange(round(rate * seconds)) / rate
    result: NDArray[np.float64] = amplitude * np.sin(2 * np.pi * freq * t)
    return result


def int24(values: list[int]) -> bytes:
    return b"".join((v & 0xFFFFFF).to_bytes(3, "little") for v in values)
