"""The daemon <-> media worker control protocol: messages, framing, session table (pure).

Theory of operation
===================

The daemon (`pbx.rtp.workers.WorkerEngine`) drives each media worker
process (`pbx.rtp.worker`) over one local byte stream (a socketpair). Both
directions carry *frames*; a frame carries a *batch* of messages, so one
loop wake-up costs one `write` however many calls it touched.

Frame: a 4-byte big-endian length N (1 <= N <= `MAX_FRAME`), then N bytes
of ASCII JSON: a list of 1..`MAX_MESSAGES` messages, each a JSON list
whose first item names the kind:

| direction | message | wire |
| --- | --- | --- |
| to worker | `Hello(version)` | `["hello", 1]` |
| to worker | `Open(call_id)` | `["open", "c1"]` |
| to worker | `SetRemote(id, leg, host, port)` | `["set_remote", "c1", "inbound", "192.0.2.1", 9]` |
| to worker | `Arm(call_id)` | `["arm", "c1"]` |
| to worker | `Close(call_id)` | `["close", "c1"]` |
| to worker | `Prompt(key, payload_type, payload)` | `["prompt", "0:9f2c...", 0, "<base64>"]` |
| to worker | `Forget(key)` | `["forget", "0:9f2c..."]` |
| to worker | `Play(call_id, leg, play_id, key)` | `["play", "c1", "inbound", 1, "0:9f2c..."]` |
| to worker | `StopPlaying(call_id, leg)` | `["stop_playing", "c1", "inbound"]` |
| to worker | `Hold(call_id, on)` | `["hold", "c1", 1]` (1 = hold, 0 = bridge again) |
| to worker | `WatchDigits(call_id, leg, pt)` | `["watch_digits", "c1", "outbound", 101]` |
| to worker | `StartRecording(call_id, path)` | `["start_recording", "c1", "/rec/7.wav"]` |
| to worker | `StopRecording(call_id)` | `["stop_recording", "c1"]` |
| to daemon | `Ready(version, pid)` | `["ready", 1, 4242]` |
| to daemon | `Opened(call_id, inbound_port, outbound_port)` | `["opened", "c1", 40000, 40002]` |
| to daemon | `Failed(call_id, reason)` | `["failed", "c1", "media: no free port"]` |
| to daemon | `Closed(stats)` | `["closed", "c1", [10 counters]]` |
| to daemon | `Stats(entries)` | `["stats", [["c1", [10 counters]], ...]]` |
| to daemon | `Timeout(call_id)` | `["timeout", "c1"]` |
| to daemon | `PlayDone(call_id, play_id)` | `["play_done", "c1", 1]` |
| to daemon | `Digit(call_id, leg, digit)` | `["digit", "c1", "outbound", "1"]` |
| to daemon | `Recorded(call_id, millis, bytes, error)` | `["recorded", "c1", 1234, 39532, null]` |

The 10 counters are inbound then outbound, each `packets, bytes,
rtcp_packets, rtcp_bytes, dropped` (`pbx.rtp.media.Counters`).

Hand-shake: the daemon sends `Hello`; the worker answers `Ready` once, and
only then may the daemon route sessions to it. A worker reports every
session's counters in `Stats` about once a second, and `Timeout` once per
session whose media went silent after `Arm` (or after its first packet).

Audio (issue 13; `pbx.rtp.media` says what each call means):

- Prompts cross the channel once per worker, not once per call: the daemon
  encodes a prompt's 8 kHz PCM to the G.711 payload it plays as
  (`pbx.rtp.stream.encode_prompt`: half the bytes of the PCM, and the
  worker has nothing left to compute), and names it by `prompt_key`
  (payload type + a BLAKE2b digest of the PCM: the daemon encodes only
  for a worker that does not hold it yet). `Prompt` hands a
  worker the payload (base64, a multiple of 160 bytes, at most
  `MAX_PROMPT` = 75 s, so it fits one frame); `Play` names it by key.
  The daemon decides what each worker holds: a `PromptCache` per worker
  (least recently played first out, `CACHE_BYTES` in all), and `Forget`
  tells the worker what it dropped. Messages are handled in order, so a
  `Play` right behind its `Prompt` finds it. A worker holding more than
  `CACHE_BYTES`, or a `Play` of a key it does not hold, is a daemon bug:
  `ControlError` / the play ends at once (`PlayDone`).
- `Play` carries a `play_id` the daemon chose (per session, increasing);
  `PlayDone` names it, so a play cut short (`StopPlaying`) whose done
  report crossed the stop on the wire is not taken for the next one.
- Recording: the worker writes the WAV itself (`pbx.rtp.recording`); no
  audio crosses the channel. `Recorded` reports the result (length in
  whole milliseconds: the codec refuses floats) after `StopRecording`,
  after a start that failed (its `error`), and before `Closed` when a
  session closes while recording, so the daemon has it with the final
  counters.
- Digits: `WatchDigits` with a telephone-event payload type starts reporting each RFC
  4733 digit of that leg once (`Digit`); `null` for the type stops.

One session, as the daemon sees it, is the table `SESSION_TABLE`:
``(SessionState, Input) -> (SessionState, effects)``; `session_step` looks
it up. Inputs are the worker's messages about the call (`OPENED` ...
`CLOSED`) and the daemon's own events (`CLOSE` by the call side,
`OPEN_TIMED_OUT` (or the opener was cancelled), `WORKER_DIED`,
`ENGINE_CLOSED`). `AUDIO` is a worker's audio report (`PlayDone`, `Digit`,
`Recorded`): it changes no state, and is a violation before `Opened`. A
worker dying under an open (or closing) session whose recording it was
writing leaves the file behind: `SALVAGE_RECORDING` makes it playable.
A session the call side closed gets no failure report when its worker
dies: the call is already ending. A worker message with no row (say
`Closed` for a session nobody closed, or a second `Opened`) is a protocol
violation: `ControlError`, and the daemon treats that worker as broken.
Messages about a call the daemon no longer knows are ignored (the
daemon forgets a session once it is closed).

Decisions:
- JSON rather than `struct`: call ids and reasons are strings of any
  length up to a bound, the control rate is a few messages per call plus one
  stats batch a second (not the packet path), and a frame can be read in a
  log. The encoder writes ASCII only (`ensure_ascii`), so sizes are exact.
- Bounds: `MAX_FRAME` 1 MiB (like h11's fixed buffer limit, it caps what a
  broken peer can make us hold), `MAX_MESSAGES` per frame, `MAX_CALL_ID`
  characters, `MAX_REASON`, `MAX_STATS` entries per `Stats` message (the
  encoder splits bigger batches, and packs messages into as many frames as
  needed). Integers are range-checked; booleans, floats, NaN are refused.
  A `Prompt` (at most `MAX_PROMPT` bytes, ~1 MB of base64) fills a frame
  of its own; it is rare (once per prompt per worker).
- One error type, `ControlError` (one line), for every fault in what came
  in: bad length, bad JSON, bad shape, a kind not allowed in that direction,
  an out-of-range field, a table violation. After one, the decoder stays
  broken (a byte stream cannot be re-synchronised), and so does the worker.
- A frame is all or nothing: messages of frames decoded before the faulty
  one in the same `feed` are not returned (the worker is dropped anyway).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import ipaddress
import json
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NoReturn

from pbx.errors import PbxError
from pbx.rtp.media import LEGS, Counters, Leg, MediaStats

VERSION = 2
HEADER_SIZE = 4
MAX_FRAME = 1024 * 1024
MAX_MESSAGES = 4096
MAX_CALL_ID = 1024  # RFC 3261 sets no limit; real Call-IDs are < 100 characters
MAX_REASON = 200
MAX_HOST = 64  # the longest textual IPv6 address is 45 characters
MAX_STATS = 128  # entries per Stats message: 128 * ~6 KiB worst case < MAX_FRAME
MAX_COUNTER = 2**63 - 1
MAX_PID = 2**31 - 1
MAX_KEY = 64
MAX_PATH = 4096  # PATH_MAX on Linux
SAMPLES_PER_PACKET = 160  # a prompt payload is whole 20 ms packets (pbx.rtp.stream)
MAX_PROMPT = 75 * 8000  # bytes of G.711 (75 s; stored prompts are at most 60 s): one frame
CACHE_BYTES = 64 * 1024 * 1024  # prompt payloads one worker holds (over two hours of audio)
MAX_MILLIS = 2**53
MAX_PLAY_ID = 2**53
DIGITS = frozenset("0123456789*#ABCD")
G711 = (0, 8)  # PCMU, PCMA: what a prompt plays as


class ControlError(PbxError):
    """The control stream carried something that is not this protocol (one line)."""


@dataclass(frozen=True, slots=True)
class Hello:
    version: int


@dataclass(frozen=True, slots=True)
class Open:
    call_id: str


@dataclass(frozen=True, slots=True)
class SetRemote:
    call_id: str
    leg: Leg
    host: str
    port: int


@dataclass(frozen=True, slots=True)
class Arm:
    call_id: str


@dataclass(frozen=True, slots=True)
class Close:
    call_id: str


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt's G.711 payload for the worker's cache, under `key` (see `prompt_key`)."""

    key: str
    payload_type: int
    payload: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Forget:
    key: str


