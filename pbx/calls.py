"""The call controller: one inbound leg, its outbound branches and its record (pure).

One `Call` per inbound INVITE that passed admission (trunk address, known and
enabled number). It owns both legs, the per-leg SDP origins, the route plan
and the call record; it never touches a socket, a clock or the store. Feed it
transaction events (`pbx.sip.transaction`) and media events with `handle`,
and timer expiries with `handle_timer`; each returns a list of actions the
caller (`pbx.runner`) must execute in order.

Lifecycle: `start(now)` -> `WriteRecord(ringing)`, `OpenMedia`; the runner
answers `MediaOpened` (or `MediaFailed`) and only then do the outbound
INVITEs go out, so the record row always exists before the first outbound
request (DESIGN.md call flow step 3).

Decisions (where the RFCs and DESIGN.md are silent):
- Every branch is its own outbound dialog with its own Call-ID, From tag and
  CSeq space; nothing is forwarded wholesale (STYLE.md "B2BUA discipline").
- Only the first `m=` stream is relayed; other streams are offered with port 0
  (rejected, RFC 3264 §6). A late-offer INVITE (no SDP) is refused with 488.
- In-dialog requests go to the address the dialog's first transaction used
  (the trunk's proxy or the INVITE's source), not to a Contact that may sit
  behind NAT; our Contact points at our own listen address.
- The ring timeout is per branch and is not restarted by repeated 180s
  (Kamailio's `restart_fr_on_each_reply` warning). An expired branch that has
  had a provisional is CANCELled; one that has had none is abandoned (RFC 3261
  §9.1 forbids CANCEL before a provisional) and CANCELled if a 1xx comes later.
- After answer, re-INVITE / UPDATE / INFO / OPTIONS from one side are sent to
  the other side in its own dialog with SDP rewritten for that leg, and the
  other side's final answer is relayed back; one such request at a time per
  call (a second one gets 491 Request Pending, RFC 3261 §14.1). INFO/OPTIONS
  are relayed alongside, at most MAX_RELAYED at once (then 503 Retry-After).
- A 6xx from one branch of a simultaneous step does not stop its siblings
  (they are other people); once the step is over, a 6xx anywhere in it ends
  the hunt (RFC 3261 §16.7 step 5 in spirit).
- A 183 without SDP reaches the caller as 180; a 2xx we cannot build a
  dialog from (no To tag / Contact) fails its branch as 502; a 2xx with a
  second To tag on a branch (a forking proxy behind the callee) is ACKed and
  BYEd (§13.2.2.4); a retransmitted 2xx to a relayed re-INVITE is re-ACKed.
- An initial offer with no m= line is refused with 488, an INVITE without
  Contact with 400 (we could never reach the caller in the dialog).
- Known gap: a re-INVITE without SDP (late offer) is relayed, but the
  answer in the sender's ACK is not carried to the other leg.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from pbx.calls_model import (
    Action,
    ArmMedia,
    Branch,
    CallSetup,
    CloseMedia,
    Finished,
    FinishRecord,
    InboundLeg,
    MediaFailed,
    MediaOpened,
    MediaTimedOut,
    OpenMedia,
    Pending,
    SendRequest,
    SendResponse,
    SendStateless,
    SetMediaRemote,
    Shutdown,
    Target,
    WriteRecord,
)
from pbx.legs import (
    LegBuilder,
    media_endpoint,
    relay_sdp,
)
from pbx.records import Attempt, CallRecord, Disposition
from pbx.rtp.sdp import SdpError, parse_sdp
from pbx.rules.routing import final_status, hunt_continues
from pbx.sip.auth import AuthAttempt, DigestClient, challenges_in
from pbx.sip.dialog import Dialog, DialogError
from pbx.sip.message import Request, Response, make_response
from pbx.sip.status import reason_phrase
from pbx.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionKey,
    TransactionTimedOut,
)

__all__ = ["Call", "CallSetup", "Target"]

CallState = Literal["new", "media", "routing", "answered", "ended"]
Input = (
    RequestReceived
    | CancelReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | MediaOpened
    | MediaFailed
    | MediaTimedOut
    | Shutdown
)
RELAYED_IN_DIALOG = frozenset({"INVITE", "UPDATE", "INFO", "OPTIONS"})
OFFER_METHODS = frozenset({"INVITE", "UPDATE"})
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"
MAX_RELAYED = 8  # in-dialog requests relayed at once per call; more get 503 (bounded)
MAX_FORKS = 8  # extra 2xx dialogs from a forking callee we ACK and BYE (bounded)
MAX_REACKS = 4  # recent re-INVITE 2xx ACKs kept for retransmitted 2xx (§13.2.2.4)


def iso_utc(epoch: float) -> str:
    """Wall-clock epoch seconds as the records' UTC ISO 8601 form."""
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Call:
    """The B2BUA state machine for one call. Returns actions; never performs them."""

    setup: CallSetup
    inbound: InboundLeg
    builder: LegBuilder
    state: CallState = "new"
    record: CallRecord = field(init=False)
    branches: list[Branch] = field(default_factory=list)
    step: int = -1
    winner: Branch | None = None
    pending: dict[TransactionKey, Pending] = field(default_factory=dict)
    relay: MediaOpened | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    _statuses: list[int | None] = field(default_factory=list)
    _forks: dict[tuple[str, str], Dialog] = field(default_factory=dict)
    _reacks: dict[TransactionKey, SendStateless] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.record = self.setup.record

    # -- public API ---------------------------------------------------------------

    @property
    def call_ids(self) -> set[str]:
        """Every Call-ID this call answers to (inbound leg and each branch)."""
        return {self.inbound.invite.call_id, *(b.call_id for b in self.branches)}

    @property
    def finished(self) -> bool:
        return self.state == "ended" and not self.pending

    def start(self, now: float) -> list[Action]:
        """The first actions: write the ringing row, then ask for media."""
        if not self.inbound.invite.body:
            return self._reject(488, now, "late offer (INVITE without SDP) is not supported")
        try:
            self.inbound.offer = parse_sdp(self.inbound.invite.body)
        except SdpError as exc:
            return self._reject(488, now, str(exc))
        if not self.inbound.offer.media:
            return self._reject(488, now, "offer without a media stream")
        try:
            self.builder.uas_dialog(self.inbound)
        except DialogError as exc:  # no Contact: we could never reach the caller (§12.1.1)
            return self._reject(exc.status_hint, now, str(exc))
        if not self.setup.steps:
            return self._reject(480, now, "no destination configured")
        self.state = "media"
        return [WriteRecord(self.record), OpenMedia()]

    def next_deadline(self) -> float | None:
        deadlines = [b.deadline for b in self.branches if b.deadline is not None]
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for branch in self.branches:
            if branch.deadline is not None and branch.deadline <= now:
                branch.deadline = None
                actions += self._branch_expired(branch, now)
        return actions

    def handle(self, event: Input, now: float) -> list[Action]:
        """Feed one event; returns actions the caller must execute in order."""
        match event:
            case MediaOpened():
                return self._media_opened(event, now)
            case MediaFailed():
                return self._reject(503, now, f"media: {event.reason}")
            case MediaTimedOut():
                return self._hangup("system", now, "media timeout")
            case Shutdown():
                return self._shutdown(now)
            case CancelReceived():
                return self._caller_cancel(event, now)
            case AckReceived():
                return []  # the IST stops retransmitting our 2xx by itself
            case RequestReceived():
                return self._request(event, now)
            case ResponseReceived():
                return self._response(event.response, event.key, now)
            case StrayResponse():
                return self._stray(event.response)
            case TransactionTimedOut():
                return self._timed_out(event, now)

    # -- start and routing --------------------------------------------------------

    def _media_opened(self, event: MediaOpened, now: float) -> list[Action]:
        if self.state != "media":
            return []
        self.relay = event
        self.state = "routing"
        actions: list[Action] = []
        offer = self.inbound.offer
        if offer is not None:
            endpoint = media_endpoint(offer)
            if endpoint is not None:
                actions.append(SetMediaRemote("inbound", *endpoint))
        return actions + self._next_step(now)

    def _next_step(self, now: float) -> list[Action]:
        self.step += 1
        if self.step >= len(self.setup.steps):
            return self._fail_to_caller(now)
        actions: list[Action] = []
        for target in self.setup.steps[self.step]:
            actions += self._place(target, now)
        return actions

    def _place(self, target: Target, now: float) -> list[Action]:
        assert self.relay is not None  # set in _media_opened
        assert self.inbound.offer is not None
        origin = self.builder.new_origin()  # one o= session per outbound leg (RFC 3264 §8)
        body = relay_sdp(self.inbound.offer, self.relay.outbound, origin)
        branch = self.builder.new_branch(target, self.inbound.invite, body, now, self.setup)
        branch.origin = origin
        branch.deadline = now + self.setup.ring_timeout
        branch.started_at = self._wall(now)
        self.branches.append(branch)
        return [SendRequest(branch.invite, target.dest)]

    # -- outbound responses -------------------------------------------------------

    def _branch_of(self, key: TransactionKey) -> Branch | None:
        for branch in self.branches:
            if branch.key == key:
                return branch
        return None

    def _response(self, response: Response, key: TransactionKey, now: float) -> list[Action]:
        pending = self.pending.get(key)
        if pending is not None:
            return self._pending_response(pending, key, response, now)
        reack = self._reacks.get(key)
        if reack is not None and 200 <= response.status < 300:
            return [reack]  # a retransmitted 2xx to a relayed re-INVITE
        branch = self._branch_of(key)
        if branch is None:
            return []
        if response.status < 200:
            return self._provisional(branch, response, now)
        if response.status < 300:
            return self._branch_answered(branch, response, now)
        return self._branch_failed(branch, response, now)

    def _provisional(self, branch: Branch, response: Response, now: float) -> list[Action]:
        if response.status == 100:
            return []
        first = not branch.provisional
        branch.provisional = True
        if branch.state in ("abandoned", "cancelled") and first:
            return [SendRequest(self.builder.cancel(branch), branch.target.dest)]
        if branch.state != "calling" or self.state != "routing":
            return []
        if response.status == 183 and response.body and not self.inbound.early_media:
            return self._early_media(response)
        if not self.inbound.ringing_sent:
            self.inbound.ringing_sent = True
            ringing = self.builder.to_caller(self.inbound, 180)
            return [SendResponse(self.inbound.key, ringing)]
        return []

    def _early_media(self, response: Response) -> list[Action]:
        assert self.relay is not None
        try:
            sdp = parse_sdp(response.body)
        except SdpError:
            return []
        self.inbound.early_media = True
        self.inbound.ringing_sent = True
        body = relay_sdp(sdp, self.relay.inbound, self.inbound.origin)
        actions: list[Action] = []
        endpoint = media_endpoint(sdp)
        if endpoint is not None:
            actions.append(SetMediaRemote("outbound", *endpoint))
        progress = self.builder.to_caller(self.inbound, 183, body=body)
        return [*actions, SendResponse(self.inbound.key, progress)]

    def _branch_answered(self, branch: Branch, response: Response, now: float) -> list[Action]:
        if branch.dialog is not None and response.to.tag != branch.dialog.remote_tag:
            return self._extra_fork(branch, response)
        if branch.dialog is None:
            try:
                branch.dialog = self.builder.uac_dialog(branch, response)
            except DialogError as exc:  # no To tag or Contact: we can neither ACK nor BYE
                return self._bad_answer(branch, exc, now)
        ack = self.builder.ack(branch)
        actions: list[Action] = [SendStateless(ack, branch.target.dest)]
        if self.winner is branch or branch.state == "late":
            return actions  # a retransmitted 2xx: re-ACK only (RFC 3261 §13.2.2.4)
        if self.winner is not None or self.state != "routing" or branch.state != "calling":
            branch.state = "late"
            bye = self.builder.bye(branch)
            self.pending[self.builder.key_of(bye)] = Pending("bye", "outbound", branch=branch)
            return [*actions, SendRequest(bye, branch.target.dest)]
        return actions + self._bridge(branch, response, now)

    def _extra_fork(self, branch: Branch, response: Response) -> list[Action]:
        """A 2xx from a second UAS behind a forking proxy: ACK it, then BYE (§13.2.2.4)."""
        key = (branch.call_id, response.to.tag or "")
        dialog = self._forks.get(key)
        first = dialog is None
        if dialog is None:
            try:
                dialog = self.builder.uac_dialog(branch, response)
            except DialogError:
                return []
        ack = self.builder.ack_dialog(dialog, response)
        actions: list[Action] = [SendStateless(ack, branch.target.dest)]
        if first and len(self._forks) < MAX_FORKS:
            self._forks[key] = dialog
            bye = self.builder.bye_dialog(dialog)
            self.pending[self.builder.key_of(bye)] = Pending("bye", "outbound")
            actions.append(SendRequest(bye, branch.target.dest))
        return actions

    def _bad_answer(self, branch: Branch, exc: DialogError, now: float) -> list[Action]:
        """A 2xx we cannot build a dialog from counts as a 502 failure of the branch."""
        if branch.state != "calling" or self.winner is not None:
            return []
        branch.deadline = None
        branch.state = "failed"
        self._attempt_done(branch, 502, f"unusable 2xx: {exc}", now)
        return self._after_branch(branch, 502, now)

    def _bridge(self, branch: Branch, response: Response, now: float) -> list[Action]:
        assert self.relay is not None
        self.winner = branch
        branch.state = "answered"
        branch.status = response.status
        branch.deadline = None
        self.state = "answered"
        self.answered_at = now
        actions: list[Action] = []
        for other in self.branches:
            if other is not branch:
                actions += self._cancel_branch(other, now)
        body = b""
        if response.body:
            try:
                sdp = parse_sdp(response.body)
            except SdpError:
                sdp = None
            if sdp is not None:
                endpoint = media_endpoint(sdp)
                if endpoint is not None:
                    actions.append(SetMediaRemote("outbound", *endpoint))
                body = relay_sdp(sdp, self.relay.inbound, self.inbound.origin)
        ok = self.builder.to_caller(self.inbound, 200, body=body)
        self.inbound.dialog = self.builder.uas_dialog(self.inbound)
        self.inbound.answered = True
        self._attempt_done(branch, response.status, response.reason, now)
        self.record = replace(
            self.record,
            outbound_call_id=branch.call_id,
            answered_at=self._wall(now),
            destination=branch.target.destination,
            disposition=Disposition.ANSWERED,
            sip_status=response.status,
            sip_reason=response.reason,
            ring_seconds=round(now - self.setup.started, 3),
        )
        return [*actions, SendResponse(self.inbound.key, ok), ArmMedia(), WriteRecord(self.record)]

    def _branch_failed(self, branch: Branch, response: Response, now: float) -> list[Action]:
        if branch.state == "calling" and response.status in (401, 407):
            retry = self._authenticate(branch, response, now)
            if retry:
                return retry
        if branch.state not in ("calling",):
            return []
        branch.deadline = None
        branch.state = "failed"
        self._attempt_done(branch, response.status, response.reason, now)
        return self._after_branch(branch, response.status, now)

    def _authenticate(self, branch: Branch, response: Response, now: float) -> list[Action]:
        creds = branch.target.credentials
        if creds is None:
            return []
        if branch.auth is None:
            branch.auth = AuthAttempt(DigestClient(creds, self.builder.ids))
        challenges = challenges_in(response.headers.items())
        invite = branch.invite
        extra = branch.auth.answer(challenges, "INVITE", invite.uri, invite.body)
        if extra is None:
            return []
        self.builder.reinvite_with_auth(branch, extra)
        return [SendRequest(branch.invite, branch.target.dest)]

    def _after_branch(self, branch: Branch, status: int | None, now: float) -> list[Action]:
        """A branch of the current step ended without answer: hunt on or give up."""
        if self.winner is not None or self.state != "routing":
            return []
        step = self._current_step()
        if any(b.state == "calling" for b in step):
            return []
        if not all(hunt_continues(s) for s in (status, *(b.status for b in step))):
            return self._fail_to_caller(now)
        return self._next_step(now)

    def _current_step(self) -> list[Branch]:
        size = len(self.setup.steps[self.step]) if 0 <= self.step < len(self.setup.steps) else 0
        return self.branches[-size:] if size else []

    def _branch_expired(self, branch: Branch, now: float) -> list[Action]:
        if branch.state != "calling":
            return []
        self._attempt_done(branch, None, "ring timeout", now)
        actions = self._cancel_branch(branch, now)
        return actions + self._after_branch(branch, None, now)

    def _cancel_branch(self, branch: Branch, now: float) -> list[Action]:
        if branch.state != "calling":
            return []
        branch.deadline = None
        if branch.provisional:
            branch.state = "cancelled"
            self._attempt_done(branch, 487, "cancelled", now)
            return [SendRequest(self.builder.cancel(branch), branch.target.dest)]
        branch.state = "abandoned"
        self._attempt_done(branch, 487, "cancelled", now)
        return []

    def _attempt_done(self, branch: Branch, status: int | None, reason: str, now: float) -> None:
        if branch.attempt_recorded:
            return
        branch.attempt_recorded = True
        branch.status = status
        self._statuses.append(status)
        attempt = Attempt(
            target=branch.target.destination,
            status=status,
            started_at=branch.started_at,
            ended_at=self._wall(now),
            reason=reason,
        )
        self.record = replace(self.record, attempts=(*self.record.attempts, attempt))

    # -- failures and endings -----------------------------------------------------

    def _fail_to_caller(self, now: float) -> list[Action]:
        status = final_status(self._statuses)
        return self._reject(status, now, None)

    def _reject(self, status: int, now: float, reason: str | None) -> list[Action]:
        if self.inbound.answered or self.state == "ended":
            return []
        response = self.builder.to_caller(self.inbound, status)
        disposition = _disposition_for(status)
        self.state = "ended"
        self.inbound.answered = True
        self.record = replace(
            self.record,
            disposition=disposition,
            sip_status=status,
            sip_reason=reason or reason_phrase(status),
            ring_seconds=round(now - self.setup.started, 3),
            ended_at=self._wall(now),
            hangup_by="system",
        )
        actions: list[Action] = [SendResponse(self.inbound.key, response)]
        for branch in self.branches:
            actions += self._cancel_branch(branch, now)
        return [*actions, CloseMedia(), FinishRecord(self.record), *self._maybe_finished()]

    def _caller_cancel(self, event: CancelReceived, now: float) -> list[Action]:
        ok = make_response(event.request, 200)
        actions: list[Action] = [SendResponse(event.key, ok)]
        if self.inbound.answered:
            return actions  # too late: the 2xx already went (RFC 3261 §9.2)
        terminated = self.builder.to_caller(self.inbound, 487)
        self.inbound.answered = True
        self.state = "ended"
        actions.append(SendResponse(event.invite_key, terminated))
        for branch in self.branches:
            actions += self._cancel_branch(branch, now)
        self.record = replace(
            self.record,
            disposition=Disposition.CANCELLED,
            sip_status=487,
            sip_reason="cancelled by caller",
            hangup_by="caller",
            ring_seconds=round(now - self.setup.started, 3),
            ended_at=self._wall(now),
        )
        return [*actions, CloseMedia(), FinishRecord(self.record), *self._maybe_finished()]

    def _hangup(
        self, by: Literal["caller", "callee", "system"], now: float, reason: str
    ) -> list[Action]:
        """End an answered call: BYE whichever side did not hang up."""
        if self.state != "answered":
            if self.state in ("media", "routing"):
                return self._reject(480 if by == "system" else 487, now, reason)
            return []
        self.state = "ended"
        actions: list[Action] = []
        if by != "caller" and self.inbound.dialog is not None:
            bye = self.builder.bye_caller(self.inbound)
            self.pending[self.builder.key_of(bye)] = Pending("bye", "inbound")
            actions.append(SendRequest(bye, self.inbound.source))
        if by != "callee" and self.winner is not None:
            bye = self.builder.bye(self.winner)
            self.pending[self.builder.key_of(bye)] = Pending("bye", "outbound", branch=self.winner)
            actions.append(SendRequest(bye, self.winner.target.dest))
        answered = self.answered_at if self.answered_at is not None else now
        self.record = replace(
            self.record,
            hangup_by=by,
            ended_at=self._wall(now),
            talk_seconds=round(now - answered, 3),
            sip_reason=self.record.sip_reason if by != "system" else reason,
        )
        return [*actions, CloseMedia(), FinishRecord(self.record), *self._maybe_finished()]

    def _shutdown(self, now: float) -> list[Action]:
        if self.state == "answered":
            return self._hangup("system", now, "shutdown")
        return self._reject(503, now, "shutdown")

    def _maybe_finished(self) -> list[Action]:
        return [Finished()] if self.finished else []

    # -- in-dialog requests -------------------------------------------------------

    def _leg_of(self, request: Request) -> Literal["inbound", "outbound"] | None:
        if request.call_id == self.inbound.invite.call_id:
            return "inbound"
        if self.winner is not None and request.call_id == self.winner.call_id:
            return "outbound"
        return None

    def _request(self, event: RequestReceived, now: float) -> list[Action]:
        request = event.request
        leg = self._leg_of(request)
        if request.method == "CANCEL":  # matched no transaction (RFC 3261 §9.2)
            return self._answer(event, 481)
        if leg is None or (self.state != "answered" and request.method != "BYE"):
            return self._answer(event, 481)
        if request.method == "BYE":
            return self._bye(event, leg, now)
        if request.method not in RELAYED_IN_DIALOG:
            return self._answer(event, 501, [("Allow", ALLOW)])
        relays = [p for p in self.pending.values() if p.kind == "relay"]
        if request.method in OFFER_METHODS and any(
            p.request is not None and p.request.method in OFFER_METHODS for p in relays
        ):
            return self._answer(event, 491)  # RFC 3261 §14.1, RFC 3311 §5.2
        if len(relays) >= MAX_RELAYED:
            return self._answer(event, 503, [("Retry-After", "1")])
        return self._relay(event, leg)

    def _answer(
        self, event: RequestReceived, status: int, headers: Sequence[tuple[str, str]] = ()
    ) -> list[Action]:
        return [SendResponse(event.key, make_response(event.request, status, headers=headers))]

    def _bye(
        self, event: RequestReceived, leg: Literal["inbound", "outbound"], now: float
    ) -> list[Action]:
        actions = self._answer(event, 200)
        if self.state == "answered":
            return actions + self._hangup("caller" if leg == "inbound" else "callee", now, "bye")
        return actions + self._hangup("caller" if leg == "inbound" else "callee", now, "bye")

    def _relay(self, event: RequestReceived, leg: Literal["inbound", "outbound"]) -> list[Action]:
        """Send an in-dialog request to the other side in its own dialog."""
        assert self.relay is not None
        assert self.winner is not None
        request = event.request
        body = request.body
        actions: list[Action] = []
        if body and _is_sdp(request):
            try:
                sdp = parse_sdp(body)
            except SdpError:
                return self._answer(event, 488)
            endpoint = media_endpoint(sdp)
            if endpoint is not None:
                actions.append(SetMediaRemote(leg, *endpoint))
            if leg == "inbound":
                body = relay_sdp(sdp, self.relay.outbound, self.winner.origin)
            else:
                body = relay_sdp(sdp, self.relay.inbound, self.inbound.origin)
        if leg == "inbound":
            out = self.builder.in_dialog(self.winner, request, body)
            dest = self.winner.target.dest
        else:
            out = self.builder.in_dialog_caller(self.inbound, request, body)
            dest = self.inbound.source
        self.pending[self.builder.key_of(out)] = Pending(
            "relay", leg, server_key=event.key, request=request
        )
        return [*actions, SendRequest(out, dest)]

    def _pending_response(
        self, pending: Pending, key: TransactionKey, response: Response, now: float
    ) -> list[Action]:
        if response.status < 200:
            return []
        del self.pending[key]
        if pending.kind == "bye":
            return self._maybe_finished()
        return [*self._relayed_answer(pending, key, response), *self._maybe_finished()]

    def _relayed_answer(
        self, pending: Pending, key: TransactionKey, response: Response
    ) -> list[Action]:
        assert pending.request is not None
        assert pending.server_key is not None
        actions: list[Action] = []
        other: Literal["inbound", "outbound"] = (
            "outbound" if pending.leg == "inbound" else "inbound"
        )
        if response.status < 300 and key.method == "INVITE":
            ack = self._ack_relayed(other, response)
            self._reacks[key] = ack
            while len(self._reacks) > MAX_REACKS:
                del self._reacks[next(iter(self._reacks))]
            actions.append(ack)
        body = response.body
        if body and self.relay is not None and self.winner is not None:
            try:
                sdp = parse_sdp(body)
            except SdpError:
                sdp = None
            if sdp is not None:
                endpoint = media_endpoint(sdp)
                if endpoint is not None:
                    actions.append(SetMediaRemote(other, *endpoint))
                if pending.leg == "inbound":
                    body = relay_sdp(sdp, self.relay.inbound, self.inbound.origin)
                else:
                    body = relay_sdp(sdp, self.relay.outbound, self.winner.origin)
        reply = self.builder.relay_response(pending.request, response, body, self.inbound)
        return [*actions, SendResponse(pending.server_key, reply)]

    def _ack_relayed(
        self, leg: Literal["inbound", "outbound"], response: Response
    ) -> SendStateless:
        if leg == "outbound":
            assert self.winner is not None
            return SendStateless(
                self.builder.ack_in_dialog(self.winner, response), self.winner.target.dest
            )
        return SendStateless(self.builder.ack_caller(self.inbound, response), self.inbound.source)

    def _stray(self, response: Response) -> list[Action]:
        for branch in self.branches:
            ok_invite = 200 <= response.status < 300 and response.method == "INVITE"
            if branch.call_id == response.call_id and branch.dialog is not None and ok_invite:
                return [SendStateless(self.builder.ack(branch), branch.target.dest)]
        return []

    def _timed_out(self, event: TransactionTimedOut, now: float) -> list[Action]:
        key = event.key
        pending = self.pending.pop(key, None)
        if pending is not None:
            if pending.kind == "relay" and pending.request is not None and pending.server_key:
                reply = make_response(pending.request, 408)
                return [SendResponse(pending.server_key, reply), *self._maybe_finished()]
            return self._maybe_finished()
        if key == self.inbound.key and event.timer.name.endswith("L"):
            return self._hangup("system", now, "no ACK for our 200 OK")
        branch = self._branch_of(key)
        if branch is None or branch.state != "calling":
            return []
        branch.deadline = None
        branch.state = "failed"
        self._attempt_done(branch, 408, "no response", now)
        return self._after_branch(branch, 408, now)

    # -- helpers ------------------------------------------------------------------

    def _wall(self, now: float) -> str:
        return iso_utc(self.setup.started_wall + (now - self.setup.started))

    def media_counters(self, counters: Sequence[int]) -> None:
        """Merge the relay's final counters (pkts in->out, out->in, bytes in->out, out->in)."""
        p_io, p_oi, b_io, b_oi = counters
        self.record = replace(
            self.record,
            packets_in_out=p_io,
            packets_out_in=p_oi,
            bytes_in_out=b_io,
            bytes_out_in=b_oi,
        )


def _is_sdp(message: Request | Response) -> bool:
    ctype = message.content_type
    return ctype is None or ctype.mime == "application/sdp"


def _disposition_for(status: int) -> Disposition:
    if status in (486, 600):
        return Disposition.BUSY
    if status in (480, 408, 487):
        return Disposition.NO_ANSWER
    if status in (403, 404, 603):
        return Disposition.REJECTED
    return Disposition.FAILED
