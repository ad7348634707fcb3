"""A caller's location from the area code of their number, for the call record (pure).

`caller_location("+14155550101")` is "California": the place of the longest
prefix of the number's digits in `area_locations.AREA_LOCATIONS` (country
code + area code, generated from phonenumbers' geocoder by
tools/gen_area_locations.py). A dict lookup, so intake can afford it on
every call; the geocoder itself (~99 MB, 0.3 s at import) is for the CLI
only (`numbers.describe`, what `numbers list` shows for tracking numbers,
which can name the exchange: "San Francisco, CA").

Decision: the place is the area code's, so it is coarser than `describe`'s
for NANP numbers (state, not city); None when the number is not E.164
(anonymous, a SIP user name) or its prefix is not geographic (toll-free,
most mobiles).
"""

from __future__ import annotations

from pbx.call.area_locations import AREA_LOCATIONS, MAX_DIGITS


def caller_location(number: str) -> str | None:
    """The place of the number's area code, or None (see the module docstring)."""
    if not number.startswith("+") or not number[1:].isdigit():
        return None
    digits = number[1:]
    for length in range(min(MAX_DIGITS, len(digits)), 0, -1):
        place = AREA_LOCATIONS.get(digits[:length])
        if place is not None:
            return place
    return None
