"""ITU-T G.711 PCMU (mu-law) and PCMA (A-law) over 16-bit PCM (pure).

Bytes in, bytes out: G.711 payloads are one byte per sample, PCM is signed
16-bit little-endian (the WAV and recorder format). Both directions are
table lookups done by numpy, so one 20 ms frame (160 samples) costs a few
microseconds and no Python loop runs per sample:

- decode: a 256-entry int16 table per law, indexed by the code byte;
- encode: a 65536-entry uint8 table per law, indexed by the sample's 16 bits.

The tables are computed once at import from the G.711 segment rules
(ITU-T G.711 tables 1a/1b and 2a/2b; eight segments of sixteen steps, the
step doubling from one segment to the next), scaled to 16 bits:

- mu-law: magnitude clipped to 32635, biased by 132 (= 33 in the 14-bit
  domain), segment = position of the top bit; code bits inverted on the wire
  (so 0xFF and 0x7F are +0 and -0). Decoded range +-32124.
- A-law: 13-bit domain (16-bit >> 3); segment 0 is linear; even bits
  inverted on the wire (XOR 0x55), bit 7 set for positive. 0xD5/0x55 decode
  to +-8 (A-law has no zero code). Decoded range +-32256.

Both encoders truncate within a step and both decoders return the middle of
the step, so the round-trip error is at most half a step: |x|/32 + 4 or so
(see `max_error`). Payload types are RFC 3551 §6 static ones.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

PT_PCMU = 0  # RFC 3551 §6 table 4
PT_PCMA = 8
SAMPLE_RATE = 8000
SILENCE = {PT_PCMU: 0xFF, PT_PCMA: 0xD5}  # codes that decode to (nearly) zero

_ULAW_BIAS = 0x84
_ULAW_CLIP = 32635


def _top_bit(values: NDArray[np.int32]) -> NDArray[np.int32]:
    """Index of the highest set bit of each positive value (floor(log2))."""
    return np.floor(np.log2(values)).astype(np.int32)


def _ulaw_decode_table() -> NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    seg = (code >> 4) & 7
    mag = (((code & 0x0F) << 3) + _ULAW_BIAS) << seg
    mag -= _ULAW_BIAS
    return np.where(code & 0x80, -mag, mag).astype("<i2")


def _alaw_decode_table() -> NDArray[np.int16]:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (code >> 4) & 7
    mant = code & 0x0F
    linear = (mant << 4) + 8
    shifted = ((mant << 4) + 0x108) << np.maximum(seg - 1, 0)
    mag = np.where(seg == 0, linear, shifted)
    return np.where(code & 0x80, mag, -mag).astype("<i2")


def _all_samples() -> NDArray[np.int32]:
    """Every int16 value, in the order of its unsigned 16-bit pattern."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _ulaw_encode_table() -> NDArray[np.uint8]:
    x = _all_samples()
    sign = np.where(x < 0, 0x80, 0)
    mag = np.minimum(np.abs(x), _ULAW_CLIP) + _ULAW_BIAS
    seg = _top_bit(mag) - 7  # mag in [132, 32767]: top bit 7..14
    mant = (mag >> (seg + 3)) & 0x0F
    table: NDArray[np.uint8] = (~(sign | (seg << 4) | mant) & 0xFF).astype(np.uint8)
    return table


def _alaw_encode_table() -> NDArray[np.uint8]:
    x = _all_samples()
    mask = np.where(x >= 0, 0xD5, 0x55)
    mag = np.where(x >= 0, x, -x - 1)  # one's complement keeps -32768 in range
    seg = np.clip(_top_bit(np.maximum(mag, 1)) - 7, 0, 7)
    mant = np.where(seg == 0, mag >> 4, mag >> (seg + 3)) & 0x0F
    return (((seg << 4) | mant) ^ mask).astype(np.uint8)


ULAW_DECODE = _ulaw_decode_table()
ALAW_DECODE = _alaw_decode_table()
_ULAW_ENCODE = _ulaw_encode_table()
_ALAW_ENCODE = _alaw_encode_table()


def _check(payload_type: int) -> None:
    if payload_type not in (PT_PCMU, PT_PCMA):
        raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU, 8 PCMA)")


def decode_samples(payload_type: int, payload: bytes) -> NDArray[np.int16]:
    """G.711 `payload` as an int16 array, one sample per byte."""
    _check(payload_type)
    table = ULAW_DECODE if payload_type == PT_PCMU else ALAW_DECODE
    result: NDArray[np.int16] = table[np.frombuffer(payload, dtype=np.uint8)]
    return result


def encode_samples(payload_type: int, samples: NDArray[np.int16]) -> bytes:
    """An int16 array as G.711 bytes."""
    _check(payload_type)
    table = _ULAW_ENCODE if payload_type == PT_PCMU else _ALAW_ENCODE
    patterns = np.ascontiguousarray(samples, dtype=np.int16).view(np.uint16)
    return bytes(table[patterns].tobytes())


def decode(payload_type: int, payload: bytes) -> bytes:
    """G.711 `payload` as 16-bit little-endian PCM (two bytes per input byte)."""
    return bytes(decode_samples(payload_type, payload).tobytes())


def encode(payload_type: int, pcm: bytes) -> bytes:
    """16-bit little-endian PCM as G.711 (one byte per sample); `pcm` must be even-sized."""
    if len(pcm) % 2:
        raise ValueError(f"16-bit PCM has an even size, got {len(pcm)} bytes")
    return encode_samples(payload_type, np.frombuffer(pcm, dtype="<i2"))


def max_error(payload_type: int, sample: int) -> int:
    """The largest |decode(encode(x)) - x| G.711 allows for `sample` (half a step + clipping)."""
    mag = abs(sample)
    if payload_type == PT_PCMU:
        return (mag + _ULAW_BIAS) // 32 + 1
    return max(9, mag // 32 + 1)
