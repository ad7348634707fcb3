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
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from pbx.sip.status import SipParseError

__all__ = ["SipParseError", "SipUri", "parse_uri", "uri_equal"]

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# RFC 3261 §25.1: user = 1*( unreserved / escaped / user-unreserved )
_USER = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
_PASSWORD = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
_PARAMCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESC})+")
_HNVCHARS = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESC})*")
_HOSTNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_PORT = re.compile(r"[0-9]{1,5}")
# RFC 3966 §3: global (+digits) or local number with visual separators.
_TEL_NUMBER = re.compile(r"\+?[0-9A-Fa-f*#().\-]+")

_USER_SAFE = "-_.!~*'()&=+$,;?/"
_PASSWORD_SAFE = "-_.!~*'()&=+$,"
_PARAM_SAFE = "-_.!~*'()[]/:&+$"
_HEADER_SAFE = "-_.!~*'()[]/?:+$"

# RFC 3261 §19.1.4: these parameters must match when present in either URI.
_MUST_MATCH = ("user", "ttl", "method", "maddr", "transport")


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip:, sips: or tel: URI; see the module docstring for the decisions."""

    scheme: str
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

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
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"bad escape in URI part {text!r}") from exc


def parse_uri(text: str) -> SipUri:
    """Parse a sip:, sips: or tel: URI; SipParseError 416/400 otherwise."""
    colon = text.find(":")
    if colon <= 0 or not _SCHEME.fullmatch(text, 0, colon):
        raise SipParseError(f"not a URI: {text[:80]!r}")
    scheme = text[:colon].lower()
    rest = text[colon + 1 :]
    if scheme in ("sip", "sips"):
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        return _parse_tel(rest)
    raise SipParseError(f"unsupported URI scheme {scheme!r}", 416)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        user, password = _parse_userinfo(rest[:at])
        rest = rest[at + 1 :]
    headers: dict[str, str] = {}
    qmark = rest.find("?")
    if qmark >= 0:
        headers = _parse_headers(rest[qmark + 1 :])
        rest = rest[:qmark]
    semi = rest.find(";")
    params: dict[str, str | None] = {}
    if semi >= 0:
        params = _parse_params(rest[semi + 1 :])
        rest = rest[:semi]
    host, port = parse_host_port(rest)
    return SipUri(scheme, user, password, host, port, params, headers)


def _parse_userinfo(text: str) -> tuple[str, str | None]:
    colon = text.find(":")
    user, password = (text, None) if colon < 0 else (text[:colon], text[colon + 1 :])
    if not _USER.fullmatch(user):
        raise SipParseError(f"bad user part in URI: {user[:80]!r}")
    if password is not None:
        if not _PASSWORD.fullmatch(password):
            raise SipParseError("bad password in URI")
        password = _unescape(password)
    return _unescape(user), password


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


def _parse_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for part in text.split("&"):
        name, eq, value = part.partition("=")
        if not eq or not name or not _HNVCHARS.fullmatch(name) or not _HNVCHARS.fullmatch(value):
            raise SipParseError(f"bad URI header: {part[:80]!r}")
        headers[_unescape(name)] = _unescape(value)
    return headers


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
