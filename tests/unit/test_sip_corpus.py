"""Every message in tests/data/sip parses (or fails) as tests/data/sip/expected.toml says.

Valid messages must also round-trip (parse(serialize(m)) == m), expose their
typed views without error, and survive the TCP framer in small chunks.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pbx.sip.framing import StreamFramer
from pbx.sip.headers import is_star, parse_auth
from pbx.sip.message import Request, SipParseError, parse, serialize

CORPUS = Path(__file__).resolve().parents[1] / "data" / "sip"
EXPECTED: dict[str, str | int] = tomllib.loads((CORPUS / "expected.toml").read_text())["expected"]
VALID = sorted(name for name, outcome in EXPECTED.items() if outcome == "ok")
INVALID = sorted(name for name, outcome in EXPECTED.items() if outcome != "ok")


def _data(name: str) -> bytes:
    return (CORPUS / f"{name}.sip").read_bytes()


def test_every_file_has_an_expectation_and_the_corpus_is_big_enough() -> None:
    files = {p.stem for p in CORPUS.glob("*.sip")}
    assert files == set(EXPECTED)
    assert len(VALID) >= 30
    assert len(INVALID) >= 20


@pytest.mark.parametrize("name", VALID)
def test_valid_message(name: str) -> None:
    msg = parse(_data(name))
    assert parse(serialize(msg)) == msg
    assert msg.call_id
    assert msg.cseq.seq >= 0
    assert msg.vias
    assert msg.branch is not None
    _ = (msg.from_, msg.to, msg.max_forwards, msg.content_type, msg.routes, msg.record_routes)
    if not any(is_star(v) for v in msg.headers.get_all("Contact")):
        _ = msg.contacts
    for name_ in ("WWW-Authenticate", "Authorization"):
        for value in msg.headers.get_all(name_):
            assert parse_auth(value).params
    if isinstance(msg, Request):
        _ = msg.request_uri


def _framed(name: str) -> bool:
    """Messages without Content-Length are valid on UDP only (RFC 3261 §18.3)."""
    data = _data(name)
    return b"Content-Length" in data or b"\r\nl:" in data


@pytest.mark.parametrize("name", [n for n in VALID if _framed(n)])
def test_valid_message_through_the_stream_framer(name: str) -> None:
    data = _data(name)
    whole = parse(data)
    framer = StreamFramer()
    got = [m for i in range(0, len(data), 13) for m in framer.feed(data[i : i + 13])]
    assert got == [whole]
    assert framer.take_rejected() == []


@pytest.mark.parametrize("name", [n for n in VALID if not _framed(n)])
def test_message_without_content_length_is_refused_by_the_stream_framer(name: str) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(_data(name))


@pytest.mark.parametrize("name", INVALID)
def test_invalid_message(name: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse(_data(name))
    assert info.value.status_hint == EXPECTED[name]


def test_some_specific_values() -> None:
    msg = parse(_data("compact_forms"))
    assert msg.headers.get("Supported") == "timer, 100rel"
    assert msg.headers.get_all("Supported") == ["timer", "100rel"]
    assert parse(_data("folded_headers")).headers.get("Subject") == (
        "a subject that continues on a third line"
    )
    ipv6 = parse(_data("ipv6"))
    assert ipv6.top_via.host == "2001:db8::9"
    assert ipv6.top_via.received == "2001:db8::9"
    assert isinstance(ipv6, Request)
    assert ipv6.request_uri.port == 5070
    assert parse(_data("utf8_display")).from_.display == "José Müller 電話"
    assert len(parse(_data("multiple_vias")).vias) == 5
    contacts = parse(_data("register_contacts")).contacts
    assert [c.params.get("q") for c in contacts] == ["0.7", "0.5", None]
    assert contacts[1].display == "Desk, Phone"
    assert parse(_data("bare_addr_spec")).to.tag == "bare1"
    longer = parse(_data("body_longer_than_content_length"))
    assert longer.body.endswith(b"telephone-event/8000\r\n")
    assert parse(_data("binary_body")).body == b"\x00\x01\x02\r\n\r\n\xff"


def test_leading_zeros_in_the_corpus() -> None:
    msg = parse(_data("leading_zeros"))
    assert (msg.max_forwards, msg.cseq.seq, msg.top_via.port) == (70, 1, 5060)
    assert msg.contacts[0].expires == 3600
