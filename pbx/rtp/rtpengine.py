"""rtpengine media engine control: awaitable ng requests over one UDP socket (asyncio I/O).

`Rtpengine` is the I/O edge around the pure `pbx.rtp.ng.NgClient`: it owns
one UDP socket (an asyncio DatagramProtocol), feeds received datagrams and
timer expiries to the client, sends what the client returns, and resolves
one future per request. Time is the event loop's monotonic clock.

Decisions:
- One exception type, `RtpengineError`, for every failure (timeout after
  fail-over, an `error` reply, a garbled reply, a closed client, a bad
  instance address), with a one-line message. A garbled reply is also
  logged at warning (`rtpengine.garbled_reply`) with the instance and the
  reason, never the datagram: SDP may carry SRTP keys (a=crypto).
- One timer: a single `loop.call_at` handle re-armed to the client's
  `next_deadline()` after every event, so no task runs per request.
- A caller that is cancelled (e.g. the SIP transaction gave up) cancels its
  request in the client: no more retransmissions.
- Instance addresses are resolved once at `open()` (host names through
  getaddrinfo, in the socket's family) because the client matches replies by
  source (host, port); the socket's family comes from `local`
  (default 127.0.0.1:0; give "0.0.0.0"/"::" to reach remote instances).
- Cookies get a random prefix per process (secrets), so a restarted pbx
  never collides with a cookie rtpengine still has a cached reply for.
- Low rate, so plain `transport.sendto` and no send-buffer accounting: ng
  traffic is a few datagrams per call (DESIGN.md: not the RTP hot path).
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from collections.abc import Sequence
from typing import Any

import structlog

from pbx.errors import PbxError
from pbx.rtp.ng import (
    B2BUA,
    DEFAULT_INTERVALS,
    DOWN_FOR,
    Address,
    Answer,
    CallStats,
    Completed,
    Delete,
    Failure,
    MediaOptions,
    NgClient,
    NgError,
    Offer,
    Ping,
    Query,
    Refused,
    Reply,
    Request,
    SdpReply,
    StatsReply,
    Transmit,
)

log = structlog.get_logger("pbx.rtp.rtpengine")


class RtpengineError(PbxError):
    """An ng request failed; the message is one line naming what and where."""


def parse_instance(text: str) -> tuple[str, int]:
    """`HOST:PORT` or `[IPv6]:PORT` -> (host, port); RtpengineError if malformed."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RtpengineError(f"rtpengine: bad instance {text!r} (want HOST:PORT)")
    return host, int(port_text)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: Rtpengine) -> None:
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.owner._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("rtpengine.socket_error", error=str(exc))  # ICMP unreachable and the like

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._fail_all("rtpengine: control socket closed")


