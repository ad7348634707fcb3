"""TCP framing: cut a SIP byte stream into whole messages (pure).

Split out of `pbx.sip.message` (STYLE.md §3.9) and re-exported from there, so
`from pbx.sip.message import StreamFramer` keeps working. UDP needs no
framing: one datagram is one message (`pbx.sip.message.parse`).
"""

from __future__ import annotations

import re

from pbx.sip.message import MAX_BODY, MAX_MESSAGE, Message, parse
from pbx.sip.status import SipParseError

__all__ = ["StreamFramer"]

# Content-Length (or compact "l") at the start of a header line.
_CONTENT_LENGTH = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)


class StreamFramer:
    """Cuts a TCP byte stream into messages (RFC 3261 §18.3), bounded by MAX_MESSAGE.

    `feed(data)` returns every complete message so far. CRLF keep-alives
    between messages are skipped (RFC 5626 §3.5.1). A well-framed message
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

    def feed(self, data: bytes) -> list[Message]:
        if self._broken is not None:
            raise self._broken
        self._buf += data
        out: list[Message] = []
        while (frame := self._next_frame()) is not None:
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
        if not (text.isdigit() and len(text) <= 10):
            raise self._fail(f"bad Content-Length {text[:20]!r}", 400)
        total = end + 4 + int(text)
        if int(text) > MAX_BODY or total > MAX_MESSAGE:
            raise self._fail(f"message of {total} bytes exceeds the limit", 413)
        if len(buf) < total:
            return None
        frame = bytes(buf[:total])
        del buf[:total]
        return frame
