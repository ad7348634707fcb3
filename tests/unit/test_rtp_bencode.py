"""Bencode codec: encodings from the ng protocol doc, bounds, and every refusal."""

from __future__ import annotations

import pytest

from pbx.rtp.bencode import MAX_DEPTH, BencodeError, Encodable, decode, encode


@pytest.mark.parametrize(
    ("value", "wire"),
    [
        ({"command": "ping"}, b"d7:command4:pinge"),  # ng doc example
        ({"result": "pong"}, b"d6:result4:ponge"),  # ng doc example
        (0, b"i0e"),
        (-42, b"i-42e"),
        (2**63 - 1, b"i9223372036854775807e"),
        (b"", b"0:"),
        ("é", b"2:\xc3\xa9"),
        ([], b"le"),
        ({}, b"de"),
        ([1, [b"a", {}]], b"li1el1:adeee"),
        (("tuple", 1), b"l5:tuplei1ee"),
        (bytearray(b"ab"), b"2:ab"),
    ],
)
def test_encode_examples(value: Encodable, wire: bytes) -> None:
    assert encode(value) == wire


def test_encode_sorts_keys_by_bytes() -> None:
    mixed = {"to-tag": "b", "call-id": "x", "from-tag": "a", b"Z": 1}  # mixed key types work
    wire = encode(mixed)  # type: ignore[arg-type]
    assert wire == b"d1:Zi1e7:call-id1:x8:from-tag1:a6:to-tag1:be"


def test_decode_returns_bytes_and_dicts_with_bytes_keys() -> None:
    assert decode(b"d6:result2:ok3:sdp3:v=0e") == {b"result": b"ok", b"sdp": b"v=0"}
    assert decode(b"li-3e0:d1:ai0eee") == [-3, b"", {b"a": 0}]


def test_decode_accepts_unsorted_keys_like_rtpengine_sends() -> None:
    # ng doc: "lexicographical order ... is currently not honored"
    assert decode(b"d6:result2:ok4:SSRCdee") == {b"result": b"ok", b"SSRC": {}}


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"i03e", "non-canonical"),
        (b"i-0e", "non-canonical"),
        (b"i-00e", "non-canonical"),
        (b"ie", "bad integer"),
        (b"i-e", "bad integer"),
        (b"i1.5e", "bad integer"),
        (b"i" + b"9" * 30 + b"e", "oversized"),
        (b"i12", "unterminated"),
        (b"03:abc", "bad string length"),
        (b"5:ab", "truncated"),
        (b"99999999999:a", "bad string length"),
        (b"3", "bad string length"),
        (b"l", "unterminated list"),
        (b"li1e", "unterminated list"),
        (b"d", "unterminated dictionary"),
        (b"d1:a", "truncated"),
        (b"di1ei2ee", "not a string"),
        (b"d1:ai1e1:ai2ee", "duplicate key"),
        (b"i1ex", "trailing"),
        (b"x", "unexpected byte"),
        (b"e", "unexpected byte"),
    ],
)
def test_decode_refuses(data: bytes, why: str) -> None:
    with pytest.raises(BencodeError, match=why):
        decode(data)


def test_decode_depth_bound() -> None:
    assert decode(b"l" * MAX_DEPTH + b"e" * MAX_DEPTH) is not None
    with pytest.raises(BencodeError, match="nesting deeper than"):
        decode(b"l" * (MAX_DEPTH + 1) + b"e" * (MAX_DEPTH + 1))
    with pytest.raises(BencodeError, match="nesting deeper than 2"):
        decode(b"d1:alleee", max_depth=2)
    assert decode(b"d1:alee", max_depth=2) == {b"a": []}


def test_decode_length_bound() -> None:
    with pytest.raises(BencodeError, match="exceeds 10"):
        decode(b"20:" + b"x" * 20, max_length=10)


def test_decode_refuses_non_bytes() -> None:
    with pytest.raises(BencodeError, match="expected bytes"):
        decode("i1e")  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [True, 1.5, None, object(), {1: "a"}])
def test_encode_refuses_values_without_bencode_form(value: object) -> None:
    with pytest.raises(BencodeError, match=r"cannot encode|key must be text"):
        encode(value)  # type: ignore[arg-type]


def test_encode_refuses_duplicate_keys_after_utf8() -> None:
    with pytest.raises(BencodeError, match="duplicate key"):
        encode({"a": 1, b"a": 2})  # type: ignore[arg-type]


def test_encode_refuses_cycles_by_depth() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(BencodeError, match="too deep"):
        encode(loop)  # type: ignore[arg-type]
