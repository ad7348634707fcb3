"""Interop: our SIP agent against sipp (a peer nobody here wrote), real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pbx.sip.agent import NullUser, SipAgent
from pbx.sip.auth import Credentials, DigestClient, parse_authorization, verify_authorization
from pbx.sip.ids import RandomIds
from pbx.sip.message import Headers, Request, Response, parse
from pbx.sip.peer import Peer
from pbx.sip.register import RegistrationConfig, RegState
from pbx.sip.transaction import RequestReceived
from tests.e2e.conftest import SippFactory, SippRun

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(30)]

USER, PASSWORD = "+14155550101", "Circle Of Life"
SDP = (
    b"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


class RecordingUser(NullUser):
    """Leaves every request to the agent's defaults, but remembers what came in."""

    def __init__(self) -> None:
        self.requests: list[RequestReceived] = []

    def on_request(self, event: RequestReceived, now: float) -> bool:
        self.requests.append(event)
        return False


@pytest.fixture
async def agent() -> AsyncIterator[SipAgent]:
    agent = SipAgent(port=0, ids=RandomIds(), user=RecordingUser())
    await agent.start()
    yield agent
    await agent.close()


async def finish(run: SippRun) -> None:
    code = await run.wait()
    assert code == 0, run.diagnostics()


def received(run: SippRun, start: str) -> list[Request]:
    """Requests sipp logged as received whose start line begins with `start`."""
    out: list[Request] = []
    for text in run.received():
        if text.startswith(start):
            message = parse(text.encode())
            assert isinstance(message, Request)
            out.append(message)
    return out


def invite_for(agent: SipAgent, dest: Peer) -> Request:
    target = f"sip:{USER}@{dest.host}:{dest.port}"
    headers = Headers(
        [
            ("Via", agent.via(dest.transport)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:pbx@{agent.host}:{agent.port}>;tag={agent.ids.tag()}"),
            ("To", f"<{target}>"),
            ("Call-ID", agent.ids.call_id()),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:pbx@{agent.host}:{agent.port};transport={dest.transport}>"),
            ("Content-Type", "application/sdp"),
        ]
    )
    return Request("INVITE", target, headers, SDP)


def in_dialog(agent: SipAgent, invite: Request, ok: Response, method: str, seq: int) -> Request:
    """ACK or BYE within the dialog the 2xx created (RFC 3261 §12.2.1.1, §13.2.2.4)."""
    transport = invite.top_via.transport.lower()
    headers = Headers(
        [
            ("Via", agent.via(transport)),
            ("Max-Forwards", "70"),
            ("From", invite.headers.get("From") or ""),
            ("To", ok.headers.get("To") or ""),
            ("Call-ID", invite.call_id),
            ("CSeq", f"{seq} {method}"),
        ]
    )
    return Request(method, str(ok.contacts[0].uri), headers)


async def call(agent: SipAgent, dest: Peer, auth: DigestClient | None = None) -> Response:
    """INVITE (+ digest if challenged), ACK the 200, BYE, expect 200 to the BYE."""
    invite = invite_for(agent, dest)
    ok = await asyncio.wait_for(agent.request(invite, dest, auth=auth), 10)
    assert ok.status == 200, f"{ok.status} {ok.reason}"
    assert ok.body.startswith(b"v=0")
    seq = ok.cseq.seq  # CSeq+1 if the INVITE was re-sent with credentials
    agent.send_ack(in_dialog(agent, invite, ok, "ACK", seq), dest)
    bye = in_dialog(agent, invite, ok, "BYE", seq + 1)
    bye_ok = await asyncio.wait_for(agent.request(bye, dest), 10)
    assert bye_ok.status == 200
    return ok


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_sipp_options_to_agent(sipp: SippFactory, agent: SipAgent, transport: str) -> None:
    run = await sipp.start("sip_options_uac.xml", remote=("127.0.0.1", agent.port),
                           transport=transport)  # fmt: skip
    await finish(run)
    user = agent.user
    assert isinstance(user, RecordingUser)
    assert [e.request.method for e in user.requests] == ["OPTIONS"]
    assert user.requests[0].source.transport == ("udp" if transport == "u1" else "tcp")
    statuses = [m.split(" ", 2)[1] for m in run.received() if m.startswith("SIP/2.0")]
    assert statuses == ["200"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_invite_ack_bye_against_sipp_uas(
    sipp: SippFactory, agent: SipAgent, transport: str
) -> None:
    run = await sipp.start("sip_uas_answer.xml", transport="u1" if transport == "udp" else "t1")
    dest = Peer("udp" if transport == "udp" else "tcp", "127.0.0.1", run.port)
    await call(agent, dest)
    await finish(run)
    assert [r.method for r in received(run, "")] == ["INVITE", "ACK", "BYE"]


@pytest.mark.parametrize(
    ("scenario", "answer"),
    [("sip_uas_auth_401.xml", "Authorization"), ("sip_uas_auth_407.xml", "Proxy-Authorization")],
)
async def test_invite_digest_challenge(
    sipp: SippFactory, agent: SipAgent, scenario: str, answer: str
) -> None:
    run = await sipp.start(scenario, keys={"user": USER, "pass": PASSWORD})
    dest = Peer("udp", "127.0.0.1", run.port)
    auth = DigestClient(Credentials(USER, PASSWORD), agent.ids)
    await call(agent, dest, auth=auth)
    await finish(run)  # sipp's verifyauth accepted the credentials
    invites = received(run, "INVITE")
    assert len(invites) == 2
    assert answer not in invites[0].headers
    creds = parse_authorization(invites[1].headers.get(answer) or "")
    assert (creds.username, creds.realm, creds.nonce) == (USER, "sipp.test", "4a6f7e1d2c3b")
    assert creds.opaque == "op4que"
    assert creds.qop == "auth"
    assert creds.uri == invites[1].uri
    assert verify_authorization(creds, PASSWORD, "INVITE")
    assert not verify_authorization(creds, "wrong", "INVITE")


async def test_register_with_digest_against_sipp(sipp: SippFactory, agent: SipAgent) -> None:
    run = await sipp.start("sip_uas_register.xml", keys={"user": USER, "pass": PASSWORD})
    registered = asyncio.Event()
    agent.on_registration = lambda c: registered.set() if c.state is RegState.REGISTERED else None
    client = agent.register(RegistrationConfig(
        aor=f"sip:{USER}@127.0.0.1:{run.port}",
        registrar=Peer("udp", "127.0.0.1", run.port),
        local=agent.local("udp"),
        credentials=Credentials(USER, PASSWORD),
        expires=300,
    ))  # fmt: skip
    await asyncio.wait_for(registered.wait(), 10)
    await finish(run)
    assert client.registered
    deadline = client.next_deadline()
    assert deadline is not None
    assert client.expires_at is not None
    assert client.expires_at - deadline == pytest.approx(60)  # granted 120 s: refresh at half
    registers = received(run, "REGISTER")
    assert len(registers) == 2
    assert registers[0].call_id == registers[1].call_id
    assert registers[1].cseq.seq == registers[0].cseq.seq + 1
    creds = parse_authorization(registers[1].headers.get("Authorization") or "")
    assert verify_authorization(creds, PASSWORD, "REGISTER")
