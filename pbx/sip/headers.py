"""Typed views of SIP header values: Via, name-addr, CSeq, RSeq/RAck, Content-Type, auth (pure).

Each `parse_*` takes one header value (one element of a comma list, as
`Headers.get_all` returns it) and returns a dataclass; `str()` formats it
back. Errors are `SipParseError` (400). The header container itself is
`pbx.sip.message.Headers`; `split_list` here is its comma splitter.

Decisions:
- Header parameter names are stored lower-case (case-insensitive, RFC 3261
  §7.3.1); values keep their case, quoted-string values are stored unquoted.
  Valueless parameters (`;rport`, `;lr`) map to None.
- `Via.host` and `SipUri.host` are stored without IPv6 brackets.
- A bare addr-spec (`To: sip:bob@b.example;tag=x`) carries no URI
  parameters: everything after `;` belongs to the header (RFC 3261 §20.10).
  Formatting always writes `<uri>`.
- `Contact: *` is not a NameAddr: test with `is_star`.
- The views are slotted dataclasses but not frozen: a frozen dataclass costs
  about 1 us more to build, on every parse. Treat them as values and change
  them with `dataclasses.replace` (their dicts are not shared with anything).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from pbx.sip.status import SipParseError
from pbx.sip.uri import SipUri, parse_host_port, parse_uri

__all__ = [
    "CANON",
    "CANON_EXACT",
    "CHALLENGE_UNQUOTED",
    "COMPACT_FORMS",
    "CREDENTIALS_UNQUOTED",
    "LIST_HEADERS",
    "LIST_KEYS",
    "MAX_DELTA",
    "MAX_FORWARDS",
    "MAX_SEQ",
    "AuthParams",
    "CSeq",
    "ContentType",
    "NameAddr",
    "RAck",
    "SipParseError",
    "Via",
    "canonical_name",
    "format_auth",
    "format_params",
    "is_star",
    "parse_auth",
    "parse_content_type",
    "parse_cseq",
    "parse_digits",
    "parse_name_addr",
    "parse_params",
    "parse_rack",
    "parse_rseq",
    "parse_via",
    "quote_string",
    "split_list",
    "unquote_string",
]

_TOKEN_CHARS = r"A-Za-z0-9.!%*_+`'~\-"  # noqa: S105 - RFC 3261 token characters, not a password
_TOKEN = re.compile(f"[{_TOKEN_CHARS}]+")
# A parameter value that needs no quoting: token, or host chars (IPv6 received=).
_BARE_VALUE = re.compile(rf"[{_TOKEN_CHARS}:\[\]]+")
_QUOTED = re.compile(r'"([^"\\]*(?:\\.[^"\\]*)*)"', re.DOTALL)
_LWS = " \t"

# RFC 3261 §25.1 Via: sent-protocol LWS sent-by (LWS allowed around "/" and ":").
_VIA = re.compile(
    rf"[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9_.\-]+)(?:[ \t]*:[ \t]*([0-9]+))?[ \t]*"
)
_CSEQ = re.compile(rf"[ \t]*([0-9]+)[ \t]+([{_TOKEN_CHARS}]+)[ \t]*")
_RACK = re.compile(rf"[ \t]*([0-9]+)[ \t]+([0-9]+)[ \t]+([{_TOKEN_CHARS}]+)[ \t]*")
_CONTENT_TYPE = re.compile(rf"[ \t]*([{_TOKEN_CHARS}]+)[ \t]*/[ \t]*([{_TOKEN_CHARS}]+)[ \t]*")
_AUTH_PARAM = re.compile(
    rf"[ \t]*([{_TOKEN_CHARS}]+)[ \t]*=[ \t]*"
    r'(?:"([^"\\]*(?:\\.[^"\\]*)*)"|([^ \t,"]*))[ \t]*(?:,|$)',
    re.DOTALL,
)
_NEXT_CHALLENGE = re.compile(rf"[ \t]*[{_TOKEN_CHARS}]+[ \t]+[{_TOKEN_CHARS}]+[ \t]*=")
# RFC 3261 §8.1.1.5: CSeq sequence numbers are below 2**31.
MAX_SEQ = 2**31 - 1
# RFC 3261 §20.19 / §20.22: Expires and delta-seconds stop at 2**32-1,
# Max-Forwards at 255 (also the IP TTL bound of the Via `ttl` parameter).
MAX_DELTA = 2**32 - 1
MAX_FORWARDS = 255


def parse_digits(text: str, maximum: int) -> int | None:
    """The value of `1*DIGIT` text (RFC 3261 §25.1), or None if not digits or above `maximum`.

    Leading zeros are digits like any other (`0070` is 70), so the length of
    the text is not a bound: the value is. ASCII digits only (`str.isdigit`
    also takes `²`, which `int` refuses), and the zeros are stripped before
    `int` so a long run of them never meets Python's int-from-str limit.
    """
    if not (text and text.isascii() and text.isdigit()):
        return None
    significant = text.lstrip("0") or "0"
    if len(significant) > len(str(maximum)):
        return None
    value = int(significant)
    return value if value <= maximum else None


# -- header names ------------------------------------------------------------


def _words(text: str) -> list[str]:
    return text.split()


# RFC 3261 §7.3.3 and the IANA SIP header registry: compact forms.
COMPACT_FORMS = {
    "i": "Call-ID",
    "m": "Contact",
    "f": "From",
    "t": "To",
    "v": "Via",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "u": "Allow-Events",
    "r": "Refer-To",
    "x": "Session-Expires",
    "b": "Referred-By",
    "y": "Identity",
    "j": "Reject-Contact",
    "a": "Accept-Contact",
    "d": "Request-Disposition",
}
# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): only
# these are split by Headers.get_all (WWW-Authenticate, Date... hold commas).
LIST_HEADERS = _words(
    "Accept Accept-Contact Accept-Encoding Accept-Language Alert-Info Allow Allow-Events "
    "Call-Info Contact Content-Encoding Content-Language Diversion Error-Info History-Info "
    "In-Reply-To P-Asserted-Identity P-Preferred-Identity Path Proxy-Require Reason "
    "Record-Route Reject-Contact Request-Disposition Require Route Security-Client "
    "Security-Server Security-Verify Service-Route Supported Unsupported Via Warning"
)
# Other names written in canonical form whatever case the peer used.
OTHER_HEADERS = _words(
    "Authentication-Info Authorization Call-ID Content-Disposition Content-Length "
    "Content-Type CSeq Date Event Expires From Identity Max-Forwards Min-Expires Min-SE "
    "MIME-Version Organization Priority Privacy Proxy-Authenticate Proxy-Authorization RAck "
    "Refer-To Referred-By Remote-Party-ID Replaces Reply-To Retry-After RSeq Server "
    "Session-Expires Subject Subscription-State Timestamp To User-Agent WWW-Authenticate"
)
# lower-case name (or compact letter) -> (canonical name, lookup key)
CANON: dict[str, tuple[str, str]] = {
    n.lower(): (n, n.lower()) for n in LIST_HEADERS + OTHER_HEADERS
}
CANON.update({letter: (n, n.lower()) for letter, n in COMPACT_FORMS.items()})
# Exact-case fast path: "Via", "via", "VIA", "v", "V" hit without .lower().
CANON_EXACT = dict(CANON)
CANON_EXACT.update({pair[0]: pair for pair in CANON.values()})
CANON_EXACT.update({name.upper(): pair for name, pair in CANON.items()})
LIST_KEYS = frozenset(n.lower() for n in LIST_HEADERS)


def canonical_name(name: str) -> tuple[str, str]:
    """(name as written on output, lower-case lookup key); ValueError if not a token.

    Known names and compact forms map to the canonical spelling (`call-id` ->
    `Call-ID`, `v` -> `Via`); unknown names are kept verbatim.
    """
    pair = CANON_EXACT.get(name) or CANON.get(name.lower())
    if pair is not None:
        return pair
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"not a header name: {name!r}")
    return name, name.lower()


# -- strings and parameter lists ---------------------------------------------


def unquote_string(text: str) -> str:
    """`"a \\"b\\""` -> `a "b"` (RFC 3261 §25.1 quoted-pair); other text unchanged."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        body = text[1:-1]
        return re.sub(r"\\(.)", r"\1", body, flags=re.DOTALL) if "\\" in body else body
    return text


