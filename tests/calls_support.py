"""Builders for the call controller tests: a fake trunk (the caller) and fake callees.

Every message a peer "sends" is built as that peer would (from the wire copy
of what we sent it) and parsed again, so the `Call` sees what the transaction
layer would hand it. Ids come from `CountingIds`, times from a virtual clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from pbx.call.controller import Call, Input, iso_utc
from pbx.call.legs import LegBuilder
from pbx.call.model import (
    Action,
    AudioPlan,
    CallSetup,
    InboundLeg,
    LocalAddress,
    MediaOpened,
    SendRequest,
    SendResponse,
    SendStateless,
    Target,
)
from pbx.records import CallRecord
from pbx.sip.auth import Credentials
from pbx.sip.dialog import build_cancel
from pbx.sip.ids import CountingIds
from pbx.sip.message import Request, Response, parse
from pbx.sip.peer import Peer
from pbx.sip.responses import make_response
from pbx.sip.transaction import (
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    TransactionKey,
)

TRUNK = Peer("udp", "192.0.2.10", 5060)
CALLEES = (
    Peer("udp", "198.51.100.20", 5060),
    Peer("udp", "198.51.100.21", 5060),
    Peer("udp", "198.51.100.22", 5060),
    Peer("udp", "198.51.100.23", 5060),
)
OUR_HOST = "203.0.113.5"
LOCAL = {"udp": LocalAddress(OUR_HOST, 5060)}
RELAY = MediaOpened((OUR_HOST, 30000), (OUR_HOST, 30002))
CALLER = "+12125550123"
TRACKING = "+14155550101"
T0 = 1000.0  # monotonic start
WALL0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def sdp(host: str, port: int, *, version: int = 1, direction: str = "sendrecv") -> bytes:
    """A plain G.711 offer/answer from `host`, first stream on `port`, plus a video stream."""
    return (
        "v=0\r\n"
        f"o=peer 4242 {version} IN IP4 {host}\r\n"
        "s=-\r\n"
        f"c=IN IP4 {host}\r\n"
        "t=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        f"a={direction}\r\n"
    ).encode()


CALLER_SDP = sdp("192.0.2.10", 16000)


def caller_invite(
    *,
    body: bytes = CALLER_SDP,
    max_forwards: int | None = 70,
    display: str | None = "Alice Example",
    from_user: str = CALLER,
    contact: bool = True,
    branch: str = "z9hG4bKtrunk-1",
    call_id: str = "in-1@192.0.2.10",
    dialed: str = TRACKING,
) -> Request:
    """The trunk's INVITE to the tracking number (or to `dialed`)."""
    name = f'"{display}" ' if display else ""
    lines = [
        f"INVITE sip:{dialed}@{OUR_HOST}:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}",
        f"From: {name}<sip:{from_user}@192.0.2.10>;tag=trunk-tag",
        f"To: <sip:{dialed}@{OUR_HOST}>",
        f"Call-ID: {call_id}",
        "CSeq: 101 INVITE",
    ]
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    if contact:
        lines.append("Contact: <sip:trunk@192.0.2.10:5060>")
    if body:
        lines.append("Content-Type: application/sdp")
    text = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
    msg = parse(text.encode() + body)
    assert isinstance(msg, Request)
    return msg


def target(index: int, *, creds: Credentials | None = None, name: str | None = None) -> Target:
    """Destination `index` behind callee peer `index`."""
    peer = CALLEES[index]
    user = f"+1415555{150 + index:04d}"
    return Target(name or f"dest{index}", f"sip:{user}@{peer.host}:{peer.port}", peer, creds)


def server_key(request: Request, source: Peer) -> TransactionKey:
    """The server transaction key the layer would give `request` (RFC 3261 §17.2.3)."""
    method = "INVITE" if request.method == "ACK" else request.method
    return TransactionKey(request.branch or "", method, f"{source.host}:{source.port}", True)


def wire(msg: Request | Response) -> Request | Response:
    copy = parse(bytes(msg))
    assert type(copy) is type(msg)
    return copy


