"""Trunk admission by source address, and the dialed number."""

from __future__ import annotations

import pytest

from pbx.errors import InputError
from pbx.rules.admission import (
    TrunkAcl,
    dialed_number,
    parse_address,
    parse_cidr,
    trunk_for_source,
)

WIDE = TrunkAcl("wide", ("10.0.0.0/8", "2001:db8::/32"))
NARROW = TrunkAcl("narrow", ("10.1.2.3/32",))
BY_HOST = TrunkAcl("by-host", (), host="198.51.100.7")
V6 = TrunkAcl("v6", ("2001:db8:1::/48",))
TRUNKS = [WIDE, NARROW, BY_HOST, V6]


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("10.9.9.9", "wide"),
        ("10.1.2.3", "narrow"),
        ("10.1.2.4", "wide"),
        ("198.51.100.7", "by-host"),
        ("198.51.100.8", None),
        ("192.0.2.1", None),
        ("2001:db8::1", "wide"),
        ("2001:db8:1::5", "v6"),
        ("[2001:db8:1::5]", "v6"),
        ("fe80::1%eth0", None),
        ("::ffff:10.1.2.3", "narrow"),
        ("2001:db9::1", None),
        ("not-an-ip", None),
        ("", None),
    ],
)
def test_trunk_for_source(host: str, expected: str | None) -> None:
    trunk = trunk_for_source(TRUNKS, host)
    assert (trunk.name if trunk else None) == expected


def test_tie_goes_to_earlier_trunk_and_bad_cidr_is_ignored() -> None:
    a = TrunkAcl("a", ("garbage", "192.0.2.0/24"))
    b = TrunkAcl("b", ("192.0.2.0/24",))
    assert trunk_for_source([a, b], "192.0.2.9") == a
    assert trunk_for_source([b, a], "192.0.2.9") == b
    assert trunk_for_source([], "192.0.2.9") is None


def test_hostname_host_is_not_resolved() -> None:
    assert trunk_for_source([TrunkAcl("t", (), host="sip.example.com")], "192.0.2.1") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.0/24", "192.0.2.0/24"),
        ("192.0.2.7/24", "192.0.2.0/24"),
        (" 192.0.2.7 ", "192.0.2.7/32"),
        ("2001:DB8::/32", "2001:db8::/32"),
    ],
)
def test_parse_cidr(text: str, expected: str) -> None:
    assert parse_cidr(text) == expected


@pytest.mark.parametrize("text", ["", "192.0.2.0/33", "example.com", "10.0.0.0/8/8"])
def test_parse_cidr_rejects(text: str) -> None:
    with pytest.raises(InputError, match="invalid CIDR"):
        parse_cidr(text)


def test_parse_address_maps_ipv4_in_ipv6() -> None:
    assert str(parse_address("::ffff:192.0.2.1")) == "192.0.2.1"


@pytest.mark.parametrize(
    ("ruri", "to", "expected"),
    [
        ("+14155550101", "+12125550123", "+14155550101"),
        (None, "+12125550123", "+12125550123"),
        ("", "12125550123", "12125550123"),
        ("alice", "+12125550123", "+12125550123"),
        ("+1-415-555-0101", None, "+14155550101"),
        ("+1 (415) 555.0101", None, "+14155550101"),
        ("tel:+1-415-555-0101", None, "+14155550101"),
        ("TEL:+1-415-555-0101;phone-context=example.com", None, "+14155550101"),
        ("+14155550101;npdi;rn=+14155550199", None, "+14155550101"),
        ("sip:+14155550101;npdi@trunk.example.com;user=phone", None, "+14155550101"),
        ("sips:4155550101@192.0.2.1", None, "4155550101"),
        ("%2B14155550101", None, "+14155550101"),
        ("*67", None, None),
        ("1+415", None, None),
        ("+", None, None),
        ("1" * 21, None, None),
        ("sip:example.com", None, None),
        (None, None, None),
    ],
)
def test_dialed_number(ruri: str | None, to: str | None, expected: str | None) -> None:
    assert dialed_number(ruri, to) == expected


def test_explicit_allow_list_excludes_the_trunk_host() -> None:
    trunk = TrunkAcl("t", ("192.0.2.0/24",), host="198.51.100.7")
    assert trunk_for_source([trunk], "198.51.100.7") is None
    assert trunk_for_source([trunk], "192.0.2.9") == trunk
