"""Outbound routing of a call: place the branches, follow their answers, hunt on (pure).

Plain functions over a call's `pbx.call.state.CallState`; `Call.handle` /
`handle_timer` dispatch the outbound leg's events here; a failed hunt ends
the call through `pbx.call.endings`. Each function returns actions the
caller must execute in order.

Decisions (where the RFCs and DESIGN.md are silent):
- The ring timeout is per branch and is not restarted by repeated 180s
  (Kamailio's `restart_fr_on_each_reply` warning). An expired branch that has
  had a provisional is CANCELled; one that has had none is abandoned (RFC 3261
  §9.1 forbids CANCEL before a provisional) and CANCELled if a 1xx comes later.
- A 6xx from one branch of a simultaneous step does not stop its siblings
  (they are other people); once the step is over, a 6xx anywhere in it ends
  the hunt (RFC 3261 §16.7 step 5 in spirit).
- A 183 without SDP reaches the caller as 180; a 2xx we cannot build a
  dialog from (no To tag / Contact) fails its branch as 502; a 2xx with a
  second To tag on a branch (a forking proxy behind the callee) is ACKed and
  BYEd (§13.2.2.4), for at most MAX_FORKS such dialogs per call.
- Whisper / screening (issue 13, docs/recording.md): the first 2xx wins as
  usual (the other branches are CANCELled) but is held, ACKed and not
  relayed, with both legs' audio held back (`HoldMedia`); the whisper plays
  to the answerer; `pbx.rules.screening` decides bridge or hunt on. A
  screened-out branch is BYEd and recorded as an attempt with no status
  ("no accept digit in time"), like a ring timeout.
- Voicemail: when the hunt fails and the number has a greeting, the caller
  is answered by pbx instead of getting the failure (`pbx.call.audio`).
"""

from __future__ import annotations

from dataclasses import replace

from pbx.call import audio, endings
from pbx.call.branches import attempt_done, cancel_branch
from pbx.call.legs import media_endpoint, relay_sdp
from pbx.call.model import (
    Action,
    ArmMedia,
    Branch,
    HoldMedia,
    MediaOpened,
    Pending,
    PlayPrompt,
    SendRequest,
    SendResponse,
    SendStateless,
    SetMediaRemote,
    StopPrompt,
    Target,
    WatchDigits,
    WriteRecord,
)
from pbx.call.state import CallState
from pbx.records import Disposition
from pbx.rtp.sdp import SdpError, SessionDescription, parse_sdp
from pbx.rules.routing import final_status, hunt_continues
from pbx.rules.screening import Action as ScreenAction
from pbx.rules.screening import Bridge, HuntOn, PlayWhisper, Screening, StopWhisper
from pbx.rules.screening import Input as ScreenInput
from pbx.sip.auth import AuthAttempt, DigestClient, challenges_in
from pbx.sip.dialog import DialogError
from pbx.sip.message import Response
from pbx.sip.transaction import TransactionKey

__all__ = [
    "MAX_FORKS",
    "branch_expired",
    "cancel_branch",
    "on_media_opened",
    "on_response",
    "on_stray",
    "on_timeout",
]

MAX_FORKS = 8  # extra 2xx dialogs from a forking callee we ACK and BYE (bounded)


# -- start and hunting --------------------------------------------------------------


def on_media_opened(call: CallState, event: MediaOpened, now: float) -> list[Action]:
    """The relay is bound: point it at the caller and place the first step."""
    if call.state != "media":
        return []
    call.relay = event
    call.state = "routing"
    actions: list[Action] = []
    offer = call.inbound.offer
    if offer is not None:
        endpoint = media_endpoint(offer)
        if endpoint is not None:
            actions.append(SetMediaRemote("inbound", *endpoint))
    return actions + _next_step(call, now)


def _next_step(call: CallState, now: float) -> list[Action]:
    call.step += 1
    if call.step >= len(call.setup.steps):
        return _fail_to_caller(call, now)
    actions: list[Action] = []
    for target in call.setup.steps[call.step]:
        actions += _place(call, target, now)
    return actions


