"""Source presets: the shipped data/sources.toml is complete and valid; the loader is strict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pbx.admin.presets import KEBAB, PRESETS_PATH, load_presets, parse_presets
from pbx.errors import ConfigError
from pbx.rules.sources import Source, match_source

REQUIRED = {
    "google-ads", "google-organic", "bing-ads", "bing-organic", "yahoo-organic", "facebook-ads",
    "facebook", "instagram", "linkedin", "x-twitter", "youtube", "tiktok", "yelp", "craigslist",
    "email", "direct", "referral", "tv", "radio", "print", "billboard", "direct-mail",
}  # fmt: skip


@pytest.fixture(scope="module")
def presets() -> dict[str, object]:
    return dict(load_presets())


def test_shipped_file_has_every_required_preset(presets: dict[str, object]) -> None:
    assert PRESETS_PATH.name == "sources.toml"
    assert set(presets) >= REQUIRED


def test_every_preset_is_well_formed() -> None:
    for key, preset in load_presets().items():
        assert KEBAB.match(key), key
        assert preset.key == key
        assert preset.name, key
        assert preset.description, key
        assert preset.tag, key
        for pattern in (preset.referrer, preset.landing):
            if pattern is not None:
                re.compile(pattern)
        if preset.onsite:
            assert preset.referrer or preset.landing, key
            assert preset.position > 0, key
        else:
            assert preset.referrer is None, key
            assert preset.landing is None, key


def _first_match(referrer: str, landing: str) -> str | None:
    """Classify a visit with the real matcher over every onsite preset."""
    sources = [
        Source(p.key, onsite=p.onsite, referrer=p.referrer, landing=p.landing, position=p.position)
        for p in load_presets().values()
    ]
    found = match_source(sources, referrer, landing)
    return None if found is None else found.name


@pytest.mark.parametrize(
    ("referrer", "landing", "expected"),
    [
        ("https://www.google.com/", "https://shop.example/?gclid=abc", "google-ads"),
        ("", "https://shop.example/?utm_medium=cpc&utm_source=google", "google-ads"),
        ("https://www.google.co.uk/search", "https://shop.example/?gbraid=x", "google-ads"),
        ("https://bing.com/", "https://a.example/?utm_source=bing&utm_medium=cpc", "bing-ads"),
        ("https://www.google.com/", "https://shop.example/", "google-organic"),
        ("https://www.bing.com/search?q=x", "https://shop.example/?msclkid=1", "bing-ads"),
        ("https://www.bing.com/", "https://shop.example/", "bing-organic"),
        ("https://search.yahoo.com/", "https://shop.example/", "yahoo-organic"),
        (
            "https://l.facebook.com/",
            "https://shop.example/?utm_medium=paid&utm_source=facebook",
            "facebook-ads",
        ),
        ("https://m.facebook.com/", "https://shop.example/", "facebook"),
        ("https://l.instagram.com/", "https://shop.example/", "instagram"),
        ("https://www.linkedin.com/feed/", "https://shop.example/", "linkedin"),
        ("https://t.co/xyz", "https://shop.example/", "x-twitter"),
        ("https://www.youtube.com/watch?v=1", "https://shop.example/", "youtube"),
        ("https://www.tiktok.com/", "https://shop.example/", "tiktok"),
        ("", "https://shop.example/?utm_medium=email", "email"),
        ("https://notgoogle.example/", "https://shop.example/", "referral"),
        ("https://www.google.com.evil.example/", "https://shop.example/", "referral"),
        ("HTTPS://WWW.GOOGLE.COM/", "https://shop.example/", "google-organic"),
        ("", "https://shop.example/", "direct"),
    ],
)
def test_presets_classify_typical_visits(referrer: str, landing: str, expected: str) -> None:
    assert _first_match(referrer, landing) == expected


_GOOD = '[[preset]]\nkey = "tv"\nname = "TV"\ntype = "offsite"\ndescription = "d"\ntag = "tv"\n'


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("[[preset]", "not valid TOML"),
        ("x = 1", "no [[preset]] entries"),
        (_GOOD + "position = 0\n" + _GOOD + "position = 0\n", "duplicate key 'tv'"),
        (_GOOD.replace('"tv"\nname', '"Big_TV"\nname') + "position = 0\n", "kebab-case"),
        (_GOOD.replace("offsite", "inside") + "position = 0\n", "type must be onsite or offsite"),
        (_GOOD + "position = -1\n", "position must be 0-10000"),
        (_GOOD + 'position = "1"\n', "position must be an integer"),
        (_GOOD + "position = 0\nreferrer = 'x'\n", "is offsite but has a referrer"),
        (_GOOD.replace("offsite", "onsite") + "position = 1\n", "has no referrer or landing"),
        (
            _GOOD.replace("offsite", "onsite") + "position = 1\nlanding = '(unclosed'\n",
            "landing: invalid regex",
        ),
        (_GOOD + "position = 0\ncolour = 'red'\n", "unknown field colour"),
        (_GOOD.replace('tag = "tv"', 'tag = ""') + "position = 0\n", "tag must be a non-empty"),
    ],
)
def test_parser_rejects_defects(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_presets(text)
    assert fragment in str(info.value)
    assert str(info.value).startswith("presets: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_presets(tmp_path / "none.toml")
