"""SIP dialog state and in-dialog request construction, RFC 3261 §12 (pure).

A `Dialog` is one leg's view of a call: Call-ID, local and remote tag,
local and remote URI, local and remote CSeq, route set, remote target and
secure flag (§12.1). Build it with `Dialog.from_uac_response` (we sent the
INVITE, §12.1.2) or `Dialog.from_uas_request` (we answer it, §12.1.1). It
builds in-dialog requests (`new_request`, §12.2.1.1), the ACK for a 2xx
(`ack_for_2xx`, §13.2.2.4) and checks incoming ones (`receive_request`,
§12.2.2). `build_cancel` (§9.1) needs no dialog. Nothing is sent here: the
caller hands the requests to the transaction layer (ACK: outside any
transaction, `TransactionLayer.send_ack_or_stateless`) and resolves
`remote_peer_hint()` to a `Peer`.

Decisions:
- Our Via sent-by comes from the INVITE we sent (UAC) or from our Contact
  (UAS: `local_contact` host, port and `transport` parameter, UDP by
  default); every Via we write asks for `rport` (RFC 3581 §3). Set
  `dialog.local_via` to override.
- Strict routing (§12.2.1.1, a first route without `lr`) is supported the
  simple way: Request-URI = first route (URI headers dropped), Route = the
  rest plus the remote target.
- The local CSeq of a UAS dialog starts empty; the first request we send in
  it gets CSeq 1 (§12.2.1.1 allows any value below 2**31).
- Remote CSeq (§12.2.2): a request with a lower number than the last one is
  refused (`receive_request` returns False, the TU answers 500); ACK and
  CANCEL carry the number of the request they belong to and are not
  checked. An equal number is accepted (a retransmission is absorbed by the
  transaction layer before it gets here).
- Target refresh (§12.2.2, §12.2.1.2): the remote target is replaced by the
  Contact of an incoming INVITE/UPDATE (re-INVITE) when it is accepted by
  `receive_request`, and by the Contact of a 2xx to our INVITE/UPDATE in
  `update_from_response`. RFC 6141's "only if the refresh succeeds" is left
  to the TU.
- `secure` is True when the dialog was set up with a sips: Request-URI; we
  have no TLS transport, so it is informational.
- Unusable peer input (2xx without To tag or Contact, INVITE without
  Contact) raises `DialogError` whose `status_hint` is the answer (400).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from pbx.errors import PbxError
from pbx.sip.headers import NameAddr
from pbx.sip.ids import IdSource
from pbx.sip.message import Headers, Message, Request, Response
from pbx.sip.status import SipParseError
from pbx.sip.uri import SipUri

__all__ = ["Dialog", "DialogError", "DialogId", "build_cancel", "dialog_id"]

MAX_FORWARDS = "70"  # RFC 3261 §8.1.1.6
# §12.2.1.1 / RFC 3311: requests that may change the remote target.
TARGET_REFRESH = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogError(PbxError):
    """A message that cannot found or drive a dialog; `status_hint` is the answer."""

    def __init__(self, msg: str, status_hint: int = 400) -> None:
        super().__init__(msg)
        self.status_hint = status_hint


@dataclass(frozen=True, slots=True)
class DialogId:
    """Call-ID + local tag + remote tag (RFC 3261 §12)."""

    call_id: str
    local_tag: str
    remote_tag: str


def dialog_id(msg: Message, *, is_uac: bool) -> DialogId | None:
    """The dialog `msg` belongs to, seen from our side; None if its headers are unusable.

    `is_uac`: we are the client of `msg`'s transaction (we sent the request,
    or `msg` is a response we received): our tag is then the From tag.
    Otherwise (`msg` is a request we received) our tag is the To tag.
    """
    try:
        from_tag, to_tag = msg.from_.tag or "", msg.to.tag or ""
        call_id = msg.call_id
    except SipParseError:
        return None
    if is_uac:
        return DialogId(call_id, from_tag, to_tag)
    return DialogId(call_id, to_tag, from_tag)


def _untagged(addr: NameAddr) -> NameAddr:
    return NameAddr(addr.display, addr.uri, {k: v for k, v in addr.params.items() if k != "tag"})


def _contact_uri(msg: Message, what: str) -> SipUri:
    try:
        contacts = msg.contacts
    except SipParseError as err:
        raise DialogError(f"{what}: bad Contact: {err}") from err
    if not contacts:
        raise DialogError(f"{what} has no Contact (RFC 3261 §12.1)")
    return contacts[0].uri


def _via_for(transport: str, host: str, port: int | None) -> str:
    host_text = f"[{host}]" if ":" in host else host
    sent_by = host_text if port is None else f"{host_text}:{port}"
    return f"SIP/2.0/{transport.upper()} {sent_by}"


@dataclass(slots=True)
class Dialog:
    """One dialog's state (RFC 3261 §12.1); see the module docstring."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr  # without tag
    remote_uri: NameAddr  # without tag
    remote_target: SipUri
    local_contact: SipUri
    local_via: str  # "SIP/2.0/UDP host:port": our Via without parameters
    local_cseq: int = 0  # 0 = empty (§12.1.1)
    remote_cseq: int | None = None  # None = empty (§12.1.2)
    route_set: list[NameAddr] = field(default_factory=list)
    secure: bool = False
    confirmed: bool = True  # False: early dialog from a 1xx (§12.1.2)

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    # -- construction --------------------------------------------------------------

    @classmethod
    def from_uac_response(cls, request: Request, response: Response) -> Dialog:
        """The dialog a 1xx/2xx with a To tag creates for the UAC (§12.1.2)."""
        try:
            from_, to = request.from_, response.to
            via = request.top_via
            route_set = list(reversed(response.record_routes))
            local_contact = _contact_uri(request, "our request")
            secure = request.request_uri.scheme == "sips"
            call_id, seq = request.call_id, request.cseq.seq
        except SipParseError as err:
            raise DialogError(f"cannot build a dialog: {err}") from err
        if not to.tag or not from_.tag:
            raise DialogError("response without To tag (or request without From tag)")
        return cls(
            call_id=call_id,
            local_tag=from_.tag,
            remote_tag=to.tag,
            local_uri=_untagged(from_),
            remote_uri=_untagged(to),
            remote_target=_contact_uri(response, f"{response.status} response"),
            local_contact=local_contact,
            local_via=_via_for(via.transport, via.host, via.port),
            local_cseq=seq,
            route_set=route_set,
            secure=secure,
            confirmed=response.status >= 200,
        )

    @classmethod
    def from_uas_request(cls, request: Request, local_tag: str, local_contact: SipUri) -> Dialog:
        """The dialog our 1xx/2xx (To tag `local_tag`) creates for the UAS (§12.1.1)."""
        try:
            from_, to = request.from_, request.to
            route_set = list(request.record_routes)
            secure = request.request_uri.scheme == "sips"
            call_id, seq = request.call_id, request.cseq.seq
        except SipParseError as err:
            raise DialogError(f"cannot build a dialog: {err}") from err
        if not from_.tag:
            raise DialogError("request without From tag")
        transport = local_contact.params.get("transport") or "UDP"
        return cls(
            call_id=call_id,
            local_tag=local_tag,
            remote_tag=from_.tag,
            local_uri=_untagged(to),
            remote_uri=_untagged(from_),
            remote_target=_contact_uri(request, f"{request.method} request"),
            local_contact=local_contact,
            local_via=_via_for(transport, local_contact.host, local_contact.port),
            remote_cseq=seq,
            route_set=route_set,
            secure=secure,
        )

    # -- outgoing ----------------------------------------------------------------------

    def new_request(
        self,
        method: str,
        ids: IdSource,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> Request:
        """A new in-dialog request (§12.2.1.1): next local CSeq, new branch."""
        if method in ("ACK", "CANCEL"):
            raise DialogError(f"{method} is built with ack_for_2xx / build_cancel", 500)
        self.local_cseq += 1
        request = self._request(method, self.local_cseq, ids.branch(), extra_headers)
        if method in TARGET_REFRESH:
            request.headers.add("Contact", f"<{self.local_contact}>")
        _attach_body(request, body, content_type)
        return request

    def ack_for_2xx(
        self,
        invite_cseq: int,
        ids: IdSource,
        body: bytes | None = None,
        content_type: str = "application/sdp",
    ) -> Request:
        """The ACK for a 2xx to our INVITE with CSeq `invite_cseq` (§13.2.2.4): new branch."""
        request = self._request("ACK", invite_cseq, ids.branch(), ())
        if body:
            _attach_body(request, body, content_type)
        return request

    def remote_peer_hint(self) -> SipUri:
        """The URI to resolve for sending: the first route, else the remote target (§12.2.1.1)."""
        return self.route_set[0].uri if self.route_set else self.remote_target

    def _request(
        self, method: str, seq: int, branch: str, extra: Iterable[tuple[str, str]]
    ) -> Request:
        uri, routes = self._request_uri_and_routes()
        headers = Headers()
        headers.add("Via", f"{self.local_via};branch={branch};rport")
        headers.add("Max-Forwards", MAX_FORWARDS)
        for route in routes:
            headers.add("Route", route)
        headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        headers.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        for name, value in extra:
            headers.add(name, value)
        return Request(method, uri, headers)

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        """Loose routing, or strict routing if the first route lacks `lr` (§12.2.1.1)."""
        if not self.route_set:
            return str(self.remote_target), []
        first = self.route_set[0]
        if "lr" in first.uri.params:
            return str(self.remote_target), [str(r) for r in self.route_set]
        routes = [str(r) for r in self.route_set[1:]] + [f"<{self.remote_target}>"]
        return str(replace(first.uri, headers={})), routes

    # -- incoming ----------------------------------------------------------------------

    def receive_request(self, request: Request) -> bool:
        """Check an in-dialog request's CSeq (§12.2.2); False means answer 500.

        Accepted target-refresh requests update the remote target.
        """
        try:
            seq = request.cseq.seq
        except SipParseError:
            return False
        if request.method in ("ACK", "CANCEL"):
            return True
        if self.remote_cseq is not None and seq < self.remote_cseq:
            return False
        self.remote_cseq = seq
        if request.method in TARGET_REFRESH:
            self._refresh_target(request)
        return True

    def update_from_response(self, response: Response) -> None:
        """Apply a response to our request: target refresh on 2xx (§12.2.1.2).

        A 2xx confirming an early dialog also recomputes the route set (§13.2.2.4).
        """
        try:
            method = response.cseq.method
        except SipParseError:
            return
        if not 200 <= response.status < 300 or method not in TARGET_REFRESH:
            return
        if not self.confirmed and method == "INVITE":
            with contextlib.suppress(SipParseError):
                self.route_set = list(reversed(response.record_routes))
            self.confirmed = True
        self._refresh_target(response)

    def _refresh_target(self, msg: Message) -> None:
        try:
            contacts = msg.contacts
        except SipParseError:
            return
        if contacts:
            self.remote_target = contacts[0].uri


def _attach_body(request: Request, body: bytes, content_type: str | None) -> None:
    if body:
        if content_type is None:
            raise DialogError("a body needs a content type", 500)
        request.headers.add("Content-Type", content_type)
        request.body = body


def build_cancel(invite: Request) -> Request:
    """The CANCEL for our `invite` (RFC 3261 §9.1): same R-URI, top Via, From, To, Call-ID,
    CSeq number and Route headers."""
    headers = Headers()
    headers.add("Via", invite.headers.get_all("Via")[0])
    headers.add("Max-Forwards", MAX_FORWARDS)
    for route in invite.headers.get_all("Route", split=False):
        headers.add("Route", route)
    for name in ("From", "To", "Call-ID"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
    return Request("CANCEL", invite.uri, headers)
