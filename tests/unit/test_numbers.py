"""pbx.numbers: E.164 normalisation table, errors, describe, and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pbx.errors import InputError
from pbx.numbers import (
    InvalidNumberError,
    NumberInfo,
    describe,
    format_national,
    is_valid,
    normalise,
)


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+14155550101", "US", "+14155550101"),
        ("14155550101", "US", "+14155550101"),
        ("4155550101", "US", "+14155550101"),
        ("(415) 555-0101", "US", "+14155550101"),
        ("415.555.0101", "US", "+14155550101"),
        ("1-415-555-0101", "US", "+14155550101"),
        ("  +1 415 555 0101  ", "US", "+14155550101"),
        ("tel:+1-415-555-0101", "US", "+14155550101"),
        ("TEL:+14155550101;phone-context=example.com", "US", "+14155550101"),
        ("011 44 20 7946 0958", "US", "+442079460958"),
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("00442079460958", "GB", "+442079460958"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+442079460958", "US", "+442079460958"),
        ("2125550123", "us", "+12125550123"),
        ("+1 800 555 0199", "US", "+18005550199"),
    ],
)
def test_normalise_table(raw: str, region: str, expected: str) -> None:
    assert normalise(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("tel:", "empty"),
        ("555-123-4567", "not a valid number"),  # 555 is not an area code
        ("12345", "not a valid number"),
        ("+999 123 456", "unknown country code"),
        ("1-800-FLOWERS", "only digits"),
        ("+1415555010a", "only digits"),
        ("4155550101 x12", "only digits"),
        ("1" * 70, "longer than"),
        ("+1 415 555 01011234", "not a valid number"),
    ],
)
def test_normalise_rejects_with_one_clear_line(raw: str, fragment: str) -> None:
    with pytest.raises(InvalidNumberError) as info:
        normalise(raw)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message
    assert message.startswith("invalid phone number")
    assert isinstance(info.value, InputError)
    assert not is_valid(raw)


def test_describe_us_number() -> None:
    info = describe("+14155550101")
    assert info == NumberInfo(region="US", area_code="415", location="San Francisco, CA")


def test_describe_uk_and_toll_free() -> None:
    assert describe("+442079460958") == NumberInfo("GB", "20", "London")
    toll_free = describe("+18005550199")
    assert toll_free.region == "US"
    assert toll_free.area_code is None


def test_describe_rejects_invalid() -> None:
    with pytest.raises(InvalidNumberError):
        describe("+15555550101")


def test_format_national() -> None:
    assert format_national("+14155550101") == "(415) 555-0101"
    assert format_national("+442079460958") == "020 7946 0958"


# NANP: NXX-NXX-XXXX with N in 2-9; 555-01XX is reserved for fiction but valid.
_AREA_CODES = st.sampled_from(["212", "213", "312", "415", "503", "617", "646", "702", "917"])
_FICTIONAL_LINES = st.integers(min_value=100, max_value=199).map(lambda n: f"555{n:04d}")


@given(area=_AREA_CODES, line=_FICTIONAL_LINES, style=st.integers(min_value=0, max_value=4))
def test_property_every_spelling_normalises_the_same(area: str, line: str, style: int) -> None:
    e164 = f"+1{area}{line}"
    spellings = [
        e164,
        f"1{area}{line}",
        f"{area}{line}",
        f"({area}) {line[:3]}-{line[3:]}",
        f"tel:+1-{area}-{line[:3]}-{line[3:]}",
    ]
    assert normalise(spellings[style]) == e164


@given(raw=st.text(max_size=30))
def test_property_normalise_is_idempotent_or_rejects(raw: str) -> None:
    try:
        once = normalise(raw)
    except InvalidNumberError as exc:
        message = str(exc)
        assert "\n" not in message, message
        return
    assert once.startswith("+")
    assert normalise(once) == once
    assert normalise(once, "GB") == once


@given(digits=st.text(alphabet="0123456789+() -.", min_size=1, max_size=20))
def test_property_digit_soup_is_idempotent_or_rejects(digits: str) -> None:
    try:
        once = normalise(digits)
    except InvalidNumberError:
        return
    assert normalise(once) == once


def test_normalise_answers_and_errors_repeat_from_its_cache() -> None:
    from pbx.numbers import InvalidNumberError, normalise, region_of

    assert normalise("(415) 555-0101") == normalise("(415) 555-0101") == "+14155550101"
    messages = []
    for _ in range(2):
        with pytest.raises(InvalidNumberError) as info:
            normalise("12", "US")
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert "12" in messages[0]
    assert region_of("+14155550101") == "US"
    assert region_of("+442071838750") == "GB"
    assert region_of("not a number") is None
