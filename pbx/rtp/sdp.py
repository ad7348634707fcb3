"""SDP parse and per-leg rewrite so media flows through our relay (pure).

An SDP body (RFC 4566) is kept as its ordered lines: the session part, then
one section per `m=` line. A B2BUA must pass through what it does not own, so
`rewrite` touches only these lines and copies every other one unchanged
(byte for byte, undecodable bytes included, via surrogateescape):

- `o=`: our own origin for the leg (RFC 4566 §5.2). `OriginState`, kept by the
  caller per leg, holds the username and session id (stable for the leg) and
  the version, bumped only when the rewritten body differs from the last one
  sent on that leg (RFC 3264 §8: "the version MUST be incremented" on change,
  and stay the same when nothing changed).
- `c=` at session and media level: our relay address (`IN IP4`/`IN IP6` by
  the address's family). RFC 4566 §5.7.
- `m=` port: the relay port for that stream; the `/<count>` suffix is kept.
- `a=rtcp:` (RFC 3605): rewritten to our port + 1, and its address (if the
  line carries one) to ours, keeping the line's form.

Decisions where the specs are silent:
- A stream whose port is 0 (rejected, RFC 3264 §6) stays 0 whatever port the
  caller passes; passing 0 for a stream rejects/disables it on this leg.
- `a=rtcp` absent: nothing is added, since our RTCP port is always RTP + 1,
  the RFC 3550 §11 default a peer assumes without the attribute.
- A `c=` whose address is unspecified (`0.0.0.0`, `::`) is kept as is: it is
  the legacy hold (RFC 3264 §8.4) and replacing it would silently unhold.
- If a sent-to stream has no `c=` at either level (invalid per RFC 4566
  §5.7, seen from sloppy peers), one is added after its `m=` (and `i=`).
- ICE attributes (RFC 8839: candidate, ice-ufrag, ice-pwd, ...) are dropped:
  they name the far peer's addresses and the relay does no ICE, so passing
  them would steer an ICE-capable peer around (or into a failed check of)
  the relay. `a=rtcp-mux`, `a=crypto` (SDES-SRTP, relayed opaque), codecs,
  directions, `b=` and all unknown lines pass through.
- SRTP passthrough (RFC 3711, SDES keys RFC 4568): a stream whose proto is
  `RTP/SAVP`, `RTP/SAVPF` (or DTLS-SRTP's `UDP/TLS/RTP/SAVP[F]`) keeps its
  proto, `a=crypto` and `a=fingerprint`/`a=setup` lines byte for byte; the
  relay forwards the packets unread (it never decrypts, so it cannot play
  into or record such a call: `is_srtp` lets the call side know).
- `endpoints()` gives None for a stream that must not be sent to: port 0, no
  `c=`, an unspecified address, or a host name (pure code resolves nothing
  and the relay must not block on DNS; latching finds the peer instead).
- Blank lines are dropped; LF or CRLF is accepted; CRLF is emitted.
- Bounded: 16 KiB, 512 lines and 32 streams at most (h11's 16 KiB header
  precedent; an SDP for a phone call is well under 2 KiB).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import ClassVar, Literal, cast

from pbx.errors import PbxError

MAX_SDP_BYTES = 16 * 1024
MAX_LINES = 512
MAX_MEDIA = 32

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]
DIRECTIONS: frozenset[str] = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
HOLD_DIRECTIONS: frozenset[str] = frozenset({"sendonly", "inactive"})
UNSPECIFIED: frozenset[str] = frozenset({"0.0.0.0", "::"})  # noqa: S104 - the names of unspecified addresses, to recognise them; binds nothing
# RFC 8839 §5 attributes that carry or steer ICE; dropped (see module docstring).
ICE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-lite",
        "ice-options",
        "ice-mismatch",
        "ice-pacing",
    }
)

_LINE = re.compile(r"[a-z]=")
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class SdpError(PbxError):
    """A body that is not SDP we can anchor: the answer is 488 (RFC 3261 §13.3.1.1)."""

    status_hint: ClassVar[int] = 488


@dataclass(frozen=True, slots=True)
class Connection:
    """A `c=` line: network type, address type, address (TTL/count dropped)."""

    nettype: str
    addrtype: str
    address: str


@dataclass(frozen=True, slots=True)
class Media:
    """One `m=` stream as seen by the relay."""

    kind: str
    port: int
    port_count: int | None
    proto: str
    formats: tuple[str, ...]
    connection: Connection | None  # media-level c= else session-level
    rtcp_port: int | None  # from a=rtcp (RFC 3605), if present
    rtcp_address: str | None
    direction: Direction  # media-level, else session-level, else sendrecv

    @property
    def rejected(self) -> bool:
        """RFC 3264 §6: port 0 rejects (or disables) the stream."""
        return self.port == 0

    @property
    def on_hold(self) -> bool:
        """RFC 3264 §8.4: sendonly/inactive, or the legacy c=0.0.0.0 form."""
        held_address = self.connection is not None and self.connection.address in UNSPECIFIED
        return self.direction in HOLD_DIRECTIONS or held_address


@dataclass(frozen=True, slots=True, init=False)
class Endpoint:
    """Where to send one stream's RTP and RTCP."""

    host: str
    port: int
    rtcp_host: str
    rtcp_port: int

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(self, host: str, port: int, rtcp_host: str, rtcp_port: int) -> None:
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "rtcp_host", rtcp_host)
        object.__setattr__(self, "rtcp_port", rtcp_port)


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A parsed SDP body: its lines (session part, then one tuple per m= section)."""

    session: tuple[str, ...]
    sections: tuple[tuple[str, ...], ...]
    media: tuple[Media, ...]

    def lines(self) -> list[str]:
        """Every line in order, without line endings."""
        out = list(self.session)
        for section in self.sections:
            out.extend(section)
        return out

    def to_bytes(self) -> bytes:
        """The body with CRLF line endings."""
        return _encode(self.lines())

    def endpoints(self) -> list[Endpoint | None]:
        """Per stream, where to send its media, or None (see module docstring)."""
        return [_endpoint(m) for m in self.media]

    @property
    def is_srtp(self) -> bool:
        """The first stream (the one the relay anchors) is SRTP: its audio is not readable."""
        return bool(self.media) and is_secure_proto(self.media[0].proto)

    @property
    def on_hold(self) -> bool:
        """True if every stream still in use is on hold (and there is one)."""
        active = [m for m in self.media if not m.rejected]
        return bool(active) and all(m.on_hold for m in active)


@dataclass(slots=True)
class OriginState:
    """Our `o=` for one leg; the caller keeps one per leg (RFC 3264 §8).

    `rewrite` mutates it: the version goes up by one whenever the body it
    produces differs from the previous one, and never otherwise.
    """

    session_id: int
    version: int = 0
    username: str = "pbx"
    last_body: tuple[str, ...] | None = field(default=None, repr=False)

    def stamp(self, body: list[str], address: str, addrtype: str) -> list[str]:
        """`body` (whose o= line is a placeholder or absent) with our o= in place."""
        at = next((i for i, line in enumerate(body) if line.startswith("o=")), None)
        rest = tuple(body[:at] + body[at + 1 :]) if at is not None else tuple(body)
        key = (*rest, address)
        if self.last_body is not None and key != self.last_body:
            self.version += 1
        self.last_body = key
        origin = f"o={self.username} {self.session_id} {self.version} IN {addrtype} {address}"
        if at is None:
            return [body[0], origin, *body[1:]]
        return [*body[:at], origin, *body[at + 1 :]]


def is_secure_proto(proto: str) -> bool:
    """RTP/SAVP, RTP/SAVPF, UDP/TLS/RTP/SAVP(F): SRTP profiles (RFC 3711, 5124, 5764)."""
    return proto.upper().rsplit("/", 1)[-1] in ("SAVP", "SAVPF")


def parse_sdp(data: bytes) -> SessionDescription:
    """Parse an SDP body; raises `SdpError` (and nothing else) on anything malformed."""
    if len(data) > MAX_SDP_BYTES:
        raise SdpError(f"sdp: body of {len(data)} bytes exceeds {MAX_SDP_BYTES}")
    lines = _split_lines(data)
    if not lines or lines[0] != "v=0":
        raise SdpError("sdp: first line must be v=0 (RFC 4566 §5.1)")
    starts = [i for i, line in enumerate(lines) if line.startswith("m=")]
    if len(starts) > MAX_MEDIA:
        raise SdpError(f"sdp: more than {MAX_MEDIA} media streams")
    cut = [*starts, len(lines)]
    session = tuple(lines[: cut[0]])
    sections = tuple(tuple(lines[a:b]) for a, b in pairwise(cut))
    session_conn = _first_connection(session)
    session_dir = _direction(session)
    media = tuple(_parse_media(s, session_conn, session_dir) for s in sections)
    return SessionDescription(session, sections, media)


def rewrite(
    sdp: SessionDescription, address: str, ports: Sequence[int], *, origin: OriginState
) -> bytes:
    """The SDP to send on a leg: media anchored at `address`, `ports[i]` for stream i.

    `address` is our relay's IP literal for this leg; `ports` has one RTP port
    per stream (0 rejects it). `origin` is updated (see `OriginState`).
    Raises ValueError for a caller mistake (not an IP literal, wrong count) and
    SdpError when the rewritten body would exceed MAX_SDP_BYTES.
    """
    try:
        addrtype = "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        raise ValueError(f"sdp rewrite: {address!r} is not an IP address") from None
    if len(ports) != len(sdp.media):
        raise ValueError(f"sdp rewrite: {len(ports)} ports for {len(sdp.media)} streams")
    conn = f"IN {addrtype} {address}"
    has_session_c = any(line.startswith("c=") for line in sdp.session)
    body = [_rewrite_connection(line, conn) for line in sdp.session if _kept_in_session(line)]
    for section, media, port in zip(sdp.sections, sdp.media, ports, strict=True):
        new_port = 0 if media.rejected else port
        body.extend(_rewrite_section(section, new_port, conn, need_c=not has_session_c))
    out = _encode(origin.stamp(body, address, addrtype))
    if len(out) > MAX_SDP_BYTES:  # longer c= lines can push a near-limit body over
        raise SdpError(f"sdp: rewritten body of {len(out)} bytes exceeds {MAX_SDP_BYTES}")
    return out


def _kept_in_session(line: str) -> bool:
    """Session-level lines we pass on: not ICE, and no `a=rtcp` (RFC 3605 makes it
    media-level; at session level it would carry the peer's address through)."""
    return not _is_ice(line) and _attribute(line)[0] != "rtcp"


# -- parsing helpers ---------------------------------------------------------


def _split_lines(data: bytes) -> list[str]:
    text = data.decode(_ENCODING, _ERRORS)
    lines: list[str] = []
    for raw in text.split("\n"):
        line = raw.removesuffix("\r")
        if not line:
            continue
        if not _LINE.match(line):
            raise SdpError(f"sdp: not a <type>=<value> line: {line[:40]!r}")
        lines.append(line)
        if len(lines) > MAX_LINES:
            raise SdpError(f"sdp: more than {MAX_LINES} lines")
    return lines


def _attribute(line: str) -> tuple[str, str | None]:
    """`a=name:value` -> (name, value); `a=flag` -> (flag, None)."""
    name, sep, value = line[2:].partition(":")
    return name, (value if sep else None)


def _is_ice(line: str) -> bool:
    return line.startswith("a=") and _attribute(line)[0] in ICE_ATTRIBUTES


def _direction(lines: Sequence[str]) -> Direction | None:
    for line in lines:
        if line.startswith("a=") and line[2:] in DIRECTIONS:
            return cast(Direction, line[2:])
    return None


def _parse_connection(value: str) -> Connection:
    parts = value.split()
    if len(parts) != 3:
        raise SdpError(f"sdp: bad c= line: {value[:40]!r}")
    return Connection(parts[0], parts[1], parts[2].split("/")[0])


def _first_connection(lines: Sequence[str]) -> Connection | None:
    """The first c= of `lines`; every c= is checked so `rewrite` cannot fail on one."""
    found = [_parse_connection(line[2:]) for line in lines if line.startswith("c=")]
    return found[0] if found else None


def _port(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5 or int(text) > 65535:
        raise SdpError(f"sdp: bad {what} port {text[:12]!r}")
    return int(text)


def _parse_media(
    section: Sequence[str], session_conn: Connection | None, session_dir: Direction | None
) -> Media:
    parts = section[0][2:].split()
    if len(parts) < 3:
        raise SdpError(f"sdp: bad m= line: {section[0][:40]!r}")
    port_text, _, count_text = parts[1].partition("/")
    count = _port(count_text, "m= count") if count_text else None
    rtcp_port, rtcp_address = _rtcp(section)
    return Media(
        kind=parts[0],
        port=_port(port_text, "m="),
        port_count=count,
        proto=parts[2],
        formats=tuple(parts[3:]),
        connection=_first_connection(section[1:]) or session_conn,
        rtcp_port=rtcp_port,
        rtcp_address=rtcp_address,
        direction=_direction(section[1:]) or session_dir or "sendrecv",
    )


def _rtcp(section: Sequence[str]) -> tuple[int | None, str | None]:
    """RFC 3605 `a=rtcp:<port> [<nettype> <addrtype> <address>]`; the first one counts."""
    found: list[tuple[int, str | None]] = []
    for line in section[1:]:
        if not line.startswith("a=rtcp:"):
            continue
        parts = line[len("a=rtcp:") :].split()
        if not parts:
            raise SdpError("sdp: empty a=rtcp")
        found.append((_port(parts[0], "a=rtcp"), parts[3] if len(parts) >= 4 else None))
    return found[0] if found else (None, None)


def _endpoint(media: Media) -> Endpoint | None:
    conn = media.connection
    if media.rejected or conn is None or conn.address in UNSPECIFIED:
        return None
    try:
        ipaddress.ip_address(conn.address)
    except ValueError:
        return None
    rtcp_host = media.rtcp_address or conn.address
    rtcp_port = media.rtcp_port if media.rtcp_port is not None else media.port + 1
    return Endpoint(conn.address, media.port, rtcp_host, rtcp_port)


# -- rewriting helpers -------------------------------------------------------


def _rewrite_connection(line: str, conn: str) -> str:
    if not line.startswith("c="):
        return line
    if _parse_connection(line[2:]).address in UNSPECIFIED:
        return line  # legacy hold, RFC 3264 §8.4
    return "c=" + conn


def _rewrite_m_line(line: str, port: int) -> str:
    kind, port_field, rest = line[2:].split(maxsplit=2)
    _, slash, count = port_field.partition("/")
    return f"m={kind} {port}{slash}{count} {rest}"


def _rewrite_rtcp(line: str, port: int, conn: str) -> str:
    parts = line[len("a=rtcp:") :].split()
    if port:
        parts[0] = str(port + 1)
    if len(parts) >= 4:
        parts[1:4] = conn.split()
    return "a=rtcp:" + " ".join(parts)


def _rewrite_section(section: Sequence[str], port: int, conn: str, *, need_c: bool) -> list[str]:
    out = [_rewrite_m_line(section[0], port)]
    seen_c = False
    for line in section[1:]:
        if _is_ice(line):
            continue
        if line.startswith("c="):
            seen_c = True
            out.append(_rewrite_connection(line, conn))
        elif line.startswith("a=rtcp:"):
            out.append(_rewrite_rtcp(line, port, conn))
        else:
            out.append(line)
    if need_c and not seen_c:
        at = 2 if len(out) > 1 and out[1].startswith("i=") else 1
        out.insert(at, "c=" + conn)
    return out


def _encode(lines: Sequence[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n").encode(_ENCODING, _ERRORS)
