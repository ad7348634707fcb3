"""`pbx doctor`: checks config, database, ports and trunks, in plain words (I/O).

`run_doctor(config_path, env, overrides)` returns `Finding`s in order, one
per check; the CLI prints each as `ok|warn|FAIL  what` and exits 1 when any
is FAIL. Nothing here changes anything: the database is opened read-only
for the schema check and through the store only when its schema is
current (so opening it migrates nothing), ports are bound and released at
once, and trunks get one SIP OPTIONS each (RFC 3261 §11).

Checks, in order:
1. the settings load (`pbx.config.load_settings`: file, `PBX_*` env, flags);
   if they do not, nothing else is checked (every other check needs them);
2. the database: the file (or the directory it would be created in) is
   usable, it is SQLite, its schema version (`PRAGMA user_version`) equals
   the number of shipped migrations;
3. ports: SIP (each configured transport), HTTP, and a sample of RTP pairs
   (even RTP and odd RTCP, `RTP_SAMPLE` pairs spread over the range) can be
   bound on their configured addresses;
4. each enabled trunk: its host resolves, and it answers an OPTIONS within
   `TRUNK_TIMEOUT` seconds (UDP through asyncio-dgram as DESIGN.md says;
   TCP over a plain stream connection);
5. the numbers: enabled ones with no destinations (their calls are all
   rejected), ones routed through a disabled trunk, and destinations no
   number uses.

Decisions (the spec is silent):
- A port already in use is FAIL, unless the daemon's own `/health` answers
  on the configured HTTP address: then the daemon is running and holding
  its ports is expected, so it is `warn` (doctor may run on a live box).
- A missing database file whose directory exists or can be created is
  `warn` (`pbx serve` creates it); a parent that is a file or not writable
  is FAIL. An older schema is `warn` (the daemon migrates it on start), a
  newer one FAIL.
- Any SIP response to OPTIONS proves the trunk reachable: 2xx and the usual
  "not for you" answers (401/407/404/405/481/501) are `ok`; 403 is `warn`
  (the provider may not accept this server's address), 5xx/6xx `warn`; no
  final response within the timeout, or an ICMP refusal, is `warn` too:
  many providers answer nothing to an address they do not know yet (before
  the first REGISTER, or until they allow-list it), so silence is worth a
  look but not a failure. A host that does not resolve is FAIL.
- A disabled trunk is not contacted (`ok`, "not checked").
- An RTP address left a wildcard is `warn`: SDP then carries a local address
  chosen by the daemon, wrong behind NAT (`rtp.advertised_address`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import asyncio_dgram  # DESIGN.md: the OPTIONS ping is an asyncio-dgram client

from pbx import native
from pbx.config import Settings, load_settings
from pbx.errors import InputError
from pbx.sip.framing import StreamFramer
from pbx.sip.ids import IdSource, RandomIds
from pbx.sip.message import Headers, Message, Request, Response, parse
from pbx.sip.status import SipParseError
from pbx.sip.transport import client_context, server_context
from pbx.store.base import Destination, TrackingNumber, Trunk
from pbx.store.connect import open_store, probe_store

Level = Literal["ok", "warn", "FAIL"]
TRUNK_TIMEOUT = 2.0  # seconds for DNS, and again for the OPTIONS answer
HEALTH_TIMEOUT = 2.0
RTP_SAMPLE = 8  # RTP/RTCP pairs bound per run, spread over the range
MAX_REPLIES = 16  # datagrams read per OPTIONS before giving up (stray traffic)
MAX_PARALLEL_TRUNKS = 8
_OK_ANSWERS = frozenset({401, 404, 405, 407, 481, 501})


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome, printed as `level  what`."""

    level: Level
    what: str

    def line(self) -> str:
        return f"{self.level:<4}  {self.what}"


def failed(findings: Iterable[Finding]) -> bool:
    return any(f.level == "FAIL" for f in findings)


