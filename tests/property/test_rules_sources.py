"""Properties of onsite source matching."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.sources import Source, attribute_visit, match_source, source_matches

WORDS = ["google", "bing", "facebook", "gclid", "craigslist", "^$", "email", "(bad"]
sources = st.lists(
    st.builds(
        Source,
        name=st.sampled_from(["a", "b", "c", "d", "e"]),
        onsite=st.booleans(),
        referrer=st.none() | st.sampled_from(WORDS),
        landing=st.none() | st.sampled_from(WORDS),
        position=st.integers(0, 5),
        last_touch=st.booleans(),
        enabled=st.booleans(),
    ),
    max_size=8,
)
urls = (
    st.none()
    | st.sampled_from(
        ["", "https://www.google.com/", "https://m.facebook.com/x", "https://x.craigslist.org/"]
    )
    | st.builds(lambda w: f"https://example.com/?q={w}", st.sampled_from(WORDS))
)


@given(sources, urls, urls)
def test_match_respects_position_order(
    srcs: list[Source], referrer: str | None, landing: str | None
) -> None:
    chosen = match_source(srcs, referrer, landing)
    matching = [s for s in srcs if source_matches(s, referrer, landing)]
    if chosen is None:
        assert matching == []
    else:
        assert chosen.onsite
        assert chosen.enabled
        assert (chosen.position, chosen.name) == min((s.position, s.name) for s in matching)


@given(sources, sources.map(lambda s: s[0] if s else None), urls, urls)
def test_attribution_is_previous_matched_or_default(
    srcs: list[Source], previous: Source | None, referrer: str | None, landing: str | None
) -> None:
    default = Source("default")
    result = attribute_visit(srcs, default, previous, referrer, landing)
    matched = match_source(srcs, referrer, landing)
    if previous is None:
        assert result == (matched or default)
    else:
        assert result in (previous, matched)
        assert result == previous or (matched is not None and matched.last_touch)
