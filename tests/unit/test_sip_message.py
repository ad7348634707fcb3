"""pbx.sip.message: parse, serialize, Headers, StreamFramer, make_response; status and ids."""

from __future__ import annotations

import os

import pytest

from pbx.sip.framing import StreamFramer
from pbx.sip.headers import CSeq
from pbx.sip.ids import CountingIds, RandomIds
from pbx.sip.message import (
    MAX_HEADERS,
    MAX_MESSAGE,
    MAX_VIAS,
    Headers,
    Request,
    Response,
    SipParseError,
    is_keepalive,
    parse,
    serialize,
)
from pbx.sip.responses import make_response, response_for_error
from pbx.sip.status import Status, reason_phrase

SDP = b"v=0\r\no=- 1 1 IN IP4 198.51.100.7\r\ns=-\r\nc=IN IP4 198.51.100.7\r\nt=0 0\r\n"


def invite(extra: str = "", body: bytes = SDP, length: int | None = None) -> bytes:
    cl = len(body) if length is None else length
    head = (
        "INVITE sip:+14155550101@pbx.example SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+12125550123@trunk.example>;tag=f1\r\n"
        "To: <sip:+14155550101@pbx.example>\r\n"
        "Call-ID: c1@trunk.example\r\n"
        "CSeq: 1 INVITE\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {cl}\r\n\r\n"
    )
    return head.encode() + body


def test_parse_request_and_accessors() -> None:
    msg = parse(invite())
    assert isinstance(msg, Request)
    assert (msg.method, msg.uri, msg.body) == ("INVITE", "sip:+14155550101@pbx.example", SDP)
    assert msg.call_id == "c1@trunk.example"
    assert msg.cseq == CSeq(1, "INVITE")
    assert msg.branch == "z9hG4bK-1"
    assert msg.from_.tag == "f1"
    assert msg.to.tag is None
    assert msg.max_forwards == 70
    ct = msg.content_type
    assert ct is not None
    assert ct.mime == "application/sdp"
    assert msg.request_uri.user == "+14155550101"
    assert "Content-Length" not in msg.headers  # framing is owned by serialize


def test_serialize_round_trip_is_byte_exact_for_canonical_input() -> None:
    data = invite()
    assert serialize(parse(data)) == data
    assert bytes(parse(data)) == data


def test_compact_forms_and_case_are_canonicalised() -> None:
    data = (
        b"OPTIONS sip:pbx.example SIP/2.0\r\n"
        b"v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKa\r\n"
        b"f: <sip:a@b.example>;tag=1\r\nt: <sip:pbx.example>\r\ni: x@y\r\n"
        b"cseq: 5 OPTIONS\r\nm: <sip:a@192.0.2.1>\r\nk: timer\r\nl: 0\r\n\r\n"
    )
    msg = parse(data)
    assert [n for n, _ in msg.headers.items()] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Supported",
    ]  # fmt: skip
    assert msg.headers.get("CALL-ID") == msg.headers.get("i") == "x@y"
    assert b"Call-ID: x@y\r\n" in serialize(msg)


def test_folding_and_whitespace() -> None:
    data = invite("Subject: first\r\n  second\r\n\tthird\r\nX-Pad :   v  \r\n")
    msg = parse(data)
    assert msg.headers.get("Subject") == "first second third"
    assert msg.headers.get("x-pad") == "v"