def _place(call: CallState, target: Target, now: float) -> list[Action]:
    assert call.relay is not None  # set in on_media_opened
    assert call.inbound.offer is not None
    origin = call.builder.new_origin()  # one o= session per outbound leg (RFC 3264 §8)
    body = relay_sdp(call.inbound.offer, call.relay.outbound, origin)
    branch = call.builder.new_branch(target, call.inbound.invite, body, now, call.setup)
    branch.origin = origin
    branch.deadline = now + call.setup.ring_timeout
    branch.started_at = call.wall(now)
    call.branches.append(branch)
    return [SendRequest(branch.invite, target.dest)]


def _after_branch(call: CallState, branch: Branch, status: int | None, now: float) -> list[Action]:
    """A branch of the current step ended without answer: hunt on or give up."""
    if call.winner is not None or call.state != "routing":
        return []
    step = _current_step(call)
    if any(b.state == "calling" for b in step):
        return []
    if not all(hunt_continues(s) for s in (status, *(b.status for b in step))):
        return _fail_to_caller(call, now)
    return _next_step(call, now)


def _current_step(call: CallState) -> list[Branch]:
    steps = call.setup.steps
    size = len(steps[call.step]) if 0 <= call.step < len(steps) else 0
    return call.branches[-size:] if size else []


def _fail_to_caller(call: CallState, now: float) -> list[Action]:
    if audio.can_take_voicemail(call):
        return _voicemail(call, now)
    return endings.reject(call, final_status(call.statuses), now, None)


def _voicemail(call: CallState, now: float) -> list[Action]:
    """Nobody answered: pbx answers the caller itself for the voicemail greeting."""
    assert call.relay is not None
    assert call.inbound.offer is not None
    body = relay_sdp(call.inbound.offer, call.relay.inbound, call.inbound.origin)
    ok = call.builder.to_caller(call.inbound, 200, body=body)
    call.inbound.dialog = call.builder.uas_dialog(call.inbound)
    call.inbound.answered = True
    call.state = "answered"
    call.answered_at = now
    played = audio.voicemail_answered(call, now)
    call.record = replace(
        call.record, answered_at=call.wall(now), sip_status=200, sip_reason="voicemail",
        ring_seconds=round(now - call.setup.started, 3),
    )  # fmt: skip
    return [SendResponse(call.inbound.key, ok), ArmMedia(), *played, WriteRecord(call.record)]


# -- responses to the outbound INVITEs ----------------------------------------------


def _branch_of(call: CallState, key: TransactionKey) -> Branch | None:
    for branch in call.branches:
        if branch.key == key:
            return branch
    return None


def on_response(
    call: CallState, response: Response, key: TransactionKey, now: float
) -> list[Action]:
    """A response on a branch's INVITE transaction (nothing if `key` is no branch's)."""
    branch = _branch_of(call, key)
    if branch is None:
        return []
    if response.status < 200:
        return _provisional(call, branch, response, now)
    if response.status < 300:
        return _branch_answered(call, branch, response, now)
    return _branch_failed(call, branch, response, now)


def _provisional(call: CallState, branch: Branch, response: Response, now: float) -> list[Action]:
    if response.status == 100:
        return []
    first = not branch.provisional
    branch.provisional = True
    if branch.state in ("abandoned", "cancelled") and first:
        return [SendRequest(call.builder.cancel(branch), branch.target.dest)]
    if branch.state != "calling" or call.state != "routing":
        return []
    if response.status == 183 and response.body and not call.inbound.early_media:
        return _early_media(call, response)
    if not call.inbound.ringing_sent:
        call.inbound.ringing_sent = True
        ringing = call.builder.to_caller(call.inbound, 180)
        return [SendResponse(call.inbound.key, ringing)]
    return []


def _early_media(call: CallState, response: Response) -> list[Action]:
    assert call.relay is not None
    try:
        sdp = parse_sdp(response.body)
    except SdpError:
        return []
    call.inbound.early_media = True
    call.inbound.ringing_sent = True
    body = relay_sdp(sdp, call.relay.inbound, call.inbound.origin)
    actions: list[Action] = []
    endpoint = media_endpoint(sdp)
    if endpoint is not None:
        actions.append(SetMediaRemote("outbound", *endpoint))
    progress = call.builder.to_caller(call.inbound, 183, body=body)
    return [*actions, SendResponse(call.inbound.key, progress)]


