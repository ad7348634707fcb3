"""rtpengine ng control protocol: typed messages and a sans-IO client (pure).

Wire format (docs/ng_control_protocol.md, sipwise/rtpengine): one UDP
datagram per message, `<cookie> <bencoded dictionary>`. A request has a
`command` key; a reply carries the request's cookie and a `result` of `ok`,
`error` (with `error-reason`) or, for `ping`, `pong`. `ok` may carry a
`warning`. rtpengine caches each reply by cookie (30-60 s, its
daemon/cookie_cache.c): a retransmission with the same cookie gets the same
reply and is not executed twice, which is what makes retransmitting an
`offer` safe.

`NgClient` is the state machine; the I/O edge (pbx/rtp/rtpengine.py) owns
the socket and the clock. Theory of operation:

    request(req, now)        -> Transmit: send `datagram` to `address`, call
                                on_timer() at `deadline` (next_deadline()).
    on_datagram(data, addr)  -> Completed, or None (unknown cookie, wrong
                                source address, no cookie: ignored, counted
                                in `ignored`).
    on_timer(now)            -> [Transmit | Completed]: retransmissions,
                                fail-overs, timeouts.

Decisions:
- Retransmission: the same datagram (same cookie) after each interval in
  `intervals` (default 0.5, 1, 2 s: sends at t=0, 0.5, 1.5; the instance is
  given up at t=3.5). The schedule restarts on the next instance, so a
  request ends within len(instances) * sum(intervals) seconds.
- Fail-over: a new cookie per instance (the cookie is per rtpengine). An
  instance that timed out is `down` for `down_for` seconds (default 30) and
  new calls try healthy instances first, in listed order, then the down
  ones. Any reply from an instance clears its down mark.
- Call affinity: an `offer` for a call-id with no affinity is a new call: it
  may fail over, and the call-id is bound to whichever instance it is sent
  to. Every later request for that call-id (re-offer, `answer`, `query`,
  `delete`) goes to that instance only and never fails over, because no
  other instance has the call's state: on timeout it fails. A new call whose
  offer fails (timeout or `error` reply) is unbound. `delete` unbinds on any
  outcome (rtpengine drops the call itself after its own timeouts if the
  delete was lost). Requests for a call-id with no affinity other than offer
  (pbx restarted, say) and `ping` try the instances in order like a new
  call, without binding. `request(..., instance=addr)` pins one instance
  (no fail-over; a new call's offer still binds to it).
- An offer that timed out on instance 1 may still have created the call
  there (lost reply); it is left to rtpengine's own `--offer-timeout` or
  `--timeout` to reap, since we cannot know.
- An `error` reply or a garbled reply completes the request; only silence
  fails over. A garbled reply means a broken peer, not a lost packet.
- Addresses are IP literals and compared by (host, port), so the edge
  resolves names first. Bounded: `max_pending` requests in flight, and
  `max_calls` affinities (oldest dropped first).
- Cookies are `<prefix><counter>`; the prefix is injected (STYLE §3.3): the
  edge uses a random one so that a restarted pbx never reuses a cookie that
  rtpengine still has a cached reply for.
- SDP bodies are bytes, as in pbx/rtp/sdp.py; other strings are text.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from pbx.errors import PbxError
from pbx.rtp import bencode
from pbx.rtp.bencode import BencodeError, Encodable, Value

Address: TypeAlias = tuple[str, int]

MAX_DATAGRAM = 65507  # largest IPv4 UDP payload; a request above it cannot be sent
MAX_COOKIE = 64  # ours are ~20 bytes; rtpengine echoes whatever it got
DEFAULT_INTERVALS = (0.5, 1.0, 2.0)
DOWN_FOR = 30.0  # seconds an instance that timed out is tried last
MAX_PENDING = 1024  # requests in flight; each is a call being set up or torn down
MAX_CALLS = 100_000  # call-id -> instance affinities kept


class NgError(PbxError):
    """A garbled ng reply, or a request the client cannot send."""


class Command(enum.StrEnum):
    PING = "ping"
    OFFER = "offer"
    ANSWER = "answer"
    DELETE = "delete"
    QUERY = "query"


# --- requests -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaOptions:
    """Offer/answer options. The defaults anchor plain RTP for a B2BUA.

    `ice="remove"` strips ICE candidates so phones cannot route around the
    anchor; `replace=("origin",)` puts rtpengine's address in o= too. Flags
    are ng `flags` strings (e.g. "trust-address", "strict-source");
    `direction` names two `--interface` names (from side, to side). `extra`
    adds other documented keys verbatim; it cannot override those above.
    """

    flags: tuple[str, ...] = ()
    replace: tuple[str, ...] = ("origin",)
    ice: str | None = "remove"
    direction: tuple[str, str] | None = None
    rtcp_mux: tuple[str, ...] = ()
    transport_protocol: str | None = None
    address_family: str | None = None
    media_address: str | None = None
    label: str | None = None
    extra: Mapping[str, Encodable] = field(default_factory=dict)

    def items(self) -> dict[str, Encodable]:
        out: dict[str, Encodable] = dict(self.extra)
        optional: dict[str, Encodable | None] = {
            "flags": list(self.flags) or None,
            "replace": list(self.replace) or None,
            "ICE": self.ice,
            "direction": list(self.direction) if self.direction else None,
            "rtcp-mux": list(self.rtcp_mux) or None,
            "transport-protocol": self.transport_protocol,
            "address family": self.address_family,
            "media address": self.media_address,
            "label": self.label,
        }
        out.update({k: v for k, v in optional.items() if v is not None})
        return out


B2BUA = MediaOptions()


@dataclass(frozen=True, slots=True)
class Ping:
    command: Literal[Command.PING] = Command.PING
    call_id: None = None

    def body(self) -> dict[str, Encodable]:
        return {"command": "ping"}


@dataclass(frozen=True, slots=True)
class Offer:
    call_id: str
    from_tag: str
    sdp: bytes
    options: MediaOptions = B2BUA
    via_branch: str | None = None
    command: Literal[Command.OFFER] = Command.OFFER

    def body(self) -> dict[str, Encodable]:
        out = self.options.items()
        out.update(command="offer", sdp=self.sdp, **_call_keys(self.call_id, self.from_tag))
        if self.via_branch is not None:
            out["via-branch"] = self.via_branch
        return out


@dataclass(frozen=True, slots=True)
class Answer:
    call_id: str
    from_tag: str
    to_tag: str
    sdp: bytes
    options: MediaOptions = B2BUA
    via_branch: str | None = None
    command: Literal[Command.ANSWER] = Command.ANSWER

    def body(self) -> dict[str, Encodable]:
        out = self.options.items()
        out.pop("direction", None)  # ng doc: only meaningful in the initial offer
        out.update(command="answer", sdp=self.sdp)
        out.update(_call_keys(self.call_id, self.from_tag, self.to_tag))
        if self.via_branch is not None:
            out["via-branch"] = self.via_branch
        return out


@dataclass(frozen=True, slots=True)
class Delete:
    """End a call (both tags None), or one side of it. `flags` e.g. ("fatal",)."""

    call_id: str
    from_tag: str | None = None
    to_tag: str | None = None
    flags: tuple[str, ...] = ()
    delete_delay: int | None = None  # 0: now, overriding --delete-delay
    command: Literal[Command.DELETE] = Command.DELETE

    def body(self) -> dict[str, Encodable]:
        out: dict[str, Encodable] = {"command": "delete"}
        out.update(_call_keys(self.call_id, self.from_tag, self.to_tag))
        if self.flags:
            out["flags"] = list(self.flags)
        if self.delete_delay is not None:
            out["delete delay"] = self.delete_delay
        return out


@dataclass(frozen=True, slots=True)
class Query:
    call_id: str
    from_tag: str | None = None
    to_tag: str | None = None
    command: Literal[Command.QUERY] = Command.QUERY

    def body(self) -> dict[str, Encodable]:
        out: dict[str, Encodable] = {"command": "query"}
        out.update(_call_keys(self.call_id, self.from_tag, self.to_tag))
        return out


Request: TypeAlias = Ping | Offer | Answer | Delete | Query


def _call_keys(call_id: str, from_tag: str | None, to_tag: str | None = None) -> dict[str, str]:
    keys = {"call-id": call_id, "from-tag": from_tag, "to-tag": to_tag}
    return {k: v for k, v in keys.items() if v is not None}


def encode_request(request: Request, cookie: str) -> bytes:
    """`<cookie> <bencoded body>`; NgError if it cannot be one datagram."""
    _check_cookie(cookie)
    try:
        body = bencode.encode(request.body())
    except BencodeError as exc:
        raise NgError(f"ng: cannot encode {request.command}: {exc}") from None
    datagram = cookie.encode() + b" " + body
    if len(datagram) > MAX_DATAGRAM:
        raise NgError(f"ng: {request.command} of {len(datagram)} bytes exceeds one datagram")
    return datagram


def _check_cookie(cookie: str) -> None:
    if not cookie or len(cookie) > MAX_COOKIE or not cookie.isascii() or not cookie.isprintable():
        raise NgError(f"ng: bad cookie {cookie[:MAX_COOKIE]!r}")
    if " " in cookie:
        raise NgError("ng: a cookie cannot contain a space")


# --- replies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counters:
    packets: int = 0
    bytes: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One packet stream of one side (tag): what rtpengine received on `local_port`."""

    tag: str
    media_index: int
    media_type: str
    rtcp: bool
    local_port: int | None
    endpoint: Address | None  # where rtpengine sends this side's media
    counters: Counters
    flags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CallStats:
    """`totals` and per-stream counters of a `query` or `delete` reply."""

    rtp: Counters
    rtcp: Counters
    streams: tuple[StreamStats, ...]
    created: int | None = None
    last_signal: int | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    pass


