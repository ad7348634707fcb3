"""Idle TCP/TLS connections: the pure verdict, and real sockets closed by the transport."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.idle import SILENT_TIMEOUT, Activity, verdict
from pbx.sip.peer import Peer
from pbx.sip.transport import SipTransport

MSG = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n"


def test_silent_inbound_connection_is_closed_after_32_s() -> None:
    act = Activity(opened=100.0, inbound=True)
    assert verdict(act, 100.0 + SILENT_TIMEOUT - 0.1, idle_timeout=0) is None
    assert verdict(act, 100.0 + SILENT_TIMEOUT, idle_timeout=0) == "silent"


def test_bytes_without_a_message_do_not_save_a_silent_connection() -> None:
    act = Activity(opened=0.0, inbound=True)
    act.saw_bytes(31.0)  # a slowloris trickling header bytes
    assert verdict(act, 32.0, idle_timeout=300) == "silent"


def test_one_message_then_keepalives_keep_it_open() -> None:
    act = Activity(opened=0.0, inbound=True)
    act.saw_bytes(1.0, messages=1)
    for t in range(100, 1000, 100):  # CRLF every 100 s (RFC 5626 §4.4.1)
        act.saw_bytes(float(t))
        assert verdict(act, t + 99.0, idle_timeout=300) is None
    assert verdict(act, 900.0 + 300, idle_timeout=300) == "idle"


def test_outbound_connections_are_never_silent_and_zero_means_never_idle() -> None:
    act = Activity(opened=0.0, inbound=False)
    assert verdict(act, 10_000.0, idle_timeout=0) is None
    assert verdict(act, 10_000.0, idle_timeout=300) == "idle"


@given(
    opened=st.floats(0, 1e6),
    quiet=st.floats(0, 1e4),
    idle_timeout=st.floats(0, 1e4),
    messages=st.integers(0, 3),
    inbound=st.booleans(),
)
def test_verdict_matches_its_rules(
    opened: float, quiet: float, idle_timeout: float, messages: int, inbound: bool
) -> None:
    act = Activity(opened=opened, inbound=inbound)
    act.saw_bytes(opened, messages)
    now = opened + quiet
    got = verdict(act, now, idle_timeout)
    silent = inbound and messages == 0 and now - opened >= SILENT_TIMEOUT
    idle = idle_timeout > 0 and now - opened >= idle_timeout
    assert got == ("silent" if silent else "idle" if idle else None)


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()

    def __call__(self, data: bytes, source: Peer) -> None:
        self.queue.put_nowait((data, source))


async def _closed_by_peer(reader: asyncio.StreamReader, limit: float) -> bool:
    """True when the other end closed (EOF) within `limit` seconds."""
    try:
        return await asyncio.wait_for(reader.read(), limit) == b""
    except TimeoutError:
        return False


async def test_transport_closes_silent_and_idle_connections_but_not_busy_ones() -> None:
    inbox = Inbox()
    t = SipTransport(inbox, port=0, idle_timeout=0.6, silent_timeout=0.4, sweep_interval=0.05)
    await t.start()
    try:
        silent_r, silent_w = await asyncio.open_connection("127.0.0.1", t.port)
        idle_r, idle_w = await asyncio.open_connection("127.0.0.1", t.port)
        idle_w.write(MSG)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", t.port)
        busy_w.write(MSG)
        await asyncio.wait_for(inbox.queue.get(), 5)
        await asyncio.wait_for(inbox.queue.get(), 5)
        assert await _closed_by_peer(silent_r, 5)  # no message at all: closed after 0.4 s
        keepalives = 0
        while not idle_r.at_eof():  # the busy one sends a CRLF keep-alive every 0.1 s
            busy_w.write(b"\r\n")
            keepalives += 1
            if await _closed_by_peer(idle_r, 0.1):
                break
            assert keepalives < 100, "the idle connection was never closed"
        assert not await _closed_by_peer(busy_r, 0.05)  # still open: it kept talking
        busy_w.write(MSG)  # and still carries messages
        assert (await asyncio.wait_for(inbox.queue.get(), 5))[0] == MSG
        for w in (silent_w, idle_w, busy_w):
            w.close()
    finally:
        await t.close()