def _branch_answered(
    call: CallState, branch: Branch, response: Response, now: float
) -> list[Action]:
    if branch.dialog is not None and response.to.tag != branch.dialog.remote_tag:
        return _extra_fork(call, branch, response)
    if branch.dialog is None:
        try:
            branch.dialog = call.builder.uac_dialog(branch, response)
        except DialogError as exc:  # no To tag or Contact: we can neither ACK nor BYE
            return _bad_answer(call, branch, exc, now)
    ack = call.builder.ack(branch)
    actions: list[Action] = [SendStateless(ack, branch.target.dest)]
    if call.winner is branch or branch.state == "late":
        return actions  # a retransmitted 2xx: re-ACK only (RFC 3261 §13.2.2.4)
    if call.winner is not None or call.state != "routing" or branch.state != "calling":
        branch.state = "late"
        bye = call.builder.bye(branch)
        call.pending[call.builder.key_of(bye)] = Pending("bye", "outbound", branch=branch)
        return [*actions, SendRequest(bye, branch.target.dest)]
    plan = call.setup.audio
    if plan.whisper is not None or plan.screen:
        held = _hold(call, branch, response, now)
        if held:
            return actions + held
    return actions + _bridge(call, branch, response, now)


def _hold(call: CallState, branch: Branch, response: Response, now: float) -> list[Action]:
    """Hold the answerer's 2xx (ACKed, not relayed): whisper and/or screening first.

    The caller keeps its ringback; the whisper plays on the outbound leg only.
    Returns [] when that is impossible (SRTP, or a whisper without G.711 and no
    screening): the call is bridged at once."""
    plan = call.setup.audio
    answer = _parsed(response.body)
    codec = audio.codec_for(call, answer)
    if audio.is_srtp(call.inbound.offer) or answer is None:
        return []
    whisper = plan.whisper if codec is not None else None
    if whisper is None and not plan.screen:
        return []
    call.winner = branch
    call.held = response
    call.codec = codec
    branch.state = "answered"
    branch.deadline = None
    actions: list[Action] = []
    for other in call.branches:
        if other is not branch:
            actions += cancel_branch(call, other, now)
    endpoint = media_endpoint(answer)
    if endpoint is not None:
        actions.append(SetMediaRemote("outbound", *endpoint))
    actions.append(HoldMedia(True))
    if not plan.screen:
        assert whisper is not None
        assert codec is not None
        call.playing["outbound"] = audio.WHISPER
        return [*actions, PlayPrompt("outbound", audio.WHISPER, whisper, codec)]
    seconds = len(whisper) / 16000 if whisper is not None else None
    call.screening, steps = Screening.start(
        now, whisper_seconds=seconds, screen=True, screen_seconds=plan.screen_seconds
    )
    watch = WatchDigits("outbound", audio.telephone_event(response.body))
    return [*actions, watch, *_screened(call, steps, now)]


def _screened(call: CallState, steps: list[ScreenAction], now: float) -> list[Action]:
    """The screening machine's actions as the call's (pbx.rules.screening)."""
    actions: list[Action] = []
    plan = call.setup.audio
    for step in steps:
        match step:
            case PlayWhisper() if plan.whisper is not None and call.codec is not None:
                call.playing["outbound"] = audio.WHISPER
                actions.append(PlayPrompt("outbound", audio.WHISPER, plan.whisper, call.codec))
            case StopWhisper():
                call.playing.pop("outbound", None)
                actions.append(StopPrompt("outbound"))
            case Bridge():
                actions += _end_screening(call) + _bridge_held(call, now)
            case HuntOn(reason):
                actions += _end_screening(call) + _screen_failed(call, reason, now)
            case _:  # ArmTimer: read through next_deadline(); Release: the call ends itself
                pass
    return actions


def _end_screening(call: CallState) -> list[Action]:
    call.screening = None
    return [WatchDigits("outbound", None)]


