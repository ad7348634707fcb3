"""Values the call controller works with: setup, legs, events in, actions out (pure).

Inputs to `pbx.call.controller.Call` are the transaction layer's events plus the media
events here (past tense); outputs are the actions here (imperative), which
`pbx.service.runner` executes in order (STYLE.md §3.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pbx.records import CallRecord
from pbx.rtp.sdp import OriginState, SessionDescription
from pbx.sip.auth import AuthAttempt, Credentials
from pbx.sip.dialog import Dialog
from pbx.sip.message import Message, Request, Response
from pbx.sip.peer import Peer
from pbx.sip.transaction import TransactionKey

Leg = Literal["inbound", "outbound"]
BranchState = Literal["calling", "answered", "failed", "cancelled", "abandoned", "late"]


# -- setup ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """One place to ring: a configured destination resolved to a Request-URI and a peer."""

    destination: str  # the destination's name, for the record
    uri: str  # Request-URI of the outbound INVITE
    dest: Peer  # where the INVITE goes (trunk proxy or the sip: host)
    credentials: Credentials | None = None
    trunk: str | None = None


@dataclass(frozen=True, slots=True)
class LocalAddress:
    """Our own address as peers must see it, per transport (Via sent-by, Contact)."""

    host: str
    port: int


@dataclass(frozen=True, slots=True)
class AudioPlan:
    """What the number asks of the call's audio (issue 13); prompts as 8 kHz mono PCM."""

    record: bool = False
    disclosure: bytes | None = None  # to both parties after answer; recording starts after it
    whisper: bytes | None = None  # to the answerer only, before the caller is connected
    screen: bool = False
    screen_seconds: float = 5.0
    voicemail: bytes | None = None  # greeting when every destination failed
    voicemail_seconds: float = 120.0
    beep: bytes | None = None  # after the greeting (the runner's tone)


@dataclass(frozen=True, slots=True)
class CallSetup:
    """Everything decided before the call starts (admission, lookup, plan)."""

    record: CallRecord  # the ringing row, attribution filled in by the runner
    caller: str
    steps: tuple[tuple[Target, ...], ...]
    ring_timeout: float
    started: float  # monotonic
    started_wall: float  # epoch seconds, UTC
    local: dict[str, LocalAddress]  # transport -> our address
    caller_id_user: str | None = None  # From user on outbound legs; None = caller's
    max_forwards: int = 70
    audio: AudioPlan = AudioPlan()


@dataclass(slots=True)
class InboundLeg:
    """The caller's side: the trunk's INVITE and our answers to it."""

    invite: Request
    key: TransactionKey
    source: Peer
    to_tag: str
    origin: OriginState
    offer: SessionDescription | None = None
    ringing_sent: bool = False
    early_media: bool = False
    answered: bool = False  # a final response went to the caller
    dialog: Dialog | None = None


@dataclass(slots=True)
class Branch:
    """One outbound INVITE (a fork) and, once answered, its dialog."""

    target: Target
    invite: Request
    key: TransactionKey
    origin: OriginState
    state: BranchState = "calling"
    provisional: bool = False
    deadline: float | None = None
    status: int | None = None
    started_at: str | None = None
    attempt_recorded: bool = False
    auth: AuthAttempt | None = None
    dialog: Dialog | None = None

    @property
    def call_id(self) -> str:
        return self.invite.call_id


@dataclass(slots=True)
class Pending:
    """A request we sent inside a dialog and still wait on."""

    kind: Literal["bye", "relay"]
    leg: Leg  # for "relay": the leg the original request came from
    branch: Branch | None = None
    server_key: TransactionKey | None = None
    request: Request | None = None


# -- media events (inputs) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MediaOpened:
    """The relay session is bound: our (address, RTP port) facing each leg."""

    inbound: tuple[str, int]
    outbound: tuple[str, int]


@dataclass(frozen=True, slots=True)
class MediaFailed:
    reason: str


@dataclass(frozen=True, slots=True)
class MediaTimedOut:
    """No RTP either way for the configured media timeout."""


@dataclass(frozen=True, slots=True)
class MediaLost:
    """The engine lost the call's session (e.g. its worker process died)."""

    reason: str = "media_failed"


@dataclass(frozen=True, slots=True)
class PromptDone:
    """The engine sent the last packet of the prompt `name` to `leg`."""

    leg: Leg
    name: str


@dataclass(frozen=True, slots=True)
class DigitReceived:
    """A DTMF digit from `leg` (RFC 4733 in its RTP, or SIP INFO in its dialog)."""

    leg: Leg
    digit: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """The daemon's drain time is over: end the call now."""


# -- actions (outputs) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendResponse:
    key: TransactionKey
    response: Response


@dataclass(frozen=True, slots=True)
class SendRequest:
    """Open a client transaction; the runner maps the request's Call-ID to this call."""

    request: Request
    dest: Peer


@dataclass(frozen=True, slots=True)
class SendStateless:
    """A message outside any transaction (ACK for a 2xx)."""

    message: Message
    dest: Peer


@dataclass(frozen=True, slots=True)
class OpenMedia:
    pass


@dataclass(frozen=True, slots=True, init=False)
class SetMediaRemote:
    leg: Leg
    host: str
    port: int

    # Written out so that mypyc compiles it (see `pbx.sip.uri.SipUri.__init__`).
    def __init__(self, leg: Leg, host: str, port: int) -> None:
        object.__setattr__(self, "leg", leg)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "port", port)


@dataclass(frozen=True, slots=True)
class ArmMedia:
    """The call is answered: start the media inactivity timeout."""


@dataclass(frozen=True, slots=True)
class CloseMedia:
    pass


@dataclass(frozen=True, slots=True)
class PlayPrompt:
    """Play `pcm` (8 kHz mono 16-bit) to `leg` as `payload_type`; `PromptDone` follows."""

    leg: Leg
    name: str
    pcm: bytes
    payload_type: int


@dataclass(frozen=True, slots=True)
class StopPrompt:
    leg: Leg


@dataclass(frozen=True, slots=True)
class StartRecording:
    """Record both legs from now on into `<[recording] dir>/<record id>.wav`."""


@dataclass(frozen=True, slots=True)
class HoldMedia:
    """`on`: neither leg gets the other's audio (answerer held for whisper / screening)."""

    on: bool


@dataclass(frozen=True, slots=True)
class WatchDigits:
    """Report DTMF from `leg`'s RTP (RFC 4733 payload type `payload_type`) as DigitReceived."""

    leg: Leg
    payload_type: int | None


@dataclass(frozen=True, slots=True)
class WriteRecord:
    record: CallRecord


@dataclass(frozen=True, slots=True)
class FinishRecord:
    """The final row; the runner merges media counters and writes it with the outbox."""

    record: CallRecord


@dataclass(frozen=True, slots=True)
class Finished:
    """Nothing is left to wait for: forget the call."""


Action = (
    SendResponse
    | SendRequest
    | SendStateless
    | OpenMedia
    | SetMediaRemote
    | ArmMedia
    | CloseMedia
    | PlayPrompt
    | StopPrompt
    | StartRecording
    | WatchDigits
    | HoldMedia
    | WriteRecord
    | FinishRecord
    | Finished
)