@dataclass(frozen=True, slots=True)
class Refused:
    """`result: error`; rtpengine is up but said no (e.g. "Unknown call-id")."""

    reason: str


@dataclass(frozen=True, slots=True)
class SdpReply:
    sdp: bytes
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class StatsReply:
    stats: CallStats | None  # None: delete with `fast`, or an unknown call (warning)
    warning: str | None = None


Reply: TypeAlias = Pong | Refused | SdpReply | StatsReply


def split_datagram(data: bytes) -> tuple[str, bytes]:
    """(cookie, body) of one datagram; NgError if it has no usable cookie."""
    cookie, space, body = data.partition(b" ")
    if not space or not cookie or len(cookie) > MAX_COOKIE:
        raise NgError("ng: datagram has no cookie")
    try:
        text = cookie.decode("ascii")
    except UnicodeDecodeError:
        raise NgError("ng: cookie is not ASCII") from None
    if not text.isprintable():
        raise NgError("ng: cookie is not printable")
    return text, body


def parse_reply(command: Command, body: bytes) -> Reply:
    """The typed reply to `command`; NgError for anything garbled."""
    try:
        value = bencode.decode(body)
    except BencodeError as exc:
        raise NgError(f"ng: garbled reply: {exc}") from None
    reply = _dict(value, "reply")
    result = _text(reply.get(b"result"), "result")
    if result == "error":
        reason = reply.get(b"error-reason")
        return Refused(_text(reason, "error-reason") if reason is not None else "no error-reason")
    if command is Command.PING and result in ("pong", "ok"):  # doc: pong; ok is harmless
        return Pong()
    if result != "ok":
        raise NgError(f"ng: unexpected result {result[:40]!r} to {command}")
    warning = _optional_text(reply.get(b"warning"), "warning")
    if command in (Command.OFFER, Command.ANSWER):
        sdp = reply.get(b"sdp")
        if not isinstance(sdp, bytes) or not sdp:
            raise NgError(f"ng: {command} reply has no sdp")
        return SdpReply(sdp, warning)
    if command in (Command.DELETE, Command.QUERY):
        return StatsReply(_call_stats(reply) if b"totals" in reply else None, warning)
    raise NgError(f"ng: unexpected result {result!r} to {command}")


