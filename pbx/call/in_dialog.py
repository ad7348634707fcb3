"""Requests inside an answered call: BYE and the relayed in-dialog requests (pure).

Plain functions over a call's `pbx.call.state.CallState`; `Call.handle`
dispatches in-dialog requests, the
answers to the requests we sent inside a dialog (relays and BYEs) and their
timeouts here. Each function returns actions the caller must execute in
order.

Decisions (where the RFCs and DESIGN.md are silent):
- In-dialog requests go to the address the dialog's first transaction used
  (the trunk's proxy or the INVITE's source), not to a Contact that may sit
  behind NAT; our Contact points at our own listen address.
- After answer, re-INVITE / UPDATE / INFO / OPTIONS from one side are sent to
  the other side in its own dialog with SDP rewritten for that leg, and the
  other side's final answer is relayed back; one such request at a time per
  call (a second one gets 491 Request Pending, RFC 3261 §14.1). INFO/OPTIONS
  are relayed alongside, at most MAX_RELAYED at once (then 503 Retry-After).
- A retransmitted 2xx to a relayed re-INVITE is re-ACKed (the last
  MAX_REACKS ACKs are kept); a relayed request the other side never answers
  gets 408 for its sender.
- Known gap: a re-INVITE without SDP (late offer) is relayed, but the
  answer in the sender's ACK is not carried to the other leg.
"""

from __future__ import annotations

from collections.abc import Sequence

from pbx.call import endings, routing
from pbx.call.legs import ALLOW, media_endpoint, relay_sdp
from pbx.call.model import (
    Action,
    Leg,
    Pending,
    SendRequest,
    SendResponse,
    SendStateless,
    SetMediaRemote,
)
from pbx.call.state import CallState
from pbx.rtp.dtmf import DtmfError, parse_info
from pbx.rtp.sdp import SdpError, parse_sdp
from pbx.sip.message import Request, Response
from pbx.sip.responses import make_response
from pbx.sip.transaction import RequestReceived, TransactionKey, TransactionTimedOut

__all__ = [
    "ALLOW",
    "MAX_REACKS",
    "MAX_RELAYED",
    "OFFER_METHODS",
    "RELAYED_IN_DIALOG",
    "on_request",
    "on_response",
    "on_timeout",
]

RELAYED_IN_DIALOG = frozenset({"INVITE", "UPDATE", "INFO", "OPTIONS"})
OFFER_METHODS = frozenset({"INVITE", "UPDATE"})
MAX_RELAYED = 8  # in-dialog requests relayed at once per call; more get 503 (bounded)
MAX_REACKS = 4  # recent re-INVITE 2xx ACKs kept for retransmitted 2xx (§13.2.2.4)


# -- requests from either leg ---------------------------------------------------------


def on_request(call: CallState, event: RequestReceived, now: float) -> list[Action]:
    """A request inside one of the call's dialogs (a new INVITE never comes here)."""
    request = event.request
    leg = _leg_of(call, request)
    if request.method == "CANCEL":  # matched no transaction (RFC 3261 §9.2)
        return _answer(event, 481)
    if leg == "outbound" and call.held is not None:
        return _held_answerer(call, event, now)
    if leg is None or (call.state != "answered" and request.method != "BYE"):
        return _answer(event, 481)
    if request.method == "BYE":
        ok = _answer(event, 200)
        return ok + endings.hangup(call, "caller" if leg == "inbound" else "callee", now, "bye")
    if request.method not in RELAYED_IN_DIALOG:
        return _answer(event, 501, [("Allow", ALLOW)])
    relays = [p for p in call.pending.values() if p.kind == "relay"]
    if request.method in OFFER_METHODS and any(
        p.request is not None and p.request.method in OFFER_METHODS for p in relays
    ):
        return _answer(event, 491)  # RFC 3261 §14.1, RFC 3311 §5.2
    if len(relays) >= MAX_RELAYED:
        return _answer(event, 503, [("Retry-After", "1")])
    if call.winner is None:  # voicemail: nobody to relay to; keep the media as it is
        return _answer(event, 488 if request.method in OFFER_METHODS else 200)
    return _relay(call, event, leg)


def _held_answerer(call: CallState, event: RequestReceived, now: float) -> list[Action]:
    """A request from an answerer held for whisper / screening (not yet bridged):
    BYE is a no-answer (hunting goes on); INFO may carry the screening digit."""
    request = event.request
    if request.method == "BYE":
        return _answer(event, 200) + routing.answerer_left(call, now)
    if request.method == "INFO":
        try:
            ctype = request.content_type
            info = parse_info(ctype.mime if ctype is not None else "", request.body)
        except DtmfError:
            return _answer(event, 400)
        ok = _answer(event, 200)
        return ok + (routing.screening_digit(call, info.digit, now) if info else [])
    return _answer(event, 491 if request.method in OFFER_METHODS else 200)


