"""Digest authentication: published RFC vectors, parsing, client retry rules, round trips."""

from __future__ import annotations

import contextlib
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.sip.auth import (
    MAX_ROUNDS,
    AuthError,
    Challenge,
    Credentials,
    DigestClient,
    build_authorization,
    challenges_in,
    compute_response,
    ha1,
    parse_authorization,
    parse_challenge,
    parse_params,
    strongest_per_realm,
    verify_authorization,
)


class FixedIds:
    """cnonce() from a fixed list then a counter (stand-in for CountingIds)."""

    def __init__(self, *cnonces: str) -> None:
        self._fixed = list(cnonces)
        self._count = itertools.count(1)

    def cnonce(self) -> str:
        return self._fixed.pop(0) if self._fixed else f"cn{next(self._count):04d}"


# RFC 2617 §3.5
RFC2617_CHALLENGE = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)

# RFC 7616 §3.9.1
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


def test_rfc2617_example_response() -> None:
    ch = parse_challenge(RFC2617_CHALLENGE)
    assert ch.qop == ("auth", "auth-int")
    value = build_authorization(
        ch,
        Credentials("Mufasa", "Circle Of Life"),
        "GET",
        "/dir/index.html",
        cnonce="0a4f113b",
        nc=1,
    )
    creds = parse_authorization(value)
    assert creds.response == "6629fae49393a05397450978507c4ef1"
    assert creds.qop == "auth"
    assert creds.nc == "00000001"
    assert creds.opaque == "5ccc069c403ebaf9f0171e9517f40e41"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_examples(algorithm: str, expected: str) -> None:
    value = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", '
        f'algorithm={algorithm}, nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    ch = parse_challenge(value)
    assert ch.algorithm == algorithm
    header = build_authorization(
        ch,
        Credentials("Mufasa", "Circle of Life"),
        "GET",
        "/dir/index.html",
        cnonce=RFC7616_CNONCE,
        nc=1,
    )
    creds = parse_authorization(header)
    assert creds.response == expected
    assert verify_authorization(creds, "Circle of Life", "GET")
    assert not verify_authorization(creds, "Circle Of Life", "GET")


def test_rfc2069_form_without_qop() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n"')
    header = build_authorization(ch, Credentials("u", "p"), "REGISTER", "sip:r", cnonce="c", nc=1)
    assert "qop" not in header
    assert "nc=" not in header
    assert "cnonce" not in header
    creds = parse_authorization(header)
    key = ha1("MD5", "u", "r", "p")
    assert creds.response == compute_response("MD5", key, "n", "REGISTER", "sip:r")
    assert verify_authorization(creds, "p", "REGISTER")


