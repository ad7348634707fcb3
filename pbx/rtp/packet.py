"""RTP/RTCP header peeks for the relay's counters and latching (pure).

Cheap by design: the relay calls these per packet, so nothing here allocates
beyond the returned header and nothing validates more than RFC 3550 §5.1's
fixed 12-byte header needs. Payloads (audio, RFC 4733 DTMF events, anything)
are never looked at.

Decisions where the specs are silent:
- `peek_rtp` returns None for RTCP (second byte 192-223, RFC 5761 §4) so a
  muxed RTCP packet is never mistaken for RTP with payload type 72-76.
- Only version 2 is RTP/RTCP (RFC 3550 §5.1); anything else (STUN, junk) is
  neither, which lets the relay drop it before latching.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12  # RFC 3550 §5.1 fixed header
RTCP_MIN_SIZE = 4  # RFC 3550 §6.4.1 common header: V/P/RC, PT, length
# RFC 5761 §4: RTCP packet types 192-223 never collide with RTP payload types
# once the marker bit is included in the second byte.
RTCP_TYPE_LOW = 192
RTCP_TYPE_HIGH = 223

_HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True, slots=True)
class RtpHeader:
    """The RFC 3550 §5.1 fixed header fields the relay cares about."""

    version: int
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int


def is_rtcp(data: bytes) -> bool:
    """True if `data` looks like RTCP: version 2 and packet type 192-223 (RFC 5761 §4)."""
    return (
        len(data) >= RTCP_MIN_SIZE
        and data[0] >> 6 == RTP_VERSION
        and RTCP_TYPE_LOW <= data[1] <= RTCP_TYPE_HIGH
    )


def is_rtp_or_rtcp(data: bytes) -> bool:
    """True if the first byte carries RTP version 2 (RFC 3550 §5.1) and a header fits."""
    return len(data) >= RTCP_MIN_SIZE and data[0] >> 6 == RTP_VERSION


def peek_rtp(data: bytes) -> RtpHeader | None:
    """The fixed RTP header of `data`, or None if it is too short, not v2, or RTCP."""
    if len(data) < RTP_HEADER_SIZE or is_rtcp(data):
        return None
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data)
    if first >> 6 != RTP_VERSION:
        return None
    return RtpHeader(
        version=RTP_VERSION,
        payload_type=second & 0x7F,
        marker=bool(second & 0x80),
        seq=seq,
        timestamp=timestamp,
        ssrc=ssrc,
    )


def build_rtp(
    payload_type: int,
    seq: int,
    timestamp: int,
    ssrc: int,
    payload: bytes = b"",
    *,
    marker: bool = False,
) -> bytes:
    """An RTP packet with no CSRCs, padding or extension (tests and benchmarks)."""
    if not 0 <= payload_type <= 0x7F:
        raise ValueError(f"payload type {payload_type} outside 0-127")
    second = payload_type | (0x80 if marker else 0)
    header = _HEADER.pack(
        RTP_VERSION << 6, second, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc & 0xFFFFFFFF
    )
    return header + payload


def build_rtcp_rr(ssrc: int) -> bytes:
    """An empty RTCP receiver report (RFC 3550 §6.4.2, RC=0) from `ssrc`."""
    # length is in 32-bit words minus one: header + SSRC = 2 words -> 1.
    return struct.pack("!BBHI", RTP_VERSION << 6, 201, 1, ssrc & 0xFFFFFFFF)
