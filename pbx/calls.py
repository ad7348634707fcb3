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

Layout (split by concept, STYLE.md §3.9): this module holds `Call` itself
(state, public API, event dispatch) and the endings that write the final
record (reject, CANCEL by the caller, hang-up, shutdown). `pbx.call_routing`
places the outbound branches and hunts through the plan (provisionals,
answer, failure, digest retry, ring timeouts); `pbx.call_dialog` handles the
requests inside the answered call (BYE, relayed re-INVITE/UPDATE/INFO/OPTIONS
and their answers). Both are plain functions over the `Call`'s state, which
they import for types only; their names are re-exported here.

Decisions (where the RFCs and DESIGN.md are silent; routing and in-dialog
decisions are recorded in those modules):
- Every branch is its own outbound dialog with its own Call-ID, From tag and
  CSeq space; nothing is forwarded wholesale (STYLE.md "B2BUA discipline").
- Only the first `m=` stream is relayed; other streams are offered with port 0
  (rejected, RFC 3264 §6). A late-offer INVITE (no SDP) is refused with 488.
- An initial offer with no m= line is refused with 488, an INVITE without
  Contact with 400 (we could never reach the caller in the dialog).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from pbx import call_dialog, call_routing
from pbx.call_dialog import ALLOW, MAX_REACKS, MAX_RELAYED, OFFER_METHODS, RELAYED_IN_DIALOG
from pbx.call_routing import MAX_FORKS
from pbx.calls_model import (
    Action,
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
    Shutdown,
    Target,
    WriteRecord,
)
from pbx.legs import LegBuilder
from pbx.records import CallRecord, Disposition, iso_utc
from pbx.rtp.sdp import SdpError, parse_sdp
from pbx.sip.dialog import Dialog, DialogError
from pbx.sip.responses import make_response
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

__all__ = [
    "ALLOW",
    "MAX_FORKS",
    "MAX_REACKS",
    "MAX_RELAYED",
    "OFFER_METHODS",
    "RELAYED_IN_DIALOG",
    "Call",
    "CallSetup",
    "Input",
    "Target",
    "iso_utc",
]

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
    statuses: list[int | None] = field(default_factory=list)  # each ended attempt's
    forks: dict[tuple[str, str], Dialog] = field(default_factory=dict)  # extra 2xx dialogs
    reacks: dict[TransactionKey, SendStateless] = field(default_factory=dict)  # re-INVITE ACKs

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
            return self.reject(488, now, "late offer (INVITE without SDP) is not supported")
        try:
            self.inbound.offer = parse_sdp(self.inbound.invite.body)
        except SdpError as exc:
            return self.reject(488, now, str(exc))
        if not self.inbound.offer.media:
            return self.reject(488, now, "offer without a media stream")
        try:
            self.builder.uas_dialog(self.inbound)
        except DialogError as exc:  # no Contact: we could never reach the caller (§12.1.1)
            return self.reject(exc.status_hint, now, str(exc))
        if not self.setup.steps:
            return self.reject(480, now, "no destination configured")
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
                actions += call_routing.branch_expired(self, branch, now)
        return actions

    def handle(self, event: Input, now: float) -> list[Action]:
        """Feed one event; returns actions the caller must execute in order."""
        match event:
            case MediaOpened():
                return call_routing.on_media_opened(self, event, now)
            case MediaFailed():
                return self.reject(503, now, f"media: {event.reason}")
            case MediaTimedOut():
                return self.hangup("system", now, "media timeout")
            case Shutdown():
                return self._shutdown(now)
            case CancelReceived():
                return self._caller_cancel(event, now)
            case AckReceived():
                return []  # the IST stops retransmitting our 2xx by itself
            case RequestReceived():
                return call_dialog.on_request(self, event, now)
            case ResponseReceived():
                return self._response(event, now)
            case StrayResponse():
                return call_routing.on_stray(self, event.response)
            case TransactionTimedOut():
                return self._timed_out(event, now)

    def wall(self, now: float) -> str:
        """The record's UTC stamp for monotonic `now` (the shell gave the wall start)."""
        return iso_utc(self.setup.started_wall + (now - self.setup.started))

    # -- dispatch -----------------------------------------------------------------

    def _response(self, event: ResponseReceived, now: float) -> list[Action]:
        """A response to a request we sent inside a dialog, else to a branch's INVITE."""
        relayed = call_dialog.on_response(self, event.response, event.key, now)
        if relayed is not None:
            return relayed
        return call_routing.on_response(self, event.response, event.key, now)

    def _timed_out(self, event: TransactionTimedOut, now: float) -> list[Action]:
        ended = call_dialog.on_timeout(self, event, now)
        if ended is not None:
            return ended
        return call_routing.on_timeout(self, event.key, now)

    # -- endings ------------------------------------------------------------------

    def reject(self, status: int, now: float, reason: str | None) -> list[Action]:
        """End an unanswered call: `status` to the caller, CANCEL the branches."""
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
            ended_at=self.wall(now),
            hangup_by="system",
        )
        actions: list[Action] = [SendResponse(self.inbound.key, response)]
        for branch in self.branches:
            actions += call_routing.cancel_branch(self, branch, now)
        return [*actions, CloseMedia(), FinishRecord(self.record), *self.maybe_finished()]

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
            actions += call_routing.cancel_branch(self, branch, now)
        self.record = replace(
            self.record,
            disposition=Disposition.CANCELLED,
            sip_status=487,
            sip_reason="cancelled by caller",
            hangup_by="caller",
            ring_seconds=round(now - self.setup.started, 3),
            ended_at=self.wall(now),
        )
        return [*actions, CloseMedia(), FinishRecord(self.record), *self.maybe_finished()]

    def hangup(
        self, by: Literal["caller", "callee", "system"], now: float, reason: str
    ) -> list[Action]:
        """End an answered call: BYE whichever side did not hang up."""
        if self.state != "answered":
            if self.state in ("media", "routing"):
                return self.reject(480 if by == "system" else 487, now, reason)
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
            ended_at=self.wall(now),
            talk_seconds=round(now - answered, 3),
            sip_reason=self.record.sip_reason if by != "system" else reason,
        )
        return [*actions, CloseMedia(), FinishRecord(self.record), *self.maybe_finished()]

    def _shutdown(self, now: float) -> list[Action]:
        if self.state == "answered":
            return self.hangup("system", now, "shutdown")
        return self.reject(503, now, "shutdown")

    def maybe_finished(self) -> list[Action]:
        """`Finished` once the call has ended and no request of ours is outstanding."""
        return [Finished()] if self.finished else []


def _disposition_for(status: int) -> Disposition:
    if status in (486, 600):
        return Disposition.BUSY
    if status in (480, 408, 487):
        return Disposition.NO_ANSWER
    if status in (403, 404, 603):
        return Disposition.REJECTED
    return Disposition.FAILED
