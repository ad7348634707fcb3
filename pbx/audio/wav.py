"""RIFF/WAVE: parse any PCM WAV into samples, write 16-bit WAV headers (pure).

Parsing (`read_info` then `decode`, or `parse` for both) accepts integer PCM of
8 (unsigned), 16, 24 and 32 bits, IEEE float of 32 and 64 bits, plain or as
WAVE_FORMAT_EXTENSIBLE with a PCM or float sub-format (Microsoft's "Multiple
channel audio data and WAVE files"; the GUID tail is the KSDATAFORMAT base).
Samples come out as float32 in [-1, 1], shape (frames, channels). Anything
else raises `WavError`, an `InputError` whose message is one line.

Decisions where the format is loose:
- The RIFF size is not checked: many writers get it wrong, and the chunk
  walk finds the chunks anyway. Unknown chunks (LIST, fact, cue) are
  skipped, odd-sized ones with their pad byte (RIFF's word alignment).
- A data chunk whose size is a streaming placeholder (0xFFFFFFFF, or
  0x7FFFF000 as espeak-ng and sox write to a pipe) runs to the end of the
  file. Any other data size past the end of the file is a truncated file,
  refused, not guessed at.
- A trailing partial frame is dropped; zero whole frames is "empty".
- The container size comes from block_align / channels (so 12-bit in 16-bit
  containers works); it must hold the declared bits.
- Bounded: at most `MAX_CHUNKS` chunks walked, `MAX_CHANNELS` channels,
  rates 1 Hz to `MAX_RATE`. Callers bound the file size before reading it.

Writing: recordings are streamed as 16-bit PCM (8 kHz stereo by default),
so the header is written first with a zero size and rewritten at the end.
Everything here only builds bytes; the I/O edge writes them. A file cut off
mid-write (crash, kill -9, power) keeps its placeholder header; `repair`
says which header to write at offset 0 and where to truncate (data = file
size - 44, rounded down to whole frames) so the start-up sweep can fix it.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pbx.errors import InputError

HEADER_SIZE = 44  # RIFF(12) + fmt chunk(8 + 16) + data chunk header(8)
MAX_CHUNKS = 64
MAX_CHANNELS = 8
MAX_RATE = 384_000
OPEN_ENDED_SIZES = frozenset({0xFFFFFFFF, 0x7FFFF000})
_MAX_RIFF = 0xFFFFFFFF

FORMAT_PCM = 0x0001
FORMAT_FLOAT = 0x0003
FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* = format code (2 bytes LE) + this fixed tail.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
_CHUNK = struct.Struct("<4sI")
_FMT = struct.Struct("<HHIIHH")


class WavError(InputError):
    """Not a WAV, truncated, unsupported or empty: one line for a human."""


class Encoding(enum.Enum):
    """How samples are stored."""

    PCM = "integer PCM"
    FLOAT = "IEEE float"


@dataclass(frozen=True, slots=True)
class WavInfo:
    """What the header says: enough to check limits before decoding anything."""

    rate: int
    channels: int
    encoding: Encoding
    bits: int  # significant bits as declared
    container: int  # bytes per sample as stored
    data_offset: int
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True, slots=True)
class Wav:
    """Decoded audio: float32 samples in [-1, 1], shape (frames, channels)."""

    rate: int
    channels: int
    samples: NDArray[np.float32]

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


@dataclass(frozen=True, slots=True)
class _Fmt:
    tag: int
    channels: int
    rate: int
    block_align: int
    bits: int


def _parse_fmt(body: bytes) -> _Fmt:
    if len(body) < _FMT.size:
        raise WavError(f"truncated WAV: fmt chunk is {len(body)} bytes, needs 16")
    tag, channels, rate, _byte_rate, block_align, bits = _FMT.unpack_from(body)
    if tag == FORMAT_EXTENSIBLE:
        tag = _extensible_subformat(body)
    return _Fmt(tag, channels, rate, block_align, bits)


def _extensible_subformat(body: bytes) -> int:
    """The real format code inside a WAVE_FORMAT_EXTENSIBLE fmt chunk."""
    if len(body) < 40:
        raise WavError("truncated WAV: WAVE_FORMAT_EXTENSIBLE fmt chunk under 40 bytes")
    guid = body[24:40]
    if guid[2:] != _GUID_TAIL:
        raise WavError("unsupported WAV format: unknown WAVE_FORMAT_EXTENSIBLE sub-format")
    return int.from_bytes(guid[:2], "little")


def _encoding_of(fmt: _Fmt) -> tuple[Encoding, int]:
    """(encoding, container bytes) or WavError for anything not decodable."""
    if fmt.tag not in (FORMAT_PCM, FORMAT_FLOAT):
        raise WavError(f"unsupported WAV format: code 0x{fmt.tag:04x} (only PCM and float)")
    if not 1 <= fmt.channels <= MAX_CHANNELS:
        raise WavError(f"unsupported WAV format: {fmt.channels} channels (1-{MAX_CHANNELS})")
    if not 1 <= fmt.rate <= MAX_RATE:
        raise WavError(f"unsupported WAV format: sample rate {fmt.rate} Hz")
    if fmt.block_align % fmt.channels:
        raise WavError("bad WAV header: block align is not a whole number of samples")
    container = fmt.block_align // fmt.channels
    encoding = Encoding.PCM if fmt.tag == FORMAT_PCM else Encoding.FLOAT
    allowed = (1, 2, 3, 4) if encoding is Encoding.PCM else (4, 8)
    if container not in allowed or not 0 < fmt.bits <= container * 8:
        raise WavError(f"unsupported WAV format: {fmt.bits}-bit {encoding.value}")
    return encoding, container


def _chunks(data: bytes) -> list[tuple[bytes, int, int]]:
    """(id, body offset, declared size) of each chunk, stopping after `data`."""
    found: list[tuple[bytes, int, int]] = []
    offset = 12
    while offset + _CHUNK.size <= len(data) and len(found) < MAX_CHUNKS:
        chunk_id, size = _CHUNK.unpack_from(data, offset)
        found.append((chunk_id, offset + _CHUNK.size, size))
        if chunk_id == b"data":
            break
        offset += _CHUNK.size + size + (size & 1)
    return found


def read_info(data: bytes) -> WavInfo:
    """The header of a WAV file in `data`; WavError if it is not a usable one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("not a WAV file (no RIFF/WAVE header)")
    fmt: _Fmt | None = None
    for chunk_id, body, size in _chunks(data):
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body : body + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("bad WAV file: data chunk before the fmt chunk")
            return _info(fmt, body, _data_size(data, body, size))
    if fmt is None:
        raise WavError("truncated WAV: no fmt chunk")
    raise WavError("truncated WAV: no data chunk")


