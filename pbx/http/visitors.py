"""Visitor API on the daemon's HTTP server: `GET /swap.js`, `POST /v1/visits` (I/O, aiohttp).

`POST /v1/visits` takes JSON `{"visitor_id", "landing_url", "referrer",
"ga_client_id"?, "numbers"?}` and answers `{"visitor_id", "visit_id",
"number", "formatted", "source", "expires_at", "fallback", "replace",
"ping_seconds"}`: the tracking number to show (E.164 and national format;
null = keep the page's own number), the source, when the visit's hold ends.
`replace` lists the page numbers sent in `numbers` as
`{"e164", "digits"}` (digits: the national significant number), so the
script can find them in any format. The same call with the same
`visitor_id` is the script's ping: it continues the active visit
(`pbx.attribution.visits.decide`). Bad input gets `{"error": "..."}` with 400
(413 too big, 403 origin not allowed, 429 too many new visits).

Client IP: the connection's address, or, when that is a trusted proxy
(`http.trusted_proxies`), the right-most address in X-Forwarded-For that is
not itself a trusted proxy. CORS: an `Origin` listed in `http.cors_origins`
(or `*`) gets `Access-Control-Allow-Origin` echoing it; another origin is
refused with 403 so foreign pages cannot drain a number pool; requests
without `Origin` (same-site tools, curl) are served.

Decisions:
- No lock across store round trips: the handler reads the visitor's latest
  visit and the pool's holds, ranks the free numbers
  (`attribution.visits.pool_candidates`) and lets the store hold the first
  still free in one atomic step (`store.visits.add_holding`), so concurrent
  visits overlap and two live visits never hold one number, on one node or
  many. Two requests of one visitor at the same instant (two tabs) may so
  start two visits; each holds its own number, and the later one is what
  the next ping continues.
- A visit that finds its pool exhausted (no free number, or every candidate
  taken meanwhile) gets the fallback; it is counted in
  `pbx_pool_exhausted_total{source}` and logged as `pool.exhausted` at most
  once per minute per source (`EXHAUSTED_LOG_EVERY`, `rules.limits.ReportLimit`),
  the line saying how many more visits it found so since the last one.
- `visitor_id`: 8-64 of `[A-Za-z0-9_-]`; missing or null -> a new one.
- URLs: at most 2048 characters (`rules.sources.MAX_URL_CHARS`), else 400.
- New visits per client IP are limited to `visits.max_new_per_ip` per
  `visits.session_length` (in memory, at most `MAX_TRACKED_IPS` addresses).
- The ping interval told to the script is half the session, at most 5 min.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import re
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import geoip2.database
import geoip2.errors
import phonenumbers
import structlog
from aiohttp import web

from pbx.attribution.visits import (
    VisitInput,
    decide,
    exhausted_pick,
    new_visit,
    pool_candidates,
)
from pbx.config import Settings
from pbx.errors import InputError
from pbx.numbers import normalise
from pbx.records import iso_utc
from pbx.rules.geo import AreaCodeCentroids, GeoPoint, parse_area_codes
from pbx.rules.limits import ReportLimit
from pbx.rules.pools import Pick
from pbx.rules.sources import MAX_URL_CHARS
from pbx.service.metrics import Metrics
from pbx.store import Source, Store, Visit

log = structlog.get_logger("pbx.http")

STATIC = Path(__file__).resolve().parent / "static"
SHIPPED_AREA_CODES = Path(__file__).resolve().parents[2] / "data" / "area_codes.csv"
MAX_BODY = 16 * 1024  # a visit request is a few URLs
MAX_PAGE_NUMBERS = 10
MAX_TRACKED_IPS = 10_000
EXHAUSTED_LOG_EVERY = 60.0  # seconds between `pool.exhausted` lines of one source
_VISITOR_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_GA_CLIENT_ID = re.compile(r"^\d{1,20}\.\d{1,20}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BadRequest(Exception):
    """A visitor API request we refuse; `status` and one line of `message`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class NewVisitLimit:
    """At most `limit` new visits per IP per `window` seconds (0 = unlimited)."""

    limit: int
    window: float
    seen: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def allow(self, ip: str, now: float) -> bool:
        if self.limit <= 0:
            return True
        times = self.seen.pop(ip, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        allowed = len(times) < self.limit
        if allowed:
            times.append(now)
        self.seen[ip] = times
        while len(self.seen) > MAX_TRACKED_IPS:
            self.seen.popitem(last=False)
        return allowed


@dataclass
class VisitorApi:
    """The handlers and what they share; built by `add_routes`."""

    store: Store
    settings: Settings
    reader: geoip2.database.Reader | None = None
    centroids: AreaCodeCentroids | None = None
    clock: Callable[[], float] = time.time
    new_id: Callable[[], str] = field(default=lambda: uuid.uuid4().hex)
    limit: NewVisitLimit = field(default_factory=lambda: NewVisitLimit(0, 1.0))
    requests: NewVisitLimit = field(default_factory=lambda: NewVisitLimit(0, 60.0))
    metrics: Metrics | None = None
    monotonic: Callable[[], float] = time.monotonic
    exhausted_log: ReportLimit = field(default_factory=lambda: ReportLimit(EXHAUSTED_LOG_EVERY))

    # -- request reading -----------------------------------------------------------

    def client_ip(self, request: web.Request) -> str | None:
        return client_ip(request.remote, request.headers.get("X-Forwarded-For"),
                         self.settings.http.trusted_proxies)  # fmt: skip

    def locate(self, ip: str | None) -> tuple[GeoPoint | None, str | None]:
        if self.reader is None or ip is None:
            return None, None
        try:
            city = self.reader.city(ip)
        except (geoip2.errors.AddressNotFoundError, ValueError):
            return None, None
        loc = city.location
        return GeoPoint(loc.latitude, loc.longitude, city.country.iso_code), city.city.name

    # -- the visit -----------------------------------------------------------------

    async def visit(self, body: dict[str, Any], ip: str | None) -> dict[str, Any]:
        wall = self.clock()
        now, expires = iso_utc(wall), iso_utc(wall + self.settings.visits.session_length)
        visitor_id = body.get("visitor_id") or self.new_id()
        page = VisitInput(visitor_id, body["landing_url"], body.get("referrer"),
                          body.get("ga_client_id"), ip)  # fmt: skip
        sources = await self.store.sources.list()
        latest = await self.store.visits.latest_for_visitor(visitor_id)
        d = decide(sources, self.settings.visits.default_source, latest, page, now)
        if d.continue_visit is not None:
            row = await self._continue(d.continue_visit, page, now, expires)
        else:
            if not self.limit.allow(ip or "", wall):
                raise BadRequest("too many new visits from this address", 429)
            if d.expire_visit is not None:
                await self.store.visits.update(d.expire_visit.id, expires_at=now)
            row = await self._start(page, d.source, now, expires)
        return self._answer(row, body.get("numbers") or [])

    async def _continue(self, visit: Visit, page: VisitInput, now: str, expires: str) -> Visit:
        changes: dict[str, object] = {"last_seen_at": now, "expires_at": expires}
        if page.ga_client_id and not visit.ga_client_id:
            changes["ga_client_id"] = page.ga_client_id
        return await self.store.visits.update(visit.id, **changes)

    async def _start(self, page: VisitInput, source: Source | None, now: str,
                     expires: str) -> Visit:  # fmt: skip
        geo, city = self.locate(page.ip)
        page = VisitInput(page.visitor_id, page.landing_url, page.referrer, page.ga_client_id,
                          page.ip, geo, city)  # fmt: skip
        visit_id = self.new_id()
        added: Visit | None = None
        if source is None:
            added = await self.store.visits.add(new_visit(visit_id, page, None, Pick(None),
                                                          now, expires))  # fmt: skip
        else:
            numbers = await self.store.numbers.list(source=source.name)
            held = await self.store.visits.held_until([n.number for n in numbers])
            ranked = pool_candidates(source, numbers, held, now, geo, self.centroids)
            if ranked:  # the store holds the first still free: no lock between the reads and this
                visit = new_visit(visit_id, page, source, Pick(ranked[0]), now, expires)
                added = await self.store.visits.add_holding(visit, ranked, now)
            if added is None:
                self._exhausted(source, free=len(ranked), pool=len(numbers))
                visit = new_visit(visit_id, page, source, exhausted_pick(source), now, expires)
                added = await self.store.visits.add(visit)
        log.info("visit.started", visit=added.id, source=added.source, number=added.number,
                 fallback=added.fallback)  # fmt: skip
        return added

    def _exhausted(self, source: Source, *, free: int, pool: int) -> None:
        """Count the exhausted pool; log it at most once per minute per source."""
        if self.metrics is not None:
            self.metrics.pool_exhausted_for(source.name)
        report = self.exhausted_log.report(source.name, self.monotonic())
        if report is not None:
            log.warning("pool.exhausted", source=source.name, pool_size=pool,
                        raced=free > 0, fallback_number=source.fallback_number,
                        not_logged_before=report.held_back,
                        action="visits show the fallback number (or the page's own) "
                               "until a hold expires; add numbers to the pool")  # fmt: skip

    def _answer(self, visit: Visit, page_numbers: list[str]) -> dict[str, Any]:
        ping = min(self.settings.visits.session_length / 2, 300.0)
        return {
            "visitor_id": visit.visitor_id,
            "visit_id": visit.id,
            "number": visit.number,
            "formatted": _national(visit.number) if visit.number else None,
            "source": visit.source,
            "expires_at": visit.expires_at,
            "fallback": visit.fallback,
            "replace": [{"e164": n, "digits": _digits(n)} for n in page_numbers],
            "ping_seconds": ping,
        }

    # -- handlers --------------------------------------------------------------------

    def check_rate(self, request: web.Request) -> str | None:
        """Every visitor API request counts against its address (pings and preflights too);
        returns the address."""
        ip = self.client_ip(request)
        if not self.requests.allow(ip or "", self.clock()):
            raise BadRequest("too many requests from this address", 429)
        return ip

    async def post_visit(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        ip = self.check_rate(request)
        self.check_origin(origin)
        body = await _read_json(request)
        checked = check_visit_body(body, self.settings.phone.default_region)
        answer = await self.visit(checked, ip)
        return web.json_response(answer, headers=self.cors_headers(origin))

    async def preflight(self, request: web.Request) -> web.Response:
        origin = request.headers.get("Origin")
        self.check_rate(request)
        self.check_origin(origin)
        headers = self.cors_headers(origin) | {
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type",
            "Access-Control-Max-Age": "600",
        }
        return web.Response(status=204, headers=headers)

    async def swap_js(self, request: web.Request) -> web.Response:
        """From memory, with an ETag: a page view costs a 304, not a file read."""
        body, etag = _swap_js()
        headers = {"Cache-Control": "public, max-age=300", "ETag": etag}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, content_type="application/javascript",
                            charset="utf-8", headers=headers)  # fmt: skip

    def check_origin(self, origin: str | None) -> None:
        if origin is not None and not self._allowed(origin):
            raise BadRequest(f"origin {origin[:100]} is not allowed", 403)

    def _allowed(self, origin: str) -> bool:
        allowed = self.settings.http.cors_origins
        return "*" in allowed or origin.rstrip("/") in allowed

    def cors_headers(self, origin: str | None) -> dict[str, str]:
        if origin is None:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


# -- pure helpers ---------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in trusted)


def client_ip(remote: str | None, forwarded: str | None, trusted: tuple[str, ...]) -> str | None:
    """The visitor's address: the peer, or X-Forwarded-For's right-most untrusted hop."""
    nets = _networks(trusted)

    def is_trusted(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in nets)

    if remote is None or not forwarded or not is_trusted(remote):
        return remote
    hops = [h.strip() for h in forwarded.split(",")[-20:] if h.strip()]
    for hop in reversed(hops):
        if not is_trusted(hop):
            return _valid_ip(hop) or remote
    return remote


def _valid_ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _url(body: dict[str, Any], key: str, required: bool) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise BadRequest(f"{key} is required")
        return None
    if not isinstance(value, str) or len(value) > MAX_URL_CHARS:
        raise BadRequest(f"{key} must be a URL of at most {MAX_URL_CHARS} characters")
    if required and not value.lower().startswith(("http://", "https://")):
        raise BadRequest(f"{key} must be an http(s) URL")
    return value


def check_visit_body(body: object, region: str) -> dict[str, Any]:
    """The checked request fields (raises `BadRequest` with one line)."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    visitor_id = body.get("visitor_id")
    if visitor_id is not None and not (
        isinstance(visitor_id, str) and _VISITOR_ID.fullmatch(visitor_id)
    ):
        raise BadRequest("visitor_id must be 8-64 letters, digits, '-' or '_'")
    ga = body.get("ga_client_id")
    if ga is not None and not (isinstance(ga, str) and _GA_CLIENT_ID.fullmatch(ga)):
        raise BadRequest("ga_client_id must look like 1234567890.1700000000")
    return {
        "visitor_id": visitor_id,
        "landing_url": _url(body, "landing_url", True),
        "referrer": _url(body, "referrer", False),
        "ga_client_id": ga,
        "numbers": _page_numbers(body.get("numbers"), region),
    }


def _page_numbers(raw: object, region: str) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_PAGE_NUMBERS:
        raise BadRequest(f"numbers must be a list of at most {MAX_PAGE_NUMBERS} phone numbers")
    out: list[str] = []
    for item in raw:
        out.append(_normalised(item, region) if isinstance(item, str) else "")
        if not out[-1]:
            raise BadRequest(f"numbers: {str(item)[:40]!r} is not a valid phone number")
    return list(dict.fromkeys(out))


# Every page view sends the site's own numbers and gets a pool number back: the same
# few strings again and again, so their phonenumbers parses are remembered (bounded).
@functools.lru_cache(maxsize=4096)
def _normalised(item: str, region: str) -> str:
    try:
        return normalise(item, region)
    except InputError:
        return ""


@functools.lru_cache(maxsize=4096)
def _national(e164: str) -> str:
    number = phonenumbers.parse(e164)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)


@functools.lru_cache(maxsize=4096)
def _digits(e164: str) -> str:
    return phonenumbers.national_significant_number(phonenumbers.parse(e164))


async def _read_json(request: web.Request) -> object:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise BadRequest("request body too large", 413)
    raw = await _read_body(request)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None
    except RecursionError:  # "[[[[..." within MAX_BODY nests deeper than the stack allows
        raise BadRequest("the body nests too deeply") from None


async def _read_body(request: web.Request) -> bytes:
    """The whole body, however slowly it arrives (one `read(n)` may return a piece)."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(MAX_BODY + 1 - size):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            raise BadRequest("request body too large", 413)
    return b"".join(chunks)


@functools.cache
def _swap_js() -> tuple[bytes, str]:
    """swap.js's bytes and its ETag, read once."""
    body = (STATIC / "swap.js").read_bytes()
    return body, '"' + hashlib.sha256(body).hexdigest()[:16] + '"'


# -- wiring -------------------------------------------------------------------------


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors under /v1/ as `{"error": ...}` JSON with their 4xx status."""
    try:
        return await handler(request)
    except BadRequest as exc:
        origin = request.headers.get("Origin")
        headers = {}
        if origin is not None and exc.status != 403:
            headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
        return web.json_response({"error": str(exc)}, status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if not request.path.startswith("/v1/") or exc.status < 400:
            raise
        return web.json_response({"error": exc.reason}, status=exc.status)


def _centroids(settings: Settings) -> AreaCodeCentroids | None:
    path = Path(settings.visits.area_codes) if settings.visits.area_codes else SHIPPED_AREA_CODES
    try:
        return parse_area_codes(path.read_text(encoding="utf-8"))
    except (OSError, InputError) as exc:
        log.warning("geo.area_codes_unavailable", path=str(path), error=str(exc))
        return None


def build_api(store: Store, settings: Settings, metrics: Metrics | None = None) -> VisitorApi:
    """The API with its GeoIP reader (if configured) and area-code centroids."""
    reader = None
    if settings.visits.geoip_db:
        try:
            reader = geoip2.database.Reader(settings.visits.geoip_db)
        except (OSError, ValueError) as exc:
            log.warning("geo.database_unavailable", path=settings.visits.geoip_db, error=str(exc))
    limit = NewVisitLimit(settings.visits.max_new_per_ip, settings.visits.session_length)
    requests = NewVisitLimit(settings.visits.max_requests_per_minute, 60.0)
    return VisitorApi(store, settings, reader, _centroids(settings), limit=limit,
                      requests=requests, metrics=metrics)  # fmt: skip


def add_routes(
    app: web.Application, store: Store, settings: Settings, metrics: Metrics | None = None
) -> VisitorApi:
    """Register `/swap.js` and `/v1/visits` on the daemon's app (before it starts)."""
    api = build_api(store, settings, metrics)
    app.middlewares.append(json_errors)
    app.router.add_get("/swap.js", api.swap_js)
    app.router.add_post("/v1/visits", api.post_visit)
    app.router.add_route("OPTIONS", "/v1/visits", api.preflight)

    async def close_reader(_: web.Application) -> None:
        if api.reader is not None:
            api.reader.close()

    app.on_cleanup.append(close_reader)
    return api
