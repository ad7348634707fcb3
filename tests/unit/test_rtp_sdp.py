"""SDP parse and rewrite on fixtures imitating real peers (tests/data/sdp/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.rtp.sdp import (
    MAX_SDP_BYTES,
    Connection,
    Endpoint,
    OriginState,
    SdpError,
    parse_sdp,
    rewrite,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "sdp"
RELAY = "192.0.2.200"
OWNED = ("o=", "c=", "m=", "a=rtcp:")


def load(name: str) -> bytes:
    return (DATA / name).read_bytes()


def raw_lines(data: bytes) -> list[bytes]:
    return [line.rstrip(b"\r") for line in data.split(b"\n") if line.rstrip(b"\r")]


def unowned(data: bytes) -> list[bytes]:
    """Lines rewrite must copy byte for byte (ICE lines excluded: dropped on purpose)."""
    return [
        line
        for line in raw_lines(data)
        if not line.decode("latin-1").startswith(OWNED)
        and not line.startswith((b"a=candidate", b"a=ice-"))
    ]


def do_rewrite(data: bytes, ports: list[int], addr: str = RELAY, sid: int = 77) -> bytes:
    return rewrite(parse_sdp(data), addr, ports, origin=OriginState(session_id=sid))


ALL_FIXTURES = sorted(p.name for p in DATA.glob("*.sdp"))


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_unknown_lines_pass_through_byte_for_byte(name: str) -> None:
    data = load(name)
    out = do_rewrite(data, [30000] * len(parse_sdp(data).media))
    assert unowned(out) == unowned(data)
    assert out.endswith(b"\r\n")
    assert b"\n" not in out.replace(b"\r\n", b"")


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_rewrite_leaks_no_peer_address(name: str) -> None:
    sdp = parse_sdp(load(name))
    out = do_rewrite(load(name), [30000] * len(sdp.media)).decode("utf-8", "surrogateescape")
    for media in sdp.media:
        conn = media.connection
        if conn is not None and conn.address != "0.0.0.0":
            assert conn.address not in out


def test_asterisk_session_level_connection() -> None:
    data = load("asterisk.sdp")
    sdp = parse_sdp(data)
    (audio,) = sdp.media
    assert (audio.kind, audio.port, audio.proto) == ("audio", 12068, "RTP/AVP")
    assert audio.formats == ("0", "8", "101")
    assert audio.connection == Connection("IN", "IP4", "198.51.100.10")
    assert audio.direction == "sendrecv"
    assert audio.rtcp_port is None
    assert sdp.endpoints() == [Endpoint("198.51.100.10", 12068, "198.51.100.10", 12069)]
    out = do_rewrite(data, [30000])
    lines = out.decode().split("\r\n")
    assert "c=IN IP4 192.0.2.200" in lines
    assert "m=audio 30000 RTP/AVP 0 8 101" in lines
    assert "o=pbx 77 0 IN IP4 192.0.2.200" in lines
    assert sum(line.startswith("c=") for line in lines) == 1  # no media-level c= added
    assert not any(line.startswith("a=rtcp:") for line in lines)  # absent stays absent


def test_freeswitch_rtcp_with_address_keeps_its_form() -> None:
    sdp = parse_sdp(load("freeswitch.sdp"))
    assert sdp.media[0].rtcp_port == 24581
    assert sdp.media[0].rtcp_address == "203.0.113.20"
    out = do_rewrite(load("freeswitch.sdp"), [30010]).decode()
    assert "a=rtcp:30011 IN IP4 192.0.2.200\r\n" in out
    assert "m=audio 30010 RTP/AVP 0 101 13\r\n" in out


def test_twilio_rtcp_port_only() -> None:
    sdp = parse_sdp(load("twilio_trunk.sdp"))
    assert sdp.endpoints() == [Endpoint("192.0.2.50", 10562, "192.0.2.50", 10563)]
    out = do_rewrite(load("twilio_trunk.sdp"), [31000]).decode()
    assert "a=rtcp:31001\r\n" in out
    assert "s=Twilio Media Gateway\r\n" in out


def test_phone_two_streams_and_rejected_one() -> None:
    data = load("desk_phone_video_rejected.sdp")
    sdp = parse_sdp(data)
    audio, video, bfcp = sdp.media
    assert (audio.port, video.port, bfcp.port) == (49170, 51372, 0)
    assert bfcp.rejected
    assert bfcp.formats == ("*",)
    assert video.direction == "recvonly"
    assert sdp.endpoints()[2] is None
    out = do_rewrite(data, [32000, 32002, 32004])
    text = out.decode("utf-8", "surrogateescape")
    assert "m=audio 32000 RTP/AVP 9 0 101\r\nc=IN IP4 192.0.2.200\r\n" in text
    assert "m=video 32002 RTP/AVP 99\r\nc=IN IP4 192.0.2.200\r\n" in text
    assert "m=application 0 UDP/BFCP *\r\n" in text  # rejected stays rejected
    assert "candidate" not in text
    assert "ice-" not in text
    assert b"i=Caf\xe9 desk phone\r\n" in out  # undecodable byte kept


def test_caller_can_reject_a_stream_with_port_zero() -> None:
    out = do_rewrite(load("desk_phone_video_rejected.sdp"), [32000, 0, 32004])
    again = parse_sdp(out)
    assert [m.port for m in again.media] == [32000, 0, 0]


def test_ipv6_offer_to_ipv6_and_ipv4_relays() -> None:
    data = load("ipv6_phone.sdp")
    assert parse_sdp(data).endpoints() == [Endpoint("2001:db8::10", 40000, "2001:db8::10", 40001)]
    v6 = do_rewrite(data, [33000], addr="2001:db8::1").decode()
    assert "c=IN IP6 2001:db8::1\r\n" in v6
    assert "a=rtcp:33001 IN IP6 2001:db8::1\r\n" in v6
    assert "o=pbx 77 0 IN IP6 2001:db8::1\r\n" in v6
    v4 = do_rewrite(data, [33000]).decode()
    assert "c=IN IP4 192.0.2.200\r\n" in v4
    assert "a=rtcp:33001 IN IP4 192.0.2.200\r\n" in v4
    assert "IP6" not in v4


def test_missing_connection_is_added_after_m_and_i() -> None:
    data = load("no_connection_phone.sdp")
    sdp = parse_sdp(data)
    assert sdp.media[0].connection is None
    assert sdp.endpoints() == [None]
    lines = do_rewrite(data, [34000]).decode().split("\r\n")
    at = lines.index("m=audio 34000 RTP/AVP 0")
    assert lines[at + 1].startswith("i=")
    assert lines[at + 2] == "c=IN IP4 192.0.2.200"


def test_hold_by_direction_and_by_legacy_address() -> None:
    assert not parse_sdp(load("asterisk.sdp")).on_hold
    held = parse_sdp(load("asterisk_hold.sdp"))
    assert held.on_hold
    assert held.media[0].direction == "sendonly"
    legacy = parse_sdp(load("legacy_hold_phone.sdp"))
    assert legacy.on_hold
    assert legacy.endpoints() == [None]
    out = do_rewrite(load("legacy_hold_phone.sdp"), [35000])
    assert b"c=IN IP4 0.0.0.0\r\n" in out  # not silently unheld
    assert parse_sdp(out).on_hold


def test_session_direction_applies_to_media_without_their_own() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    data += b"a=inactive\r\nm=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\na=sendrecv\r\n"
    first, second = parse_sdp(data).media
    assert first.direction == "inactive"
    assert second.direction == "sendrecv"
    assert not parse_sdp(data).on_hold


def test_origin_version_bumps_only_on_change() -> None:
    origin = OriginState(session_id=1234, version=5)
    base = parse_sdp(load("asterisk.sdp"))
    first = rewrite(base, RELAY, [30000], origin=origin)
    assert b"o=pbx 1234 5 IN IP4 192.0.2.200\r\n" in first
    # The far side re-sends with a new o= version but the same content: no bump.
    resent = load("asterisk.sdp").replace(b"1695224711 1695224711", b"1695224711 1695224799")
    assert rewrite(parse_sdp(resent), RELAY, [30000], origin=origin) == first
    held = rewrite(parse_sdp(load("asterisk_hold.sdp")), RELAY, [30000], origin=origin)
    assert b"o=pbx 1234 6 IN IP4" in held
    assert b"a=sendonly\r\n" in held
    unheld = rewrite(base, RELAY, [30000], origin=origin)
    assert b"o=pbx 1234 7 IN IP4" in unheld
    moved = rewrite(base, RELAY, [30002], origin=origin)
    assert b"o=pbx 1234 8 IN IP4" in moved
    assert origin.version == 8


def test_legs_keep_separate_origins() -> None:
    sdp = parse_sdp(load("twilio_trunk.sdp"))
    inbound, outbound = OriginState(session_id=1), OriginState(session_id=2, username="b2b")
    a = rewrite(sdp, RELAY, [30000], origin=inbound)
    b = rewrite(sdp, RELAY, [30002], origin=outbound)
    assert b"o=pbx 1 0 " in a
    assert b"o=b2b 2 0 " in b
    assert rewrite(sdp, RELAY, [30000], origin=inbound) == a


def test_missing_origin_line_is_inserted_after_version() -> None:
    out = do_rewrite(b"v=0\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n", [36000])
    assert out.split(b"\r\n")[:2] == [b"v=0", b"o=pbx 77 0 IN IP4 192.0.2.200"]


def test_lf_and_crlf_parse_alike() -> None:
    crlf = load("asterisk.sdp")
    lf = crlf.replace(b"\r\n", b"\n")
    assert parse_sdp(lf) == parse_sdp(crlf)
    assert parse_sdp(lf).to_bytes() == crlf


def test_multicast_ttl_and_port_count_survive() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 233.252.0.1/127\r\nt=0 0\r\n"
    data += b"m=audio 49170/2 RTP/AVP 0\r\n"
    media = parse_sdp(data).media[0]
    assert media.connection == Connection("IN", "IP4", "233.252.0.1")
    assert media.port_count == 2
    assert b"m=audio 37000/2 RTP/AVP 0\r\n" in do_rewrite(data, [37000])


def test_rewrite_rejects_caller_mistakes() -> None:
    sdp = parse_sdp(load("asterisk.sdp"))
    with pytest.raises(ValueError, match="not an IP"):
        rewrite(sdp, "relay.example", [30000], origin=OriginState(1))
    with pytest.raises(ValueError, match="2 ports for 1 streams"):
        rewrite(sdp, RELAY, [30000, 30002], origin=OriginState(1))


JUNK = [
    b"",
    b"\r\n\r\n",
    b"hello world",
    b"v=1\r\n",
    b"s=-\r\nv=0\r\n",
    b"v=0\r\nthis is not sdp\r\n",
    b"v=0\r\nX=upper\r\n",
    b"v=0\r\nm=audio\r\n",
    b"v=0\r\nm=audio 70000 RTP/AVP 0\r\n",
    b"v=0\r\nm=audio -1 RTP/AVP 0\r\n",
    b"v=0\r\nm=audio 1e3 RTP/AVP 0\r\n",
    b"v=0\r\nm=audio 4000/x RTP/AVP 0\r\n",
    b"v=0\r\nc=IN IP4\r\n",
    b"v=0\r\nc=IN IP4 192.0.2.1\r\nc=broken\r\n",
    b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:\r\n",
    b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:abc\r\n",
    b"v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtcp:4001\r\na=rtcp:\xff\r\n",
    b"v=0\r\n" + b"a=x\r\n" * 600,
    b"v=0\r\n" + b"m=audio 4000 RTP/AVP 0\r\n" * 33,
    b"v=0\r\n" + b"a=" + b"x" * MAX_SDP_BYTES + b"\r\n",
    b"\xff\xfe\x00junk",
]


@pytest.mark.parametrize("data", JUNK)
def test_junk_raises_sdp_error_only(data: bytes) -> None:
    with pytest.raises(SdpError) as info:
        parse_sdp(data)
    assert info.value.status_hint == 488
