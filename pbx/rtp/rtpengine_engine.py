"""The media interface on rtpengine: each call's media anchored by rtpengine over ng (I/O).

`[rtp] engine = "rtpengine"` with `[rtp] rtpengine = ["HOST:PORT", ...]`.
pbx keeps doing the SIP and the SDP of both legs; rtpengine only relays.
A session is one rtpengine call (call-id = the record id) with two tags,
`pbx-in` (the caller's side) and `pbx-out` (the callee's):

- `open_session`: `offer` from `pbx-in` then `answer` from `pbx-out`, each
  with a placeholder SDP (our own address, port 9 = discard): rtpengine
  allocates both sides' ports, and its answers name them, so
  `address(leg)` is rtpengine's (host, port) facing that leg;
- `set_remote(leg, host, port)`: the leg's real address (from its SDP) is
  given to rtpengine as a new offer/answer pair with both legs' current
  addresses (a re-INVITE in rtpengine's terms; it keeps its ports: every
  offer and answer carries the ng flag `port latching`);
- counters come from `query` (every `poll` seconds while armed, for
  `snapshot()`, /metrics and the media timeout; `poll_interval`: a sixth of
  the media timeout, 2-10 s) and the final ones from
  `delete` (`release()`); per leg: what rtpengine received from that tag;
- media timeout: pbx polls (rtpengine's own `--timeout` ends the call only
  inside rtpengine, and it does not tell pbx): no new packet either way for
  `media_timeout` seconds -> `on_timeout(call_id)` once;
- rtpengine down or the call unknown to it (rtpengine restarted) while the
  call is up -> `on_failure(call_id, "media_failed")` once.

Decisions: requests of one session run in order (one task chain per
session); the sync protocol calls (`set_remote`, `arm`, `close`) queue work
on that chain and return. A failed placeholder offer fails the open
(MediaError: the call gets 503). Only plain RTP/AVP audio is anchored
(the controller relays the first m= stream only).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import structlog

from pbx.rtp.media import (
    Counters,
    Leg,
    MediaError,
    MediaStats,
    NoAudio,
    OnFailure,
    OnTimeout,
)
from pbx.rtp.ng import B2BUA, CallStats
from pbx.rtp.rtpengine import Rtpengine, RtpengineError
from pbx.rtp.sdp import SdpError, parse_sdp

log = structlog.get_logger("pbx.media")

TAGS: dict[Leg, str] = {"inbound": "pbx-in", "outbound": "pbx-out"}
# ng "port latching": keep rtpengine's local ports when a leg's address changes. Without
# it the first real address (replacing the placeholder) moved the ports after pbx had
# already put the old ones in the SDP it sent.
ANCHOR = dataclasses.replace(B2BUA, flags=(*B2BUA.flags, "port latching"))
DISCARD = 9  # RFC 863: where media goes until a leg's real address is known
POLL_MIN, POLL_MAX = 2.0, 10.0


def poll_interval(media_timeout: float) -> float:
    """Seconds between `query` rounds: a sixth of the media timeout, within 2-10 s.

    Each query costs the daemon ~0.4 ms of CPU (bench/load.py --engine
    rtpengine: 500 calls polled every 2 s took 10 % of a core), and a media
    timeout is detected at most one interval late (60 s -> 60-70 s).
    """
    return min(POLL_MAX, max(POLL_MIN, media_timeout / 6))


def placeholder_sdp(host: str, port: int, version: int) -> bytes:
    """A minimal audio offer/answer naming (host, port), PCMU/PCMA/telephone-event."""
    family = "IP6" if ":" in host else "IP4"
    return (
        f"v=0\r\no=pbx 1 {version} IN {family} {host}\r\ns=pbx\r\nc=IN {family} {host}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


def media_of(sdp: bytes) -> tuple[str, int]:
    """rtpengine's (host, port) in the SDP it returned; MediaError when there is none."""
    try:
        endpoints = [ep for ep in parse_sdp(sdp).endpoints() if ep is not None]
    except SdpError as exc:
        raise MediaError(f"media: rtpengine returned bad SDP: {exc}") from None
    if not endpoints:
        raise MediaError("media: rtpengine returned SDP without a media address")
    return endpoints[0].host, endpoints[0].port


