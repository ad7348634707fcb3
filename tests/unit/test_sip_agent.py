"""SipAgent over real loopback sockets: defaults, 400 for garbage, request(), auth, registration."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from pbx.sip.agent import ALLOW, NullUser, SipAgent
from pbx.sip.auth import (
    Credentials,
    DigestClient,
    parse_authorization,
    verify_authorization,
)
from pbx.sip.ids import CountingIds
from pbx.sip.message import Headers, Request, Response, parse
from pbx.sip.peer import Peer
from pbx.sip.register import RegistrationConfig, RegState
from pbx.sip.transaction import RequestReceived, TimerConfig

FAST = TimerConfig(t1=0.05, t2=0.2, t4=0.2, d=0.2)  # Timer F = 64*T1 = 3.2 s


@pytest.fixture
async def pair() -> AsyncIterator[tuple[SipAgent, SipAgent]]:
    a = SipAgent(port=0, ids=CountingIds("a"), timers=FAST)
    b = SipAgent(port=0, ids=CountingIds("b"), timers=FAST)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


def new_request(agent: SipAgent, method: str, dest: Peer, *, to_tag: str | None = None) -> Request:
    to = f"<sip:+14155550101@{dest.host}:{dest.port}>" + (f";tag={to_tag}" if to_tag else "")
    headers = Headers(
        [
            ("Via", agent.via(dest.transport)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:probe@{agent.host}:{agent.port}>;tag={agent.ids.tag()}"),
            ("To", to),
            ("Call-ID", agent.ids.call_id()),
            ("CSeq", f"1 {method}"),
        ]
    )
    return Request(method, f"sip:+14155550101@{dest.host}:{dest.port}", headers)


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_options_default_200(pair: tuple[SipAgent, SipAgent], transport: str) -> None:
    a, b = pair
    dest = Peer("tcp" if transport == "tcp" else "udp", "127.0.0.1", b.port)
    response = await asyncio.wait_for(a.request(new_request(a, "OPTIONS", dest), dest), 5)
    assert response.status == 200
    assert response.headers.get("Allow") == ALLOW
    assert response.headers.get("Accept") == "application/sdp"
    assert "Supported" in response.headers
    assert response.to.tag


@pytest.mark.parametrize(
    ("method", "to_tag", "status"),
    [
        ("FOO", None, 501),
        ("MESSAGE", None, 405),
        ("SUBSCRIBE", None, 405),
        ("BYE", None, 481),
        ("INFO", "x1", 481),
        ("INVITE", None, 480),
    ],
)
async def test_default_answers(
    pair: tuple[SipAgent, SipAgent], method: str, to_tag: str | None, status: int
) -> None:
    a, b = pair
    dest = Peer("udp", "127.0.0.1", b.port)
    request = new_request(a, method, dest, to_tag=to_tag)
    response = await asyncio.wait_for(a.request(request, dest), 5)
    assert response.status == status
    if status == 405:
        assert response.headers.get("Allow") == ALLOW


async def test_unparseable_answered_400_or_dropped(pair: tuple[SipAgent, SipAgent]) -> None:
    _, b = pair
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        bad = (
            "OPTIONS sip:x@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bKbad1\r\n"
            "From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:x@127.0.0.1>\r\n"
            "Call-ID: bad1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: abc\r\nContent-Length: 50\r\n\r\n"
        ).encode()
        sock.sendto(b"\x00\x01 total garbage", ("127.0.0.1", b.port))  # dropped
        sock.sendto(bad, ("127.0.0.1", b.port))
        data = await asyncio.wait_for(loop.sock_recv(sock, 65536), 5)
    response = parse(data)
    assert isinstance(response, Response)
    assert response.status == 400
    assert response.call_id == "bad1"
    assert response.to.tag


async def test_request_times_out_as_408() -> None:
    a = SipAgent(port=0, ids=CountingIds("t"), timers=FAST)
    await a.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        dest = Peer("udp", "127.0.0.1", silent.getsockname()[1])
        try:
            response = await asyncio.wait_for(a.request(new_request(a, "OPTIONS", dest), dest), 8)
        finally:
            await a.close()
    assert response.status == 408


class ChallengingRegistrar(NullUser):
    """A TU playing a registrar that demands digest auth, then grants 60 s."""

    def __init__(self, agent: SipAgent, password: str) -> None:
        self.agent = agent
        self.password = password
        self.verified: list[bool] = []
        self.registered = asyncio.Event()

    def on_request(self, event: RequestReceived, now: float) -> bool:
        request = event.request
        value = request.headers.get("Authorization")
        if value is None:
            challenge = (
                "WWW-Authenticate",
                'Digest realm="pbx.test", nonce="n1", qop="auth", algorithm=SHA-256',
            )
            self.agent.respond(
                event.key, self.agent.make_response(request, 401, headers=[challenge])
            )
            return True
        ok = verify_authorization(parse_authorization(value), self.password, request.method)
        self.verified.append(ok)
        contact = request.headers.get("Contact") or ""
        extra = [("Contact", f"{contact};expires=60")]
        self.agent.respond(
            event.key, self.agent.make_response(request, 200 if ok else 403, headers=extra)
        )
        self.registered.set()
        return True


async def test_registration_with_digest(pair: tuple[SipAgent, SipAgent]) -> None:
    a, b = pair
    registrar = ChallengingRegistrar(b, "s3cret")
    b.user = registrar
    config = RegistrationConfig(
        aor=f"sip:+14155550101@127.0.0.1:{b.port}",
        registrar=Peer("udp", "127.0.0.1", b.port),
        local=a.local("udp"),
        credentials=Credentials("+14155550101", "s3cret"),
        expires=60,
    )
    done = asyncio.Event()
    a.on_registration = lambda c: done.set() if c.state is RegState.REGISTERED else None
    client = a.register(config)
    await asyncio.wait_for(done.wait(), 5)
    assert registrar.verified == [True]
    assert client.state is RegState.REGISTERED
    assert client.registered
    deadline = client.next_deadline()
    assert deadline is not None
    assert client.expires_at is not None
    assert client.expires_at - deadline == pytest.approx(30)  # granted 60 s: refresh at half


async def test_request_answers_challenge(pair: tuple[SipAgent, SipAgent]) -> None:
    a, b = pair
    registrar = ChallengingRegistrar(b, "pw")
    b.user = registrar
    dest = Peer("udp", "127.0.0.1", b.port)
    auth = DigestClient(Credentials("u", "pw"), a.ids)
    response = await asyncio.wait_for(
        a.request(new_request(a, "OPTIONS", dest), dest, auth=auth), 5
    )
    assert response.status == 200
    assert registrar.verified == [True]
    wrong = DigestClient(Credentials("u", "nope"), a.ids)
    response = await asyncio.wait_for(
        a.request(new_request(a, "OPTIONS", dest), dest, auth=wrong), 5
    )
    assert response.status == 403
