"""Properties of SDP parse/rewrite: junk only ever raises SdpError; rewrite round-trips."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rtp.sdp import OriginState, SdpError, parse_sdp, rewrite


@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_sdp_error(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    assert sdp.lines()[0] == "v=0"


line_types = st.sampled_from([*"vosicbtamkzre", "m", "c", "a"])
values = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=30
)
sdp_like = st.lists(st.tuples(line_types, values), max_size=30).map(
    lambda pairs: ("v=0\r\n" + "".join(f"{t}={v}\r\n" for t, v in pairs)).encode()
)


@given(sdp_like)
def test_line_shaped_junk_parses_or_raises_sdp_error(data: bytes) -> None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return
    # Whatever parses must also rewrite without error.
    out = rewrite(sdp, "192.0.2.200", [40000] * len(sdp.media), origin=OriginState(1))
    assert b"o=pbx 1 0 IN IP4 192.0.2.200\r\n" in out
    assert len(parse_sdp(out).media) == len(sdp.media)


ports = st.integers(0, 65535)
kinds = st.sampled_from(["audio", "video", "text", "application"])
extra = st.lists(
    st.sampled_from(
        ["a=sendonly", "a=recvonly", "a=inactive", "a=ptime:20", "b=AS:64", "a=X-foo:bar baz"]
    ),
    max_size=3,
)
stream = st.tuples(kinds, ports, st.booleans(), st.booleans(), extra)


def build(streams: list[tuple[str, int, bool, bool, list[str]]], session_c: bool) -> bytes:
    lines = ["v=0", "o=peer 9 9 IN IP4 198.51.100.1", "s=-"]
    if session_c:
        lines.append("c=IN IP4 198.51.100.1")
    lines.append("t=0 0")
    for kind, port, media_c, rtcp, attrs in streams:
        lines.append(f"m={kind} {port} RTP/AVP 0 101")
        if media_c:
            lines.append("c=IN IP4 198.51.100.2")
        if rtcp:
            lines.append(f"a=rtcp:{min(port + 1, 65535)}")
        lines.extend(attrs)
    return ("\r\n".join(lines) + "\r\n").encode()


@given(st.lists(stream, max_size=5), st.booleans(), st.lists(st.integers(1, 32767), min_size=5))
def test_rewrite_anchors_every_live_stream(
    streams: list[tuple[str, int, bool, bool, list[str]]], session_c: bool, picks: list[int]
) -> None:
    original = parse_sdp(build(streams, session_c))
    relay_ports = [2 * p for p in picks[: len(original.media)]]
    origin = OriginState(session_id=3)
    out = rewrite(original, "192.0.2.200", relay_ports, origin=origin)
    again = parse_sdp(out)
    assert len(again.media) == len(original.media)
    for before, after, port in zip(original.media, again.media, relay_ports, strict=True):
        assert after.port == (0 if before.rejected else port)
        assert after.connection is not None
        assert after.connection.address == "192.0.2.200"
        assert after.direction == before.direction
        if before.rtcp_port is not None and not before.rejected:
            assert after.rtcp_port == port + 1
    # Same input again: byte-identical, version unchanged (RFC 3264 §8).
    assert rewrite(original, "192.0.2.200", relay_ports, origin=origin) == out
    assert origin.version == 0