def _call_stats(reply: dict[bytes, Value]) -> CallStats:
    totals = _dict(reply[b"totals"], "totals")
    tags = _dict(reply.get(b"tags", {}), "tags")
    streams = [s for key, side in tags.items() for s in _side_streams(key, side)]
    return CallStats(
        rtp=_counters(totals.get(b"RTP", {}), "totals.RTP"),
        rtcp=_counters(totals.get(b"RTCP", {}), "totals.RTCP"),
        streams=tuple(streams),
        created=_optional_int(reply.get(b"created"), "created"),
        last_signal=_optional_int(reply.get(b"last signal"), "last signal"),
    )


def _side_streams(key: bytes, side: Value) -> list[StreamStats]:
    tag = key.decode(errors="replace")
    out: list[StreamStats] = []
    for media in _list(_dict(side, "tag").get(b"medias", []), "medias"):
        media_d = _dict(media, "media")
        index = _optional_int(media_d.get(b"index"), "index") or 0
        kind = _optional_text(media_d.get(b"type"), "type") or ""
        for stream in _list(media_d.get(b"streams", []), "streams"):
            out.append(_stream(tag, index, kind, _dict(stream, "stream")))
    return out


def _stream(tag: str, index: int, kind: str, stream: dict[bytes, Value]) -> StreamStats:
    flags = tuple(_text(f, "flag") for f in _list(stream.get(b"flags", []), "flags"))
    return StreamStats(
        tag=tag,
        media_index=index,
        media_type=kind,
        rtcp="RTCP" in flags,
        local_port=_optional_int(stream.get(b"local port"), "local port"),
        endpoint=_endpoint(stream.get(b"endpoint")),
        counters=_counters(stream.get(b"stats", {}), "stats"),
        flags=flags,
    )


