"""Properties of trunk admission and dialed-number extraction."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.admission import TrunkAcl, dialed_number, trunk_for_source

v4_networks = st.builds(
    lambda addr, prefix: str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False)),
    st.ip_addresses(v=4),
    st.integers(0, 32),
)
trunk_lists = st.lists(st.lists(v4_networks, max_size=3).map(tuple), min_size=0, max_size=4).map(
    lambda allows: [TrunkAcl(f"t{i}", allow) for i, allow in enumerate(allows)]
)


def _contains(trunk: TrunkAcl, address: ipaddress.IPv4Address) -> list[int]:
    return [
        ipaddress.ip_network(c).prefixlen for c in trunk.allow if address in ipaddress.ip_network(c)
    ]


@given(trunk_lists, st.ip_addresses(v=4))
def test_admission_is_longest_prefix_first_trunk(
    trunks: list[TrunkAcl], address: ipaddress.IPv4Address
) -> None:
    chosen = trunk_for_source(trunks, str(address))
    best = max((p for t in trunks for p in _contains(t, address)), default=None)
    if best is None:
        assert chosen is None
    else:
        expected = next(t for t in trunks if best in _contains(t, address))
        assert chosen == expected


@given(st.text(max_size=60), st.text(max_size=60))
def test_dialed_number_is_digits_with_optional_plus(ruri: str, to: str) -> None:
    number = dialed_number(ruri, to)
    if number is not None:
        assert number.lstrip("+").isdigit()
        assert number.isascii()
        assert "+" not in number[1:]
