"""Typed header views: Via, name-addr, CSeq, RSeq/RAck, Content-Type, digest params."""

from __future__ import annotations

import pytest

from pbx.sip.headers import (
    CREDENTIALS_UNQUOTED,
    AuthParams,
    ContentType,
    CSeq,
    NameAddr,
    RAck,
    Via,
    canonical_name,
    format_auth,
    is_star,
    parse_auth,
    parse_content_type,
    parse_cseq,
    parse_name_addr,
    parse_params,
    parse_rack,
    parse_rseq,
    parse_via,
    quote_string,
    split_list,
    unquote_string,
)
from pbx.sip.status import SipParseError
from pbx.sip.uri import SipUri


def test_via_fields() -> None:
    via = parse_via("SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776;rport;received=192.0.2.99")
    assert via == Via(
        "UDP", "192.0.2.10", 5060, {"branch": "z9hG4bK776", "rport": None, "received": "192.0.2.99"}
    )
    assert via.branch == "z9hG4bK776"
    assert via.received == "192.0.2.99"
    assert via.rport is None
    assert via.wants_rport
    assert via.sent_by == "192.0.2.10:5060"


def test_via_ipv6_rport_value_maddr_ttl_and_odd_spacing() -> None:
    via = parse_via("SIP / 2.0 / tcp [2001:db8::9] : 5070 ; rport=5071 ;maddr=239.1.1.1;ttl=16")
    assert (via.transport, via.host, via.port) == ("TCP", "2001:db8::9", 5070)
    assert via.rport == 5071
    assert via.maddr == "239.1.1.1"
    assert via.ttl == 16
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5070;rport=5071;maddr=239.1.1.1;ttl=16"
    assert parse_via(str(via)) == via