@dataclass(frozen=True, slots=True)
class Play:
    call_id: str
    leg: Leg
    play_id: int
    key: str


@dataclass(frozen=True, slots=True)
class StopPlaying:
    call_id: str
    leg: Leg


@dataclass(frozen=True, slots=True)
class Hold:
    call_id: str
    on: bool


@dataclass(frozen=True, slots=True)
class WatchDigits:
    call_id: str
    leg: Leg
    payload_type: int | None  # None stops watching


@dataclass(frozen=True, slots=True)
class StartRecording:
    call_id: str
    path: str


@dataclass(frozen=True, slots=True)
class StopRecording:
    call_id: str


@dataclass(frozen=True, slots=True)
class Ready:
    version: int
    pid: int


@dataclass(frozen=True, slots=True)
class Opened:
    call_id: str
    inbound_port: int
    outbound_port: int


@dataclass(frozen=True, slots=True)
class Failed:
    call_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Closed:
    stats: MediaStats

    @property
    def call_id(self) -> str:
        return self.stats.call_id


@dataclass(frozen=True, slots=True)
class Stats:
    entries: tuple[MediaStats, ...]


@dataclass(frozen=True, slots=True)
class Timeout:
    call_id: str


@dataclass(frozen=True, slots=True)
class PlayDone:
    call_id: str
    play_id: int