def _endpoint(value: Value | None) -> Address | None:
    if value is None:
        return None
    ep = _dict(value, "endpoint")
    address, port = ep.get(b"address"), ep.get(b"port")
    if address is None or port is None:
        return None
    return _text(address, "endpoint.address"), _int(port, "endpoint.port")


def _counters(value: Value, what: str) -> Counters:
    d = _dict(value, what)
    return Counters(
        packets=_optional_int(d.get(b"packets"), what) or 0,
        bytes=_optional_int(d.get(b"bytes"), what) or 0,
        errors=_optional_int(d.get(b"errors"), what) or 0,
    )


def _dict(value: Value | None, what: str) -> dict[bytes, Value]:
    if not isinstance(value, dict):
        raise NgError(f"ng: {what} is not a dictionary")
    return value


def _list(value: Value | None, what: str) -> list[Value]:
    if not isinstance(value, list):
        raise NgError(f"ng: {what} is not a list")
    return value


def _int(value: Value | None, what: str) -> int:
    if not isinstance(value, int):
        raise NgError(f"ng: {what} is not an integer")
    return value


def _optional_int(value: Value | None, what: str) -> int | None:
    return None if value is None else _int(value, what)


def _text(value: Value | None, what: str) -> str:
    if not isinstance(value, bytes):
        raise NgError(f"ng: {what} is not a string")
    return value.decode(errors="replace")


def _optional_text(value: Value | None, what: str) -> str | None:
    return None if value is None else _text(value, what)


