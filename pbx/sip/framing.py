"""TCP framing: cut a SIP byte stream into whole messages (pure).

The one framer of the code base: the TCP transport cuts frames with
`split` (and parses them in the agent), tools and tests take parsed
messages from `feed`. UDP needs no framing: one datagram is one message
(`pbx.sip.message.parse`).
"""

from __future__ import annotations

import re

from pbx.sip.headers import parse_digits
from pbx.sip.message import MAX_BODY, MAX_MESSAGE, Message, parse
from pbx.sip.status import SipParseError

__all__ = ["StreamFramer"]

# Content-Length (or compact "l") at the start of a header line.
_CONTENT_LENGTH = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Cuts a TCP byte stream into messages (RFC 3261 §18.3), bounded by MAX_MESSAGE.

    `split(data)` returns every complete frame (bytes) so far; `feed(data)`
    the same frames parsed. CRLF keep-alives between messages are skipped
    (RFC 5626 §3.5.1); each double-CRLF ping is counted in `pings` so the
    transport can answer it with a CRLF pong. A well-framed message
    that does not parse is not returned: its `SipParseError` is appended to
    `rejected` (drain with `take_rejected()` and answer 400 if you can).
    A framing error (no Content-Length, header section or body too large)
    raises `SipParseError` with `fatal=True`: the stream cannot be
    resynchronised, close the connection; later feeds raise it again.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._broken: SipParseError | None = None
        self.rejected: list[SipParseError] = []
        self.pings = 0  # double-CRLF keep-alives seen (each wants a CRLF pong)

    def split(self, data: bytes) -> list[bytes]:
        """Every complete frame now available (raises a fatal `SipParseError`)."""
        if self._broken is not None:
            raise self._broken
        self._buf += data
        out: list[bytes] = []
        while (frame := self._next_frame()) is not None:
            out.append(frame)
        return out

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        for frame in self.split(data):
            try:
                out.append(parse(frame))
            except SipParseError as err:
                self.rejected.append(err)
        return out

    def take_rejected(self) -> list[SipParseError]:
        rejected, self.rejected = self.rejected, []
        return rejected

    @property
    def buffered(self) -> int:
        """Bytes held waiting for the rest of a message."""
        return len(self._buf)

    def _fail(self, msg: str, status: int) -> SipParseError:
        self._broken = SipParseError(msg, status, fatal=True)
        self._buf.clear()
        return self._broken

    def _next_frame(self) -> bytes | None:
        buf = self._buf
        skip = 0
        while buf.startswith(b"\r\n", skip):
            if buf.startswith(b"\r\n\r\n", skip):
                self.pings += 1
                skip += 4
            else:
                skip += 2
        if skip:
            del buf[:skip]
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_MESSAGE:
                raise self._fail("header section exceeds the message size limit", 513)
            return None
        m = _CONTENT_LENGTH.search(buf, 0, end + 2)
        if m is None:
            raise self._fail("Content-Length is mandatory on stream transports", 400)
        text = m.group(1).strip(b" \t")
        if not (text.isdigit() and text.isascii()):
            raise self._fail(f"bad Content-Length {text[:20]!r}", 400)
        length = parse_digits(text.decode("ascii"), MAX_BODY)  # leading zeros are digits
        total = end + 4 + (MAX_MESSAGE if length is None else length)
        if length is None or total > MAX_MESSAGE:
            raise self._fail(f"message of {total} bytes exceeds the limit", 413)
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        return frame