@dataclass(frozen=True, slots=True)
class Digit:
    call_id: str
    leg: Leg
    digit: str


@dataclass(frozen=True, slots=True)
class Recorded:
    """A recording's result as the worker wrote it (`pbx.rtp.media.RecordingResult`)."""

    call_id: str
    millis: int
    bytes: int
    error: str | None = None


ToWorker = (
    Hello | Open | SetRemote | Arm | Close | Prompt | Forget | Play | StopPlaying | Hold
    | WatchDigits | StartRecording | StopRecording
)  # fmt: skip
FromWorker = Ready | Opened | Failed | Closed | Stats | Timeout | PlayDone | Digit | Recorded
Message = ToWorker | FromWorker

TO_WORKER: frozenset[str] = frozenset({
    "hello", "open", "set_remote", "arm", "close", "prompt", "forget", "play", "stop_playing",
    "hold", "watch_digits", "start_recording", "stop_recording",
})  # fmt: skip
FROM_WORKER: frozenset[str] = frozenset({
    "ready", "opened", "failed", "closed", "stats", "timeout", "play_done", "digit", "recorded",
})  # fmt: skip


# -- encoding ------------------------------------------------------------------


def _counters(stats: MediaStats) -> list[int]:
    out: list[int] = []
    for c in (stats.inbound, stats.outbound):
        out += [c.packets, c.bytes, c.rtcp_packets, c.rtcp_bytes, c.dropped]
    return out


def _wire(msg: Message) -> list[Any]:
    if isinstance(msg, Hello):
        return ["hello", msg.version]
    if isinstance(msg, Open):
        return ["open", msg.call_id]
    if isinstance(msg, SetRemote):
        return ["set_remote", msg.call_id, msg.leg, msg.host, msg.port]
    if isinstance(msg, Arm):
        return ["arm", msg.call_id]
    if isinstance(msg, Close):
        return ["close", msg.call_id]
    if isinstance(msg, Ready):
        return ["ready", msg.version, msg.pid]
    if isinstance(msg, Opened):
        return ["opened", msg.call_id, msg.inbound_port, msg.outbound_port]
    if isinstance(msg, Failed):
        return ["failed", msg.call_id, msg.reason[:MAX_REASON]]
    if isinstance(msg, Closed):
        return ["closed", msg.call_id, _counters(msg.stats)]
    if isinstance(msg, Stats):
        return ["stats", [[s.call_id, _counters(s)] for s in msg.entries]]
    if isinstance(msg, Timeout):
        return ["timeout", msg.call_id]
    return _audio_wire(msg)


