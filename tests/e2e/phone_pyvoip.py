"""A pyVoIP softphone for the e2e tests, run as its own process (test-only, GPL-3.0 peer).

    python -m tests.e2e.phone_pyvoip --server 127.0.0.1 --port 5070 --user alice
        --password PW --ip 127.0.0.2 --sip-port 5072 --rtp 30000-30009 --seconds 15

Why a subprocess: pyVoIP is threaded (a SIP thread, a register timer, two
RTP threads per call) and blocks in its sockets; in a child process all of
it dies with the process, killed by PID, and it never shares the test's
event loop. pbx never imports pyVoIP (tests/unit/test_registrations.py
checks); only this file does.

It prints one line per event on stdout (flushed) for the test to wait on:
`REGISTERED`, `RINGING`, `ANSWERED`, `ENDED rtp_in=N`, `FAILED reason`.
RTP is counted at the phone by wrapping `RTPClient.parse_packet` (every
packet the relay delivered); the phone sends audio by itself (pyVoIP
transmits its buffer, silence when empty, every 20 ms).

pyVoIP 1.6 limits met and how they are handled:
- digest: MD5 only and without qop (RFC 2069 form, uri
  `sip:SERVER;transport=UDP`): pbx offers SHA-256 then MD5; pyVoIP keeps the
  last WWW-Authenticate it parsed (MD5), and pbx accepts the no-qop form,
  one request per nonce.
- it binds its SIP socket to `--ip`: the phone uses 127.0.0.2 so that its
  REGISTER does not come from the trunk's address (127.0.0.1).
- it exits the process after `--seconds` whatever happens (bounded).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

from pyVoIP import RTP
from pyVoIP.VoIP import CallState, PhoneStatus, VoIPPhone

RTP_IN = [0]


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _count_packets() -> None:
    original = RTP.RTPClient.parse_packet

    def counted(self: Any, packet: bytes) -> None:
        RTP_IN[0] += 1
        original(self, packet)

    RTP.RTPClient.parse_packet = counted  # type: ignore[method-assign]


def answer(call: Any) -> None:
    say("RINGING")
    try:
        call.answer()
        say("ANSWERED")
        audio = bytes([0x40]) * 160  # a tone-ish payload, distinct from silence
        while call.state == CallState.ANSWERED:
            call.write_audio(audio)
            time.sleep(0.02)
    except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
        say(f"FAILED {type(exc).__name__}: {exc}")
    say(f"ENDED rtp_in={RTP_IN[0]}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--ip", required=True)
    parser.add_argument("--sip-port", type=int, required=True)
    parser.add_argument("--rtp", required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    low, high = (int(p) for p in args.rtp.split("-"))
    _count_packets()
    phone = VoIPPhone(
        args.server, args.port, args.user, args.password, myIP=args.ip,
        callCallback=answer, sipPort=args.sip_port, rtpPortLow=low, rtpPortHigh=high,
    )  # fmt: skip
    threading.Timer(args.seconds, lambda: _stop(phone)).start()
    try:
        phone.start()
    except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
        say(f"FAILED {type(exc).__name__}: {exc}")
        return 1
    deadline = time.monotonic() + args.seconds
    settled = (PhoneStatus.REGISTERED, PhoneStatus.FAILED, PhoneStatus.INACTIVE)
    while time.monotonic() < deadline and phone.get_status() not in settled:
        time.sleep(0.05)
    status = phone.get_status()
    say("REGISTERED" if status == PhoneStatus.REGISTERED else f"FAILED register {status.name}")
    while time.monotonic() < deadline:
        time.sleep(0.1)
    return 0


def _stop(phone: Any) -> None:
    import os

    try:
        phone.stop()
    finally:
        os._exit(0)  # pyVoIP's timer threads would keep the process alive


if __name__ == "__main__":
    sys.exit(main())
