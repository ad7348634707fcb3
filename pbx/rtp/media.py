"""The media interface: what the call side asks of a media engine, whatever it is (pure types).

A media engine relays (and later plays and records) one call's audio between
its two legs: `inbound` faces the caller / trunk, `outbound` the callee. The
call side (`pbx.service.runner`, driven by the pure `pbx.call` actions
`OpenMedia`, `SetMediaRemote`, `ArmMedia`, `CloseMedia`) only ever sees
these protocols, so an engine is swappable without touching it:

- `MediaEngine.open_session(call_id)` binds both legs and returns a
  `MediaSession` (or raises `MediaError`: the call is refused with 503);
- `session.address(leg)` is the (host, port) that leg's SDP names;
- `session.set_remote(leg, host, port)` points a leg at the address its
  peer's SDP named (again on re-INVITE / hold; latching may learn better);
- `session.arm()` starts the media inactivity timeout (at answer); an
  engine reports a timed-out session by calling `engine.on_timeout(call_id)`
  once, and a session that failed in the engine (a dead worker) by calling
  `engine.on_failure(call_id, reason)` once;
- `session.snapshot()` gives the counters so far (for `/metrics`),
  `session.close()` closes at once with the counters known so far
  (idempotent), `await session.release()` closes and waits, bounded, for
  the engine's final counters (what the call record gets).

Audio (issue 13), which every engine must offer (the worker-process engine
forwards these calls to the worker that owns the session, and its
`on_done` / `on_digit` callbacks run on the daemon's loop when the worker
reports back; `pbx.rtp.control`):

- `session.play(leg, pcm, payload_type, on_done)` sends an 8 kHz mono
  16-bit prompt to `leg` as a paced RTP stream of its own SSRC (PCMU 0 or
  PCMA 8); while it plays, that leg does not get the other side's audio;
  `on_done()` is called once when the last packet went out (not when
  `stop_playing(leg)` cut it short);
- `session.start_recording(path)` writes both legs' forwarded audio from
  now on into a stereo WAV at `path` (caller left, answerer right); raises
  `MediaError` if the file cannot be created; a write error later (disk
  full) stops the recording, the call goes on, and the result says so;
- `session.hold(on)` keeps each leg's audio from the other while the
  answerer is held for whisper / screening (prompts still play);
- `session.watch_digits(leg, pt, on_digit)` reports each RFC 4733 DTMF
  digit `leg` sends (telephone-event payload type `pt`) once, for call
  screening; `on_digit=None` stops;
- `session.stop_recording()` fixes the header and returns the
  `RecordingResult` (None if nothing was recording; in the worker-process
  engine the result comes later, from the worker); `close()` stops it too
  and keeps the result for `recording_result()`, which is final once
  `await release()` returned.

Engines: `pbx.rtp.relay.MediaRelay` (built in, in the daemon's process;
`[rtp] workers = 0`) and `pbx.rtp.workers.WorkerEngine` (the same relay in
worker processes, one per core beyond the first by default).
Decisions: counters are per receiving leg (what arrived on a leg and was
forwarded to the other); an engine that cannot count a field reports 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from pbx.errors import PbxError

Leg = Literal["inbound", "outbound"]
LEGS: tuple[Leg, Leg] = ("inbound", "outbound")
OnTimeout = Callable[[str], None]
OnFailure = Callable[[str, str], None]
OnDone = Callable[[], None]
OnDigit = Callable[[str], None]


class MediaError(PbxError):
    """The engine cannot serve a call (no ports, bad remote address, engine down)."""


@dataclass(slots=True)
class Counters:
    """What one leg received and forwarded to the other, plus what it dropped."""

    packets: int = 0
    bytes: int = 0
    rtcp_packets: int = 0
    rtcp_bytes: int = 0
    dropped: int = 0


@dataclass(frozen=True, slots=True)
class MediaStats:
    """Counters of a session, keyed by receiving leg."""

    call_id: str
    inbound: Counters
    outbound: Counters


@dataclass(frozen=True, slots=True)
class RecordingResult:
    """One call's recording as written: its file, length, size, and why it stopped early."""

    path: str
    seconds: float
    bytes: int  # the file's size, header included
    error: str | None = None  # e.g. "No space left on device": the recording is cut there


class NoAudio:
    """The audio calls for an engine that cannot play or record (yet).

    `play` and `start_recording` raise `MediaError`, so the call side goes on
    without the prompt or the recording and says so in the record (a
    disclosure that cannot play means no recording either); the rest do
    nothing. Used by the rtpengine engine.
    """

    engine_name = "this media engine"
    plays_audio = False  # see `MediaEngine.plays_audio`

    def play(self, leg: Leg, pcm: bytes, payload_type: int, on_done: OnDone | None) -> None:
        raise MediaError(f"media: {self.engine_name} cannot play prompts")

    def stop_playing(self, leg: Leg) -> None:
        return None

    def start_recording(self, path: str) -> None:
        raise MediaError(f"media: {self.engine_name} cannot record calls")

    def stop_recording(self) -> RecordingResult | None:
        return None

    def recording_result(self) -> RecordingResult | None:
        return None

    def hold(self, on: bool) -> None:
        return None

    def watch_digits(self, leg: Leg, payload_type: int | None, on_digit: OnDigit | None) -> None:
        return None


class MediaSession(Protocol):
    """Both legs of one call's media in some engine."""

    @property
    def call_id(self) -> str: ...
    @property
    def closed(self) -> bool: ...
    def address(self, leg: Leg) -> tuple[str, int]: ...
    def set_remote(self, leg: Leg, host: str, port: int) -> None: ...
    def arm(self) -> None: ...
    def snapshot(self) -> MediaStats: ...
    def close(self) -> MediaStats: ...
    async def release(self) -> MediaStats:
        """Close and wait (bounded) for the engine's final counters."""
        ...

    def play(self, leg: Leg, pcm: bytes, payload_type: int, on_done: OnDone | None) -> None: ...
    def stop_playing(self, leg: Leg) -> None: ...
    def start_recording(self, path: str) -> None: ...
    def stop_recording(self) -> RecordingResult | None: ...
    def recording_result(self) -> RecordingResult | None: ...
    def hold(self, on: bool) -> None:
        """While on, neither leg gets the other's audio (the answerer is not bridged yet)."""
        ...

    def watch_digits(self, leg: Leg, payload_type: int | None, on_digit: OnDigit | None) -> None:
        """Report RFC 4733 digits `leg` sends with `payload_type` (None stops watching)."""
        ...


class MediaEngine(Protocol):
    """Every media session of the daemon.

    `advertises`: the host of `session.address(leg)` is what SDP must name
    (rtpengine's own interface); else the daemon's `[rtp] advertised_address`
    (or its guess) goes into SDP with the session's port (the built-in relay
    binds a wildcard or a private address behind NAT).
    """

    advertises: bool
    # Whether sessions can play prompts and record (`NoAudio` sessions cannot):
    # the daemon refuses to start on an engine that cannot while numbers need it.
    plays_audio: bool
    on_timeout: OnTimeout | None
    on_failure: OnFailure | None

    def __len__(self) -> int: ...
    async def open_session(self, call_id: str) -> MediaSession: ...
    def close(self) -> list[MediaStats]: ...