def _audio_wire(msg: Message) -> list[Any]:
    if isinstance(msg, Prompt):
        payload = base64.b64encode(msg.payload).decode("ascii")
        return ["prompt", msg.key, msg.payload_type, payload]
    if isinstance(msg, Forget):
        return ["forget", msg.key]
    if isinstance(msg, Play):
        return ["play", msg.call_id, msg.leg, msg.play_id, msg.key]
    if isinstance(msg, StopPlaying):
        return ["stop_playing", msg.call_id, msg.leg]
    if isinstance(msg, Hold):
        return ["hold", msg.call_id, 1 if msg.on else 0]
    if isinstance(msg, WatchDigits):
        return ["watch_digits", msg.call_id, msg.leg, msg.payload_type]
    if isinstance(msg, StartRecording):
        return ["start_recording", msg.call_id, msg.path]
    if isinstance(msg, StopRecording):
        return ["stop_recording", msg.call_id]
    if isinstance(msg, PlayDone):
        return ["play_done", msg.call_id, msg.play_id]
    if isinstance(msg, Digit):
        return ["digit", msg.call_id, msg.leg, msg.digit]
    assert isinstance(msg, Recorded)
    error = None if msg.error is None else msg.error[:MAX_REASON]
    return ["recorded", msg.call_id, msg.millis, msg.bytes, error]


def _split(messages: Iterable[Message]) -> Iterable[Message]:
    """Stats batches cut to MAX_STATS entries, so every message fits one frame."""
    for msg in messages:
        if isinstance(msg, Stats) and len(msg.entries) > MAX_STATS:
            for i in range(0, len(msg.entries), MAX_STATS):
                yield Stats(msg.entries[i : i + MAX_STATS])
        elif not (isinstance(msg, Stats) and not msg.entries):
            yield msg


def encode(messages: Iterable[Message]) -> bytes:
    """The frames carrying `messages` in order (b"" for none); validates what it sends.

    Raises ControlError for a field out of bounds (e.g. a call id over
    MAX_CALL_ID): a caller should check ids before opening a session. Stats
    batches are not re-checked (1,000 entries cost ~2 ms to write and ~4 ms
    to read on this box: every second, per 1,000 calls); their ids were
    checked when the sessions opened and their counters are the relay's.
    """
    frames: list[bytes] = []
    parts: list[bytes] = []
    size = 2  # the brackets of the batch list
    for msg in _split(messages):
        wire = _wire(msg)
        part = _COMPACT.encode(wire).encode("ascii")
        if not isinstance(msg, Stats):  # a Stats batch only repeats ids already checked
            _check(wire, part)
        if parts and (size + len(part) + 1 > MAX_FRAME or len(parts) == MAX_MESSAGES):
            frames.append(_frame(parts))
            parts, size = [], 2
        parts.append(part)
        size += len(part) + 1
    if parts:
        frames.append(_frame(parts))
    return b"".join(frames)


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # json.dumps would build one per call
_ANY = TO_WORKER | FROM_WORKER


def _check(wire: list[Any], part: bytes) -> None:
    """The reader's checks, on the list as built (plain lists, str, int: what JSON
    gives back); only if that refuses it, on the JSON text, whose verdict counts."""
    try:
        _message(wire, _ANY)
    except ControlError:
        _message(json.loads(part), _ANY)  # same checks as the reader


def _frame(parts: list[bytes]) -> bytes:
    body = b"[" + b",".join(parts) + b"]"
    return len(body).to_bytes(HEADER_SIZE, "big") + body


# -- decoding ------------------------------------------------------------------


def _fail(what: str) -> NoReturn:
    raise ControlError(f"media control: {what}")


def _int(value: Any, low: int, high: int, what: str) -> int:
    if type(value) is not int or not low <= value <= high:
        _fail(f"{what} must be an integer in {low}..{high}")
    return value


def _str(value: Any, limit: int, what: str) -> str:
    if type(value) is not str or not 0 < len(value) <= limit:
        _fail(f"{what} must be a string of 1..{limit} characters")
    return value


def _call(value: Any) -> str:
    return _str(value, MAX_CALL_ID, "call id")


