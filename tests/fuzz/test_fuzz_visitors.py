"""Fuzz targets for the visitor API's input checks (pbx.http.visitors, pure helpers).

Properties, on arbitrary JSON values (what `json.loads` can give) and on
valid requests with one field replaced by an arbitrary value:
- `check_visit_body` returns the checked fields or raises `BadRequest`
  with a 4xx status, nothing else; what it returns has the promised types
  (landing_url an http(s) URL of at most 2048 characters, numbers E.164);
- `client_ip` on any X-Forwarded-For text gives the peer or an IP address;
- `NewVisitLimit` tracks at most MAX_TRACKED_IPS addresses.
"""

from __future__ import annotations

import ipaddress
import re

from hypothesis import given
from hypothesis import strategies as st

from pbx.http.visitors import (
    MAX_TRACKED_IPS,
    BadRequest,
    NewVisitLimit,
    check_visit_body,
    client_ip,
)
from pbx.rules.sources import MAX_URL_CHARS

from ._support import fuzz_settings

scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=12) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=30,
)
FIELDS = ("visitor_id", "landing_url", "referrer", "ga_client_id", "numbers")
VALID = {
    "visitor_id": "v-1234567890",
    "landing_url": "https://www.example.com/?gclid=abc",
    "referrer": "https://www.google.com/",
    "ga_client_id": "1234567890.1700000000",
    "numbers": ["(415) 555-0101", "+12125550123"],
}
near_valid = st.builds(
    lambda key, value, drop: {k: v for k, v in {**VALID, key: value}.items() if k != drop},
    st.sampled_from(FIELDS),
    json_values | st.sampled_from(["", "http://", "https://" + "a" * MAX_URL_CHARS, "a" * 8 + "\n",
                                   "415 555 0101", "+1", "1.2", ["+14155550101"] * 11]),
    st.none() | st.sampled_from(FIELDS),
)  # fmt: skip


def check(body: object) -> None:
    refused: BadRequest | None = None
    try:
        out = check_visit_body(body, "US")
    except BadRequest as err:
        refused = err
    if refused is not None:
        assert 400 <= refused.status < 500
        assert str(refused)
        assert "\n" not in str(refused)
        return
    url = out["landing_url"]
    assert isinstance(url, str)
    assert len(url) <= MAX_URL_CHARS
    assert url.lower().startswith(("http://", "https://"))
    assert out["referrer"] is None or isinstance(out["referrer"], str)
    assert all(re.fullmatch(r"\+[1-9]\d{6,14}", n) for n in out["numbers"])
    assert out["visitor_id"] is None or isinstance(out["visitor_id"], str)


@fuzz_settings()
@given(json_values | st.dictionaries(st.sampled_from(FIELDS), json_values))
def test_any_json_value_is_checked_or_refused_with_4xx(body: object) -> None:
    check(body)


@fuzz_settings()
@given(near_valid)
def test_valid_requests_with_one_bad_field(body: dict[str, object]) -> None:
    check(body)


@fuzz_settings()
@given(st.text(max_size=200), st.sampled_from(["127.0.0.1", "192.0.2.7", "::1", "unix"]))
def test_client_ip_on_any_forwarded_header(forwarded: str, remote: str) -> None:
    ip = client_ip(remote, forwarded, ("127.0.0.0/8", "::1/128"))
    assert ip == remote or str(ipaddress.ip_address(ip or "")) == ip


@fuzz_settings()
@given(st.lists(st.ip_addresses().map(str), max_size=50), st.floats(0, 1e6))
def test_new_visit_limit_memory_is_bounded(ips: list[str], now: float) -> None:
    limit = NewVisitLimit(limit=2, window=60.0)
    for ip in ips * 3:
        limit.allow(ip, now)
    assert len(limit.seen) <= min(MAX_TRACKED_IPS, len(set(ips)))