class Rtpengine:
    """Awaitable ping/offer/answer/delete/query against a list of rtpengine instances.

    Create with `await Rtpengine.open([...])`; `close()` when done.
    """

    def __init__(self, client: NgClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._futures: dict[int, asyncio.Future[Reply]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    @classmethod
    async def open(
        cls,
        instances: Sequence[str | Address],
        *,
        local: Address = ("127.0.0.1", 0),
        intervals: Sequence[float] = DEFAULT_INTERVALS,
        down_for: float = DOWN_FOR,
    ) -> Rtpengine:
        """Bind the control socket and resolve `instances` (in order of preference)."""
        loop = asyncio.get_running_loop()
        family = _family(local[0])
        resolved = [await _resolve(loop, i, family) for i in instances]
        try:
            client = NgClient(
                resolved,
                cookie_prefix=secrets.token_hex(4) + "-",
                intervals=intervals,
                down_for=down_for,
            )
        except NgError as exc:
            raise RtpengineError(str(exc)) from None
        engine = cls(client, loop)
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(engine), local_addr=local, family=family
            )
        except OSError as exc:
            raise RtpengineError(f"rtpengine: cannot bind {local[0]}:{local[1]}: {exc}") from None
        engine._transport = transport
        return engine

    @property
    def local_address(self) -> Address:
        if self._transport is None:
            raise RtpengineError("rtpengine: client is closed")
        name = self._transport.get_extra_info("sockname")
        return str(name[0]), int(name[1])

    # -- the commands --

    async def ping(self, instance: Address | None = None) -> None:
        """One instance (or the first that answers) is alive."""
        await self.request(Ping(), instance=instance)

    async def offer(
        self,
        call_id: str,
        from_tag: str,
        sdp: bytes,
        options: MediaOptions = B2BUA,
        *,
        via_branch: str | None = None,
    ) -> bytes:
        """Anchor the offerer's media; returns the SDP to send to the answerer."""
        return _sdp(await self.request(Offer(call_id, from_tag, sdp, options, via_branch)))

    async def answer(
        self,
        call_id: str,
        from_tag: str,
        to_tag: str,
        sdp: bytes,
        options: MediaOptions = B2BUA,
        *,
        via_branch: str | None = None,
    ) -> bytes:
        """Anchor the answerer's media; returns the SDP to send back to the offerer."""
        return _sdp(await self.request(Answer(call_id, from_tag, to_tag, sdp, options, via_branch)))

    async def delete(
        self,
        call_id: str,
        from_tag: str | None = None,
        to_tag: str | None = None,
        *,
        flags: tuple[str, ...] = (),
        delete_delay: int | None = None,
    ) -> CallStats | None:
        """End the call; its final counters (None if rtpengine gave none).

        Give `from_tag` to get counters: rtpengine 10.5 deletes a call named
        by call-id alone but then replies without `totals`.
        """
        return _stats(await self.request(Delete(call_id, from_tag, to_tag, flags, delete_delay)))

    async def query(
        self, call_id: str, from_tag: str | None = None, to_tag: str | None = None
    ) -> CallStats:
        """The call's counters so far."""
        stats = _stats(await self.request(Query(call_id, from_tag, to_tag)))
        if stats is None:
            raise RtpengineError(f"rtpengine: query for {call_id!r} returned no totals")
        return stats

    async def request(self, request: Request, *, instance: Address | None = None) -> Reply:
        """Send any ng request; its reply, or RtpengineError (never a Refused)."""
        if self._transport is None:
            raise RtpengineError("rtpengine: client is closed")
        try:
            first = self.client.request(request, self._loop.time(), instance=instance)
        except NgError as exc:
            raise RtpengineError(str(exc)) from None
        future: asyncio.Future[Reply] = self._loop.create_future()
        self._futures[first.request_id] = future
        self._send(first)
        self._arm()
        try:
            return await future
        except asyncio.CancelledError:  # the caller gave up: stop retransmitting
            self.client.cancel(first.request_id)
            self._arm()
            raise
        finally:
            self._futures.pop(first.request_id, None)

    def close(self) -> None:
        """Close the socket; requests still waiting fail with RtpengineError."""
        transport, self._transport = self._transport, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None
        self._fail_all("rtpengine: client closed")
        if transport is not None:
            transport.close()

    # -- event plumbing --

    def _send(self, transmit: Transmit) -> None:
        if self._transport is not None:
            self._transport.sendto(transmit.datagram, transmit.address)

    def _received(self, data: bytes, source: Address) -> None:
        completed = self.client.on_datagram(data, source, self._loop.time())
        if completed is None:
            log.debug("rtpengine.ignored_datagram", source=f"{source[0]}:{source[1]}")
            return
        self._resolve(completed)
        self._arm()

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        for action in self.client.on_timer(self._loop.time()):
            if isinstance(action, Transmit):
                self._send(action)
            else:
                self._resolve(action)
        self._arm()

    def _arm(self) -> None:
        deadline = self.client.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _resolve(self, completed: Completed) -> None:
        future = self._futures.get(completed.request_id)
        if future is None or future.done():
            return
        outcome = completed.outcome
        where = f"{completed.address[0]}:{completed.address[1]}"
        if isinstance(outcome, Failure):
            if outcome.kind == "garbled":
                log.warning("rtpengine.garbled_reply", instance=where, reason=outcome.message)
            future.set_exception(RtpengineError(f"rtpengine: {outcome.message}"))
        elif isinstance(outcome, Refused):
            reason = " ".join(outcome.reason.split())[:200]  # one line, bounded
            future.set_exception(RtpengineError(f"rtpengine at {where} refused: {reason}"))
        else:
            future.set_result(outcome)

    def _fail_all(self, message: str) -> None:
        for request_id, future in list(self._futures.items()):
            if not future.done():
                future.set_exception(RtpengineError(message))
            self.client.cancel(request_id)


def _sdp(reply: Reply) -> bytes:
    # parse_reply gives offer/answer an SdpReply or raises; this keeps mypy and readers sure
    if not isinstance(reply, SdpReply):
        raise RtpengineError(f"rtpengine: unexpected {type(reply).__name__} to offer/answer")
    return reply.sdp


def _stats(reply: Reply) -> CallStats | None:
    if not isinstance(reply, StatsReply):
        raise RtpengineError(f"rtpengine: unexpected {type(reply).__name__} to delete/query")
    return reply.stats


def _family(host: str) -> socket.AddressFamily:
    try:
        return socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        raise RtpengineError(f"rtpengine: local address {host!r} is not an IP address") from None


async def _resolve(
    loop: asyncio.AbstractEventLoop, instance: str | Address, family: socket.AddressFamily
) -> Address:
    host, port = parse_instance(instance) if isinstance(instance, str) else instance
    try:
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise RtpengineError(f"rtpengine: cannot resolve {host}:{port}: {exc}") from None
    if not infos:
        raise RtpengineError(f"rtpengine: {host}:{port} has no {family.name} address")
    sockaddr = infos[0][4]
    return str(sockaddr[0]), int(sockaddr[1])