def _leg_of(call: CallState, request: Request) -> Leg | None:
    if request.call_id == call.inbound.invite.call_id:
        return "inbound"
    if call.winner is not None and request.call_id == call.winner.call_id:
        return "outbound"
    return None


def _answer(
    event: RequestReceived, status: int, headers: Sequence[tuple[str, str]] = ()
) -> list[Action]:
    return [SendResponse(event.key, make_response(event.request, status, headers=headers))]


def _relay(call: CallState, event: RequestReceived, leg: Leg) -> list[Action]:
    """Send an in-dialog request to the other side in its own dialog."""
    assert call.relay is not None
    assert call.winner is not None
    request = event.request
    body = request.body
    actions: list[Action] = []
    if body and _is_sdp(request):
        try:
            sdp = parse_sdp(body)
        except SdpError:
            return _answer(event, 488)
        endpoint = media_endpoint(sdp)
        if endpoint is not None:
            actions.append(SetMediaRemote(leg, *endpoint))
        if leg == "inbound":
            body = relay_sdp(sdp, call.relay.outbound, call.winner.origin)
        else:
            body = relay_sdp(sdp, call.relay.inbound, call.inbound.origin)
    if leg == "inbound":
        out = call.builder.in_dialog(call.winner, request, body)
        dest = call.winner.target.dest
    else:
        out = call.builder.in_dialog_caller(call.inbound, request, body)
        dest = call.inbound.source
    call.pending[call.builder.key_of(out)] = Pending(
        "relay", leg, server_key=event.key, request=request
    )
    return [*actions, SendRequest(out, dest)]


def _is_sdp(message: Request | Response) -> bool:
    ctype = message.content_type
    return ctype is None or ctype.mime == "application/sdp"


# -- answers to what we sent inside a dialog ---------------------------------------------


def on_response(
    call: CallState, response: Response, key: TransactionKey, now: float
) -> list[Action] | None:
    """A response to a relayed request or a BYE of ours; None if `key` is neither."""
    pending = call.pending.get(key)
    if pending is not None:
        if response.status < 200:
            return []
        del call.pending[key]
        if pending.kind == "bye":
            return call.maybe_finished()
        return [*_relayed_answer(call, pending, key, response), *call.maybe_finished()]
    reack = call.reacks.get(key)
    if reack is not None and 200 <= response.status < 300:
        return [reack]  # a retransmitted 2xx to a relayed re-INVITE
    return None


def _relayed_answer(
    call: CallState, pending: Pending, key: TransactionKey, response: Response
) -> list[Action]:
    assert pending.request is not None
    assert pending.server_key is not None
    actions: list[Action] = []
    other: Leg = "outbound" if pending.leg == "inbound" else "inbound"
    if response.status < 300 and key.method == "INVITE":
        ack = _ack_relayed(call, other, response)
        call.reacks[key] = ack
        while len(call.reacks) > MAX_REACKS:
            del call.reacks[next(iter(call.reacks))]
        actions.append(ack)
    body = response.body
    if body and call.relay is not None and call.winner is not None:
        try:
            sdp = parse_sdp(body)
        except SdpError:
            sdp = None
        if sdp is not None:
            endpoint = media_endpoint(sdp)
            if endpoint is not None:
                actions.append(SetMediaRemote(other, *endpoint))
            if pending.leg == "inbound":
                body = relay_sdp(sdp, call.relay.inbound, call.inbound.origin)
            else:
                body = relay_sdp(sdp, call.relay.outbound, call.winner.origin)
    reply = call.builder.relay_response(pending.request, response, body, call.inbound)
    return [*actions, SendResponse(pending.server_key, reply)]


def _ack_relayed(call: CallState, leg: Leg, response: Response) -> SendStateless:
    if leg == "outbound":
        assert call.winner is not None
        ack = call.builder.ack_in_dialog(call.winner, response)
        return SendStateless(ack, call.winner.target.dest)
    return SendStateless(call.builder.ack_caller(call.inbound, response), call.inbound.source)


def on_timeout(call: CallState, event: TransactionTimedOut, now: float) -> list[Action] | None:
    """A request of ours in a dialog, or our 200 to the caller, timed out; else None."""
    key = event.key
    pending = call.pending.pop(key, None)
    if pending is not None:
        if pending.kind == "relay" and pending.request is not None and pending.server_key:
            reply = make_response(pending.request, 408)
            return [SendResponse(pending.server_key, reply), *call.maybe_finished()]
        return call.maybe_finished()
    if key == call.inbound.key and event.timer.name.endswith("L"):
        return endings.hangup(call, "system", now, "no ACK for our 200 OK")
    return None
