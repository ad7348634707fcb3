"""SIP requests and responses: parse bytes into objects and back (pure).

`parse(data)` reads one complete message (a UDP datagram, or one message cut
out of a TCP stream by `pbx.sip.framing.StreamFramer`); `serialize(msg)`
(also `bytes(msg)`) writes it. Typed views of header values are in
`pbx.sip.headers` and are computed on access (`msg.vias`, `msg.from_`...), so
parsing stays cheap. Responses to a request are built by `pbx.sip.responses`;
both modules' names are re-exported from here.

Theory of operation: the header section is decoded (UTF-8, surrogateescape so
any byte survives a round trip), split on CRLF, unfolded (RFC 3261 §7.3.1)
and stored as an ordered list of (name, value). Known names are written in
their canonical form (`Call-ID`, `CSeq`, `WWW-Authenticate`) and compact
forms are expanded (RFC 3261 §7.3.3); unknown names and methods are kept
verbatim. Then the start line, the headers every message needs (RFC 3261
§8.1.1: Via, From, To, Call-ID, CSeq, each once), the top Via, From, To,
CSeq, Max-Forwards and the Request-URI are checked (so those accessors do
not raise on a parsed message), and the body is cut by Content-Length.
Other headers (Contact, Route, auth...) are checked only when read.

Decisions:
- Content-Length is framing, owned by the serializer: `parse` removes it from
  `headers` (the body's length is the truth) and `serialize` always appends a
  freshly computed `Content-Length` as the last header. So for any message m
  without a Content-Length header, `parse(serialize(m)) == m`.
- Header values are stored stripped of surrounding whitespace; a folded value
  is joined with one space. `Headers` refuses CR/LF in names and values.
- Content-Length missing: the body is the rest of the datagram (UDP, RFC 3261
  §18.3); body shorter than Content-Length: 400; longer: truncated.
- CRLFs before the start line are skipped (RFC 3261 §7.5), on UDP too.
- Parse errors are `SipParseError` only, with `.partial` (headers read so far)
  and `.start_line` so a UAS can still answer (see `pbx.sip.status`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pbx.sip.headers import (
    CANON,
    CANON_EXACT,
    LIST_KEYS,
    MAX_FORWARDS,
    ContentType,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    is_star,
    parse_content_type,
    parse_cseq,
    parse_digits,
    parse_name_addr,
    parse_via,
    split_list,
)
from pbx.sip.status import SipParseError
from pbx.sip.uri import SipUri, parse_uri

__all__ = [
    "MAX_BODY",
    "MAX_HEADERS",
    "MAX_LINE",
    "MAX_MESSAGE",
    "MAX_VIAS",
    "Headers",
    "Message",
    "Request",
    "Response",
    "SipParseError",
    "is_keepalive",
    "parse",
    "serialize",
]

# -- bounds (STYLE.md §3.7) ---------------------------------------------------
# Whole message: a UDP datagram cannot exceed 65,535 bytes (RFC 768), and
# RFC 3261 §18.1.1 expects large messages on TCP anyway; 64 KiB bounds both.
MAX_MESSAGE = 65_536
# Body: same ceiling; a larger Content-Length is answered 413.
MAX_BODY = 65_536
# Header lines: Apache's LimitRequestFields defaults to 100; SIP needs room
# for up to MAX_VIAS Via lines plus Route/Record-Route, so 256.
MAX_HEADERS = 256
# One header line: Apache's LimitRequestFieldSize default is 8,190 bytes.
MAX_LINE = 8_190
# Via values: each hop adds one and decrements Max-Forwards, whose
# recommended initial value is 70 (RFC 3261 §8.1.1.6), so 70 Vias is a loop.
MAX_VIAS = 70

_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~\-]+")
_REQUIRED_SET = frozenset({"via", "from", "to", "call-id", "cseq"})
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards", "content-type")


class Headers:
    """Ordered SIP headers; names case-insensitive, compact forms expanded.

    Values keep their order and repetition; `get_all` splits comma lists of
    list-valued headers (Via, Contact, Route...) outside quotes and <...>.
    """

    __slots__ = ("_keys", "_names", "_values")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._names: list[str] = []
        self._keys: list[str] = []
        self._values: list[str] = []
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(cls, names: list[str], keys: list[str], values: list[str]) -> Headers:
        headers = cls()  # not cls.__new__: mypyc-compiled classes have none to call
        headers._names, headers._keys, headers._values = names, keys, values
        return headers

    def get(self, name: str) -> str | None:
        """The first value of `name` (the whole line, not split), or None."""
        key = canonical_name(name)[1]
        try:
            return self._values[self._keys.index(key)]
        except ValueError:
            return None

    def get_all(self, name: str, *, split: bool = True) -> list[str]:
        """Every value of `name` in order; comma lists split for list headers."""
        key = canonical_name(name)[1]
        values = [v for k, v in zip(self._keys, self._values, strict=True) if k == key]
        if split and key in LIST_KEYS:
            return [item for v in values for item in split_list(v)]
        return values

    def set(self, name: str, value: str) -> None:
        """Replace all values of `name` with one, at the first one's place."""
        canon, key = canonical_name(name)
        value = _check_value(value)
        if key in self._keys:
            index = self._keys.index(key)
            self.remove(name)
            self._insert(index, canon, key, value)
        else:
            self._insert(len(self._keys), canon, key, value)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a value (or put it before every other header with `first`)."""
        canon, key = canonical_name(name)
        value = _check_value(value)
        self._insert(0 if first else len(self._keys), canon, key, value)

    def _insert(self, index: int, canon: str, key: str, value: str) -> None:
        self._names.insert(index, canon)
        self._keys.insert(index, key)
        self._values.insert(index, value)

    def remove(self, name: str) -> None:
        """Remove every value of `name` (no error if there is none)."""
        key = canonical_name(name)[1]
        keep = [i for i, k in enumerate(self._keys) if k != key]
        self._names = [self._names[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]
        self._values = [self._values[i] for i in keep]

    def pop_first(self, name: str) -> str | None:
        """Remove and return the first list element of `name` (top Via, first Route)."""
        key = canonical_name(name)[1]
        if key not in self._keys:
            return None
        index = self._keys.index(key)
        items = split_list(self._values[index]) if key in LIST_KEYS else [self._values[index]]
        if len(items) > 1:
            self._values[index] = ", ".join(items[1:])
        else:
            del self._names[index], self._keys[index], self._values[index]
        return items[0] if items else ""

    def items(self) -> list[tuple[str, str]]:
        return list(zip(self._names, self._values, strict=True))

    def copy(self) -> Headers:
        return Headers._trusted(list(self._names), list(self._keys), list(self._values))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name)[1] in self._keys

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._keys)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._names == other._names and self._values == other._values

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


def _check_value(value: str) -> str:
    """The value to store: one line (CR/LF refused: header injection), trimmed."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"header value must be one line: {value!r}")
    return value.strip(" \t")


