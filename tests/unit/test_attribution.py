"""pbx.attribution.visits: visit source, pool/GeoContact number, call attribution."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from pathlib import Path

import geoip2.database
import pytest

from pbx.attribution.visits import (
    VisitInput,
    attribute,
    decide,
    exhausted_pick,
    new_visit,
    pool_candidates,
)
from pbx.records import CallRecord
from pbx.rules.geo import AreaCodeCentroids, GeoPoint, parse_area_codes
from pbx.rules.pools import Pick
from pbx.store.base import Source, TrackingNumber, Visit

REPO = Path(__file__).resolve().parents[2]
CENTROIDS = parse_area_codes((REPO / "data" / "area_codes.csv").read_text(encoding="utf-8"))
GEOIP_CITY = REPO.parent / "shared" / "data" / "GeoIP2-City-Test.mmdb"
T0 = "2026-03-05T10:00:00.000000Z"
T1 = "2026-03-05T10:10:00.000000Z"
T2 = "2026-03-05T10:30:00.000000Z"

CRAIGSLIST = Source(name="Craigslist", onsite=True, referrer="craigslist", position=10, tag="CL")
ADS = Source(name="Google Ads", onsite=True, landing=r"[?&]gclid=", position=1, tag="PPC")
FB = Source(name="Facebook", onsite=True, referrer="facebook", position=5, last_touch=True)
DIRECT = Source(name="Direct", onsite=True, position=100)
ALL = [CRAIGSLIST, ADS, FB, DIRECT]


def _in(referrer: str | None, landing: str = "https://example.com/", **kw: object) -> VisitInput:
    return VisitInput("vis-1", landing, referrer, **kw)  # type: ignore[arg-type]


def _visit(source: str | None, expires_at: str, **kw: object) -> Visit:
    return Visit(
        id="old", visitor_id="vis-1", started_at=T0, last_seen_at=T0, expires_at=expires_at,
        source=source, number="+14155550101", **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_seed_example_new_visitor_from_craigslist() -> None:
    d = decide(ALL, "Direct", None, _in("https://sfbay.craigslist.org/x"), T0)
    assert d.source == CRAIGSLIST
    assert d.continue_visit is None
    assert d.expire_visit is None


def test_no_match_goes_to_default_source_or_none() -> None:
    assert decide(ALL, "Direct", None, _in("https://bing.com/"), T0).source == DIRECT
    assert decide(ALL, "", None, _in("https://bing.com/"), T0).source is None
    assert decide(ALL, "Removed", None, _in("https://bing.com/"), T0).source is None


def test_position_priority() -> None:
    d = decide(ALL, "", None, _in("https://craigslist.org/", "https://e.com/?gclid=1"), T0)
    assert d.source == ADS  # position 1 beats 10


def test_active_visit_continues_with_first_touch() -> None:
    latest = _visit("Craigslist", T1)
    d = decide(ALL, "Direct", latest, _in("https://e.com/?gclid=9"), T0)
    assert d.source == CRAIGSLIST
    assert d.continue_visit == latest


def test_returning_visitor_keeps_first_touch_source_in_a_new_visit() -> None:
    latest = _visit("Craigslist", T0)  # expired at T1
    d = decide(ALL, "Direct", latest, _in(None, "https://e.com/?gclid=9"), T1)
    assert d.source == CRAIGSLIST
    assert d.continue_visit is None
    assert d.expire_visit is None


def test_last_touch_takes_over_and_ends_the_active_visit() -> None:
    latest = _visit("Craigslist", T1)
    d = decide(ALL, "Direct", latest, _in("https://m.facebook.com/"), T0)
    assert d.source == FB
    assert d.expire_visit == latest


def test_previous_source_removed_counts_as_new_visitor() -> None:
    latest = _visit("Gone", T0)
    assert decide(ALL, "Direct", latest, _in("https://craigslist.org/"), T1).source == CRAIGSLIST


def _num(e164: str, area: str, region: str = "US", source: str = "Ads") -> TrackingNumber:
    return TrackingNumber(
        number=e164, source=source, destinations=("d",), region=region, area_code=area
    )


POOL_SOURCE = Source(name="Ads", onsite=True, fallback_number="+14155550199")
GEO_SOURCE = Source(name="Ads", onsite=True, geo=True, fallback_number="+14155550199")
SEATTLE, SAN_DIEGO, SF = "+12065550101", "+16195550101", "+14155550101"
LONDON = "+442079460101"
NUMBERS = [_num(SF, "415"), _num(SEATTLE, "206"), _num(SAN_DIEGO, "619"), _num(LONDON, "20", "GB")]


def pick_number(
    source: Source, numbers: Sequence[TrackingNumber], held_until: Mapping[str, str], now: str,
    visitor: GeoPoint | None, centroids: AreaCodeCentroids | None,
) -> Pick:  # fmt: skip
    """What the visitor API shows a new visit when no concurrent visit takes the best first."""
    best = pool_candidates(source, numbers, held_until, now, visitor, centroids)
    return Pick(best[0]) if best else exhausted_pick(source)


def test_pool_pick_lru_exclusive_and_fallback() -> None:
    assert pick_number(POOL_SOURCE, NUMBERS, {}, T0, None, CENTROIDS) == Pick(SF)
    held = {SF: T2, SEATTLE: T2, SAN_DIEGO: T0, LONDON: T2}
    assert pick_number(POOL_SOURCE, NUMBERS, held, T1, None, None) == Pick(SAN_DIEGO)
    held[SAN_DIEGO] = T2
    assert pick_number(POOL_SOURCE, NUMBERS, held, T1, None, None) == Pick(
        "+14155550199", fallback=True
    )


def test_pool_skips_disabled_and_other_sources_numbers() -> None:
    numbers = [
        TrackingNumber(number=SF, source="Ads", destinations=("d",), enabled=False),
        _num(SEATTLE, "206", source="Other"),
        _num(SAN_DIEGO, "619"),
    ]
    assert pick_number(POOL_SOURCE, numbers, {}, T0, None, None) == Pick(SAN_DIEGO)


def _locate(ip: str) -> GeoPoint:
    with geoip2.database.Reader(str(GEOIP_CITY)) as reader:
        city = reader.city(ip)
    return GeoPoint(city.location.latitude, city.location.longitude, city.country.iso_code)


@pytest.mark.skipif(not GEOIP_CITY.exists(), reason="GeoIP2 test database not present")
def test_geocontact_with_the_test_database() -> None:
    milton_wa = _locate("216.160.83.56")
    san_diego = _locate("214.78.120.5")
    london = _locate("81.2.69.142")
    assert pick_number(GEO_SOURCE, NUMBERS, {}, T0, milton_wa, CENTROIDS) == Pick(SEATTLE)
    assert pick_number(GEO_SOURCE, NUMBERS, {}, T0, san_diego, CENTROIDS) == Pick(SAN_DIEGO)
    assert pick_number(GEO_SOURCE, NUMBERS, {}, T0, london, CENTROIDS) == Pick(LONDON)
    # the nearest number is held: the next nearest free one in the country
    held = {SEATTLE: T2}
    assert pick_number(GEO_SOURCE, NUMBERS, held, T1, milton_wa, CENTROIDS) == Pick(SF)
    # without a location: pool order (no GeoContact)
    assert pick_number(GEO_SOURCE, NUMBERS, {}, T0, None, CENTROIDS) == Pick(SF)


def test_new_visit_row_carries_utm_geo_and_fallback() -> None:
    visit_in = VisitInput(
        "vis-1",
        "https://e.com/p?utm_source=google&utm_medium=cpc&utm_campaign=spring&gclid=G1",
        "https://www.google.com/",
        ga_client_id="123.456",
        ip="216.160.83.56",
        geo=GeoPoint(47.25, -122.31, "US"),
        city="Milton",
    )
    row = new_visit("v1", visit_in, ADS, Pick("+14155550199", fallback=True), T0, T2)
    assert (row.utm_source, row.utm_medium, row.utm_campaign, row.gclid) == (
        "google", "cpc", "spring", "G1",
    )  # fmt: skip
    assert (row.country, row.city, row.lat, row.ip) == ("US", "Milton", 47.25, "216.160.83.56")
    assert row.fallback
    assert row.number == "+14155550199"
    assert row.source == "Google Ads"
    assert (row.started_at, row.last_seen_at, row.expires_at) == (T0, T0, T2)


def _record() -> CallRecord:
    return CallRecord(
        id="r1", inbound_call_id="c", started_at=T1, caller="+12125550123",
        tracking_number=SF, source="Ads", tag="PPC",
    )  # fmt: skip


def test_attribute_copies_the_holding_visit() -> None:
    visit = _visit(
        "Ads", T2, landing_url="https://e.com/?gclid=G", referrer="https://google.com/",
        gclid="G", utm_source="google", ga_client_id="1.2", ip="203.0.113.9",
    )  # fmt: skip
    visit = Visit(**{**{f: getattr(visit, f) for f in visit.__slots__}, "number": SF})
    rec = attribute(_record(), visit)
    assert (rec.visit_id, rec.landing_url, rec.referrer, rec.gclid) == (
        "old", "https://e.com/?gclid=G", "https://google.com/", "G",
    )  # fmt: skip
    assert (rec.utm_source, rec.ga_client_id, rec.visitor_ip) == ("google", "1.2", "203.0.113.9")
    assert (rec.source, rec.tag) == ("Ads", "PPC")


def test_attribute_ignores_fallback_and_missing_visits() -> None:
    assert attribute(_record(), None) == _record()
    fallback = _visit("Ads", T2, fallback=True, landing_url="https://e.com/")
    assert attribute(_record(), fallback) == _record()


@pytest.mark.parametrize(
    "name", ["attribution/visits.py", "attribution/integrations.py", "rules/pools.py"]
)
def test_pure_modules_import_no_io(name: str) -> None:
    tree = ast.parse((REPO / "pbx" / name).read_text())
    roots = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    roots |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not roots & {"asyncio", "socket", "time", "aiosqlite", "structlog", "aiohttp"}
