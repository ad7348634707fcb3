"""SIP transport: stream framing (pure) and real UDP/TCP sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import socket

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.framing import StreamFramer
from pbx.sip.message import MAX_MESSAGE
from pbx.sip.peer import Peer
from pbx.sip.status import SipParseError
from pbx.sip.transport import SipTransport

MSG1 = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n"
MSG2 = b"SIP/2.0 200 OK\r\nl: 5\r\nCall-ID: 2\r\n\r\nhello"
MSG3 = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: 3\r\nContent-Length: 0\r\n\r\n"
NO_LENGTH = b"INVITE sip:a@b SIP/2.0\r\nCall-ID: 3\r\n\r\n"  # RFC 3261 §18.3: an error


def test_splitter_whole_and_compact_length() -> None:
    splitter = StreamFramer()
    assert splitter.split(MSG1 + MSG2 + MSG3) == [MSG1, MSG2, MSG3]


def test_splitter_keepalives_and_pings() -> None:
    splitter = StreamFramer()
    assert splitter.split(b"\r\n\r\n" + MSG1 + b"\r\n" + MSG2) == [MSG1, MSG2]
    assert splitter.pings == 1


@given(st.lists(st.integers(0, len(MSG1 + MSG2 + MSG3)), max_size=8))
def test_splitter_any_chunking(cuts: list[int]) -> None:
    stream = MSG1 + MSG2 + MSG3
    points = sorted({0, len(stream), *cuts})
    splitter = StreamFramer()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += splitter.split(stream[start:end])
    assert out == [MSG1, MSG2, MSG3]


@pytest.mark.parametrize(
    "data",
    [
        b"SIP/2.0 200 OK\r\nContent-Length: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        b"A" * (MAX_MESSAGE + 1),
        NO_LENGTH,
    ],
)
def test_splitter_rejects(data: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().split(data)


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()

    def __call__(self, data: bytes, source: Peer) -> None:
        self.queue.put_nowait((data, source))

    async def get(self) -> tuple[bytes, Peer]:
        return await asyncio.wait_for(self.queue.get(), 5)


async def test_udp_round_trip_between_two_transports() -> None:
    a_in, b_in = Inbox(), Inbox()
    a = SipTransport(a_in, port=0)
    b = SipTransport(b_in, port=0)
    await a.start()
    await b.start()
    try:
        assert a.port != 0
        a.send(MSG1, Peer("udp", "127.0.0.1", b.port))
        data, source = await b_in.get()
        assert data == MSG1
        assert source == Peer("udp", "127.0.0.1", a.port)  # sent from the listening port
        b.send(MSG2, source)
        assert (await a_in.get()) == (MSG2, Peer("udp", "127.0.0.1", b.port))
    finally:
        await a.close()
        await b.close()


async def test_tcp_outbound_connection_reused_both_ways() -> None:
    a_in, b_in = Inbox(), Inbox()
    a = SipTransport(a_in, port=0)
    b = SipTransport(b_in, port=0)
    await a.start()
    await b.start()
    try:
        dest = Peer("tcp", "127.0.0.1", b.port)
        a.send(MSG1, dest)
        a.send(MSG2, dest)  # queued while connecting
        first, source = await b_in.get()
        second, source2 = await b_in.get()
        assert (first, second) == (MSG1, MSG2)
        assert source == source2
        assert source.transport == "tcp"
        b.send(MSG3, source)  # answered on the same connection
        assert (await a_in.get()) == (MSG3, dest)
        a.send(MSG1, dest)
        assert (await b_in.get()) == (MSG1, source)  # same connection, same source port
    finally:
        await a.close()
        await b.close()


async def test_garbage_and_raising_callback_do_not_kill_transport() -> None:
    received: list[bytes] = []
    got_three = asyncio.Event()

    def callback(data: bytes, source: Peer) -> None:
        received.append(data)
        if len(received) == 3:
            got_three.set()
        if data.startswith(b"boom"):
            raise RuntimeError("bug above the transport")

    t = SipTransport(callback, port=0)
    await t.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"boom", ("127.0.0.1", t.port))
            sock.sendto(b"\x00\xff garbage", ("127.0.0.1", t.port))
        reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
        writer.write(b"\r\n\r\n" + MSG1)
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(2), 5) == b"\r\n"  # RFC 5626 pong
        writer.write(b"X\r\nContent-Length: nope\r\n\r\n")
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # framing error closes it
        writer.close()
        await asyncio.wait_for(got_three.wait(), 5)
        assert sorted(received) == sorted([b"boom", b"\x00\xff garbage", MSG1])
    finally:
        await t.close()


async def test_tcp_connect_failure_reports_send_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    failed: asyncio.Queue[Peer] = asyncio.Queue()
    t = SipTransport(lambda d, s: None, port=0, on_send_error=failed.put_nowait)
    await t.start()
    try:
        dest = Peer("tcp", "127.0.0.1", dead_port)
        t.send(MSG1, dest)
        assert await asyncio.wait_for(failed.get(), 5) == dest
    finally:
        await t.close()