@pytest.mark.parametrize(
    "algorithm", ["MD5-sess", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess"]
)
def test_other_algorithms_verify(algorithm: str) -> None:
    ch = parse_challenge(f'Digest realm="r", nonce="n", qop="auth", algorithm={algorithm.lower()}')
    assert ch.algorithm == algorithm
    header = build_authorization(ch, Credentials("u", "p"), "INVITE", "sip:x@r", cnonce="c", nc=7)
    creds = parse_authorization(header)
    assert creds.algorithm == algorithm
    assert creds.nc == "00000007"
    assert verify_authorization(creds, "p", "INVITE")
    assert not verify_authorization(creds, "p", "BYE")


def test_sess_ha1_uses_nonce_and_cnonce() -> None:
    plain = ha1("MD5", "u", "r", "p")
    assert ha1("MD5-sess", "u", "r", "p", "n", "c") != plain
    assert ha1("MD5-sess", "u", "r", "p", "n", "c") != ha1("MD5-sess", "u", "r", "p", "n", "d")


def test_auth_int_hashes_body() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", qop="auth-int"')
    header = build_authorization(
        ch, Credentials("u", "p"), "INVITE", "sip:x", cnonce="c", nc=1, body=b"v=0\r\n"
    )
    creds = parse_authorization(header)
    assert creds.qop == "auth-int"
    assert verify_authorization(creds, "p", "INVITE", b"v=0\r\n")
    assert not verify_authorization(creds, "p", "INVITE", b"v=1\r\n")


def test_userhash() -> None:
    ch = parse_challenge('Digest realm="r", nonce="n", qop=auth, algorithm=SHA-256, userhash=true')
    header = build_authorization(ch, Credentials("u", "p"), "INVITE", "sip:x", cnonce="c", nc=1)
    creds = parse_authorization(header)
    assert creds.userhash
    assert creds.username != "u"
    assert len(creds.username) == 64


def test_parse_params_quoting_and_tokens() -> None:
    scheme, params = parse_params(
        'Digest realm="a, \\"b\\"", nonce=abc ,stale=TRUE,  algorithm=md5-SESS, qop="auth"'
    )
    assert scheme == "Digest"
    assert params == {
        "realm": 'a, "b"',
        "nonce": "abc",
        "stale": "TRUE",
        "algorithm": "md5-SESS",
        "qop": "auth",
    }
    ch = parse_challenge('Digest realm="r", nonce=abc, stale=TRUE, algorithm=md5-SESS')
    assert ch.stale
    assert ch.algorithm == "MD5-sess"


@pytest.mark.parametrize(
    "value",
    [
        "",
        'Basic realm="r"',
        'Digest realm="r"',
        'Digest nonce="n"',
        'Digest realm="r, nonce="n"',
        "Digest realm",
        'Digest ="x", realm="r", nonce="n"',
        "Digest " + ", ".join(f"p{i}=1" for i in range(40)) + ', realm="r", nonce="n"',
    ],
)
def test_parse_challenge_rejects(value: str) -> None:
    with pytest.raises(AuthError):
        parse_challenge(value)


def test_parse_authorization_requires_fields() -> None:
    with pytest.raises(AuthError):
        parse_authorization('Digest username="u", realm="r", nonce="n", uri="sip:x"')


def test_challenges_in_filters_headers_and_algorithms() -> None:
    found = challenges_in(
        [
            ("Via", "SIP/2.0/UDP h"),
            ("WWW-Authenticate", 'Digest realm="a", nonce="1", algorithm=SHA-256'),
            ("WWW-Authenticate", 'Digest realm="a", nonce="2", algorithm=MD5'),
            ("WWW-Authenticate", 'Digest realm="a", nonce="3", algorithm=AKAv1-MD5'),
            ("Proxy-Authenticate", 'Digest realm="p", nonce="4"'),
            ("WWW-Authenticate", "Basic realm=x"),
        ]
    )
    assert [c.nonce for c in found] == ["1", "2", "4"]
    assert found[2].proxy
    best = strongest_per_realm(found)
    assert {(c.realm, c.nonce) for c in best} == {("a", "1"), ("p", "4")}


def test_nc_counts_per_nonce() -> None:
    client = DigestClient(Credentials("u", "p"), FixedIds())
    ch = Challenge(realm="r", nonce="n1", qop=("auth",))
    ncs = [parse_authorization(client.authorize(ch, "INVITE", "sip:x")[1]).nc for _ in range(3)]
    assert ncs == ["00000001", "00000002", "00000003"]
    other = Challenge(realm="r", nonce="n2", qop=("auth",))
    assert parse_authorization(client.authorize(other, "INVITE", "sip:x")[1]).nc == "00000001"


def test_attempt_gives_up_on_second_challenge_same_realm() -> None:
    client = DigestClient(Credentials("u", "p"), FixedIds())
    attempt = client.attempt()
    first = attempt.answer([Challenge(realm="r", nonce="n1")], "REGISTER", "sip:r")
    assert first is not None
    assert first[0][0] == "Authorization"
    assert attempt.answer([Challenge(realm="r", nonce="n2")], "REGISTER", "sip:r") is None
    assert attempt.refused


def test_attempt_retries_on_stale_without_refusal() -> None:
    client = DigestClient(Credentials("u", "p"), FixedIds())
    attempt = client.attempt()
    assert attempt.answer([Challenge(realm="r", nonce="n1", proxy=True)], "INVITE", "sip:x")
    again = attempt.answer(
        [Challenge(realm="r", nonce="n2", stale=True, proxy=True)], "INVITE", "sip:x"
    )
    assert again is not None
    assert again[0][0] == "Proxy-Authorization"
    assert 'nonce="n2"' in again[0][1]
    assert not attempt.refused


def test_attempt_bounded_stale_loop() -> None:
    attempt = DigestClient(Credentials("u", "p"), FixedIds()).attempt()
    answers = [
        attempt.answer([Challenge(realm="r", nonce=f"n{i}", stale=True)], "INVITE", "sip:x")
        for i in range(MAX_ROUNDS + 2)
    ]
    assert all(a is not None for a in answers[:MAX_ROUNDS])
    assert answers[MAX_ROUNDS] is None


def test_attempt_new_realm_is_not_refusal() -> None:
    attempt = DigestClient(Credentials("u", "p"), FixedIds()).attempt()
    assert attempt.answer([Challenge(realm="a", nonce="1")], "INVITE", "sip:x")
    both = attempt.answer([Challenge(realm="b", nonce="2", proxy=True)], "INVITE", "sip:x")
    assert both is not None
    assert [name for name, _ in both] == ["Proxy-Authorization"]


def test_attempt_nothing_usable() -> None:
    attempt = DigestClient(Credentials("u", "p"), FixedIds()).attempt()
    assert attempt.answer([], "INVITE", "sip:x") is None
    unknown_qop = Challenge(realm="r", nonce="n", qop=("auth-conf",))
    assert attempt.answer([unknown_qop], "INVITE", "sip:x") is None


_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=30)
_token = st.text("abcdefghijklmnopqrstuvwxyz0123456789-./:@", min_size=1, max_size=20)


@given(
    user=_text,
    password=_text,
    realm=_text,
    nonce=_text,
    uri=_token,
    algorithm=st.sampled_from(["MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256"]),
    qop=st.sampled_from([(), ("auth",), ("auth-int",), ("auth", "auth-int")]),
    nc=st.integers(1, 2**32 - 1),
)
def test_round_trip_verifies(
    user: str,
    password: str,
    realm: str,
    nonce: str,
    uri: str,
    algorithm: str,
    qop: tuple[str, ...],
    nc: int,
) -> None:
    ch = Challenge(realm=realm, nonce=nonce, algorithm=algorithm, qop=qop, opaque='o"q')
    header = build_authorization(
        ch, Credentials(user, password), "INVITE", uri, cnonce="abc", nc=nc, body=b"x"
    )
    creds = parse_authorization(header)
    assert (creds.username, creds.realm, creds.nonce, creds.uri) == (user, realm, nonce, uri)
    assert creds.opaque == 'o"q'
    assert verify_authorization(creds, password, "INVITE", b"x")
    assert not verify_authorization(creds, password + "!", "INVITE", b"x")


@given(st.text(max_size=200))
def test_parse_never_raises_anything_but_auth_error(value: str) -> None:
    for parse in (parse_challenge, parse_authorization):
        with contextlib.suppress(AuthError):
            parse(value)
