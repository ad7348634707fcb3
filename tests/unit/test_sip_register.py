"""REGISTER client: request shape, digest retry, refresh, backoff, 423, unregister (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.auth import Credentials, parse_authorization, verify_authorization
from pbx.sip.ids import CountingIds
from pbx.sip.message import Headers, Request, Response, parse, serialize
from pbx.sip.peer import Peer
from pbx.sip.register import (
    BACKOFF_CAP,
    RegistrationClient,
    RegistrationConfig,
    RegState,
    SendRequest,
    backoff_delay,
)

REGISTRAR = Peer("udp", "127.0.0.2", 5060)
LOCAL = Peer("udp", "127.0.0.1", 5070)
CHALLENGE = 'Digest realm="trunk.example", nonce="abc123", qop="auth", algorithm=MD5'


def make_client(expires: int = 3600, credentials: bool = True) -> RegistrationClient:
    config = RegistrationConfig(
        aor="sip:+14155550101@trunk.example",
        registrar=REGISTRAR,
        local=LOCAL,
        credentials=Credentials("+14155550101", "s3cret") if credentials else None,
        expires=expires,
    )
    return RegistrationClient(config, CountingIds("reg"))


def only_request(actions: list[SendRequest]) -> Request:
    assert len(actions) == 1
    assert actions[0].dest == REGISTRAR
    request = actions[0].request
    assert parse(serialize(request)) == request  # it is valid, serialisable SIP
    return request


def reply(request: Request, status: int, *extra: tuple[str, str]) -> Response:
    headers = Headers(
        [
            ("Via", request.headers.get("Via") or ""),
            ("From", request.headers.get("From") or ""),
            ("To", (request.headers.get("To") or "") + ";tag=srv"),
            ("Call-ID", request.call_id),
            ("CSeq", str(request.cseq)),
            *extra,
        ]
    )
    return Response(status, "Whatever", headers)


def test_first_register_shape() -> None:
    client = make_client()
    request = only_request(client.start(0.0))
    assert request.method == "REGISTER"
    assert request.uri == "sip:trunk.example"
    assert str(request.from_.uri) == str(request.to.uri) == "sip:+14155550101@trunk.example"
    assert request.from_.tag
    assert request.to.tag is None
    assert request.cseq.seq == 1
    assert request.headers.get("Expires") == "3600"
    assert str(request.contacts[0].uri) == "sip:+14155550101@127.0.0.1:5070"
    assert request.top_via.branch is not None
    assert request.top_via.branch.startswith("z9hG4bK")
    assert "Authorization" not in request.headers
    assert client.state is RegState.REGISTERING
    assert not client.registered


def test_challenge_then_ok_then_refresh() -> None:
    client = make_client()
    first = only_request(client.start(0.0))
    second = only_request(
        client.on_response(reply(first, 401, ("WWW-Authenticate", CHALLENGE)), 0.1)
    )
    assert second.call_id == first.call_id
    assert second.cseq.seq == 2
    assert second.from_.tag == first.from_.tag
    assert second.branch != first.branch
    creds = parse_authorization(second.headers.get("Authorization") or "")
    assert creds.uri == "sip:trunk.example"
    assert creds.nc == "00000001"
    assert verify_authorization(creds, "s3cret", "REGISTER")

    ok = reply(second, 200, ("Contact", f"<{client.contact}>;expires=120"), ("Expires", "999"))
    assert client.on_response(ok, 0.2) == []
    assert client.state is RegState.REGISTERED
    assert client.registered
    assert client.expires_at == pytest.approx(120.2)
    assert client.next_deadline() == pytest.approx(60.2)  # max(E/2, E-300)

    assert client.handle_timer(60.0) == []  # not yet due
    refresh = only_request(client.handle_timer(60.2))
    assert refresh.call_id == first.call_id
    assert refresh.cseq.seq == 3
    pre = parse_authorization(refresh.headers.get("Authorization") or "")
    assert pre.nonce == "abc123"
    assert pre.nc == "00000002"  # same nonce, counted on
    assert verify_authorization(pre, "s3cret", "REGISTER")


def test_long_registration_refreshes_five_minutes_early() -> None:
    client = make_client()
    first = only_request(client.start(0.0))
    client.on_response(reply(first, 200, ("Expires", "3600")), 10.0)
    assert client.next_deadline() == pytest.approx(3310.0)


def test_expires_fallbacks_and_zero() -> None:
    client = make_client(expires=600)
    first = only_request(client.start(0.0))
    client.on_response(reply(first, 200), 0.0)  # neither Contact expires nor Expires
    assert client.expires_at == pytest.approx(600.0)
    refresh = only_request(client.handle_timer(300.0))
    client.on_response(reply(refresh, 200, ("Contact", f"<{client.contact}>;expires=0")), 300.0)
    assert client.state is RegState.BACKOFF


def test_refused_credentials_back_off_doubling_to_cap() -> None:
    client = make_client()
    now = 0.0
    delays = []
    request = only_request(client.start(now))
    for _ in range(7):
        request = only_request(
            client.on_response(reply(request, 401, ("WWW-Authenticate", CHALLENGE)), now)
        )
        assert client.on_response(reply(request, 401, ("WWW-Authenticate", CHALLENGE)), now) == []
        assert client.state is RegState.BACKOFF
        assert client.last_reason == "credentials refused"
        deadline = client.next_deadline()
        assert deadline is not None
        delays.append(deadline - now)
        now = deadline
        request = only_request(client.handle_timer(now))
        assert "Authorization" in request.headers  # preemptive from the last challenge
    assert delays == [30.0, 60.0, 120.0, 240.0, 480.0, 900.0, 900.0]
    assert backoff_delay(100) == BACKOFF_CAP


def test_stale_nonce_is_not_a_failure() -> None:
    client = make_client()
    first = only_request(client.start(0.0))
    second = only_request(
        client.on_response(reply(first, 407, ("Proxy-Authenticate", CHALLENGE)), 0)
    )
    assert "Proxy-Authorization" in second.headers
    stale = CHALLENGE.replace("abc123", "fresh") + ", stale=true"
    third = only_request(client.on_response(reply(second, 407, ("Proxy-Authenticate", stale)), 0))
    assert 'nonce="fresh"' in (third.headers.get("Proxy-Authorization") or "")
    assert client.failures == 0


def test_challenge_without_credentials_fails() -> None:
    client = make_client(credentials=False)
    first = only_request(client.start(0.0))
    assert client.on_response(reply(first, 401, ("WWW-Authenticate", CHALLENGE)), 0.0) == []
    assert client.state is RegState.BACKOFF


def test_interval_too_brief_uses_min_expires() -> None:
    client = make_client(expires=60)
    first = only_request(client.start(0.0))
    second = only_request(client.on_response(reply(first, 423, ("Min-Expires", "1800")), 0.0))
    assert second.headers.get("Expires") == "1800"
    assert second.cseq.seq == 2
    # a Min-Expires no larger than what we asked is a failure, not a loop
    assert client.on_response(reply(second, 423, ("Min-Expires", "1800")), 0.0) == []
    assert client.state is RegState.BACKOFF


def test_timeout_and_other_errors_back_off() -> None:
    client = make_client()
    only_request(client.start(0.0))
    assert client.on_timeout(5.0) == []
    assert client.state is RegState.BACKOFF
    assert client.last_status == 408
    assert client.next_deadline() == pytest.approx(35.0)
    again = only_request(client.handle_timer(35.0))
    client.on_response(reply(again, 503), 36.0)
    assert client.next_deadline() == pytest.approx(96.0)
    assert client.on_timeout(40.0) == []  # nothing outstanding: ignored


def test_foreign_and_provisional_responses_ignored() -> None:
    client = make_client()
    first = only_request(client.start(0.0))
    assert client.on_response(reply(first, 100), 0.0) == []
    wrong = reply(first, 200)
    wrong.headers.set("CSeq", "99 REGISTER")
    assert client.on_response(wrong, 0.0) == []
    other_call = reply(first, 200)
    other_call.headers.set("Call-ID", "elsewhere")
    assert client.on_response(other_call, 0.0) == []
    assert client.state is RegState.REGISTERING


def test_binding_survives_failed_refresh_until_expiry() -> None:
    client = make_client(expires=100)
    first = only_request(client.start(0.0))
    client.on_response(reply(first, 200), 0.0)
    refresh = only_request(client.handle_timer(50.0))
    client.on_response(reply(refresh, 500), 51.0)
    assert client.state is RegState.BACKOFF
    assert client.registered
    assert client.next_deadline() == pytest.approx(81.0)  # retry before expiry at 100
    only_request(client.handle_timer(81.0))
    client.on_timeout(99.0)
    assert client.handle_timer(100.0) == []
    assert not client.registered


def test_stop_unregisters() -> None:
    client = make_client()
    first = only_request(client.start(0.0))
    client.on_response(reply(first, 200), 0.0)
    bye = only_request(client.stop(1.0))
    assert bye.headers.get("Expires") == "0"
    assert client.state is RegState.UNREGISTERING
    client.on_response(reply(bye, 200), 1.1)
    assert client.state is RegState.STOPPED
    assert not client.registered
    assert client.next_deadline() is None
    assert make_client().stop(0.0) == []


def test_tcp_contact_has_transport_param() -> None:
    config = RegistrationConfig(
        aor="sip:alice@trunk.example:5080",
        registrar=Peer("tcp", "127.0.0.2", 5080),
        local=Peer("tcp", "127.0.0.1", 5070),
    )
    client = RegistrationClient(config, CountingIds("tcp"))
    request = client.start(0.0)[0].request
    assert request.uri == "sip:trunk.example:5080"
    assert request.top_via.transport == "TCP"
    assert client.contact == "sip:alice@127.0.0.1:5070;transport=tcp"


_event = st.one_of(
    st.tuples(st.just("response"), st.sampled_from([100, 200, 401, 407, 423, 403, 500, 503])),
    st.tuples(st.just("timeout"), st.just(0)),
    st.tuples(st.just("timer"), st.just(0)),
    st.tuples(st.just("stop"), st.just(0)),
    st.tuples(st.just("start"), st.just(0)),
)


@given(st.lists(_event, max_size=40), st.sampled_from([30, 600, 3600]))
def test_any_input_sequence_keeps_invariants(events: list[tuple[str, int]], expires: int) -> None:
    client = make_client(expires=expires)
    now = 0.0
    sent = [only_request(client.start(now))]
    for kind, status in events:
        now += 1.0
        if kind == "response":
            extra = [
                ("WWW-Authenticate", CHALLENGE),
                ("Proxy-Authenticate", CHALLENGE),
                ("Min-Expires", str(expires * 2)),
            ]
            actions = client.on_response(reply(sent[-1], status, *extra), now)
        elif kind == "timeout":
            actions = client.on_timeout(now)
        elif kind == "timer":
            deadline = client.next_deadline()
            now = max(now, deadline or now)
            actions = client.handle_timer(now)
        elif kind == "stop":
            actions = client.stop(now)
        else:
            actions = client.start(now)
        assert len(actions) <= 1
        sent += [only_request(actions)] if actions else []
        assert isinstance(client.state, RegState)
        if client.state in (RegState.REGISTERED, RegState.BACKOFF):
            assert client.next_deadline() is not None
    seqs = [r.cseq.seq for r in sent]
    assert seqs == list(range(1, len(sent) + 1))
    assert len({r.call_id for r in sent}) == 1
    assert len({r.branch for r in sent}) == len(sent)
