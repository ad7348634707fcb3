"""The SIP seam: transport <-> TransactionLayer <-> transaction user (asyncio, I/O).

`SipAgent` owns one `SipTransport` (UDP + TCP on one port), one pure
`TransactionLayer` and any number of pure `RegistrationClient`s. Every input
(a datagram, a timer, a TU call) is handled the same way, aioquic style:
feed the pure objects with `now = loop.time()`, hand the resulting events to
the transaction user, send what they queued, then re-arm the single
`loop.call_at` timer from the earliest `next_deadline()`.

Transaction user (TU): an object implementing `TransactionUser` (the B2BUA
call controller, later). Each callback gets the event and `now`, the receive
time stamped when the datagram arrived (messages themselves carry no time).
`on_request` returns True when it took the request (it must then answer it
with `agent.respond(...)`), False to leave it to the defaults below.

Client API: `send_request(request, dest)` opens a client transaction whose
responses go to `TransactionUser.on_response`; `await request(request, dest,
auth=...)` instead resolves with the final response (401/407 answered with
`auth`, a Timer B/F timeout resolves as a synthetic 408, a failed TCP connect
as a synthetic 503: RFC 3261 §8.1.3.1). `send_ack(ack, dest)` sends an ACK
for a 2xx (no transaction) and re-sends it if that 2xx is retransmitted.

Registrations: `register(config)` starts a `RegistrationClient`, whose
requests, responses, timeouts and refresh timers the agent drives;
`unregister(client)` sends Expires: 0. The daemon calls `register` once per
trunk with `register=True`; `agent.on_registration(client)` (optional) is
called after every input a registration handled, to log or export its state.

Decisions:
- Unparseable datagrams: if the start line is a request (not ACK) and Via,
  From, To, Call-ID and CSeq were read, answer `status_hint` with the parse
  error as the reason phrase (truncated); drop everything else. CRLF
  keep-alives are ignored.
- Before the TU: a request that Requires an option tag pbx does not support
  gets 420 Bad Extension with Unsupported (RFC 3261 §8.2.2.3,
  `pbx.sip.responses.bad_extension`); the TU never sees it.
- Defaults when no TU takes a request: OPTIONS -> 200 with Allow, Accept
  (application/sdp), Supported; CANCEL -> 200 and 487 to its INVITE (481 when
  it matches nothing); in-dialog requests (To tag) -> 481; INVITE -> 480;
  REGISTER and other known methods (SUBSCRIBE, MESSAGE, ...) -> 405 with
  Allow; unknown methods -> 501 (RFC 3261 §8.2.1).
- Flood guard (`agent.flood`, a `pbx.rules.limits.FloodGuard`): checked
  first for every datagram, by source address, before parsing. Throttled
  requests get a stateless 503 with Retry-After (ban seconds); banned
  addresses are ignored without parsing; one `sip.flood_banned` log line
  per ban.
- A TU callback that raises is logged; a request it raised on gets 500 if it
  is still unanswered. Nothing from the network can stop the agent.
- `request()` with `auth` re-sends with CSeq+1, a new branch and the same
  Call-ID/From tag (RFC 3261 §22.2), at most `auth.MAX_ROUNDS` times.
- Requests go on the transport the caller's `dest` names; a UDP request
  larger than the path MTU is not moved to TCP (RFC 3261 §18.1.1): the TU
  chooses the transport. `close()` does not unregister: call `unregister`
  first and wait for `on_registration` if the binding should be removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from pbx.rules.limits import FloodGuard, Verdict
from pbx.sip.auth import DigestClient, challenges_in
from pbx.sip.headers import parse_via
from pbx.sip.idle import DEFAULT_IDLE_TIMEOUT
from pbx.sip.ids import IdSource, RandomIds
from pbx.sip.message import Headers, Request, Response, is_keepalive, parse, serialize
from pbx.sip.peer import Peer
from pbx.sip.register import RegistrationClient, RegistrationConfig, SendRequest
from pbx.sip.responses import (
    SUPPORTED_EXTENSIONS,
    bad_extension,
    make_response,
    response_for_error,
)
from pbx.sip.status import SipParseError, reason_phrase
from pbx.sip.transaction import (
    MAX_TRANSACTIONS,
    AckReceived,
    CancelReceived,
    Event,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TimerConfig,
    TransactionError,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    response_destination,
)
from pbx.sip.transport import SipTransport

log = structlog.get_logger("pbx.sip.agent")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE"
ACCEPT = "application/sdp"
SUPPORTED = ", ".join(sorted(SUPPORTED_EXTENSIONS))  # none yet: see pbx.sip.responses
KNOWN_METHODS = frozenset({
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
    "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
})  # fmt: skip
MAX_REASON = 100  # characters of a parse error echoed in a 400 reason phrase
MAX_ACKS = 1024  # 2xx ACKs remembered for re-sending on 2xx retransmissions
_REQUIRED = ("Via", "From", "To", "Call-ID", "CSeq")


class TransactionUser(Protocol):
    """What the call controller implements; see the module docstring."""

    def on_request(self, event: RequestReceived, now: float) -> bool: ...
    def on_cancel(self, event: CancelReceived, now: float) -> bool: ...
    def on_ack(self, event: AckReceived, now: float) -> None: ...
    def on_response(self, event: ResponseReceived, now: float) -> None: ...
    def on_stray_response(self, event: StrayResponse, now: float) -> None: ...
    def on_timeout(self, event: TransactionTimedOut, now: float) -> None: ...


class NullUser:
    """A TU that takes nothing: every request gets the agent's default answer."""

    def on_request(self, event: RequestReceived, now: float) -> bool:
        return False

    def on_cancel(self, event: CancelReceived, now: float) -> bool:
        return False

    def on_ack(self, event: AckReceived, now: float) -> None:
        return None

    def on_response(self, event: ResponseReceived, now: float) -> None:
        return None

    def on_stray_response(self, event: StrayResponse, now: float) -> None:
        return None

    def on_timeout(self, event: TransactionTimedOut, now: float) -> None:
        return None


