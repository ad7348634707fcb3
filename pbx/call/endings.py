"""How a call ends: reject, CANCEL by the caller, hang-up, shutdown (pure).

Each function ends the call on its `CallState`, writes the final record
fields and returns the actions (final response or BYEs, CANCELs of ringing
branches, `CloseMedia`, `FinishRecord`) in order. This is the one layer
that finishes a record.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pbx.call.branches import cancel_branch
from pbx.call.model import (
    Action,
    CloseMedia,
    FinishRecord,
    Pending,
    SendRequest,
    SendResponse,
)
from pbx.call.state import CallState
from pbx.records import Disposition
from pbx.sip.responses import make_response
from pbx.sip.status import reason_phrase
from pbx.sip.transaction import CancelReceived


def reject(call: CallState, status: int, now: float, reason: str | None) -> list[Action]:
    """End an unanswered call: `status` to the caller, CANCEL the branches."""
    if call.inbound.answered or call.state == "ended":
        return []
    response = call.builder.to_caller(call.inbound, status)
    disposition = disposition_for(status)
    call.state = "ended"
    call.inbound.answered = True
    call.record = replace(
        call.record,
        disposition=disposition,
        sip_status=status,
        sip_reason=reason or reason_phrase(status),
        ring_seconds=round(now - call.setup.started, 3),
        ended_at=call.wall(now),
        hangup_by="system",
    )
    actions: list[Action] = [SendResponse(call.inbound.key, response)]
    for branch in call.branches:
        actions += cancel_branch(call, branch, now)
    actions += bye_held(call)
    return [*actions, CloseMedia(), FinishRecord(call.record), *call.maybe_finished()]


def bye_held(call: CallState) -> list[Action]:
    """BYE an answerer whose 2xx was held for the whisper (the caller never got it)."""
    branch = call.winner
    if branch is None or call.held is None or branch.dialog is None:
        return []
    call.held = None
    call.screening = None
    bye = call.builder.bye(branch)
    call.pending[call.builder.key_of(bye)] = Pending("bye", "outbound", branch=branch)
    return [SendRequest(bye, branch.target.dest)]


def caller_cancel(call: CallState, event: CancelReceived, now: float) -> list[Action]:
    ok = make_response(event.request, 200)
    actions: list[Action] = [SendResponse(event.key, ok)]
    if call.inbound.answered:
        return actions  # too late: the 2xx already went (RFC 3261 §9.2)
    terminated = call.builder.to_caller(call.inbound, 487)
    call.inbound.answered = True
    call.state = "ended"
    actions.append(SendResponse(event.invite_key, terminated))
    for branch in call.branches:
        actions += cancel_branch(call, branch, now)
    actions += bye_held(call)
    call.record = replace(
        call.record,
        disposition=Disposition.CANCELLED,
        sip_status=487,
        sip_reason="cancelled by caller",
        hangup_by="caller",
        ring_seconds=round(now - call.setup.started, 3),
        ended_at=call.wall(now),
    )
    return [*actions, CloseMedia(), FinishRecord(call.record), *call.maybe_finished()]


def hangup(
    call: CallState, by: Literal["caller", "callee", "system"], now: float, reason: str
) -> list[Action]:
    """End an answered call: BYE whichever side did not hang up."""
    if call.state != "answered":
        if call.state in ("media", "routing"):
            return reject(call, 480 if by == "system" else 487, now, reason)
        return []
    call.state = "ended"
    actions: list[Action] = []
    if by != "caller" and call.inbound.dialog is not None:
        bye = call.builder.bye_caller(call.inbound)
        call.pending[call.builder.key_of(bye)] = Pending("bye", "inbound")
        actions.append(SendRequest(bye, call.inbound.source))
    if by != "callee" and call.winner is not None:
        bye = call.builder.bye(call.winner)
        call.pending[call.builder.key_of(bye)] = Pending("bye", "outbound", branch=call.winner)
        actions.append(SendRequest(bye, call.winner.target.dest))
    answered = call.answered_at if call.answered_at is not None else now
    if call.record.disposition is Disposition.VOICEMAIL and not call.voicemail_recording:
        # Gone during the greeting: no message was left, so the call was not answered.
        call.record = replace(call.record, disposition=Disposition.NO_ANSWER)
    call.record = replace(
        call.record,
        hangup_by=by,
        ended_at=call.wall(now),
        talk_seconds=round(now - answered, 3),
        sip_reason=call.record.sip_reason if by != "system" else reason,
    )
    return [*actions, CloseMedia(), FinishRecord(call.record), *call.maybe_finished()]


def shutdown(call: CallState, now: float) -> list[Action]:
    if call.state == "answered":
        return hangup(call, "system", now, "shutdown")
    return reject(call, 503, now, "shutdown")


def disposition_for(status: int) -> Disposition:
    if status in (486, 600):
        return Disposition.BUSY
    if status in (480, 408, 487):
        return Disposition.NO_ANSWER
    if status in (403, 404, 603):
        return Disposition.REJECTED
    return Disposition.FAILED
