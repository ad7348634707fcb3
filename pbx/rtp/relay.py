"""Per-call RTP/RTCP relay: symmetric latching, counters, media timeout (asyncio I/O).

The built-in engine of the media interface (`pbx.rtp.media`), in the
daemon's own process.

`MediaRelay` owns the port allocator and every open `MediaSession`. A session
has two legs, `inbound` (faces the caller / trunk) and `outbound` (faces the
callee), each with an RTP socket on an even port and an RTCP socket on the
next odd one (RFC 3550 §11). A datagram received on leg A's RTP socket is
sent, untouched, from leg B's RTP socket to leg B's remote; RTCP likewise.
Payloads (audio, RFC 4733 DTMF, SRTP) are never parsed.

Hot path (DESIGN.md "relay hot path"): one raw `DatagramProtocol` per socket;
`datagram_received` checks the version bits, the latch, then `sendto` on the
peer socket and bumps counters. No task, future or parse per packet.

Decisions where the specs are silent:
- Latching (RFC 7362 §4, symmetric RTP per RFC 4961): until a leg has
  received a packet, its traffic goes to the address from its SDP
  (`set_remote`). The first packet on a leg's socket latches its source, and
  from then on that leg's traffic goes there. Packets from any other source
  are dropped (anti-hijack) unless (a) they come from the address the SDP
  named, which always wins, or (b) the latched source has been silent for
  `relatch_after` seconds (default 2 s for RTP, 10 s for RTCP whose reports
  are ~5 s apart, RFC 3550 §6.2). An SSRC change alone does not re-latch:
  the SSRC is a field any attacker sets. `set_remote` with a different
  address forgets the latch (a re-INVITE moved the media).
- A datagram whose first two bits are not RTP version 2 (RFC 3550 §5.1),
  e.g. STUN or junk, is dropped before latching and counted as dropped.
- Counters are kept per receiving leg: what arrived on that leg and was
  forwarded to the other. RTCP muxed onto the RTP port (RFC 5761) counts as
  RTCP. Packets not forwarded (no remote yet, not latched, junk, send
  buffer full) count as `dropped`.
- Bounded queues: SO_RCVBUF is 64 KiB so late audio is dropped by the kernel
  rather than delayed; reads are capped at 2048 bytes on the stock loop
  (`max_size`, which otherwise mmaps 256 KiB per read); a send buffer over
  64 KiB pauses the socket and packets for it are dropped.
- Media timeout: a session is `armed` by its first relayed packet or by
  `arm()` (at answer). An armed session with no packet either way for
  `media_timeout` seconds gets one `on_timeout(call_id)` call from the
  manager's periodic check; the owner then ends the call and `close()`s it.
- Audio (issue 13). Recording: `start_recording(path)` puts a
  `pbx.rtp.recording.RecordingFile` on the session; each RTP packet a leg
  accepts (latched source) is also fed to it, forwarded or not (voicemail
  has nobody to forward to); one attribute test per packet when not
  recording, nothing logged; and the periodic check writes silence as time
  passes. Playing: `play(leg, pcm, pt, on_done)` sends a
  `pbx.rtp.stream.PromptStream` (own random SSRC, sequence and timestamp;
  a second prompt on the leg continues the first one's) from the leg's RTP
  socket to its remote, one `loop.call_at` per due packet (no busy loop, no
  task); while it plays the leg's peer endpoint does not forward the other
  side's audio to it (`muted`). Prompt packets are not counted as relayed.
- Binding: a pair someone else holds is released into quarantine and the
  next pair tried, up to `BIND_ATTEMPTS` pairs; then `MediaError`.
- No recvmmsg/sendmmsg: each leg's socket holds about one datagram per
  wake-up at 50 packets/s, so batching per socket saves little; the
  reasoning is in `pbx.rtp.worker`'s docstring. Cores are used by running
  this relay in worker processes instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import cast

from pbx.rtp.dtmf import DtmfDetector, DtmfError
from pbx.rtp.media import (
    LEGS,
    Counters,
    Leg,
    MediaEngine,
    MediaError,
    MediaStats,
    OnDigit,
    OnDone,
    OnFailure,
    OnTimeout,
    RecordingResult,
)
from pbx.rtp.media import MediaSession as MediaSessionApi
from pbx.rtp.packet import is_rtcp
from pbx.rtp.payload import split
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.recording import RecordingFile
from pbx.rtp.stream import PromptStream, encode_prompt

Address = tuple[str, int] | tuple[str, int, int, int]

RCVBUF = 64 * 1024
MAX_DATAGRAM = 2048  # an RTP packet over the Internet fits one 1500-byte MTU
WRITE_HIGH_WATER = 64 * 1024
RELATCH_AFTER = 2.0
RTCP_RELATCH_AFTER = 10.0
BIND_ATTEMPTS = 16
RTP_VERSION_BITS = 0x80  # RFC 3550 §5.1: V=2 in the two top bits


class Latch:
    """Where one socket's leg sends: the SDP address until a source latches."""

    __slots__ = ("expected", "last_rx", "latched", "relatch_after", "relatches")

    def __init__(self, relatch_after: float) -> None:
        self.expected: Address | None = None
        self.latched: Address | None = None
        self.last_rx = 0.0
        self.relatch_after = relatch_after
        self.relatches = 0

    @property
    def target(self) -> Address | None:
        """Where this leg's traffic goes now."""
        return self.latched if self.latched is not None else self.expected

    def expect(self, address: Address) -> None:
        """The SDP named `address`; a change forgets the latch (media moved)."""
        if address != self.expected:
            self.expected = address
            self.latched = None

    def accept(self, source: Address, now: float) -> bool:
        """True if a packet from `source` is taken (latching it if need be)."""
        latched = self.latched
        if (
            source == latched
            or latched is None
            or source == self.expected
            or now - self.last_rx >= self.relatch_after
        ):
            if source != latched:
                self.latched = source
                self.relatches += 1
            self.last_rx = now
            return True
        return False