def _leg(value: Any) -> Leg:
    for leg in LEGS:
        if value == leg:
            return leg
    _fail("leg must be inbound or outbound")


def _host(value: Any) -> str:
    text = _str(value, MAX_HOST, "host")
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        _fail("host must be an IP address")


def _stats(call_id: Any, values: Any) -> MediaStats:
    if type(values) is not list or len(values) != 10:
        _fail("counters must be a list of 10 integers")
    n = [_int(v, 0, MAX_COUNTER, "counter") for v in values]
    return MediaStats(_call(call_id), Counters(*n[:5]), Counters(*n[5:]))


def _entries(value: Any) -> tuple[MediaStats, ...]:
    if type(value) is not list or len(value) > MAX_STATS:
        _fail(f"stats must be a list of at most {MAX_STATS} entries")
    out = []
    for entry in value:
        if type(entry) is not list or len(entry) != 2:
            _fail("a stats entry must be [call id, counters]")
        out.append(_stats(entry[0], entry[1]))
    return tuple(out)


def _port(value: Any, what: str) -> int:
    return _int(value, 1, 65535, what)


def _key(value: Any) -> str:
    text = _str(value, MAX_KEY, "prompt key")
    if not text.isascii() or not text.isprintable():
        _fail("prompt key must be printable ASCII")
    return text


def _payload_type(value: Any) -> int:
    if type(value) is not int or value not in G711:
        _fail("payload type must be 0 (PCMU) or 8 (PCMA)")
    return value


def _payload(value: Any) -> bytes:
    if type(value) is not str or len(value) > (MAX_PROMPT + 2) // 3 * 4:
        _fail(f"prompt payload must be base64 of at most {MAX_PROMPT} bytes")
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        _fail("prompt payload is not base64")
    if not data or len(data) % SAMPLES_PER_PACKET:
        _fail(f"prompt payload must be whole {SAMPLES_PER_PACKET}-byte packets")
    return data


def _flag(value: Any) -> bool:
    return _int(value, 0, 1, "hold") == 1


def _event_type(value: Any) -> int | None:
    return None if value is None else _int(value, 0, 127, "telephone-event payload type")


def _path(value: Any) -> str:
    text = _str(value, MAX_PATH, "path")
    if "\0" in text:
        _fail("path must not hold NUL")
    return text


def _digit(value: Any) -> str:
    if type(value) is not str or value not in DIGITS:
        _fail("digit must be one of 0-9 * # A-D")
    return value


def _error(value: Any) -> str | None:
    return None if value is None else _str(value, MAX_REASON, "error")


_SHAPES: dict[str, int] = {
    "hello": 2, "open": 2, "set_remote": 5, "arm": 2, "close": 2, "ready": 3,
    "opened": 4, "failed": 3, "closed": 3, "stats": 2, "timeout": 2,
    "prompt": 4, "forget": 2, "play": 5, "stop_playing": 3, "hold": 3, "watch_digits": 4,
    "start_recording": 3, "stop_recording": 2, "play_done": 3, "digit": 4, "recorded": 5,
}  # fmt: skip


def _message(item: Any, accept: frozenset[str]) -> Message:  # noqa: C901 - flat per kind
    if type(item) is not list or not item or type(item[0]) is not str:
        _fail("a message must be a list starting with its kind")
    kind = item[0]
    if kind not in accept:
        _fail(f"unexpected message kind {kind[:40]!r}")
    if len(item) != _SHAPES[kind]:
        _fail(f"{kind} takes {_SHAPES[kind] - 1} fields")
    a = item[1:]
    if kind == "hello":
        return Hello(_int(a[0], 0, 2**16, "version"))
    if kind == "open":
        return Open(_call(a[0]))
    if kind == "set_remote":
        return SetRemote(_call(a[0]), _leg(a[1]), _host(a[2]), _port(a[3], "port"))
    if kind == "arm":
        return Arm(_call(a[0]))
    if kind == "close":
        return Close(_call(a[0]))
    if kind == "ready":
        return Ready(_int(a[0], 0, 2**16, "version"), _int(a[1], 1, MAX_PID, "pid"))
    if kind == "opened":
        return Opened(_call(a[0]), _port(a[1], "inbound port"), _port(a[2], "outbound port"))
    if kind == "failed":
        return Failed(_call(a[0]), _str(a[1], MAX_REASON, "reason"))
    if kind == "closed":
        return Closed(_stats(a[0], a[1]))
    if kind == "stats":
        return Stats(_entries(a[0]))
    if kind == "timeout":
        return Timeout(_call(a[0]))
    return _audio_message(kind, a)


