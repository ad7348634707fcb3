"""Benchmark: the ng codec's encode/decode rate, and ping/offer/delete round trips to rtpengine.

Part 1 (pure, no I/O): bencode+cookie encoding of an offer request, decoding
and typed parsing of an offer reply and of a query reply shaped like
rtpengine 10.5's (two tags, RTP+RTCP streams each).

Part 2: a private userspace rtpengine on 127.0.0.1 (tests/e2e/rtpengine_proc.py;
ended by its PID), or `--instance HOST:PORT` for one already running, driven
through `pbx.rtp.rtpengine.Rtpengine` one request at a time: `--count` calls
of offer + delete (and as many pings), latency per request from the caller's
side (await to result). Prints figures; asserts nothing.

    python bench/ng.py --count 500
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.rtp.bencode import Encodable, decode, encode
from pbx.rtp.ng import Command, Offer, encode_request, parse_reply
from pbx.rtp.rtpengine import Rtpengine
from tests.e2e.conftest import free_port, free_udp_range
from tests.e2e.rtpengine_proc import start_rtpengine

SDP = (
    b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)


def _stream(port: int, rtcp: bool) -> dict[str, Encodable]:
    return {
        "local port": port,
        "local address": "127.0.0.1",
        "family": "IPv4",
        "endpoint": {"family": "IPv4", "address": "127.0.0.1", "port": port + 1000},
        "advertised endpoint": {"family": "IPv4", "address": "127.0.0.1", "port": port + 1000},
        "last packet": 1796162002,
        "flags": ["RTCP" if rtcp else "RTP", "filled"],
        "stats": {"packets": 500, "bytes": 86000, "errors": 0},
    }


def _tag(tag: str, port: int) -> dict[str, Encodable]:
    media: dict[str, Encodable] = {
        "index": 1,
        "type": "audio",
        "protocol": "RTP/AVP",
        "codec": "PCMU/8000",
    }
    media["streams"] = [_stream(port, False), _stream(port + 1, True)]
    return {"tag": tag, "created": 1796162002, "medias": [media]}


QUERY_REPLY = encode(
    {
        "created": 1796162002,
        "last signal": 1796162002,
        "tags": {"tag-a": _tag("tag-a", 30000), "tag-b": _tag("tag-b", 30002)},
        "totals": {
            "RTP": {"packets": 1000, "bytes": 172000, "errors": 0},
            "RTCP": {"packets": 10, "bytes": 520, "errors": 0},
        },
        "result": "ok",
    }
)
OFFER_REPLY = encode({"result": "ok", "sdp": SDP})


def rate(label: str, fn: Callable[[], object], seconds: float = 1.0) -> None:
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        count += 200
    print(f"  {label:<34} {count / elapsed:>10,.0f} ops/s  {elapsed / count * 1e6:6.1f} us/op")


def codec() -> None:
    offer = Offer("bench-call", "tag-a", SDP)
    print(f"codec (query reply {len(QUERY_REPLY)} bytes, offer reply {len(OFFER_REPLY)} bytes)")
    rate("encode_request(offer)", lambda: encode_request(offer, "abcdef01-1"))
    rate("bencode.decode(query reply)", lambda: decode(QUERY_REPLY))
    rate("parse_reply(offer reply)", lambda: parse_reply(Command.OFFER, OFFER_REPLY))
    rate("parse_reply(query reply)", lambda: parse_reply(Command.QUERY, QUERY_REPLY))


def summary(label: str, samples: list[float]) -> None:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print(
        f"  {label:<8} n={len(ms):<5} median {statistics.median(ms):6.3f} ms"
        f"  p99 {p99:6.3f} ms  max {ms[-1]:6.3f} ms  ({len(ms) / sum(samples):,.0f}/s)"
    )


async def round_trips(instance: str, count: int) -> None:
    engine = await Rtpengine.open([instance])
    pings: list[float] = []
    offers: list[float] = []
    deletes: list[float] = []
    clock = time.perf_counter
    try:
        for n in range(count):
            start = clock()
            await engine.ping()
            pings.append(clock() - start)
            call_id = f"bench-{n}"
            start = clock()
            await engine.offer(call_id, "tag-a", SDP)
            offers.append(clock() - start)
            start = clock()
            await engine.delete(call_id, "tag-a")
            deletes.append(clock() - start)
    finally:
        engine.close()
    print(f"round trips to rtpengine at {instance} (one at a time)")
    summary("ping", pings)
    summary("offer", offers)
    summary("delete", deletes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="calls (offer+delete) and pings")
    parser.add_argument("--instance", help="HOST:PORT of a running rtpengine (else start one)")
    parser.add_argument("--ng-port", type=int, help="ng port of the started one (default: free)")
    parser.add_argument("--ports", help="LOW-HIGH RTP range of the started one (default: free)")
    args = parser.parse_args()
    count = max(1, min(args.count, 100_000))
    codec()
    if args.instance:
        asyncio.run(round_trips(args.instance, count))
        return
    if args.ports:
        low, high = (int(p) for p in args.ports.split("-"))
    else:
        low = free_udp_range(20)
        high = low + 19
    with tempfile.TemporaryDirectory(prefix="bench-ng-") as tmp:
        proc = start_rtpengine(Path(tmp), args.ng_port or free_port(), (low, high))
        try:
            asyncio.run(round_trips(f"{proc.ng[0]}:{proc.ng[1]}", count))
        finally:
            proc.stop()
        print(f"  (rtpengine {' '.join(proc.argv[1:])})")


if __name__ == "__main__":
    main()
