"""SIP over TLS on real sockets on 127.0.0.1: certificates, names, plain bytes on the TLS port."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from pbx.errors import ConfigError
from pbx.sip import transport
from pbx.sip.message import Headers, Request
from pbx.sip.peer import Peer
from pbx.sip.transaction import ResponseReceived, TransactionLayer, TransactionTerminated
from pbx.sip.transport import SipTransport, server_context
from tests.logs_support import module_logs
from tests.tls_support import Authority, self_signed

MSG1 = b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: 1\r\nContent-Length: 0\r\n\r\n"
MSG2 = b"SIP/2.0 200 OK\r\nl: 5\r\nCall-ID: 2\r\n\r\nhello"


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Peer]] = asyncio.Queue()

    def __call__(self, data: bytes, source: Peer) -> None:
        self.queue.put_nowait((data, source))

    async def get(self) -> tuple[bytes, Peer]:
        return await asyncio.wait_for(self.queue.get(), 5)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[MutableMapping[str, Any]]]:
    """The transport's log lines (a fresh logger: another test may have cached the module's)."""
    with module_logs(monkeypatch, transport, "pbx.sip.transport") as captured:
        yield captured


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority()


def _server(tmp_path: Path, pem_cert: str, pem_key: str) -> ssl.SSLContext:
    (tmp_path / "s.crt").write_text(pem_cert)
    (tmp_path / "s.key").write_text(pem_key)
    return server_context(str(tmp_path / "s.crt"), str(tmp_path / "s.key"))


async def _pair(
    ctx: ssl.SSLContext,
) -> tuple[SipTransport, Inbox, SipTransport, Inbox, asyncio.Queue[Peer]]:
    s_in, c_in = Inbox(), Inbox()
    failed: asyncio.Queue[Peer] = asyncio.Queue()
    server = SipTransport(s_in, port=0, tls=ctx, tls_port=0)
    client = SipTransport(c_in, port=0, on_send_error=failed.put_nowait)
    await server.start()
    await client.start()
    return server, s_in, client, c_in, failed


async def test_tls_round_trip_verified_and_reused(
    tmp_path: Path, ca: Authority, logs: list[MutableMapping[str, Any]]
) -> None:
    leaf = ca.issue("trunk.example.test")
    server, s_in, client, c_in, _ = await _pair(_server(tmp_path, leaf.cert, leaf.key))
    try:
        assert server.tls_port not in (0, server.port)
        assert server.local("tls") == Peer("tls", "127.0.0.1", server.tls_port)
        dest = Peer("tls", "127.0.0.1", server.tls_port, "trunk.example.test", ca.pem)
        client.send(MSG1, dest)
        data, source = await s_in.get()
        assert data == MSG1
        assert source.transport == "tls"
        assert any(e["event"] == "sip.tls_connected" and e["version"] in ("TLSv1.2", "TLSv1.3")
                   for e in logs)  # fmt: skip
        server.send(MSG2, source)  # the answer goes back on the same connection
        assert await c_in.get() == (MSG2, dest)
        # A later send without the name (a Peer from a Contact) reuses the connection.
        client.send(MSG1, Peer("tls", "127.0.0.1", server.tls_port))
        assert (await s_in.get()) == (MSG1, source)
        assert len(client._streams) == 1
        assert len(server._streams) == 1
    finally:
        await client.close()
        await server.close()


@pytest.mark.parametrize(
    ("name", "use_ca", "reason"),
    [
        ("wrong.example.test", True, "Hostname mismatch"),  # a name the cert does not carry
        (
            "trunk.example.test",
            False,
            "unable to get local issuer certificate",
        ),  # private CA, no --ca
    ],
)
async def test_tls_verify_failure_is_a_send_error(
    tmp_path: Path,
    ca: Authority,
    name: str,
    use_ca: bool,
    reason: str,
    logs: list[MutableMapping[str, Any]],
) -> None:
    leaf = ca.issue("trunk.example.test")
    server, s_in, client, _, failed = await _pair(_server(tmp_path, leaf.cert, leaf.key))
    try:
        dest = Peer("tls", "127.0.0.1", server.tls_port, name, ca.pem if use_ca else "")
        client.send(MSG1, dest)
        assert await asyncio.wait_for(failed.get(), 5) == dest
        lines = [e for e in logs if e["event"] == "sip.tls_verify_failed"]
        assert len(lines) == 1, logs
        assert reason in lines[0]["error"]
        assert lines[0]["server_name"] == name
        assert s_in.queue.empty()
    finally:
        await client.close()
        await server.close()


async def test_self_signed_peer_refused(
    tmp_path: Path, logs: list[MutableMapping[str, Any]]
) -> None:
    own = self_signed("trunk.example.test")
    server, _, client, _, failed = await _pair(_server(tmp_path, own.cert, own.key))
    try:
        client.send(MSG1, Peer("tls", "127.0.0.1", server.tls_port, "trunk.example.test"))
        await asyncio.wait_for(failed.get(), 5)
        (line,) = [e for e in logs if e["event"] == "sip.tls_verify_failed"]
        assert "self-signed" in line["error"] or "self signed" in line["error"]
    finally:
        await client.close()
        await server.close()


async def test_plain_tcp_on_tls_port_dropped_then_tls_still_works(
    tmp_path: Path, ca: Authority, logs: list[MutableMapping[str, Any]]
) -> None:
    leaf = ca.issue("trunk.example.test")
    server, s_in, client, _, _ = await _pair(_server(tmp_path, leaf.cert, leaf.key))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tls_port)
        writer.write(MSG1)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing answered
        writer.close()
        dest = Peer("tls", "127.0.0.1", server.tls_port, "trunk.example.test", ca.pem)
        client.send(MSG1, dest)
        assert (await s_in.get())[0] == MSG1
        failures = [e for e in logs if e["event"] == "sip.tls_handshake_failed"]
        assert len(failures) == 1, logs
        assert s_in.queue.empty()
    finally:
        await client.close()
        await server.close()


def test_server_context_errors_are_one_line(tmp_path: Path, ca: Authority) -> None:
    leaf = ca.issue("pbx.example.test")
    other = ca.issue("other.example.test")
    cert, key = leaf.write(tmp_path, "pbx")
    _, other_key = other.write(tmp_path, "other")
    server_context(str(cert), str(key))  # loads
    cases = {
        (str(tmp_path / "missing.crt"), str(key)): "cannot read (No such file or directory)",
        (str(key), str(key)): "no PEM certificate",
        (str(cert), str(cert)): "no PEM private key",
        (str(cert), str(other_key)): "do not load as a certificate and its key",
    }
    for (c, k), words in cases.items():
        with pytest.raises(ConfigError) as err:
            server_context(c, k)
        assert words in str(err.value)
        assert "\n" not in str(err.value)


def test_encrypted_key_refused_without_prompt(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    ca = Authority()
    leaf = ca.issue("pbx.example.test")
    key = serialization.load_pem_private_key(leaf.key.encode(), None)
    locked = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    (tmp_path / "c.pem").write_text(leaf.cert)
    (tmp_path / "k.pem").write_bytes(locked)
    with pytest.raises(ConfigError, match="encrypted keys are not supported"):
        server_context(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


def test_transport_failure_fails_waiting_client_transactions() -> None:
    layer = TransactionLayer()
    dest = Peer("tls", "192.0.2.1", 5061)
    headers = Headers()
    for name, value in (
        ("Via", "SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bK-1"),
        ("From", "<sip:a@b>;tag=1"),
        ("To", "<sip:c@d>"),
        ("Call-ID", "x"),
        ("CSeq", "1 INVITE"),
        ("Max-Forwards", "70"),
    ):
        headers.add(name, value)
    key = layer.send_request(Request("INVITE", "sip:c@d", headers, b""), dest, 0.0)
    layer.datagrams_to_send()
    other = Peer("tls", "192.0.2.2", 5061)
    assert layer.transport_failed(other) == []
    events = layer.transport_failed(Peer("tls", "192.0.2.1", 5061, "trunk.example.test"))
    assert isinstance(events[0], ResponseReceived)
    assert events[0].key == key
    assert events[0].response.status == 503
    assert events[1] == TransactionTerminated(key)
    assert layer.state_of(key) is None
    assert layer.datagrams_to_send() == []


async def test_silent_connections_cannot_hold_more_than_the_handshake_bound(
    tmp_path: Path, ca: Authority, monkeypatch: pytest.MonkeyPatch,
    logs: list[MutableMapping[str, Any]],
) -> None:
    """Connections that never send a ClientHello are bounded; past it they are closed at once."""
    monkeypatch.setattr(transport, "MAX_HANDSHAKES", 3)
    leaf = ca.issue("trunk.example.test")
    server, _, client, _, _ = await _pair(_server(tmp_path, leaf.cert, leaf.key))
    silent = []
    try:
        for _ in range(3):  # hold every handshake slot without a byte
            silent.append(await asyncio.open_connection("127.0.0.1", server.tls_port))

        for _ in range(500):  # bounded: until the server has accepted all three
            if server._handshakes == 3:
                break
            await asyncio.sleep(0.01)
        assert server._handshakes == 3
        reader, writer = await asyncio.open_connection("127.0.0.1", server.tls_port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # over the bound: closed
        writer.close()
        assert any(e["event"] == "sip.tcp_limit" for e in logs)
        for _, w in silent:  # the slots free up when the silent clients leave
            w.close()

        for _ in range(500):  # bounded
            if server._handshakes == 0:
                break
            await asyncio.sleep(0.01)
        assert server._handshakes == 0
    finally:
        await client.close()
        await server.close()


async def _mutual_tls_server(
    tmp_path: Path, ca: Authority, version: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED
) -> tuple[asyncio.Server, asyncio.Queue[dict[str, Any] | None]]:
    """A TLS server (Python ssl) that requires a client certificate from `ca`; peers seen."""
    cert, key = ca.issue("trunk.example.test").write(tmp_path, "mtls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.maximum_version = version
    ctx.load_cert_chain(cert, key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=ca.pem)
    seen: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.put_nowait(writer.get_extra_info("peercert"))
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=ctx)
    return server, seen


async def test_pbx_presents_its_certificate_to_a_server_that_asks(
    tmp_path: Path, ca: Authority, logs: list[MutableMapping[str, Any]]
) -> None:
    server, seen = await _mutual_tls_server(tmp_path, ca)
    port = server.sockets[0].getsockname()[1]
    # TLS 1.2: the server checks the client's certificate before the client's handshake ends,
    # so a client without one fails its connect (in 1.3 the refusal comes after, as an alert)
    strict, _ = await _mutual_tls_server(tmp_path, ca, ssl.TLSVersion.TLSv1_2)
    strict_port = strict.sockets[0].getsockname()[1]
    ours = ca.issue("pbx.example.test").write(tmp_path, "pbx")
    failed: asyncio.Queue[Peer] = asyncio.Queue()
    with_cert = SipTransport(lambda d, p: None, port=0, tls_identity=(str(ours[0]), str(ours[1])))
    without = SipTransport(lambda d, p: None, port=0, on_send_error=failed.put_nowait)
    await with_cert.start()
    await without.start()
    try:
        dest = Peer("tls", "127.0.0.1", port, "trunk.example.test", ca.pem)
        with_cert.send(MSG1, dest)
        peer = await asyncio.wait_for(seen.get(), 5)
        assert peer is not None
        names = {value for kind, value in peer.get("subjectAltName", ()) if kind == "DNS"}
        assert names == {"pbx.example.test"}  # the server verified pbx's certificate
        refused = Peer("tls", "127.0.0.1", strict_port, "trunk.example.test", ca.pem)
        without.send(MSG1, refused)  # no client certificate: the server refuses the handshake
        assert await asyncio.wait_for(failed.get(), 10) == refused
        assert any(e["event"] == "sip.tls_verify_failed" or e["event"] == "sip.connect_failed"
                   for e in logs)  # fmt: skip
    finally:
        await with_cert.close()
        await without.close()
        for s in (server, strict):
            s.close()
            await s.wait_closed()
