"""E.164 normalisation, validation and description of phone numbers (pure).

Built on `phonenumbers`. `normalise` turns whatever an admin or a SIP
Request-URI carries into E.164 (`+14155550101`) or raises
`InvalidNumberError`; `describe` returns a number's region, area code and
human location for provisioning time.

Decisions:
- Accepted input: `+E.164`, national forms of `default_region` (for the US:
  10 digits `NXXNXXXXXX` or 11 digits `1NXXNXXXXXX`), the international
  prefixes `00` (any region) and the region's own IDD (`011` in NANP),
  spaces and `()-./` punctuation, and a leading `tel:` (RFC 3966; its
  `;params` are ignored). Letters (vanity numbers), extensions and anything
  longer than `MAX_INPUT_CHARS` are refused: a tracking number is digits.
- A number must be *valid* per phonenumbers (right length and an assigned
  range), not merely possible; fictional NANP numbers should use
  `+1 NXX 555 01XX`.
- `area_code` is the geographic area code (the NPA in NANP); it is `None`
  for non-geographic numbers (toll-free, mobile in many countries).
  `location` is `None` when phonenumbers has no description.
- `normalise` and `region_of` remember their last `CACHE_SIZE` answers
  (an LRU, errors included): phonenumbers costs ~150-250 us per parse and
  the daemon sees the same callers and tracking numbers again and again.
- `phonenumbers.geocoder` costs ~99 MB and 0.3 s at import, so it is
  imported inside `describe` only; the daemon's hot path calls `normalise`
  alone and reads the precomputed location from the store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

from pbx.errors import InputError

CACHE_SIZE = 4096  # distinct (text, region) answers kept by normalise / region_of
MAX_INPUT_CHARS = 64  # generous: the longest E.164 number has 15 digits
_ALLOWED = re.compile(r"^\+?[0-9 ()\-./]+$")
_SEPARATORS = re.compile(r"[ ()\-./]")
_PARSE_ERRORS = {
    phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
    phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
    phonenumbers.NumberParseException.TOO_LONG: "too long",
    phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the prefix",
    phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
}


class InvalidNumberError(InputError):
    """The text is not a valid phone number; the message says why, in one line."""


@dataclass(frozen=True, slots=True)
class NumberInfo:
    """Where a number lives: ISO region ("US"), area code and a place name."""

    region: str
    area_code: str | None
    location: str | None


def _strip_tel(raw: str) -> str:
    text = raw.strip()
    if text[:4].lower() == "tel:":
        text = text[4:].split(";", 1)[0]
    return text.strip()


def _to_international(text: str) -> str:
    """Map a leading `00` international prefix to `+` (phonenumbers knows `011`)."""
    compact = _SEPARATORS.sub("", text)
    if compact.startswith("00") and not compact.startswith("000"):
        return "+" + compact[2:]
    return compact


def _parse(raw: str, default_region: str) -> phonenumbers.PhoneNumber:
    if len(raw) > MAX_INPUT_CHARS:
        raise InvalidNumberError(f"invalid phone number: longer than {MAX_INPUT_CHARS} characters")
    text = _strip_tel(raw)
    if not text:
        raise InvalidNumberError("invalid phone number: empty")
    if not _ALLOWED.match(text):
        raise InvalidNumberError(
            f"invalid phone number {raw.strip()!r}: only digits, a leading + and ()-./ are allowed"
        )
    try:
        number = phonenumbers.parse(_to_international(text), default_region.upper())
    except phonenumbers.NumberParseException as exc:
        why = _PARSE_ERRORS.get(exc.error_type, "not a phone number")
        raise InvalidNumberError(f"invalid phone number {raw.strip()!r}: {why}") from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidNumberError(
            f"invalid phone number {raw.strip()!r}: not a valid number"
            f" (default region {default_region.upper()})"
        )
    return number


def normalise(raw: str, default_region: str = "US") -> str:
    """Return `raw` as E.164 (`+14155550101`); raise `InvalidNumberError` if invalid."""
    ok, text = _normalised(raw, default_region)
    if not ok:
        raise InvalidNumberError(text)
    return text


@lru_cache(maxsize=CACHE_SIZE)
def _normalised(raw: str, default_region: str) -> tuple[bool, str]:
    """(True, E.164) or (False, the error message): a fresh exception per raise."""
    try:
        number = _parse(raw, default_region)
    except InvalidNumberError as exc:
        return False, str(exc)
    return True, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=CACHE_SIZE)
def region_of(e164: str) -> str | None:
    """The ISO region of an E.164 number (`US`), None when unknown or not a number."""
    try:
        region: str | None = phonenumbers.region_code_for_number(phonenumbers.parse(e164))
        return region
    except phonenumbers.NumberParseException:
        return None


def is_valid(raw: str, default_region: str = "US") -> bool:
    """True when `normalise(raw, default_region)` would succeed."""
    try:
        _parse(raw, default_region)
    except InvalidNumberError:
        return False
    return True


def _area_code(number: phonenumbers.PhoneNumber) -> str | None:
    length = phonenumbers.length_of_geographical_area_code(number)
    if length <= 0:
        return None
    national = phonenumbers.national_significant_number(number)
    return national[:length]


def describe(e164: str) -> NumberInfo:
    """Region, area code and location of a number (loads the geocoder: not for hot paths)."""
    from phonenumbers import geocoder  # lazy: ~99 MB, 0.3 s (see module docstring)

    number = _parse(e164, "US")
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    location = geocoder.description_for_number(number, "en") or None
    return NumberInfo(region=region, area_code=_area_code(number), location=location)


def format_national(e164: str) -> str:
    """The number as its own country writes it, e.g. `(415) 555-0101`."""
    number = _parse(e164, "US")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
