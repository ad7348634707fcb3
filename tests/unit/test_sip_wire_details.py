"""Wire details of issue 16: numeric grammar, control octets, 420 Bad Extension.

Pure parts without sockets (plus hypothesis properties); the agent's answers
over real UDP and TCP sockets on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.agent import SipAgent
from pbx.sip.framing import StreamFramer
from pbx.sip.headers import MAX_SEQ, parse_cseq, parse_digits, parse_name_addr, parse_rack
from pbx.sip.ids import CountingIds
from pbx.sip.message import Request, Response, SipParseError, parse
from pbx.sip.responses import bad_extension, response_for_error, unsupported_extensions
from pbx.sip.transaction import TimerConfig

FAST = TimerConfig(t1=0.05, t2=0.2, t4=0.2, d=0.2)
Make = Callable[[int, str], bytes]  # (our port, transport) -> request bytes
Exchange = Callable[[SipAgent, Make], Awaitable[Response]]


def message(
    method: str = "OPTIONS",
    *,
    extra: str = "",
    max_forwards: str = "70",
    cseq: str = "1",
    port: int = 5070,
    transport: str = "UDP",
    content_length: str = "0",
) -> bytes:
    return (
        f"{method} sip:+14155550101@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} 127.0.0.1:{port};branch=z9hG4bKwire1\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        "From: <sip:+14155550102@127.0.0.1>;tag=w1\r\n"
        "To: <sip:+14155550101@127.0.0.1>\r\n"
        "Call-ID: wire-1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"{extra}"
        f"Content-Length: {content_length}\r\n\r\n"
    ).encode("utf-8", "surrogateescape")


# -- numbers ------------------------------------------------------------------------


def test_leading_zeros_are_digits() -> None:
    msg = parse(message(max_forwards="0070", cseq="00000000000000042"))
    assert msg.max_forwards == 70
    assert msg.cseq.seq == 42
    assert parse(message(content_length="0000000000000")).body == b""
    assert parse_rack("0001 0000000002 INVITE").cseq == 2
    assert parse_name_addr("<sip:a@b>;expires=0003600").expires == 3600


@pytest.mark.parametrize(
    ("max_forwards", "cseq", "content_length", "status"),
    [
        ("256", "1", "0", 400),  # RFC 3261 §20.22: 0-255
        ("1" + "0" * 5000, "1", "0", 400),  # past Python's int-from-str limit: no crash
        ("70", str(MAX_SEQ + 1), "0", 400),  # RFC 3261 §8.1.1.5: below 2**31
        ("70", "1", "9" * 30, 413),
        ("7\u00b2", "1", "0", 400),  # str.isdigit() is true for a superscript two
        ("70", "1", "-0", 400),
    ],
)
def test_numbers_out_of_bounds_are_refused(
    max_forwards: str, cseq: str, content_length: str, status: int
) -> None:
    with pytest.raises(SipParseError) as info:
        parse(message(max_forwards=max_forwards, cseq=cseq, content_length=content_length))
    assert info.value.status_hint == status


def test_stream_framer_reads_leading_zeros_in_content_length() -> None:
    data = message(content_length="0000000004").replace(b"\r\n\r\n", b"\r\n\r\nbody")
    framer = StreamFramer()
    [msg] = framer.feed(data)
    assert msg.body == b"body"


@given(st.integers(min_value=0, max_value=10**12), st.integers(min_value=0, max_value=30))
def test_parse_digits_is_the_value_whatever_the_zeros(value: int, zeros: int) -> None:
    text = "0" * zeros + str(value)
    maximum = 2**32 - 1
    assert parse_digits(text, maximum) == (value if value <= maximum else None)
    assert parse_cseq(f"{text} INVITE").seq == value if value <= MAX_SEQ else True


@given(st.text(max_size=12))
def test_parse_digits_never_raises(text: str) -> None:
    got = parse_digits(text, 255)
    assert got is None or (0 <= got <= 255 and text.isascii() and text.isdigit())


# -- control octets -----------------------------------------------------------------


@pytest.mark.parametrize("octet", ["\x00", "\x01", "\x1b", "\x7f", "\x0b"])
def test_a_control_octet_in_a_header_is_a_400_that_can_be_answered(octet: str) -> None:
    data = message(extra=f"Subject: before{octet}after\r\n")
    with pytest.raises(SipParseError) as info:
        parse(data)
    assert info.value.status_hint == 400
    assert "Subject" in str(info.value)
    response = response_for_error(info.value, to_tag="t1")
    assert response is not None
    assert response.status == 400
    assert response.call_id == "wire-1"


def test_tab_and_utf8_are_not_control_octets() -> None:
    msg = parse(message(extra="Subject: a\tb \u00e9t\u00e9\r\n"))
    assert msg.headers.get("Subject") == "a\tb \u00e9t\u00e9"


def test_a_nul_in_the_body_is_fine() -> None:
    data = message(content_length="3").replace(b"\r\n\r\n", b"\r\n\r\na\x00b")
    assert parse(data).body == b"a\x00b"


# -- Require / 420 ------------------------------------------------------------------


def _request(method: str, extra: str) -> Request:
    msg = parse(message(method, extra=extra))
    assert isinstance(msg, Request)
    return msg


def test_unsupported_extensions_lists_each_tag_once_and_exempts_ack_and_cancel() -> None:
    request = _request("INVITE", "Require: 100rel, timer\r\nRequire: 100rel\r\n")
    assert unsupported_extensions(request) == ["100rel", "timer"]
    assert unsupported_extensions(request, frozenset({"timer"})) == ["100rel"]
    assert unsupported_extensions(_request("OPTIONS", "")) == []
    for method in ("ACK", "CANCEL"):
        assert unsupported_extensions(_request(method, "Require: 100rel\r\n")) == []


def test_bad_extension_is_420_with_unsupported() -> None:
    response = bad_extension(_request("OPTIONS", "Require: foo\r\n"), to_tag="t9")
    assert response is not None
    assert (response.status, response.reason) == (420, "Bad Extension")
    assert response.headers.get("Unsupported") == "foo"
    assert response.to.tag == "t9"
    assert bad_extension(_request("OPTIONS", "Supported: foo\r\n")) is None


# -- the agent on real sockets -------------------------------------------------------


@pytest.fixture
async def agent() -> AsyncIterator[SipAgent]:
    a = SipAgent(port=0, ids=CountingIds("w"), timers=FAST)
    await a.start()
    yield a
    await a.close()


async def _udp_exchange(agent: SipAgent, make: Make) -> Response:
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.sendto(make(port, "UDP"), ("127.0.0.1", agent.port))
        while True:  # skip a 100 Trying: the final answer is the one that counts
            response = parse(await asyncio.wait_for(loop.sock_recv(sock, 65536), 5))
            assert isinstance(response, Response)
            if response.status >= 200:
                return response


async def _tcp_exchange(agent: SipAgent, make: Make) -> Response:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", agent.port), 5)
    try:
        port = writer.get_extra_info("sockname")[1]
        writer.write(make(port, "TCP"))
        framer = StreamFramer()
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk, "connection closed without an answer"
            for response in framer.feed(chunk):
                assert isinstance(response, Response)
                if response.status >= 200:
                    return response
    finally:
        writer.close()


@pytest.mark.parametrize("exchange", [_udp_exchange, _tcp_exchange], ids=["udp", "tcp"])
async def test_agent_answers_a_nul_with_400(agent: SipAgent, exchange: Exchange) -> None:
    def make(port: int, transport: str) -> bytes:
        return message(port=port, transport=transport, extra="User-Agent: evil\x00phone\r\n")

    response = await exchange(agent, make)
    assert response.status == 400
    assert response.call_id == "wire-1"


@pytest.mark.parametrize("exchange", [_udp_exchange, _tcp_exchange], ids=["udp", "tcp"])
@pytest.mark.parametrize("method", ["OPTIONS", "INVITE", "REGISTER"])
async def test_agent_answers_require_with_420(
    agent: SipAgent, exchange: Exchange, method: str
) -> None:
    def make(port: int, transport: str) -> bytes:
        return message(method, port=port, transport=transport, extra="Require: 100rel\r\n")

    response = await exchange(agent, make)
    assert response.status == 420
    assert response.headers.get("Unsupported") == "100rel"
    assert response.to.tag


async def test_agent_answers_leading_zero_max_forwards_normally(agent: SipAgent) -> None:
    def make(port: int, transport: str) -> bytes:
        return message(port=port, transport=transport, max_forwards="0070")

    response = await _udp_exchange(agent, make)
    assert response.status == 200