class _Endpoint(asyncio.DatagramProtocol):
    """One socket of one leg; forwards to the same-kind socket of the other leg."""

    # slots: every attribute below is read per packet (asyncio's protocols have none)
    __slots__ = ("counters", "digits", "held", "latch", "leg", "muted", "paused", "peer",
                 "prompting", "rtcp", "session", "transport")  # fmt: skip

    def __init__(self, session: MediaSession, leg: Leg, rtcp: bool, relatch_after: float) -> None:
        self.session = session
        self.leg = leg
        # The other side's audio is held back from this leg while `muted`: a prompt plays
        # to it (`prompting`) or the call holds it (`held`, answerer not yet bridged).
        self.muted = False
        self.prompting = False
        self.held = False
        self.digits: _DigitWatch | None = None  # call screening: RFC 4733 from this leg
        self.counters = session.counters[leg]
        self.latch = Latch(relatch_after)
        self.rtcp = rtcp
        self.peer: _Endpoint | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDPTransport is not a registered asyncio.DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        counters = self.counters
        if len(data) < 4 or data[0] & 0xC0 != RTP_VERSION_BITS:
            counters.dropped += 1
            return
        session = self.session
        now = session.loop.time()
        peer = self.peer
        if not self.latch.accept(addr, now) or peer is None:
            counters.dropped += 1
            return
        session.last_activity = now
        session.armed = True
        recording = session.recording
        if recording is not None and not self.rtcp:  # also when not forwarded (voicemail)
            recording.feed(self.leg, data, now)
        if self.digits is not None:
            self.digits.feed(data)
        latch = peer.latch
        target = latch.latched if latch.latched is not None else latch.expected
        transport = peer.transport
        if target is None or transport is None or peer.paused or peer.muted:
            counters.dropped += 1
            return
        transport.sendto(data, target)
        if self.rtcp or is_rtcp(data):
            counters.rtcp_packets += 1
            counters.rtcp_bytes += len(data)
        else:
            counters.packets += 1
            counters.bytes += len(data)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable from a peer that went away: the media timeout handles it."""

    def set_mute(self, *, prompting: bool | None = None, held: bool | None = None) -> None:
        if prompting is not None:
            self.prompting = prompting
        if held is not None:
            self.held = held
        self.muted = self.prompting or self.held

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False


class _DigitWatch:
    """RFC 4733 digits of one leg, each reported once (`pbx.rtp.dtmf.DtmfDetector`)."""

    __slots__ = ("detector", "on_digit", "payload_type")

    def __init__(self, payload_type: int, on_digit: OnDigit) -> None:
        self.payload_type = payload_type
        self.on_digit = on_digit
        self.detector = DtmfDetector()

    def feed(self, data: bytes) -> None:
        if len(data) < 2 or data[1] & 0x7F != self.payload_type:
            return
        packet = split(data)
        if packet is None:
            return
        try:
            digit = self.detector.feed(
                packet.header.timestamp, packet.payload, ssrc=packet.header.ssrc
            )
        except DtmfError:
            return
        if digit is not None:
            self.on_digit(digit)


class MediaSession:
    """Both legs of one call's media; made by `MediaRelay.open_session`."""

    def __init__(
        self,
        relay: MediaRelay,
        call_id: str,
        ports: dict[Leg, int],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.call_id = call_id
        self.host = relay.host
        self.ports = ports
        self.loop = loop
        self.counters: dict[Leg, Counters] = {leg: Counters() for leg in LEGS}
        self.last_activity = loop.time()
        self.armed = False
        self.timed_out = False
        self._relay = relay
        self._family = relay.family
        self._endpoints: dict[tuple[Leg, bool], _Endpoint] = {}
        self._stats: MediaStats | None = None
        self.recording: RecordingFile | None = None
        self._recorded: RecordingResult | None = None
        self._streams: dict[Leg, PromptStream] = {}  # the last prompt per leg (SSRC continuity)
        self._playing: dict[Leg, tuple[asyncio.TimerHandle, OnDone | None]] = {}

    def port(self, leg: Leg) -> int:
        """Our RTP port on `leg` (RTCP is this + 1): what that leg's SDP names."""
        return self.ports[leg]

    def address(self, leg: Leg) -> tuple[str, int]:
        """(bound host, RTP port) of `leg`; the daemon may advertise another host."""
        return self.host, self.ports[leg]

    def snapshot(self) -> MediaStats:
        """The counters so far."""
        if self._stats is not None:
            return self._stats
        return MediaStats(
            self.call_id, replace(self.counters["inbound"]), replace(self.counters["outbound"])
        )

    def set_remote(
        self,
        leg: Leg,
        host: str,
        port: int,
        *,
        rtcp_host: str | None = None,
        rtcp_port: int | None = None,
    ) -> None:
        """Where `leg`'s media goes per its SDP, until latching learns better."""
        rtp = self._address(host, port)
        rtcp = self._address(rtcp_host or host, rtcp_port if rtcp_port is not None else port + 1)
        self._endpoints[(leg, False)].latch.expect(rtp)
        self._endpoints[(leg, True)].latch.expect(rtcp)

    def target(self, leg: Leg, *, rtcp: bool = False) -> Address | None:
        """Where `leg`'s RTP (or RTCP) is sent now: latched source, else SDP address."""
        return self._endpoints[(leg, rtcp)].latch.target

    def arm(self) -> None:
        """Start the media timeout now (at answer) even if no packet came yet."""
        self.armed = True
        self.last_activity = max(self.last_activity, self.loop.time())

    def idle_for(self, now: float) -> float:
        """Seconds since the last relayed packet (or since open / arm)."""
        return max(0.0, now - self.last_activity)

    @property
    def closed(self) -> bool:
        return self._stats is not None

    def close(self) -> MediaStats:
        """Close the sockets, quarantine the ports, return the final counters."""
        if self._stats is not None:
            return self._stats
        for leg in list(self._playing):
            self.stop_playing(leg)
        self.stop_recording()
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._stats = self.snapshot()
        self._relay._forget(self)
        return self._stats

    async def release(self) -> MediaStats:
        """In-process the counters are final at once."""
        return self.close()

    # -- audio (issue 13) -------------------------------------------------------------

    def start_recording(self, path: str) -> None:
        """Record both legs' forwarded audio into a stereo WAV at `path` (MediaError if not)."""
        if self.closed:
            raise MediaError(f"media: call {self.call_id} is closed")
        if self.recording is None:
            self.recording = RecordingFile(path, self.loop.time())

    def stop_recording(self) -> RecordingResult | None:
        recording, self.recording = self.recording, None
        if recording is not None:
            self._recorded = recording.close()
        return self._recorded

    def recording_result(self) -> RecordingResult | None:
        return self._recorded if self.recording is None else self.recording.result()

    def abandon_recording(self) -> None:
        """The daemon died (media worker): flush the file, leave its header to the sweep."""
        if self.recording is not None:
            self.recording.abandon()

    def advance_recording(self, now: float) -> None:
        if self.recording is not None:
            self.recording.advance(now)

    def play(self, leg: Leg, pcm: bytes, payload_type: int, on_done: OnDone | None) -> None:
        """Send `pcm` to `leg` as paced RTP; `on_done()` once the last packet went out."""
        if self.closed:
            raise MediaError(f"media: call {self.call_id} is closed")
        try:
            payload = encode_prompt(pcm, payload_type)
        except ValueError as exc:
            raise MediaError(f"media: {exc}") from None
        self.play_encoded(leg, payload, payload_type, on_done)

    def play_encoded(
        self, leg: Leg, payload: bytes, payload_type: int, on_done: OnDone | None
    ) -> None:
        """`play` of a payload already encoded (`pbx.rtp.stream.encode_prompt`)."""
        if self.closed:
            raise MediaError(f"media: call {self.call_id} is closed")
        self.stop_playing(leg)
        now = self.loop.time()
        previous = self._streams.get(leg)
        if previous is not None and previous.payload_type == payload_type:
            stream = PromptStream.after(previous, b"", now, payload=payload)
        else:
            stream = PromptStream.encoded(
                payload, payload_type, secrets.randbits(32), secrets.randbits(16),
                secrets.randbits(32), now,
            )  # fmt: skip
        self._streams[leg] = stream
        self._endpoints[(leg, False)].set_mute(prompting=True)
        self._schedule(leg, stream, now, on_done)

    def hold(self, on: bool) -> None:
        """While on, neither leg gets the other's audio (prompts still play)."""
        for leg in LEGS:
            self._endpoints[(leg, False)].set_mute(held=on)
            self._endpoints[(leg, True)].set_mute(held=on)

    def watch_digits(self, leg: Leg, payload_type: int | None, on_digit: OnDigit | None) -> None:
        endpoint = self._endpoints[(leg, False)]
        if payload_type is None or on_digit is None:
            endpoint.digits = None
        else:
            endpoint.digits = _DigitWatch(payload_type, on_digit)

    def playing(self, leg: Leg) -> bool:
        return leg in self._playing

    def stop_playing(self, leg: Leg) -> None:
        """Cut a prompt short (no `on_done`); the leg hears the other side again."""
        entry = self._playing.pop(leg, None)
        if entry is not None:
            entry[0].cancel()
        endpoint = self._endpoints.get((leg, False))
        if endpoint is not None:
            endpoint.set_mute(prompting=False)

    def _schedule(self, leg: Leg, stream: PromptStream, now: float, on_done: OnDone | None) -> None:
        deadline = stream.next_deadline()
        if deadline is None:
            self._played(leg, on_done)
            return
        handle = self.loop.call_at(max(deadline, now), self._send_due, leg, stream, on_done)
        self._playing[leg] = (handle, on_done)

    def _send_due(self, leg: Leg, stream: PromptStream, on_done: OnDone | None) -> None:
        endpoint = self._endpoints[(leg, False)]
        now = self.loop.time()
        packets = stream.next_packets(now)
        target, transport = endpoint.latch.target, endpoint.transport
        if target is not None and transport is not None and not endpoint.paused:
            for packet in packets:
                transport.sendto(packet, target)
        self._schedule(leg, stream, now, on_done)

    def _played(self, leg: Leg, on_done: OnDone | None) -> None:
        self._playing.pop(leg, None)
        self._endpoints[(leg, False)].set_mute(prompting=False)
        if on_done is not None:
            on_done()

    def _address(self, host: str, port: int) -> Address:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise MediaError(f"media: remote {host!r} is not an IP address") from None
        if not 0 < port <= 65535:
            raise MediaError(f"media: remote port {port} out of range")
        if ip.version == 6 and self._family == socket.AF_INET6:
            return (ip.compressed, port, 0, 0)
        if ip.version == 4 and self._family == socket.AF_INET:
            return (ip.compressed, port)
        raise MediaError(f"media: remote {host} is not reachable from relay host {self.host}")

    async def _start(
        self, sockets: dict[tuple[Leg, bool], socket.socket], relay: MediaRelay
    ) -> None:
        for (leg, rtcp), sock in sockets.items():
            after = relay.rtcp_relatch_after if rtcp else relay.relatch_after
            endpoint = _Endpoint(self, leg, rtcp, after)
            self._endpoints[(leg, rtcp)] = endpoint
            transport, _ = await self.loop.create_datagram_endpoint(_factory(endpoint), sock=sock)
            _tune(transport)
        for (leg, rtcp), endpoint in self._endpoints.items():
            other: Leg = "outbound" if leg == "inbound" else "inbound"
            endpoint.peer = self._endpoints[(other, rtcp)]


def _tune(transport: asyncio.BaseTransport) -> None:
    """Cap reads and bound the send buffer, where the loop's transport allows it."""
    # The stock selector transport reads into a fresh `max_size` (256 KiB)
    # buffer per datagram; 3.11 names it `max_size`, later ones `_max_size`.
    # uvloop's transports have neither (and need neither).
    for name in ("max_size", "_max_size"):
        current = getattr(transport, name, None)
        if isinstance(current, int) and current > MAX_DATAGRAM:
            with contextlib.suppress(AttributeError):
                setattr(transport, name, MAX_DATAGRAM)
    set_limits = getattr(transport, "set_write_buffer_limits", None)
    if set_limits is not None:
        with contextlib.suppress(NotImplementedError):
            set_limits(high=WRITE_HIGH_WATER)


def _factory(endpoint: _Endpoint) -> Callable[[], _Endpoint]:
    return lambda: endpoint


def _bind(family: socket.AddressFamily, host: str, port: int, rcvbuf: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class MediaRelay:
    """All media sessions of the daemon, their ports, and the media-timeout check."""

    plays_audio = True  # prompts and recording (pbx.rtp.media)
    advertises = False  # see pbx.rtp.media.MediaEngine

    def __init__(
        self,
        allocator: PortPairAllocator,
        host: str,
        *,
        media_timeout: float = 60.0,
        on_timeout: OnTimeout | None = None,
        relatch_after: float = RELATCH_AFTER,
        rtcp_relatch_after: float = RTCP_RELATCH_AFTER,
        check_interval: float | None = None,
        rcvbuf: int = RCVBUF,
    ) -> None:
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise MediaError(f"media: relay host {host!r} is not an IP address") from None
        self.allocator = allocator
        self.host = host
        self.family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        self.media_timeout = media_timeout
        self.on_timeout = on_timeout
        self.on_failure: OnFailure | None = None  # in-process: a failure is the daemon's own
        self.relatch_after = relatch_after
        self.rtcp_relatch_after = rtcp_relatch_after
        self.check_interval = check_interval or min(max(media_timeout / 4, 0.05), 1.0)
        self.rcvbuf = rcvbuf
        self._sessions: dict[str, MediaSession] = {}
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._sessions)

    def session(self, call_id: str) -> MediaSession | None:
        return self._sessions.get(call_id)

    async def open_session(self, call_id: str) -> MediaSession:
        """Bind a port pair per leg and start relaying; raises `MediaError`."""
        if call_id in self._sessions:
            raise MediaError(f"media: call {call_id} already has a session")
        loop = asyncio.get_running_loop()
        sockets: dict[tuple[Leg, bool], socket.socket] = {}
        ports: dict[Leg, int] = {}
        try:
            for leg in LEGS:
                ports[leg], sockets[(leg, False)], sockets[(leg, True)] = self._bind_pair(
                    loop.time()
                )
        except MediaError:
            self._undo(sockets, ports, loop.time())
            raise
        session = MediaSession(self, call_id, ports, loop)
        self._sessions[call_id] = session
        try:
            await session._start(sockets, self)
        except BaseException:
            session.close()
            for sock in sockets.values():
                sock.close()
            raise
        self._ensure_timer(loop)
        return session

    def check_timeouts(self, now: float) -> list[str]:
        """Call `on_timeout` once for each armed session idle >= media_timeout."""
        expired = [
            s
            for s in self._sessions.values()
            if s.armed and not s.timed_out and s.idle_for(now) >= self.media_timeout
        ]
        for session in expired:
            session.timed_out = True
            if self.on_timeout is not None:
                self.on_timeout(session.call_id)
        return [s.call_id for s in expired]

    def close(self) -> list[MediaStats]:
        """Close every session (daemon drain); returns their final counters."""
        stats = [s.close() for s in list(self._sessions.values())]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return stats

    def _bind_pair(self, now: float) -> tuple[int, socket.socket, socket.socket]:
        alloc = self.allocator
        for _ in range(BIND_ATTEMPTS):
            port = alloc.allocate(now)
            if port is None:
                raise MediaError(f"media: no free RTP port pair in {alloc.low}-{alloc.high}")
            try:
                rtp = _bind(self.family, self.host, port, self.rcvbuf)
            except OSError:
                alloc.release(port, now)
                continue
            try:
                rtcp = _bind(self.family, self.host, port + 1, self.rcvbuf)
            except OSError:
                rtp.close()
                alloc.release(port, now)
                continue
            return port, rtp, rtcp
        raise MediaError(
            f"media: could not bind {BIND_ATTEMPTS} port pairs in {alloc.low}-{alloc.high} "
            f"on {self.host} (in use by another program?)"
        )

    def _undo(
        self, sockets: dict[tuple[Leg, bool], socket.socket], ports: dict[Leg, int], now: float
    ) -> None:
        for sock in sockets.values():
            sock.close()
        for port in ports.values():
            self.allocator.release(port, now)

    def _forget(self, session: MediaSession) -> None:
        if self._sessions.get(session.call_id) is session:
            del self._sessions[session.call_id]
        now = session.loop.time()
        for port in session.ports.values():
            if self.allocator.is_in_use(port):
                self.allocator.release(port, now)

    def _ensure_timer(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None:
            self._timer = loop.call_later(self.check_interval, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        try:
            now = loop.time()
            for session in self._sessions.values():
                session.advance_recording(now)
            self.check_timeouts(now)
        finally:  # a failing on_timeout must not stop the checks of other calls
            if self._sessions:
                self._ensure_timer(loop)


def _conforms(relay: MediaRelay, session: MediaSession) -> tuple[MediaEngine, MediaSessionApi]:
    """Never called: makes mypy prove the relay implements the media interface."""
    return relay, session
