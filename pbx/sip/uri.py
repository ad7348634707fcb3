"""SIP, SIPS and tel URIs: parse, format, compare (pure).

RFC 3261 §19.1 (sip:/sips:) and RFC 3966 (tel:). `parse_uri` raises
`SipParseError`: 416 for a well-formed but unsupported scheme (RFC 3261
§8.2.2.1), 400 for anything malformed. `uri_equal` implements the comparison
rules of RFC 3261 §19.1.4.

Decisions:
- `host` is stored without IPv6 brackets (like `Peer.host`); `str()` adds them.
- `user`, `password`, parameter and header values are stored unescaped
  (RFC 3261 §19.1.2 escapes decoded); `str()` re-escapes what must be.
- Parameter names are stored lower-case (they are case-insensitive,
  RFC 3261 §19.1.4); valueless parameters (`;lr`) map to None.
- Host names may contain `_` (liberal: some SRV-derived names do).
- A tel: URI is `SipUri(scheme="tel", user=<number>, host="")`.
- The views are slotted dataclasses but not frozen: a frozen dataclass costs
  about 1 us more to build, on every parse. Treat them as values and change
  them with `dataclasses.replace` (their dicts are not shared with anything).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from pbx.sip.status import SipParseError

__all__ = ["SipParseError", "SipUri", "parse_uri", "uri_equal"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PORT = re.compile(r"[0-9]{1,5}")
# RFC 3966 §3: global (+digits) or local number with visual separators.
_TEL_NUMBER = re.compile(r"\+?[0-9A-Fa-f*#().\-]+")

# Character classes include "%"; `_unescape` then checks each is "%" HEX HEX
# (one class per part is much faster in `re` than an alternation per char).
_USER_RE = rf"[{_UNRESERVED}&=+$,;?/%]+"
_PASSWORD_RE = rf"[{_UNRESERVED}&=+$,%]*"
_PARAM_RE = rf"[{_UNRESERVED}\[\]/:&+$%]+"
_PARAMCHARS = re.compile(_PARAM_RE)
_HNV_RE = rf"[{_UNRESERVED}\[\]/?:+$%]*"
_ESCAPES = re.compile(rf"(?:[^%]|{_ESC})*")
# RFC 3261 §25.1 SIP-URI after "sip:", in one pass: userinfo, hostport, params, headers.
_SIP = re.compile(
    rf"(?:({_USER_RE})(?::({_PASSWORD_RE}))?@)?"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_][A-Za-z0-9_.\-]*)(?::([0-9]{1,5}))?"
    rf"((?:;{_PARAM_RE}(?:={_PARAM_RE})?)*)"
    rf"(?:\?({_HNV_RE}={_HNV_RE}(?:&{_HNV_RE}={_HNV_RE})*))?"
)

_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"  # noqa: S105 - RFC 3261 password-safe characters, not a password
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"

# RFC 3261 §19.1.4: these parameters must match when present in either URI.
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


@dataclass(init=False, slots=True)
class SipUri:
    """A sip:, sips: or tel: URI; see the module docstring for the decisions."""

    scheme: str
    user: str | None
    password: str | None
    host: str
    port: int | None
    params: dict[str, str | None]
    headers: dict[str, str]

    # A written __init__, not the dataclass one: mypyc compiles it (the generated one
    # stays interpreted, ~4x slower per object; several URIs per SIP message).
    def __init__(
        self,
        scheme: str,
        user: str | None = None,
        password: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = {} if params is None else params
        self.headers = {} if headers is None else headers

    def __str__(self) -> str:
        if self.scheme == "tel":
            return "tel:" + (self.user or "") + _format_params(self.params)
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(quote(self.user, safe=_USER_SAFE))
            if self.password is not None:
                out += [":", quote(self.password, safe=_PASSWORD_SAFE)]
            out.append("@")
        out.append(self.host_port)
        out.append(_format_params(self.params))
        if self.headers:
            pairs = (
                f"{quote(k, safe=_HEADER_SAFE)}={quote(v, safe=_HEADER_SAFE)}"
                for k, v in self.headers.items()
            )
            out += ["?", "&".join(pairs)]
        return "".join(out)

    @property
    def host_port(self) -> str:
        """`host[:port]` with IPv6 brackets, as in a Via sent-by."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def transport(self) -> str | None:
        """The `transport` parameter, lower-case, or None."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        """True for a loose-routing URI (RFC 3261 §19.1.1 `lr`)."""
        return "lr" in self.params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(
        f";{name}" if value is None else f";{name}={quote(value, safe=_PARAM_SAFE)}"
        for name, value in params.items()
    )


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    if not _ESCAPES.fullmatch(text):
        raise SipParseError(f"bad escape in URI part {text[:80]!r}")
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"bad escape in URI part {text!r}") from exc


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI; SipParseError 416/400 otherwise."""
    colon = text.find(":")
    scheme = text[:colon]
    rest = text[colon + 1 :]
    if scheme == "sip" or scheme == "sips":  # fast path: the usual spelling
        return _parse_sip(scheme, rest)
    if colon <= 0 or not _SCHEME.fullmatch(scheme):
        raise SipParseError(f"not a URI: {text[:80]!r}")
    scheme = scheme.lower()
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    raise SipParseError(f"unsupported URI scheme {scheme!r}", 416)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    m = _SIP.fullmatch(rest)
    if m is None:
        raise SipParseError(f"bad {scheme}: URI: {rest[:80]!r}")
    user, password, host, port_text, param_text, header_text = m.groups()
    if host[0] == "[":
        host = parse_host_port(host)[0]  # validates the IPv6 literal
    port = None
    if port_text is not None:
        port = int(port_text)
        if not 0 < port < 65536:
            raise SipParseError(f"port out of range: {port}")
    return SipUri(
        scheme,
        None if user is None else _unescape(user),
        None if password is None else _unescape(password),
        host,
        port,
        _split_params(param_text[1:]) if param_text else {},
        _split_headers(header_text) if header_text else {},
    )