def quote_string(text: str) -> str:
    """Quote `text` as an RFC 3261 quoted-string, escaping `"` and `\\`."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _scan(text: str, seps: str) -> list[str]:
    """Split `text` at any char in `seps` outside quotes and <...>."""
    parts: list[str] = []
    start = 0
    in_quote = in_angle = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif in_quote:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch in seps and not in_angle:
            parts.append(text[start:i])
            start = i + 1
    if in_quote:
        raise SipParseError(f"unterminated quoted string: {text[:80]!r}")
    parts.append(text[start:])
    return parts


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), not inside quotes or <>."""
    if "," not in value:
        return [value]
    parts = value.split(",") if '"' not in value and "<" not in value else _scan(value, ",")
    return [item for p in parts if (item := p.strip(_LWS))]


# RFC 3261 §25.1 generic-param: token [ EQUAL ( token / host / quoted-string ) ]
_PARAM = (
    rf"[ \t]*;[ \t]*([{_TOKEN_CHARS}]+)"
    rf'(?:[ \t]*=[ \t]*(?:([{_TOKEN_CHARS}:\[\]]+)|"([^"\\]*(?:\\.[^"\\]*)*)"))?'
)
_PARAMS = re.compile(f"(?:{_PARAM})*[ \t]*", re.DOTALL)
_PARAM_ONE = re.compile(_PARAM, re.DOTALL)


