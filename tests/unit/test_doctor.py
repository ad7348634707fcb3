"""`pbx doctor` on real files, real sockets on 127.0.0.1 and a tiny SIP responder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.admin import doctor
from pbx.sip.ids import CountingIds
from pbx.sip.message import Request, parse
from pbx.sip.responses import make_response
from pbx.store.base import Destination, TrackingNumber, Trunk

# ---------------------------------------------------------------- helpers
from pbx.store.sqlite.store import load_migrations
from tests.unit.cli_helpers import ok, pbx

CURRENT = len(load_migrations())


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


def _rtp_range() -> tuple[int, int]:
    for _ in range(50):
        low = _free_port() & ~1
        sample = doctor.rtp_sample(low, low + 9, doctor.RTP_SAMPLE)
        if all(
            doctor.try_bind(doctor.PortCheck("RTP", "127.0.0.1", p, socket.SOCK_DGRAM)) is None
            for s in sample
            for p in (s, s + 1)
        ):
            return low, low + 9
    raise RuntimeError("no free RTP range")


@dataclass
class Setup:
    config: Path
    db: Path
    sip_port: int
    http_port: int


def _write_config(tmp: Path, db: Path, extra: str = "") -> Setup:
    sip, http = _free_port(), _free_port(socket.SOCK_STREAM)
    low, high = _rtp_range()
    config = tmp / "pbx.toml"
    config.write_text(
        f'[sip]\nhost = "127.0.0.1"\nport = {sip}\n'
        f'[rtp]\nhost = "127.0.0.1"\nport_low = {low}\nport_high = {high}\n'
        f'[http]\nhost = "127.0.0.1"\nport = {http}\n'
        f'[store]\npath = "{db}"\n{extra}'
    )
    return Setup(config, db, sip, http)


def _doctor(setup: Setup, *args: str) -> tuple[int, list[str]]:
    result = pbx(setup.db, "doctor", "--config", str(setup.config), *args)
    assert result.stderr == ""
    return result.exit_code, result.stdout.splitlines()


def _lines(lines: list[str], level: str) -> list[str]:
    return [line for line in lines if line.startswith(f"{level} ")]


@dataclass
class Responder:
    """A SIP UDP peer answering OPTIONS with `status`, in its own thread and loop."""

    status: int = 200
    port: int = 0
    seen: list[Request] = field(default_factory=list)


class _OptionsProtocol(asyncio.DatagramProtocol):
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = parse(data)
        assert isinstance(msg, Request)
        self.responder.seen.append(msg)
        assert self.transport is not None
        reply = make_response(msg, self.responder.status, to_tag="doctor-test")
        self.transport.sendto(bytes(reply), addr)


@pytest.fixture
def responder() -> Iterator[Responder]:
    state = Responder()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    made = asyncio.run_coroutine_threadsafe(
        loop.create_datagram_endpoint(lambda: _OptionsProtocol(state), local_addr=("127.0.0.1", 0)),
        loop,
    )
    transport, _ = made.result(timeout=5)
    state.port = transport.get_extra_info("sockname")[1]
    yield state
    loop.call_soon_threadsafe(transport.close)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    loop.close()


def _seed_good(db: Path, trunk_port: int) -> None:
    ok(db, "trunks", "add", "carrier", "--host", f"127.0.0.1:{trunk_port}")
    ok(db, "destinations", "add", "desk", "+14155550101")
    ok(db, "sources", "add", "--preset", "tv")
    ok(db, "numbers", "add", "+14155550150", "--source", "TV", "--destination", "desk",
       "--trunk", "carrier")  # fmt: skip


# ---------------------------------------------------------------- CLI


def test_good_config_and_database_pass(tmp_path: Path, responder: Responder) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3")
    _seed_good(setup.db, responder.port)
    code, lines = _doctor(setup)
    assert code == 0, lines
    assert _lines(lines, "FAIL") == []
    assert all(line[:6] in ("ok    ", "warn  ") for line in lines)
    assert lines[0].startswith(f"ok    config {setup.config} loads: SIP 127.0.0.1:{setup.sip_port}")
    assert f"ok    database {setup.db} opens; schema version {CURRENT} is current" in lines
    assert f"ok    SIP port {setup.sip_port} (udp+tcp) on 127.0.0.1 is free" in lines
    assert f"ok    HTTP port {setup.http_port} on 127.0.0.1 is free" in lines
    assert any(line.startswith("ok    RTP ports ") for line in lines)
    trunk = next(line for line in lines if "trunk carrier" in line)
    assert trunk.startswith(f"ok    trunk carrier (127.0.0.1:{responder.port}/udp) answers OPTIONS")
    assert " 200 in " in trunk
    assert any(line.startswith("ok    1 numbers, 1 destinations") for line in lines)
    # the OPTIONS itself: RFC 3261 §11.1, RFC 3581 rport
    (options,) = responder.seen
    assert options.method == "OPTIONS"
    assert options.uri == f"sip:127.0.0.1:{responder.port}"
    assert options.cseq.method == "OPTIONS"
    assert options.headers.get("Max-Forwards") == "70"
    assert options.vias[0].branch is not None
    assert options.vias[0].branch.startswith("z9hG4bK")
    assert "rport" in options.vias[0].params


def test_broken_config_names_the_bad_key(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3", "[timers]\nring_timout = 5\n")
    code, lines = _doctor(setup)
    assert code == 1
    assert lines[0].startswith(f"FAIL  config {setup.config} do not load: ")
    assert "timers.ring_timout" in lines[0]
    assert lines[1:] == ["warn  other checks skipped: they need settings that load"]
    assert not setup.db.exists()


def test_bad_value_and_bad_flag(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3", '[log]\nlevel = "loud"\n')
    code, lines = _doctor(setup)
    assert code == 1
    assert "log.level" in lines[0]
    result = pbx(setup.db, "doctor", "--config", str(tmp_path / "missing.toml"))
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1


def test_database_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    setup = _write_config(tmp_path, blocker / "sub" / "pbx.sqlite3")
    code, lines = _doctor(setup)
    assert code == 1
    assert f"FAIL  database {setup.db} cannot be created: {blocker} is not a directory" in lines


def test_missing_database_in_a_creatable_directory_is_a_warning(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "new" / "dir" / "pbx.sqlite3")
    code, lines = _doctor(setup)
    assert code == 0, lines
    assert f"warn  database {setup.db} does not exist yet: pbx serve will create it" in lines
    assert not setup.db.parent.exists()  # doctor created nothing


def test_database_that_is_not_sqlite_or_too_new(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3")
    setup.db.write_bytes(b"not a database at all " * 200)
    code, lines = _doctor(setup)
    assert code == 1
    assert any(line.startswith(f"FAIL  database {setup.db} cannot be read: ") for line in lines)

    setup.db.unlink()
    conn = sqlite3.connect(setup.db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    code, lines = _doctor(setup)
    assert code == 1
    newer = f"schema version 99, newer than this pbx knows ({CURRENT}): upgrade pbx"
    assert any(newer in x for x in lines)


def test_database_flag_overrides_the_config(tmp_path: Path, responder: Responder) -> None:
    setup = _write_config(tmp_path, tmp_path / "absent.sqlite3")
    other = tmp_path / "other.sqlite3"
    _seed_good(other, responder.port)
    code, lines = _doctor(Setup(setup.config, other, setup.sip_port, setup.http_port))
    assert code == 0
    assert f"ok    database {other} opens; schema version {CURRENT} is current" in lines


def test_port_in_use_asks_whether_the_daemon_runs(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
        held.bind(("127.0.0.1", setup.sip_port))
        code, lines = _doctor(setup)
    assert code == 1
    assert (
        f"FAIL  SIP port {setup.sip_port}/udp on 127.0.0.1 is already in use: "
        "is the daemon running?" in "\n".join(lines)
    )
    assert not any(f"SIP port {setup.sip_port}/tcp" in line for line in lines)  # TCP is free


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"status": "ok", "active_calls": 0, "media_sessions": 0}).encode()
        self.send_response(200 if self.path == "/health" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_ports_held_by_a_running_daemon_are_warnings(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3")
    server = ThreadingHTTPServer(("127.0.0.1", setup.http_port), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as held:
            held.bind(("127.0.0.1", setup.sip_port))
            code, lines = _doctor(setup)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert code == 0, lines
    assert (
        f"warn  SIP port {setup.sip_port}/udp on 127.0.0.1 is held by the running pbx daemon "
        "(/health answers)" in lines
    )
    assert any(line.startswith(f"warn  HTTP port {setup.http_port}/tcp") for line in lines)


def test_numbers_without_destinations_and_unused_destinations(
    tmp_path: Path, responder: Responder
) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3")
    _seed_good(setup.db, responder.port)
    ok(setup.db, "destinations", "add", "spare", "+12125550123")
    ok(setup.db, "destinations", "remove", "desk", "--force")
    code, lines = _doctor(setup)
    assert code == 1
    assert _lines(lines, "FAIL") == [
        "FAIL  number +14155550150 has no destinations: every call to it is rejected "
        "(pbx numbers update +14155550150 --destination NAME)"
    ]
    assert "warn  destination spare (+12125550123) is not used by any number" in lines


# ---------------------------------------------------------------- trunk pings (async API)


async def test_trunk_that_does_not_answer_is_a_warning() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        trunk = Trunk(name="quiet", host="127.0.0.1", port=port)
        (finding,) = await doctor.check_trunks([trunk], 0.3, CountingIds("d"))
        data = silent.recv(4096)  # the OPTIONS did arrive; nobody answered
    assert parse(data).headers.get("CSeq") == "1 OPTIONS"
    assert finding == doctor.Finding(
        "warn",
        f"trunk quiet (127.0.0.1:{port}/udp) did not answer OPTIONS within 0.3 s: wrong host "
        "or port, a firewall, or the provider ignores this server's address",
    )


async def test_refused_unresolvable_and_disabled_trunks() -> None:
    port = _free_port()
    trunks = [
        Trunk(name="closed", host="127.0.0.1", port=port),
        Trunk(name="nowhere", host="no-such-host.invalid", allow=("10.0.0.0/8",)),
        Trunk(name="off", host="127.0.0.1", port=port, enabled=False),
    ]
    found = await doctor.check_trunks(trunks, 0.5, CountingIds("d"))
    assert found[0].level == "warn"  # refused (ICMP): not answering, not a config error
    assert found[0].what.startswith(f"trunk closed (127.0.0.1:{port}/udp)")
    assert found[1].level == "FAIL"
    assert "host no-such-host.invalid does not resolve" in found[1].what
    assert found[2] == doctor.Finding(
        "ok", f"trunk off (127.0.0.1:{port}/udp) is disabled: not checked"
    )
    assert await doctor.check_trunks([], 0.5) == [
        doctor.Finding("warn", "no trunks: no call can come in (add one: pbx trunks add)")
    ]


async def _tcp_sip_server(status: int) -> tuple[asyncio.Server, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        msg = parse(head)
        assert isinstance(msg, Request)
        writer.write(bytes(make_response(msg, status, to_tag="tcp")))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.parametrize(
    ("status", "level"), [(200, "ok"), (404, "ok"), (403, "warn"), (503, "warn")]
)
async def test_tcp_trunk_answers_graded(status: int, level: str) -> None:
    server, port = await _tcp_sip_server(status)
    async with server:
        trunk = Trunk(name="tcp", host="127.0.0.1", port=port, transport="tcp")
        (finding,) = await doctor.check_trunks([trunk], 2.0, CountingIds("t"))
    assert finding.level == level
    assert finding.what.startswith(
        f"trunk tcp (127.0.0.1:{port}/tcp) answers OPTIONS with {status}"
    )


async def test_udp_403_is_a_warning(responder: Responder) -> None:
    responder.status = 403
    trunk = Trunk(name="picky", host="127.0.0.1", port=responder.port)
    (finding,) = await doctor.check_trunks([trunk], 2.0, CountingIds("p"))
    assert finding.level == "warn"
    assert "answers OPTIONS with 403" in finding.what
    assert "may not accept this server's address" in finding.what


# ---------------------------------------------------------------- pure parts


def test_options_request_brackets_ipv6() -> None:
    trunk = Trunk(name="v6", host="2001:db8::5", port=5062)
    req = doctor.options_request(trunk, ("2001:db8::1", 40000), CountingIds("x"))
    assert req.uri == "sip:[2001:db8::5]:5062"
    assert req.vias[0].host in ("2001:db8::1", "[2001:db8::1]")
    assert req.from_.uri.host in ("2001:db8::1", "[2001:db8::1]")


def test_check_numbers_disabled_trunk_and_all_good() -> None:
    dests = [Destination(name="desk", target="+14155550101", kind="number")]
    trunks = [Trunk(name="old", host="192.0.2.1", enabled=False)]
    number = TrackingNumber(number="+14155550150", source="TV", destinations=("desk",))
    assert doctor.check_numbers([number], dests, trunks) == [
        doctor.Finding("ok", "1 numbers, 1 destinations: every number has destinations and "
                       "every destination is used")
    ]  # fmt: skip
    routed = TrackingNumber(number="+14155550150", source="TV", destinations=("desk",), trunk="old")
    assert doctor.check_numbers([routed], dests, trunks) == [
        doctor.Finding("warn", "number +14155550150 dials out through disabled trunk old")
    ]
    after = TrackingNumber(number="+14155550150", source="TV", destinations=(), enabled=False,
                           after_hours=("desk",))  # fmt: skip
    assert doctor.check_numbers([after], dests, []) == [
        doctor.Finding("ok", "1 numbers, 1 destinations: every number has destinations and "
                       "every destination is used")
    ]  # fmt: skip


@given(low=st.integers(1024, 65000).map(lambda p: p & ~1), span=st.integers(0, 500),
       count=st.integers(1, 20))  # fmt: skip
def test_property_rtp_sample_is_even_pairs_inside_the_range(
    low: int, span: int, count: int
) -> None:
    high = min(low + span, 65535)
    sample = doctor.rtp_sample(low, high, count)
    assert len(sample) <= count
    assert sample == sorted(set(sample))
    assert all(p % 2 == 0 and low <= p and p + 1 <= high for p in sample)
    if high - low >= 1:
        assert sample[0] == low


def test_doctor_takes_the_listen_overrides_of_serve(tmp_path: Path) -> None:
    setup = _write_config(tmp_path, tmp_path / "pbx.sqlite3")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", setup.sip_port))  # the config's SIP port is busy...
        code, lines = _doctor(setup)
        assert code == 1
        assert any(str(setup.sip_port) in line for line in _lines(lines, "FAIL"))
        other = _free_port()
        low, high = _rtp_range()
        code, lines = _doctor(  # ...but serve would be told another one: check that
            setup, "--sip", f"127.0.0.1:{other}", "--rtp-ports", f"{low}-{high}",
            "--http", f"127.0.0.1:{_free_port(socket.SOCK_STREAM)}",
        )  # fmt: skip
    assert not any(str(setup.sip_port) in line for line in _lines(lines, "FAIL")), lines
    assert any(str(other) in line for line in _lines(lines, "ok")), lines
    bad = pbx(setup.db, "doctor", "--config", str(setup.config), "--sip", "nonsense")
    assert bad.exit_code == 2
    assert bad.stderr.count("\n") == 1


async def _tls_sip_server(
    tmp_path: Path, cert_pem: str, key_pem: str
) -> tuple[asyncio.Server, int]:
    import ssl

    (tmp_path / "t.crt").write_text(cert_pem)
    (tmp_path / "t.key").write_text(key_pem)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "t.crt", tmp_path / "t.key")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            msg = parse(await reader.readuntil(b"\r\n\r\n"))
            assert isinstance(msg, Request)
            assert (msg.headers.get("Via") or "").startswith("SIP/2.0/TLS ")
            writer.write(bytes(make_response(msg, 200, to_tag="tls")))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    return server, server.sockets[0].getsockname()[1]


async def test_tls_trunk_is_pinged_over_tls_and_a_refused_certificate_fails(
    tmp_path: Path,
) -> None:
    from tests.tls_support import Authority, self_signed

    ca = Authority()
    leaf = ca.issue("sip.example.test")
    server, port = await _tls_sip_server(tmp_path, leaf.cert, leaf.key)
    async with server:
        good = Trunk(name="tls", host="127.0.0.1", port=port, transport="tls", tls_ca=ca.pem)
        (finding,) = await doctor.check_trunks([good], 2.0, CountingIds("s"))
        assert finding.level == "ok", finding
        assert "answers OPTIONS with 200" in finding.what
    own = self_signed("127.0.0.1")
    server, port = await _tls_sip_server(tmp_path, own.cert, own.key)
    async with server:
        bad = Trunk(name="tls", host="127.0.0.1", port=port, transport="tls")
        (finding,) = await doctor.check_trunks([bad], 2.0, CountingIds("s"))
    assert finding.level == "FAIL"
    assert "certificate is refused (self-signed certificate)" in finding.what