async def run_doctor(
    config_path: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
    *,
    trunk_timeout: float = TRUNK_TIMEOUT,
) -> list[Finding]:
    """Every check, in order; see the module docstring."""
    settings, found = check_config(config_path, env, overrides)
    if settings is None:
        return [*found, Finding("warn", "other checks skipped: they need settings that load")]
    found.append(check_native())
    current, db_found = await check_database(settings.store.location)
    found += db_found
    found += await check_ports(settings)
    found += check_tls(settings)
    if current:
        async with await open_store(settings.store.location) as store:
            trunks = await store.trunks.list()
            numbers = await store.numbers.list()
            dests = await store.destinations.list()
        found += await check_trunks(trunks, trunk_timeout)
        found += check_numbers(numbers, dests, trunks)
    return found


# ---------------------------------------------------------------- compiled modules


def check_native() -> Finding:
    """Compiled protocol modules in use, or why not (pbx.native)."""
    if native.degraded:
        return Finding("warn", f"{native.reason}: running pure Python; `pip install .` rebuilds")
    return Finding("ok", f"protocol modules: {native.reason}")


# ---------------------------------------------------------------- config


def check_config(
    path: Path | None, env: Mapping[str, str], overrides: Mapping[str, object]
) -> tuple[Settings | None, list[Finding]]:
    name = f"config {path}" if path is not None else "settings (no --config: defaults and env)"
    try:
        settings = load_settings(path, env, overrides)
    except InputError as exc:
        return None, [Finding("FAIL", f"{name} do not load: {exc}")]
    s = settings
    summary = (
        f"SIP {s.sip.host}:{s.sip.port} {'+'.join(s.sip.transports)}, "
        f"RTP {s.rtp.port_low}-{s.rtp.port_high}, HTTP {s.http.host}:{s.http.port}, "
        f"database {s.store.display}"
    )
    found = [Finding("ok", f"{name} loads: {summary}")]
    if settings.media_address_is_wildcard:
        found.append(
            Finding(
                "warn",
                f"rtp.advertised_address is not set (RTP binds {s.rtp.host}): SDP will carry a "
                "local address of this machine; behind NAT set it to the public address",
            )
        )
    return settings, found


# ---------------------------------------------------------------- database


async def check_database(location: str | Path) -> tuple[bool, list[Finding]]:
    """(schema is current, findings) for the store at `location`; never writes it."""
    try:
        probe = await probe_store(location)
    except InputError as exc:
        return False, [Finding("FAIL", str(exc))]
    return probe.current, [Finding(level, text) for level, text in probe.findings]


# ---------------------------------------------------------------- ports


@dataclass(frozen=True, slots=True)
class PortCheck:
    label: str  # "SIP", "HTTP", "RTP"
    host: str
    port: int
    kind: int  # socket.SOCK_DGRAM / SOCK_STREAM

    def name(self) -> str:
        proto = "udp" if self.kind == socket.SOCK_DGRAM else "tcp"
        return f"{self.label} port {self.port}/{proto} on {self.host}"


def planned_ports(settings: Settings) -> list[PortCheck]:
    """The ports the daemon would bind: SIP per transport, HTTP, a sample of RTP pairs."""
    s = settings
    kinds = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM, "tls": socket.SOCK_STREAM}
    checks = [
        PortCheck("SIP", s.sip.host, s.sip.tls_port if t == "tls" else s.sip.port, kinds[t])
        for t in s.sip.transports
    ]
    checks.append(PortCheck("HTTP", s.http.host, s.http.port, socket.SOCK_STREAM))
    for rtp in rtp_sample(s.rtp.port_low, s.rtp.port_high, RTP_SAMPLE):
        checks += [PortCheck("RTP", s.rtp.host, p, socket.SOCK_DGRAM) for p in (rtp, rtp + 1)]
    return checks


def rtp_sample(low: int, high: int, count: int) -> list[int]:
    """Up to `count` even RTP ports spread evenly over `low..high` (each with port+1 <= high)."""
    pairs = (high - low + 1) // 2
    if pairs <= 0:
        return []
    count = min(count, pairs)
    step = pairs / count
    return sorted({low + 2 * int(i * step) for i in range(count)})


