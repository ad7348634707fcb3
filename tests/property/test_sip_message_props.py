"""Hypothesis properties of pbx.sip.message / headers / uri.

- generated messages round-trip: parse(serialize(m)) == m;
- arbitrary bytes, and valid messages with random damage, give a Message or
  SipParseError, nothing else (and a parsed message's views raise nothing else);
- the TCP framer with random chunking yields what whole parsing yields;
- generated URIs, Vias and name-addrs round-trip through str().
"""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.framing import StreamFramer
from pbx.sip.headers import NameAddr, Via, parse_name_addr, parse_via, quote_string
from pbx.sip.message import Headers, Message, Request, Response, SipParseError, parse, serialize
from pbx.sip.uri import SipUri, parse_uri, uri_equal

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TOKEN_CHARS = string.ascii_letters + string.digits + "-.!%*_+`'~"
token = st.text(TOKEN_CHARS, min_size=1, max_size=12)
label = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
hostname = st.lists(label, min_size=1, max_size=3).map(".".join)
host = st.one_of(
    hostname,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
port = st.none() | st.integers(1, 65535)
# Any text without surrogates or control characters but HT: what a header
# value may hold (RFC 3261 §25.1 TEXT-UTF8; NUL and friends are a 400).
line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.just("\t"), max_size=40)
value_text = line_text.map(lambda s: s.strip(" \t"))
param_name = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=8)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(
        st.none() | st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
    )
    password = None if user is None else draw(st.none() | line_text)
    params = draw(st.dictionaries(param_name, st.none() | line_text.filter(bool), max_size=3))
    headers = draw(st.dictionaries(token, line_text, max_size=2))
    scheme = draw(st.sampled_from(["sip", "sips"]))
    return SipUri(scheme, user, password, draw(host), draw(port), params, headers)


header_params = st.dictionaries(
    token.map(str.lower), st.none() | token | line_text.filter(bool), max_size=3
)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params = {"branch": "z9hG4bK" + draw(token), **draw(header_params)}
    return Via(draw(st.sampled_from(["UDP", "TCP", "TLS", "WS"])), draw(host), draw(port), params)


@st.composite
def name_addrs(draw: st.DrawFn) -> NameAddr:
    display = draw(st.none() | line_text)
    return NameAddr(display, draw(sip_uris()), draw(header_params))


FREE_HEADERS = ["Subject", "s", "User-Agent", "Allow", "k", "Contact", "Date", "X-Extra", "P-Note"]


@st.composite
def messages(draw: st.DrawFn) -> Message:
    method = draw(st.sampled_from(["INVITE", "BYE", "OPTIONS", "REGISTER"]) | token)
    h = Headers()
    for via in draw(st.lists(vias(), min_size=1, max_size=3)):
        h.add("Via", str(via))
    h.add("From", str(draw(name_addrs())))
    h.add("To", str(draw(name_addrs())))
    h.add("Call-ID", draw(token) + "@" + draw(hostname))
    extra = draw(st.lists(st.tuples(st.sampled_from(FREE_HEADERS), value_text), max_size=5))
    for name, value in extra:
        h.add(name, value)
    if draw(st.booleans()):
        h.add("Max-Forwards", str(draw(st.integers(0, 255))))
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        h.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
        return Request(method, str(draw(sip_uris())), h, body)
    h.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    return Response(draw(st.integers(100, 699)), draw(line_text), h, body)


@SETTINGS
@given(messages())
def test_generated_messages_round_trip(msg: Message) -> None:
    data = serialize(msg)
    again = parse(data)
    assert again == msg
    assert serialize(again) == data


def _parse_or_error(data: bytes) -> Message | None:
    try:
        msg = parse(data)
    except SipParseError:
        return None
    assert isinstance(msg, (Request, Response))
    serialize(msg)
    try:  # views may reject what parse did not check, but only with SipParseError
        _ = (msg.vias, msg.contacts, msg.routes, msg.record_routes, msg.content_type)
        if isinstance(msg, Request):
            _ = msg.request_uri
    except SipParseError:
        pass
    return msg


@SETTINGS
@given(st.binary(max_size=600))
def test_arbitrary_bytes_parse_or_raise_sip_parse_error(data: bytes) -> None:
    _parse_or_error(data)


@SETTINGS
@given(st.binary(max_size=300), st.binary(max_size=300))
def test_arbitrary_bytes_around_a_start_line(prefix: bytes, rest: bytes) -> None:
    _parse_or_error(b"INVITE sip:a@b SIP/2.0\r\n" + prefix + b"\r\n\r\n" + rest)


DAMAGE = [b"\r\n", b":", b" ", b";", b",", b'"', b"<", b"\x00", b"\xff", b"\r\n ", b"%"]


@SETTINGS
@given(messages(), st.data())
def test_damaged_messages_parse_or_raise_sip_parse_error(msg: Message, data: st.DataObject) -> None:
    raw = bytearray(serialize(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        chunk = data.draw(st.sampled_from(DAMAGE))
        if kind == "delete":
            del raw[at : at + data.draw(st.integers(1, 20))]
        elif kind == "insert":
            raw[at:at] = chunk
        else:
            raw[at : at + len(chunk)] = chunk
    _parse_or_error(bytes(raw))


@SETTINGS
@given(st.lists(messages(), min_size=1, max_size=4), st.data())
def test_framer_random_chunking_matches_whole_parsing(
    msgs: list[Message], data: st.DataObject
) -> None:
    keepalive = data.draw(st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]))
    stream = b"".join(keepalive + serialize(m) for m in msgs)
    # cut points drawn independently of the stream's length, then scaled to it
    cuts = sorted(c % (len(stream) + 1) for c in data.draw(st.lists(st.integers(0, 2**16))))
    framer = StreamFramer()
    got: list[Message] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got += framer.feed(stream[start:end])
    assert got == [parse(serialize(m)) for m in msgs]
    assert framer.take_rejected() == []
    assert framer.buffered == 0


@SETTINGS
@given(sip_uris())
def test_uri_str_round_trip(uri: SipUri) -> None:
    again = parse_uri(str(uri))
    assert again == uri
    assert uri_equal(again, uri)


@SETTINGS
@given(vias())
def test_via_str_round_trip(via: Via) -> None:
    assert parse_via(str(via)) == via


@SETTINGS
@given(name_addrs())
def test_name_addr_str_round_trip(na: NameAddr) -> None:
    assert parse_name_addr(str(na)) == na


@SETTINGS
@given(line_text)
def test_quoted_display_round_trip(text: str) -> None:
    na = parse_name_addr(f"{quote_string(text)} <sip:a@b.example>")
    assert na.display == text