def test_unknown_method_and_header_kept_verbatim() -> None:
    data = (
        b"NEWMETHOD sip:pbx.example SIP/2.0\r\nVia: SIP/2.0/UDP h.example;branch=z9hG4bKq\r\n"
        b"From: <sip:a@b.example>;tag=1\r\nTo: <sip:pbx.example>\r\nCall-ID: z\r\n"
        b"CSeq: 9 NEWMETHOD\r\nX-WeIrD-Case: keep  this\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse(data)
    assert isinstance(msg, Request)
    assert msg.method == "NEWMETHOD"
    assert msg.headers.items()[-1] == ("X-WeIrD-Case", "keep  this")
    assert serialize(msg) == data


def test_response_parse_and_method_from_cseq() -> None:
    data = (
        b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h.example;branch=z9hG4bKq\r\n"
        b"From: <sip:a@b.example>;tag=1\r\nTo: <sip:c@d.example>;tag=2\r\nCall-ID: z\r\n"
        b"CSeq: 9 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse(data)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason, msg.method) == (486, "Busy Here", "INVITE")
    assert serialize(msg) == data


def test_content_length_rules() -> None:
    # missing on UDP: the rest of the datagram
    no_cl = invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b"")
    assert parse(no_cl).body == SDP
    # longer body: truncated to Content-Length (RFC 3261 §18.3)
    assert parse(invite(body=SDP + b"garbage", length=len(SDP))).body == SDP
    # shorter body: 400
    with pytest.raises(SipParseError) as info:
        parse(invite(length=len(SDP) + 10))
    assert info.value.status_hint == 400
    # too large: 413
    with pytest.raises(SipParseError) as info:
        parse(invite(length=10_000_000))
    assert info.value.status_hint == 413


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (invite().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1), 505),
        (invite().replace(b"INVITE sip:", b"INVITE mailto:", 1), 416),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"), 400),
        (invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), 400),
        (invite().replace(b"Call-ID: c1@trunk.example\r\n", b""), 400),
        (invite().replace(b"Max-Forwards: 70", b"Max-Forwards: seventy"), 400),
        (invite().replace(b"\r\n\r\n", b"\r\n"), 400),
        (invite("Call-ID: second\r\n"), 400),
        (invite("Bad Header Line\r\n"), 400),
        (invite().replace(b"INVITE sip:", b"INVITE  sip:", 1), 400),
        (b"\x00\xff\xfe", 400),
        (b"", 400),
        (b"x" * (MAX_MESSAGE + 1), 513),
    ],
)
def test_errors_carry_status(data: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.status_hint == status


def test_error_carries_partial_headers_and_start_line() -> None:
    data = invite().replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1)
    with pytest.raises(SipParseError) as info:
        parse(data)
    err = info.value
    assert err.start_line == "INVITE sip:+14155550101@pbx.example SIP/7.0"
    assert err.partial is not None
    assert err.partial.get("Call-ID") == "c1@trunk.example"
    resp = response_for_error(err, to_tag="srv1")
    assert resp is not None
    assert resp.status == 505
    assert resp.to.tag == "srv1"
    assert parse(serialize(resp)) == resp


def test_no_error_response_without_mandatory_headers_or_for_responses() -> None:
    with pytest.raises(SipParseError) as info:
        parse(invite().replace(b"Call-ID: c1@trunk.example\r\n", b""))
    assert response_for_error(info.value) is None
    with pytest.raises(SipParseError) as info:
        parse(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
    assert response_for_error(info.value) is None


def test_bounds_headers_and_vias() -> None:
    many = "".join(f"X-H{i}: v\r\n" for i in range(MAX_HEADERS + 1))
    with pytest.raises(SipParseError) as info:
        parse(invite(many))
    assert info.value.status_hint == 513
    vias = "Via: " + ", ".join(
        f"SIP/2.0/UDP h{i}.example;branch=z9hG4bK{i}" for i in range(MAX_VIAS)
    )
    with pytest.raises(SipParseError) as info:
        parse(invite(vias + "\r\n"))
    assert info.value.status_hint == 513


def test_headers_container() -> None:
    h = Headers([("Via", "a"), ("v", "b, c"), ("Route", "<sip:r1;lr>,<sip:r2;lr>")])
    assert h.get_all("VIA") == ["a", "b", "c"]
    assert h.get_all("via", split=False) == ["a", "b, c"]
    h.add("Via", "top", first=True)
    assert h.get("Via") == "top"
    assert h.pop_first("Route") == "<sip:r1;lr>"
    assert h.get_all("Route") == ["<sip:r2;lr>"]
    h.set("via", "only")
    assert h.items() == [("Via", "only"), ("Route", "<sip:r2;lr>")]
    h.remove("Route")
    assert "route" not in h
    assert len(h) == 1
    assert h == Headers([("v", "only")])
    # WWW-Authenticate is not a list header: its commas stay.
    h.add("WWW-Authenticate", 'Digest realm="r", nonce="n"')
    assert h.get_all("WWW-Authenticate") == ['Digest realm="r", nonce="n"']
    with pytest.raises(ValueError, match="one line"):
        h.add("X-Evil", "a\r\nInjected: yes")
    h.add("X-Padded", "  v \t")
    assert h.get("x-padded") == "v"
    assert h.pop_first("X-Padded") == "v"
    assert h.pop_first("X-Padded") is None
    with pytest.raises(ValueError, match="header name"):
        h.add("Bad Name", "x")


def test_make_response_copies_rfc3261_headers() -> None:
    req = parse(invite("Record-Route: <sip:p1.example;lr>\r\nTimestamp: 54\r\n"))
    assert isinstance(req, Request)
    ringing = make_response(req, Status.RINGING, to_tag="t9")
    assert ringing.reason == "Ringing"
    assert ringing.headers.get_all("Via") == req.headers.get_all("Via")
    assert ringing.to.tag == "t9"
    assert ringing.from_ == req.from_
    assert ringing.call_id == req.call_id
    assert ringing.cseq == req.cseq
    assert ringing.headers.get("Record-Route") == "<sip:p1.example;lr>"  # RFC 3261 §12.1.1
    trying = make_response(req, 100)
    assert trying.headers.get("Timestamp") == "54"  # RFC 3261 §8.2.6.1
    assert trying.to.tag is None
    busy = make_response(req, 486, headers=[("Retry-After", "30")], to_tag="t9")
    assert "Record-Route" not in busy.headers
    assert busy.headers.get("Retry-After") == "30"
    assert parse(bytes(busy)) == busy


def test_serialize_refuses_cr_lf_in_the_start_line() -> None:
    req = parse(invite())
    assert isinstance(req, Request)
    req.uri = "sip:a@b SIP/2.0\r\nInjected: 1\r\nX:"
    with pytest.raises(ValueError, match="start line"):
        serialize(req)


def test_views_follow_header_changes() -> None:
    req = parse(invite())
    assert req.from_.tag == "f1"
    req.headers.set("From", "<sip:other@x.example>;tag=f2")
    assert req.from_.tag == "f2"
    assert req.from_ is req.from_  # cached until the header changes


def test_no_answer_to_a_broken_ack() -> None:
    data = invite().replace(b"INVITE", b"ACK").replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1)
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.status_hint == 505
    assert response_for_error(info.value) is None


