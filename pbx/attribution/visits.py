"""Visit attribution: a visit's source and number, and a call's visit data (pure).

The HTTP shell (`pbx.http.visitors`) reads the store and the clock and asks
this module what to do; intake asks `attribute` to copy the visit holding a
number onto a new call record.

A visit request (`POST /v1/visits`) either continues the visitor's active
visit or starts a new one:
- continue: the visitor has an unexpired visit and first/last touch keeps
  its source; the visit keeps its number and landing URL, only
  `last_seen_at`/`expires_at` move (this is the swap script's ping);
- new: no active visit, or a last-touch source takes the visitor over (the
  old visit is then expired at once, releasing its number).
First/last touch uses the visitor's latest visit, expired or not, as the
"previous" source (`pbx.rules.sources.attribute_visit`).

Decisions (the spec is silent):
- A previous source that no longer exists (removed) counts as no previous.
- Visits nothing matches go to the configured default source when it
  exists; otherwise they have no source and no number (the page keeps its
  own number).
- GeoContact (`source.geo`): among the pool's free numbers the nearest to
  the visitor (`rules.geo.nearest_number`); otherwise the least recently
  used free number (`rules.pools`).
- `pool_candidates` ranks the free numbers (the `GEO_RANKED` nearest first
  for GeoContact, then least recently used); the shell hands the list to
  the store, which holds the first one still free (`visits.add_holding`).
  An empty list, or none of it still free, is an exhausted pool: the visit
  gets `exhausted_pick` (the source's fallback number, or none).
- `attribute` ignores fallback visits (they hold no number exclusively) and
  leaves source and tag as the number's: the visit held that number because
  of that source. It fills visit id, landing URL, referrer, UTM, gclid, GA
  client id and visitor IP.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from pbx.records import CallRecord
from pbx.rules import sources as rules
from pbx.rules.geo import AreaCodeCentroids, GeoPoint, NumberGeo, nearest_number
from pbx.rules.pools import Pick, PoolNumber, pool_of, ranked
from pbx.store.base import Source, TrackingNumber, Visit


@dataclass(frozen=True)
class VisitInput:
    """A checked visit request plus what the shell learnt (client IP, geo)."""

    visitor_id: str
    landing_url: str | None
    referrer: str | None
    ga_client_id: str | None = None
    ip: str | None = None
    geo: GeoPoint | None = None
    city: str | None = None


@dataclass(frozen=True)
class Decision:
    """`source` for the visit; `continue_visit` (keep it) or `expire_visit` (end it now)."""

    source: Source | None
    continue_visit: Visit | None = None
    expire_visit: Visit | None = None


def rule_source(row: Source) -> rules.Source:
    """The store's source row as `rules.sources` sees it."""
    return rules.Source(
        name=row.name,
        onsite=row.onsite,
        referrer=row.referrer,
        landing=row.landing,
        position=row.position,
        last_touch=row.last_touch,
        tag=row.tag,
        enabled=row.enabled,
    )


def decide(
    sources: Sequence[Source],
    default_source: str,
    latest: Visit | None,
    visit: VisitInput,
    now: str,
) -> Decision:
    """Which source the visit gets and whether it continues or replaces the latest visit."""
    by_name = {s.name: s for s in sources}
    none = rules.Source(name="")
    default = by_name.get(default_source)
    previous = by_name.get(latest.source) if latest and latest.source else None
    chosen = rules.attribute_visit(
        [rule_source(s) for s in sources],
        rule_source(default) if default is not None else none,
        rule_source(previous) if previous is not None else None,
        visit.referrer,
        visit.landing_url,
    )
    row = by_name.get(chosen.name)
    active = latest if latest is not None and latest.expires_at > now else None
    if active is not None and active.source == (row.name if row else None):
        return Decision(row, continue_visit=active)
    return Decision(row, expire_visit=active)


GEO_RANKED = 5  # GeoContact: this many nearest first, then the pool's LRU order


def pool_candidates(
    source: Source,
    numbers: Sequence[TrackingNumber],
    held_until: Mapping[str, str],
    now: str,
    visitor: GeoPoint | None,
    centroids: AreaCodeCentroids | None,
) -> list[str]:
    """The free pool numbers of `source` a new visit should try to hold, best first."""
    usable = [n for n in numbers if n.enabled and n.source == source.name]
    pool = pool_of([n.number for n in usable], held_until)
    if not source.geo or visitor is None:
        return [p.e164 for p in ranked(pool, now)]
    geo = {n.number: n for n in usable}

    def nearest(free: Sequence[PoolNumber]) -> PoolNumber:
        candidates = [
            NumberGeo(p.e164, geo[p.e164].region, geo[p.e164].area_code, rank)
            for rank, p in enumerate(free)
        ]
        best = nearest_number(candidates, visitor, centroids)
        return next((p for p in free if best is not None and p.e164 == best.e164), free[0])

    return [p.e164 for p in ranked(pool, now, nearest, GEO_RANKED)]


def exhausted_pick(source: Source) -> Pick:
    """What a visit shows when its source's pool has no free number."""
    return Pick(source.fallback_number, fallback=True)


def new_visit(
    visit_id: str,
    visit: VisitInput,
    source: Source | None,
    pick: Pick,
    now: str,
    expires_at: str,
) -> Visit:
    """The visit row to store for a new visit."""
    utm = rules.parse_utm(visit.landing_url)
    geo = visit.geo
    return Visit(
        id=visit_id,
        visitor_id=visit.visitor_id,
        started_at=now,
        last_seen_at=now,
        expires_at=expires_at,
        source=source.name if source else None,
        number=pick.number,
        landing_url=visit.landing_url,
        referrer=visit.referrer,
        utm_source=utm.get("utm_source"),
        utm_medium=utm.get("utm_medium"),
        utm_campaign=utm.get("utm_campaign"),
        utm_term=utm.get("utm_term"),
        utm_content=utm.get("utm_content"),
        gclid=utm.get("gclid"),
        ga_client_id=visit.ga_client_id,
        ip=visit.ip,
        country=geo.country if geo else None,
        city=visit.city,
        lat=geo.lat if geo else None,
        lon=geo.lon if geo else None,
        fallback=pick.fallback,
    )


def attribute(record: CallRecord, visit: Visit | None) -> CallRecord:
    """The ringing record with the data of the visit holding its number (if any)."""
    if visit is None or visit.fallback or visit.number != record.tracking_number:
        return record
    return replace(
        record,
        visit_id=visit.id,
        landing_url=visit.landing_url,
        referrer=visit.referrer,
        utm_source=visit.utm_source,
        utm_medium=visit.utm_medium,
        utm_campaign=visit.utm_campaign,
        utm_term=visit.utm_term,
        utm_content=visit.utm_content,
        gclid=visit.gclid,
        ga_client_id=visit.ga_client_id,
        visitor_ip=visit.ip,
    )