def _bridge_held(call: CallState, now: float) -> list[Action]:
    branch, response = call.winner, call.held
    if branch is None or response is None or call.state != "routing":
        return []
    call.held = None
    return [HoldMedia(False), *_bridge(call, branch, response, now)]


def _screen_failed(call: CallState, reason: str, now: float) -> list[Action]:
    """No accept digit (or the answerer left): the branch is a no-answer; hunt on."""
    branch = call.winner
    if branch is None:
        return []
    still_up = call.held is not None
    call.winner, call.held = None, None
    call.playing.pop("outbound", None)
    branch.state = "failed"
    actions: list[Action] = [HoldMedia(False)]
    if still_up:
        bye = call.builder.bye(branch)
        call.pending[call.builder.key_of(bye)] = Pending("bye", "outbound", branch=branch)
        actions.append(SendRequest(bye, branch.target.dest))
    attempt_done(call, branch, None, reason, now)
    return actions + _after_branch(call, branch, None, now)


def whisper_done(call: CallState, now: float) -> list[Action]:
    """The whisper ended: screening waits for the digit, else the caller is connected."""
    if call.playing.get("outbound") != audio.WHISPER:
        return []  # stale: cut short by the accept digit, or a repeat
    call.playing.pop("outbound", None)
    if call.screening is not None:
        return _screened(call, call.screening.handle(ScreenInput.WHISPER_FINISHED, now), now)
    return _bridge_held(call, now)


def screening_digit(call: CallState, digit: str, now: float) -> list[Action]:
    """A DTMF digit from the answerer (RFC 4733 or SIP INFO) while it is screened."""
    if call.screening is None:
        return []
    return _screened(call, call.screening.digit(digit, now), now)


def screening_timer(call: CallState, now: float) -> list[Action]:
    if call.screening is None:
        return []
    return _screened(call, call.screening.handle_timer(now), now)


def answerer_left(call: CallState, now: float) -> list[Action]:
    """The held answerer sent BYE before being bridged: a no-answer, hunt on."""
    call.held = None  # its dialog is gone: no BYE from us
    if call.screening is not None:
        steps = call.screening.handle(ScreenInput.ANSWERER_HUNG_UP, now)
        return _screened(call, steps, now)
    return _screen_failed(call, "answerer hung up before being bridged", now)


def _extra_fork(call: CallState, branch: Branch, response: Response) -> list[Action]:
    """A 2xx from a second UAS behind a forking proxy: ACK it, then BYE (§13.2.2.4)."""
    key = (branch.call_id, response.to.tag or "")
    dialog = call.forks.get(key)
    first = dialog is None
    if dialog is None:
        try:
            dialog = call.builder.uac_dialog(branch, response)
        except DialogError:
            return []
    ack = call.builder.ack_dialog(dialog, response)
    actions: list[Action] = [SendStateless(ack, branch.target.dest)]
    if first and len(call.forks) < MAX_FORKS:
        call.forks[key] = dialog
        bye = call.builder.bye_dialog(dialog)
        call.pending[call.builder.key_of(bye)] = Pending("bye", "outbound")
        actions.append(SendRequest(bye, branch.target.dest))
    return actions


def _bad_answer(call: CallState, branch: Branch, exc: DialogError, now: float) -> list[Action]:
    """A 2xx we cannot build a dialog from counts as a 502 failure of the branch."""
    if branch.state != "calling" or call.winner is not None:
        return []
    branch.deadline = None
    branch.state = "failed"
    attempt_done(call, branch, 502, f"unusable 2xx: {exc}", now)
    return _after_branch(call, branch, 502, now)