def test_make_response_keeps_existing_to_tag() -> None:
    req = parse(invite().replace(b"To: <sip:+14155550101@pbx.example>", b"To: <sip:x@y>;tag=old"))
    assert isinstance(req, Request)
    assert make_response(req, 200, to_tag="new").to.tag == "old"


def test_stream_framer_splits_and_skips_keepalives() -> None:
    one, two = invite(), invite().replace(b"CSeq: 1", b"CSeq: 2")
    framer = StreamFramer()
    stream = b"\r\n\r\n" + one + b"\r\n" + two
    got = [m for i in range(0, len(stream), 7) for m in framer.feed(stream[i : i + 7])]
    assert got == [parse(one), parse(two)]
    assert framer.buffered == 0


def test_stream_framer_rejects_bad_message_but_continues() -> None:
    framer = StreamFramer()
    bad = invite().replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE")
    assert framer.feed(bad + invite()) == [parse(invite())]
    rejected = framer.take_rejected()
    assert len(rejected) == 1
    assert rejected[0].status_hint == 400
    assert framer.take_rejected() == []


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (invite().replace(f"Content-Length: {len(SDP)}\r\n".encode(), b""), 400),
        (invite(length=MAX_MESSAGE), 413),
        (invite().replace(f"Content-Length: {len(SDP)}".encode(), b"Content-Length: -4"), 400),
        (b"INVITE " + b"a" * (MAX_MESSAGE + 10), 513),
    ],
)
def test_stream_framer_fatal_errors(data: bytes, status: int) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError) as info:
        framer.feed(data)
    assert info.value.fatal
    assert info.value.status_hint == status
    with pytest.raises(SipParseError):
        framer.feed(invite())  # broken for good: close the connection


def test_keepalive() -> None:
    assert is_keepalive(b"\r\n\r\n")
    assert is_keepalive(b"\r\n")
    assert not is_keepalive(b"")
    assert not is_keepalive(invite())


def test_status_phrases() -> None:
    assert Status.CALL_TRANSACTION_DOES_NOT_EXIST.phrase == "Call/Transaction Does Not Exist"
    assert reason_phrase(404) == "Not Found"
    assert reason_phrase(499) == "Bad Request"  # unknown: its class's x00 (RFC 3261 §21)
    assert reason_phrase(299) == "OK"
    assert all(s.phrase for s in Status)


def test_ids() -> None:
    a, b = CountingIds("seed"), CountingIds("seed")
    seq_a = [a.branch(), a.tag(), a.call_id(), a.cnonce(), a.token(40)]
    seq_b = [b.branch(), b.tag(), b.call_id(), b.cnonce(), b.token(40)]
    assert seq_a == seq_b
    assert seq_a[0].startswith("z9hG4bK")
    assert len(set(seq_a)) == 5
    assert len(seq_a[4]) == 40
    rnd = RandomIds()
    assert rnd.branch().startswith("z9hG4bK")
    assert rnd.tag() != rnd.tag()
    assert len(rnd.token(7)) == 7
    assert CountingIds("bad seed;@").tag().startswith("badseed-")


def test_random_ids_use_each_pooled_byte_once_and_refill() -> None:
    rnd = RandomIds()
    values = [rnd.call_id() for _ in range(1000)]  # 16 kB: the 4 kB pool refills 3 times
    assert len(set(values)) == 1000
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in values)
    assert len({v[:8] for v in values}) > 990  # no repeated runs across refills


def test_a_forked_child_does_not_reuse_the_parents_pooled_bytes() -> None:
    RandomIds().tag()  # the pool now holds bytes the child would otherwise inherit
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: write its next id and leave at once
        os.write(write_end, RandomIds().call_id().encode())
        os._exit(0)
    os.close(write_end)
    parent = RandomIds().call_id()
    with os.fdopen(read_end, "rb") as pipe:
        child = pipe.read().decode()
    os.waitpid(pid, 0)
    assert len(child) == 32
    assert child != parent