def _audio_message(kind: str, a: list[Any]) -> Message:
    if kind == "prompt":
        return Prompt(_key(a[0]), _payload_type(a[1]), _payload(a[2]))
    if kind == "forget":
        return Forget(_key(a[0]))
    if kind == "play":
        return Play(_call(a[0]), _leg(a[1]), _int(a[2], 0, MAX_PLAY_ID, "play id"), _key(a[3]))
    if kind == "stop_playing":
        return StopPlaying(_call(a[0]), _leg(a[1]))
    if kind == "hold":
        return Hold(_call(a[0]), _flag(a[1]))
    if kind == "watch_digits":
        return WatchDigits(_call(a[0]), _leg(a[1]), _event_type(a[2]))
    if kind == "start_recording":
        return StartRecording(_call(a[0]), _path(a[1]))
    if kind == "stop_recording":
        return StopRecording(_call(a[0]))
    if kind == "play_done":
        return PlayDone(_call(a[0]), _int(a[1], 0, MAX_PLAY_ID, "play id"))
    if kind == "digit":
        return Digit(_call(a[0]), _leg(a[1]), _digit(a[2]))
    return Recorded(
        _call(a[0]), _int(a[1], 0, MAX_MILLIS, "millis"), _int(a[2], 0, MAX_COUNTER, "bytes"),
        _error(a[3]),
    )  # fmt: skip


def _reject_constant(name: str) -> NoReturn:
    _fail(f"{name} is not allowed")


