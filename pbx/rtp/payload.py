"""The payload of an RTP packet, past CSRCs, header extension and padding (pure).

`pbx.rtp.packet.peek_rtp` reads only the fixed header, which is all the
relay needs. Whoever decodes audio (the recorder, DTMF detection) needs the
payload itself, and a peer may send any of RFC 3550 §5.1's optional parts:
CSRC identifiers (CC x 4 bytes, e.g. from a conference mixer), a header
extension (X bit, §5.3.1: 4-byte header then length x 4 bytes; WebRTC
gateways add these for audio levels) and padding (P bit: the last byte
counts the padding bytes, itself included). `split` returns None for
anything inconsistent (too short, padding longer than the payload, RTCP,
not version 2), never raising: a bad packet is dropped, not a call.
"""

from __future__ import annotations

from dataclasses import dataclass

from pbx.rtp.packet import RTP_HEADER_SIZE, RtpHeader, peek_rtp


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """A parsed RTP packet: fixed header fields and the payload bytes."""

    header: RtpHeader
    payload: bytes


def split(data: bytes) -> RtpPacket | None:
    """The header and payload of `data`, or None if it is not a well-formed RTP packet."""
    header = peek_rtp(data)
    if header is None:
        return None
    first = data[0]
    offset = RTP_HEADER_SIZE + 4 * (first & 0x0F)  # CSRC count
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if len(data) < offset + 4:
            return None
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if first & 0x20:  # padding: the last byte says how many bytes to drop
        if end <= offset or data[-1] == 0:
            return None
        end -= data[-1]
    if end < offset:
        return None
    return RtpPacket(header, data[offset:end])
