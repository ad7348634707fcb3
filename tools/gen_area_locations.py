"""Write pbx/call/area_locations.py: area-code prefix -> place name, from phonenumbers' geocoder.

Run after upgrading phonenumbers: `python tools/gen_area_locations.py`.
The daemon looks callers' locations up in this table at intake
(`pbx.call.locations`), because importing the geocoder costs ~99 MB and
0.3 s (DESIGN.md). Only prefixes of up to `MAX_DIGITS` digits are kept
(country code + area code: `1415` California, `4420` London), so the
table is small; the place is the area code's, coarser than `describe`'s.
"""

from __future__ import annotations

import json
from pathlib import Path

from phonenumbers import __version__
from phonenumbers.geodata import GEOCODE_DATA

MAX_DIGITS = 5
OUT = Path(__file__).resolve().parents[1] / "pbx" / "call" / "area_locations.py"


def main() -> None:
    table = {
        prefix: names["en"]
        for prefix, names in sorted(GEOCODE_DATA.items())
        if len(prefix) <= MAX_DIGITS and names.get("en")
    }
    lines = [
        "# ruff: noqa: E501  - generated data: one place name per line, however long",
        f'"""Area-code prefix -> place (pure data, generated from phonenumbers {__version__}).',
        "",
        "Written by tools/gen_area_locations.py; do not edit. Keys are E.164 digits",
        f"without the +, at most {MAX_DIGITS}; read through `pbx.call.locations`.",
        '"""',
        "",
        f"MAX_DIGITS = {MAX_DIGITS}",
        "AREA_LOCATIONS: dict[str, str] = {",
        *(f"    {json.dumps(p)}: {json.dumps(n, ensure_ascii=False)}," for p, n in table.items()),
        "}",
        "",
    ]
    OUT.write_text("\n".join(lines), encoding="utf-8")
    print(f"{OUT}: {len(table)} prefixes")


if __name__ == "__main__":
    main()
