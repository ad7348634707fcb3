"""A call's audio: consent prompt, recording start, whisper, voicemail (pure).

Plain functions over a call's `pbx.call.state.CallState`, called by
`routing` (at answer, and when the hunt fails) and by `Call.handle` on
`PromptDone`; each returns actions the caller must execute in order. The
number's wishes come in `CallSetup.audio` (`pbx.call.model.AudioPlan`).

Decisions (issue 13; see docs/recording.md for the why):
- Consent prompt: answer-then-play, not early media. When the answerer
  picks up, the caller gets its 200 and BOTH parties hear the disclosure
  (each leg muted from the other meanwhile); recording starts only when
  both prompts are done. Early media (183 + SDP) is not used because
  whether a trunk passes it on is unreliable (RFC 3960 gating) and a
  carrier may cut or drop it; answering the caller before the hunt would
  start billing on calls nobody answers and force the codec before the
  callee is known. The cost: the answerer waits the prompt's length.
- Prompts are played in PCMU if the leg's negotiated SDP has it, else
  PCMA; with neither, no prompt is played, the record says so, and a
  number that asked for a disclosure is then not recorded (no recording
  without the consent prompt the admin chose).
- SRTP (RTP/SAVP, RTP/SAVPF) calls: the relay cannot read the audio: no
  recording and no prompts, a note in the record.
- Whisper: the answerer's 2xx is ACKed but not relayed (the caller keeps
  its ringback), the whisper plays on the outbound leg only, then the call
  is bridged; the caller never hears it and it is never recorded (the
  recording starts after the bridge).
- Voicemail: when every destination failed and the number has a greeting,
  the caller is answered (200 with the relay's SDP, the offer's codecs
  echoed), hears greeting + beep, and is recorded until hang-up or
  `voicemail_seconds`; the disposition is `voicemail`, or `no-answer` if
  the caller hung up before the beep (no message was left).
"""

from __future__ import annotations

import re
from dataclasses import replace

from pbx.call.model import Action, PlayPrompt, PromptDone, StartRecording
from pbx.call.state import CallState
from pbx.records import Disposition
from pbx.rtp.sdp import SessionDescription
from pbx.rtp.stream import choose_codec

DISCLOSURE = "disclosure"
WHISPER = "whisper"
GREETING = "greeting"
BEEP = "beep"
NO_CODEC = "no prompt: the call offers neither PCMU nor PCMA"
SRTP_NOTE = "not recorded, no prompts: SRTP (RTP/SAVP) call, relayed encrypted"


_TELEPHONE_EVENT = re.compile(rb"a=rtpmap:(\d{1,3}) telephone-event/8000", re.IGNORECASE)


def telephone_event(body: bytes) -> int | None:
    """The RFC 4733 payload type an SDP body maps to telephone-event/8000 (first one)."""
    match = _TELEPHONE_EVENT.search(body)
    return int(match.group(1)) if match and int(match.group(1)) < 128 else None


def payload_types(sdp: SessionDescription | None) -> list[int]:
    """The static payload types of the first stream (what a prompt can be sent as)."""
    if sdp is None or not sdp.media:
        return []
    return [int(f) for f in sdp.media[0].formats if f.isdigit()]


def is_srtp(sdp: SessionDescription | None) -> bool:
    """The offer's audio is SRTP: relayed as it is, never played into nor recorded."""
    return sdp is not None and sdp.is_srtp


def note(call: CallState, text: str) -> None:
    """Add `text` to the record's media note (notes joined with '; ', each once)."""
    current = call.record.media_note
    if current is not None and text in current.split("; "):
        return
    joined = text if current is None else f"{current}; {text}"
    call.record = replace(call.record, media_note=joined)


def wanted(call: CallState) -> bool:
    plan = call.setup.audio
    return plan.record or plan.disclosure is not None


def codec_for(call: CallState, answer: SessionDescription | None) -> int | None:
    """The prompt codec, or None (and the notes) when the call cannot carry prompts."""
    if is_srtp(call.inbound.offer):
        note(call, SRTP_NOTE)
        return None
    codec = choose_codec(payload_types(answer if answer is not None else call.inbound.offer))
    if codec is None:
        note(call, NO_CODEC)
    return codec


def on_bridged(call: CallState, answer: SessionDescription | None) -> list[Action]:
    """The caller and answerer are connected: disclosure to both, or record at once."""
    plan = call.setup.audio
    if not wanted(call):
        return []
    codec = codec_for(call, answer)
    call.codec = codec
    if codec is None:
        if plan.record and plan.disclosure is not None:
            note(call, "not recorded: the disclosure could not be played")
        return []
    if plan.disclosure is not None:
        call.playing = {"inbound": DISCLOSURE, "outbound": DISCLOSURE}
        return [
            PlayPrompt("inbound", DISCLOSURE, plan.disclosure, codec),
            PlayPrompt("outbound", DISCLOSURE, plan.disclosure, codec),
        ]
    return [StartRecording()] if plan.record else []


def on_prompt_done(call: CallState, event: PromptDone, now: float) -> list[Action]:
    """A prompt ended: start recording after the disclosure, beep after the greeting."""
    if call.playing.get(event.leg) != event.name:
        return []  # stale: not what plays there now (cut short, or a repeat)
    del call.playing[event.leg]
    if call.state != "answered":
        return []
    plan = call.setup.audio
    if event.name == DISCLOSURE and DISCLOSURE not in call.playing.values() and plan.record:
        return [StartRecording()]
    if call.record.disposition is not Disposition.VOICEMAIL:
        return []
    if event.name == GREETING and plan.beep is not None and call.codec is not None:
        call.playing["inbound"] = BEEP
        return [PlayPrompt("inbound", BEEP, plan.beep, call.codec)]
    if event.name in (GREETING, BEEP) and not call.voicemail_recording:
        call.voicemail_recording = True
        call.voicemail_deadline = now + plan.voicemail_seconds
        return [StartRecording()]
    return []


def can_take_voicemail(call: CallState) -> bool:
    plan = call.setup.audio
    if plan.voicemail is None or call.state != "routing" or call.inbound.answered:
        return False
    if is_srtp(call.inbound.offer):
        note(call, SRTP_NOTE)
        return False
    return choose_codec(payload_types(call.inbound.offer)) is not None


def voicemail_answered(call: CallState, now: float) -> list[Action]:
    """The caller was just answered for voicemail (by `routing`): greeting first."""
    plan = call.setup.audio
    assert plan.voicemail is not None  # can_take_voicemail checked it
    call.codec = choose_codec(payload_types(call.inbound.offer))
    assert call.codec is not None
    call.record = replace(call.record, disposition=Disposition.VOICEMAIL)
    call.playing["inbound"] = GREETING
    return [PlayPrompt("inbound", GREETING, plan.voicemail, call.codec)]
