"""The call's audio decisions, without sockets (pbx.call.audio, routing's whisper/screening
and voicemail): consent prompt then recording, whisper, screening, voicemail, SRTP and
codec notes, and the recording result merged into the final record."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pbx.call.audio import BEEP, DISCLOSURE, GREETING, NO_CODEC, SRTP_NOTE, WHISPER
from pbx.call.model import (
    AudioPlan,
    DigitReceived,
    FinishRecord,
    HoldMedia,
    PlayPrompt,
    PromptDone,
    StartRecording,
    StopPrompt,
    WatchDigits,
)
from pbx.records import Disposition
from pbx.rtp.media import RecordingResult
from tests.calls_support import (
    CALLER_SDP,
    Harness,
    caller_invite,
    kinds,
    make_call,
    of,
    requests,
    target,
)

PROMPT = bytes(3200)  # 0.2 s of silence is enough for the decisions
WHISPER_PCM = bytes(1600)


def _answered(audio: AudioPlan, **kw: object) -> tuple[Harness, list[object]]:
    h = make_call([[target(0)]], audio=audio, **kw)  # type: ignore[arg-type]
    h.ringing()
    return h, h.answer(0, 200, after=2)  # type: ignore[return-value]


def test_disclosure_to_both_then_recording() -> None:
    h, actions = _answered(AudioPlan(record=True, disclosure=PROMPT))
    played = of(actions, PlayPrompt)  # type: ignore[arg-type]
    assert [(p.leg, p.name, p.payload_type) for p in played] == [
        ("inbound", DISCLOSURE, 0), ("outbound", DISCLOSURE, 0),
    ]  # fmt: skip
    assert not of(actions, StartRecording)  # type: ignore[arg-type]
    assert h.to_caller(actions)[0].status == 200  # answered first, then the prompt
    assert h.feed(PromptDone("inbound", DISCLOSURE), after=1) == []
    assert h.feed(PromptDone("outbound", DISCLOSURE)) == [StartRecording()]


def test_record_without_disclosure_starts_at_the_bridge() -> None:
    _, actions = _answered(AudioPlan(record=True))
    assert kinds(actions)[-2:] == ["WriteRecord", "StartRecording"]  # type: ignore[arg-type]


def test_nothing_asked_nothing_done() -> None:
    _, actions = _answered(AudioPlan())
    assert not of(actions, PlayPrompt) and not of(actions, StartRecording)  # type: ignore[arg-type]  # noqa: PT018


def test_srtp_call_is_not_recorded_and_says_so() -> None:
    body = CALLER_SDP.replace(b"RTP/AVP", b"RTP/SAVP")
    h, actions = _answered(AudioPlan(record=True, disclosure=PROMPT),
                           invite=caller_invite(body=body))  # fmt: skip
    assert not of(actions, PlayPrompt)  # type: ignore[arg-type]
    assert not of(actions, StartRecording)  # type: ignore[arg-type]
    assert SRTP_NOTE in (h.call.record.media_note or "")


def test_no_g711_means_no_prompt_and_no_recording_without_the_disclosure() -> None:
    h = make_call([[target(0)]], audio=AudioPlan(record=True, disclosure=PROMPT))
    h.ringing()
    body = b"v=0\r\no=x 1 1 IN IP4 198.51.100.20\r\ns=-\r\nc=IN IP4 198.51.100.20\r\nt=0 0\r\nm=audio 40000 RTP/AVP 18\r\n"  # noqa: E501
    actions = h.answer(0, 200, body=body)
    assert not of(actions, PlayPrompt)
    note = h.call.record.media_note or ""
    assert NO_CODEC in note
    assert "not recorded" in note


def test_whisper_holds_the_answer_then_bridges() -> None:
    h = make_call([[target(0)]], audio=AudioPlan(whisper=WHISPER_PCM))
    h.ringing()
    actions = h.answer(0, 200, after=2)
    assert h.to_caller(actions) == []  # the caller keeps hearing ringback
    assert len(h.acks(actions)) == 1  # the answerer's 2xx is ACKed
    assert of(actions, PlayPrompt) == [PlayPrompt("outbound", WHISPER, WHISPER_PCM, 0)]
    bridged = h.feed(PromptDone("outbound", WHISPER), after=1)
    assert [r.status for r in h.to_caller(bridged)] == [200]
    assert h.call.record.disposition == Disposition.ANSWERED


def _screened(**audio: object) -> Harness:
    plan = AudioPlan(whisper=WHISPER_PCM, screen=True, screen_seconds=5.0, **audio)  # type: ignore[arg-type]
    h = make_call([[target(0)], [target(1)]], audio=plan)
    h.ringing()
    actions = h.answer(0, 200, after=1)
    assert of(actions, WatchDigits) == [WatchDigits("outbound", 101)]
    assert of(actions, HoldMedia) == [HoldMedia(True)]  # not bridged: no audio either way
    assert h.to_caller(actions) == []
    return h


def test_screening_without_digit_byes_and_hunts_on() -> None:
    h = _screened()
    assert h.feed(PromptDone("outbound", WHISPER), after=0.1) == []  # now waiting for "1"
    deadline = h.call.next_deadline()
    assert deadline is not None
    assert abs(deadline - (h.now + 5.0)) < 1e-9
    actions = h.tick(deadline)
    assert [r.request.method for r in requests(actions, "BYE")] == ["BYE"]
    assert len(requests(actions, "INVITE")) == 1  # the next destination rings
    assert h.to_caller(actions) == []
    assert [(a.status, a.reason) for a in h.call.record.attempts] == [
        (None, "no accept digit in time"),
    ]  # fmt: skip


def test_screening_digit_one_during_whisper_bridges_at_once() -> None:
    h = _screened()
    actions = h.feed(DigitReceived("outbound", "1"), after=0.1)
    assert StopPrompt("outbound") in actions
    assert HoldMedia(False) in actions
    assert [r.status for r in h.to_caller(actions)] == [200]


def test_screening_other_digits_do_not_refuse() -> None:
    h = _screened()
    h.feed(PromptDone("outbound", WHISPER))
    assert h.feed(DigitReceived("outbound", "5")) == []
    assert h.feed(DigitReceived("inbound", "1")) == []  # the caller cannot screen
    assert [r.status for r in h.to_caller(h.feed(DigitReceived("outbound", "1")))] == [200]


def test_screening_by_sip_info() -> None:
    h = _screened()
    h.feed(PromptDone("outbound", WHISPER))
    _, actions = h.callee_request(
        "INFO", body=b"Signal=1\r\nDuration=160\r\n",
        extra=["Content-Type: application/dtmf-relay"],
    )  # fmt: skip
    assert [r.status for r in h.to_caller(actions)] == [200]


def test_held_answerer_hanging_up_hunts_on() -> None:
    h = _screened()
    _, actions = h.callee_request("BYE")
    assert not requests(actions, "BYE")  # its dialog is gone: nothing to BYE
    assert len(requests(actions, "INVITE")) == 1


def test_voicemail_greeting_beep_record_and_limit() -> None:
    plan = AudioPlan(voicemail=PROMPT, voicemail_seconds=30.0, beep=bytes(320))
    h = make_call([[target(0)]], audio=plan)
    h.ringing()
    actions = h.answer(0, 486, after=1)
    assert [r.status for r in h.to_caller(actions)] == [200]
    assert of(actions, PlayPrompt)[0].name == GREETING
    assert h.call.record.disposition == Disposition.VOICEMAIL
    beep = h.feed(PromptDone("inbound", GREETING), after=1)
    assert [p.name for p in of(beep, PlayPrompt)] == [BEEP]
    assert h.feed(PromptDone("inbound", BEEP), after=0.4) == [StartRecording()]
    ended = h.tick(h.now + 30.0)
    assert [r.request.method for r in requests(ended, "BYE")] == ["BYE"]
    final = of(ended, FinishRecord)[0].record
    assert final.disposition == Disposition.VOICEMAIL
    assert final.hangup_by == "system"


def test_without_voicemail_the_caller_gets_the_failure() -> None:
    h = make_call([[target(0)]])
    h.ringing()
    assert [r.status for r in h.to_caller(h.answer(0, 486))] == [486]


def test_recording_result_and_failure_in_the_final_record() -> None:
    h, _ = _answered(AudioPlan(record=True))
    h.call.recording = RecordingResult("/var/rec/abc.wav", 12.5, 200044, "No space left on device")
    record = h.call.completed(h.call.record)
    assert (record.recording, record.recording_seconds, record.recording_bytes) == (
        "abc.wav", 12.5, 200044,
    )  # fmt: skip
    assert record.media_note == "recording failed: No space left on device"
    h.call.recording, h.call.recording_error = None, "cannot write /x/y.wav: Permission denied"
    assert h.call.completed(replace(h.call.record)).recording is None


_DONE = [("inbound", DISCLOSURE), ("outbound", DISCLOSURE), ("inbound", GREETING),
         ("outbound", "other")]  # fmt: skip


@given(st.lists(st.sampled_from(_DONE), max_size=8))
def test_property_recording_starts_once_and_only_after_both_disclosures(
    events: list[tuple[str, str]],
) -> None:
    h, _ = _answered(AudioPlan(record=True, disclosure=PROMPT))
    done: set[str] = set()
    starts = 0
    for leg, name in events:
        out = h.feed(PromptDone(leg, name))  # type: ignore[arg-type]
        if name == DISCLOSURE:
            done.add(leg)
        if StartRecording() in out:
            starts += 1
            assert done == {"inbound", "outbound"}
    assert starts <= 1


def test_caller_gone_during_the_greeting_is_a_no_answer() -> None:
    plan = AudioPlan(voicemail=PROMPT, beep=bytes(320))
    h = make_call([[target(0)]], audio=plan)
    h.ringing()
    h.answer(0, 486, after=1)
    _, actions = h.caller_request("BYE", after=0.1)
    final = of(actions, FinishRecord)[0].record
    assert final.disposition == Disposition.NO_ANSWER
    assert final.hangup_by == "caller"
