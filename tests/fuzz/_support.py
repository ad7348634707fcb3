"""Shared pieces of the fuzz targets: the active profile and byte/line mutators."""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st

DATA = Path(__file__).resolve().parents[1] / "data"


def fuzz_settings() -> settings:
    """`fuzz-long` when HYPOTHESIS_PROFILE asks for it, else the short `fuzz` profile."""
    name = os.environ.get("HYPOTHESIS_PROFILE", "fuzz")
    return settings(settings.get_profile(name if name.startswith("fuzz") else "fuzz"))


def corpus(kind: str, suffix: str) -> list[bytes]:
    """Every file of tests/data/<kind>/*<suffix>, sorted, as bytes."""
    return [p.read_bytes() for p in sorted((DATA / kind).glob(f"*{suffix}"))]


# Tokens that break parsers: separators, numbers at the edges, odd encodings.
INTERESTING = [
    b"\r\n", b"\n", b"\r", b"\r\n\r\n", b"\x00", b" ", b"\t", b":", b";", b",", b"<", b">",
    b'"', b"\\", b"=", b"@", b"[", b"]", b"/", b"%", b"%00", b"0", b"-1", b"65536",
    b"4294967296", b"99999999999999999999", b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80",
    b"SIP/2.0", b"sip:", b"sips:", b"tel:", b";branch=", b";tag=", b";rport", b";received=",
    b"Content-Length: ", b"l: 999", b"Via: SIP/2.0/UDP ", b"v=0", b"c=IN IP4 ", b"c=IN IP6 ",
    b"m=audio ", b"a=rtcp:", b"IP4", b"IP6", b"::", b"0.0.0.0", b"[::1]", b"a" * 300,
    "\u00b2".encode(), "\u0661\u0662".encode(), "\uff11".encode(),  # non-ASCII digits
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], max_ops: int = 6) -> bytes:
    """A seed with up to `max_ops` random byte-level edits (AFL's havoc, simplified)."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.integers(0, 6))
        at = draw(st.integers(0, len(data)))
        if op == 0 and data:  # flip a byte
            at = min(at, len(data) - 1)
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:  # insert an interesting token
            data[at:at] = draw(st.sampled_from(INTERESTING))
        elif op == 2:  # insert random bytes
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == 3:  # delete a range
            data[at : at + draw(st.integers(1, 32))] = b""
        elif op == 4 and data:  # duplicate a range somewhere else
            n = draw(st.integers(1, 64))
            chunk = bytes(data[at : at + n])
            data[draw(st.integers(0, len(data))) : 0] = chunk
        elif op == 5:  # splice in part of another seed
            other = draw(st.sampled_from(seeds))
            cut = draw(st.integers(0, len(other)))
            data[at:] = other[cut:]
        else:  # overwrite a byte with an interesting single byte
            if data:
                data[min(at, len(data) - 1)] = draw(st.sampled_from(b'\r\n\x00 :;,<>"\\=@\xff'))
    return bytes(data)


@st.composite
def line_mutated(draw: st.DrawFn, seeds: list[bytes], sep: bytes = b"\r\n") -> bytes:
    """A seed with whole lines dropped, duplicated, swapped or given odd values."""
    head, blank, body = draw(st.sampled_from(seeds)).partition(sep + sep)
    lines = head.split(sep)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.integers(0, 3))
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(draw(st.integers(0, len(lines))), lines[i])
        elif op == 2:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            name, colon, _ = lines[i].partition(b":")
            value = draw(st.sampled_from(INTERESTING) | st.binary(max_size=40))
            lines[i] = name + (colon or b":") + b" " + value
    return sep.join(lines) + blank + body
