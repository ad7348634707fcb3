"""The state of one call: both legs, the branches, the record (pure data).

`CallState` is the one owner of everything about a call while it runs: the
legs and branches (`pbx.call.model`), the route plan position, the outstanding
requests, the media session the engine opened (`relay`) and its counters,
the record and what of it the shell has written. The functions of
`branches`, `endings`, `routing` and `in_dialog` change it; `controller.Call`
is this state plus the event dispatch. Nothing else keeps per-call state:
the service's runner only moves events in and actions out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import PurePath
from typing import Literal

from pbx.call.legs import LegBuilder
from pbx.call.model import (
    Action,
    Branch,
    CallSetup,
    Finished,
    InboundLeg,
    MediaOpened,
    Pending,
    SendStateless,
)
from pbx.records import CallRecord, iso_utc
from pbx.rtp.media import Leg, MediaSession, MediaStats, RecordingResult
from pbx.rules.screening import Screening
from pbx.sip.dialog import Dialog
from pbx.sip.message import Response
from pbx.sip.transaction import TransactionKey

Phase = Literal["new", "media", "routing", "answered", "ended"]


@dataclass
class CallState:
    """Everything about one call; see the module docstring."""

    setup: CallSetup
    inbound: InboundLeg
    builder: LegBuilder
    state: Phase = "new"
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
    # What the shell did for this call, kept here so nothing else holds call state:
    media: MediaSession | None = None  # the engine's session (an opaque handle to this layer)
    media_stats: MediaStats | None = None  # its final counters once closed
    written: CallRecord | None = None  # the record as last stored
    # Audio (pbx.call.audio): prompts playing, their codec, the voicemail limit; the
    # runner puts the recording's result (or why it could not start) here.
    playing: dict[Leg, str] = field(default_factory=dict)  # leg -> prompt name
    held: Response | None = None  # the answerer's 2xx while the whisper plays
    screening: Screening | None = None  # press-1 screening of the held answerer
    codec: int | None = None
    voicemail_deadline: float | None = None
    voicemail_recording: bool = False  # the caller got past greeting and beep
    recording: RecordingResult | None = None
    recording_error: str | None = None

    def __post_init__(self) -> None:
        self.record = self.setup.record

    @property
    def call_ids(self) -> set[str]:
        """Every Call-ID this call answers to (inbound leg and each branch)."""
        return {self.inbound.invite.call_id, *(b.call_id for b in self.branches)}

    @property
    def finished(self) -> bool:
        return self.state == "ended" and not self.pending

    def next_deadline(self) -> float | None:
        deadlines = [b.deadline for b in self.branches if b.deadline is not None]
        if self.voicemail_deadline is not None and self.state == "answered":
            deadlines.append(self.voicemail_deadline)
        screening = self.screening.next_deadline() if self.screening is not None else None
        if screening is not None:
            deadlines.append(screening)
        return min(deadlines) if deadlines else None

    def wall(self, now: float) -> str:
        """The record's UTC stamp for monotonic `now` (the shell gave the wall start)."""
        return iso_utc(self.setup.started_wall + (now - self.setup.started))

    def maybe_finished(self) -> list[Action]:
        """`Finished` once the call has ended and no request of ours is outstanding."""
        return [Finished()] if self.finished else []

    def completed(self, record: CallRecord) -> CallRecord:
        """The final `record` with the media counters of the closed session."""
        record = self._with_recording(record)
        if self.media_stats is None:
            return record
        i, o = self.media_stats.inbound, self.media_stats.outbound
        return replace(
            record,
            packets_in_out=i.packets,
            packets_out_in=o.packets,
            bytes_in_out=i.bytes,
            bytes_out_in=o.bytes,
        )

    def _with_recording(self, record: CallRecord) -> CallRecord:
        """The recording's file name, length and size; a failure as the media note."""
        failure = self.recording_error
        result = self.recording
        if result is not None:
            record = replace(
                record,
                recording=PurePath(result.path).name,
                recording_seconds=result.seconds,
                recording_bytes=result.bytes,
            )
            failure = failure or result.error
        if failure is None:
            return record
        text = f"recording failed: {failure}"
        joined = text if record.media_note is None else f"{record.media_note}; {text}"
        return replace(record, media_note=joined)