def _data_size(data: bytes, body: int, size: int) -> int:
    available = len(data) - body
    if size in OPEN_ENDED_SIZES:
        return available
    if size > available:
        raise WavError(f"truncated WAV: data chunk says {size} bytes, file has {available}")
    return size


def _info(fmt: _Fmt, body: int, size: int) -> WavInfo:
    encoding, container = _encoding_of(fmt)
    frames = size // fmt.block_align
    if frames == 0:
        raise WavError("empty WAV: no audio frames")
    return WavInfo(fmt.rate, fmt.channels, encoding, fmt.bits, container, body, frames)


def decode(data: bytes, info: WavInfo) -> Wav:
    """The samples `info` (from `read_info(data)`) describes, as float32 in [-1, 1]."""
    count = info.frames * info.channels
    raw = data[info.data_offset : info.data_offset + count * info.container]
    flat = _decode_flat(raw, info.encoding, info.container)
    return Wav(info.rate, info.channels, flat.reshape(info.frames, info.channels))


def parse(data: bytes) -> Wav:
    """`read_info` and `decode` in one step."""
    return decode(data, read_info(data))


# container bytes -> (numpy dtype, value of silence, full scale); 8-bit WAV is unsigned.
_INT_LAYOUT = {1: ("u1", 128.0, 128.0), 2: ("<i2", 0.0, 32768.0), 4: ("<i4", 0.0, 2147483648.0)}


def _decode_flat(raw: bytes, encoding: Encoding, container: int) -> NDArray[np.float32]:
    if encoding is Encoding.FLOAT:
        wide = np.frombuffer(raw, dtype="<f4" if container == 4 else "<f8")
        clean = np.nan_to_num(wide, nan=0.0, posinf=1.0, neginf=-1.0)
        result: NDArray[np.float32] = np.clip(clean, -1.0, 1.0).astype(np.float32)
        return result
    if container == 3:
        return _decode_24(raw)
    dtype, zero, scale = _INT_LAYOUT[container]
    values = np.frombuffer(raw, dtype=dtype).astype(np.float64)
    result = ((values - zero) / scale).astype(np.float32)
    return result


