"""pbx.admin.provisioning field parsers: properties of money, CIDR, names and hosts."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.admin.provisioning import check_name, parse_cidr, parse_host, parse_money
from pbx.errors import InputError


@given(cents=st.integers(min_value=0, max_value=100_000_000))
def test_property_money_round_trips_through_text(cents: int) -> None:
    assert parse_money(f"{cents // 100}.{cents % 100:02d}", "--cost-per-call") == cents
    if cents % 100 == 0:
        assert parse_money(str(cents // 100), "--cost-per-call") == cents


@pytest.mark.parametrize("text", ["", "-1", "1.234", "1e3", "1,50", "100000000.01", ".5", "abc"])
def test_money_rejects(text: str) -> None:
    with pytest.raises(InputError, match=r"^invalid --monthly-budget"):
        parse_money(text, "--monthly-budget")


@given(address=st.ip_addresses(), prefix=st.integers(min_value=0, max_value=128))
def test_property_cidr_is_normalised_and_idempotent(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, prefix: int
) -> None:
    prefix = min(prefix, address.max_prefixlen)
    once = parse_cidr(f"{address}/{prefix}")
    assert parse_cidr(once) == once
    assert ipaddress.ip_address(address) in ipaddress.ip_network(once)


@given(name=st.text(max_size=80))
def test_property_names_accepted_are_clean(name: str) -> None:
    try:
        check_name("source", name)
    except InputError as exc:
        assert str(exc).startswith("source name must")  # noqa: PT017
        return
    assert name == name.strip()
    assert 0 < len(name) <= 64
    assert all(ord(ch) >= 0x20 and ord(ch) != 0x7F for ch in name)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("203.0.113.10", ("203.0.113.10", None)),
        ("203.0.113.10:5080", ("203.0.113.10", 5080)),
        ("[2001:db8::1]:5062", ("2001:db8::1", 5062)),
        ("sip.example.com", ("sip.example.com", None)),
    ],
)
def test_parse_host(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_host(text) == expected