def decode_frame(body: bytes, accept: frozenset[str]) -> list[Message]:
    """The messages of one frame body; ControlError if it is not this protocol."""
    try:
        batch = json.loads(body.decode("ascii"), parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise ControlError(f"media control: frame is not JSON ({type(exc).__name__})") from None
    if type(batch) is not list or not 0 < len(batch) <= MAX_MESSAGES:
        _fail(f"a frame must be a list of 1..{MAX_MESSAGES} messages")
    return [_message(item, accept) for item in batch]


class Decoder:
    """Cuts a byte stream, fed in pieces of any size, into messages.

    `accept` is the set of kinds allowed in this direction (`FROM_WORKER` in
    the daemon, `TO_WORKER` in a worker). Holds at most one frame.
    """

    def __init__(self, accept: frozenset[str]) -> None:
        self.accept = accept
        self._buffer = bytearray()
        self._broken: ControlError | None = None

    def feed(self, data: bytes) -> list[Message]:
        """Messages completed by `data`; ControlError (then always) on garbage."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._cut(data)
        except ControlError as exc:
            self._broken = exc
            self._buffer.clear()
            raise

    def _cut(self, data: bytes) -> list[Message]:
        buffer = self._buffer
        buffer += data
        out: list[Message] = []
        while len(buffer) >= HEADER_SIZE:
            size = int.from_bytes(buffer[:HEADER_SIZE], "big")
            if not 0 < size <= MAX_FRAME:
                _fail(f"frame length {size} outside 1..{MAX_FRAME}")
            if len(buffer) < HEADER_SIZE + size:
                break
            body = bytes(buffer[HEADER_SIZE : HEADER_SIZE + size])
            del buffer[: HEADER_SIZE + size]
            out += decode_frame(body, self.accept)
        return out

    @property
    def pending(self) -> int:
        """Bytes held of a frame not yet complete."""
        return len(self._buffer)


# -- each worker's share of the port range --------------------------------------


def split_ports(low: int, high: int, count: int) -> list[tuple[int, int]]:
    """`count` disjoint (low, high) slices of whole even/odd pairs covering [low, high].

    Slices differ by at most one pair; a restarted worker gets its old slice.
    """
    first = low + (low % 2)
    pairs = (high - first + 1) // 2
    if count < 1 or pairs < count:
        _fail(f"port range {low}-{high} cannot give {count} worker(s) a pair")
    slices, start = [], 0
    for index in range(count):
        size = pairs // count + (1 if index < pairs % count else 0)
        slices.append((first + 2 * start, first + 2 * (start + size) - 1))
        start += size
    return slices


# -- prompts held by a worker ----------------------------------------------------

PROMPT_KEYS = 32  # prompts whose key is remembered (each entry keeps its PCM alive)


@lru_cache(maxsize=PROMPT_KEYS)
def prompt_key(payload_type: int, pcm: bytes) -> str:
    """The name of a prompt on the wire: the payload type it plays as and a digest of its
    PCM (so the daemon encodes a prompt only for a worker that does not hold it yet).

    Memoised: a number's prompt is the same bytes object call after call (the
    provisioning cache hands it out), and a bytes object keeps its own hash, so
    a repeat costs a lookup instead of a digest of the whole PCM (1.3 ms for 60 s)."""
    return f"{payload_type}:{hashlib.blake2b(pcm, digest_size=16).hexdigest()}"


def payload_size(pcm: bytes) -> int:
    """Bytes of the G.711 payload of `pcm` (8 kHz 16-bit), padded to whole packets."""
    samples = len(pcm) // 2
    return -(-samples // SAMPLES_PER_PACKET) * SAMPLES_PER_PACKET


class PromptCache:
    """What one worker holds, as the daemon decides it: least recently played out first.

    `need(key, size)` says whether the payload must be sent (not held yet)
    and which keys to `Forget` first so that the total stays within
    `budget`. The worker keeps exactly what this says (messages arrive in
    order), so a `Play` always names a key it holds.
    """

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self.held: OrderedDict[str, int] = OrderedDict()
        self.size = 0

    def need(self, key: str, size: int) -> tuple[bool, list[str]]:
        """(send it?, keys to forget before); marks `key` as just played."""
        if key in self.held:
            self.held.move_to_end(key)
            return False, []
        if size > self.budget:
            _fail(f"prompt of {size} bytes exceeds the worker cache of {self.budget}")
        evicted: list[str] = []
        while self.size + size > self.budget:
            old, old_size = self.held.popitem(last=False)
            self.size -= old_size
            evicted.append(old)
        self.held[key] = size
        self.size += size
        return True, evicted

    def clear(self) -> None:
        """The worker is gone: a new one holds nothing."""
        self.held.clear()
        self.size = 0


class PromptStore:
    """The worker's side: payloads by key, refusing more than `budget` bytes in all."""

    def __init__(self, budget: int = CACHE_BYTES) -> None:
        self.budget = budget
        self.payloads: dict[str, tuple[int, bytes]] = {}
        self.size = 0

    def put(self, msg: Prompt) -> None:
        """Hold `msg`'s payload; ControlError if that would exceed the budget."""
        old = self.payloads.pop(msg.key, None)
        if old is not None:
            self.size -= len(old[1])
        if self.size + len(msg.payload) > self.budget:
            _fail(f"prompts over the worker cache of {self.budget} bytes")
        self.payloads[msg.key] = (msg.payload_type, msg.payload)
        self.size += len(msg.payload)

    def forget(self, key: str) -> None:
        old = self.payloads.pop(key, None)
        if old is not None:
            self.size -= len(old[1])

    def get(self, key: str) -> tuple[int, bytes] | None:
        return self.payloads.get(key)


# -- one session, as the daemon sees it ----------------------------------------


class SessionState(enum.Enum):
    OPENING = "opening"  # Open sent, no answer yet
    OPEN = "open"  # Opened: relaying
    CLOSING = "closing"  # Close sent, Closed not yet received
    CLOSED = "closed"  # final; the daemon forgets the session


class Input(enum.Enum):
    OPENED = "opened"
    FAILED = "failed"
    STATS = "stats"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    CLOSE = "close"  # the call side closed the session
    OPEN_TIMED_OUT = "open timed out"  # no Opened within the daemon's bound
    WORKER_DIED = "worker died"  # EOF, process exit, or a garbled stream
    ENGINE_CLOSED = "engine closed"  # the daemon is stopping every worker
    AUDIO = "audio"  # PlayDone, Digit or Recorded from the worker


class Effect(enum.Enum):
    RESOLVE_OPEN = "resolve open"  # open_session returns the session
    REJECT_OPEN = "reject open"  # open_session raises MediaError
    UPDATE = "update counters"
    REPORT_TIMEOUT = "report timeout"  # engine.on_timeout(call_id), once
    REPORT_FAILURE = "report failure"  # engine.on_failure(call_id, "media_failed"), once
    SEND_CLOSE = "send close"
    FINAL = "final counters"  # final_stats() waiters get the counters
    FORGET = "forget"  # drop the session from the engine's index
    AUDIO = "audio report"  # on_done / on_digit / the recording's result, in the daemon
    SALVAGE_RECORDING = "salvage recording"  # the dead worker's file is made playable


