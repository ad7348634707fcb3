"""Whisper text templates: `--whisper-text "Call from {source} on {number}"` (pure).

An admin's template is checked once when it is stored (`check_template`) and
rendered per call (`render`) before `pbx.audio.tts` speaks it. Decisions:
- Only the names in `FIELDS` may appear, bare: no format specs, conversions,
  attribute or index access (str.format on admin text could reach object
  attributes); `{{` and `}}` are literal braces. Rendering substitutes the
  pieces itself, never calling str.format.
- Phone numbers are spoken digit by digit in groups ("4 1 5, 5 5 5, 0 1 0
  1"): espeak-ng would otherwise read "14155550101" as one huge number.
  North American numbers drop the country code, as people say them.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

from pbx.errors import InputError

FIELDS = ("source", "number", "caller", "tag")
MAX_TEMPLATE = 300
_FORMATTER = string.Formatter()


def _pieces(template: str) -> list[tuple[str, str | None]]:
    """(literal text, field name or None) pairs; InputError for anything but bare FIELDS."""
    if len(template) > MAX_TEMPLATE:
        raise InputError(f"whisper text is {len(template)} characters; the limit is {MAX_TEMPLATE}")
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise InputError(f"bad whisper text {template!r}: {exc}") from None
    pieces: list[tuple[str, str | None]] = []
    for literal, name, spec, conversion in parsed:
        if name is not None and (name not in FIELDS or spec or conversion):
            allowed = ", ".join("{" + f + "}" for f in FIELDS)
            raise InputError(f"whisper text field {name!r} is not one of {allowed}")
        pieces.append((literal, name))
    return pieces


def check_template(template: str) -> None:
    """InputError (one line) unless `template` is a usable whisper text."""
    _pieces(template)


def render(template: str, values: Mapping[str, str]) -> str:
    """`template` with each field replaced by `values[field]` ("" when missing)."""
    spoken = {name: _speakable(name, values.get(name, "")) for name in FIELDS}
    return "".join(literal + (spoken[name] if name else "") for literal, name in _pieces(template))


def _speakable(name: str, value: str) -> str:
    return speakable_number(value) if name in ("number", "caller") else value


def speakable_number(number: str) -> str:
    """A phone number as espeak-ng should say it: digits in groups, commas between groups."""
    digits = [c for c in number if c.isascii() and c.isdigit()]
    if not digits:
        return number
    international = number.lstrip().startswith("+")
    nanp = (len(digits) == 11 and digits[0] == "1") or (len(digits) == 10 and not international)
    if nanp:
        digits = digits[-10:]  # North America: said without the country code, 3-3-4
        groups = [digits[:3], digits[3:6], digits[6:]]
    else:
        groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return ", ".join(" ".join(group) for group in groups)
