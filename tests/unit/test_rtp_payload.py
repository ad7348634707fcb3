"""RTP payload extraction past CSRCs, header extensions and padding (RFC 3550 §5.1, §5.3.1)."""

from __future__ import annotations

import struct

import pytest

from pbx.rtp.packet import build_rtp
from pbx.rtp.payload import split

AUDIO = bytes(range(160))


def _packet(*, csrcs: int = 0, ext_words: int | None = None, padding: int = 0) -> bytes:
    base = build_rtp(0, 7, 1600, 42, b"")
    first = base[0] | csrcs | (0x10 if ext_words is not None else 0) | (0x20 if padding else 0)
    out = bytes([first]) + base[1:] + b"\x11\x22\x33\x44" * csrcs
    if ext_words is not None:
        out += struct.pack("!HH", 0xBEDE, ext_words) + b"\xee" * 4 * ext_words
    out += AUDIO
    if padding:
        out += b"\0" * (padding - 1) + bytes([padding])
    return out


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"csrcs": 2},
        {"ext_words": 0},
        {"ext_words": 3},
        {"padding": 1},
        {"padding": 4},
        {"csrcs": 15, "ext_words": 1, "padding": 7},
    ],
)
def test_payload_is_found_past_every_optional_part(kwargs: dict[str, int]) -> None:
    parsed = split(_packet(**kwargs))
    assert parsed is not None
    assert parsed.payload == AUDIO
    assert (parsed.header.seq, parsed.header.timestamp, parsed.header.ssrc) == (7, 1600, 42)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",  # shorter than the fixed header
        _packet(csrcs=4)[:20],  # CSRC list cut off
        bytes([0x90]) + build_rtp(0, 1, 1, 1)[1:] + b"\xbe",  # extension header cut off
        bytes([0x90]) + build_rtp(0, 1, 1, 1)[1:] + b"\xbe\xde\x00\x09" + b"\0" * 8,
        bytes([0xA0]) + build_rtp(0, 1, 1, 1)[1:] + b"\x01\x02\x09",  # padding > payload
        bytes([0xA0]) + build_rtp(0, 1, 1, 1)[1:] + b"\x01\x00",  # padding count 0
        bytes([0x40]) + build_rtp(0, 1, 1, 1)[1:] + AUDIO,  # version 1
        bytes([0x80, 200]) + b"\0" * 30,  # RTCP sender report
    ],
)
def test_malformed_packets_are_none(data: bytes) -> None:
    assert split(data) is None


def test_empty_payload_is_allowed() -> None:
    parsed = split(build_rtp(8, 1, 2, 3))
    assert parsed is not None
    assert parsed.payload == b""
