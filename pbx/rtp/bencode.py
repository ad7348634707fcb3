"""Bencode encoder and bounded decoder for rtpengine's ng protocol (pure).

Bencode (BitTorrent BEP 3) has four kinds of value: integers `i42e`, byte
strings `4:spam`, lists `l...e` and dictionaries `d...e` whose keys are byte
strings. rtpengine's ng control protocol carries one bencoded dictionary per
datagram (docs/ng_control_protocol.md in sipwise/rtpengine).

Decisions:
- Own codec rather than a PyPI one, so that every malformed input ends in
  `BencodeError` and nothing else (no `ValueError`, `IndexError`,
  `RecursionError`): `decode(any bytes)` returns a value or raises
  `BencodeError`, which a property test checks.
- Bounded: input longer than `max_length` (default 65535, the largest UDP
  payload) or nesting deeper than `max_depth` (default 32; ng replies nest
  about 6 deep, see the `query` reply) is refused before any work is done or
  as soon as the depth is reached. Integers are capped at 20 digits (a
  signed 64-bit value, what rtpengine's C counters hold) so that a hostile
  `i999...9e` cannot make int() parse megabytes of digits.
- Strict where the format has one spelling: no leading zeros (`i03e`,
  `03:abc`), no `i-0e`, no empty `ie`, nothing after the top-level value.
- Lenient where rtpengine is: dictionary keys need not be sorted ("the
  bencode standard's requirement that dictionary keys must be presented in
  the lexicographical order is currently not honored", ng protocol doc).
  A repeated key is refused, since which copy would win is undefined.
- The encoder always sorts keys by their bytes (canonical output) and takes
  `str` for convenience (encoded as UTF-8); decoded strings are always
  `bytes` and decoded keys `bytes`, because SDP and tags are bytes on the
  wire and the caller knows which ones are text. `bool` is refused: it is an
  `int` in Python but has no bencode form, and silently sending `1` would
  hide a bug.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

from pbx.errors import PbxError

# What decode() returns. Encode accepts a wider `Encodable` (str, tuples).
Value: TypeAlias = "int | bytes | list[Value] | dict[bytes, Value]"
Encodable: TypeAlias = (
    "int | bytes | str | Sequence[Encodable] | Mapping[str, Encodable] | Mapping[bytes, Encodable]"
)

MAX_LENGTH = 65535  # one UDP datagram's payload at most
MAX_DEPTH = 32  # ng replies nest ~6 levels (query: tags > medias > streams > stats)
MAX_INT_DIGITS = 20  # -9223372036854775808 has 19 digits plus sign
MAX_LENGTH_DIGITS = 10  # string length prefix; bounded by MAX_LENGTH anyway

_DIGITS = frozenset(b"0123456789")


class BencodeError(PbxError):
    """Input is not bencode we accept, or a value has no bencode form."""


def encode(value: Encodable, *, max_depth: int = MAX_DEPTH) -> bytes:
    """Bencode `value`; dictionary keys sorted by their bytes.

    Raises BencodeError for types bencode cannot express (float, None, bool)
    and for nesting deeper than `max_depth` (which also catches cycles).
    """
    out: list[bytes] = []
    _encode_into(value, out, max_depth)
    return b"".join(out)


def _encode_into(value: Encodable, out: list[bytes], depth: int) -> None:
    if depth < 0:
        raise BencodeError("bencode: nesting too deep to encode")
    if isinstance(value, bool):
        raise BencodeError("bencode: cannot encode a bool (use 0/1 or a string)")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, bytes | bytearray | memoryview | str):
        raw = value.encode() if isinstance(value, str) else bytes(value)
        out.append(b"%d:" % len(raw))
        out.append(raw)
    elif isinstance(value, Mapping):
        _encode_dict(value, out, depth)
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode_into(item, out, depth - 1)
        out.append(b"e")
    else:
        raise BencodeError(f"bencode: cannot encode {type(value).__name__}")


def _encode_dict(value: Mapping[Any, Encodable], out: list[bytes], depth: int) -> None:
    # keys typed Any: a wrong key must reach the BencodeError below, also compiled
    items: dict[bytes, Encodable] = {}
    for key, item in value.items():
        if not isinstance(key, bytes | str):
            raise BencodeError(f"bencode: dictionary key must be text, not {type(key).__name__}")
        raw = key.encode() if isinstance(key, str) else key
        if raw in items:
            raise BencodeError(f"bencode: duplicate key {raw!r}")
        items[raw] = item
    out.append(b"d")
    for raw in sorted(items):
        out.append(b"%d:" % len(raw))
        out.append(raw)
        _encode_into(items[raw], out, depth - 1)
    out.append(b"e")


def decode(data: object, *, max_depth: int = MAX_DEPTH, max_length: int = MAX_LENGTH) -> Value:
    """Decode exactly one bencoded value filling all of `data`.

    Returns int, bytes, list or dict (bytes keys). Raises BencodeError, and
    nothing else, for any input that is not one complete value within bounds
    (`data` is typed `object` because non-bytes is one such input: a typed
    `bytes` parameter would raise TypeError first where pbx is compiled).
    """
    if not isinstance(data, bytes):
        raise BencodeError(f"bencode: expected bytes, got {type(data).__name__}")
    if len(data) > max_length:
        raise BencodeError(f"bencode: input of {len(data)} bytes exceeds {max_length}")
    if not data:
        raise BencodeError("bencode: empty input")
    value, end = _Decoder(data, max_depth).value(0, 0)
    if end != len(data):
        raise BencodeError(f"bencode: {len(data) - end} bytes of trailing data at offset {end}")
    return value


class _Decoder:
    """Recursive descent over one buffer; every method returns (value, next offset)."""

    def __init__(self, data: bytes, max_depth: int) -> None:
        self.data = data
        self.max_depth = max_depth

    def value(self, pos: int, depth: int) -> tuple[Value, int]:
        if pos >= len(self.data):
            raise BencodeError(f"bencode: truncated at offset {pos}")
        lead = self.data[pos]
        if lead == 0x69:  # i
            return self.integer(pos)
        if lead in _DIGITS:
            return self.string(pos)
        if lead in (0x6C, 0x64):  # l, d
            if depth >= self.max_depth:
                raise BencodeError(f"bencode: nesting deeper than {self.max_depth}")
            if lead == 0x6C:
                return self.list(pos + 1, depth + 1)
            return self.dict(pos + 1, depth + 1)
        raise BencodeError(f"bencode: unexpected byte {bytes([lead])!r} at offset {pos}")

    def integer(self, pos: int) -> tuple[int, int]:
        end = self.data.find(b"e", pos + 1, pos + 3 + MAX_INT_DIGITS)  # sign + digits
        if end < 0:
            raise BencodeError(f"bencode: unterminated or oversized integer at offset {pos}")
        text = self.data[pos + 1 : end]
        digits = text[1:] if text.startswith(b"-") else text
        if not digits.isdigit():  # bytes.isdigit: ASCII 0-9 only, False when empty
            raise BencodeError(f"bencode: bad integer {text!r} at offset {pos}")
        if (digits.startswith(b"0") and len(digits) > 1) or text == b"-0":
            raise BencodeError(f"bencode: non-canonical integer {text!r} at offset {pos}")
        return int(text), end + 1

    def string(self, pos: int) -> tuple[bytes, int]:
        colon = self.data.find(b":", pos, pos + 1 + MAX_LENGTH_DIGITS)
        if colon < 0:
            raise BencodeError(f"bencode: bad string length at offset {pos}")
        prefix = self.data[pos:colon]
        if not prefix.isdigit() or (prefix.startswith(b"0") and len(prefix) > 1):
            raise BencodeError(f"bencode: bad string length {prefix!r} at offset {pos}")
        start = colon + 1
        end = start + int(prefix)
        if end > len(self.data):
            raise BencodeError(f"bencode: string of {int(prefix)} bytes truncated at offset {pos}")
        return self.data[start:end], end

    def list(self, pos: int, depth: int) -> tuple[list[Value], int]:
        items: list[Value] = []
        while True:
            if pos >= len(self.data):
                raise BencodeError("bencode: unterminated list")
            if self.data[pos] == 0x65:  # e
                return items, pos + 1
            item, pos = self.value(pos, depth)
            items.append(item)

    def dict(self, pos: int, depth: int) -> tuple[dict[bytes, Value], int]:
        items: dict[bytes, Value] = {}
        while True:
            if pos >= len(self.data):
                raise BencodeError("bencode: unterminated dictionary")
            if self.data[pos] == 0x65:  # e
                return items, pos + 1
            if self.data[pos] not in _DIGITS:
                raise BencodeError(f"bencode: dictionary key at offset {pos} is not a string")
            key, pos = self.string(pos)
            if key in items:
                raise BencodeError(f"bencode: duplicate key {key[:40]!r}")
            items[key], pos = self.value(pos, depth)
