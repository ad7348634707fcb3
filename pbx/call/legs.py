"""Message builders for the two legs of a B2BUA call (pure).

`pbx.call.controller.Call` decides *what* to send; `LegBuilder` builds the bytes-ready
`Request`/`Response` objects from each leg's own state, so nothing is ever
forwarded wholesale: each outbound leg gets a new Call-ID, From tag, CSeq
space and Via, and only an allowlist of headers crosses from one leg to the
other (STYLE.md "B2BUA discipline").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from pbx.call.model import Branch, CallSetup, InboundLeg, LocalAddress, Target
from pbx.rtp.sdp import OriginState, SessionDescription, rewrite
from pbx.sip.dialog import Dialog, build_cancel
from pbx.sip.headers import quote_string
from pbx.sip.ids import IdSource
from pbx.sip.message import Headers, Request, Response
from pbx.sip.responses import make_response
from pbx.sip.status import SipParseError
from pbx.sip.transaction import TransactionKey
from pbx.sip.uri import SipUri

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
USER_AGENT = "pbx"
SDP = "application/sdp"
# Headers that carry meaning end to end and may cross legs with a relayed
# in-dialog request (INFO's DTMF payload type, UPDATE's session timer...).
CROSSING_HEADERS = ("Content-Disposition", "Info-Package", "Event", "Session-Expires")
AUTH_HEADERS = ("Authorization", "Proxy-Authorization")


def media_endpoint(sdp: SessionDescription) -> tuple[str, int] | None:
    """Where the first stream's RTP should go, if the SDP says (first stream only)."""
    endpoints = sdp.endpoints()
    if not endpoints or endpoints[0] is None:
        return None
    return endpoints[0].host, endpoints[0].port


def relay_sdp(sdp: SessionDescription, relay: tuple[str, int], origin: OriginState) -> bytes:
    """`sdp` anchored at our relay: the first stream on `relay`, other streams rejected."""
    address, port = relay
    ports = [port, *[0] * (len(sdp.media) - 1)][: len(sdp.media)]
    return rewrite(sdp, address, ports, origin=origin)


