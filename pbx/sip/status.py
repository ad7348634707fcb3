"""SIP status codes, reason phrases and the parse error that carries one (pure).

`Status` is the one place reason phrases live (STYLE.md §3.8). `SipParseError`
lives here, the lowest SIP module, so that `uri`, `headers` and `message` can
all raise it without import cycles; `pbx.sip.message` re-exports it.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Protocol

from pbx.errors import PbxError


class HeaderSource(Protocol):
    """What a UAS needs of the headers read before a parse fault (`pbx.sip.message.Headers`).

    A protocol, not the class: `message` imports this module, so naming its
    class here would be an import cycle.
    """

    def get(self, name: str) -> str | None: ...
    def get_all(self, name: str, *, split: bool = True) -> list[str]: ...


class SipParseError(PbxError):
    """Peer input that is not valid SIP; `status_hint` is the status to answer.

    400 generally; 413 body too large; 416 unsupported URI scheme; 505
    unsupported SIP version; 513 message (or header section) too large.
    `partial` holds the headers parsed before the fault (if any) and
    `start_line` the first line, so a UAS can still answer when Via, From, To,
    Call-ID and CSeq are readable. `fatal` is set by the TCP framer when the
    stream cannot be resynchronised and the connection must be closed.
    """

    def __init__(
        self,
        msg: str,
        status_hint: int = 400,
        *,
        partial: HeaderSource | None = None,
        start_line: str | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(msg)
        self.status_hint = status_hint
        self.partial = partial
        self.start_line = start_line
        self.fatal = fatal


class Status(IntEnum):
    """Common SIP response codes (RFC 3261 §21 and extensions); `.phrase`."""

    TRYING = 100
    RINGING = 180
    CALL_IS_BEING_FORWARDED = 181
    QUEUED = 182
    SESSION_PROGRESS = 183
    OK = 200
    ACCEPTED = 202
    MULTIPLE_CHOICES = 300
    MOVED_PERMANENTLY = 301
    MOVED_TEMPORARILY = 302
    BAD_REQUEST = 400
    UNAUTHORIZED = 401
    PAYMENT_REQUIRED = 402
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    NOT_ACCEPTABLE = 406
    PROXY_AUTHENTICATION_REQUIRED = 407
    REQUEST_TIMEOUT = 408
    GONE = 410
    REQUEST_ENTITY_TOO_LARGE = 413
    REQUEST_URI_TOO_LONG = 414
    UNSUPPORTED_MEDIA_TYPE = 415
    UNSUPPORTED_URI_SCHEME = 416
    BAD_EXTENSION = 420
    INTERVAL_TOO_BRIEF = 423
    TEMPORARILY_UNAVAILABLE = 480
    CALL_TRANSACTION_DOES_NOT_EXIST = 481
    LOOP_DETECTED = 482
    TOO_MANY_HOPS = 483
    ADDRESS_INCOMPLETE = 484
    AMBIGUOUS = 485
    BUSY_HERE = 486
    REQUEST_TERMINATED = 487
    NOT_ACCEPTABLE_HERE = 488
    BAD_EVENT = 489
    REQUEST_PENDING = 491
    UNDECIPHERABLE = 493
    SERVER_INTERNAL_ERROR = 500
    NOT_IMPLEMENTED = 501
    BAD_GATEWAY = 502
    SERVICE_UNAVAILABLE = 503
    SERVER_TIMEOUT = 504
    VERSION_NOT_SUPPORTED = 505
    MESSAGE_TOO_LARGE = 513
    BUSY_EVERYWHERE = 600
    DECLINE = 603
    DOES_NOT_EXIST_ANYWHERE = 604
    NOT_ACCEPTABLE_ANYWHERE = 606

    @property
    def phrase(self) -> str:
        """The RFC's reason phrase, e.g. 'Call/Transaction Does Not Exist'."""
        return _PHRASES[self.value]


_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# RFC 3261 §21: an unknown code is treated as the x00 of its class.
_CLASS_PHRASES = {
    1: "Trying",
    2: "OK",
    3: "Multiple Choices",
    4: "Bad Request",
    5: "Server Internal Error",
    6: "Busy Everywhere",
}


def reason_phrase(code: int) -> str:
    """The reason phrase for `code`, falling back to its class (RFC 3261 §21)."""
    phrase = _PHRASES.get(code)
    if phrase is not None:
        return phrase
    return _CLASS_PHRASES.get(code // 100, "Unknown")