def test_via_received_ipv6_and_quoted_param() -> None:
    via = parse_via('SIP/2.0/UDP h.example;branch=z9hG4bKx;received=2001:db8::1;x="a b;c"')
    assert via.received == "2001:db8::1"
    assert via.params["x"] == "a b;c"
    assert parse_via(str(via)) == via


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 192.0.2.1",
        "HTTP/1.1/TCP 192.0.2.1",
        "SIP/2.0/UDP 192.0.2.1:99999",
        "SIP/2.0/UDP [2001:db8::zz]:5060",
        "SIP/2.0/UDP 192.0.2.1;branch=a b",
        'SIP/2.0/UDP 192.0.2.1;x="unterminated',
    ],
)
def test_bad_via(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via(value)


def test_name_addr_quoted_display_with_escapes() -> None:
    na = parse_name_addr('"Alice \\"Al\\" Smith" <sip:alice@atlanta.example>;tag=1928301774')
    assert na.display == 'Alice "Al" Smith'
    assert na.uri == SipUri("sip", "alice", host="atlanta.example")
    assert na.tag == "1928301774"
    assert parse_name_addr(str(na)) == na


def test_name_addr_unquoted_display_and_no_display() -> None:
    assert parse_name_addr("Bob  Jones <sip:bob@b.example>").display == "Bob Jones"
    na = parse_name_addr("<sip:bob@b.example;transport=tcp>;expires=60;q=0.5")
    assert na.display is None
    assert na.uri.params == {"transport": "tcp"}
    assert na.params == {"expires": "60", "q": "0.5"}
    assert na.expires == 60


def test_bare_addr_spec_params_belong_to_header() -> None:
    # RFC 3261 §20.10: without <>, ;params are header params, not URI params.
    na = parse_name_addr("sip:+14155550101@pbx.example;tag=abc;user=phone")
    assert na.uri.params == {}
    assert na.params == {"tag": "abc", "user": "phone"}
    assert str(na) == "<sip:+14155550101@pbx.example>;tag=abc;user=phone"


def test_name_addr_tel_and_with_tag() -> None:
    na = parse_name_addr("<tel:+12125550123>")
    assert na.uri.scheme == "tel"
    assert na.with_tag("x1").tag == "x1"
    assert na.tag is None  # with_tag returns a new value


@pytest.mark.parametrize(
    "value",
    [
        '"unterminated <sip:a@b>',
        '"Alice" sip:a@b',
        "<sip:a@b",
        "Bad\x01Name <sip:a@b>",
        "sip:a b@c",
        "<mailto:a@b>",
        "<sip:a@b> junk",
    ],
)
def test_bad_name_addr(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_name_addr(value)


def test_star_contact() -> None:
    assert is_star(" * ")
    assert not is_star("<sip:*@x>")


def test_cseq_rseq_rack() -> None:
    assert parse_cseq("4711  INVITE") == CSeq(4711, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    assert parse_rseq(" 988789 ") == 988789
    assert parse_rack("776656 1 INVITE") == RAck(776656, 1, "INVITE")
    assert str(RAck(2, 3, "INVITE")) == "2 3 INVITE"


@pytest.mark.parametrize("value", ["INVITE", "abc INVITE", "-1 INVITE", "2147483648 INVITE", "1"])
def test_bad_cseq(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_cseq(value)


@pytest.mark.parametrize("value", ["0", "x", "2147483648", ""])
def test_bad_rseq(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_rseq(value)


def test_content_type() -> None:
    ct = parse_content_type("Application/SDP ; charset=utf-8")
    assert ct == ContentType("application", "sdp", {"charset": "utf-8"})
    assert ct.mime == "application/sdp"
    assert str(ct) == "application/sdp;charset=utf-8"
    with pytest.raises(SipParseError):
        parse_content_type("sdp")


def test_digest_challenge() -> None:
    value = (
        'Digest realm="atlanta.example, inc", nonce="84a4cc6f3082121f32b42a2187831a9e",'
        ' qop="auth,auth-int", algorithm=SHA-256, stale=TRUE, opaque="5ccc\\"069c"'
    )
    auth = parse_auth(value)
    assert auth.scheme == "Digest"
    assert auth.params == {
        "realm": "atlanta.example, inc",
        "nonce": "84a4cc6f3082121f32b42a2187831a9e",
        "qop": "auth,auth-int",
        "algorithm": "SHA-256",
        "stale": "TRUE",
        "opaque": '5ccc"069c',
    }
    assert auth.qop_options == ["auth", "auth-int"]
    assert auth.stale
    assert parse_auth(str(auth)) == auth
    assert 'qop="auth,auth-int"' in str(auth)
    assert "algorithm=SHA-256" in str(auth)


def test_credentials_formatting() -> None:
    params = {"username": "trunk1", "realm": "r", "nonce": "n", "uri": "sip:+14155550101@x"}
    params |= {"response": "abc", "qop": "auth", "nc": "00000001", "cnonce": "c1"}
    text = format_auth("Digest", params, unquoted=CREDENTIALS_UNQUOTED)
    assert 'username="trunk1"' in text
    assert "qop=auth," in text
    assert "nc=00000001" in text
    assert parse_auth(text) == AuthParams("Digest", params)


def test_auth_second_challenge_is_ignored_and_garbage_rejected() -> None:
    assert parse_auth('Digest realm="a", nonce="b", Basic realm="c"').params == {
        "realm": "a",
        "nonce": "b",
    }
    for bad in ["", 'Digest realm="unterminated', "Digest realm"]:
        with pytest.raises(SipParseError):
            parse_auth(bad)


def test_split_list_respects_quotes_and_angles() -> None:
    assert split_list('<sip:a@b;x=1,2>, "C, D" <sip:c@d>,sip:e@f') == [
        "<sip:a@b;x=1,2>",
        '"C, D" <sip:c@d>',
        "sip:e@f",
    ]
    assert split_list("INVITE, ACK ,BYE,,") == ["INVITE", "ACK", "BYE"]


def test_params_and_quoting_helpers() -> None:
    assert parse_params(';a=1;B;c="x \\"y\\""') == {"a": "1", "b": None, "c": 'x "y"'}
    assert unquote_string(quote_string('a"b\\c')) == 'a"b\\c'
    with pytest.raises(SipParseError):
        parse_params("a=1")


def test_canonical_names_and_compact_forms() -> None:
    assert canonical_name("call-id") == ("Call-ID", "call-id")
    assert canonical_name("i") == ("Call-ID", "call-id")
    assert canonical_name("WWW-AUTHENTICATE") == ("WWW-Authenticate", "www-authenticate")
    assert canonical_name("cseq") == ("CSeq", "cseq")
    assert canonical_name("X-Odd-Case") == ("X-Odd-Case", "x-odd-case")
    with pytest.raises(ValueError, match="header name"):
        canonical_name("bad name")


def test_name_addr_display_is_quoted_on_output() -> None:
    na = NameAddr("Caller, Inc", SipUri("sip", "a", host="b.example"), {"tag": "t"})
    assert str(na) == '"Caller, Inc" <sip:a@b.example>;tag=t'
