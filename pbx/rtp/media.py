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


class MediaEngine(Protocol):
    """Every media session of the daemon.

    `advertises`: the host of `session.address(leg)` is what SDP must name
    (rtpengine's own interface); else the daemon's `[rtp] advertised_address`
    (or its guess) goes into SDP with the session's port (the built-in relay
    binds a wildcard or a private address behind NAT).
    """

    advertises: bool
    on_timeout: OnTimeout | None
    on_failure: OnFailure | None

    def __len__(self) -> int: ...
    async def open_session(self, call_id: str) -> MediaSession: ...
    def close(self) -> list[MediaStats]: ...
