"""RFC 3261 §17 transaction layer: matching, timers, retransmissions (pure).

`TransactionLayer` is sans-IO (aioquic style): feed it parsed messages with
`receive(msg, source, now)`, the TU's requests and responses with
`send_request` / `send_response`, and timer expiries with
`handle_timer(now)`; it returns events for the TU and queues datagrams the
caller must send (`datagrams_to_send()`), and tells the caller when to call
back (`next_deadline()`). The four state machines are the tables in
`pbx.sip.transaction_machines` (read its "Theory of operation").

Events (the TU's inputs):
- `RequestReceived(request, source, key)`: a request that opened a server
  transaction; answer it with `send_response(key, ...)`. For INVITE the
  layer has already queued `100 Trying` (DESIGN.md: "100 Trying at once").
- `CancelReceived(request, source, key, invite_key)`: a CANCEL matching the
  INVITE server transaction `invite_key` (RFC 3261 §9.2: same branch,
  sent-by, method INVITE). Decision: the TU answers both: 200 on `key`,
  then 487 on `invite_key` if it had not answered the INVITE yet. A CANCEL
  matching nothing comes up as a plain `RequestReceived`; the TU answers
  481 (§9.2).
- `AckReceived(request, source, invite_key)`: an ACK for a 2xx (a new
  branch per §13.2.2.4, so matched by Call-ID, CSeq number and From tag to
  an INVITE server transaction in Accepted: `invite_key`), or a stray ACK
  (`invite_key` None). ACKs for non-2xx finals are absorbed (§17.2.1).
- `ResponseReceived(response, key)`: a response for a client transaction.
  For INVITE every 2xx, retransmissions included, comes up (RFC 6026
  Accepted): the TU ACKs each with `send_ack_or_stateless`. The ACK for a
  non-2xx final is generated here (§17.1.1.3).
- `StrayResponse(response, source)`: a response with no transaction, e.g.
  a 2xx retransmitted after Timer M; the TU may re-ACK it.
- `TransactionTimedOut(key, timer)`: Timer B or F (no final response: treat
  as 408, §8.1.3.1), H (no ACK for our non-2xx final), L (our 2xx was never
  ACKed: the TU should BYE, §13.3.1.4), or `CANCEL_GUARD` (no final response
  64*T1 after our CANCEL, §9.1).
- `TransactionTerminated(key)`: the transaction is gone (after any timeout).
- `MessageDropped(message, source, reason)`: peer input we cannot use
  (no usable Via/CSeq, more than one Via in a response, §18.1.2).

Decisions:
- The TU builds every message (Via with branch included); the layer adds
  nothing to outgoing requests. It does add `received` / `rport` to the top
  Via of incoming requests (RFC 3261 §18.2.1, RFC 3581 §4), in place.
- Responses go where RFC 3261 §18.2.2 / RFC 3581 §4 say: reliable transport
  back to the source `Peer` (same connection), else `maddr`, else
  `received`:`rport` (falling back to sent-by host and port, 5060).
  `response_destination()` gives the same answer for stateless responses.
- 2xx to INVITE: `send_response` moves the IST to Accepted (RFC 6026) and
  the layer retransmits that 2xx (T1 doubling to T2, unreliable only) until
  the ACK arrives, so the TU need not (§13.3.1.4 made it the TU's job).
- The RFC 2543 matching fallback (§17.2.3) is not implemented. A request
  whose branch lacks the magic cookie is matched on a key derived from
  Call-ID, CSeq number, From tag and the branch text, which finds the
  retransmissions, the ACK and the CANCEL of such a request; To tag and
  Request-URI are not compared.
- `send_request` refuses ACK (use `send_ack_or_stateless`), a request whose
  top Via has no branch, and a key already in use: `TransactionError`.
- Memory: at most `max_transactions` live transactions; a new request
  beyond that gets a stateless 503 and `MessageDropped`, `send_request`
  raises. A transaction is removed when it reaches Terminated. Every state
  has a timer except ICT Proceeding (it waits for the final response; after
  the TU's CANCEL the §9.1 guard bounds it at 64*T1) and server Trying /
  Proceeding (the TU must answer every request). The deadline heap drops
  stale entries lazily and is rebuilt when it outgrows 8 x live + 1024.
- Peer input never raises; `TransactionError` is for TU misuse only.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

from pbx.sip.headers import CSeq, Via
from pbx.sip.ids import MAGIC_COOKIE
from pbx.sip.message import Headers, Message, Request, Response
from pbx.sip.peer import Peer
from pbx.sip.responses import make_response
from pbx.sip.status import SipParseError
from pbx.sip.transaction_machines import (
    INITIAL,
    RETRANSMIT_TIMERS,
    TIMER_INPUT,
    Arm,
    Do,
    Effect,
    Input,
    Kind,
    State,
    Timer,
    TimerConfig,
    TransactionError,
    step,
    timers_kept,
)

__all__ = [
    "AckReceived",
    "CancelReceived",
    "Event",
    "Kind",
    "MessageDropped",
    "Outgoing",
    "RequestReceived",
    "ResponseReceived",
    "State",
    "StrayResponse",
    "Timer",
    "TimerConfig",
    "TransactionError",
    "TransactionKey",
    "TransactionLayer",
    "TransactionTerminated",
    "TransactionTimedOut",
    "response_destination",
]

DEFAULT_PORT = 5060  # RFC 3261 §18.2.2 / §19.1.2 for sip: over UDP and TCP
MAX_TRANSACTIONS = 50_000


@dataclass(frozen=True, slots=True, eq=False)
class TransactionKey:
    """Identifies a transaction (RFC 3261 §17.1.3 client, §17.2.3 server).

    Client: top Via branch + CSeq method (`sent_by` empty). Server: branch +
    sent-by + method, where an ACK looks up method INVITE.
    """

    branch: str
    method: str
    sent_by: str = ""
    server: bool = False

    # Written out (the dataclass's stay interpreted under mypyc): a dict key looked
    # up for every message and timer.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransactionKey):
            return NotImplemented
        return (
            self.branch == other.branch
            and self.method == other.method
            and self.sent_by == other.sent_by
            and self.server == other.server
        )

    def __hash__(self) -> int:
        return hash((self.branch, self.method, self.sent_by, self.server))


# -- events (inputs for the TU) ------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class RequestReceived:
    request: Request
    source: Peer
    key: TransactionKey

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(self, request: Request, source: Peer, key: TransactionKey) -> None:
        object.__setattr__(self, "request", request)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "key", key)


@dataclass(frozen=True, slots=True)
class CancelReceived:
    request: Request
    source: Peer
    key: TransactionKey
    invite_key: TransactionKey


@dataclass(frozen=True, slots=True)
class AckReceived:
    request: Request
    source: Peer
    invite_key: TransactionKey | None


@dataclass(frozen=True, slots=True, init=False)
class ResponseReceived:
    response: Response
    key: TransactionKey

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(self, response: Response, key: TransactionKey) -> None:
        object.__setattr__(self, "response", response)
        object.__setattr__(self, "key", key)


@dataclass(frozen=True, slots=True)
class StrayResponse:
    response: Response
    source: Peer


@dataclass(frozen=True, slots=True)
class TransactionTimedOut:
    key: TransactionKey
    timer: Timer


@dataclass(frozen=True, slots=True)
class TransactionTerminated:
    key: TransactionKey


@dataclass(frozen=True, slots=True)
class MessageDropped:
    message: Message
    source: Peer
    reason: str


Event = (
    RequestReceived
    | CancelReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | TransactionTerminated
    | MessageDropped
)


@dataclass(frozen=True, slots=True, init=False)
class Outgoing:
    """A message the caller must send to `dest` (an action, not an event)."""

    message: Message
    dest: Peer

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(self, message: Message, dest: Peer) -> None:
        object.__setattr__(self, "message", message)
        object.__setattr__(self, "dest", dest)


# -- internals -------------------------------------------------------------------

# (Call-ID, CSeq number, From tag): finds the INVITE a 2xx-ACK belongs to.
DialogRef = tuple[str, int, str]


@dataclass(init=False, slots=True)
class _Transaction:
    key: TransactionKey
    kind: Kind
    state: State
    request: Request
    peer: Peer  # client: where the request goes; server: where responses go
    ref: DialogRef
    last_response: Response | None
    ack: Request | None
    acked: bool
    timers: dict[Timer, int]  # timer -> heap entry id
    intervals: dict[Timer, float]

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(
        self, key: TransactionKey, kind: Kind, state: State, request: Request, peer: Peer,
        ref: DialogRef,
    ) -> None:  # fmt: skip
        self.key = key
        self.kind = kind
        self.state = state
        self.request = request
        self.peer = peer
        self.ref = ref
        self.last_response = None
        self.ack = None
        self.acked = False
        self.timers = {}
        self.intervals = {}


@dataclass(frozen=True, slots=True)
class _Parsed:
    via: Via
    cseq: CSeq
    ref: DialogRef


def _parse(msg: Message) -> _Parsed | str:
    """Top Via, CSeq and dialog reference, or the reason they are unusable."""
    try:
        if "Via" not in msg.headers:
            return "no Via"
        via = msg.top_via  # parsed once per message (cached by the message, see `parse`)
        cseq = msg.cseq
        from_tag = msg.from_.tag or ""
        call_id = msg.call_id
    except (SipParseError, ValueError) as err:
        return f"unusable header: {err}"
    return _Parsed(via, cseq, (call_id, cseq.seq, from_tag))


def _server_branch(p: _Parsed) -> str:
    """The branch for matching; a synthetic one for RFC 2543 peers (see docstring)."""
    branch = p.via.branch or ""
    if branch.startswith(MAGIC_COOKIE):
        return branch
    call_id, seq, from_tag = p.ref
    return f"rfc2543:{call_id}:{seq}:{from_tag}:{branch}"


def response_destination(via: Via, source: Peer) -> Peer:
    """Where responses to a request with top Via `via` go (RFC 3261 §18.2.2, RFC 3581 §4).

    `via` should already carry the `received`/`rport` the layer stamps.
    """
    if source.reliable:
        return source  # back on the same connection
    if via.maddr:
        return Peer(source.transport, via.maddr, via.port or DEFAULT_PORT)
    host = via.received or via.host
    return Peer(source.transport, host, via.rport or via.port or DEFAULT_PORT)


def _stamp_via(request: Request, via: Via, source: Peer) -> Via:
    """Add received= / rport= to the top Via (RFC 3261 §18.2.1, RFC 3581 §4)."""
    params = dict(via.params)
    if via.host.lower() != source.host.lower() or via.wants_rport:
        params["received"] = source.host
    if via.wants_rport:
        params["rport"] = str(source.port)
    if params == via.params:
        return via
    stamped = replace(via, params=params)
    values = request.headers.get_all("Via")
    request.headers.remove("Via")
    for value in reversed([str(stamped), *values[1:]]):
        request.headers.add("Via", value, first=True)
    return stamped


def _ack_for(request: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    for route in request.headers.get_all("Route", split=False):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    for name, source in (("From", request), ("To", response), ("Call-ID", request)):
        value = source.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    return Request("ACK", request.uri, headers)


def _response_input(status: int, *, tu: bool) -> Input:
    if status < 200:
        return Input.TU_1XX if tu else Input.RECV_1XX
    if status < 300:
        return Input.TU_2XX if tu else Input.RECV_2XX
    return Input.TU_3XX_6XX if tu else Input.RECV_3XX_6XX


# -- the layer -------------------------------------------------------------------


class TransactionLayer:
    """All client and server transactions of one SIP endpoint (see module docstring)."""

    def __init__(
        self, timers: TimerConfig | None = None, *, max_transactions: int = MAX_TRANSACTIONS
    ) -> None:
        self.timers = timers or TimerConfig()
        self.max_transactions = max_transactions
        self.created = 0
        self.terminated = 0
        self._txns: dict[TransactionKey, _Transaction] = {}
        self._accepted: dict[DialogRef, TransactionKey] = {}
        self._heap: list[tuple[float, int, TransactionKey, Timer]] = []
        self._entry = 0
        self._out: list[Outgoing] = []

    # -- queries ---------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._txns)

    def state_of(self, key: TransactionKey) -> State | None:
        """The transaction's state, or None once it is gone."""
        txn = self._txns.get(key)
        return None if txn is None else txn.state

    def datagrams_to_send(self) -> list[Outgoing]:
        """Drain the queue of messages the caller must send, in order."""
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        """When `handle_timer` must next be called (monotonic seconds), or None."""
        while self._heap and self._stale(self._heap[0]):
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    # -- TU input ----------------------------------------------------------------

    def send_request(self, request: Request, dest: Peer, now: float) -> TransactionKey:
        """Open a client transaction for `request` and queue it for `dest`."""
        if request.method == "ACK":
            raise TransactionError("ACK is sent with send_ack_or_stateless, not in a transaction")
        parsed = _parse(request)
        if isinstance(parsed, str) or not parsed.via.branch:
            raise TransactionError(f"request needs a top Via with a branch ({parsed})")
        key = TransactionKey(parsed.via.branch, parsed.cseq.method)
        if key in self._txns:
            raise TransactionError(f"transaction {key} already exists")
        if len(self._txns) >= self.max_transactions:
            raise TransactionError("transaction limit reached")
        kind = Kind.ICT if request.method == "INVITE" else Kind.NICT
        txn = _Transaction(key, kind, INITIAL[kind][0], request, dest, parsed.ref)
        self._add(txn)
        self._out.append(Outgoing(request, dest))
        self._effects(txn, INITIAL[kind][1], now, None, [])
        if request.method == "CANCEL":
            self._guard_cancelled_invite(replace(key, method="INVITE"), now)
        return key

    def send_response(self, key: TransactionKey, response: Response, now: float) -> None:
        """Send `response` through server transaction `key` (queued for the peer)."""
        txn = self._txns.get(key)
        if txn is None or not key.server:
            raise TransactionError(f"no server transaction {key}")
        if not 100 <= response.status <= 699:
            raise TransactionError(f"bad status {response.status}")
        events: list[Event] = []
        self._fire(txn, _response_input(response.status, tu=True), now, response, events)
        if txn.state is State.ACCEPTED:
            self._accepted[txn.ref] = key
        # Nothing the TU sends can time a transaction out; events is empty here.

    def send_ack_or_stateless(self, message: Message, dest: Peer) -> None:
        """Queue a message outside any transaction: ACK for 2xx, stateless response."""
        self._out.append(Outgoing(message, dest))

    def transport_failed(self, dest: Peer) -> list[Event]:
        """The transport could not reach `dest` (RFC 3261 §8.1.3.1, §17.1.4).

        Every client transaction to `dest` that has had no response yet ends
        with a synthetic 503 passed up as its response, then terminates.
        """
        events: list[Event] = []
        for txn in list(self._txns.values()):
            if txn.key.server or txn.peer != dest or txn.state not in (State.CALLING, State.TRYING):
                continue
            response = make_response(txn.request, 503, "Service Unavailable (transport)")
            events.append(ResponseReceived(response, txn.key))
            self._remove(txn)
            events.append(TransactionTerminated(txn.key))
        return events

    # -- peer input ----------------------------------------------------------------

    def receive(self, msg: Message, source: Peer, now: float) -> list[Event]:
        """Match `msg` to a transaction (§17.1.3, §17.2.3); returns events for the TU."""
        parsed = _parse(msg)
        if isinstance(parsed, str):
            return [MessageDropped(msg, source, parsed)]
        if isinstance(msg, Response):
            return self._receive_response(msg, source, parsed, now)
        via = _stamp_via(msg, parsed.via, source)
        parsed = _Parsed(via, parsed.cseq, parsed.ref)
        if msg.method == "ACK":
            return self._receive_ack(msg, source, parsed, now)
        key = TransactionKey(_server_branch(parsed), msg.method, via.sent_by.lower(), True)
        txn = self._txns.get(key)
        events: list[Event] = []
        if txn is not None:
            self._fire(txn, Input.RECV_REQUEST, now, msg, events)
            return events
        if len(self._txns) >= self.max_transactions:
            self._out.append(Outgoing(make_response(msg, 503), response_destination(via, source)))
            return [MessageDropped(msg, source, "transaction limit reached: 503 sent")]
        return self._open_server(msg, source, parsed, key, now)

    def _receive_response(
        self, msg: Response, source: Peer, parsed: _Parsed, now: float
    ) -> list[Event]:
        if len(msg.headers.get_all("Via")) > 1:
            return [MessageDropped(msg, source, "response with more than one Via (§18.1.2)")]
        key = TransactionKey(parsed.via.branch or "", parsed.cseq.method)
        txn = self._txns.get(key)
        if txn is None:
            return [StrayResponse(msg, source)]
        events: list[Event] = []
        up = ResponseReceived(msg, key)
        self._fire(txn, _response_input(msg.status, tu=False), now, msg, events, up)
        return events

    def _receive_ack(self, msg: Request, source: Peer, parsed: _Parsed, now: float) -> list[Event]:
        """ACK: non-2xx ACK to its IST by branch; 2xx ACK by dialog ref (RFC 6026 §8.7)."""
        key = TransactionKey(_server_branch(parsed), "INVITE", parsed.via.sent_by.lower(), True)
        txn = self._txns.get(key)
        if txn is None or txn.state is not State.ACCEPTED:
            accepted = self._accepted.get(parsed.ref)
            if accepted is not None:
                txn = self._txns[accepted]
        if txn is None:
            return [AckReceived(msg, source, None)]
        events: list[Event] = []
        self._fire(txn, Input.RECV_ACK, now, msg, events, AckReceived(msg, source, txn.key))
        return events

    def _open_server(
        self, msg: Request, source: Peer, parsed: _Parsed, key: TransactionKey, now: float
    ) -> list[Event]:
        up: Event = RequestReceived(msg, source, key)
        if msg.method == "CANCEL":
            invite_key = replace(key, method="INVITE")
            if invite_key in self._txns:
                up = CancelReceived(msg, source, key, invite_key)
        kind = Kind.IST if msg.method == "INVITE" else Kind.NIST
        peer = response_destination(parsed.via, source)
        txn = _Transaction(key, kind, INITIAL[kind][0], msg, peer, parsed.ref)
        self._add(txn)
        events: list[Event] = []
        self._effects(txn, INITIAL[kind][1], now, None, events, up)
        if kind is Kind.IST:
            self._fire(txn, Input.TU_1XX, now, make_response(msg, 100), events)
        return events

    # -- timers ------------------------------------------------------------------

    def handle_timer(self, now: float) -> list[Event]:
        """Fire every timer due at `now`; returns events for the TU."""
        events: list[Event] = []
        while self._heap and self._heap[0][0] <= now:
            entry = heapq.heappop(self._heap)
            if self._stale(entry):
                continue
            deadline, _, key, timer = entry
            txn = self._txns[key]
            del txn.timers[timer]
            # Re-arm from the deadline, not `now`, so a late call keeps the RFC schedule.
            self._fire(txn, TIMER_INPUT[timer], deadline, None, events, timer=timer)
        return events

    def _stale(self, entry: tuple[float, int, TransactionKey, Timer]) -> bool:
        _, entry_id, key, timer = entry
        txn = self._txns.get(key)
        return txn is None or txn.timers.get(timer) != entry_id

    def _arm(self, txn: _Transaction, arm: Arm, now: float) -> None:
        reliable = txn.peer.reliable
        if arm.timer in RETRANSMIT_TIMERS and reliable:
            return  # §17.1.1.2, §17.1.2.2, §17.2.1: retransmit on unreliable only
        interval = self.timers.interval(arm.backoff, txn.intervals.get(arm.timer), reliable)
        txn.intervals[arm.timer] = interval
        self._push(txn, arm.timer, now + interval)

    def _push(self, txn: _Transaction, timer: Timer, deadline: float) -> None:
        self._entry += 1
        txn.timers[timer] = self._entry
        heapq.heappush(self._heap, (deadline, self._entry, txn.key, timer))
        if len(self._heap) > 8 * len(self._txns) + 1024:
            self._heap = [e for e in self._heap if not self._stale(e)]
            heapq.heapify(self._heap)

    def _guard_cancelled_invite(self, invite_key: TransactionKey, now: float) -> None:
        """§9.1: no final response 64*T1 after our CANCEL ends the INVITE transaction."""
        txn = self._txns.get(invite_key)
        if txn is not None and txn.state in (State.CALLING, State.PROCEEDING):
            self._push(txn, Timer.CANCEL_GUARD, now + 64 * self.timers.t1)

    # -- the machine -------------------------------------------------------------

    def _fire(
        self,
        txn: _Transaction,
        input_: Input,
        now: float,
        msg: Message | None,
        events: list[Event],
        up: Event | None = None,
        *,
        timer: Timer | None = None,
    ) -> None:
        """Step `txn` with `input_` and carry out the effects."""
        state, effects = step(txn.kind, txn.state, input_)
        if state is not txn.state:
            kept = timers_kept(txn.kind, state)
            txn.timers = {t: e for t, e in txn.timers.items() if t in kept}
            txn.state = state
        self._effects(txn, effects, now, msg, events, up, timer=timer)
        if state is State.TERMINATED:
            self._remove(txn)
            events.append(TransactionTerminated(txn.key))

    def _effects(
        self,
        txn: _Transaction,
        effects: tuple[Effect, ...],
        now: float,
        msg: Message | None,
        events: list[Event],
        up: Event | None = None,
        *,
        timer: Timer | None = None,
    ) -> None:
        for effect in effects:
            if isinstance(effect, Arm):
                self._arm(txn, effect, now)
            elif effect is Do.PASS_UP and up is not None:
                events.append(up)
            elif effect in (Do.REPORT_TIMEOUT, Do.REPORT_TIMEOUT_IF_UNACKED):
                if timer is not None and not (effect is Do.REPORT_TIMEOUT_IF_UNACKED and txn.acked):
                    events.append(TransactionTimedOut(txn.key, timer))
            else:
                self._send(txn, effect, msg)

    def _send(self, txn: _Transaction, effect: Do, msg: Message | None) -> None:
        """The effects that put a message on the wire (or note an ACK)."""
        if effect is Do.RETRANSMIT_REQUEST:
            self._out.append(Outgoing(txn.request, txn.peer))
        elif effect is Do.SEND_ACK and isinstance(msg, Response):
            txn.ack = _ack_for(txn.request, msg)
            self._out.append(Outgoing(txn.ack, txn.peer))
        elif effect is Do.RESEND_ACK and txn.ack is not None:
            self._out.append(Outgoing(txn.ack, txn.peer))
        elif effect is Do.SEND_RESPONSE and isinstance(msg, Response):
            txn.last_response = msg
            self._out.append(Outgoing(msg, txn.peer))
        elif effect is Do.RESEND_RESPONSE and txn.last_response is not None:
            self._out.append(Outgoing(txn.last_response, txn.peer))
        elif effect is Do.NOTE_ACK:
            txn.acked = True
            txn.timers.pop(Timer.RETRANSMIT_2XX, None)

    def _add(self, txn: _Transaction) -> None:
        self._txns[txn.key] = txn
        self.created += 1

    def _remove(self, txn: _Transaction) -> None:
        del self._txns[txn.key]
        if self._accepted.get(txn.ref) == txn.key:
            del self._accepted[txn.ref]
        self.terminated += 1
