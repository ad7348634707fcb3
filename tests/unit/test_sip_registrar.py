"""The registrar machine: REGISTER + time in, response + binding changes out (no sockets)."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.auth import (
    Credentials,
    DigestClient,
    build_authorization,
    challenges_in,
    ha1,
    parse_challenge,
)
from pbx.sip.ids import CountingIds
from pbx.sip.message import Request, Response, parse
from pbx.sip.peer import Peer
from pbx.sip.registrar import (
    Account,
    BindingState,
    FailureThrottle,
    NonceCounters,
    Outcome,
    Registrar,
    RegistrarConfig,
    RemoveBinding,
    SetBinding,
    decode_received,
    encode_received,
)

NOW = 1_700_000_000.0
PHONE = Peer("udp", "192.0.2.7", 5062)
CONFIG = RegistrarConfig(realm="pbx", default_expires=3600, min_expires=60, max_expires=7200)
SECRET = b"k" * 32


def account(name: str = "alice", password: str = "s3cret", max_contacts: int = 1) -> Account:
    return Account(
        name=name,
        ha1_md5=ha1("MD5", name, "pbx", password),
        ha1_sha256=ha1("SHA-256", name, "pbx", password),
        realm="pbx",
        max_contacts=max_contacts,
    )


def register(
    user: str = "alice",
    contacts: tuple[str, ...] = ("<sip:alice@192.0.2.7:5062>",),
    *,
    expires: int | None = None,
    cseq: int = 1,
    call_id: str = "reg-1",
    extra: tuple[str, ...] = (),
) -> Request:
    lines = [
        "REGISTER sip:pbx.example SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.7:5062;branch=z9hG4bKreg" + str(cseq),
        f"From: <sip:{user}@pbx.example>;tag=f1",
        f"To: <sip:{user}@pbx.example>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        *(f"Contact: {c}" for c in contacts),
        *([f"Expires: {expires}"] if expires is not None else []),
        *extra,
        "Content-Length: 0",
    ]
    msg = parse(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def with_auth(request: Request, value: str) -> Request:
    headers = request.headers.copy()
    headers.add("Authorization", value)
    return Request(request.method, request.uri, headers)


def answer(
    challenge_response: Response,
    request: Request,
    *,
    algorithm: str = "MD5",
    password: str = "s3cret",
    user: str = "alice",
    nc: int = 1,
) -> Request:
    """Answer the challenge of `algorithm` with qop=auth."""
    chosen = [
        c for c in challenges_in(challenge_response.headers.items()) if c.algorithm == algorithm
    ]
    value = build_authorization(
        chosen[0], Credentials(user, password), "REGISTER", request.uri, cnonce="c0ffee", nc=nc
    )
    return with_auth(request, value)


def rfc2069(challenge_response: Response, request: Request, password: str = "s3cret") -> Request:
    """The no-qop form pyVoIP sends: MD5, uri with ;transport=UDP."""
    offered = challenges_in(challenge_response.headers.items())
    no_qop = replace(next(c for c in offered if c.algorithm == "MD5"), qop=())
    value = build_authorization(
        no_qop, Credentials("alice", password), "REGISTER", "sip:pbx.example;transport=UDP",
        cnonce="x", nc=1,
    )  # fmt: skip
    return with_auth(request, value)


def challenge(
    reg: Registrar, request: Request, now: float = NOW, acc: Account | None = None
) -> Response:
    out = reg.handle(request, PHONE, acc or account(), [], now)
    assert out.response.status == 401
    return out.response


def registered(out: Outcome) -> list[SetBinding]:
    assert out.response.status == 200, out.response.reason
    return [c for c in out.changes if isinstance(c, SetBinding)]


# --- authentication ------------------------------------------------------------


def test_unauthenticated_register_is_challenged_sha256_first_then_md5() -> None:
    reg = Registrar(CONFIG, SECRET)
    out = reg.handle(register(), PHONE, account(), [], NOW)
    assert out.response.status == 401
    assert out.changes == ()
    assert not out.failed
    values = out.response.headers.get_all("WWW-Authenticate", split=False)
    parsed = [parse_challenge(v) for v in values]
    assert [c.algorithm for c in parsed] == ["SHA-256", "MD5"]
    assert {c.nonce for c in parsed} == {parsed[0].nonce}
    assert all(c.qop == ("auth",) and c.realm == "pbx" and not c.stale for c in parsed)
    assert out.response.to.tag  # RFC 3261 §8.2.6.2


def test_md5_answer_binds_the_contact_at_the_source_address() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    out = reg.handle(answer(challenge(reg, request), request), PHONE, account(), [], NOW + 1)
    [binding] = registered(out)
    assert binding.contact == "sip:alice@192.0.2.7:5062"
    assert binding.expires_at == NOW + 1 + 3600
    assert decode_received(binding.received) == (PHONE, ())
    assert out.response.headers.get("Contact") == "<sip:alice@192.0.2.7:5062>;expires=3600"
    assert out.extension == "alice"


def test_sha256_answer_is_accepted() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    signed = answer(challenge(reg, request), request, algorithm="SHA-256")
    assert registered(reg.handle(signed, PHONE, account(), [], NOW))


def test_rfc2069_answer_without_qop_is_accepted_once() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    signed = rfc2069(challenge(reg, request), request)
    assert registered(reg.handle(signed, PHONE, account(), [], NOW))
    again = reg.handle(signed, PHONE, account(), [], NOW + 1)
    assert again.response.status == 401
    assert parse_challenge(again.response.headers.get("WWW-Authenticate") or "").stale
    assert again.changes == ()


def test_wrong_password_is_forbidden_counted_and_binds_nothing() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    out = reg.handle(
        answer(challenge(reg, request), request, password="wrong"), PHONE, account(), [], NOW
    )
    assert out.response.status == 403
    assert out.failed
    assert out.changes == ()


def test_unknown_extension_is_challenged_then_forbidden() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register(user="mallory")
    first = reg.handle(request, PHONE, None, [], NOW)
    assert first.response.status == 401
    out = reg.handle(answer(first.response, request, user="mallory"), PHONE, None, [], NOW)
    assert (out.response.status, out.failed, out.changes) == (403, True, ())


def test_credentials_of_another_extension_are_forbidden() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register(user="alice")
    signed = answer(challenge(reg, request), request, user="bob")
    out = reg.handle(signed, PHONE, account(), [], NOW)
    assert (out.response.status, out.failed) == (403, True)


def test_stale_nonce_gets_a_new_challenge_with_stale_true() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    signed = answer(challenge(reg, request), request)
    out = reg.handle(signed, PHONE, account(), [], NOW + CONFIG.nonce_ttl + 1)
    assert out.response.status == 401
    assert not out.failed
    assert all(
        parse_challenge(v).stale
        for v in out.response.headers.get_all("WWW-Authenticate", split=False)
    )


def test_nonce_from_another_address_or_secret_is_stale() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    signed = answer(challenge(reg, request), request)
    moved = reg.handle(signed, Peer("udp", "192.0.2.99", 5062), account(), [], NOW)
    assert moved.response.status == 401
    restarted = Registrar(CONFIG, b"another secret")
    assert restarted.handle(signed, PHONE, account(), [], NOW).response.status == 401


def test_replayed_nc_is_refused_and_a_higher_nc_accepted() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    ch = challenge(reg, request)
    assert registered(reg.handle(answer(ch, request), PHONE, account(), [], NOW))
    replay = reg.handle(answer(ch, request), PHONE, account(), [], NOW + 1)
    assert replay.response.status == 401
    assert replay.changes == ()
    later = register(cseq=2)
    assert registered(reg.handle(answer(ch, later, nc=2), PHONE, account(), [], NOW + 2))


def test_digest_uri_for_another_host_is_bad_request() -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register()
    ch = [c for c in challenges_in(challenge(reg, request).headers.items()) if c.algorithm == "MD5"]
    value = build_authorization(
        ch[0], Credentials("alice", "s3cret"), "REGISTER", "sip:evil.example", cnonce="c", nc=1
    )
    out = reg.handle(with_auth(request, value), PHONE, account(), [], NOW)
    assert out.response.status == 400


# --- bindings ---------------------------------------------------------------------


_NC = itertools.count(1)


def signed_register(reg: Registrar, now: float = NOW, **kw: object) -> Request:
    """A signed REGISTER; nc grows across calls (one nonce per second, reused)."""
    request = register(**kw)  # type: ignore[arg-type]
    return answer(challenge(reg, request, now), request, nc=next(_NC))


def test_expires_below_minimum_is_423_with_min_expires() -> None:
    reg = Registrar(CONFIG, SECRET)
    out = reg.handle(signed_register(reg, expires=30), PHONE, account(), [], NOW)
    assert out.response.status == 423
    assert out.response.headers.get("Min-Expires") == "60"
    assert out.changes == ()


def test_expires_above_maximum_is_clamped_and_contact_param_wins() -> None:
    reg = Registrar(CONFIG, SECRET)
    out = reg.handle(signed_register(reg, expires=99999), PHONE, account(), [], NOW)
    assert registered(out)[0].expires_at == NOW + 7200
    contacts = ("<sip:alice@192.0.2.7:5062>;expires=120",)
    out = reg.handle(
        signed_register(reg, contacts=contacts, expires=600), PHONE, account(), [], NOW
    )
    assert registered(out)[0].expires_at == NOW + 120


def existing(
    contact: str = "sip:alice@192.0.2.7:5062", expires_at: float = NOW + 100
) -> BindingState:
    return BindingState(contact, expires_at, "old-call", 7, encode_received(PHONE))


def test_expires_zero_removes_the_binding() -> None:
    reg = Registrar(CONFIG, SECRET)
    out = reg.handle(signed_register(reg, expires=0), PHONE, account(), [existing()], NOW)
    assert out.response.status == 200
    assert out.changes == (RemoveBinding("sip:alice@192.0.2.7:5062"),)
    assert out.response.headers.get("Contact") is None


def test_star_removes_every_binding_and_needs_expires_zero() -> None:
    reg = Registrar(CONFIG, SECRET)
    two = [existing(), existing("sip:alice@192.0.2.8:5060")]
    acc = account(max_contacts=2)
    out = reg.handle(signed_register(reg, contacts=("*",), expires=0), PHONE, acc, two, NOW)
    assert out.response.status == 200
    assert {c.contact for c in out.changes if isinstance(c, RemoveBinding)} == {
        "sip:alice@192.0.2.7:5062",
        "sip:alice@192.0.2.8:5060",
    }
    bad = reg.handle(signed_register(reg, contacts=("*",), expires=60), PHONE, acc, two, NOW)
    assert (bad.response.status, bad.changes) == (400, ())


def test_new_contact_over_the_limit_replaces_the_soonest_expiring() -> None:
    reg = Registrar(CONFIG, SECRET)
    old = [existing("sip:alice@192.0.2.8:5060", NOW + 50), existing("sip:alice@192.0.2.9:5060")]
    acc = account(max_contacts=2)
    out = reg.handle(signed_register(reg), PHONE, acc, old, NOW)
    assert registered(out)
    assert RemoveBinding("sip:alice@192.0.2.8:5060") in out.changes
    assert len(out.response.headers.get_all("Contact")) == 2


def test_more_contacts_in_one_request_than_allowed_is_forbidden() -> None:
    reg = Registrar(CONFIG, SECRET)
    contacts = ("<sip:alice@192.0.2.7:5062>", "<sip:alice@192.0.2.7:5064>")
    out = reg.handle(signed_register(reg, contacts=contacts), PHONE, account(), [], NOW)
    assert (out.response.status, out.changes) == (403, ())
    two = reg.handle(
        signed_register(reg, contacts=contacts), PHONE, account(max_contacts=2), [], NOW
    )
    assert len(registered(two)) == 2


def test_refresh_keeps_the_stored_contact_text_and_expired_ones_are_ignored() -> None:
    reg = Registrar(CONFIG, SECRET)
    stored = existing("sip:ALICE@192.0.2.7:5062;transport=udp".replace("ALICE", "alice"))
    contacts = ("<sip:alice@192.0.2.7:5062;transport=UDP>",)
    dead = existing("sip:alice@192.0.2.50:5060", NOW - 1)
    out = reg.handle(signed_register(reg, contacts=contacts), PHONE, account(), [stored, dead], NOW)
    assert [b.contact for b in registered(out)] == [stored.contact]
    assert not any(isinstance(c, RemoveBinding) for c in out.changes)


def test_out_of_order_cseq_on_the_same_call_id_is_500() -> None:
    reg = Registrar(CONFIG, SECRET)
    binding = replace(existing(), call_id="reg-1", cseq=5)
    out = reg.handle(signed_register(reg, cseq=3), PHONE, account(), [binding], NOW)
    assert (out.response.status, out.changes) == (500, ())


def test_path_is_stored_with_the_flow_and_echoed() -> None:
    reg = Registrar(CONFIG, SECRET)
    path = ("Path: <sip:edge.example;lr>",)
    out = reg.handle(signed_register(reg, extra=path), PHONE, account(), [], NOW)
    [binding] = registered(out)
    assert decode_received(binding.received) == (PHONE, ("<sip:edge.example;lr>",))
    assert out.response.headers.get("Path") == "<sip:edge.example;lr>"


def test_no_contact_is_a_query_listing_bindings() -> None:
    reg = Registrar(CONFIG, SECRET)
    out = reg.handle(signed_register(reg, contacts=()), PHONE, account(), [existing()], NOW)
    assert out.response.status == 200
    assert out.changes == ()
    assert out.response.headers.get("Contact") == "<sip:alice@192.0.2.7:5062>;expires=100"


def test_tel_contact_and_bad_expires_are_bad_requests() -> None:
    reg = Registrar(CONFIG, SECRET)
    tel = reg.handle(
        signed_register(reg, contacts=("<tel:+14155550101>",)), PHONE, account(), [], NOW
    )
    assert tel.response.status == 400
    request = register(extra=("Expires: soon",))
    signed = answer(challenge(reg, request), request, nc=next(_NC))
    bad = reg.handle(signed, PHONE, account(), [], NOW)
    assert bad.response.status == 400


# --- tables -------------------------------------------------------------------------


def test_throttle_blocks_after_repeated_failures_and_forgets_after_success() -> None:
    throttle = FailureThrottle(limit=3, window=60, block=30)
    for i in range(3):
        assert not throttle.blocked("192.0.2.7", NOW + i)
        throttle.record("192.0.2.7", NOW + i, failed=True)
    assert throttle.blocked("192.0.2.7", NOW + 3)
    assert not throttle.blocked("192.0.2.8", NOW + 3)
    assert not throttle.blocked("192.0.2.7", NOW + 2 + 30)
    throttle.record("192.0.2.9", NOW, failed=True)
    throttle.record("192.0.2.9", NOW, failed=False)
    assert "192.0.2.9" not in throttle.failures


def test_failures_outside_the_window_do_not_add_up() -> None:
    throttle = FailureThrottle(limit=2, window=10, block=30)
    throttle.record("h", NOW, failed=True)
    throttle.record("h", NOW + 11, failed=True)
    assert not throttle.blocked("h", NOW + 12)


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(1, 5)), max_size=200))
def test_nonce_counters_accept_only_growing_nc_and_stay_bounded(
    uses: list[tuple[int, int]],
) -> None:
    counters = NonceCounters(limit=8)
    accepted: dict[int, list[int]] = {}
    for stamp, nc in uses:
        if counters.use(f"{stamp:x}.mac", stamp, nc):
            accepted.setdefault(stamp, []).append(nc)
        assert len(counters.seen) <= 8
    for ncs in accepted.values():
        assert ncs == sorted(set(ncs))


@given(
    st.sampled_from(["udp", "tcp"]),
    st.sampled_from(["192.0.2.7", "::1", "2001:db8::5"]),
    st.integers(1, 65535),
    st.lists(st.sampled_from(["<sip:edge.example;lr>", "<sip:[2001:db8::1]:5070;lr>"]), max_size=3),
)
def test_received_text_round_trips(transport: str, host: str, port: int, path: list[str]) -> None:
    peer = Peer(transport, host, port)  # type: ignore[arg-type]
    assert decode_received(encode_received(peer, path)) == (peer, tuple(path))


@given(
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)
def test_garbage_contact_or_authorization_never_raises(contact: str, auth: str) -> None:
    reg = Registrar(CONFIG, SECRET)
    request = register(extra=(f"Authorization: Digest {auth}",))
    out = reg.handle(request, PHONE, account(), [], NOW)
    assert out.response.status in (400, 401, 403)
    try:
        other = register(contacts=(contact or "x",))
    except Exception:  # noqa: BLE001 - any parser refusal ends this property case
        return
    signed = answer(challenge(reg, other), other)
    assert reg.handle(signed, PHONE, account(), [], NOW).response.status in (200, 400, 403)


def test_digest_client_of_pbx_registers_with_sha256() -> None:
    """Our own trunk-side client picks SHA-256 from the challenge pair."""
    reg = Registrar(CONFIG, SECRET)
    request = register()
    ch = challenge(reg, request)
    attempt = DigestClient(Credentials("alice", "s3cret"), CountingIds("r")).attempt()
    headers = attempt.answer(challenges_in(ch.headers.items()), "REGISTER", request.uri)
    assert headers is not None
    assert "SHA-256" in headers[0][1]
    out = reg.handle(with_auth(request, headers[0][1]), PHONE, account(), [], NOW)
    assert registered(out)


# -- per-extension digest choice (pbx extensions --digest) --------------------------


def _offered(response: Response) -> list[str]:
    return [c.algorithm for c in challenges_in(response.headers.items())]


def test_challenges_follow_the_account_digest_choice() -> None:
    registrar = Registrar(CONFIG, SECRET)
    for algorithms in (("SHA-256", "MD5"), ("MD5",), ("SHA-256",)):
        acct = replace(account(), algorithms=algorithms)
        first = registrar.handle(register(), PHONE, acct, [], NOW)
        assert first.response.status == 401
        assert _offered(first.response) == list(algorithms)
    unknown = registrar.handle(register("nobody"), PHONE, None, [], NOW)
    assert _offered(unknown.response) == ["SHA-256", "MD5"]  # no probing by challenge


def test_md5_only_account_registers_with_md5_and_refuses_sha256() -> None:
    registrar = Registrar(CONFIG, SECRET)
    md5_only = replace(account(), algorithms=("MD5",))
    challenge = registrar.handle(register(), PHONE, md5_only, [], NOW).response
    answered = answer(challenge, register(), algorithm="MD5")
    done = registrar.handle(answered, PHONE, md5_only, [], NOW)
    assert done.response.status == 200
    both = registrar.handle(register(cseq=2), PHONE, account(), [], NOW).response
    sha = answer(both, register(cseq=2), algorithm="SHA-256")  # right password, wrong algorithm
    refused = registrar.handle(sha, PHONE, md5_only, [], NOW)
    assert refused.response.status == 401
    assert _offered(refused.response) == ["MD5"]
    assert refused.changes == ()


def test_account_repr_holds_no_hash() -> None:
    acct = account()
    assert acct.ha1_md5 not in repr(acct)
    assert acct.ha1_sha256 not in repr(acct)


def test_expires_with_leading_zeros_is_its_value_and_too_big_is_400() -> None:
    registrar = Registrar(CONFIG, SECRET)
    padded = register(extra=("Expires: 0000120",))
    done = registrar.handle(answer(challenge(registrar, padded), padded), PHONE, account(), [], NOW)
    assert done.response.status == 200
    (change,) = done.changes
    assert isinstance(change, SetBinding)
    assert change.expires_at == NOW + 120
    huge = register(extra=(f"Expires: {2**32}",), cseq=2, call_id="reg-2")
    out = registrar.handle(answer(challenge(registrar, huge), huge), PHONE, account(), [], NOW)
    assert out.response.status == 400  # RFC 3261 §20.19: at most 2**32-1