def _decode_24(raw: bytes) -> NDArray[np.float32]:
    triples = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
    # Put the three bytes in the top of an int32 and shift back: sign extension for free.
    value = (triples[:, 0] << 8) | (triples[:, 1] << 16) | (triples[:, 2] << 24)
    result: NDArray[np.float32] = (value >> 8).astype(np.float32) / np.float32(8388608.0)
    return result


# --- writing (16-bit PCM) ------------------------------------------------------------------

RECORDING_RATE = 8000
RECORDING_CHANNELS = 2
_BITS = 16


def header(
    data_bytes: int, *, rate: int = RECORDING_RATE, channels: int = RECORDING_CHANNELS
) -> bytes:
    """The 44-byte header of a 16-bit PCM WAV whose data chunk holds `data_bytes`."""
    block_align = channels * _BITS // 8
    if data_bytes < 0 or data_bytes % block_align:
        raise ValueError(
            f"data size {data_bytes} is not a whole number of {block_align}-byte frames"
        )
    if data_bytes > _MAX_RIFF - (HEADER_SIZE - 8):
        raise ValueError(f"data size {data_bytes} does not fit a RIFF file (4 GiB)")
    return (
        _CHUNK.pack(b"RIFF", HEADER_SIZE - 8 + data_bytes)
        + b"WAVE"
        + _CHUNK.pack(b"fmt ", _FMT.size)
        + _FMT.pack(FORMAT_PCM, channels, rate, rate * block_align, block_align, _BITS)
        + _CHUNK.pack(b"data", data_bytes)
    )


def encode_pcm16(pcm: bytes, *, rate: int, channels: int = 1) -> bytes:
    """A whole 16-bit WAV file holding `pcm` (e.g. a stored 8 kHz mono prompt)."""
    return header(len(pcm), rate=rate, channels=channels) + pcm


@dataclass(frozen=True, slots=True)
class Repair:
    """How to fix a recording cut off mid-write: write `header` at 0, truncate to `size`."""

    header: bytes
    size: int


def repair(
    file_size: int, *, rate: int = RECORDING_RATE, channels: int = RECORDING_CHANNELS
) -> Repair:
    """The repair of a streamed recording of `file_size` bytes (whole frames kept)."""
    block_align = channels * _BITS // 8
    data = max(0, file_size - HEADER_SIZE)
    data -= data % block_align
    data = min(data, (_MAX_RIFF - (HEADER_SIZE - 8)) // block_align * block_align)
    return Repair(header(data, rate=rate, channels=channels), HEADER_SIZE + data)


def fixed_header_for(file_size: int) -> bytes:
    """The header a stereo 8 kHz recording of `file_size` bytes should have."""
    return repair(file_size).header


def needs_repair(head: bytes, file_size: int) -> bool:
    """True if a recording's first 44 bytes (`head`) do not match its size on disk."""
    fix = repair(file_size)
    return head[:HEADER_SIZE] != fix.header or file_size != fix.size


class StereoWavWriter:
    """Sans-IO streamed recording: returns the bytes to write; counts what was appended.

    The I/O edge writes `begin()` at offset 0, appends what `append` returns,
    and on hang-up writes `finish()` at offset 0 again. Until then the header
    says 0 bytes of data, which `repair` fixes after a crash.
    """

    def __init__(self, *, rate: int = RECORDING_RATE, channels: int = RECORDING_CHANNELS) -> None:
        self.rate = rate
        self.channels = channels
        self.data_bytes = 0
        self._block_align = channels * _BITS // 8

    def begin(self) -> bytes:
        return header(0, rate=self.rate, channels=self.channels)

    def append(self, frames: bytes) -> bytes:
        if len(frames) % self._block_align:
            raise ValueError(f"{len(frames)} bytes is not whole {self._block_align}-byte frames")
        self.data_bytes += len(frames)
        return frames

    def finish(self) -> bytes:
        return header(self.data_bytes, rate=self.rate, channels=self.channels)

    @property
    def seconds(self) -> float:
        return self.data_bytes / self._block_align / self.rate
