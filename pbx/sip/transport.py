"""SIP over UDP, TCP and TLS: bytes and Peers in and out (asyncio, I/O).

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
- TLS (RFC 3261 §26.2, RFC 5630) listens on its own port (`tls_port`, 5061
  by default) with the server context from `server_context(cert, key)`
  (TLS 1.2 or later). It is a stream like TCP: the same framer, the same
  reuse per Peer both ways, the same bounds. Connections are accepted by
  hand (`sock_accept`) and each handshake awaited on its own
  (`connect_accepted_socket`; uvloop's `start_tls` loses the ClientHello of
  a server-side upgrade), so a failed handshake (plain TCP bytes on the TLS
  port, a bad or slow client) is logged once (`sip.tls_handshake_failed`)
  and the connection closed; the protocol never sees it. `reload_tls(ctx)`
  (the daemon's SIGHUP) swaps the context for connections accepted later.
- Outbound TLS verifies the peer's certificate and name: SNI and
  check_hostname with `Peer.server_name` (or the address when it has none),
  against the system CAs or only `Peer.ca` (PEM) when given. A failure is
  one `sip.tls_verify_failed` line naming the reason and counts as a failed
  connect. A Peer sent to without a server name (a later request in a
  dialog, whose Peer came from a Contact or Route) reuses the name and CA
  last used for that address. With a `tls_identity` (the daemon passes
  `sip.tls_cert`/`sip.tls_key`), pbx presents that certificate to servers
  that ask for one (mutual TLS, as SBCs do; RFC 5922 §7.4).
- Connections that do nothing are closed (`pbx.sip.idle`): an inbound one
  that delivers no complete message within 32 s ("silent"), and any with
  no byte either way for `idle_timeout` seconds (`[sip] tcp_idle_timeout`,
  300 s, 0 = never). A sweep every 5 s closes them (FIN, not RST) and logs
  one `sip.tcp_closed_idle` line per sweep that closed any, with counts.
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
import socket
import ssl
from collections.abc import Callable
from typing import Any, cast

import structlog

from pbx.errors import ConfigError
from pbx.sip.framing import StreamFramer
from pbx.sip.idle import DEFAULT_IDLE_TIMEOUT, SILENT_TIMEOUT, SWEEP_INTERVAL, Activity, verdict
from pbx.sip.message import MAX_MESSAGE
from pbx.sip.peer import Peer, Transport
from pbx.sip.status import SipParseError

MAX_CONNECTIONS = 1024  # open TCP connections, inbound + outbound
MAX_PENDING = 256 * 1024  # bytes queued for a TCP connection still connecting
CONNECT_TIMEOUT = 5.0  # seconds; a transaction's Timer B/F is 32 s anyway
HANDSHAKE_TIMEOUT = 10.0  # seconds an inbound TLS client has to finish its handshake
MAX_HANDSHAKES = 256  # inbound TLS handshakes in progress at once (a connect flood is bounded)
_BIND_TRIES = 8
_TLS_NAMES = 4096  # addresses whose TLS name and CA are remembered


log = structlog.get_logger("pbx.sip.transport")

OnDatagram = Callable[[bytes, Peer], None]
OnSendError = Callable[[Peer], None]


def _peer(transport: Transport, addr: Any) -> Peer:
    host, port = addr[0], addr[1]
    return Peer(transport, str(host), int(port))


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """The TLS server context from PEM files; raises ConfigError with one clear line."""
    for name, path, marker in (("sip.tls_cert", cert, b"CERTIFICATE"),
                               ("sip.tls_key", key, b"PRIVATE KEY")):  # fmt: skip
        try:
            with open(path, "rb") as f:
                text = f.read()
        except OSError as exc:
            raise ConfigError(f"config: {name} {path}: cannot read ({exc.strerror})") from None
        if b"-----BEGIN " not in text or marker not in text:
            what = "certificate" if marker == b"CERTIFICATE" else "private key"
            raise ConfigError(f"config: {name} {path}: no PEM {what} in the file")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2

    def no_password() -> str:
        raise ConfigError(f"config: sip.tls_key {key}: encrypted keys are not supported")

    try:
        ctx.load_cert_chain(cert, key, password=no_password)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        raise ConfigError(
            f"config: sip.tls_cert {cert} and sip.tls_key {key} do not load "
            f"as a certificate and its key ({reason})"
        ) from None
    return ctx


def client_context(ca: str = "", identity: tuple[str, str] | None = None) -> ssl.SSLContext:
    """A verifying client context: the system CAs, or only `ca` (PEM) when given.

    `identity` (certificate chain, key: PEM files) is presented to servers
    that ask for a client certificate (mutual TLS, RFC 5922 §7.4).
    """
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity is not None:
        ctx.load_cert_chain(*identity)
    return ctx


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: SipTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._owner.deliver(data, _peer("udp", addr))

    def error_received(self, exc: Exception) -> None:
        log.debug("sip.udp_error", error=str(exc))  # ICMP unreachable etc.


class _Stream(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound."""

    def __init__(self, owner: SipTransport, peer: Peer | None = None, *, inbound: bool) -> None:
        self._owner = owner
        self.peer = peer
        self.transport: asyncio.Transport | None = None
        self._framer = StreamFramer()
        self.activity = Activity(asyncio.get_running_loop().time(), inbound=inbound)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport is not an asyncio.Transport subclass: no isinstance check.
        self.transport = cast(asyncio.Transport, transport)
        if self.peer is None:
            self.peer = _peer("tcp", transport.get_extra_info("peername"))
        self._owner.log_tls(self.peer, self.transport)
        if not self._owner.adopt(self):
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        assert self.transport is not None
        try:
            messages = self._framer.split(data)
        except SipParseError as exc:
            log.info("sip.stream_framing_error", peer=str(self.peer), error=str(exc))
            self.transport.abort()
            return
        self.activity.saw_bytes(asyncio.get_running_loop().time(), len(messages))
        while self._framer.pings:
            self._framer.pings -= 1
            self.transport.write(b"\r\n")
        for message in messages:
            self._owner.deliver(message, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner.forget(self)


class SipTransport:
    """UDP endpoint + TCP server on one host:port, TLS server on `tls_port`, outbound streams."""

    def __init__(
        self,
        on_datagram: OnDatagram,
        *,
        host: str = "127.0.0.1",
        port: int = 5060,
        udp: bool = True,
        tcp: bool = True,
        tls: ssl.SSLContext | None = None,
        tls_port: int = 5061,
        on_send_error: OnSendError | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        silent_timeout: float = SILENT_TIMEOUT,
        sweep_interval: float = SWEEP_INTERVAL,
        tls_identity: tuple[str, str] | None = None,
    ) -> None:
        self._on_datagram = on_datagram
        self._on_send_error = on_send_error
        self.host = host
        self._want = (port, udp, tcp)
        self._udp: asyncio.DatagramTransport | None = None
        self._server: asyncio.Server | None = None
        self._tls_socket: socket.socket | None = None
        self._tls = tls
        self.port = port
        self.tls_port = tls_port
        self._streams: dict[Peer, _Stream] = {}
        self._connecting: dict[Peer, list[bytes]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._clients: dict[str, ssl.SSLContext] = {}  # CA PEM ("" = system) -> context
        self._identity = tls_identity  # our certificate for servers that ask (mutual TLS)
        self._tls_names: dict[Peer, Peer] = {}  # address -> the Peer naming its TLS identity
        self._handshakes = 0  # inbound TLS handshakes in progress
        self._idle = (idle_timeout, silent_timeout, sweep_interval)
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        """Bind the sockets; afterwards `.port` (and `.tls_port`) are the bound ports."""
        port, udp, tcp = self._want
        last: OSError | None = None
        for _ in range(_BIND_TRIES if port == 0 else 1):
            try:
                await self._bind(port, udp, tcp)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                last = exc
        else:
            assert last is not None
            raise last
        if self._tls is not None:
            try:
                self._tls_socket = _listen(self.host, self.tls_port)
            except OSError:
                await self.close()
                raise
            self.tls_port = self._tls_socket.getsockname()[1]
            self._spawn(self._accept_tls(self._tls_socket))
        self._schedule_sweep()

    # --- idle connections (pbx.sip.idle) --------------------------------------------

    def _schedule_sweep(self) -> None:
        self._sweeper = asyncio.get_running_loop().call_later(self._idle[2], self._sweep)

    def _sweep(self) -> None:
        """Close the connections `pbx.sip.idle.verdict` condemns; one line with the counts."""
        idle_timeout, silent_timeout, _ = self._idle
        now = asyncio.get_running_loop().time()
        closed = {"silent": 0, "idle": 0}
        for stream in list(self._streams.values()):
            why = verdict(stream.activity, now, idle_timeout, silent_timeout)
            if why is not None and stream.transport is not None:
                closed[why] += 1
                stream.transport.close()
        if closed["silent"] or closed["idle"]:
            log.info("sip.tcp_closed_idle", **closed, connections=len(self._streams))
        self._schedule_sweep()

    def reload_tls(self, ctx: ssl.SSLContext) -> None:
        """Serve `ctx` (a renewed certificate) to connections accepted from now on.

        Connections already open keep the session they negotiated; a peer
        sees the new certificate when it next connects.
        """
        if self._tls is None:
            raise RuntimeError("TLS is not enabled on this transport")
        self._tls = ctx
        self._clients.clear()  # outbound contexts re-read the identity (the same files)

    async def _accept_tls(self, listener: socket.socket) -> None:
        """Accept on the TLS port; each connection's handshake runs in its own task."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                sock, addr = await loop.sock_accept(listener)
            except OSError as exc:  # EMFILE and the like: the listener itself is fine
                log.warning("sip.tls_accept_failed", error=str(exc))
                await asyncio.sleep(0.1)
                continue
            peer = _peer("tls", addr)
            if len(self._streams) >= MAX_CONNECTIONS or self._handshakes >= MAX_HANDSHAKES:
                log.warning("sip.tcp_limit", peer=str(peer), limit=MAX_CONNECTIONS,
                            handshakes=self._handshakes)  # fmt: skip
                sock.close()
                continue
            self._handshakes += 1
            assert self._tls is not None
            self._spawn(self._handshake(sock, peer, self._tls))

    async def _handshake(self, sock: socket.socket, peer: Peer, ctx: ssl.SSLContext) -> None:
        """The server handshake; a failure is one log line and the connection closed."""
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: _Stream(self, peer, inbound=True), sock, ssl=ctx,
                ssl_handshake_timeout=HANDSHAKE_TIMEOUT,
            )  # fmt: skip
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            log.info("sip.tls_handshake_failed", peer=str(peer), error=_reason(exc))
            sock.close()
        finally:
            self._handshakes -= 1

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
                    lambda: _Stream(self, inbound=True), host=self.host, port=port,
                    reuse_address=True,
                )  # fmt: skip
            except OSError:
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                raise
            port = self._server.sockets[0].getsockname()[1]
        self.port = port

    def local(self, transport: str) -> Peer:
        """Our own address for `transport` (for Via sent-by and Contact)."""
        if transport == "tls":
            return Peer("tls", self.host, self.tls_port)
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
        """Register a new TCP/TLS connection; False if over the connection limit."""
        assert stream.peer is not None
        if len(self._streams) >= MAX_CONNECTIONS and stream.peer not in self._streams:
            log.warning("sip.tcp_limit", peer=str(stream.peer), limit=MAX_CONNECTIONS)
            return False
        self._streams[stream.peer] = stream
        return True

    def log_tls(self, peer: Peer, transport: asyncio.Transport) -> None:
        """One line per established TLS connection: who, which version and cipher."""
        if peer.transport != "tls":
            return
        obj = transport.get_extra_info("ssl_object")
        version = obj.version() if obj is not None else None
        cipher = transport.get_extra_info("cipher")
        log.info("sip.tls_connected", peer=str(peer), version=version,
                 cipher=cipher[0] if cipher else None)  # fmt: skip

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
            self._send_stream(data, dest)

    def _send_udp(self, data: bytes, dest: Peer) -> None:
        if self._udp is None or self._udp.is_closing():
            log.warning("sip.udp_unavailable", peer=str(dest))
            return
        try:
            self._udp.sendto(data, (dest.host, dest.port))
        except (OSError, ValueError) as exc:
            log.info("sip.send_failed", peer=str(dest), error=str(exc))

    def _send_stream(self, data: bytes, dest: Peer) -> None:
        if dest.transport == "tls":
            dest = self._tls_identity(dest)
        stream = self._streams.get(dest)
        if stream and stream.transport and not stream.transport.is_closing():
            stream.transport.write(data)
            stream.activity.saw_bytes(asyncio.get_running_loop().time())
            return
        pending = self._connecting.get(dest)
        if pending is not None:
            if sum(map(len, pending)) + len(data) <= MAX_PENDING:
                pending.append(data)
            return
        self._connecting[dest] = [data]
        self._spawn(self._connect(dest))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _tls_identity(self, dest: Peer) -> Peer:
        """`dest` with its TLS name and CA: as given (and remembered), else as last used."""
        if dest.server_name or dest.ca:
            self._tls_names.pop(dest, None)
            self._tls_names[dest] = dest
            while len(self._tls_names) > _TLS_NAMES:
                del self._tls_names[next(iter(self._tls_names))]
            return dest
        return self._tls_names.get(dest, dest)

    def _client(self, ca: str) -> ssl.SSLContext:
        ctx = self._clients.get(ca)
        if ctx is None:
            ctx = self._clients[ca] = client_context(ca, self._identity)
        return ctx

    async def _connect(self, dest: Peer) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if dest.transport == "tls":
                    transport, _ = await loop.create_connection(
                        lambda: _Stream(self, dest, inbound=False), dest.host, dest.port,
                        ssl=self._client(dest.ca), server_hostname=dest.server_name or dest.host,
                        ssl_handshake_timeout=CONNECT_TIMEOUT,
                    )  # fmt: skip
                else:
                    transport, _ = await loop.create_connection(
                        lambda: _Stream(self, dest, inbound=False), dest.host, dest.port
                    )
        except ssl.SSLCertVerificationError as exc:
            self._connect_failed(dest, exc, "sip.tls_verify_failed")
            return
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self._connect_failed(dest, exc, "sip.connect_failed")
            return
        for chunk in self._connecting.pop(dest, []):
            transport.write(chunk)

    def _connect_failed(self, dest: Peer, exc: BaseException, event: str) -> None:
        dropped = self._connecting.pop(dest, [])
        extra = {"server_name": dest.server_name or dest.host} if dest.transport == "tls" else {}
        log.info(event, peer=str(dest), error=_reason(exc), dropped=len(dropped), **extra)
        if self._on_send_error is not None:
            try:
                self._on_send_error(dest)
            except Exception:
                log.exception("sip.on_send_error_failed", peer=str(dest))

    async def close(self) -> None:
        """Close every socket and connection; pending connects are cancelled."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
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
            self._server = None
        if self._tls_socket is not None:
            self._tls_socket.close()
            self._tls_socket = None
        if self._udp is not None:
            self._udp.close()
            self._udp = None


def _listen(host: str, port: int) -> socket.socket:
    """A non-blocking listening TCP socket on host:port (0 = any free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _reason(exc: BaseException) -> str:
    """Why a connection or handshake failed, in words (the verify message when there is one)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
