"""GeoContact: area-code centroids, nearest number, with the GeoIP2 test database."""

from __future__ import annotations

import os
from pathlib import Path

import geoip2.database
import pytest

from pbx.errors import InputError
from pbx.rules.geo import (
    Centroid,
    GeoPoint,
    NumberGeo,
    haversine_km,
    nearest_number,
    parse_area_codes,
)

REPO = Path(__file__).resolve().parents[2]
CSV = REPO / "data" / "area_codes.csv"
GEOIP_CITY = REPO.parent / "shared" / "data" / "GeoIP2-City-Test.mmdb"
CENTROIDS = parse_area_codes(CSV.read_text(encoding="utf-8"))

SAN_FRANCISCO = GeoPoint(37.7749, -122.4194, "US")
NEW_YORK = GeoPoint(40.7128, -74.0060, "US")
SEATTLE_NUMBER = NumberGeo("+12065550101", "US", "206", position=1)
TACOMA_NUMBER = NumberGeo("+12535550101", "US", "253", position=2)
SF_NUMBER = NumberGeo("+14155550101", "US", "415", position=3)
NYC_NUMBER = NumberGeo("+12125550123", "US", "212", position=4)
SAN_DIEGO_NUMBER = NumberGeo("+16195550101", "US", "619", position=5)
DETROIT_NUMBER = NumberGeo("+13135550101", "US", "313", position=6)
LONDON_NUMBER = NumberGeo("+442079460123", "GB", "20", position=7)
TOKYO_NUMBER = NumberGeo("+81355550123", "JP", "3", position=8)
US_NUMBERS = [
    SEATTLE_NUMBER,
    TACOMA_NUMBER,
    SF_NUMBER,
    NYC_NUMBER,
    SAN_DIEGO_NUMBER,
    DETROIT_NUMBER,
]
ALL_NUMBERS = [*US_NUMBERS, LONDON_NUMBER, TOKYO_NUMBER]

# fmt: off
US_STATES = {
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC",
}
PROVINCES = {"AB", "BC", "MB", "NB", "NL", "NS", "ON", "QC", "SK", "YT"}
# fmt: on


# ------------------------------------------------------------ the shipped CSV


def test_csv_covers_north_america() -> None:
    assert len(CENTROIDS) >= 250
    us = {c.region for c in CENTROIDS.values() if c.country == "US"}
    ca = {c.region for c in CENTROIDS.values() if c.country == "CA"}
    assert us == US_STATES
    assert ca == PROVINCES
    assert CENTROIDS["212"].city.startswith("New York")


def test_csv_415_is_nearer_san_francisco_than_212() -> None:
    sf, ny = CENTROIDS["415"], CENTROIDS["212"]
    here = (SAN_FRANCISCO.lat, SAN_FRANCISCO.lon)
    assert haversine_km(*here, sf.lat, sf.lon) < 20
    assert haversine_km(*here, sf.lat, sf.lon) < haversine_km(*here, ny.lat, ny.lon)


def test_csv_overlays_share_their_parent_centroid() -> None:
    for overlay, parent in [("628", "415"), ("646", "212"), ("647", "416"), ("438", "514")]:
        assert (CENTROIDS[overlay].lat, CENTROIDS[overlay].lon) == (
            CENTROIDS[parent].lat,
            CENTROIDS[parent].lon,
        )


def test_csv_points_lie_in_north_america() -> None:
    for c in CENTROIDS.values():
        if c.country in ("US", "CA"):
            assert 18 < c.lat < 72, c
            assert -170 < c.lon < -52, c


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "first line"),
        ("npa,lat,lon\n", "first line"),
        ("npa,lat,lon,region,country,city\n415,x,1,CA,US,SF\n", "line 2: lat/lon"),
        ("npa,lat,lon,region,country,city\n115,1,1,CA,US,SF\n", "line 2: bad npa"),
        ("npa,lat,lon,region,country,city\n415,1,1,CA,USA,SF\n", "bad npa, region"),
        ("npa,lat,lon,region,country,city\n415,91,1,CA,US,SF\n", "out of range"),
        ("npa,lat,lon,region,country,city\n415,1,1,CA,US\n", "expected 6 fields"),
        ("npa,lat,lon,region,country,city\n415,1,1,CA,US,SF\n415,1,1,CA,US,SF\n", "duplicate"),
    ],
)
def test_parse_area_codes_rejects(text: str, fragment: str) -> None:
    with pytest.raises(InputError, match=fragment):
        parse_area_codes(text)