def record_for(invite: Request) -> CallRecord:
    return CallRecord(
        id="rec-1",
        inbound_call_id=invite.call_id,
        started_at=iso_utc(WALL0),
        caller=CALLER,
        tracking_number=TRACKING,
        caller_name="Alice Example",
        source="google",
    )


A = TypeVar("A")


def of(actions: Iterable[Action], kind: type[A]) -> list[A]:
    return [a for a in actions if isinstance(a, kind)]


def kinds(actions: Iterable[Action]) -> list[str]:
    return [type(a).__name__ for a in actions]


def requests(actions: Iterable[Action], method: str) -> list[SendRequest]:
    return [a for a in of(actions, SendRequest) if a.request.method == method]


@dataclass
class Harness:
    """One `Call` driven on a virtual clock, with both peers simulated."""

    call: Call
    ids: CountingIds
    now: float = T0
    log: list[Action] = field(default_factory=list)
    callee_cseq: int = 0
    caller_cseq: int = 101
    requests_sent: int = 0

    # -- driving ----------------------------------------------------------------

    def feed(self, event: Input, *, after: float = 0.0) -> list[Action]:
        self.now += after
        actions = self.call.handle(event, self.now)
        self.log += actions
        return actions

    def start(self) -> list[Action]:
        actions = self.call.start(self.now)
        self.log += actions
        return actions

    def open_media(self) -> list[Action]:
        return self.feed(RELAY)

    def tick(self, to: float) -> list[Action]:
        self.now = to
        actions = self.call.handle_timer(self.now)
        self.log += actions
        return actions

    def ringing(self) -> list[Action]:
        """start + MediaOpened: the first step's INVITEs are out."""
        self.start()
        return self.open_media()

    # -- the caller (trunk) -------------------------------------------------------

    @property
    def inbound_key(self) -> TransactionKey:
        return self.call.inbound.key

    def caller_cancel(self, *, after: float = 0.0) -> list[Action]:
        invite = self.call.inbound.invite
        cancel = wire(build_cancel(invite))
        assert isinstance(cancel, Request)
        key = server_key(cancel, TRUNK)
        return self.feed(CancelReceived(cancel, TRUNK, key, self.inbound_key), after=after)

    def caller_request(
        self, method: str, *, body: bytes = b"", after: float = 0.0, extra: Sequence[str] = ()
    ) -> tuple[RequestReceived, list[Action]]:
        """An in-dialog request from the caller (trunk) to us."""
        self.caller_cseq += 1
        self.requests_sent += 1
        invite = self.call.inbound.invite
        to = f"<sip:{TRACKING}@{OUR_HOST}>;tag={self.call.inbound.to_tag}"
        request = _request(
            method,
            f"sip:pbx@{OUR_HOST}:5060",
            via=f"192.0.2.10:5060;branch=z9hG4bKtrunk-r{self.requests_sent}",
            from_=invite.headers.get("From") or "",
            to=to,
            call_id=invite.call_id,
            cseq=self.caller_cseq,
            contact="<sip:trunk@192.0.2.10:5060>",
            body=body,
            extra=extra,
        )
        event = RequestReceived(request, TRUNK, server_key(request, TRUNK))
        return event, self.feed(event, after=after)

    # -- the callees ----------------------------------------------------------------

    def branch_invite(self, index: int) -> Request:
        return self.call.branches[index].invite

    def response(
        self,
        index: int,
        status: int,
        *,
        body: bytes | None = None,
        to_tag: str | None = None,
        contact: bool = True,
        reason: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> ResponseReceived:
        """Callee `index`'s response to the branch's current INVITE."""
        branch = self.call.branches[index]
        invite = wire(branch.invite)
        assert isinstance(invite, Request)
        headers = list(extra)
        peer = branch.target.dest
        if contact and 100 < status < 300:
            headers.append(("Contact", f"<sip:callee{index}@{peer.host}:{peer.port}>"))
        if body is None and (status == 183 or 200 <= status < 300):
            body = sdp(peer.host, 40000 + 2 * index)
        if body:
            headers.append(("Content-Type", "application/sdp"))
        tag = None if status == 100 else (to_tag or f"callee-{index}")
        response = make_response(
            invite, status, reason, to_tag=tag, headers=headers, body=body or b""
        )
        copy = wire(response)
        assert isinstance(copy, Response)
        return ResponseReceived(copy, branch.key)

    def answer(self, index: int, status: int, *, after: float = 0.0, **kw: object) -> list[Action]:
        return self.feed(self.response(index, status, **kw), after=after)  # type: ignore[arg-type]

    def callee_request(
        self, method: str, *, body: bytes = b"", after: float = 0.0, extra: Sequence[str] = ()
    ) -> tuple[RequestReceived, list[Action]]:
        """An in-dialog request from the winning callee to us."""
        winner = self.call.winner
        assert winner is not None
        self.callee_cseq += 1
        self.requests_sent += 1
        index = self.call.branches.index(winner)
        peer = winner.target.dest
        invite = winner.invite
        contact = invite.headers.get("Contact") or ""
        request = _request(
            method,
            contact.strip("<>"),
            via=f"{peer.host}:{peer.port};branch=z9hG4bKcallee-r{self.requests_sent}",
            from_=f"{invite.headers.get('To')};tag=callee-{index}",
            to=invite.headers.get("From") or "",
            call_id=invite.call_id,
            cseq=self.callee_cseq,
            contact=f"<sip:callee{index}@{peer.host}:{peer.port}>",
            body=body,
            extra=extra,
        )
        event = RequestReceived(request, peer, server_key(request, peer))
        return event, self.feed(event, after=after)

    def reply_to(
        self, request: Request, status: int, *, body: bytes = b"", to_tag: str | None = None
    ) -> ResponseReceived:
        """The peer's answer to a request we sent it (in-dialog: To tag already present)."""
        copy = wire(request)
        assert isinstance(copy, Request)
        headers = [("Content-Type", "application/sdp")] if body else []
        if 200 <= status < 300 and request.method in ("INVITE", "UPDATE"):
            headers.append(("Contact", "<sip:peer@198.51.100.99:5060>"))
        response = make_response(copy, status, to_tag=to_tag, headers=headers, body=body)
        out = wire(response)
        assert isinstance(out, Response)
        return ResponseReceived(out, LegBuilder.key_of(request))

    # -- what went to the caller ------------------------------------------------------

    def to_caller(self, actions: Iterable[Action] | None = None) -> list[Response]:
        source = self.log if actions is None else actions
        return [a.response for a in of(source, SendResponse) if a.key == self.inbound_key]

    def acks(self, actions: Iterable[Action]) -> list[SendStateless]:
        return of(actions, SendStateless)


def _request(
    method: str,
    uri: str,
    *,
    via: str,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    contact: str,
    body: bytes,
    extra: Sequence[str],
) -> Request:
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via}",
        "Max-Forwards: 70",
        f"From: {from_}",
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {method}",
        f"Contact: {contact}",
        *extra,
    ]
    if body and not any(x.lower().startswith("content-type") for x in extra):
        lines.append("Content-Type: application/sdp")
    text = "\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n"
    msg = parse(text.encode() + body)
    assert isinstance(msg, Request)
    return msg


def make_call(
    steps: Sequence[Sequence[Target]],
    *,
    invite: Request | None = None,
    ring_timeout: float = 20.0,
    caller_id_user: str | None = None,
    max_forwards: int = 70,
    seed: str = "t",
    audio: AudioPlan | None = None,
) -> Harness:
    """A `Call` for `invite` (default: `caller_invite()`) with the given route plan."""
    ids = CountingIds(seed)
    invite = invite or caller_invite()
    builder = LegBuilder(ids, LOCAL)
    setup = CallSetup(
        record=record_for(invite),
        caller=CALLER,
        steps=tuple(tuple(step) for step in steps),
        ring_timeout=ring_timeout,
        started=T0,
        started_wall=WALL0,
        local=LOCAL,
        caller_id_user=caller_id_user,
        max_forwards=max_forwards,
        audio=audio or AudioPlan(),
    )
    inbound = InboundLeg(
        invite=invite,
        key=server_key(invite, TRUNK),
        source=TRUNK,
        to_tag=ids.tag(),
        origin=builder.new_origin(),
    )
    return Harness(Call(setup, inbound, builder), ids)
