"""The REGISTER service and ext: targets on a real SQLite file (no sockets: `process` directly)."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pbx.admin.extensions import ExtensionOptions, add_extension
from pbx.call.model import Target
from pbx.call.targets import extension_targets, join_steps
from pbx.service.registrar import RegistrarService, account_of
from pbx.sip.agent import NullUser, SipAgent
from pbx.sip.auth import Credentials, build_authorization, challenges_in
from pbx.sip.message import Request, Response, parse
from pbx.sip.peer import Peer
from pbx.sip.registrar import RegistrarConfig
from pbx.store import Destination, Extension, Trunk
from pbx.store.connect import open_store
from pbx.store.sqlite.store import SqliteStore

PHONE = Peer("udp", "192.0.2.7", 5062)
PASSWORD = "correct-horse-42"
DESK = Destination(name="front-desk", target="ext:alice", kind="extension")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with await open_store(tmp_path / "pbx.sqlite3") as s:
        await add_extension(s, "alice", ExtensionOptions(password=PASSWORD, max_contacts=2))
        await s.trunks.add(Trunk(name="carrier", host="198.51.100.10"))
        yield s


def service(store: SqliteStore, clock: Clock, secret: bytes = b"s" * 32) -> RegistrarService:
    agent = SipAgent(host="127.0.0.1", port=0)  # never started: `process` sends nothing
    return RegistrarService(agent, store, NullUser(), RegistrarConfig(), clock, secret)


def register(cseq: int, contact: str = "<sip:alice@10.0.0.5:5062>", expires: int = 600) -> Request:
    text = (
        "REGISTER sip:pbx.example SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK{cseq};rport\r\n"
        "From: <sip:alice@pbx.example>;tag=1\r\nTo: <sip:alice@pbx.example>\r\n"
        f"Call-ID: phone-1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n"
        f"Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse(text.encode())
    assert isinstance(msg, Request)
    return msg


def signed(request: Request, challenge: Response, password: str = PASSWORD) -> Request:
    offered = next(c for c in challenges_in(challenge.headers.items()) if c.algorithm == "MD5")
    value = build_authorization(
        offered, Credentials("alice", password), "REGISTER", request.uri, cnonce="c", nc=1
    )
    headers = request.headers.copy()
    headers.add("Authorization", value)
    return Request(request.method, request.uri, headers)


async def do_register(
    svc: RegistrarService, cseq: int, source: Peer = PHONE, password: str = PASSWORD, **kw: object
) -> Response:
    request = register(cseq, **kw)  # type: ignore[arg-type]
    challenge = await svc.process(request, source)
    assert challenge.status == 401
    return await svc.process(signed(register(cseq + 1, **kw), challenge, password), source)  # type: ignore[arg-type]


async def test_register_binds_at_the_source_address_and_survives_a_restart(
    store: SqliteStore,
) -> None:
    clock = Clock()
    ok = await do_register(service(store, clock), 1)
    assert ok.status == 200
    [binding] = await store.extensions.bindings("alice")
    assert binding.contact == "sip:alice@10.0.0.5:5062"
    assert binding.received == "udp:192.0.2.7:5062"  # behind NAT: where it came from
    # A new service (a restarted daemon: new nonce secret) still rings the phone.
    service(store, clock, secret=b"other" * 8)
    targets = await extension_targets(store, DESK, clock.now + 10)
    assert targets == (Target("front-desk", "sip:alice@10.0.0.5:5062", PHONE),)


async def test_expired_binding_is_no_target_and_is_deleted_on_next_register(
    store: SqliteStore,
) -> None:
    clock = Clock()
    svc = service(store, clock)
    assert (await do_register(svc, 1)).status == 200
    clock.now += 601
    assert await extension_targets(store, DESK, clock.now) == ()
    other = "<sip:alice@10.0.0.6:5062>"
    assert (await do_register(svc, 3, contact=other)).status == 200
    rows = await store.extensions.bindings("alice")
    assert [b.contact for b in rows] == ["sip:alice@10.0.0.6:5062"]


async def test_register_from_a_trunk_address_never_binds(store: SqliteStore) -> None:
    svc = service(store, Clock())
    response = await svc.process(register(1), Peer("udp", "198.51.100.10", 5060))
    assert response.status == 403
    assert await store.extensions.bindings("alice") == []


async def test_wrong_password_binds_nothing_and_repeats_are_throttled(store: SqliteStore) -> None:
    clock = Clock()
    svc = service(store, clock)
    for i in range(svc.throttle.limit):
        assert not svc.throttle.blocked(PHONE.host, clock.now)
        assert (await do_register(svc, 10 * i + 1, password="wrong-password")).status == 403
    assert svc.throttle.blocked(PHONE.host, clock.now)
    assert not svc.throttle.blocked("192.0.2.8", clock.now)
    assert await store.extensions.bindings("alice") == []


async def test_two_phones_ring_together_and_unregister_removes(store: SqliteStore) -> None:
    clock = Clock()
    svc = service(store, clock)
    assert (await do_register(svc, 1)).status == 200
    second = Peer("udp", "192.0.2.8", 5060)
    other = "<sip:alice@10.0.0.6:5060>"
    assert (await do_register(svc, 1, source=second, contact=other)).status == 200
    targets = await extension_targets(store, DESK, clock.now)
    assert {t.dest for t in targets} == {PHONE, second}
    assert (await do_register(svc, 5, source=second, contact=other, expires=0)).status == 200
    assert [t.dest for t in await extension_targets(store, DESK, clock.now)] == [PHONE]


def test_join_steps_keeps_an_extensions_contacts_in_one_step_and_drops_empty_ones() -> None:
    a, b, c = "a", "b", "c"
    assert join_steps([[(a, b)], [()], [(c,)]]) == (("a", "b"), ("c",))
    assert join_steps([[(a,), (b, c)]]) == (("a", "b", "c"),)
    assert join_steps([[()]]) == ()


def test_pbx_never_imports_pyvoip() -> None:
    """pyVoIP (GPL-3.0) is a test-only peer: no module of pbx/ or cli.py may import it."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for path in [*sorted((root / "pbx").rglob("*.py")), root / "cli.py"]:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0].lower() == "pyvoip" for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
    assert len(list((root / "pbx").rglob("*.py"))) > 20  # the scan saw the package


def test_account_of_maps_the_digest_choice_to_challenge_order() -> None:
    def ext(digest: str) -> Extension:
        return Extension(name="desk", ha1_md5="a" * 32, ha1_sha256="b" * 64, realm="pbx",
                         digest=digest)  # type: ignore[arg-type]  # fmt: skip

    assert account_of(ext("both")).algorithms == ("SHA-256", "MD5")
    assert account_of(ext("md5")).algorithms == ("MD5",)
    assert account_of(ext("sha-256")).algorithms == ("SHA-256",)
