"""GeoContact: the tracking number nearest a website visitor (pure).

The shell turns a visitor's IP into a `GeoPoint` (geoip2, opened by the
daemon) and reads `data/area_codes.csv`; this module gets both as values:
`parse_area_codes(text)` takes the file's *text*, never a path.

`nearest_number(numbers, visitor, centroids)`:
1. no visitor location -> the first number in position order;
2. prefer numbers in the visitor's country (ISO region code, any case);
   a visitor in a NANP country with no number of its own may get another
   NANP number (a Windsor, ON visitor gets the Detroit number); otherwise,
   with no number in its country, position order;
3. among the candidates, the one whose area-code centroid is nearest the
   visitor (haversine) wins; numbers without a known centroid come after
   those with one; ties (and visitors without coordinates) go by position,
   then E.164.

Decisions (the spec is silent):
- A centroid applies to a number only when both have the same country, so a
  foreign area code that happens to look like an NPA never gets a NANP
  centroid.
- `parse_area_codes` is strict (header, 3-digit NPA starting 2-9, lat/lon in
  range, 2-letter country, no duplicates) and raises `InputError` naming the
  line: the file ships with pbx and a bad line is a bug to report, not skip.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pbx.errors import InputError

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
NANP_COUNTRIES = frozenset({"US", "CA", "PR", "VI", "GU", "MP", "AS"})
HEADER = ["npa", "lat", "lon", "region", "country", "city"]
MAX_ROWS = 2000  # NANP has 800 NPAs at most
_NPA = re.compile(r"^[2-9][0-9]{2}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class GeoPoint:
    """Where a visitor is: coordinates (None when unknown) and ISO country code."""

    lat: float | None
    lon: float | None
    country: str | None


@dataclass(frozen=True)
class NumberGeo:
    """A tracking number as GeoContact sees it."""

    e164: str
    country: str | None  # ISO region code, e.g. "US"
    area_code: str | None  # the NPA in NANP
    position: int = 0


@dataclass(frozen=True)
class Centroid:
    """Approximate location of an area code (its principal city)."""

    npa: str
    lat: float
    lon: float
    region: str
    country: str
    city: str


AreaCodeCentroids = Mapping[str, Centroid]


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _row(line: int, fields: list[str]) -> Centroid:
    if len(fields) != len(HEADER):
        raise InputError(f"area codes line {line}: expected {len(HEADER)} fields")
    npa, lat_text, lon_text, region, country, city = (f.strip() for f in fields)
    try:
        lat, lon = float(lat_text), float(lon_text)
    except ValueError:
        raise InputError(f"area codes line {line}: lat/lon must be numbers") from None
    if not _NPA.match(npa) or not _COUNTRY.match(country) or not region or not city:
        raise InputError(f"area codes line {line}: bad npa, region, country or city")
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise InputError(f"area codes line {line}: lat/lon out of range")
    return Centroid(npa, lat, lon, region, country, city)


def parse_area_codes(text: str) -> dict[str, Centroid]:
    """Parse the text of `data/area_codes.csv` into NPA -> Centroid."""
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or [c.strip().lower() for c in rows[0]] != HEADER:
        raise InputError(f"area codes: the first line must be {','.join(HEADER)}")
    if len(rows) > MAX_ROWS:
        raise InputError("area codes: too many lines")
    centroids: dict[str, Centroid] = {}
    for line, fields in enumerate(rows[1:], start=2):
        if not fields or fields[0].startswith("#"):
            continue
        centroid = _row(line, fields)
        if centroid.npa in centroids:
            raise InputError(f"area codes line {line}: duplicate npa {centroid.npa}")
        centroids[centroid.npa] = centroid
    return centroids


def _country(code: str | None) -> str | None:
    return code.upper() if code else None


def _candidates(numbers: Sequence[NumberGeo], country: str | None) -> list[NumberGeo]:
    same = [n for n in numbers if _country(n.country) == country]
    if same or country not in NANP_COUNTRIES:
        return same
    return [n for n in numbers if _country(n.country) in NANP_COUNTRIES]


def _distance(number: NumberGeo, lat: float, lon: float, centroids: AreaCodeCentroids) -> float:
    centroid = centroids.get(number.area_code or "")
    if centroid is None or centroid.country != _country(number.country):
        return math.inf
    return haversine_km(lat, lon, centroid.lat, centroid.lon)


def nearest_number(
    numbers: Sequence[NumberGeo],
    visitor: GeoPoint | None,
    centroids: AreaCodeCentroids | None = None,
) -> NumberGeo | None:
    """The number to show this visitor; None only when `numbers` is empty."""
    ordered = sorted(numbers, key=lambda n: (n.position, n.e164))
    if not ordered:
        return None
    if visitor is None:
        return ordered[0]
    candidates = _candidates(ordered, _country(visitor.country))
    if not candidates:
        return ordered[0]
    lat, lon = visitor.lat, visitor.lon
    if lat is None or lon is None or not centroids:
        return candidates[0]
    known = centroids
    return min(candidates, key=lambda n: _distance(n, lat, lon, known))  # stable: position ties