def try_bind(check: PortCheck) -> OSError | None:
    """Bind and release at once; the error, or None when the port is free."""
    family = socket.AF_INET6 if ":" in check.host else socket.AF_INET
    try:
        with socket.socket(family, check.kind) as sock:
            if check.kind == socket.SOCK_STREAM:  # as asyncio's servers do: TIME_WAIT is fine
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((check.host, check.port))
    except OSError as exc:
        return exc
    return None


async def check_ports(settings: Settings) -> list[Finding]:
    """One `ok` line per port group (SIP, HTTP, RTP) that binds, else a line per bad port."""
    checks = planned_ports(settings)
    problems = [(c, err) for c in checks if (err := try_bind(c)) is not None]
    running = any(_in_use(e) for _, e in problems) and await daemon_running(settings)
    s = settings
    plain = "+".join(t for t in s.sip.transports if t != "tls")
    sip_free = f"SIP port {s.sip.port} ({plain})" if plain else ""
    if "tls" in s.sip.transports:
        sip_free += f"{' and ' if plain else 'SIP '}TLS port {s.sip.tls_port}"
    free = {
        "SIP": f"{sip_free} on {s.sip.host} {'are' if ' and ' in sip_free else 'is'} free",
        "HTTP": f"HTTP port {s.http.port} on {s.http.host} is free",
        "RTP": f"RTP ports {s.rtp.port_low}-{s.rtp.port_high} on {s.rtp.host}: "
        f"{len(rtp_sample(s.rtp.port_low, s.rtp.port_high, RTP_SAMPLE))} sampled pairs are free",
    }
    found: list[Finding] = []
    for label, ok_text in free.items():
        bad = [_port_finding(c, e, running) for c, e in problems if c.label == label]
        found += bad or [Finding("ok", ok_text)]
    return found


def check_tls(settings: Settings) -> list[Finding]:
    """The TLS certificate and key load (what `pbx serve` checks first)."""
    if "tls" not in settings.sip.transports:
        return []
    try:
        server_context(settings.sip.tls_cert, settings.sip.tls_key)
    except InputError as exc:
        return [Finding("FAIL", str(exc))]
    return [Finding("ok", f"TLS certificate {settings.sip.tls_cert} and its key load")]


def _in_use(exc: OSError) -> bool:
    return exc.errno == errno.EADDRINUSE


def _port_finding(check: PortCheck, exc: OSError, daemon_is_running: bool) -> Finding:
    if _in_use(exc) and daemon_is_running:
        return Finding(
            "warn", f"{check.name()} is held by the running pbx daemon (/health answers)"
        )
    if _in_use(exc):
        return Finding(
            "FAIL",
            f"{check.name()} is already in use: is the daemon running? "
            f"(ss -lnp 'sport = :{check.port}' shows who holds it)",
        )
    if exc.errno == errno.EACCES:
        return Finding(
            "FAIL",
            f"{check.name()} needs privileges: use a port >= 1024 or grant CAP_NET_BIND_SERVICE",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return Finding("FAIL", f"{check.name()}: {check.host} is not an address of this machine")
    return Finding("FAIL", f"{check.name()} cannot be bound: {exc.strerror or exc}")


async def daemon_running(settings: Settings) -> bool:
    """Does a pbx `/health` answer on the configured HTTP address?"""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(settings.http.host, settings.http.host)  # noqa: S104 - maps a wildcard bind to loopback; binds nothing
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, settings.http.port)
            try:
                writer.write(f"GET /health HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                head = await _read_reply(reader)
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False
    # 200 while serving, 503 while draining; both mean "a pbx is running".
    return head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503", b"HTTP/1.0 200")) and (
        b'"active_calls"' in head
    )


async def _read_reply(reader: asyncio.StreamReader, limit: int = 8192) -> bytes:
    """The whole HTTP/1.0 reply (up to `limit` bytes): headers and body may come
    in separate segments, so one read() is not enough."""
    reply = b""
    while len(reply) < limit:
        chunk = await reader.read(limit - len(reply))
        if not chunk:
            break
        reply += chunk
    return reply


# ---------------------------------------------------------------- trunks