def _split_params(text: str) -> dict[str, str | None]:
    """`a=1;lr` (already validated) -> {'a': '1', 'lr': None}."""
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        params[_unescape(name).lower()] = _unescape(value) if eq else None
    return params


def _split_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split("&"):
        name, _, value = part.partition("=")
        headers[_unescape(name)] = _unescape(value)
    return headers


def parse_host_port(text: str) -> tuple[str, int | None]:
    """`host[:port]` -> (host without brackets, port or None); 400 if bad."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise SipParseError(f"unterminated IPv6 reference: {text[:80]!r}")
        host = text[1:close]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise SipParseError(f"bad IPv6 address: {host[:80]!r}") from exc
        tail = text[close + 1 :]
    else:
        colon = text.find(":")
        host, tail = (text, "") if colon < 0 else (text[:colon], text[colon:])
        if not _HOSTNAME.fullmatch(host):
            raise SipParseError(f"bad host: {host[:80]!r}")
    if not tail:
        return host, None
    if tail[0] != ":" or not _PORT.fullmatch(tail, 1):
        raise SipParseError(f"bad port: {tail[:80]!r}")
    port = int(tail[1:])
    if not 0 < port < 65536:
        raise SipParseError(f"port out of range: {port}")
    return host, port


def _parse_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not _PARAMCHARS.fullmatch(name) or (eq and not _PARAMCHARS.fullmatch(value)):
            raise SipParseError(f"bad URI parameter: {part[:80]!r}")
        params[_unescape(name).lower()] = _unescape(value) if eq else None
    return params


def _parse_tel(rest: str) -> SipUri:
    number, _, param_text = rest.partition(";")
    if not _TEL_NUMBER.fullmatch(number):
        raise SipParseError(f"bad tel: number {number[:80]!r}")
    params = _parse_params(param_text) if param_text else {}
    return SipUri("tel", number, None, "", None, params, {})


def _host_key(host: str) -> str:
    if ":" in host:
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return host.lower()
    return host.lower()


def _param_key(value: str | None) -> str | None:
    return None if value is None else value.lower()


def _tel_digits(number: str | None) -> str:
    # RFC 3966 §4: visual separators are ignored when comparing.
    return re.sub(r"[\-.()]", "", number or "").lower()


def uri_equal(a: SipUri | str, b: SipUri | str) -> bool:
    """RFC 3261 §19.1.4 URI equivalence (tel: per RFC 3966 §4)."""
    ua = parse_uri(a) if isinstance(a, str) else a
    ub = parse_uri(b) if isinstance(b, str) else b
    if ua.scheme != ub.scheme:
        return False
    if ua.scheme == "tel":
        return _tel_digits(ua.user) == _tel_digits(ub.user) and _params_match(ua, ub, all_=True)
    if ua.user != ub.user or ua.password != ub.password:
        return False
    if _host_key(ua.host) != _host_key(ub.host) or ua.port != ub.port:
        return False
    if not _params_match(ua, ub, all_=False):
        return False
    ha = {k.lower(): v for k, v in ua.headers.items()}
    hb = {k.lower(): v for k, v in ub.headers.items()}
    return ha == hb


def _params_match(a: SipUri, b: SipUri, *, all_: bool) -> bool:
    if all_:
        pa = {k: _param_key(v) for k, v in a.params.items()}
        return pa == {k: _param_key(v) for k, v in b.params.items()}
    for name in _MUST_MATCH:
        if (name in a.params) != (name in b.params):
            return False
    for name in a.params.keys() & b.params.keys():
        if _param_key(a.params[name]) != _param_key(b.params[name]):
            return False
    return True
