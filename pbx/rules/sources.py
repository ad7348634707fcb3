"""Source attribution: onsite matching by referrer/landing regex, first/last touch, UTM (pure).

Onsite sources are tried in ascending `position` (ties by name); the first
one whose referrer regex matches the referring URL, or whose landing regex
matches the landing URL (query string included, so `gclid=` and `utm_*`
rules work), takes the visit. Offsite sources (a static number in print, on
radio...) never match a visit: their number alone attributes the call.

Decisions (the spec is silent):
- Regexes are searched (`re.search`), case-insensitively. A missing
  referrer or landing URL is matched as the empty string, so `^$` on the
  referrer is a rule for direct traffic. A source with neither regex never
  matches a visit (it is still usable offsite or as the default).
- Disabled sources never match. A stored regex that no longer compiles
  (it was checked by `compile_checked` on input) is skipped, never raised:
  visit input must not break attribution.
- URLs longer than `MAX_URL_CHARS` are cut to that length before matching,
  which bounds the regex work per visit.
- First touch (the default): a returning visitor keeps the source it first
  had. Last touch: a visit matching a source marked `last_touch` takes the
  visitor over, whatever it had before. A returning visitor whose visit
  matches nothing keeps its source.
- `parse_utm` returns only the keys present, first value of each, values cut
  to `MAX_PARAM_CHARS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from pbx.errors import InputError

MAX_URL_CHARS = 2048  # the de-facto browser/CDN limit; longer URLs are cut
MAX_REGEX_CHARS = 512  # an admin's rule, not a program
MAX_PARAM_CHARS = 256
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "gclid")


@dataclass(frozen=True)
class Source:
    """What attribution needs of a source (the controller adapts store rows to this)."""

    name: str
    onsite: bool = False
    referrer: str | None = None
    landing: str | None = None
    position: int = 0
    last_touch: bool = False
    tag: str | None = None
    enabled: bool = True


def compile_checked(regex: str) -> re.Pattern[str]:
    """Compile an admin's regex (case-insensitive) or raise `InputError` with one line."""
    if len(regex) > MAX_REGEX_CHARS:
        raise InputError(f"invalid regex: longer than {MAX_REGEX_CHARS} characters")
    try:
        return re.compile(regex, re.IGNORECASE)
    except re.error as exc:
        raise InputError(f"invalid regex {regex!r}: {exc}") from None


@lru_cache(maxsize=1024)
def _pattern(regex: str) -> re.Pattern[str] | None:
    try:
        return compile_checked(regex)
    except InputError:
        return None


def _searches(regex: str | None, text: str) -> bool:
    if regex is None:
        return False
    pattern = _pattern(regex)
    return pattern is not None and pattern.search(text[:MAX_URL_CHARS]) is not None


def source_matches(source: Source, referrer: str | None, landing_url: str | None) -> bool:
    """Does this enabled onsite source claim a visit with this referrer / landing URL?"""
    if not (source.onsite and source.enabled):
        return False
    by_referrer = _searches(source.referrer, referrer or "")
    return by_referrer or _searches(source.landing, landing_url or "")


def match_source(
    sources: Sequence[Source], referrer: str | None, landing_url: str | None
) -> Source | None:
    """The first onsite source, by (position, name), that claims the visit, or None."""
    for source in sorted(sources, key=lambda s: (s.position, s.name)):
        if source_matches(source, referrer, landing_url):
            return source
    return None


def attribute_visit(
    sources: Sequence[Source],
    default_source: Source,
    previous: Source | None,
    referrer: str | None,
    landing_url: str | None,
) -> Source:
    """The source a visit is attributed to, applying first or last touch.

    `previous` is the returning visitor's source (None for a new visitor);
    `default_source` takes visits nothing matches (e.g. "Direct").
    """
    matched = match_source(sources, referrer, landing_url)
    if previous is None:
        return matched or default_source
    if matched is not None and matched.last_touch:
        return matched
    return previous


def parse_utm(landing_url: str | None) -> dict[str, str]:
    """UTM parameters and gclid from a landing URL's query string (present keys only)."""
    if not landing_url:
        return {}
    try:
        query = urlsplit(landing_url[:MAX_URL_CHARS]).query
    except ValueError:  # e.g. a malformed IPv6 host
        return {}
    values = parse_qs(query, keep_blank_values=False)
    return {key: values[key][0][:MAX_PARAM_CHARS] for key in UTM_KEYS if key in values}
