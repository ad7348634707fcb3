"""pbx.rules.blocking: pattern normalisation and which block rejects a call."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.errors import InputError
from pbx.rules.blocking import (
    ANONYMOUS,
    blocked,
    is_anonymous,
    is_valid_pattern,
    matches,
    normalise_pattern,
)
from pbx.store.base import Block

TRACKED = "+14155550150"
OTHER = "+14155550151"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+12125550123", "+12125550123"),
        ("(212) 555-0123", "+12125550123"),
        ("tel:+1-212-555-0123", "+12125550123"),
        ("+1212", "+1212"),
        ("+1 212", "+1212"),
        ("+1 (212) 555", "+1212555"),
        ("+234", "+234"),
        ("anonymous", ANONYMOUS),
        ("  Anonymous ", ANONYMOUS),
    ],
)
def test_normalise_pattern(text: str, expected: str) -> None:
    assert normalise_pattern(text) == expected


def test_national_full_number_uses_the_region() -> None:
    assert normalise_pattern("020 7946 0958", "GB") == "+442079460958"


@pytest.mark.parametrize(
    "text", ["", "212", "+", "+12a", "+1234567890123456", "anon", "sip:bob@example.com", "x" * 80]
)
def test_normalise_pattern_rejects(text: str) -> None:
    with pytest.raises(InputError, match="invalid number or prefix"):
        normalise_pattern(text)


@given(digits=st.text(alphabet="0123456789", min_size=1, max_size=15))
def test_property_plus_digits_always_give_a_valid_pattern_that_matches_itself(digits: str) -> None:
    pattern = normalise_pattern("+" + digits)
    assert is_valid_pattern(pattern)
    assert normalise_pattern(pattern) == pattern  # idempotent
    if len(pattern) == len(digits) + 1:  # kept as a prefix
        assert pattern == "+" + digits
    assert matches(Block(pattern=pattern), pattern, False)


@given(text=st.text(max_size=40))
def test_property_any_text_is_a_valid_pattern_or_one_input_error(text: str) -> None:
    try:
        pattern = normalise_pattern(text)
    except InputError as exc:
        assert "\n" not in str(exc)  # noqa: PT017
        return
    assert is_valid_pattern(pattern)


def test_prefix_and_exact_match() -> None:
    assert matches(Block(pattern="+1212"), "+12125550123", False)
    assert not matches(Block(pattern="+1212"), "+14155550101", False)
    assert matches(Block(pattern="+12125550123"), "+12125550123", False)
    assert not matches(Block(pattern="+12125550123"), "+1212555012", False)


def test_anonymous_matches_only_anonymous_callers() -> None:
    anon = Block(pattern=ANONYMOUS)
    assert matches(anon, None, True)
    assert matches(anon, "+12125550123", True)  # number present but withheld (Privacy: id)
    assert not matches(anon, "+12125550123", False)
    assert not matches(anon, None, False)
    # a known number matches number patterns even when withheld; no number never does
    assert matches(Block(pattern="+1"), "+12125550123", True)
    assert not matches(Block(pattern="+1"), None, True)
    assert not matches(Block(pattern="+1"), "alice", False)


@pytest.mark.parametrize(
    ("from_user", "privacy", "caller", "expected"),
    [
        ("+12125550123", None, "+12125550123", False),
        ("12125550123", "none", "+12125550123", False),
        ("anonymous", None, "+12125550123", True),
        ("Restricted", None, "+12125550123", True),
        ("+12125550123", "id", "+12125550123", True),  # RFC 3325 §9.3
        ("+12125550123", "header; id", "+12125550123", True),  # RFC 3323 §4.2
        ("+12125550123", "critical", "+12125550123", False),
        ("alice", None, None, True),  # no usable number
        (None, None, None, True),
    ],
)
def test_is_anonymous(
    from_user: str | None, privacy: str | None, caller: str | None, expected: bool
) -> None:
    assert is_anonymous(from_user, privacy, caller) is expected


def test_scope_per_number() -> None:
    only_tracked = Block(pattern="+1212", number=TRACKED)
    assert blocked("+12125550123", False, [only_tracked], TRACKED) == only_tracked
    assert blocked("+12125550123", False, [only_tracked], OTHER) is None
    assert blocked("+12125550123", False, [only_tracked]) == only_tracked  # pre-filtered list


def test_most_specific_block_wins() -> None:
    blocks = [
        Block(pattern="+1", id=1),
        Block(pattern="+1212", id=2),
        Block(pattern="+1212", number=TRACKED, id=3),
        Block(pattern="+12125550123", id=4),
        Block(pattern=ANONYMOUS, id=5),
    ]
    assert blocked("+12125550123", False, blocks, TRACKED) == blocks[3]
    assert blocked("+12125550199", False, blocks, TRACKED) == blocks[2]
    assert blocked("+12125550199", False, blocks, OTHER) == blocks[1]
    assert blocked("+14155550101", False, blocks, OTHER) == blocks[0]
    assert blocked(None, True, blocks, OTHER) == blocks[4]
    assert blocked("+442079460958", False, blocks, OTHER) is None
    assert blocked("+12125550123", False, [], TRACKED) is None


@given(
    caller=st.from_regex(r"\+[1-9]\d{6,14}", fullmatch=True),
    patterns=st.lists(st.from_regex(r"\+\d{1,15}", fullmatch=True), max_size=8),
)
def test_property_blocked_iff_some_pattern_is_a_prefix(caller: str, patterns: list[str]) -> None:
    blocks = [Block(pattern=p, id=i) for i, p in enumerate(patterns)]
    found = blocked(caller, False, blocks, TRACKED)
    prefixes = [p for p in patterns if caller.startswith(p)]
    assert (found is not None) == bool(prefixes)
    if found is not None:
        assert len(found.pattern) == max(map(len, prefixes))
