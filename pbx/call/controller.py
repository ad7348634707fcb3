"""The call controller: one inbound leg, its outbound branches and its record (pure).

One `Call` per inbound INVITE that passed admission (trunk address, known and
enabled number). It owns both legs, the per-leg SDP origins, the route plan
and the call record; it never touches a socket, a clock or the store. Feed it
transaction events (`pbx.sip.transaction`) and media events with `handle`,
and timer expiries with `handle_timer`; each returns a list of actions the
caller (`pbx.service.runner`) must execute in order.

Lifecycle: `start(now)` -> `WriteRecord(ringing)`, `OpenMedia`; the runner
answers `MediaOpened` (or `MediaFailed`) and only then do the outbound
INVITEs go out, so the record row always exists before the first outbound
request (DESIGN.md call flow step 3).

Layout (split by concept, STYLE.md §3.9): this module holds `Call` itself
(state, public API, event dispatch) and the endings that write the final
record (reject, CANCEL by the caller, hang-up, shutdown). `pbx.call.routing`
places the outbound branches and hunts through the plan (provisionals,
answer, failure, digest retry, ring timeouts); `pbx.call.in_dialog` handles the
requests inside the answered call (BYE, relayed re-INVITE/UPDATE/INFO/OPTIONS
and their answers). Both are plain functions over the `Call`'s state, which
live in `pbx.call.state`; `pbx.call.endings` ends calls and finishes records.

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

from typing import Literal

from pbx.call import audio, endings, in_dialog, routing
from pbx.call.in_dialog import ALLOW, MAX_REACKS, MAX_RELAYED, OFFER_METHODS, RELAYED_IN_DIALOG
from pbx.call.model import (
    Action,
    CallSetup,
    DigitReceived,
    MediaFailed,
    MediaLost,
    MediaOpened,
    MediaTimedOut,
    OpenMedia,
    PromptDone,
    Shutdown,
    Target,
    WriteRecord,
)
from pbx.call.routing import MAX_FORKS
from pbx.call.state import CallState
from pbx.records import iso_utc
from pbx.rtp.sdp import SdpError, parse_sdp
from pbx.sip.dialog import DialogError
from pbx.sip.transaction import (
    AckReceived,
    CancelReceived,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
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
    | MediaLost
    | PromptDone
    | DigitReceived
    | Shutdown
)


class Call(CallState):
    """The B2BUA state machine for one call. Returns actions; never performs them."""

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
        except DialogError as err:  # no Contact: we could never reach the caller (§12.1.1)
            return self.reject(err.status_hint, now, str(err))
        if not self.setup.steps:
            return self.reject(480, now, "no destination configured")
        self.state = "media"
        return [WriteRecord(self.record), OpenMedia()]

    def handle_timer(self, now: float) -> list[Action]:
        actions: list[Action] = []
        vm = self.voicemail_deadline
        if vm is not None and vm <= now and self.state == "answered":
            self.voicemail_deadline = None
            actions += self.hangup("system", now, "voicemail time limit")
        screening = self.screening.next_deadline() if self.screening is not None else None
        if screening is not None and screening <= now:
            actions += routing.screening_timer(self, now)
        for branch in self.branches:
            if branch.deadline is not None and branch.deadline <= now:
                branch.deadline = None
                actions += routing.branch_expired(self, branch, now)
        return actions

    def handle(self, event: Input, now: float) -> list[Action]:
        """Feed one event; returns actions the caller must execute in order."""
        match event:
            case MediaOpened() | MediaFailed() | MediaLost() | MediaTimedOut() | PromptDone():
                return self._media_event(event, now)
            case DigitReceived(leg, digit):
                return routing.screening_digit(self, digit, now) if leg == "outbound" else []
            case Shutdown():
                return endings.shutdown(self, now)
            case CancelReceived():
                return endings.caller_cancel(self, event, now)
            case AckReceived():
                return []  # the IST stops retransmitting our 2xx by itself
            case RequestReceived():
                return in_dialog.on_request(self, event, now)
            case ResponseReceived():
                return self._response(event, now)
            case StrayResponse():
                return routing.on_stray(self, event.response)
            case TransactionTimedOut():
                return self._timed_out(event, now)

    # -- dispatch -----------------------------------------------------------------

    def _response(self, event: ResponseReceived, now: float) -> list[Action]:
        """A response to a request we sent inside a dialog, else to a branch's INVITE."""
        relayed = in_dialog.on_response(self, event.response, event.key, now)
        if relayed is not None:
            return relayed
        return routing.on_response(self, event.response, event.key, now)

    def _timed_out(self, event: TransactionTimedOut, now: float) -> list[Action]:
        ended = in_dialog.on_timeout(self, event, now)
        if ended is not None:
            return ended
        return routing.on_timeout(self, event.key, now)

    def _media_event(
        self, event: MediaOpened | MediaFailed | MediaLost | MediaTimedOut | PromptDone, now: float
    ) -> list[Action]:
        match event:
            case MediaOpened():
                return routing.on_media_opened(self, event, now)
            case MediaFailed():
                return self.reject(503, now, f"media: {event.reason}")
            case MediaLost(reason):
                return self._media_lost(reason, now)
            case MediaTimedOut():
                return self.hangup("system", now, "media timeout")
            case PromptDone():
                return self._prompt_done(event, now)

    def _prompt_done(self, event: PromptDone, now: float) -> list[Action]:
        if event.name == audio.WHISPER:
            return routing.whisper_done(self, now)
        return audio.on_prompt_done(self, event, now)

    def _media_lost(self, reason: str, now: float) -> list[Action]:
        """Both legs get BYE; before answer the caller gets 503."""
        if self.state == "answered":
            return self.hangup("system", now, reason)
        return self.reject(503, now, reason)

    # -- endings (pbx.call.endings) -----------------------------------------------

    def reject(self, status: int, now: float, reason: str | None) -> list[Action]:
        return endings.reject(self, status, now, reason)

    def hangup(
        self, by: Literal["caller", "callee", "system"], now: float, reason: str
    ) -> list[Action]:
        return endings.hangup(self, by, now, reason)
