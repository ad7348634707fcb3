"""A stand-in media worker for tests: speaks the control protocol over --fd, relays nothing.

Modes (`--mode`): `normal` answers Open with made-up ports; `silent` never answers
Open. In any mode an Open whose call id starts with "garble" is answered with a
frame that is not the protocol. Unknown worker options are accepted and ignored.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from pbx.rtp.control import (
    TO_WORKER,
    VERSION,
    Close,
    Closed,
    Decoder,
    Hello,
    Open,
    Opened,
    Ready,
    encode,
)
from pbx.rtp.media import Counters, MediaStats


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--mode", default="normal")
    args, _ = parser.parse_known_args()
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(True)
    decoder = Decoder(TO_WORKER)
    port = 50000
    while data := sock.recv(65536):
        for msg in decoder.feed(data):
            if isinstance(msg, Hello):
                sock.sendall(encode([Ready(VERSION, os.getpid())]))
            elif isinstance(msg, Open) and msg.call_id.startswith("garble"):
                sock.sendall(b"\x00\x00\x00\x09not json!")
            elif isinstance(msg, Open) and args.mode != "silent":
                sock.sendall(encode([Opened(msg.call_id, port, port + 2)]))
                port += 4
            elif isinstance(msg, Close):
                sock.sendall(encode([Closed(MediaStats(msg.call_id, Counters(), Counters()))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
