"""Benchmark: SIP parse + serialise rate of pbx.sip.message (prints figures, asserts nothing).

Run: `python bench/parse.py [--seconds 1.0]`.

Measures, for a typical ~800-byte INVITE with SDP and a 200 OK:
- lazy: `parse(data)` then `serialize(msg)` (what the agent does per datagram);
- full: the same plus every typed header view (Vias, From, To, CSeq, Contact,
  Record-Route, Content-Type, Max-Forwards, Request-URI), so that every header
  a B2BUA reads has been parsed into an object.

If the `sippy` package is importable (benchmark-only: `pip install sippy`,
never a pbx dependency) it also measures sippy's full parse of the same
INVITE: `SipRequest(buf=text)` (splits headers, parses the start line and
body framing), `getBody()` on every header (sippy parses header values
lazily; this forces each into its typed object), then `str(msg)`. The SDP
body is not parsed on either side. It prints our/sippy ratios.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.sip.message import Message, Request, parse, serialize

SDP = (
    "v=0\r\n"
    "o=- 3724394400 3724394400 IN IP4 198.51.100.7\r\n"
    "s=-\r\n"
    "c=IN IP4 198.51.100.7\r\n"
    "t=0 0\r\n"
    "m=audio 16384 RTP/AVP 0 8 18 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=fmtp:18 annexb=no\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=sendrecv\r\n"
)
INVITE = (
    "INVITE sip:+14155550101@203.0.113.5:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---7f3a2c1d9e8b;rport\r\n"
    "Max-Forwards: 69\r\n"
    "Contact: <sip:+12125550123@198.51.100.7:5060;transport=udp>\r\n"
    "To: <sip:+14155550101@203.0.113.5>\r\n"
    'From: "Caller 2125550123" <sip:+12125550123@198.51.100.7>;tag=4f1e7a92\r\n'
    "Call-ID: 8d7e2a6c1f3b4e5d9a0b1c2d3e4f5a6b@198.51.100.7\r\n"
    "CSeq: 102 INVITE\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, UPDATE\r\n"
    "Supported: replaces, timer\r\n"
    "User-Agent: TrunkGateway/4.2\r\n"
    "Content-Type: application/sdp\r\n"
    f"Content-Length: {len(SDP)}\r\n"
    "\r\n" + SDP
)
OK = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-524287-1---7f3a2c1d9e8b;rport=5060;"
    "received=198.51.100.7\r\n"
    'From: "Caller 2125550123" <sip:+12125550123@198.51.100.7>;tag=4f1e7a92\r\n'
    "To: <sip:+14155550101@203.0.113.5>;tag=as5f2e1c9d\r\n"
    "Call-ID: 8d7e2a6c1f3b4e5d9a0b1c2d3e4f5a6b@198.51.100.7\r\n"
    "CSeq: 102 INVITE\r\n"
    "Contact: <sip:+14155550101@203.0.113.5:5060>\r\n"
    "Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n"
    "Content-Length: 0\r\n"
    "\r\n"
)


BATCH = 50


def measure(cases: dict[str, Callable[[], object]], seconds: float) -> dict[str, float]:
    """Messages/s of each case from its fastest batch (timeit's "min" rule).

    Cases run in turns, one batch of BATCH calls each, for about `seconds` per
    case, so that load from other processes on the box hits all cases alike.
    """
    best = dict.fromkeys(cases, float("inf"))
    deadline = time.perf_counter() + seconds * len(cases)
    while time.perf_counter() < deadline:
        for name, fn in cases.items():
            start = time.perf_counter()
            for _ in range(BATCH):
                fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: BATCH / elapsed for name, elapsed in best.items()}


def lazy(data: bytes) -> Callable[[], object]:
    return lambda: serialize(parse(data))


def _touch_all(msg: Message) -> None:
    _ = (msg.vias, msg.from_, msg.to, msg.cseq, msg.call_id, msg.contacts, msg.record_routes)
    _ = (msg.content_type, msg.max_forwards, msg.headers.get_all("Allow"))
    if isinstance(msg, Request):
        _ = msg.request_uri


def full(data: bytes) -> Callable[[], object]:
    def run() -> bytes:
        msg = parse(data)
        _touch_all(msg)
        return serialize(msg)

    return run


def sippy_full(text: str) -> Callable[[], object] | None:
    try:
        from sippy.SipRequest import SipRequest
    except ImportError:
        return None

    def run() -> str:
        msg = SipRequest(buf=text)
        for header in msg.headers:
            header.getBody()
        return str(msg)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per case")
    args = parser.parse_args()
    invite, ok = INVITE.encode(), OK.encode()
    assert serialize(parse(invite)) == invite, "the sample must round-trip byte for byte"
    print(f"INVITE: {len(invite)} bytes, 200 OK: {len(ok)} bytes")
    print(f"fastest batch of {BATCH}, cases interleaved, ~{args.seconds}s per case")
    cases: dict[str, Callable[[], object]] = {
        "pbx INVITE parse+serialise (lazy)": lazy(invite),
        "pbx INVITE parse+serialise (full)": full(invite),
        "pbx 200 OK parse+serialise (lazy)": lazy(ok),
        "pbx 200 OK parse+serialise (full)": full(ok),
    }
    sippy = sippy_full(INVITE)
    if sippy is not None:
        cases["sippy INVITE full parse+serialise"] = sippy
    rates = measure(cases, args.seconds)
    for name, value in rates.items():
        print(f"{name:36} {value:10,.0f} msg/s")
    if sippy is None:
        print("sippy not installed (pip install sippy): no comparison")
        return
    theirs = rates["sippy INVITE full parse+serialise"]
    for kind in ("lazy", "full"):
        ratio = rates[f"pbx INVITE parse+serialise ({kind})"] / theirs
        print(f"ratio pbx {kind} / sippy full: {ratio:.1f}x")


if __name__ == "__main__":
    main()
