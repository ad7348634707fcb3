"""Fuzz targets for the SIP parser and the TCP framer (pbx.sip.message).

Properties, on arbitrary bytes and on corpus messages (tests/data/sip) with
random byte- and line-level damage:
- `parse` gives a Message or raises SipParseError, nothing else;
- on a parsed message every typed view gives a value or SipParseError;
- a parsed message serialises, and parse(serialize(m)) == m (idempotent);
- `response_for_error` answers an error with None or a serialisable response;
- `StreamFramer`, fed a damaged stream in random chunks, returns messages,
  rejects (SipParseError) or fails fatally (SipParseError, fatal=True), keeps
  at most MAX_MESSAGE bytes buffered, and stays failed once failed.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.framing import StreamFramer
from pbx.sip.message import MAX_MESSAGE, Message, Request, SipParseError, parse, serialize
from pbx.sip.responses import response_for_error

from ._support import corpus, fuzz_settings, line_mutated, mutated

SEEDS = corpus("sip", ".sip")
VIEWS = (
    "call_id", "cseq", "vias", "top_via", "branch", "from_", "to", "contacts",
    "record_routes", "routes", "max_forwards", "content_type",
)  # fmt: skip
sip_inputs = st.one_of(
    st.binary(max_size=2000),
    mutated(SEEDS),
    line_mutated(SEEDS),
    mutated(SEEDS).map(lambda b: b.replace(b"\r\n", b"\n")),
)


def exercise(view: object) -> None:
    """Read every property of a typed view (Via, NameAddr, CSeq, URI...)."""
    for item in view if isinstance(view, list) else [view]:
        for name in dir(item):
            if not name.startswith("_") and not callable(getattr(type(item), name, None)):
                getattr(item, name)
        str(item)


def check_parse(data: bytes) -> Message | None:
    """Parse `data` and exercise everything a parsed message offers."""
    try:
        msg = parse(data)
    except SipParseError as err:
        reply = response_for_error(err, to_tag="fz1")
        if reply is not None:  # sent as is: it must serialise (its Via may be broken)
            assert serialize(reply).startswith(b"SIP/2.0 ")
        return None
    for name in VIEWS:
        with contextlib.suppress(SipParseError):
            exercise(getattr(msg, name))
    if isinstance(msg, Request):
        with contextlib.suppress(SipParseError):
            exercise(msg.request_uri)
    return msg


def check_idempotent(msg: Message) -> None:
    wire = serialize(msg)
    again = parse(wire)
    assert again == msg
    assert serialize(again) == wire


@fuzz_settings()
@given(sip_inputs)
def test_parse_gives_a_message_or_sip_parse_error(data: bytes) -> None:
    msg = check_parse(data)
    if msg is not None:
        check_idempotent(msg)


def test_every_corpus_file_is_exercised() -> None:
    assert len(SEEDS) >= 40
    parsed = [m for m in map(check_parse, SEEDS) if m is not None]
    assert parsed, "some corpus messages parse"
    for msg in parsed:
        check_idempotent(msg)


@fuzz_settings()
@given(st.lists(sip_inputs, min_size=1, max_size=4), st.data())
def test_framer_survives_damaged_streams_in_random_chunks(
    frames: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(frames)
    framer = StreamFramer()
    failed: SipParseError | None = None
    at = 0
    while at < len(stream):
        n = data.draw(st.integers(1, max(1, len(stream) - at)))
        try:
            for msg in framer.feed(stream[at : at + n]):
                check_idempotent(msg)
        except SipParseError as err:
            failed = err
            break
        for err in framer.take_rejected():
            assert isinstance(err, SipParseError)
        assert framer.buffered <= MAX_MESSAGE + n
        at += n
    if failed is not None:
        assert failed.fatal
        with pytest.raises(SipParseError) as again:
            framer.feed(b"OPTIONS sip:a SIP/2.0\r\n\r\n")
        assert again.value.fatal
