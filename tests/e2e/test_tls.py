"""SIP over TLS end to end: Kamailio's tls module as the real peer, Python `ssl` for the bad ones.

- A call crosses TLS twice: sipp (the carrier, UDP) -> Kamailio -> TLS ->
  pbx -> TLS -> Kamailio -> sipp (the phone, UDP). pbx verifies Kamailio's
  certificate against the test's CA (`trunks --ca`), Kamailio verifies
  pbx's; Kamailio logs the protocol of every request pbx sent it.
- A trunk whose certificate carries another name, and a SIP URI destination
  whose certificate is self-signed, fail like an unreachable trunk (503, the
  hunt goes on to the next destination), each with one log line naming why.
- Plain TCP bytes on pbx's TLS port: the connection is closed, logged once,
  and pbx still answers OPTIONS over TLS.

Certificates are made in the test (tests/tls_support.py). Needs Debian's
`kamailio` and `kamailio-tls-modules` (skipped locally without them, a
failure under CI).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.records import Disposition
from pbx.sip.framing import StreamFramer
from pbx.sip.message import Response
from pbx.store import Destination, Source, Store, TrackingNumber, Trunk
from tests.tls_support import Authority, self_signed

from .conftest import SippFactory, free_port
from .daemon import DaemonProcess, provision
from .kamailio_proc import KamailioProcess, kamailio_binary
from .test_b2bua import _caller_keys, _ok, _record

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).resolve().parent / "kamailio" / "tls_proxy.cfg"
TLS_MODULE = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules/tls.so")
DID = "+12125550160"
OFFICE = "+14155550101"
MOBILE = "+14155550102"


def _need_tls_module() -> None:
    if not TLS_MODULE.exists():
        if os.environ.get("CI"):
            pytest.fail("kamailio's tls module is missing but CI is set "
                        "(apt-get install kamailio-tls-modules)")  # fmt: skip
        pytest.skip("kamailio's tls module is missing (apt-get install kamailio-tls-modules)")


@pytest.fixture(scope="module")
def ca() -> Authority:
    return Authority("pbx e2e CA")


def _tls_env(daemon: DaemonProcess, tmp_path: Path, ca: Authority) -> int:
    """pbx on UDP and TLS with a certificate from `ca`; returns the TLS port."""
    cert, key = ca.issue("pbx.test").write(tmp_path, "pbx")
    port = free_port()
    daemon.env.update({
        "PBX_SIP_TRANSPORTS": "udp,tls", "PBX_SIP_TLS_PORT": str(port),
        "PBX_SIP_TLS_CERT": str(cert), "PBX_SIP_TLS_KEY": str(key),
    })  # fmt: skip
    return port


def _events(daemon: DaemonProcess, name: str) -> list[dict[str, object]]:
    out = []
    for line in daemon.log_text().splitlines():
        if f'"{name}"' in line:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if event.get("event") == name:
                    out.append(event)
    return out


# --- Kamailio, the real TLS peer ----------------------------------------------------------


class TlsProxy(KamailioProcess):
    """One Kamailio process with a UDP and a TLS listener, ended by its PID."""

    def __init__(self, workdir: Path, ca: Authority, pbx_tls: int, phone: int) -> None:
        self.udp, self.tls = free_port(), free_port()
        super().__init__(workdir, self.udp)
        cert, key = ca.issue("kamailio.test").write(workdir, "kamailio")
        (workdir / "ca.crt").write_text(ca.pem)
        self.defines = {
            "UDP_LISTEN": f"udp:127.0.0.1:{self.udp}",
            "TLS_LISTEN": f"tls:127.0.0.1:{self.tls}",
            "TLS_CERT": f'"{cert}"', "TLS_KEY": f'"{key}"', "TLS_CA": f'"{workdir / "ca.crt"}"',
            "DID_USER": f'"{DID[1:]}"',
            "PBX": f'"sip:127.0.0.1:{pbx_tls};transport=tls"',
            "PHONE": f'"sip:127.0.0.1:{phone}"',
        }  # fmt: skip

    async def start(self) -> None:  # type: ignore[override]
        await super().start(CONFIG, self.defines)


async def test_call_over_tls_both_ways_through_kamailio(
    tmp_path: Path, sipp: SippFactory, daemon: DaemonProcess, ca: Authority
) -> None:
    _need_tls_module()
    kamailio_binary()
    pbx_tls = _tls_env(daemon, tmp_path, ca)
    phone = await sipp.start("b2bua_callee.xml", seconds=20)
    proxy_dir = tmp_path / "kamailio"
    proxy_dir.mkdir()
    proxy = TlsProxy(proxy_dir, ca, pbx_tls, phone.port)
    try:
        await proxy.start()

        async def rows(store: Store) -> None:
            await store.trunks.add(Trunk(
                name="front", host="127.0.0.1", port=proxy.tls, transport="tls", tls_ca=ca.pem,
                allow=("127.0.0.1/32",),
            ))  # fmt: skip
            await store.destinations.add(Destination(name="office", target=OFFICE, kind="number"))
            await store.sources.add(Source(name="Radio", tag="radio"))
            await store.numbers.add(TrackingNumber(
                number=DID, source="Radio", destinations=("office",), trunk="front",
            ))  # fmt: skip

        await provision(daemon.db, rows)
        await daemon.start()
        caller = await sipp.start(
            "b2bua_caller.xml", remote=("127.0.0.1", proxy.udp), keys=_caller_keys(),
            extra=["-s", DID[1:], "-d", "1000"], seconds=20,
        )  # fmt: skip
        await _ok(caller)
        await _ok(phone)
        record = _record(await daemon.wait_final_record())
        assert record.disposition == Disposition.ANSWERED, record
        assert record.hangup_by == "caller"
        log = proxy.log()
        # Kamailio saw pbx's INVITE (to the phone), ACK and BYE on TLS.
        for method in ("INVITE", "ACK", "BYE"):
            assert f"PBX-HOP {method} proto=tls" in log, log[-3000:]
        connected = _events(daemon, "sip.tls_connected")
        peers = {str(e["peer"]) for e in connected}
        assert f"tls:127.0.0.1:{proxy.tls}" in peers  # pbx -> Kamailio, verified
        assert any(p != f"tls:127.0.0.1:{proxy.tls}" for p in peers)  # Kamailio -> pbx
        assert all(e["version"] in ("TLSv1.2", "TLSv1.3") for e in connected)
        assert not _events(daemon, "sip.tls_verify_failed")
    finally:
        await proxy.stop()


# --- peers pbx must refuse (Python ssl) ------------------------------------------------------


@contextlib.asynccontextmanager
async def tls_listener(
    pem_cert: str, pem_key: str, folder: Path
) -> AsyncIterator[tuple[int, list[str]]]:
    """A TLS server that completes handshakes and reads nothing: (port, handshakes seen)."""
    cert, key = folder / "peer.crt", folder / "peer.key"
    cert.write_text(pem_cert)
    key.write_text(pem_key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append("handshake")
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


async def test_wrong_name_and_self_signed_fail_over_to_the_next_destination(
    tmp_path: Path, sipp: SippFactory, daemon: DaemonProcess, ca: Authority
) -> None:
    _tls_env(daemon, tmp_path, ca)
    phone = await sipp.start("b2bua_callee.xml", seconds=20)
    wrong = ca.issue("someone-else.test", ips=())  # signed by the trusted CA, another name
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    own = self_signed("127.0.0.1")
    async with tls_listener(wrong.cert, wrong.key, tmp_path / "a") as (named_port, _), \
            tls_listener(own.cert, own.key, tmp_path / "b") as (self_port, _):  # fmt: skip

        async def rows(store: Store) -> None:
            await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", port=phone.port,
                                         allow=("127.0.0.0/8",)))  # fmt: skip
            await store.trunks.add(Trunk(
                name="secure", host="127.0.0.1", port=named_port, transport="tls", tls_ca=ca.pem,
                allow=("192.0.2.1/32",),
            ))  # fmt: skip
            for name, target, kind in (
                ("named", OFFICE, "number"),
                ("selfsigned", f"sip:{MOBILE}@127.0.0.1:{self_port};transport=tls", "sip"),
                ("phone", f"sip:{OFFICE}@127.0.0.1:{phone.port}", "sip"),
            ):
                await store.destinations.add(Destination(name=name, target=target, kind=kind))  # type: ignore[arg-type]
            await store.sources.add(Source(name="Radio", tag="radio"))
            await store.numbers.add(TrackingNumber(
                number=DID, source="Radio", destinations=("named", "selfsigned", "phone"),
                trunk="secure",
            ))  # fmt: skip

        await provision(daemon.db, rows)
        await daemon.start()
        caller = await sipp.start(
            "b2bua_caller.xml", remote=("127.0.0.1", daemon.sip_port), keys=_caller_keys(),
            extra=["-s", DID[1:], "-d", "500"], seconds=20,
        )  # fmt: skip
        await _ok(caller)
        await _ok(phone)
        record = _record(await daemon.wait_final_record())
    assert record.disposition == Disposition.ANSWERED, record
    assert record.destination == "phone"
    statuses = [a.status for a in record.attempts]
    assert statuses == [503, 503, 200], record.attempts
    failures = _events(daemon, "sip.tls_verify_failed")
    reasons = {str(e["peer"]): str(e["error"]) for e in failures}
    assert len(failures) == 2, failures
    assert "address mismatch" in reasons[f"tls:127.0.0.1:{named_port}"]  # the trunk's host: an IP
    assert "self-signed" in reasons[f"tls:127.0.0.1:{self_port}"] or \
        "self signed" in reasons[f"tls:127.0.0.1:{self_port}"]  # fmt: skip


async def test_plain_tcp_on_the_tls_port_is_dropped_and_tls_still_answers(
    tmp_path: Path, daemon: DaemonProcess, ca: Authority
) -> None:
    port = _tls_env(daemon, tmp_path, ca)
    await daemon.start()
    options = (
        "OPTIONS sip:pbx@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/{t} 127.0.0.1:5999;branch=z9hG4bK-tls-{n}\r\n"
        "From: <sip:probe@127.0.0.1>;tag=p{n}\r\nTo: <sip:pbx@127.0.0.1>\r\n"
        "Call-ID: tls-probe-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(options.format(t="TCP", n=1).encode())
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 15) == b""  # closed, nothing answered
    writer.close()
    client = ssl.create_default_context(cadata=ca.pem)
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname="pbx.test"
    )
    try:
        writer.write(options.format(t="TLS", n=2).encode())
        await writer.drain()
        framer = StreamFramer()
        messages: list[object] = []
        while not messages:
            chunk = await asyncio.wait_for(reader.read(4096), 10)
            assert chunk, "pbx closed the TLS connection"
            messages = list(framer.feed(chunk))
        answer = messages[0]
        assert isinstance(answer, Response)
        assert answer.status == 200
    finally:
        writer.close()
    failures = _events(daemon, "sip.tls_handshake_failed")
    assert len(failures) == 1, failures
    assert await daemon.health() == 200


# --- SIGHUP: a renewed certificate without a restart -------------------------------------


async def _served_names(port: int, ca: Authority) -> set[str]:
    """The DNS names in the certificate pbx serves on a new TLS connection to `port`."""
    ctx = ssl.create_default_context(cadata=ca.pem)
    ctx.check_hostname = False  # we read the names instead
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port, ssl=ctx), 5)
    try:
        cert = writer.get_extra_info("peercert")
        return {value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"}
    finally:
        writer.close()


async def _logged(daemon: DaemonProcess, name: str, count: int) -> None:
    """Bounded wait until the daemon's log holds `count` `name` events."""
    for _ in range(200):  # 10 s
        if len(_events(daemon, name)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {name} in the daemon's log:\n{daemon.log_text()[-2000:]}")


async def test_sighup_serves_a_renewed_certificate_and_keeps_it_when_files_are_bad(
    tmp_path: Path, daemon: DaemonProcess, ca: Authority
) -> None:
    port = _tls_env(daemon, tmp_path, ca)
    await daemon.start()
    await _logged(daemon, "pbx.ready", 1)  # signal handlers are set by then
    assert await _served_names(port, ca) == {"pbx.test"}
    ca.issue("renewed.pbx.test").write(tmp_path, "pbx")  # the renewal lands in place
    assert await _served_names(port, ca) == {"pbx.test"}  # read at start and on SIGHUP only
    os.kill(daemon.pid, signal.SIGHUP)
    await _logged(daemon, "pbx.tls_reloaded", 1)
    assert await _served_names(port, ca) == {"renewed.pbx.test"}
    (tmp_path / "pbx.key").write_text("half-written renewal\n")
    os.kill(daemon.pid, signal.SIGHUP)
    await _logged(daemon, "pbx.tls_reload_failed", 1)
    [failed] = _events(daemon, "pbx.tls_reload_failed")
    assert "no PEM private key" in str(failed["error"])
    assert await _served_names(port, ca) == {"renewed.pbx.test"}  # the running one stays
    assert await daemon.health() == 200
    assert await daemon.stop() == 0