# -- messages -----------------------------------------------------------------


_V = TypeVar("_V")


def _top_via(value: str) -> Via:
    items = split_list(value)
    if not items:
        raise SipParseError("empty Via")
    return parse_via(items[0])


class _Accessors:
    """Typed views shared by Request and Response, parsed on access.

    The views of Via (top), From, To and CSeq are cached per message, keyed
    by the header's value object, so they are parsed once (by `parse`) and a
    changed header is re-parsed. Cached views are shared: do not mutate them
    (use `dataclasses.replace` / `NameAddr.with_tag`).
    """

    __slots__ = ()
    headers: Headers
    _views: dict[str, tuple[str, Any]]

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name}")
        return value

    def _view(self, name: str, parser: Callable[[str], _V]) -> _V:
        raw = self._required(name)
        hit = self._views.get(name)
        if hit is not None and hit[0] is raw:
            view: _V = hit[1]
            return view
        view = parser(raw)
        self._views[name] = (raw, view)
        return view

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return self._view("CSeq", parse_cseq)

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        return self._view("Via", _top_via)

    @property
    def branch(self) -> str | None:
        """The top Via's branch parameter (RFC 3261 §17.2.3), or None."""
        return self.top_via.branch if "Via" in self.headers else None

    @property
    def from_(self) -> NameAddr:
        return self._view("From", parse_name_addr)

    @property
    def to(self) -> NameAddr:
        return self._view("To", parse_name_addr)

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact values; empty for none and for `Contact: *` (see `is_star`)."""
        values = self.headers.get_all("Contact")
        return [] if any(is_star(v) for v in values) else [parse_name_addr(v) for v in values]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Record-Route")]

    @property
    def routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Route")]

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        if value is None:
            return None
        hops = parse_digits(value, MAX_FORWARDS)
        if hops is None:
            raise SipParseError(f"bad Max-Forwards: {value[:20]!r}")
        return hops

    @property
    def content_type(self) -> ContentType | None:
        value = self.headers.get("Content-Type")
        return None if value is None else parse_content_type(value)


@dataclass(slots=True)
class Request(_Accessors):
    """A SIP request; `uri` is the Request-URI text (`request_uri` parses it)."""

    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _views: dict[str, tuple[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def request_uri(self) -> SipUri:
        """The parsed Request-URI (cached while `uri` is unchanged)."""
        hit = self._views.get("R-URI")
        if hit is not None and hit[0] is self.uri:
            uri: SipUri = hit[1]
            return uri
        uri = parse_uri(self.uri)
        self._views["R-URI"] = (self.uri, uri)
        return uri

    def __bytes__(self) -> bytes:
        return serialize(self)


@dataclass(slots=True)
class Response(_Accessors):
    """A SIP response; `method` comes from its CSeq."""

    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    _views: dict[str, tuple[str, Any]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @property
    def method(self) -> str:
        return self.cseq.method

    def __bytes__(self) -> bytes:
        return serialize(self)


Message = Request | Response


# -- serialize ------------------------------------------------------------------


def serialize(msg: Message) -> bytes:
    """Wire bytes of `msg`, Content-Length recomputed and written last."""
    if isinstance(msg, Request):
        start = f"{msg.method} {msg.uri} SIP/2.0\r\n"
    else:
        start = f"SIP/2.0 {msg.status} {msg.reason}\r\n"
    if start.count("\n") != 1 or start.count("\r") != 1:
        raise ValueError(f"CR or LF in the start line: {start!r}")  # no header injection
    h = msg.headers
    lines = [
        f"{n}: {v}\r\n"
        for n, k, v in zip(h._names, h._keys, h._values, strict=True)
        if k != "content-length"
    ]
    text = f"{start}{''.join(lines)}Content-Length: {len(msg.body)}\r\n\r\n"
    return text.encode("utf-8", "surrogateescape") + msg.body


# -- parse ------------------------------------------------------------------------


def is_keepalive(data: bytes) -> bool:
    """A CRLF keep-alive ping or pong (RFC 5626 §3.5.1): ignore, do not parse."""
    return bool(data) and not data.strip(b"\r\n")


def parse(data: bytes) -> Message:
    """Parse one whole message; raises SipParseError (and nothing else)."""
    if len(data) > MAX_MESSAGE:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE}", 513)
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 §7.5
        start += 2
    end = data.find(b"\r\n\r\n", start)
    head = data[start : len(data) if end < 0 else end].decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD.sub(" ", head)  # RFC 3261 §7.3.1: folded LWS is one SP
    lines = head.split("\r\n")
    start_line = lines[0]
    headers = _parse_header_lines(lines, head, start_line)
    try:
        if end < 0:
            raise SipParseError("no empty line after the headers")
        section = data[start:end]
        if len(section.translate(None, _CONTROL_OCTETS)) != len(section):  # ~0.3 us
            raise SipParseError(f"control octet in the header section: {_control_at(head)}")
        body = _cut_body(headers, data, end + 4)
        msg = _start(start_line, headers, body)
        _validate(msg)
    except SipParseError as err:
        err.partial, err.start_line = headers, start_line
        raise
    return msg


_FOLD = re.compile(r"[ \t]*\r\n[ \t]+")
# RFC 3261 §25.1: TEXT-UTF8, quoted-string, token... admit HT and, between
# lines, CR LF; no other C0 control and no DEL (RFC 4475 §3.1.2.x tortures
# with NUL). The search runs after the header lines are read so the 400 can
# still be answered from them (a NUL is not a line break). The check deletes
# those octets from the raw section and compares lengths (bytes.translate, a
# third of a regex search's cost); the regex only says where, on error.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_OCTETS = bytes([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F])


def _control_at(head: str) -> str:
    """Where the first control octet is: the header name (or start line) and the octet."""
    m = _CONTROL.search(head)
    if m is None:
        return "none"
    line_start = head.rfind("\n", 0, m.start()) + 1
    line = head[line_start : m.start()]
    where = "start line" if line_start == 0 else line.partition(":")[0][:40]
    return f"0x{ord(m.group()):02x} in {where!r}"


def _parse_header_lines(lines: list[str], head: str, start_line: str) -> Headers:
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    partial = Headers._trusted(names, keys, values)
    n = len(lines) - 1
    if n > MAX_HEADERS:
        raise SipParseError("too many header lines", 513, start_line=start_line)
    if head.count("\r") != n or head.count("\n") != n:
        raise SipParseError("bare CR or LF in the header section", start_line=start_line)
    if len(head) > MAX_LINE and max(map(len, lines)) > MAX_LINE:
        raise SipParseError("header line too long", 513, start_line=start_line)
    exact = CANON_EXACT
    add_name, add_key, add_value = names.append, keys.append, values.append
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        pair = exact.get(name)
        if pair is None or not colon:
            pair = _unusual_name(name, colon, partial, start_line)
        add_name(pair[0])
        add_key(pair[1])
        add_value(value.strip(" \t"))
    return partial


def _unusual_name(name: str, colon: str, partial: Headers, start_line: str) -> tuple[str, str]:
    """Header names off the fast path: odd case, spaces before ':', unknown names."""
    name = name.rstrip(" \t")
    if not colon or not _TOKEN.fullmatch(name):
        raise SipParseError(
            f"bad header line: {name[:80]!r}", partial=partial, start_line=start_line
        )
    return CANON.get(name.lower()) or (name, name.lower())


def _start(start_line: str, headers: Headers, body: bytes) -> Message:
    if start_line[:4].upper() == "SIP/":
        parts = start_line.split(" ", 2)
        _check_version(parts[0])
        code = parts[1] if len(parts) > 1 else ""
        if not (len(code) == 3 and code.isdigit() and code.isascii() and code[0] in "123456"):
            raise SipParseError(f"bad status code: {code[:20]!r}")
        return Response(int(code), parts[2] if len(parts) > 2 else "", headers, body)
    parts = start_line.split(" ")
    if len(parts) != 3 or not parts[1]:
        raise SipParseError(f"bad request line: {start_line[:80]!r}")
    method, uri, version = parts
    if method not in _METHODS and not _TOKEN.fullmatch(method):
        raise SipParseError(f"bad method: {method[:80]!r}")
    _check_version(version)
    request = Request(method, uri, headers, body)
    request._views["R-URI"] = (uri, parse_uri(uri))  # 416 unknown scheme, 400 malformed
    return request


# Methods of RFC 3261, 3262, 3311, 3428, 3515, 6086, 6665: skip the token check.
_METHODS = frozenset({"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK"}) | {
    "UPDATE",
    "INFO",
    "MESSAGE",
    "REFER",
    "NOTIFY",
    "SUBSCRIBE",
}


def _check_version(version: str) -> None:
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if re.fullmatch(r"SIP/[0-9]+\.[0-9]+", version, re.IGNORECASE):
            raise SipParseError(f"unsupported version {version[:20]!r}", 505)
        raise SipParseError(f"bad SIP version {version[:20]!r}")


def _cut_body(headers: Headers, data: bytes, body_start: int) -> bytes:
    keys, values = headers._keys, headers._values
    if "content-length" not in keys:
        return data[body_start:]  # RFC 3261 §18.3: UDP, the rest of the datagram
    index = keys.index("content-length")
    text = values[index]
    del headers._names[index], keys[index], values[index]
    if "content-length" in keys:
        if any(k == "content-length" and v != text for k, v in zip(keys, values, strict=True)):
            raise SipParseError("conflicting Content-Length values")
        headers.remove("Content-Length")
    if not (text.isdigit() and text.isascii()):
        raise SipParseError(f"bad Content-Length: {text[:20]!r}")
    length = parse_digits(text, MAX_BODY)
    if length is None:
        raise SipParseError(f"Content-Length {text[:20]} exceeds {MAX_BODY}", 413)
    if len(data) - body_start < length:
        raise SipParseError("body shorter than Content-Length")
    return data[body_start : body_start + length]  # RFC 3261 §18.3: truncate


def _validate(msg: Message) -> None:
    keys, values = msg.headers._keys, msg.headers._values
    present = set(keys)
    if not present >= _REQUIRED_SET:
        missing = sorted(_REQUIRED_SET - present)
        raise SipParseError(f"missing mandatory header(s) {', '.join(missing)}")
    if len(present) != len(keys):  # some name repeats: only list headers may
        for key in _SINGLE:
            if keys.count(key) > 1:
                raise SipParseError(f"more than one {key} header")
    top = values[keys.index("via")]
    if "," in top or keys.count("via") > 1:
        vias = msg.headers.get_all("Via")
        if len(vias) > MAX_VIAS:
            raise SipParseError(f"more than {MAX_VIAS} Via values (loop?)", 513)
    # Parse the views every layer above reads, once, straight into the cache
    # the accessors use (RFC 3261 §8.1.1: these must be well formed).
    views = msg._views
    views["Via"] = (top, _top_via(top))
    raw = values[keys.index("cseq")]
    cseq = parse_cseq(raw)
    views["CSeq"] = (raw, cseq)
    if isinstance(msg, Request) and cseq.method != msg.method:
        raise SipParseError("CSeq method does not match the request method")  # RFC 3261 §8.1.1.5
    if "max-forwards" in present:
        raw = values[keys.index("max-forwards")]
        if parse_digits(raw, MAX_FORWARDS) is None:  # RFC 3261 §20.22: 0-255
            raise SipParseError(f"bad Max-Forwards: {raw[:20]!r}")
    for name, key in (("From", "from"), ("To", "to")):
        raw = values[keys.index(key)]
        views[name] = (raw, parse_name_addr(raw))
