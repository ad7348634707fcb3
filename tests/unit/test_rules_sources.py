"""Onsite source matching, first/last touch, UTM parsing, regex checking."""

from __future__ import annotations

import pytest

from pbx.errors import InputError
from pbx.rules.sources import (
    Source,
    attribute_visit,
    compile_checked,
    match_source,
    parse_utm,
    source_matches,
)

DIRECT = Source("Direct", onsite=True, referrer="^$", position=100, tag="Direct")
GOOGLE_ADS = Source("Google Ads", onsite=True, landing=r"[?&]gclid=", position=1, tag="PPC")
GOOGLE_ORGANIC = Source("Google Organic", onsite=True, referrer=r"google\.", position=5)
FACEBOOK = Source("Facebook", onsite=True, referrer="facebook", position=5, last_touch=True)
NEWSLETTER = Source("Newsletter", onsite=True, landing="utm_medium=email", position=3)
RADIO = Source("Radio", onsite=False, referrer=".*", landing=".*", position=0)
OFF = Source("Paused", onsite=True, referrer="google", position=0, enabled=False)
CRAIGSLIST = Source("Craigslist", onsite=True, referrer="craigslist", position=10, tag="Craigslist")
ALL = [DIRECT, GOOGLE_ADS, GOOGLE_ORGANIC, FACEBOOK, NEWSLETTER, RADIO, OFF, CRAIGSLIST]
FALLBACK = Source("Unknown", tag="unknown")


def test_seed_example_craigslist_tags_its_calls() -> None:
    referrer = "https://sfbay.craigslist.org/sfc/hss/d/plumbing/1234567890.html"
    source = attribute_visit(ALL, FALLBACK, None, referrer, "https://example.com/")
    assert source.name == "Craigslist"
    assert source.tag == "Craigslist"


@pytest.mark.parametrize(
    ("referrer", "landing", "expected"),
    [
        ("https://www.google.com/", "https://example.com/?gclid=abc", "Google Ads"),
        ("https://www.google.com/", "https://example.com/", "Google Organic"),
        ("https://WWW.GOOGLE.CO.UK/", "https://example.com/", "Google Organic"),
        (None, "https://example.com/?utm_medium=email&utm_source=june", "Newsletter"),
        ("", "https://example.com/", "Direct"),
        (None, None, "Direct"),
        ("https://bing.com/", "https://example.com/", None),
        ("https://m.facebook.com/", "https://example.com/", "Facebook"),
    ],
)
def test_match_source(referrer: str | None, landing: str | None, expected: str | None) -> None:
    source = match_source(ALL, referrer, landing)
    assert (source.name if source else None) == expected


def test_position_ties_break_by_name() -> None:
    both = "https://www.google.com/?from=facebook"
    assert match_source([GOOGLE_ORGANIC, FACEBOOK], both, None) == FACEBOOK
    assert match_source([FACEBOOK, GOOGLE_ORGANIC], both, None) == FACEBOOK


def test_offsite_and_disabled_never_match() -> None:
    assert not source_matches(RADIO, "https://anything/", "https://example.com/")
    assert not source_matches(OFF, "https://google.com/", None)
    assert match_source([RADIO, OFF], "https://google.com/", "https://x/") is None


def test_source_without_rules_never_matches() -> None:
    assert match_source([Source("Bare", onsite=True)], "", "") is None


def test_broken_stored_regex_is_skipped() -> None:
    broken = Source("Broken", onsite=True, referrer="(unclosed", position=0)
    assert match_source([broken, GOOGLE_ORGANIC], "https://google.com/", None) == GOOGLE_ORGANIC


def test_first_touch_keeps_previous_source() -> None:
    later = attribute_visit(ALL, FALLBACK, GOOGLE_ADS, "https://www.google.com/", None)
    assert later == GOOGLE_ADS


def test_last_touch_source_takes_over() -> None:
    later = attribute_visit(ALL, FALLBACK, GOOGLE_ADS, "https://facebook.com/", None)
    assert later == FACEBOOK


def test_returning_visitor_matching_nothing_keeps_source() -> None:
    assert attribute_visit(ALL, FALLBACK, FACEBOOK, "https://bing.com/", "https://x/") == FACEBOOK


def test_new_visitor_matching_nothing_gets_default() -> None:
    assert attribute_visit(ALL, FALLBACK, None, "https://bing.com/", "https://x/") == FALLBACK


def test_parse_utm() -> None:
    url = (
        "https://example.com/landing?utm_source=google&utm_medium=cpc&utm_campaign=spring%20sale"
        "&utm_term=plumber&utm_content=ad1&gclid=EAIaIQ&other=1&utm_source=second"
    )
    assert parse_utm(url) == {
        "utm_source": "google",
        "utm_medium": "cpc",
        "utm_campaign": "spring sale",
        "utm_term": "plumber",
        "utm_content": "ad1",
        "gclid": "EAIaIQ",
    }


@pytest.mark.parametrize("url", [None, "", "https://example.com/", "http://[::1/?utm_source=x"])
def test_parse_utm_empty(url: str | None) -> None:
    assert parse_utm(url) == {}


def test_parse_utm_bounds_values() -> None:
    assert len(parse_utm("https://e.com/?gclid=" + "a" * 5000)["gclid"]) == 256


def test_compile_checked() -> None:
    assert compile_checked("Craigslist").search("https://SFBAY.CRAIGSLIST.ORG/")
    with pytest.raises(InputError, match="invalid regex '\\(unclosed'"):
        compile_checked("(unclosed")
    with pytest.raises(InputError, match="longer than"):
        compile_checked("a" * 513)
