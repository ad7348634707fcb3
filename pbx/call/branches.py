"""Bookkeeping of one outbound branch: stop it ringing, record its attempt (pure).

Shared by `routing` (a ring timeout, a hunt) and `endings` (a call that ends
while branches still ring), so neither imports the other for it.
"""

from __future__ import annotations

from dataclasses import replace

from pbx.call.model import Action, Branch, SendRequest, Target
from pbx.call.state import CallState
from pbx.records import Attempt
from pbx.sip.status import SipParseError
from pbx.sip.uri import parse_uri


def cancel_branch(call: CallState, branch: Branch, now: float) -> list[Action]:
    """Stop ringing a branch: CANCEL after a provisional, else abandon it (RFC 3261 §9.1)."""
    if branch.state != "calling":
        return []
    branch.deadline = None
    if branch.provisional:
        branch.state = "cancelled"
        attempt_done(call, branch, 487, "cancelled", now)
        return [SendRequest(call.builder.cancel(branch), branch.target.dest)]
    branch.state = "abandoned"
    attempt_done(call, branch, 487, "cancelled", now)
    return []


def dialled(target: Target) -> str:
    """What was dialled: the number sent to a trunk, else the Request-URI (sip:, ext:)."""
    if target.trunk is not None:
        try:
            user = parse_uri(target.uri).user
        except SipParseError:
            user = None
        if user:
            return user
    return target.uri


def attempt_done(
    call: CallState, branch: Branch, status: int | None, reason: str, now: float
) -> None:
    if branch.attempt_recorded:
        return
    branch.attempt_recorded = True
    branch.status = status
    call.statuses.append(status)
    attempt = Attempt(
        target=branch.target.destination,
        status=status,
        started_at=branch.started_at,
        ended_at=call.wall(now),
        reason=reason,
        dialled=dialled(branch.target),
    )
    call.record = replace(call.record, attempts=(*call.record.attempts, attempt))
