"""Visitor API over real HTTP on 127.0.0.1 with a real SQLite store (in-process aiohttp server)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from pbx.config import Settings, load_settings
from pbx.http.visitors import VisitorApi, add_routes, client_ip
from pbx.service.metrics import Metrics
from pbx.store import Destination, Source, Store, TrackingNumber
from pbx.store.connect import open_store

GEOIP_CITY = Path(__file__).resolve().parents[3] / "shared" / "data" / "GeoIP2-City-Test.mmdb"
A, B, FALLBACK = "+14155550101", "+14155550102", "+14155550199"
SEATTLE, SAN_DIEGO = "+12065550101", "+16195550101"
DIRECT = "+13125550150"
SITE = "https://www.example.com"
T0 = 1_772_704_800.0  # 2026-03-05T10:00:00Z


@dataclass
class Client:
    base: str
    session: aiohttp.ClientSession
    api: VisitorApi
    store: Store
    clock: list[float]

    async def visit(self, status: int = 200, headers: dict[str, str] | None = None,
                    **body: Any) -> dict[str, Any]:  # fmt: skip
        body.setdefault("landing_url", "https://www.example.com/")
        async with self.session.post(f"{self.base}/v1/visits", json=body,
                                     headers=headers or {}) as r:  # fmt: skip
            data: dict[str, Any] = await r.json()
            assert r.status == status, data
            return data


async def _provision(store: Store) -> None:
    await store.destinations.add(Destination(name="office", target="+14155550100", kind="number"))
    await store.sources.add(Source(name="Ads", onsite=True, landing=r"[?&]gclid=", position=1,
                                   tag="PPC", fallback_number=FALLBACK))  # fmt: skip
    await store.sources.add(Source(name="Craigslist", onsite=True, referrer="craigslist",
                                   position=10, tag="Craigslist"))  # fmt: skip
    await store.sources.add(Source(name="Facebook", onsite=True, referrer="facebook",
                                   position=5, last_touch=True))  # fmt: skip
    await store.sources.add(Source(name="Geo", onsite=True, landing="geo=1", geo=True))
    await store.sources.add(Source(name="Direct"))
    for number, source in ((A, "Ads"), (B, "Ads"), ("+14155550110", "Craigslist"),
                           ("+14155550120", "Facebook"), (SEATTLE, "Geo"), (SAN_DIEGO, "Geo"),
                           (DIRECT, "Direct")):  # fmt: skip
        await store.numbers.add(TrackingNumber(number=number, source=source,
                                               destinations=("office",),
                                               region="US", area_code=number[2:5]))  # fmt: skip


def _settings(**env: str) -> Settings:
    base = {"PBX_HTTP_CORS_ORIGINS": SITE, "PBX_HTTP_TRUSTED_PROXIES": "127.0.0.0/8",
            "PBX_VISITS_DEFAULT_SOURCE": "Direct"}  # fmt: skip
    if GEOIP_CITY.exists():
        base["PBX_VISITS_GEOIP_DB"] = str(GEOIP_CITY)
    return load_settings(None, base | env, {})


@pytest.fixture
async def make_client(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[web.AppRunner, aiohttp.ClientSession, Store]] = []

    async def make(**env: str) -> Client:
        store = await open_store(tmp_path / "db.sqlite3")
        await _provision(store)
        app = web.Application()
        api = add_routes(app, store, _settings(**env))
        clock = [T0]
        api.clock = lambda: clock[0]
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        session = aiohttp.ClientSession()
        made.append((runner, session, store))
        return Client(f"http://127.0.0.1:{runner.addresses[0][1]}", session, api, store, clock)

    yield make
    for runner, session, store in made:
        await session.close()
        await runner.cleanup()
        await store.close()


@pytest.fixture
async def client(make_client: Callable[..., Any]) -> Client:
    c: Client = await make_client()
    return c


async def test_pool_exclusive_lru_fallback_and_expiry(client: Client) -> None:
    one = await client.visit(landing_url="https://www.example.com/?gclid=1")
    two = await client.visit(landing_url="https://www.example.com/?gclid=2")
    three = await client.visit(landing_url="https://www.example.com/?gclid=3")
    assert (one["number"], two["number"]) == (A, B)
    assert one["formatted"] == "(415) 555-0101"
    assert one["source"] == "Ads"
    assert one["expires_at"] == "2026-03-05T10:30:00.000000Z"
    assert (three["number"], three["fallback"]) == (FALLBACK, True)
    # ping 20 min later keeps A for visitor one; visitor two expires at 10:30
    client.clock[0] = T0 + 1200
    ping = await client.visit(visitor_id=one["visitor_id"], landing_url="https://www.example.com/x")
    assert (ping["number"], ping["visit_id"]) == (A, one["visit_id"])
    assert ping["expires_at"] == "2026-03-05T10:50:00.000000Z"
    client.clock[0] = T0 + 1800  # two's hold has expired: B is free, A is not
    four = await client.visit(landing_url="https://www.example.com/?gclid=4")
    assert (four["number"], four["fallback"]) == (B, False)


async def test_first_touch_then_last_touch_takeover(client: Client) -> None:
    cl = await client.visit(referrer="https://sfbay.craigslist.org/x")
    assert cl["source"] == "Craigslist"
    vid = cl["visitor_id"]
    client.clock[0] = T0 + 3600  # the visit expired; first touch keeps Craigslist
    back = await client.visit(visitor_id=vid, landing_url="https://www.example.com/?gclid=9")
    assert back["source"] == "Craigslist"
    assert back["visit_id"] != cl["visit_id"]
    fb = await client.visit(visitor_id=vid, referrer="https://m.facebook.com/")
    assert fb["source"] == "Facebook"  # last touch takes over the active visit
    old = await client.store.visits.get(back["visit_id"])
    assert old is not None
    assert old.expires_at == "2026-03-05T11:00:00.000000Z"  # ended at once


async def test_default_source_and_page_numbers(client: Client) -> None:
    got = await client.visit(referrer="https://duckduckgo.com/", numbers=["(415) 555-0100"])
    assert (got["source"], got["number"]) == ("Direct", DIRECT)
    assert got["replace"] == [{"e164": "+14155550100", "digits": "4155550100"}]
    visit = await client.store.visits.get(got["visit_id"])
    assert visit is not None
    assert visit.referrer == "https://duckduckgo.com/"


async def test_visit_row_has_utm_ip_and_ga(client: Client) -> None:
    url = "https://www.example.com/?utm_source=google&utm_medium=cpc&utm_campaign=s&gclid=G1"
    got = await client.visit(landing_url=url, ga_client_id="123.456",
                             headers={"X-Forwarded-For": "198.51.100.7"})  # fmt: skip
    visit = await client.store.visits.get(got["visit_id"])
    assert visit is not None
    assert (visit.utm_source, visit.utm_medium, visit.gclid) == ("google", "cpc", "G1")
    assert (visit.ga_client_id, visit.ip) == ("123.456", "198.51.100.7")


@pytest.mark.skipif(not GEOIP_CITY.exists(), reason="GeoIP2 test database not present")
async def test_geocontact_through_forwarded_ip(client: Client) -> None:
    wa = await client.visit(landing_url="https://www.example.com/?geo=1",
                            headers={"X-Forwarded-For": "216.160.83.56"})  # fmt: skip
    sd = await client.visit(landing_url="https://www.example.com/?geo=1",
                            headers={"X-Forwarded-For": "214.78.120.5"})  # fmt: skip
    assert (wa["number"], sd["number"]) == (SEATTLE, SAN_DIEGO)
    visit = await client.store.visits.get(wa["visit_id"])
    assert visit is not None
    assert (visit.country, visit.city) == ("US", "Milton")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"landing_url": ""}, "landing_url is required"),
        ({"landing_url": "javascript:alert(1)"}, "landing_url must be an http(s) URL"),
        ({"landing_url": "https://e.com/" + "a" * 3000}, "at most 2048"),
        ({"landing_url": "https://e.com/", "visitor_id": "x"}, "visitor_id must be"),
        ({"landing_url": "https://e.com/", "referrer": 5}, "referrer must be a URL"),
        ({"landing_url": "https://e.com/", "ga_client_id": "GA1"}, "ga_client_id must"),
        ({"landing_url": "https://e.com/", "numbers": ["555"]}, "is not a valid phone number"),
        ({"landing_url": "https://e.com/", "numbers": "x"}, "numbers must be a list"),
    ],
)
async def test_bad_requests_get_400_json(client: Client, body: dict[str, Any],
                                         fragment: str) -> None:  # fmt: skip
    got = await client.visit(status=400, **body)
    assert fragment in got["error"]
    assert await client.store.visits.list() == []


async def test_not_json_too_big_and_unknown_method(client: Client) -> None:
    url = f"{client.base}/v1/visits"
    async with client.session.post(url, data=b"{nope") as r:
        assert (r.status, (await r.json())["error"]) == (400, "the body must be JSON")
    async with client.session.post(url, data=b"[" + b" " * 20000 + b"]") as r:
        assert r.status == 413
    async with client.session.get(url) as r:
        assert r.status == 405
        assert "error" in await r.json()


async def test_cors_allowed_denied_and_preflight(client: Client) -> None:
    ok = {"Origin": SITE}
    url = f"{client.base}/v1/visits"
    async with client.session.post(url, json={"landing_url": SITE + "/"}, headers=ok) as r:
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == SITE
    async with client.session.options(url, headers=ok | {
            "Access-Control-Request-Method": "POST"}) as r:  # fmt: skip
        assert r.status == 204
        assert "POST" in r.headers["Access-Control-Allow-Methods"]
        assert r.headers["Access-Control-Allow-Headers"] == "Content-Type"
    evil = {"Origin": "https://evil.example.net"}
    async with client.session.post(url, json={"landing_url": SITE + "/"}, headers=evil) as r:
        assert r.status == 403
        assert "Access-Control-Allow-Origin" not in r.headers
        assert "not allowed" in (await r.json())["error"]
    assert len(await client.store.visits.list()) == 1


async def test_new_visits_per_ip_are_limited(make_client: Callable[..., Any]) -> None:
    c: Client = await make_client(PBX_VISITS_MAX_NEW_PER_IP="2")
    await c.visit()
    await c.visit()
    got = await c.visit(status=429)
    assert "too many" in got["error"]
    await c.visit(headers={"X-Forwarded-For": "203.0.113.5"})  # another client


async def test_swap_js_is_served(client: Client) -> None:
    async with client.session.get(f"{client.base}/swap.js") as r:
        assert r.status == 200
        assert r.content_type == "application/javascript"
        text = await r.text()
    assert "/v1/visits" in text
    assert "pbx_vid" in text


def test_client_ip_trusts_only_configured_proxies() -> None:
    proxies = ("10.0.0.0/8",)
    assert client_ip("10.1.1.1", "198.51.100.7, 10.2.2.2", proxies) == "198.51.100.7"
    assert client_ip("203.0.113.9", "198.51.100.7", proxies) == "203.0.113.9"
    assert client_ip("10.1.1.1", "garbage", proxies) == "10.1.1.1"
    assert client_ip("10.1.1.1", None, proxies) == "10.1.1.1"
    assert client_ip("10.1.1.1", "10.3.3.3", proxies) == "10.1.1.1"


async def test_swap_js_comes_from_memory_with_an_etag(client: Client) -> None:
    async with client.session.get(f"{client.base}/swap.js") as r:
        etag = r.headers["ETag"]
        assert r.status == 200
    headers = {"If-None-Match": etag}
    async with client.session.get(f"{client.base}/swap.js", headers=headers) as r:
        assert r.status == 304
        assert await r.read() == b""


async def test_pings_and_preflights_count_against_the_address(
    make_client: Callable[..., Any],
) -> None:
    client: Client = await make_client(PBX_VISITS_MAX_REQUESTS_PER_MINUTE="3")
    first = await client.visit()
    headers = {"Origin": SITE, "Access-Control-Request-Method": "POST"}
    async with client.session.options(f"{client.base}/v1/visits", headers=headers) as r:
        assert r.status == 204
    await client.visit(visitor_id=first["visitor_id"])  # a ping
    refused = await client.visit(429, visitor_id=first["visitor_id"])
    assert refused == {"error": "too many requests from this address"}
    client.clock[0] += 61  # a minute later the address may ping again
    await client.visit(visitor_id=first["visitor_id"])


async def test_a_body_that_arrives_slowly_is_read_whole(client: Client) -> None:
    """The JSON arrives in pieces over a raw socket: no spurious 400."""
    import asyncio
    import json as _json

    host, port = client.base.removeprefix("http://").split(":")
    body = _json.dumps({"landing_url": "https://www.example.com/?gclid=x"}).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/visits HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    for i in range(0, len(body), 7):
        writer.write(body[i : i + 7])
        await writer.drain()
        await asyncio.sleep(0.01)  # pacing of a slow client, not a race fix
    status = await asyncio.wait_for(reader.readline(), 5.0)
    writer.close()
    assert status.startswith(b"HTTP/1.1 200"), status


class Overlap:
    """Counts the store awaits in flight at once across the API's requests."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def wrap(self, target: Any) -> Any:
        meter = self

        class Proxy:
            def __getattr__(self, name: str) -> Any:
                attr = getattr(target, name)
                if name in ("sources", "visits", "numbers"):
                    return meter.wrap(attr)
                if not inspect.iscoroutinefunction(attr):
                    return attr

                async def counted(*args: Any, **kwargs: Any) -> Any:
                    meter.now += 1
                    meter.most = max(meter.most, meter.now)
                    try:
                        return await attr(*args, **kwargs)
                    finally:
                        meter.now -= 1

                return counted

        return Proxy()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_fifty_concurrent_visits_share_no_number_and_hold_no_lock(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """50 new visits at once against a pool of 10: ten numbers, each shown to one live
    visit; forty fallbacks, counted in /metrics and logged once; the visits' store
    awaits overlap (no lock held across them)."""
    where = request.getfixturevalue("pg_url") if backend == "postgres" else tmp_path / "db.sqlite3"
    store = await open_store(where)
    pool = [f"+1212555{n:04d}" for n in range(200, 210)]
    metrics = Metrics()
    runner: web.AppRunner | None = None
    try:
        await _provision(store)
        await store.sources.add(Source(name="Big", onsite=True, landing="big=1", position=0,
                                       fallback_number=FALLBACK))  # fmt: skip
        for number in pool:
            await store.numbers.add(TrackingNumber(number=number, source="Big",
                                                   destinations=("office",)))  # fmt: skip
        app = web.Application()
        settings = _settings(PBX_VISITS_MAX_NEW_PER_IP="0", PBX_VISITS_MAX_REQUESTS_PER_MINUTE="0")
        api = add_routes(app, store, settings, metrics)
        overlap = Overlap()
        api.store = overlap.wrap(store)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        base = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:

            async def one(n: int) -> dict[str, Any]:
                body = {"landing_url": f"https://www.example.com/?big=1&n={n}"}
                async with session.post(f"{base}/v1/visits", json=body) as r:
                    assert r.status == 200
                    answer: dict[str, Any] = await r.json()
                    return answer

            with structlog.testing.capture_logs() as logs:
                answers = await asyncio.gather(*(one(n) for n in range(50)))
        held = [a["number"] for a in answers if not a["fallback"]]
        assert sorted(held) == pool  # each number to one visit
        assert [a["number"] for a in answers if a["fallback"]] == [FALLBACK] * 40
        now = "2026-03-05T10:00:01.000000Z"
        for number in pool:  # the store agrees: one live visit per number
            live = [v for v in await store.visits.list() if v.number == number
                    and not v.fallback and v.expires_at > now]  # fmt: skip
            assert len(live) == 1
        assert overlap.most > 1, "the visits' store awaits never overlapped: a lock?"
        lines = [e for e in logs if e["event"] == "pool.exhausted"]
        assert len(lines) == 1
        assert (lines[0]["source"], lines[0]["pool_size"]) == ("Big", 10)
        assert lines[0]["fallback_number"] == FALLBACK
        assert 'pbx_pool_exhausted_total{source="Big"} 40.0' in metrics.render().decode()
    finally:
        if runner is not None:
            await runner.cleanup()
        await store.close()


async def test_exhausted_pool_logs_again_a_minute_later(make_client: Callable[..., Any]) -> None:
    client: Client = await make_client()
    ticks = [100.0]
    client.api.monotonic = lambda: ticks[0]
    metrics = Metrics()
    client.api.metrics = metrics
    for n in range(2):  # A and B
        await client.visit(landing_url=f"https://www.example.com/?gclid={n}")
    with structlog.testing.capture_logs() as logs:
        for n, tick in enumerate((100.0, 130.0, 159.0, 160.0, 170.0)):
            ticks[0] = tick
            answer = await client.visit(landing_url=f"https://www.example.com/?gclid=x{n}")
            assert (answer["number"], answer["fallback"]) == (FALLBACK, True)
    lines = [e for e in logs if e["event"] == "pool.exhausted"]
    assert [line["not_logged_before"] for line in lines] == [0, 2]
    assert lines[0]["log_level"] == "warning"
    assert 'pbx_pool_exhausted_total{source="Ads"} 5.0' in metrics.render().decode()