def _uri_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def options_request(
    trunk: Trunk, local: tuple[str, int], ids: IdSource, transport: str = "UDP"
) -> Request:
    """An out-of-dialog OPTIONS to `trunk` (RFC 3261 §11.1) from the socket at `local`."""
    me = f"{_uri_host(local[0])}:{local[1]}"
    target = f"sip:{_uri_host(trunk.host)}:{trunk.port}"
    headers = Headers(
        [
            ("Via", f"SIP/2.0/{transport} {me};branch={ids.branch()};rport"),  # RFC 3581
            ("Max-Forwards", "70"),
            ("From", f"<sip:pbx-doctor@{me}>;tag={ids.tag()}"),
            ("To", f"<{target}>"),
            ("Call-ID", ids.call_id()),
            ("CSeq", "1 OPTIONS"),
            ("Contact", f"<sip:pbx-doctor@{me}>"),
            ("Accept", "application/sdp"),
            ("User-Agent", "pbx-doctor"),
        ]
    )
    return Request("OPTIONS", target, headers)


def _answer(msg: Message, request: Request) -> int | None:
    """The final status of `msg` if it answers `request`, else None."""
    if not isinstance(msg, Response) or msg.status < 200:
        return None
    try:
        ours = msg.call_id == request.call_id and msg.cseq.method == "OPTIONS"
    except SipParseError:
        return None
    return msg.status if ours else None


async def _resolve(trunk: Trunk, wait_s: float) -> str:
    kind = socket.SOCK_DGRAM if trunk.transport == "udp" else socket.SOCK_STREAM
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(wait_s):
        infos = await loop.getaddrinfo(trunk.host, trunk.port, type=kind)
    return str(infos[0][4][0])


async def ping_udp(trunk: Trunk, address: str, wait_s: float, ids: IdSource) -> int | None:
    """Send one OPTIONS over UDP; the final status, or None when nothing answered in time."""
    stream = await asyncio_dgram.connect((address, trunk.port))
    try:
        request = options_request(trunk, stream.sockname[:2], ids)
        await stream.send(bytes(request))
        async with asyncio.timeout(wait_s):
            for _ in range(MAX_REPLIES):
                data, _addr = await stream.recv()
                status = _parse_answer(data, request)
                if status is not None:
                    return status
    except TimeoutError:
        _ = stream.exception  # raises an ICMP error (e.g. port unreachable) seen meanwhile
        return None
    finally:
        stream.close()
    return None


def _parse_answer(data: bytes, request: Request) -> int | None:
    try:
        return _answer(parse(data), request)
    except SipParseError:
        return None


async def ping_tcp(trunk: Trunk, address: str, wait_s: float, ids: IdSource) -> int | None:
    """Send one OPTIONS over a new TCP connection (RFC 3261 §18.3 framing)."""
    return await _ping_stream(trunk, address, wait_s, ids, tls=False)


async def ping_tls(trunk: Trunk, address: str, wait_s: float, ids: IdSource) -> int | None:
    """OPTIONS over TLS, verifying the trunk's certificate and name as calls do (its --ca)."""
    return await _ping_stream(trunk, address, wait_s, ids, tls=True)


async def _ping_stream(
    trunk: Trunk, address: str, wait_s: float, ids: IdSource, *, tls: bool
) -> int | None:
    async with asyncio.timeout(wait_s):
        if tls:
            reader, writer = await asyncio.open_connection(
                address, trunk.port, ssl=client_context(trunk.tls_ca),
                server_hostname=trunk.host.strip("[]"),
            )  # fmt: skip
        else:
            reader, writer = await asyncio.open_connection(address, trunk.port)
    try:
        local = writer.get_extra_info("sockname")
        request = options_request(trunk, (local[0], local[1]), ids, "TLS" if tls else "TCP")
        writer.write(bytes(request))
        framer = StreamFramer()
        async with asyncio.timeout(wait_s):
            while data := await reader.read(65536):
                for msg in framer.feed(data):
                    if (status := _answer(msg, request)) is not None:
                        return status
    except (TimeoutError, SipParseError):
        return None
    finally:
        writer.close()
    return None


