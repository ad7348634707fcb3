"""The stereo call recorder's mixer: two legs onto one sample clock (pure).

`StereoRecorder` takes decoded 16-bit samples from each side of a call and
returns interleaved stereo frames (caller left, answerer right, int16 LE,
8 kHz) ready to append to the WAV data chunk. It never reads a clock: the
shell passes each packet's arrival time, already in samples since the
recording started (`round((now - start) * 8000)`), and may pass the
packet's RTP timestamp; `feed_rtp` takes a whole RTP datagram, decodes
PCMU/PCMA and skips everything else (RFC 4733 events, comfort noise).

Alignment rule (where each packet goes on the common clock):

1. Without an RTP timestamp a packet is placed at its arrival time.
2. With one, the side's first packet anchors it: offset = arrival - rtp
   timestamp (mod 2^32), and later packets go at rtp timestamp + offset.
   So a side's audio stays gap-free whatever the network jitter, and loss
   leaves silence of exactly the lost length.
3. If a packet's RTP position is more than the jitter window (200 ms) away
   from its arrival, the side re-anchors on that packet (new SSRC after a
   re-INVITE, a sender's timestamp jump, or clock drift: at 100 ppm it
   takes half an hour to drift 200 ms). The re-anchor leaves a gap of
   silence or drops the overlap (rule 5).

Offset and jitter allowed: both sides are placed by our arrival clock, so
the two channels line up to within the difference of the two legs' one-way
network delay plus the arrival jitter of each side's anchoring packet
(typically well under 60 ms on a LAN or a decent trunk; bounded by the
200 ms window, beyond which rule 3 re-anchors).

Emission (bounded buffering): frames are emitted up to T = max(min(extent
of the two sides), max(extent) - window), i.e. as soon as both sides are
known up to T, or when one side lags the other by more than the window (a
side that sends nothing, one-way audio, voicemail, hold, is silence).
`advance(now)` also emits up to now - window, so silence on both sides is
written as time passes; `flush()` at hang-up emits everything. At most a
window plus one packet is ever buffered per side.

Late, duplicate and overlapping samples, decided deterministically:
4. Samples that fall before what was already emitted are dropped (counted
   in `stats.late`), and so are samples before 0.
5. Within the buffer the first write wins: a duplicate or an overlap keeps
   the samples that came first (counted in `stats.overlap`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pbx.audio import g711
from pbx.rtp.payload import split

RATE = 8000
JITTER_WINDOW = RATE // 5  # 200 ms in samples
MAX_PACKET = RATE  # samples in one feed() beyond 1 s are dropped: no RTP packet is that long
_TS_MOD = 1 << 32
_BUFFER_WINDOWS = 8  # buffer size in windows: the live part moves down every ~7 windows


class Side(enum.Enum):
    """Which channel a leg is recorded on: the caller left (0), the answerer right (1)."""

    CALLER = 0
    ANSWERER = 1


@dataclass(slots=True)
class RecorderStats:
    """What the mixer had to decide about, for the call record and metrics."""

    late: int = 0  # samples dropped: before what was already written
    overlap: int = 0  # samples dropped: their place was already filled
    oversized: int = 0  # samples dropped: past MAX_PACKET in one feed
    reanchors: int = 0  # times a side's RTP timestamps were re-anchored
    skipped: int = 0  # RTP packets fed that were not G.711 audio (DTMF, CN, junk)


@dataclass(slots=True)
class _SideClock:
    offset: int | None = None  # arrival - rtp timestamp, once anchored
    extent: int = 0  # one past the last sample position seen


@dataclass(slots=True)
class StereoRecorder:
    """Mixes both legs into stereo frames; see the module docstring for the rules."""

    window: int = JITTER_WINDOW
    stats: RecorderStats = field(default_factory=RecorderStats)
    emitted: int = 0  # frames returned so far (the common clock's written position)
    _clocks: tuple[_SideClock, _SideClock] = field(
        default_factory=lambda: (_SideClock(), _SideClock())
    )
    # Frames from `emitted` on live at _buf[_head:]; emitted ones are left behind _head
    # and the live part is moved down when the end is reached (no per-packet shifting).
    _buf: NDArray[np.int16] = field(init=False, repr=False)
    _filled: NDArray[np.bool_] = field(init=False, repr=False)
    _head: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        self._buf = np.zeros((_BUFFER_WINDOWS * self.window + MAX_PACKET, 2), dtype="<i2")
        self._filled = np.zeros(self._buf.shape, dtype=bool)

    def feed(
        self,
        side: Side,
        samples: NDArray[np.int16] | bytes,
        *,
        arrival: int,
        rtp_timestamp: int | None = None,
    ) -> bytes:
        """Add one packet's samples from `side`; returns the stereo frames now complete."""
        pcm = np.frombuffer(samples, dtype="<i2") if isinstance(samples, bytes) else samples
        if len(pcm) > MAX_PACKET:
            self.stats.oversized += len(pcm) - MAX_PACKET
            pcm = pcm[:MAX_PACKET]
        position = self._place(self._clocks[side.value], arrival, rtp_timestamp)
        self._write(side.value, position, pcm)
        return self._emit_to(self._ready())

    def feed_rtp(self, side: Side, packet: bytes, *, arrival: int) -> bytes:
        """One RTP datagram from `side`: G.711 audio is decoded and fed; anything else
        (telephone events, comfort noise, other codecs, malformed packets) is skipped."""
        parsed = split(packet)
        if parsed is None or parsed.header.payload_type not in (g711.PT_PCMU, g711.PT_PCMA):
            self.stats.skipped += 1
            return b""
        pcm = g711.decode_samples(parsed.header.payload_type, parsed.payload)
        return self.feed(side, pcm, arrival=arrival, rtp_timestamp=parsed.header.timestamp)

    def advance(self, now: int) -> bytes:
        """Time passed (`now` in samples): emit up to now - window even if nobody sent."""
        return self._emit_to(max(self._ready(), now - self.window))

    def flush(self) -> bytes:
        """Hang-up: emit every frame up to the furthest sample either side sent."""
        return self._emit_to(max(c.extent for c in self._clocks))

    def _place(self, clock: _SideClock, arrival: int, rtp_timestamp: int | None) -> int:
        if rtp_timestamp is None:
            return arrival
        if clock.offset is not None:
            position = arrival + _wrap_diff(rtp_timestamp + clock.offset - arrival)
            if abs(position - arrival) <= self.window:
                return position
            self.stats.reanchors += 1
        clock.offset = arrival - rtp_timestamp
        return arrival

    def _write(self, channel: int, position: int, pcm: NDArray[np.int16]) -> None:
        end = position + len(pcm)
        start = max(position, self.emitted)
        self.stats.late += max(0, min(end, start) - position)
        if end <= start:
            return
        clock = self._clocks[channel]
        fresh = start >= clock.extent  # nothing of this side was written there yet
        self._reserve(end - self.emitted)
        clock.extent = max(clock.extent, end)
        lo = self._head + start - self.emitted
        hi = lo + end - start
        if fresh:  # the common in-order case: a plain copy
            self._buf[lo:hi, channel] = pcm[start - position :]
        else:
            free = ~self._filled[lo:hi, channel]
            self.stats.overlap += int(len(free) - np.count_nonzero(free))
            column = self._buf[lo:hi, channel]
            column[free] = pcm[start - position :][free]
        self._filled[lo:hi, channel] = True

    def _reserve(self, frames: int) -> None:
        """Make room for `frames` frames from `emitted` on."""
        if self._head + frames <= len(self._buf):
            return
        head = self._head
        live = min(
            max(0, max(c.extent for c in self._clocks) - self.emitted), len(self._buf) - head
        )
        # Move the live frames down and clean what they leave (beyond them it is clean).
        self._buf[:live] = self._buf[head : head + live]
        self._filled[:live] = self._filled[head : head + live]
        self._buf[live : head + live] = 0
        self._filled[live : head + live] = False
        self._head = 0
        if frames > len(self._buf):
            grown = np.zeros((max(frames, 2 * len(self._buf)), 2), dtype="<i2")
            grown[:live] = self._buf[:live]
            filled = np.zeros(grown.shape, dtype=bool)
            filled[:live] = self._filled[:live]
            self._buf, self._filled = grown, filled

    def _ready(self) -> int:
        extents = [c.extent for c in self._clocks]
        return max(min(extents), max(extents) - self.window)

    def _emit_to(self, target: int) -> bytes:
        count = target - self.emitted
        if count <= 0:
            return b""
        # Nothing was ever written past the buffer's end: frames beyond it are silence,
        # so a long quiet stretch (advance after a hold) never grows the buffer.
        stored = min(count, len(self._buf) - self._head)
        out = bytes(self._buf[self._head : self._head + stored].tobytes())
        out += bytes(4 * (count - stored))
        self.emitted = target
        if self._head + count >= len(self._buf):
            self._buf[:] = 0  # everything stored has been emitted: start clean
            self._filled[:] = False
            self._head = 0
        else:
            self._head += count
        return out


def _wrap_diff(delta: int) -> int:
    """`delta` mod 2^32 as the nearest signed value (RTP timestamps wrap, RFC 3550 §5.1)."""
    delta %= _TS_MOD
    return delta - _TS_MOD if delta >= _TS_MOD // 2 else delta