def stats_of(call_id: str, stats: CallStats | None) -> MediaStats:
    """Per leg, what rtpengine received from that tag (RTP in packets/bytes, RTCP apart)."""
    legs = {leg: Counters() for leg in TAGS}
    if stats is not None:
        for stream in stats.streams:
            leg = next((name for name, tag in TAGS.items() if tag == stream.tag), None)
            if leg is None:
                continue
            counters = legs[leg]
            if stream.rtcp:
                counters.rtcp_packets += stream.counters.packets
                counters.rtcp_bytes += stream.counters.bytes
            else:
                counters.packets += stream.counters.packets
                counters.bytes += stream.counters.bytes
            counters.dropped += stream.counters.errors
    return MediaStats(call_id, legs["inbound"], legs["outbound"])


class RtpengineSession(NoAudio):
    """One call's media in rtpengine; made by `RtpengineEngine.open_session`."""

    engine_name = "the rtpengine engine"

    def __init__(self, engine: RtpengineEngine, call_id: str) -> None:
        self._engine = engine
        self._id = call_id
        self._local: dict[Leg, tuple[str, int]] = {}
        self._remote: dict[Leg, tuple[str, int]] = {leg: (engine.sdp_host, DISCARD) for leg in TAGS}
        self._version = 1
        self._chain: asyncio.Task[None] | None = None
        self._stats = MediaStats(call_id, Counters(), Counters())
        self._final: MediaStats | None = None
        self.armed = False
        self.idle_since = 0.0
        self.reported = False

    @property
    def call_id(self) -> str:
        return self._id

    @property
    def closed(self) -> bool:
        return self._final is not None or self._id not in self._engine.sessions

    async def negotiate(self) -> None:
        """Offer and answer with both legs' current remotes; learn rtpengine's addresses."""
        client, version = self._engine.client, self._version
        self._version += 1
        inbound, outbound = self._remote["inbound"], self._remote["outbound"]
        try:
            out_sdp = await client.offer(
                self._id, TAGS["inbound"], placeholder_sdp(*inbound, version), ANCHOR
            )
            in_sdp = await client.answer(
                self._id, TAGS["inbound"], TAGS["outbound"],
                placeholder_sdp(*outbound, version), ANCHOR,
            )  # fmt: skip
        except RtpengineError as exc:
            raise MediaError(f"media: {exc}") from None
        self._local = {"outbound": media_of(out_sdp), "inbound": media_of(in_sdp)}

    def address(self, leg: Leg) -> tuple[str, int]:
        return self._local[leg]

    def set_remote(self, leg: Leg, host: str, port: int) -> None:
        if self._remote[leg] == (host, port):
            return
        self._remote[leg] = (host, port)
        self._then(self._renegotiate)

    async def _renegotiate(self) -> None:
        before = dict(self._local)
        try:
            await self.negotiate()
        except MediaError as exc:
            self._engine.failed(self, str(exc))
            return
        if self._local != before:  # rtpengine moved a port: the SDP we sent is stale
            log.warning("media.rtpengine_moved", record=self._id, before=before, now=self._local)

    def arm(self) -> None:
        if not self.armed:
            self.armed = True
            self.idle_since = asyncio.get_running_loop().time()

    def snapshot(self) -> MediaStats:
        return self._final or self._stats

    def update(self, stats: MediaStats, now: float) -> None:
        """Counters from a query: any new packet restarts the idle clock."""
        if _total(stats) != _total(self._stats):
            self.idle_since = now
        self._stats = stats

    def close(self) -> MediaStats:
        if self._final is None and self._id in self._engine.sessions:
            self._then(self._delete)
        return self.snapshot()

    async def release(self) -> MediaStats:
        self.close()
        if self._chain is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._chain), self._engine.release_timeout)
        return self.snapshot()

    async def _delete(self) -> None:
        if self._id not in self._engine.sessions:
            return
        self._engine.sessions.pop(self._id, None)
        try:
            stats = await self._engine.client.delete(self._id, TAGS["inbound"])
        except RtpengineError as exc:
            log.warning("media.rtpengine_delete_failed", record=self._id, error=str(exc))
            self._final = self._stats
            return
        self._final = stats_of(self._id, stats) if stats is not None else self._stats

    def _then(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` after everything already queued for this session."""
        previous = self._chain

        async def run() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await step()

        self._chain = asyncio.get_running_loop().create_task(run())


def _total(stats: MediaStats) -> int:
    return stats.inbound.packets + stats.outbound.packets


class RtpengineEngine:
    """Every call's media on the listed rtpengine instances (failover in `Rtpengine`)."""

    plays_audio = False  # prompts and recording (pbx.rtp.media)
    advertises = True  # see pbx.rtp.media.MediaEngine

    def __init__(
        self,
        client: Rtpengine,
        sdp_host: str,
        *,
        media_timeout: float,
        poll: float | None = None,
        release_timeout: float = 3.0,
    ) -> None:
        self.client = client
        self.sdp_host = sdp_host
        self.media_timeout = media_timeout
        self.poll = poll_interval(media_timeout) if poll is None else poll
        self.release_timeout = release_timeout
        self.sessions: dict[str, RtpengineSession] = {}
        self.on_timeout: OnTimeout | None = None
        self.on_failure: OnFailure | None = None
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, instances: Sequence[str], sdp_host: str, *, media_timeout: float
    ) -> RtpengineEngine:
        """Bind the ng socket and check one instance answers (MediaError if none does)."""
        try:
            client = await Rtpengine.open(list(instances))
            await client.ping()
        except RtpengineError as exc:
            raise MediaError(f"media: no rtpengine answers ({exc})") from None
        return cls(client, sdp_host, media_timeout=media_timeout)

    def __len__(self) -> int:
        return len(self.sessions)

    async def open_session(self, call_id: str) -> RtpengineSession:
        if call_id in self.sessions:
            raise MediaError(f"media: call {call_id} already has a session")
        session = RtpengineSession(self, call_id)
        self.sessions[call_id] = session
        try:
            await session.negotiate()
        except MediaError:
            self.sessions.pop(call_id, None)
            with contextlib.suppress(RtpengineError):
                await self.client.delete(call_id, TAGS["inbound"])
            raise
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())
        return session

    def failed(self, session: RtpengineSession, reason: str) -> None:
        """The session is gone in rtpengine: tell the call once."""
        if session.reported or session.call_id not in self.sessions:
            return
        session.reported = True
        log.warning("media.rtpengine_lost", record=session.call_id, error=reason)
        if self.on_failure is not None:
            self.on_failure(session.call_id, "media_failed")

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        while self.sessions:
            await asyncio.sleep(self.poll)
            for session in [s for s in self.sessions.values() if s.armed]:
                await self._check(session, loop.time())

    async def _check(self, session: RtpengineSession, now: float) -> None:
        try:
            stats = await self.client.query(session.call_id, TAGS["inbound"])
        except RtpengineError as exc:
            if session.call_id in self.sessions:
                self.failed(session, str(exc))
            return
        session.update(stats_of(session.call_id, stats), now)
        if now - session.idle_since >= self.media_timeout and not session.reported:
            session.reported = True
            if self.on_timeout is not None:
                self.on_timeout(session.call_id)

    def close(self) -> list[MediaStats]:
        """Forget every session (the daemon is stopping; rtpengine times them out)."""
        if self._poller is not None:
            self._poller.cancel()
        stats = [s.snapshot() for s in self.sessions.values()]
        self.sessions.clear()
        self.client.close()
        return stats


def _conforms(engine: RtpengineEngine, session: RtpengineSession) -> tuple[object, object]:
    """Never called: makes mypy prove rtpengine implements the media interface."""
    from pbx.rtp.media import MediaEngine, MediaSession

    checked: tuple[MediaEngine, MediaSession] = (engine, session)
    return checked