# --- client state machine -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transmit:
    """Action: send `datagram` to `address`, then call on_timer() by `deadline`."""

    request_id: int
    cookie: str
    address: Address
    datagram: bytes
    deadline: float


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a request ended without a reply we can use."""

    kind: Literal["timeout", "garbled"]
    message: str


@dataclass(frozen=True, slots=True)
class Completed:
    """Event: request `request_id` ended; `outcome` is a Reply or a Failure."""

    request_id: int
    cookie: str
    address: Address
    outcome: Reply | Failure


@dataclass(slots=True)
class _Pending:
    request_id: int
    request: Request
    candidates: tuple[Address, ...]
    binds: bool  # a new call's offer: affinity follows it, and is undone on failure
    index: int = 0
    sends: int = 0
    cookie: str = ""
    datagram: bytes = b""
    deadline: float = 0.0

    @property
    def address(self) -> Address:
        return self.candidates[self.index]


class NgClient:
    """Cookies, retransmission, fail-over and call affinity for ng over UDP (sans-IO).

    Returns actions the caller must execute: send each Transmit's datagram,
    and call on_timer() at next_deadline().
    """

    def __init__(
        self,
        instances: Sequence[Address],
        *,
        cookie_prefix: str = "pbx-",
        intervals: Sequence[float] = DEFAULT_INTERVALS,
        down_for: float = DOWN_FOR,
        max_pending: int = MAX_PENDING,
        max_calls: int = MAX_CALLS,
    ) -> None:
        if not instances:
            raise NgError("ng: no rtpengine instances configured")
        if not intervals or any(i <= 0 for i in intervals):
            raise NgError("ng: retransmission intervals must be positive")
        _check_cookie(cookie_prefix + "0")
        self.instances = tuple(_address(a) for a in instances)
        self.intervals = tuple(intervals)
        self.down_for = down_for
        self.max_pending = max_pending
        self.max_calls = max_calls
        self.ignored: dict[str, int] = {"no cookie": 0, "unknown cookie": 0, "wrong address": 0}
        self._prefix = cookie_prefix
        self._counter = 0
        self._pending: dict[str, _Pending] = {}  # by current cookie
        self._by_id: dict[int, _Pending] = {}
        self._affinity: dict[str, Address] = {}
        self._down_until: dict[Address, float] = {}

    # -- inputs --

    def request(self, request: Request, now: float, *, instance: Address | None = None) -> Transmit:
        """Start `request`; returns its first Transmit. NgError if it cannot be sent."""
        if len(self._by_id) >= self.max_pending:
            raise NgError(f"ng: {self.max_pending} requests already in flight")
        call_id = request.call_id
        bound = self._affinity.get(call_id) if call_id is not None else None
        binds = bound is None and request.command is Command.OFFER
        if instance is not None:
            candidates: tuple[Address, ...] = (_address(instance),)
        elif bound is not None:
            candidates = (bound,)
        else:
            candidates = self._ordered(now)
        self._counter += 1
        pending = _Pending(self._counter, request, candidates, binds)
        self._by_id[pending.request_id] = pending
        try:
            return self._send_new(pending, now)
        except NgError:
            del self._by_id[pending.request_id]
            raise

    def on_datagram(
        self, data: bytes, address: Address | tuple[str, int, int, int], now: float
    ) -> Completed | None:
        """A datagram arrived from `address`: the Completed request, or None (ignored)."""
        try:
            cookie, body = split_datagram(data)
        except NgError:
            self.ignored["no cookie"] += 1
            return None
        pending = self._pending.get(cookie)
        if pending is None:
            self.ignored["unknown cookie"] += 1
            return None
        if (address[0], address[1]) != pending.address:
            self.ignored["wrong address"] += 1
            return None
        self._down_until.pop(pending.address, None)
        outcome: Reply | Failure
        try:
            outcome = parse_reply(pending.request.command, body)
        except NgError as exc:
            outcome = Failure("garbled", f"{exc} (from {_show(pending.address)})")
        return self._complete(pending, outcome)

    def on_timer(self, now: float) -> list[Transmit | Completed]:
        """Retransmit, fail over or time out every request whose deadline has passed."""
        actions: list[Transmit | Completed] = []
        due = [p for p in self._pending.values() if p.deadline <= now]
        for pending in sorted(due, key=lambda p: (p.deadline, p.request_id)):
            actions.append(self._expire(pending, now))
        return actions

    def cancel(self, request_id: int) -> None:
        """Forget a request (its caller gave up): no more retransmissions."""
        pending = self._by_id.pop(request_id, None)
        if pending is not None:
            self._pending.pop(pending.cookie, None)
            self._unbind_failed(pending)

    # -- queries --

    def next_deadline(self) -> float | None:
        return min((p.deadline for p in self._pending.values()), default=None)

    def affinity(self, call_id: str) -> Address | None:
        """The instance that holds `call_id`, if any."""
        return self._affinity.get(call_id)

    def forget(self, call_id: str) -> None:
        """Drop a call's affinity (the call ended without a delete)."""
        self._affinity.pop(call_id, None)

    @property
    def in_flight(self) -> int:
        return len(self._by_id)

    # -- internals --

    def _ordered(self, now: float) -> tuple[Address, ...]:
        up = [a for a in self.instances if self._down_until.get(a, 0.0) <= now]
        down = [a for a in self.instances if a not in up]
        return tuple(up + down)

    def _send_new(self, pending: _Pending, now: float) -> Transmit:
        """First send to the current candidate, with a fresh cookie."""
        self._counter += 1
        cookie = f"{self._prefix}{self._counter}"
        pending.datagram = encode_request(pending.request, cookie)
        pending.cookie = cookie
        pending.sends = 0
        self._pending[cookie] = pending
        if pending.binds and pending.request.call_id is not None:
            self._bind(pending.request.call_id, pending.address)
        return self._transmit(pending, now)

    def _transmit(self, pending: _Pending, now: float) -> Transmit:
        pending.deadline = now + self.intervals[pending.sends]
        pending.sends += 1
        return Transmit(
            pending.request_id, pending.cookie, pending.address, pending.datagram, pending.deadline
        )

    def _expire(self, pending: _Pending, now: float) -> Transmit | Completed:
        if pending.sends < len(self.intervals):
            return self._transmit(pending, now)  # same cookie: rtpengine replies from cache
        self._down_until[pending.address] = now + self.down_for
        if pending.index + 1 < len(pending.candidates):
            del self._pending[pending.cookie]
            pending.index += 1
            return self._send_new(pending, now)
        tried = ", ".join(_show(a) for a in pending.candidates)
        sends = len(self.intervals)
        message = f"no reply from rtpengine at {tried} ({sends} tries each)"
        return self._complete(pending, Failure("timeout", message))

    def _complete(self, pending: _Pending, outcome: Reply | Failure) -> Completed:
        del self._pending[pending.cookie]
        del self._by_id[pending.request_id]
        call_id = pending.request.call_id
        if pending.request.command is Command.DELETE and call_id is not None:
            self._affinity.pop(call_id, None)
        elif isinstance(outcome, Failure | Refused):
            self._unbind_failed(pending)
        return Completed(pending.request_id, pending.cookie, pending.address, outcome)

    def _unbind_failed(self, pending: _Pending) -> None:
        call_id = pending.request.call_id
        if pending.binds and call_id is not None:
            self._affinity.pop(call_id, None)

    def _bind(self, call_id: str, address: Address) -> None:
        self._affinity.pop(call_id, None)  # re-insert: newest last
        while len(self._affinity) >= self.max_calls:
            del self._affinity[next(iter(self._affinity))]
        self._affinity[call_id] = address


def _address(address: Address | tuple[str, int, int, int]) -> Address:
    return (str(address[0]), int(address[1]))


def _show(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
