"""SIP/SIPS/tel URI parsing, formatting and RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import pytest

from pbx.sip.status import SipParseError
from pbx.sip.uri import SipUri, parse_uri, uri_equal


def test_full_sip_uri_parts() -> None:
    uri = parse_uri(
        "sips:al%20ice:se%3Acret@[2001:db8::1]:5061;transport=TCP;lr?subject=hi%20there&x=y"
    )
    assert uri == SipUri(
        "sips",
        "al ice",
        "se:cret",
        "2001:db8::1",
        5061,
        {"transport": "TCP", "lr": None},
        {"subject": "hi there", "x": "y"},
    )
    assert uri.transport == "tcp"
    assert uri.lr
    assert uri.host_port == "[2001:db8::1]:5061"


@pytest.mark.parametrize(
    "text",
    [
        "sip:alice@example.com",
        "sip:example.com",
        "sip:+14155550101@203.0.113.5:5060;user=phone",
        "sips:al%20ice:pw@[2001:db8::1]:5061;transport=tcp;lr?subject=hi%20there&x=y",
        "sip:user;par=u%40ex@host.example",  # user part may hold ';' (RFC 3261 §25.1)
        "tel:+1-415-555-0101;phone-context=example.com",
        "sip:10.0.0.1;maddr=239.255.255.1;ttl=15",
    ],
)
def test_str_round_trips(text: str) -> None:
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri
    assert uri_equal(text, str(uri))


def test_scheme_is_case_insensitive_and_lowered() -> None:
    assert parse_uri("SIP:bob@Host.Example").scheme == "sip"


def test_tel_uri() -> None:
    uri = parse_uri("tel:+14155550101;phone-context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+14155550101", "")
    assert uri.params == {"phone-context": "example.com"}


@pytest.mark.parametrize("text", ["mailto:a@b.example", "http://example.com/", "im:alice@x"])
def test_unsupported_scheme_is_416(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 416


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:user@",
        "sip:user@host:99999",
        "sip:user@host:0",
        "sip:user@host:5060:5060",
        "sip:user@[2001:db8::1",
        "sip:user@[not:an:ipv6:zz]",
        "sip:us er@host",
        "sip:a%zz@host",
        "sip:a@host;=x",
        "sip:a@host?novalue",
        "tel:call-me-maybe!",
        "no-scheme-here",
        "1sip:a@b",
    ],
)
def test_malformed_is_400(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


def test_equal_rfc3261_examples() -> None:
    # RFC 3261 §19.1.4 equivalent pairs
    assert uri_equal("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp")
    assert uri_equal("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5")
    assert uri_equal("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5")
    assert uri_equal(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    )
    assert uri_equal("sip:alice@[2001:db8::1]", "sip:alice@[2001:0db8:0:0::1]")


def test_not_equal_rfc3261_examples() -> None:
    assert not uri_equal(
        "SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"
    )
    assert not uri_equal("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060")
    assert not uri_equal("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp")
    assert not uri_equal("sip:bob@biloxi.com", "sips:bob@biloxi.com")
    assert not uri_equal("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off")
    assert not uri_equal("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting")


def test_tel_equality_ignores_visual_separators() -> None:
    assert uri_equal("tel:+1-415-555-0101", "tel:+14155550101")
    assert not uri_equal("tel:+14155550101", "tel:+14155550102")


def test_formatting_escapes_reserved_characters() -> None:
    uri = SipUri("sip", "a@b c", None, "example.com", None, {"x": "a b"}, {})
    assert str(uri) == "sip:a%40b%20c@example.com;x=a%20b"
    assert parse_uri(str(uri)) == uri