class LegBuilder:
    """Builds every message of a call from the legs' own state."""

    def __init__(self, ids: IdSource, local: dict[str, LocalAddress]) -> None:
        self.ids = ids
        self.local = local

    # -- identities -------------------------------------------------------------

    def new_origin(self) -> OriginState:
        digest = hashlib.sha256(self.ids.token(12).encode()).digest()
        return OriginState(session_id=int.from_bytes(digest[:5], "big"))

    def _address(self, transport: str) -> LocalAddress:
        return self.local.get(transport) or next(iter(self.local.values()))

    def contact(self, transport: str, *, sips: bool = False) -> SipUri:
        """Our Contact on `transport`: `;transport=tcp|tls`, or a sips: URI when `sips`.

        RFC 3261 §12.1.1 / RFC 5630 §3.1.3: a dialog set up by a request whose
        Request-URI is a sips: URI gets a sips: Contact (TLS on every hop).
        """
        addr = self._address(transport)
        if sips:
            return SipUri("sips", "pbx", None, addr.host, addr.port, {})
        params: dict[str, str | None] = {"transport": transport} if transport != "udp" else {}
        return SipUri("sip", "pbx", None, addr.host, addr.port, params)

    def _caller_contact(self, inbound: InboundLeg) -> SipUri:
        sips = inbound.invite.uri.lower().startswith("sips:")
        return self.contact(inbound.source.transport, sips=sips)

    def _via(self, transport: str) -> str:
        addr = self._address(transport)
        host = f"[{addr.host}]" if ":" in addr.host else addr.host
        return f"SIP/2.0/{transport.upper()} {host}:{addr.port};branch={self.ids.branch()};rport"

    @staticmethod
    def key_of(request: Request) -> TransactionKey:
        """The client transaction key the layer gives `request` (RFC 3261 §17.1.3)."""
        return TransactionKey(request.branch or "", request.method)

    # -- outbound leg -----------------------------------------------------------

    def new_branch(
        self, target: Target, caller_invite: Request, body: bytes, now: float, setup: CallSetup
    ) -> Branch:
        """The INVITE for one target, with its own Call-ID, tag and CSeq (RFC 7332 §3)."""
        transport = target.dest.transport
        headers = Headers()
        headers.add("Via", self._via(transport))
        headers.add("Max-Forwards", str(max(setup.max_forwards - 1, 0)))
        headers.add("From", self._from_value(caller_invite, setup, transport))
        headers.add("To", f"<{target.uri}>")
        headers.add("Call-ID", self.ids.call_id())
        headers.add("CSeq", "1 INVITE")
        sips = target.uri.lower().startswith("sips:")  # RFC 3261 §8.1.1.8
        headers.add("Contact", f"<{self.contact(transport, sips=sips)}>")
        headers.add("Allow", ALLOW)
        headers.add("User-Agent", USER_AGENT)
        headers.add("Content-Type", SDP)
        invite = Request("INVITE", target.uri, headers, body)
        return Branch(target, invite, self.key_of(invite), self.new_origin())

    def _from_value(self, caller_invite: Request, setup: CallSetup, transport: str) -> str:
        display: str | None = None
        user = setup.caller_id_user or setup.caller
        try:
            display = caller_invite.from_.display
        except SipParseError:
            display = None
        host = self._address(transport)
        name = f"{quote_string(display)} " if display else ""
        return f"{name}<sip:{user}@{host.host}:{host.port}>;tag={self.ids.tag()}"

    def reinvite_with_auth(self, branch: Branch, auth: Iterable[tuple[str, str]]) -> None:
        """Re-send the branch's INVITE with credentials: CSeq+1, new branch (RFC 3261 §22.2)."""
        old = branch.invite
        headers = old.headers.copy()
        for name in AUTH_HEADERS:
            headers.remove(name)
        headers.pop_first("Via")
        headers.add("Via", self._via(branch.target.dest.transport), first=True)
        headers.set("CSeq", f"{old.cseq.seq + 1} INVITE")
        for name, value in auth:
            headers.add(name, value)
        branch.invite = Request("INVITE", old.uri, headers, old.body)
        branch.key = self.key_of(branch.invite)

    def cancel(self, branch: Branch) -> Request:
        return build_cancel(branch.invite)

    def uac_dialog(self, branch: Branch, response: Response) -> Dialog:
        return Dialog.from_uac_response(branch.invite, response)

    def ack(self, branch: Branch) -> Request:
        assert branch.dialog is not None  # built from the 2xx first
        return branch.dialog.ack_for_2xx(branch.invite.cseq.seq, self.ids)

    def ack_in_dialog(self, branch: Branch, response: Response) -> Request:
        assert branch.dialog is not None
        return branch.dialog.ack_for_2xx(response.cseq.seq, self.ids)

    def ack_dialog(self, dialog: Dialog, response: Response) -> Request:
        return dialog.ack_for_2xx(response.cseq.seq, self.ids)

    def bye_dialog(self, dialog: Dialog) -> Request:
        return dialog.new_request("BYE", self.ids, extra_headers=[("User-Agent", USER_AGENT)])

    def bye(self, branch: Branch) -> Request:
        assert branch.dialog is not None
        return branch.dialog.new_request(
            "BYE", self.ids, extra_headers=[("User-Agent", USER_AGENT)]
        )

    def in_dialog(self, branch: Branch, request: Request, body: bytes) -> Request:
        assert branch.dialog is not None
        return self._relayed(branch.dialog, request, body)

    # -- inbound leg ------------------------------------------------------------

    def to_caller(self, inbound: InboundLeg, status: int, *, body: bytes = b"") -> Response:
        """A response to the caller's INVITE, with our To tag and Contact."""
        extra: list[tuple[str, str]] = []
        if 100 < status < 300:
            extra.append(("Contact", f"<{self._caller_contact(inbound)}>"))
            extra.append(("Allow", ALLOW))
        extra.append(("User-Agent", USER_AGENT))
        if body:
            extra.append(("Content-Type", SDP))
        return make_response(
            inbound.invite, status, to_tag=inbound.to_tag, headers=extra, body=body
        )

    def uas_dialog(self, inbound: InboundLeg) -> Dialog:
        contact = self._caller_contact(inbound)
        return Dialog.from_uas_request(inbound.invite, inbound.to_tag, contact)

    def bye_caller(self, inbound: InboundLeg) -> Request:
        assert inbound.dialog is not None
        return inbound.dialog.new_request(
            "BYE", self.ids, extra_headers=[("User-Agent", USER_AGENT)]
        )

    def in_dialog_caller(self, inbound: InboundLeg, request: Request, body: bytes) -> Request:
        assert inbound.dialog is not None
        return self._relayed(inbound.dialog, request, body)

    def ack_caller(self, inbound: InboundLeg, response: Response) -> Request:
        assert inbound.dialog is not None
        return inbound.dialog.ack_for_2xx(response.cseq.seq, self.ids)

    def relay_response(
        self, original: Request, response: Response, body: bytes, inbound: InboundLeg
    ) -> Response:
        """The other leg's final answer to a relayed in-dialog request, for its sender."""
        extra: list[tuple[str, str]] = []
        if 200 <= response.status < 300 and original.method in ("INVITE", "UPDATE"):
            extra.append(("Contact", f"<{self._caller_contact(inbound)}>"))
        ctype = response.headers.get("Content-Type")
        if body and ctype:
            extra.append(("Content-Type", ctype))
        return make_response(original, response.status, response.reason, headers=extra, body=body)

    # -- shared -----------------------------------------------------------------

    def _relayed(self, dialog: Dialog, request: Request, body: bytes) -> Request:
        extra = [(n, v) for n in CROSSING_HEADERS for v in request.headers.get_all(n, split=False)]
        ctype = request.headers.get("Content-Type") if body else None
        return dialog.new_request(
            request.method, self.ids, body=body, content_type=ctype, extra_headers=extra
        )