def _bridge(call: CallState, branch: Branch, response: Response, now: float) -> list[Action]:
    """The first 2xx wins: CANCEL the others, answer the caller with the relay's SDP."""
    call.winner = branch
    branch.state = "answered"
    branch.status = response.status
    branch.deadline = None
    call.state = "answered"
    call.answered_at = now
    actions: list[Action] = []
    for other in call.branches:
        if other is not branch:
            actions += cancel_branch(call, other, now)
    answer = _parsed(response.body)  # once: for the relay and for the audio
    media, body = _answer_sdp(call, answer)
    ok = call.builder.to_caller(call.inbound, 200, body=body)
    call.inbound.dialog = call.builder.uas_dialog(call.inbound)
    call.inbound.answered = True
    attempt_done(call, branch, response.status, response.reason, now)
    call.record = replace(
        call.record,
        outbound_call_id=branch.call_id,
        answered_at=call.wall(now),
        destination=branch.target.destination,
        disposition=Disposition.ANSWERED,
        sip_status=response.status,
        sip_reason=response.reason,
        ring_seconds=round(now - call.setup.started, 3),
    )
    ready: list[Action] = [SendResponse(call.inbound.key, ok), ArmMedia()]
    started = audio.on_bridged(call, answer)
    prompts = [a for a in started if isinstance(a, PlayPrompt)]
    rest = [a for a in started if not isinstance(a, PlayPrompt)]
    if prompts:
        # Held from the bridge until the prompts (which mute the legs) are playing, so not
        # a packet of either side reaches the other before the disclosure.
        ready = [HoldMedia(True), *ready, *prompts, HoldMedia(False)]
    return [*actions, *media, *ready, WriteRecord(call.record), *rest]


def _parsed(body: bytes) -> SessionDescription | None:
    if not body:
        return None
    try:
        return parse_sdp(body)
    except SdpError:
        return None


def _answer_sdp(call: CallState, sdp: SessionDescription | None) -> tuple[list[Action], bytes]:
    """The callee's answer anchored at the relay's inbound side, and where its RTP goes."""
    assert call.relay is not None
    if sdp is None:  # no body, or not SDP we can read
        return [], b""
    endpoint = media_endpoint(sdp)
    media: list[Action] = [] if endpoint is None else [SetMediaRemote("outbound", *endpoint)]
    return media, relay_sdp(sdp, call.relay.inbound, call.inbound.origin)


def _branch_failed(call: CallState, branch: Branch, response: Response, now: float) -> list[Action]:
    if branch.state == "calling" and response.status in (401, 407):
        retry = _authenticate(call, branch, response)
        if retry:
            return retry
    if branch.state not in ("calling",):
        return []
    branch.deadline = None
    branch.state = "failed"
    attempt_done(call, branch, response.status, response.reason, now)
    return _after_branch(call, branch, response.status, now)


def _authenticate(call: CallState, branch: Branch, response: Response) -> list[Action]:
    """Re-send the INVITE with digest credentials, once per challenge (RFC 3261 §22.2)."""
    creds = branch.target.credentials
    if creds is None:
        return []
    if branch.auth is None:
        branch.auth = AuthAttempt(DigestClient(creds, call.builder.ids))
    challenges = challenges_in(response.headers.items())
    invite = branch.invite
    extra = branch.auth.answer(challenges, "INVITE", invite.uri, invite.body)
    if extra is None:
        return []
    call.builder.reinvite_with_auth(branch, extra)
    return [SendRequest(branch.invite, branch.target.dest)]


def on_stray(call: CallState, response: Response) -> list[Action]:
    """A 2xx retransmitted after its INVITE transaction ended: ACK it again (§13.2.2.4)."""
    for branch in call.branches:
        ok_invite = 200 <= response.status < 300 and response.method == "INVITE"
        if branch.call_id == response.call_id and branch.dialog is not None and ok_invite:
            return [SendStateless(call.builder.ack(branch), branch.target.dest)]
    return []


# -- branches ending without answer --------------------------------------------------


def on_timeout(call: CallState, key: TransactionKey, now: float) -> list[Action]:
    """A branch's INVITE got no final response (Timer B): a 408 failure of the branch."""
    branch = _branch_of(call, key)
    if branch is None or branch.state != "calling":
        return []
    branch.deadline = None
    branch.state = "failed"
    attempt_done(call, branch, 408, "no response", now)
    return _after_branch(call, branch, 408, now)


def branch_expired(call: CallState, branch: Branch, now: float) -> list[Action]:
    """The branch's ring timeout passed (its deadline was cleared by the caller)."""
    if branch.state != "calling":
        return []
    attempt_done(call, branch, None, "ring timeout", now)
    actions = cancel_branch(call, branch, now)
    return actions + _after_branch(call, branch, None, now)