St, In, Ef = SessionState, Input, Effect
SESSION_TABLE: dict[tuple[SessionState, Input], tuple[SessionState, tuple[Effect, ...]]] = {
    (St.OPENING, In.OPENED): (St.OPEN, (Ef.RESOLVE_OPEN,)),
    (St.OPENING, In.FAILED): (St.CLOSED, (Ef.REJECT_OPEN, Ef.FORGET)),
    (St.OPENING, In.OPEN_TIMED_OUT): (St.CLOSING, (Ef.REJECT_OPEN, Ef.SEND_CLOSE)),
    (St.OPENING, In.WORKER_DIED): (St.CLOSED, (Ef.REJECT_OPEN, Ef.FORGET)),
    (St.OPEN, In.STATS): (St.OPEN, (Ef.UPDATE,)),
    (St.OPEN, In.TIMEOUT): (St.OPEN, (Ef.REPORT_TIMEOUT,)),
    (St.OPEN, In.FAILED): (St.CLOSED, (Ef.REPORT_FAILURE, Ef.FINAL, Ef.FORGET)),
    (St.OPEN, In.CLOSE): (St.CLOSING, (Ef.SEND_CLOSE,)),
    (St.OPEN, In.WORKER_DIED): (
        St.CLOSED,
        (Ef.SALVAGE_RECORDING, Ef.REPORT_FAILURE, Ef.FINAL, Ef.FORGET),
    ),
    (St.OPEN, In.AUDIO): (St.OPEN, (Ef.AUDIO,)),
    (St.CLOSING, In.OPENED): (St.CLOSING, ()),  # opened after we gave up waiting
    (St.CLOSING, In.STATS): (St.CLOSING, (Ef.UPDATE,)),
    (St.CLOSING, In.TIMEOUT): (St.CLOSING, ()),  # the call is ending anyway
    (St.CLOSING, In.FAILED): (St.CLOSED, (Ef.FINAL, Ef.FORGET)),
    (St.CLOSING, In.CLOSED): (St.CLOSED, (Ef.UPDATE, Ef.FINAL, Ef.FORGET)),
    (St.CLOSING, In.CLOSE): (St.CLOSING, ()),
    (St.CLOSING, In.WORKER_DIED): (St.CLOSED, (Ef.SALVAGE_RECORDING, Ef.FINAL, Ef.FORGET)),
    (St.CLOSING, In.AUDIO): (St.CLOSING, (Ef.AUDIO,)),  # Recorded comes before Closed
    (St.CLOSED, In.CLOSE): (St.CLOSED, ()),
    (St.CLOSED, In.WORKER_DIED): (St.CLOSED, ()),
    (St.OPENING, In.ENGINE_CLOSED): (St.CLOSED, (Ef.REJECT_OPEN, Ef.FORGET)),
    (St.OPEN, In.ENGINE_CLOSED): (St.CLOSED, (Ef.FINAL, Ef.FORGET)),
    (St.CLOSING, In.ENGINE_CLOSED): (St.CLOSED, (Ef.FINAL, Ef.FORGET)),
    (St.CLOSED, In.ENGINE_CLOSED): (St.CLOSED, ()),
}
del St, In, Ef

INPUT_OF: dict[type[FromWorker], Input] = {
    Opened: Input.OPENED,
    Failed: Input.FAILED,
    Stats: Input.STATS,
    Timeout: Input.TIMEOUT,
    Closed: Input.CLOSED,
    PlayDone: Input.AUDIO,
    Digit: Input.AUDIO,
    Recorded: Input.AUDIO,
}


def session_step(state: SessionState, event: Input) -> tuple[SessionState, tuple[Effect, ...]]:
    """Next state and the effects the engine must carry out, in order.

    ControlError for a pair with no row: a worker message that makes no
    sense in `state` (the daemon's own inputs have a row wherever they occur).
    """
    row = SESSION_TABLE.get((state, event))
    if row is None:
        _fail(f"{event.value} for a session that is {state.value}")
    return row
