"""Memory per live SIP transaction, to size `sip.max_transactions` (prints figures).

Feeds N distinct INVITEs (each a new server transaction, answered 200 so it
lingers in Accepted as it does for 32 s in a real call) plus N BYE server
transactions into one `TransactionLayer`, and reports the Python heap
growth per transaction (tracemalloc) and the process RSS growth.

    python bench/transactions.py [--count 20000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.sip.message import Request, parse
from pbx.sip.peer import Peer
from pbx.sip.responses import make_response
from pbx.sip.transaction import RequestReceived, TransactionLayer

INVITE = (
    "{method} sip:+12125550150@192.0.2.1 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bK{n};rport\r\n"
    "From: <sip:+13125550199@203.0.113.10>;tag=f{n}\r\nTo: <sip:+12125550150@192.0.2.1>\r\n"
    "Call-ID: {n}@203.0.113.10\r\nCSeq: 1 {method}\r\nContact: <sip:c@203.0.113.10>\r\n"
    "Max-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {length}\r\n\r\n{body}"
)
SDP = ("v=0\r\no=- 1 1 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\n"
       "m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")  # fmt: skip


def _rss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=20_000)
    parser.add_argument("--rss", action="store_true", help="RSS only (no tracemalloc overhead)")
    args = parser.parse_args()
    layer = TransactionLayer(max_transactions=10 * args.count)
    peer = Peer("udp", "203.0.113.10", 5060)
    rss0 = _rss_kib()
    if not args.rss:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for n in range(args.count):
        for method, body in (("INVITE", SDP), ("BYE", "")):
            text = INVITE.format(n=f"{method}{n}", method=method, length=len(body), body=body)
            message = parse(text.encode())
            for event in layer.receive(message, peer, 0.0):
                if isinstance(event, RequestReceived) and isinstance(event.request, Request):
                    layer.send_response(
                        event.key, make_response(event.request, 200, to_tag="t"), 0.0
                    )
    live = len(layer._txns)
    print(f"live transactions: {live}")
    if args.rss:
        grown = (_rss_kib() - rss0) / 1024
        print(f"max RSS growth: {grown:.0f} MiB ({grown * 1024 / live:.1f} KiB per transaction)")
    else:
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
        print(f"python heap per transaction: {used / live / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