_PARAMS_BARE = re.compile(
    rf"(?:[ \t]*;[ \t]*[{_TOKEN_CHARS}]+(?:[ \t]*=[ \t]*[{_TOKEN_CHARS}:\[\]]+)?)*[ \t]*"
)


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b;c="x y"` -> {'a': '1', 'b': None, 'c': 'x y'} (names lower-cased)."""
    if not text:
        return {}
    params: dict[str, str | None] = {}
    if '"' not in text and _PARAMS_BARE.fullmatch(text):  # fast path: no quoted values
        for part in text.split(";")[1:]:
            name, eq, value = part.partition("=")
            params[name.strip(_LWS).lower()] = value.strip(_LWS) if eq else None
        return params
    if not _PARAMS.fullmatch(text):
        raise SipParseError(f"bad header parameters: {text[:80]!r}")
    for m in _PARAM_ONE.finditer(text):
        name, bare, quoted = m.groups()
        params[name.lower()] = bare if quoted is None else unquote_string(f'"{quoted}"')
    return params


def format_params(params: dict[str, str | None]) -> str:
    """Inverse of `parse_params`: quotes values that are not tokens/hosts."""
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif _BARE_VALUE.fullmatch(value):
            out.append(f";{name}={value}")
        else:
            out.append(f";{name}={quote_string(value)}")
    return "".join(out)


# -- Via ---------------------------------------------------------------------


@dataclass(init=False, slots=True)
class Via:
    """One Via value (RFC 3261 §20.42); `transport` upper-case ("UDP", "TCP")."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None]

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self.params = {} if params is None else params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The numeric rport value (RFC 3581 §4), None if absent or valueless."""
        value = self.params.get("rport")
        return parse_digits(value, 65535) if value else None

    @property
    def wants_rport(self) -> bool:
        """True if the sender asked for rport (RFC 3581 §3), valueless or not."""
        return "rport" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        return parse_digits(value, MAX_FORWARDS) if value else None

    @property
    def sent_by(self) -> str:
        """`host[:port]` as sent, for transaction matching (RFC 3261 §17.2.3)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"SIP/2.0/{self.transport} {self.sent_by}{format_params(self.params)}"


def parse_via(value: str) -> Via:
    """Parse one Via value, e.g. `SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport`."""
    m = _VIA.match(value)
    if m is None or m.group(1).upper() != "SIP":
        raise SipParseError(f"bad Via: {value[:80]!r}")
    host, port_text = m.group(4), m.group(5)
    if host[0] == "[":
        host = parse_host_port(host)[0]  # validates the IPv6 literal
    port = None
    if port_text is not None:
        port = parse_digits(port_text, 65535)
        if not port:
            raise SipParseError(f"Via port out of range: {value[:80]!r}")
    return Via(m.group(3).upper(), host, port, parse_params(value[m.end() :]))


# -- name-addr: From, To, Contact, Route, Record-Route, Refer-To... ----------


@dataclass(slots=True)
class NameAddr:
    """`"Display" <uri>;params` (RFC 3261 §20.10, §25.1 name-addr / addr-spec)."""

    display: str | None
    uri: SipUri
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def expires(self) -> int | None:
        """Contact `expires` parameter (RFC 3261 §10.2.1.1), if numeric."""
        value = self.params.get("expires")
        return parse_digits(value, MAX_DELTA) if value else None

    def with_tag(self, tag: str) -> NameAddr:
        return NameAddr(self.display, self.uri, {**self.params, "tag": tag})

    def __str__(self) -> str:
        display = "" if self.display is None else quote_string(self.display) + " "
        return f"{display}<{self.uri}>{format_params(self.params)}"


def is_star(value: str) -> bool:
    """True for the `Contact: *` of a REGISTER that removes all bindings (RFC 3261 §10.2.2)."""
    return value.strip(_LWS) == "*"


def parse_name_addr(value: str) -> NameAddr:
    """Parse From/To/Contact/Route-style values, quoted or bare display, <uri> or addr-spec."""
    text = value.strip(_LWS)
    if text.startswith('"'):
        m = _QUOTED.match(text)
        if m is None:
            raise SipParseError(f"unterminated display name: {text[:80]!r}")
        display: str | None = unquote_string(m.group(0))
        rest = text[m.end() :].lstrip(_LWS)
        if not rest.startswith("<"):
            raise SipParseError(f"expected <uri> after display name: {text[:80]!r}")
        return _angle_addr(display, rest, text)
    lt = text.find("<")
    if lt < 0:
        semi = text.find(";")
        uri_text, param_text = (text, "") if semi < 0 else (text[:semi], text[semi:])
        if not uri_text or any(c in uri_text for c in ' \t>"'):
            raise SipParseError(f"bad addr-spec: {text[:80]!r}")
        return NameAddr(None, parse_uri(uri_text), parse_params(param_text))
    if lt == 0:
        return _angle_addr(None, text, text)
    words = text[:lt].split()
    if not all(_TOKEN.fullmatch(w) for w in words):
        raise SipParseError(f"bad display name: {text[:80]!r}")
    return _angle_addr(" ".join(words) if words else None, text[lt:], text)


def _angle_addr(display: str | None, rest: str, whole: str) -> NameAddr:
    gt = rest.find(">")
    if gt < 0:
        raise SipParseError(f"unterminated <uri>: {whole[:80]!r}")
    tail = rest[gt + 1 :]
    return NameAddr(display, parse_uri(rest[1:gt].strip(_LWS)), parse_params(tail) if tail else {})


# -- CSeq, RSeq, RAck, Content-Type ------------------------------------------


@dataclass(slots=True)
class CSeq:
    """`CSeq: 4711 INVITE` (RFC 3261 §20.16)."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


def parse_cseq(value: str) -> CSeq:
    m = _CSEQ.fullmatch(value)
    seq = None if m is None else parse_digits(m.group(1), MAX_SEQ)
    if seq is None or m is None:
        raise SipParseError(f"bad CSeq: {value[:80]!r}")
    return CSeq(seq, m.group(2))


def parse_rseq(value: str) -> int:
    """RSeq (RFC 3262 §7.1): 1 .. 2**31-1."""
    rseq = parse_digits(value.strip(_LWS), MAX_SEQ)
    if not rseq:
        raise SipParseError(f"bad RSeq: {value[:80]!r}")
    return rseq


@dataclass(slots=True)
class RAck:
    """`RAck: 776656 1 INVITE` (RFC 3262 §7.2)."""

    rseq: int
    cseq: int
    method: str

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def parse_rack(value: str) -> RAck:
    m = _RACK.fullmatch(value)
    rseq = None if m is None else parse_digits(m.group(1), MAX_SEQ)
    cseq = None if m is None else parse_digits(m.group(2), MAX_SEQ)
    if m is None or rseq is None or cseq is None:
        raise SipParseError(f"bad RAck: {value[:80]!r}")
    return RAck(rseq, cseq, m.group(3))


@dataclass(slots=True)
class ContentType:
    """`application/sdp;charset=utf-8` (RFC 3261 §20.15); type/subtype lower-case."""

    type: str
    subtype: str
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def mime(self) -> str:
        return f"{self.type}/{self.subtype}"

    def __str__(self) -> str:
        return self.mime + format_params(self.params)


def parse_content_type(value: str) -> ContentType:
    m = _CONTENT_TYPE.match(value)
    if m is None:
        raise SipParseError(f"bad Content-Type: {value[:80]!r}")
    params = parse_params(value[m.end() :])
    return ContentType(m.group(1).lower(), m.group(2).lower(), params)


# -- WWW-Authenticate / Authorization (RFC 3261 §20.27, §20.44; RFC 7616) ----

# Digest params written as tokens, never quoted (RFC 7616 §3.3 and §3.4).
CHALLENGE_UNQUOTED = frozenset({"algorithm", "stale"})
CREDENTIALS_UNQUOTED = frozenset({"algorithm", "nc", "qop"})


@dataclass(slots=True)
class AuthParams:
    """`Digest realm="x", nonce="y", qop="auth"`: scheme + ordered, unquoted params."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def qop_options(self) -> list[str]:
        """`qop="auth,auth-int"` -> ['auth', 'auth-int']."""
        return [q.strip(_LWS) for q in self.params.get("qop", "").split(",") if q.strip(_LWS)]

    @property
    def stale(self) -> bool:
        return self.params.get("stale", "").lower() == "true"

    def __str__(self) -> str:
        return format_auth(self.scheme, self.params)


def parse_auth(value: str) -> AuthParams:
    """Parse one challenge or credentials value; names lower-cased, values unquoted.

    A second challenge in the same value (`Digest ..., Basic ...`) is ignored.
    """
    text = value.strip(_LWS)
    m = _TOKEN.match(text)
    if m is None:
        raise SipParseError(f"bad auth scheme: {text[:80]!r}")
    scheme, pos = m.group(0), m.end()
    params: dict[str, str] = {}
    while pos < len(text):
        pm = _AUTH_PARAM.match(text, pos)
        if pm is None:
            if params and _NEXT_CHALLENGE.match(text, pos):
                break  # RFC 7235 §4.1: the next challenge starts here
            raise SipParseError(f"bad auth parameter: {text[pos : pos + 80]!r}")
        quoted, bare = pm.group(2), pm.group(3)
        params[pm.group(1).lower()] = unquote_string(f'"{quoted}"') if quoted is not None else bare
        pos = pm.end()
    return AuthParams(scheme, params)


def format_auth(
    scheme: str, params: dict[str, str], *, unquoted: Iterable[str] = CHALLENGE_UNQUOTED
) -> str:
    """`Digest realm="x", algorithm=MD5`: names in `unquoted` are written bare.

    Use `CREDENTIALS_UNQUOTED` for Authorization/Proxy-Authorization values.
    """
    bare = set(unquoted)
    parts = [
        f"{name}={value}" if name in bare else f"{name}={quote_string(value)}"
        for name, value in params.items()
    ]
    return f"{scheme} {', '.join(parts)}"