Pinger = Callable[[Trunk, str, float, IdSource], Awaitable[int | None]]


async def check_trunk(trunk: Trunk, wait_s: float, ids: IdSource) -> Finding:
    where = f"{_uri_host(trunk.host)}:{trunk.port}/{trunk.transport}"
    name = f"trunk {trunk.name} ({where})"
    if not trunk.enabled:
        return Finding("ok", f"{name} is disabled: not checked")
    try:
        address = await _resolve(trunk, wait_s)
    except (OSError, TimeoutError) as exc:
        return Finding("FAIL", f"{name}: host {trunk.host} does not resolve ({_why(exc)})")
    ping: Pinger = {"tcp": ping_tcp, "tls": ping_tls}.get(trunk.transport, ping_udp)
    started = time.monotonic()
    try:
        status = await ping(trunk, address, wait_s, ids)
    except ssl.SSLCertVerificationError as exc:  # every call out through it would fail too
        why = exc.verify_message or str(exc)
        return Finding("FAIL", f"{name}: its TLS certificate is refused ({why}); calls to it "
                       "fail with 503 (a private CA: pbx trunks update --ca FILE)")  # fmt: skip
    except (OSError, TimeoutError) as exc:
        return Finding("warn", f"{name} cannot be reached: {_why(exc)}")
    elapsed = int((time.monotonic() - started) * 1000)
    return _trunk_finding(name, status, wait_s, elapsed)


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "refused: nothing listens there"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _trunk_finding(name: str, status: int | None, timeout: float, elapsed_ms: int) -> Finding:
    if status is None:
        return Finding(
            "warn",
            f"{name} did not answer OPTIONS within {timeout:g} s: wrong host or port, "
            "a firewall, or the provider ignores this server's address",
        )
    answered = f"answers OPTIONS with {status} in {elapsed_ms} ms"
    if 200 <= status < 300 or status in _OK_ANSWERS:
        return Finding("ok", f"{name} {answered}")
    if status == 403:
        return Finding(
            "warn", f"{name} {answered}: the provider may not accept this server's address"
        )
    return Finding("warn", f"{name} {answered}: the provider reports a problem")


async def check_trunks(
    trunks: Sequence[Trunk], wait_s: float, ids: IdSource | None = None
) -> list[Finding]:
    if not trunks:
        return [Finding("warn", "no trunks: no call can come in (add one: pbx trunks add)")]
    source = ids or RandomIds()
    gate = asyncio.Semaphore(MAX_PARALLEL_TRUNKS)

    async def one(trunk: Trunk) -> Finding:
        async with gate:
            return await check_trunk(trunk, wait_s, source)

    return list(await asyncio.gather(*(one(t) for t in trunks)))


# ---------------------------------------------------------------- numbers


def check_numbers(
    numbers: Sequence[TrackingNumber], dests: Sequence[Destination], trunks: Sequence[Trunk]
) -> list[Finding]:
    """Numbers whose calls cannot go anywhere, and destinations nothing uses."""
    found: list[Finding] = []
    disabled = {t.name for t in trunks if not t.enabled}
    for n in numbers:
        if n.enabled and not n.destinations:
            found.append(
                Finding(
                    "FAIL",
                    f"number {n.number} has no destinations: every call to it is rejected "
                    f"(pbx numbers update {n.number} --destination NAME)",
                )
            )
        if n.enabled and n.trunk in disabled:
            found.append(
                Finding("warn", f"number {n.number} dials out through disabled trunk {n.trunk}")
            )
    used = {d for n in numbers for d in (*n.destinations, *n.after_hours)}
    for d in dests:
        if d.name not in used:
            found.append(
                Finding("warn", f"destination {d.name} ({d.target}) is not used by any number")
            )
    if not numbers:
        found.append(Finding("warn", "no tracking numbers yet (add one: pbx numbers add)"))
    if not found:
        found.append(
            Finding(
                "ok",
                f"{len(numbers)} numbers, {len(dests)} destinations: every number has "
                "destinations and every destination is used",
            )
        )
    return found
