"""Fuzz targets for the SDP parser and per-leg rewriter (pbx.rtp.sdp).

Properties, on arbitrary bytes and on the SDP corpus (tests/data/sdp) with
random byte- and line-level damage:
- `parse_sdp` gives a SessionDescription or raises SdpError, nothing else,
  and a parsed body's `endpoints()` / `on_hold` raise nothing;
- `rewrite` of anything that parsed succeeds (or, for a body near the size
  limit, raises SdpError), its output parses again, and
  no address of the peer survives in a `c=` or `a=rtcp` line: each is ours
  or the unspecified hold address (RFC 3264 §8.4), and each m= port is ours
  (or stays 0).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rtp.sdp import (
    MAX_SDP_BYTES,
    UNSPECIFIED,
    OriginState,
    SdpError,
    SessionDescription,
    parse_sdp,
    rewrite,
)

from ._support import corpus, fuzz_settings, line_mutated, mutated

SEEDS = corpus("sdp", ".sdp")
OURS = ("203.0.113.99", "2001:db8::99")  # in no seed: any other address is the peer's
sdp_inputs = st.one_of(
    st.binary(max_size=1500),
    mutated(SEEDS),
    line_mutated(SEEDS),
    mutated(SEEDS).map(lambda b: b.replace(b"\r\n", b"\n")),
)


def parse_or_none(data: bytes) -> SessionDescription | None:
    try:
        sdp = parse_sdp(data)
    except SdpError:
        return None
    sdp.endpoints()
    _ = sdp.on_hold
    return sdp


def check_rewrite(sdp: SessionDescription, ours: str, ports: list[int]) -> None:
    try:
        out = rewrite(sdp, ours, ports, origin=OriginState(session_id=7))
    except SdpError:  # only when the rewritten body would exceed MAX_SDP_BYTES
        assert len(sdp.to_bytes()) > MAX_SDP_BYTES // 2
        return
    again = parse_sdp(out)  # our own output must be SDP we accept
    for line in again.lines():
        if line.startswith("c="):
            address = line[2:].split()[2].split("/")[0]
            assert address == ours or address in UNSPECIFIED, line
        elif line.startswith("a=rtcp:") and len(line.split()) >= 4:
            assert line.split()[3] == ours, line
    for before, after, port in zip(sdp.media, again.media, ports, strict=True):
        assert after.port == (0 if before.rejected else port)


@fuzz_settings()
@given(sdp_inputs, st.sampled_from(OURS), st.data())
def test_parse_and_rewrite_never_leak_nor_crash(
    data: bytes, ours: str, more: st.DataObject
) -> None:
    sdp = parse_or_none(data)
    if sdp is None:
        return
    ports = more.draw(st.lists(st.integers(0, 32767).map(lambda p: p - p % 2),
                               min_size=len(sdp.media), max_size=len(sdp.media)))  # fmt: skip
    check_rewrite(sdp, ours, ports)


def test_every_corpus_body_rewrites_cleanly() -> None:
    assert len(SEEDS) >= 5
    for seed in SEEDS:
        sdp = parse_sdp(seed)
        for ours in OURS:
            check_rewrite(sdp, ours, [20000 + 2 * i for i in range(len(sdp.media))])
