"""The ng client's asyncio edge against test-local UDP sockets on 127.0.0.1 (no rtpengine)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from pbx.rtp.bencode import decode, encode
from pbx.rtp.ng import Address
from pbx.rtp.rtpengine import Rtpengine, RtpengineError, parse_instance


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2223", ("127.0.0.1", 2223)),
        (" localhost:2223 ", ("localhost", 2223)),
        ("[::1]:2223", ("::1", 2223)),
    ],
)
def test_parse_instance(text: str, expected: tuple[str, int]) -> None:
    assert parse_instance(text) == expected


@pytest.mark.parametrize("text", ["", "2223", ":2223", "host:", "host:0", "host:70000", "h:x"])
def test_parse_instance_refuses(text: str) -> None:
    with pytest.raises(RtpengineError, match="want HOST:PORT"):
        parse_instance(text)


class Peer(asyncio.DatagramProtocol):
    """A scripted ng server: answers each request with `answer(cookie, body)` (None: silence)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.bodies: list[dict[bytes, object]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        cookie, _, body = data.partition(b" ")
        value = decode(body)
        assert isinstance(value, dict)
        self.bodies.append(dict(value))
        command = value[b"command"]
        reply = {"result": "pong"} if command == b"ping" else {"result": "ok", "sdp": "v=0\r\n"}
        assert self.transport is not None
        self.transport.sendto(cookie + b" " + encode(reply), addr)


async def peer() -> tuple[Peer, Address]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", 0))
    host, port = transport.get_extra_info("sockname")[:2]
    return proto, (str(host), int(port))


async def test_ping_and_offer_round_trip() -> None:
    server, address = await peer()
    client = await Rtpengine.open([f"{address[0]}:{address[1]}"])
    try:
        await client.ping()
        assert await client.offer("c1", "ta", b"v=0\r\n") == b"v=0\r\n"
        assert [b[b"command"] for b in server.bodies] == [b"ping", b"offer"]
        assert client.local_address[0] == "127.0.0.1"
        assert client.client.next_deadline() is None  # nothing left to retransmit
    finally:
        client.close()
        assert server.transport is not None
        server.transport.close()


async def test_closed_client_refuses_and_fails_waiters() -> None:
    silent = ("127.0.0.1", 9)  # discard port: nobody answers on loopback
    client = await Rtpengine.open([silent], intervals=(5.0,))
    waiting = asyncio.ensure_future(client.ping())
    await asyncio.sleep(0)  # let the request go out
    client.close()
    with pytest.raises(RtpengineError, match="client closed"):
        await waiting
    with pytest.raises(RtpengineError, match="client is closed"):
        await client.ping()


async def test_open_errors_are_rtpengine_errors() -> None:
    with pytest.raises(RtpengineError, match="want HOST:PORT"):
        await Rtpengine.open(["nonsense"])
    with pytest.raises(RtpengineError, match="no rtpengine instances"):
        await Rtpengine.open([])
    with pytest.raises(RtpengineError, match="not an IP address"):
        await Rtpengine.open(["127.0.0.1:2223"], local=("localhost", 0))
    with pytest.raises(RtpengineError, match="cannot bind"):
        await Rtpengine.open(["127.0.0.1:2223"], local=("192.0.2.1", 0))


def test_counters_are_polled_a_sixth_of_the_media_timeout_apart_within_2_to_10_s() -> None:
    from pbx.rtp.rtpengine_engine import poll_interval

    assert poll_interval(60.0) == 10.0  # the default timeout: a timeout seen at 60-70 s
    assert poll_interval(30.0) == 5.0
    assert poll_interval(6.0) == 2.0  # never more often than every 2 s
    assert poll_interval(3600.0) == 10.0  # never less often than every 10 s (/metrics)