def test_parse_area_codes_minimal() -> None:
    parsed = parse_area_codes("npa,lat,lon,region,country,city\n415,37.77,-122.42,CA,US,SF\n")
    assert parsed == {"415": Centroid("415", 37.77, -122.42, "CA", "US", "SF")}


def test_haversine_known_distance() -> None:
    km = haversine_km(37.7749, -122.4194, 40.7128, -74.0060)  # SF - NYC, about 4,130 km
    assert 4100 < km < 4160
    assert haversine_km(10, 20, 10, 20) == 0


# ----------------------------------------------------------- nearest_number


def test_no_numbers_gives_none() -> None:
    assert nearest_number([], SAN_FRANCISCO, CENTROIDS) is None


def test_no_visitor_gives_position_order() -> None:
    assert nearest_number(list(reversed(ALL_NUMBERS)), None, CENTROIDS) == SEATTLE_NUMBER


def test_nearest_area_code_wins_in_the_us() -> None:
    assert nearest_number(ALL_NUMBERS, SAN_FRANCISCO, CENTROIDS) == SF_NUMBER
    assert nearest_number(ALL_NUMBERS, NEW_YORK, CENTROIDS) == NYC_NUMBER


def test_visitor_country_preferred_abroad() -> None:
    paris = GeoPoint(48.86, 2.35, "FR")
    london = GeoPoint(51.51, -0.13, "gb")
    assert nearest_number(ALL_NUMBERS, london, CENTROIDS) == LONDON_NUMBER
    assert nearest_number(ALL_NUMBERS, paris, CENTROIDS) == SEATTLE_NUMBER  # none in FR


def test_canadian_visitor_without_canadian_number_gets_nearest_nanp() -> None:
    windsor = GeoPoint(42.30, -83.02, "CA")
    assert nearest_number(ALL_NUMBERS, windsor, CENTROIDS) == DETROIT_NUMBER


def test_visitor_without_coordinates_gets_first_in_country() -> None:
    assert nearest_number(ALL_NUMBERS, GeoPoint(None, None, "JP"), CENTROIDS) == TOKYO_NUMBER
    assert nearest_number(ALL_NUMBERS, GeoPoint(None, None, "US"), CENTROIDS) == SEATTLE_NUMBER


def test_numbers_without_centroid_rank_last_and_no_centroids_means_position() -> None:
    unknown = NumberGeo("+18005550100", "US", None, position=0)
    assert nearest_number([unknown, SF_NUMBER], NEW_YORK, CENTROIDS) == SF_NUMBER
    assert nearest_number([unknown, SF_NUMBER], NEW_YORK, None) == unknown


def test_equal_distance_goes_by_position() -> None:
    first = NumberGeo("+14155550102", "US", "415", position=1)
    second = NumberGeo("+16285550101", "US", "628", position=0)
    assert nearest_number([first, second], SAN_FRANCISCO, CENTROIDS) == second


# ------------------------------------------- with the GeoIP2 City test database


@pytest.fixture(scope="module")
def reader() -> geoip2.database.Reader:
    if not GEOIP_CITY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"missing {GEOIP_CITY}")
        pytest.skip(f"missing {GEOIP_CITY}")
    return geoip2.database.Reader(str(GEOIP_CITY))


def _locate(reader: geoip2.database.Reader, ip: str) -> GeoPoint:
    city = reader.city(ip)
    return GeoPoint(city.location.latitude, city.location.longitude, city.country.iso_code)


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("216.160.83.56", TACOMA_NUMBER),  # Milton, WA: 253 (Tacoma), not 206 (Seattle)
        ("214.78.120.5", SAN_DIEGO_NUMBER),  # San Diego, CA
        ("81.2.69.142", LONDON_NUMBER),  # London, GB
        ("89.160.20.112", SEATTLE_NUMBER),  # Linköping, SE: no Swedish number, position order
        ("2001:218::1", TOKYO_NUMBER),  # JP, country only
    ],
)
def test_geoip_visitor_gets_nearest_number(
    reader: geoip2.database.Reader, ip: str, expected: NumberGeo
) -> None:
    assert nearest_number(ALL_NUMBERS, _locate(reader, ip), CENTROIDS) == expected
