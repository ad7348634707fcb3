"""RTP/RTCP header peeks."""

from __future__ import annotations

import pytest

from pbx.rtp.packet import RtpHeader, build_rtcp_rr, build_rtp, is_rtcp, peek_rtp


def test_peek_reads_what_build_wrote() -> None:
    pkt = build_rtp(0, 65535, 160 * 7, 0xDEADBEEF, b"\xff" * 160, marker=True)
    assert len(pkt) == 172
    assert peek_rtp(pkt) == RtpHeader(2, 0, True, 65535, 1120, 0xDEADBEEF)
    assert not is_rtcp(pkt)


def test_dtmf_payload_type_peeks_as_rtp() -> None:
    event = bytes([1, 0x8A, 0x03, 0x20])  # RFC 4733 §2.3: digit 1, end bit, volume 10
    pkt = build_rtp(101, 7, 800, 42, event)
    hdr = peek_rtp(pkt)
    assert hdr is not None
    assert hdr.payload_type == 101
    assert not hdr.marker
    assert pkt[12:] == event


@pytest.mark.parametrize("ptype", [192, 200, 201, 203, 204, 223])
def test_rtcp_types_are_rtcp_not_rtp(ptype: int) -> None:
    pkt = bytes([0x80, ptype, 0, 1]) + b"\0" * 8
    assert is_rtcp(pkt)
    assert peek_rtp(pkt) is None


def test_rtcp_rr_is_rtcp() -> None:
    rr = build_rtcp_rr(7)
    assert is_rtcp(rr)
    assert len(rr) == 8


@pytest.mark.parametrize(
    "data",
    [b"", b"\x80", b"\x80\x00" * 5, b"\x00\x01\x00\x00" + b"\0" * 16, b"\xc0" + b"\0" * 15],
)
def test_junk_is_neither(data: bytes) -> None:
    assert peek_rtp(data) is None
    assert not is_rtcp(data)


def test_marker_on_pt_72_is_rtcp_range() -> None:
    # RFC 5761 §4: RTP payload types 64-95 would collide; with marker set, PT 72 == 200.
    assert is_rtcp(build_rtp(72, 1, 1, 1, marker=True))
    assert not is_rtcp(build_rtp(72, 1, 1, 1))


def test_build_rejects_bad_payload_type() -> None:
    with pytest.raises(ValueError, match="payload type"):
        build_rtp(128, 0, 0, 0)
