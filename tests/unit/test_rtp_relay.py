"""MediaRelay on real sockets on 127.0.0.1, with asyncio-dgram test peers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import asyncio_dgram
import pytest

from pbx.rtp.packet import build_rtcp_rr, build_rtp
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MAX_DATAGRAM, RCVBUF, Latch, MediaError, MediaRelay

HOST = "127.0.0.1"
LOW, HIGH = 42000, 42199
WAIT = 2.0


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    r = MediaRelay(PortPairAllocator(LOW, HIGH, quarantine=30.0), HOST)
    yield r
    r.close()


async def peer() -> asyncio_dgram.aio.DatagramServer:
    return await asyncio_dgram.bind((HOST, 0))


async def recv(endpoint: asyncio_dgram.aio.DatagramServer) -> tuple[bytes, tuple[str, int]]:
    data, addr = await asyncio.wait_for(endpoint.recv(), WAIT)
    return data, addr


def audio(seq: int, ssrc: int) -> bytes:
    return build_rtp(0, seq, seq * 160, ssrc, bytes([seq % 256]) * 160)


def raw_peer() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((HOST, 0))
    return sock


def pending(sock: socket.socket) -> bytes | None:
    """A datagram already queued on `sock`, without waiting: loopback delivery is
    synchronous, so anything the relay sent before a later packet is there."""
    try:
        return sock.recv(4096, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None


async def test_rtp_flows_both_ways_and_counters_match(relay: MediaRelay) -> None:
    session = await relay.open_session("call-1")
    caller, callee = await peer(), await peer()
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, callee.sockname[1])
    a_side = (HOST, session.port("inbound"))
    b_side = (HOST, session.port("outbound"))
    for seq in range(20):
        await caller.send(audio(seq, 1), a_side)
        data, src = await recv(callee)
        assert data == audio(seq, 1)
        assert src == b_side
        await callee.send(audio(seq, 2), b_side)
        data, src = await recv(caller)
        assert data == audio(seq, 2)
        assert src == a_side
    stats = session.close()
    for leg in (stats.inbound, stats.outbound):
        assert (leg.packets, leg.bytes, leg.rtcp_packets, leg.dropped) == (20, 20 * 172, 0, 0)
    caller.close()
    callee.close()


async def test_latches_to_source_other_than_sdp_and_ignores_strangers(relay: MediaRelay) -> None:
    session = await relay.open_session("call-2")
    caller, callee, stranger = await peer(), await peer(), await peer()
    decoy = raw_peer()
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, decoy.getsockname()[1])  # what the SDP said
    a_side, b_side = (HOST, session.port("inbound")), (HOST, session.port("outbound"))
    await callee.send(audio(1, 2), b_side)  # the callee is really behind another port (NAT)
    assert await recv(caller) == (audio(1, 2), a_side)
    assert session.target("outbound") == (HOST, callee.sockname[1])
    await caller.send(audio(1, 1), a_side)
    assert (await recv(callee))[0] == audio(1, 1)
    assert pending(decoy) is None
    # A stranger's packet on the latched leg is dropped, not relayed nor latched.
    await stranger.send(audio(9, 666), b_side)
    await callee.send(audio(2, 2), b_side)
    assert (await recv(caller))[0] == audio(2, 2)
    assert session.target("outbound") == (HOST, callee.sockname[1])
    assert session.counters["outbound"].dropped == 1
    for ep in (caller, callee, decoy, stranger):
        ep.close()


async def test_rtcp_is_relayed_on_the_odd_ports(relay: MediaRelay) -> None:
    session = await relay.open_session("call-3")
    caller, callee = await peer(), await peer()
    session.set_remote("inbound", HOST, 20000, rtcp_port=caller.sockname[1])
    session.set_remote("outbound", HOST, 20002, rtcp_port=callee.sockname[1])
    report = build_rtcp_rr(0xCAFE)
    await caller.send(report, (HOST, session.port("inbound") + 1))
    data, src = await recv(callee)
    assert data == report
    assert src == (HOST, session.port("outbound") + 1)
    await callee.send(report, (HOST, session.port("outbound") + 1))
    assert (await recv(caller))[0] == report
    stats = session.close()
    inbound = stats.inbound
    assert (inbound.rtcp_packets, inbound.rtcp_bytes, inbound.packets) == (1, 8, 0)
    assert stats.outbound.rtcp_packets == 1
    caller.close()
    callee.close()


async def test_dtmf_passes_untouched_and_junk_is_dropped(relay: MediaRelay) -> None:
    session = await relay.open_session("call-4")
    caller, callee = await peer(), await peer()
    session.set_remote("inbound", HOST, caller.sockname[1])
    session.set_remote("outbound", HOST, callee.sockname[1])
    a_side = (HOST, session.port("inbound"))
    # RFC 4733 §2.3: digit 5, volume 10, growing duration, then 3 end packets.
    events = [bytes([5, 0x0A]) + d.to_bytes(2, "big") for d in (160, 320)]
    events += [bytes([5, 0x8A, 0x01, 0xE0])] * 3
    packets = [
        build_rtp(101, 100 + i, 8000, 0xD7, ev, marker=(i == 0)) for i, ev in enumerate(events)
    ]
    await caller.send(b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + b"\0" * 12, a_side)  # STUN
    for pkt in packets:
        await caller.send(pkt, a_side)
        assert (await recv(callee))[0] == pkt
    assert session.counters["inbound"].packets == len(packets)
    assert session.counters["inbound"].dropped == 1
    caller.close()
    callee.close()


async def test_media_timeout_fires_once_for_armed_sessions_only() -> None:
    fired: list[str] = []
    done = asyncio.Event()

    def on_timeout(call_id: str) -> None:
        fired.append(call_id)
        done.set()

    relay = MediaRelay(
        PortPairAllocator(LOW, HIGH, 0.0), HOST, media_timeout=0.3, on_timeout=on_timeout
    )
    loop = asyncio.get_running_loop()
    talking = await relay.open_session("talking")
    silent = await relay.open_session("never-armed")
    caller = await peer()
    await caller.send(audio(1, 1), (HOST, talking.port("inbound")))
    started = loop.time()
    await asyncio.wait_for(done.wait(), 5.0)
    assert fired == ["talking"]
    assert talking.armed
    assert not silent.armed
    assert loop.time() - started >= 0.3 - relay.check_interval
    assert talking.idle_for(loop.time()) >= 0.3
    assert relay.check_timeouts(loop.time() + 10) == []  # once only; unarmed never
    silent.arm()
    assert relay.check_timeouts(loop.time() + 10) == ["never-armed"]
    relay.close()
    caller.close()


async def test_close_quarantines_ports_and_is_idempotent() -> None:
    alloc = PortPairAllocator(LOW, HIGH, quarantine=30.0)
    relay = MediaRelay(alloc, HOST)
    session = await relay.open_session("call-5")
    ports = set(session.ports.values())
    assert alloc.in_use == 2
    now = asyncio.get_running_loop().time()
    stats = session.close()
    assert session.closed
    assert session.close() is stats
    assert alloc.in_use == 0
    assert alloc.free_count(now) == alloc.capacity - 2
    assert relay.session("call-5") is None
    assert len(relay) == 0
    again = await relay.open_session("call-6")
    assert not ports & set(again.ports.values())
    relay.close()


async def test_busy_port_is_skipped_and_exhaustion_is_clear() -> None:
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind((HOST, 0))
    busy = squatter.getsockname()[1] & ~1  # the pair this port belongs to
    if busy != squatter.getsockname()[1]:
        squatter.close()
        squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            squatter.bind((HOST, busy + 1))  # hold the RTCP half instead
        except OSError:
            pytest.skip("could not hold a test port")
    alloc = PortPairAllocator(busy, busy + 5, quarantine=30.0)  # three pairs, one held
    relay = MediaRelay(alloc, HOST)
    session = await relay.open_session("call-7")
    assert busy not in session.ports.values()
    assert set(session.ports.values()) == {busy + 2, busy + 4}
    with pytest.raises(MediaError, match="no free RTP port pair"):
        await relay.open_session("call-8")
    with pytest.raises(MediaError, match="already has a session"):
        await relay.open_session("call-7")
    assert alloc.in_use == 2
    relay.close()
    squatter.close()


async def test_bad_remote_addresses_are_media_errors(relay: MediaRelay) -> None:
    session = await relay.open_session("call-9")
    with pytest.raises(MediaError, match="not an IP"):
        session.set_remote("inbound", "phone.example", 4000)
    with pytest.raises(MediaError, match="not reachable"):
        session.set_remote("inbound", "2001:db8::1", 4000)
    with pytest.raises(MediaError, match="out of range"):
        session.set_remote("inbound", HOST, 0)
    with pytest.raises(MediaError, match="not an IP"):
        MediaRelay(PortPairAllocator(LOW, HIGH, 0.0), "localhost")


async def test_ipv6_loopback_relay() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no ::1")
    relay = MediaRelay(PortPairAllocator(LOW, HIGH, 0.0), "::1")
    session = await relay.open_session("call-v6")
    caller, callee = await asyncio_dgram.bind(("::1", 0)), await asyncio_dgram.bind(("::1", 0))
    session.set_remote("inbound", "::1", caller.sockname[1])
    session.set_remote("outbound", "::1", callee.sockname[1])
    await caller.send(audio(1, 1), ("::1", session.port("inbound")))
    assert (await recv(callee))[0] == audio(1, 1)
    await callee.send(audio(2, 2), ("::1", session.port("outbound")))
    assert (await recv(caller))[0] == audio(2, 2)
    relay.close()
    caller.close()
    callee.close()


def test_latch_rules() -> None:
    latch = Latch(relatch_after=2.0)
    sdp, real, other = ("192.0.2.1", 4000), ("198.51.100.7", 31000), ("203.0.113.9", 5000)
    assert latch.target is None
    latch.expect(sdp)
    assert latch.target == sdp
    assert latch.accept(real, 10.0)  # first packet latches wherever it comes from
    assert latch.target == real
    assert not latch.accept(other, 11.0)  # hijack attempt while real talks
    assert latch.accept(real, 11.5)
    assert not latch.accept(other, 13.4)
    assert latch.accept(other, 13.5)  # real silent for 2 s: re-latch
    assert latch.target == other
    assert latch.accept(sdp, 13.6)  # the signalled address always wins
    assert latch.target == sdp
    latch.expect(("192.0.2.2", 4002))  # re-INVITE moved the media: latch forgotten
    assert latch.target == ("192.0.2.2", 4002)
    assert latch.accept(real, 14.0)
    assert latch.target == real
    latch.expect(("192.0.2.2", 4002))  # same SDP again keeps the latch
    assert latch.target == real
    assert latch.relatches == 4


async def test_stock_loop_reads_are_capped_and_buffers_small(relay: MediaRelay) -> None:
    session = await relay.open_session("call-tune")
    for endpoint in session._endpoints.values():
        transport = endpoint.transport
        assert transport is not None
        size = getattr(transport, "max_size", getattr(transport, "_max_size", None))
        if size is not None:  # the stock selector loop; uvloop has no such knob
            assert size == MAX_DATAGRAM
        sock = transport.get_extra_info("socket")
        # Linux doubles the requested value (socket(7)); anything near 64 KiB is fine.
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) <= 4 * RCVBUF
