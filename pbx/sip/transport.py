"""SIP over UDP and TCP on one host:port: bytes and Peers in and out (asyncio, I/O).

The only SIP module that touches sockets. It knows nothing of SIP beyond
finding message boundaries on a TCP stream; every complete message (a UDP
datagram, or one Content-Length-framed message from a stream) goes to
`on_datagram(data, source)`. `send(data, dest)` never blocks and never raises.

Decisions:
- UDP and TCP listen on the same port (RFC 3261 §18: a UA listens on both).
  With port 0 the UDP port is chosen first and TCP binds the same number,
  retrying with a new UDP port a few times if that number is taken on TCP.
- A TCP connection is reused per remote Peer in both directions: a request
  that arrived on a connection is answered on it (RFC 3261 §18.2.2), and
  `send` to a Peer with no connection opens one (connect in the background,
  data queued meanwhile, bounded). If the connect fails the queued data is
  dropped, logged, and `on_send_error(dest)` is called so a transaction can
  fail fast (RFC 3261 §17.1.4); otherwise its timer fires.
- Stream framing is `pbx.sip.framing.StreamFramer` (RFC 3261 §18.3): header
  block up to CRLFCRLF, then exactly Content-Length (or `l`) bytes; a
  message without Content-Length, a non-numeric length or a message over
  MAX_MESSAGE closes the connection (there is no way to resynchronise).
  CRLF keep-alives between messages are skipped; a double-CRLF ping is
  answered with a single CRLF pong (RFC 5626 §3.5.1).
- Bounds: MAX_MESSAGE 64 KiB per message (UDP's own limit; h11 uses 16 KiB
  for headers), MAX_CONNECTIONS TCP connections (new inbound ones beyond it
  are closed at once), MAX_PENDING bytes queued per connecting peer.
- Raw messages are logged at debug (`sip.recv` / `sip.send`) with structlog;
  the daemon decides whether debug is shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import Callable
from typing import Any, cast

import structlog

from pbx.sip.framing import StreamFramer
from pbx.sip.message import MAX_MESSAGE
from pbx.sip.peer import Peer
from pbx.sip.status import SipParseError

MAX_CONNECTIONS = 1024  # open TCP connections, inbound + outbound
MAX_PENDING = 256 * 1024  # bytes queued for a TCP connection still connecting
CONNECT_TIMEOUT = 5.0  # seconds; a transaction's Timer B/F is 32 s anyway
_BIND_TRIES = 8


log = structlog.get_logger("pbx.sip.transport")

OnDatagram = Callable[[bytes, Peer], None]
OnSendError = Callable[[Peer], None]


def _peer(transport: str, addr: Any) -> Peer:
    host, port = addr[0], addr[1]
    return Peer("udp" if transport == "udp" else "tcp", str(host), int(port))


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner.deliver(data, _peer("udp", addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.udp_error", error=str(exc))  # ICMP unreachable etc.


class _Stream(asyncio.Protocol):
    """One TCP connection, inbound or outbound."""

    def __init__(self, owner: SipTransport, peer: Peer | None = None) -> None:
        self._owner = owner
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self._framer = StreamFramer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        if self.peer is None:
            self.peer = _peer("tcp", transport.get_extra_info("peername"))
        if not self._owner.adopt(self):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        assert self.transport is not None
        try:
            messages = self._framer.split(data)
        except SipParseError as exc:
            log.info("sip.tcp_framing_error", peer=str(self.peer), error=str(exc))
            self.transport.abort()
            return
        while self._framer.pings:
            self._framer.pings -= 1
            self.transport.write(b"\r\n")
        for message in messages:
            self._owner.deliver(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.forget(self)


class SipTransport:
    """UDP endpoint + TCP server + outbound TCP connections bound to one host:port."""

    def __init__(
        self,
        on_datagram: OnDatagram,
        *,
        host: str = "127.0.0.1",
        port: int = 5060,
        udp: bool = True,
        tcp: bool = True,
        on_send_error: OnSendError | None = None,
    ) -> None:
        self._on_datagram = on_datagram
        self._on_send_error = on_send_error
        self.host = host
        self._want = (port, udp, tcp)
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self.port = port
        self._streams: dict[Peer, _Stream] = {}
        self._connecting: dict[Peer, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind the sockets; afterwards `.port` is the bound port (useful with port 0)."""
        port, udp, tcp = self._want
        last: OSError | None = None
        for _ in range(_BIND_TRIES if port == 0 else 1):
            try:
                await self._bind(port, udp, tcp)
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last = exc
        assert last is not None
        raise last

    async def _bind(self, port: int, udp: bool, tcp: bool) -> None:
        loop = asyncio.get_running_loop()
        if udp:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(self.host, port)
            )
            self._udp = transport
            # Stock asyncio reads with a 256 KiB buffer; SIP datagrams are bounded far lower.
            if hasattr(transport, "max_size"):
                transport.max_size = MAX_MESSAGE
            port = transport.get_extra_info("sockname")[1]
        if tcp:
            try:
                self._server = await loop.create_server(
                    lambda: _Stream(self), host=self.host, port=port, reuse_address=True
                )
            except OSError:
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                raise
            port = self._server.sockets[0].getsockname()[1]
        self.port = port

    def local(self, transport: str) -> Peer:
        """Our own address for `transport` (for Via sent-by and Contact)."""
        return Peer("udp" if transport == "udp" else "tcp", self.host, self.port)

    # --- receive ------------------------------------------------------------------

    def deliver(self, data: bytes, source: Peer) -> None:
        """Hand one whole message to the owner; nothing the owner raises escapes."""
        log.debug("sip.recv", peer=str(source), size=len(data), raw=data)
        if len(data) > MAX_MESSAGE:
            log.info("sip.oversized_dropped", peer=str(source), size=len(data))
            return
        try:
            self._on_datagram(data, source)
        except Exception:  # a bug above us must not kill the socket
            log.exception("sip.on_datagram_failed", peer=str(source))

    def adopt(self, stream: _Stream) -> bool:
        """Register a new TCP connection; False if over the connection limit."""
        assert stream.peer is not None
        if len(self._streams) >= MAX_CONNECTIONS and stream.peer not in self._streams:
            log.warning("sip.tcp_limit", peer=str(stream.peer), limit=MAX_CONNECTIONS)
            return False
        self._streams[stream.peer] = stream
        return True

    def forget(self, stream: _Stream) -> None:
        if stream.peer is not None and self._streams.get(stream.peer) is stream:
            del self._streams[stream.peer]

    # --- send ---------------------------------------------------------------------

    def send(self, data: bytes, dest: Peer) -> None:
        """Send one message to `dest`; never blocks, never raises (errors are logged)."""
        log.debug("sip.send", peer=str(dest), size=len(data), raw=data)
        if len(data) > MAX_MESSAGE:
            log.warning("sip.oversized_not_sent", peer=str(dest), size=len(data))
            return
        if dest.transport == "udp":
            self._send_udp(data, dest)
        else:
            self._send_tcp(data, dest)

    def _send_udp(self, data: bytes, dest: Peer) -> None:
        if self._udp is None or self._udp.is_closing():
            log.warning("sip.udp_unavailable", peer=str(dest))
            return
        try:
            self._udp.sendto(data, (dest.host, dest.port))
        except (OSError, ValueError) as exc:
            log.info("sip.send_failed", peer=str(dest), error=str(exc))

    def _send_tcp(self, data: bytes, dest: Peer) -> None:
        stream = self._streams.get(dest)
        if stream and stream.transport and not stream.transport.is_closing():
            stream.transport.write(data)
            return
        pending = self._connecting.get(dest)
        if pending is not None:
            if sum(map(len, pending)) + len(data) <= MAX_PENDING:
                pending.append(data)
            return
        self._connecting[dest] = [data]
        task = asyncio.get_running_loop().create_task(self._connect(dest))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connect(self, dest: Peer) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                transport, _ = await loop.create_connection(
                    lambda: _Stream(self, dest), dest.host, dest.port
                )
        except (OSError, TimeoutError) as exc:
            dropped = self._connecting.pop(dest, [])
            log.info("sip.connect_failed", peer=str(dest), error=str(exc), dropped=len(dropped))
            if self._on_send_error is not None:
                try:
                    self._on_send_error(dest)
                except Exception:
                    log.exception("sip.on_send_error_failed", peer=str(dest))
            return
        for chunk in self._connecting.pop(dest, []):
            transport.write(chunk)

    async def close(self) -> None:
        """Close every socket and connection; pending connects are cancelled."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for stream in list(self._streams.values()):
            if stream.transport is not None:
                stream.transport.close()
        self._streams.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._udp is not None:
            self._udp.close()