class _Pending:
    """A `request()` call waiting for its final response."""

    def __init__(self, future: asyncio.Future[Response], dest: Peer) -> None:
        self.future = future
        self.dest = dest


class SipAgent:
    """One SIP endpoint: sockets, transactions, TU dispatch, registrations, one timer."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 5060,
        user: TransactionUser | None = None,
        ids: IdSource | None = None,
        timers: TimerConfig | None = None,
        udp: bool = True,
        tcp: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 5061,
        max_transactions: int = MAX_TRANSACTIONS,
        tcp_idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        tls_identity: tuple[str, str] | None = None,
    ) -> None:
        self.user: TransactionUser = user or NullUser()
        self.ids: IdSource = ids or RandomIds()
        self.layer = TransactionLayer(timers, max_transactions=max_transactions)
        self.transport = SipTransport(
            self._on_datagram, host=host, port=port, udp=udp, tcp=tcp, tls=tls,
            tls_port=tls_port, on_send_error=self._on_send_error, idle_timeout=tcp_idle_timeout,
            tls_identity=tls_identity,
        )  # fmt: skip
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._pending: dict[TransactionKey, _Pending] = {}
        self._acks: OrderedDict[tuple[str, int], tuple[Request, Peer]] = OrderedDict()
        self._registrations: list[RegistrationClient] = []
        self._reg_keys: dict[TransactionKey, RegistrationClient] = {}
        # Called after every input a registration handled (state, metrics, logs).
        self.on_registration: Callable[[RegistrationClient], None] | None = None
        # Checked per datagram before parsing (issue 7); None = no flood guard.
        self.flood: FloodGuard | None = None

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Bind the transport; `.port` is then the bound port."""
        self._loop = asyncio.get_running_loop()
        await self.transport.start()

    async def close(self) -> None:
        """Stop the timer, fail pending requests, close the sockets."""
        if self._timer is not None:
            self._timer.cancel()
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.cancel()
        self._pending.clear()
        await self.transport.close()

    @property
    def port(self) -> int:
        return self.transport.port

    @property
    def host(self) -> str:
        return self.transport.host

    def local(self, transport: str = "udp") -> Peer:
        """Our address on `transport` (for Via sent-by and Contact)."""
        return self.transport.local(transport)

    def now(self) -> float:
        assert self._loop is not None, "SipAgent.start() first"
        return self._loop.time()

    # --- receive path ---------------------------------------------------------------

    def _on_datagram(self, data: bytes, source: Peer) -> None:
        now = self.now()  # the receive stamp every callback gets
        if self.flood is not None:
            verdict = self.flood.check(source.host, now)
            if verdict is not Verdict.PASS:
                self._flooded(verdict, data, source)
                return
        if is_keepalive(data):
            return
        try:
            message = parse(data)
        except SipParseError as err:
            self._answer_unparseable(err, source)
            self._flush()
            return
        self._dispatch(self.layer.receive(message, source, now), now)
        self._flush()

    def _flooded(self, verdict: Verdict, data: bytes, source: Peer) -> None:
        """The flood guard said no: a stateless 503 while throttled, silence once banned.

        One log line per ban (`Verdict.BAN`), none per datagram. A throttled
        request opens no transaction (RFC 3261 §8.2.6: a stateless UAS answer),
        and its 503 goes to the datagram's source address whatever the Via
        says (as with `rport`, RFC 3581 §4), so a forged Via cannot aim our
        answers at a third party.
        """
        assert self.flood is not None
        seconds = int(self.flood.config.ban_seconds)
        if verdict is Verdict.BAN:
            log.warning("sip.flood_banned", peer=source.host, seconds=seconds)
            return
        if verdict is not Verdict.THROTTLE or is_keepalive(data):
            return
        try:
            message = parse(data)
            if not isinstance(message, Request) or message.method == "ACK":
                return
            response = self.make_response(message, 503, headers=[("Retry-After", str(seconds))])
        except (SipParseError, ValueError):
            return
        self.layer.send_ack_or_stateless(response, source)
        self._flush()

    def _answer_unparseable(self, err: SipParseError, source: Peer) -> None:
        start = err.start_line or ""
        method = start.split(" ", 1)[0]
        partial = err.partial
        if not method or method.startswith("SIP/") or method == "ACK" or partial is None:
            log.info("sip.dropped_unparseable", peer=str(source), error=str(err))
            return
        if any(partial.get(name) is None for name in _REQUIRED):
            log.info("sip.dropped_unparseable", peer=str(source), error=str(err))
            return
        try:
            via = parse_via(partial.get_all("Via")[0])
            response = response_for_error(err, to_tag=self.ids.tag(), reason=_reason_for(err))
            if response is None:
                raise ValueError("not answerable")
        except (SipParseError, ValueError) as exc:
            log.info("sip.dropped_unparseable", peer=str(source), error=f"{err}; {exc}")
            return
        log.info("sip.answered_unparseable", peer=str(source), status=err.status_hint)
        self.layer.send_ack_or_stateless(response, response_destination(via, source))

    def _dispatch(self, events: Iterable[Event], now: float) -> None:
        for event in events:
            try:
                self._handle(event, now)
            except Exception:  # a TU bug must not stop the agent
                log.exception("sip.tu_failed", event=type(event).__name__)
                if isinstance(event, RequestReceived):
                    self._respond_safely(event.key, event.request, 500)

    def _handle(self, event: Event, now: float) -> None:
        if isinstance(event, RequestReceived):
            if self._refused_extension(event):
                return
            if not self.user.on_request(event, now):
                self._default_answer(event)
        elif isinstance(event, CancelReceived):
            if not self.user.on_cancel(event, now):
                self._default_cancel(event)
        elif isinstance(event, ResponseReceived):
            self._on_response(event, now)
        elif isinstance(event, TransactionTimedOut):
            self._on_timeout(event, now)
        elif isinstance(event, AckReceived):
            self.user.on_ack(event, now)
        elif isinstance(event, StrayResponse):
            self._on_stray(event, now)
        elif isinstance(event, TransactionTerminated):
            self._reg_keys.pop(event.key, None)
        elif isinstance(event, MessageDropped):
            log.info("sip.dropped", peer=str(event.source), reason=event.reason)

    def _on_response(self, event: ResponseReceived, now: float) -> None:
        response, key = event.response, event.key
        registration = self._reg_keys.get(key)
        if registration is not None:
            self._run(registration, registration.on_response(response, now), now)
            return
        pending = self._pending.get(key)
        if pending is not None and response.status >= 200:
            del self._pending[key]
            if not pending.future.done():
                pending.future.set_result(response)
            return
        if self._resend_ack(response):
            return
        self.user.on_response(event, now)

    def _on_timeout(self, event: TransactionTimedOut, now: float) -> None:
        registration = self._reg_keys.pop(event.key, None)
        if registration is not None:
            self._run(registration, registration.on_timeout(now), now)
            return
        pending = self._pending.pop(event.key, None)
        if pending is not None:
            if not pending.future.done():
                pending.future.set_result(_synthetic(408, "Request Timeout (no response)"))
            return
        self.user.on_timeout(event, now)

    def _on_stray(self, event: StrayResponse, now: float) -> None:
        if not self._resend_ack(event.response):
            self.user.on_stray_response(event, now)

    def _on_send_error(self, dest: Peer) -> None:
        """A TCP/TLS connect failed: requests to `dest` fail now as 503 (§8.1.3.1).

        Client transactions still waiting for a first response get a
        synthetic 503 (the call hunts on, as for an unreachable trunk).
        """
        now = self.now()
        self._dispatch(self.layer.transport_failed(dest), now)
        self._flush()
        for key, pending in list(self._pending.items()):
            if pending.dest == dest and not pending.future.done():
                del self._pending[key]
                pending.future.set_result(_synthetic(503, "Service Unavailable (transport)"))

    def _refused_extension(self, event: RequestReceived) -> bool:
        """420 a request that Requires an option tag pbx lacks (RFC 3261 §8.2.2.3)."""
        request = event.request
        if "Require" not in request.headers:  # the fast path: nearly every request
            return False
        to_tag = None if _to_tag(request) is not None else self.ids.tag()
        response = bad_extension(request, to_tag=to_tag)
        if response is None:
            return False
        log.info(
            "sip.bad_extension",
            method=request.method,
            unsupported=response.headers.get("Unsupported"),
        )
        self.respond(event.key, response)
        return True

    # --- defaults (no TU took the request) -----------------------------------------

    def _default_answer(self, event: RequestReceived) -> None:
        request = event.request
        method = request.method
        in_dialog = _to_tag(request) is not None
        extra: list[tuple[str, str]] = []
        if method == "OPTIONS" and not in_dialog:
            status = 200
            extra = [("Allow", ALLOW), ("Accept", ACCEPT), ("Supported", SUPPORTED)]
        elif method not in KNOWN_METHODS:
            status = 501
        elif in_dialog or method in ("BYE", "CANCEL", "UPDATE", "PRACK"):
            status = 481
        elif method == "INVITE":
            status = 480
        else:
            status, extra = 405, [("Allow", ALLOW)]
        self.respond(event.key, self.make_response(request, status, headers=extra))

    def _default_cancel(self, event: CancelReceived) -> None:
        """RFC 3261 §9.2: 200 to the CANCEL, 487 to the INVITE if still unanswered."""
        cancel = event.request
        self.respond(event.key, self.make_response(cancel, 200))
        # The INVITE shares Via, From, To, Call-ID and CSeq number with its CANCEL.
        invite = Request("INVITE", cancel.uri, cancel.headers.copy())
        invite.headers.set("CSeq", f"{cancel.cseq.seq} INVITE")
        self._respond_safely(event.invite_key, invite, 487)

    def _respond_safely(self, key: TransactionKey, request: Request, status: int) -> None:
        with contextlib.suppress(TransactionError):
            self.respond(key, self.make_response(request, status))

    # --- TU API: responses ------------------------------------------------------------

    def make_response(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        to_tag: str | None = None,
    ) -> Response:
        """`pbx.sip.responses.make_response`, with a fresh To tag above 100 (§8.2.6.2)."""
        if status > 100 and to_tag is None and _to_tag(request) is None:
            to_tag = self.ids.tag()
        return make_response(request, status, reason, to_tag=to_tag, headers=headers, body=body)

    def respond(self, key: TransactionKey, response: Response) -> None:
        """Send `response` through server transaction `key` (raises TransactionError on misuse)."""
        now = self.now()
        self.layer.send_response(key, response, now)
        self._flush()

    # --- TU API: requests ---------------------------------------------------------------

    def via(self, transport: str = "udp") -> str:
        """A fresh top Via value for a request we send (branch from ids, rport, RFC 3581)."""
        local = self.local(transport)
        host = f"[{local.host}]" if ":" in local.host else local.host
        sent_by = f"{host}:{local.port}"
        return f"SIP/2.0/{local.transport.upper()} {sent_by};branch={self.ids.branch()};rport"

    def send_request(self, request: Request, dest: Peer) -> TransactionKey:
        """Open a client transaction; responses go to `user.on_response`."""
        now = self.now()
        key = self.layer.send_request(request, dest, now)
        self._flush()
        return key

    async def request(
        self, request: Request, dest: Peer, *, auth: DigestClient | None = None
    ) -> Response:
        """Send `request` and wait for its final response (see the module docstring)."""
        attempt = auth.attempt() if auth is not None else None
        while True:
            response = await self._request_once(request, dest)
            if attempt is None or response.status not in (401, 407):
                return response
            answer = attempt.answer(
                challenges_in(response.headers.items()), request.method, request.uri, request.body
            )
            if answer is None:
                return response
            request = self._resend_with(request, answer)

    async def _request_once(self, request: Request, dest: Peer) -> Response:
        assert self._loop is not None, "SipAgent.start() first"
        future: asyncio.Future[Response] = self._loop.create_future()
        key = self.send_request(request, dest)
        self._pending[key] = _Pending(future, dest)
        try:
            return await future
        finally:
            self._pending.pop(key, None)

    def _resend_with(self, request: Request, auth: list[tuple[str, str]]) -> Request:
        """Same request, CSeq+1, new branch, new credentials (RFC 3261 §22.2)."""
        headers = request.headers.copy()
        headers.pop_first("Via")
        headers.add("Via", self.via(request.top_via.transport.lower()), first=True)
        headers.set("CSeq", f"{request.cseq.seq + 1} {request.method}")
        headers.remove("Authorization")
        headers.remove("Proxy-Authorization")
        for name, value in auth:
            headers.add(name, value)
        return Request(request.method, request.uri, headers, request.body)

    def send_ack(self, ack: Request, dest: Peer) -> None:
        """Send the ACK for a 2xx (no transaction, §13.2.2.4); re-sent on 2xx retransmissions."""
        self._acks[(ack.call_id, ack.cseq.seq)] = (ack, dest)
        while len(self._acks) > MAX_ACKS:
            self._acks.popitem(last=False)
        self.layer.send_ack_or_stateless(ack, dest)
        self._flush()

    def _resend_ack(self, response: Response) -> bool:
        if not (200 <= response.status < 300):
            return False
        try:
            if response.method != "INVITE":
                return False
            remembered = self._acks.get((response.call_id, response.cseq.seq))
        except SipParseError:
            return False
        if remembered is None:
            return False
        self.layer.send_ack_or_stateless(*remembered)
        return True

    # --- registrations ------------------------------------------------------------------

    def register(self, config: RegistrationConfig) -> RegistrationClient:
        """Start registering `config`; the agent refreshes it until `unregister`."""
        client = RegistrationClient(config, self.ids)
        self._registrations.append(client)
        now = self.now()
        self._run(client, client.start(now), now)
        self._flush()
        return client

    def unregister(self, client: RegistrationClient) -> None:
        """Send Expires: 0 for `client`; it stays known until its answer arrives."""
        now = self.now()
        self._run(client, client.stop(now), now)
        self._flush()

    def _run(self, client: RegistrationClient, actions: list[SendRequest], now: float) -> None:
        for action in actions:
            key = self.layer.send_request(action.request, action.dest, now)
            self._reg_keys[key] = client
        if self.on_registration is not None:
            self.on_registration(client)

    # --- output and the one timer -------------------------------------------------------

    def _flush(self) -> None:
        """Send every queued datagram, then re-arm the timer (after every input)."""
        for out in self.layer.datagrams_to_send():
            self.transport.send(serialize(out.message), out.dest)
        self._rearm()

    def _next_deadline(self) -> float | None:
        deadlines = [self.layer.next_deadline()]
        deadlines += [client.next_deadline() for client in self._registrations]
        present = [d for d in deadlines if d is not None]
        return min(present) if present else None

    def _rearm(self) -> None:
        deadline = self._next_deadline()
        if deadline == self._timer_at or self._loop is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        now = self.now()
        try:
            self._dispatch(self.layer.handle_timer(now), now)
            for client in list(self._registrations):
                deadline = client.next_deadline()
                if deadline is not None and deadline <= now:
                    self._run(client, client.handle_timer(now), now)
        except Exception:
            log.exception("sip.timer_failed")
        self._flush()


def _to_tag(request: Request) -> str | None:
    try:
        return request.to.tag
    except SipParseError:
        return None


def _reason_for(err: SipParseError) -> str:
    """A reason phrase naming the parse error: printable ASCII only, bounded."""
    text = f"{reason_phrase(err.status_hint)} ({err})"
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:MAX_REASON]


def _synthetic(status: int, reason: str) -> Response:
    """A locally generated final response for a request that got none (§8.1.3.1)."""
    return Response(status, reason, Headers())
