"""DTMF from the peer: RFC 4733 telephone-event payloads and SIP INFO bodies (pure).

RFC 4733 §2.3 payload (4 bytes): event (8 bits), E (end, 1 bit), R
(reserved, 1 bit), volume (6 bits, -dBm0), duration (16 bits, timestamp
units). Events 0-9, 10 (*), 11 (#) and 12-15 (A-D) are DTMF digits (§3.2);
others (flash, tones) parse but have no digit. Bytes past the first four
(RFC 2198 redundancy is a different payload type) are ignored.

Dedup (`DtmfDetector`): every packet of one event carries the event's start
timestamp (§2.5.1.1) and the end packet is sent three times (§2.5.1.4), so
a digit is reported once per (SSRC, event timestamp). Decision: it is
reported on the first packet seen for that timestamp, not on the end
packet, so a lost end (all three copies) still yields the digit and a
screening answerer is heard at once. A key held past the 16-bit duration
(8.19 s at 8 kHz, §2.5.1.3) starts a new timestamp and may be reported
again. The detector remembers the last `REMEMBERED` events only (bounded).

SIP INFO (no RFC; the de facto bodies, as Cisco and Asterisk send them):
`application/dtmf-relay` with `Signal=5` and optional `Duration=160` (ms)
lines, and `application/dtmf` whose body is the digit. `Signal=10`/`11`
mean * and # (some gateways send the event number). Parse errors raise
`DtmfError`; any other content type is not DTMF (None).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pbx.errors import PbxError

EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 table 1, events 0-15
PAYLOAD_SIZE = 4
REMEMBERED = 16
MAX_INFO_BODY = 1024
DTMF_RELAY = "application/dtmf-relay"
DTMF_PLAIN = "application/dtmf"


class DtmfError(PbxError):
    """A telephone-event payload or DTMF INFO body that cannot be read."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One RFC 4733 §2.3 telephone-event payload."""

    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        return EVENT_DIGITS[self.event] if self.event < len(EVENT_DIGITS) else None


def parse_event(payload: bytes) -> TelephoneEvent:
    """The telephone event in `payload`; DtmfError if it is shorter than 4 bytes."""
    if len(payload) < PAYLOAD_SIZE:
        raise DtmfError(f"telephone-event payload of {len(payload)} bytes, needs 4")
    flags = payload[1]
    return TelephoneEvent(
        event=payload[0],
        end=bool(flags & 0x80),
        volume=flags & 0x3F,
        duration=int.from_bytes(payload[2:4], "big"),
    )


@dataclass(slots=True)
class DtmfDetector:
    """Turns a leg's telephone-event packets into digits, once per event."""

    _seen: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=REMEMBERED))

    def feed(self, rtp_timestamp: int, payload: bytes, *, ssrc: int = 0) -> str | None:
        """The digit this packet starts, or None (repeat, end copy, not a digit).

        Raises DtmfError for a payload too short to be an event."""
        event = parse_event(payload)
        key = (ssrc, rtp_timestamp)
        if key in self._seen:
            return None
        self._seen.append(key)
        return event.digit


@dataclass(frozen=True, slots=True)
class InfoDigit:
    """A digit carried by SIP INFO; duration in milliseconds when the body gave one."""

    digit: str
    duration_ms: int | None = None


def parse_info(content_type: str, body: bytes) -> InfoDigit | None:
    """The digit in a SIP INFO body, None if the content type is not DTMF; DtmfError if bad."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in (DTMF_RELAY, DTMF_PLAIN):
        return None
    if len(body) > MAX_INFO_BODY:
        raise DtmfError(f"DTMF INFO body of {len(body)} bytes (limit {MAX_INFO_BODY})")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise DtmfError("DTMF INFO body is not ASCII") from None
    if media == DTMF_PLAIN:
        return InfoDigit(_signal(text.strip()))
    return _parse_relay(text)


def _parse_relay(text: str) -> InfoDigit:
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if "signal" not in fields:
        raise DtmfError("dtmf-relay INFO body has no Signal= line")
    duration = fields.get("duration") or None  # an empty Duration= means none given
    if duration is not None and not (duration.isascii() and duration.isdigit()):
        raise DtmfError(f"dtmf-relay Duration {duration[:20]!r} is not a number")
    return InfoDigit(_signal(fields["signal"]), int(duration) if duration else None)


def _signal(value: str) -> str:
    upper = value.upper()
    if len(upper) == 1 and upper in EVENT_DIGITS:
        return upper
    if upper in ("10", "11"):  # event numbers for * and # (RFC 4733 §3.2)
        return EVENT_DIGITS[int(upper)]
    raise DtmfError(f"DTMF signal {value[:20]!r} is not 0-9, *, #, A-D")
