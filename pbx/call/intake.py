"""Admission and route lookup for a new inbound INVITE (async: reads the store).

Turns "an INVITE arrived from this address" into either a final answer for
the caller (403 not a trunk, 404 unknown number, 480 disabled or closed,
483 loop) or a `CallSetup` the pure `Call` runs with. Provisioning is read
per call, so CLI changes apply to the next call without a restart.

Decisions:
- A destination `+E164` is dialed through the number's trunk, or, when the
  number names none, the trunk the call came in on. The Request-URI user is
  the E.164 number with its `+`, unless the trunk strips it; the trunk's
  prefix goes in front.
- `sip:` destinations go direct to their host; a host name (of a `sip:`
  destination or of a trunk) is resolved with the event loop's resolver,
  one lookup per call.
- `ext:NAME` destinations ring every registered contact of the extension at
  once (one plan step holds them all, `pbx.call.targets`); an extension
  with no binding is skipped like an unreachable destination (480 when
  nothing is left), so hunting goes on to the next destination.
- Audio (issue 13): the number's prompts are read per call with its
  route; a `--whisper-text` template is rendered per call by espeak-ng in a
  worker thread, bounded by WHISPER_TTS_TIMEOUT (a failure means no
  whisper, never no call).
- The record is stamped at intake with the caller's area-code location
  (`pbx.call.locations`, a table lookup: no geocoder in the daemon) and the
  cost in force now (the source's per-call cost, `rules.roi.call_cost_cents`),
  so changing a price later never reprices this call. A refused call
  (blocked, rejected) carries no cost: nothing was delivered.
- Unknown numbers and non-trunk sources get no call record (nothing was
  attempted and nobody dialed a tracking number); disabled numbers and
  after-hours rejections get a `rejected` record.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pbx.attribution.visits import attribute
from pbx.audio import text, tones, tts
from pbx.call.locations import caller_location
from pbx.call.model import AudioPlan, CallSetup, LocalAddress, Target
from pbx.call.targets import extension_targets, join_steps
from pbx.errors import InputError
from pbx.numbers import normalise, region_of
from pbx.records import CallRecord, Disposition, iso_utc
from pbx.rules.admission import TrunkAcl, dialed_number, trunk_for_source
from pbx.rules.blocking import ANONYMOUS, blocked, is_anonymous
from pbx.rules.roi import SourceCost, call_cost_cents
from pbx.rules.routing import Reject, Schedule, choose_destinations, plan
from pbx.sip.auth import Credentials
from pbx.sip.message import Request
from pbx.sip.peer import Peer, as_transport
from pbx.sip.status import SipParseError
from pbx.sip.uri import parse_uri
from pbx.store import Block, Destination, RouteInfo, Store, Trunk

WHISPER_TTS_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Answer the caller with `status` and (if `record` is set) write that record."""

    status: int
    reason: str
    record: CallRecord | None = None
    retry_after: int | None = None  # seconds, for a Retry-After header (503 over a limit)


@dataclass(frozen=True, slots=True)
class IntakeContext:
    store: Store
    default_region: str
    ring_timeout: float
    local: dict[str, LocalAddress]
    block_status: int = 603
    node: str | None = None  # this pbx node's name, written on every record


async def admit(
    ctx: IntakeContext, invite: Request, source: Peer, now: float, wall: float
) -> CallSetup | Refusal:
    """Decide what to do with a new INVITE (DESIGN.md call flow step 2).

    Every provisioning read of one admission shares one freshness check
    (`Store.pinned_config`): one version read per call instead of one per read.
    """
    with ctx.store.pinned_config():
        return await _admit(ctx, invite, source, now, wall)


async def _admit(
    ctx: IntakeContext, invite: Request, source: Peer, now: float, wall: float
) -> CallSetup | Refusal:
    trunks = await ctx.store.trunks.list()
    trunk = _trunk_of(trunks, source.host)
    if trunk is None:
        return Refusal(403, "source address is not an allowed trunk")
    if invite.max_forwards == 0:
        return Refusal(483, "Too Many Hops")
    e164 = _dialed(invite, ctx.default_region)
    route = await ctx.store.numbers.lookup(e164) if e164 else None
    if route is None:
        return Refusal(404, "unknown number")
    record = _ringing_record(invite, route, trunk, ctx.default_region, wall, ctx.node)
    record = attribute(record, await ctx.store.visits.active(record.tracking_number, iso_utc(wall)))
    hit = await _block_hit(ctx.store, invite, record)
    if hit is not None:
        reason = f"blocked by {hit.pattern}"
        return _rejected(record, ctx.block_status, reason, wall, Disposition.BLOCKED)
    if not route.number.enabled or not route.source.enabled:
        return _rejected(record, 480, "number disabled", wall)
    chosen = _open_destinations(route, wall)
    if isinstance(chosen, Reject):
        return _rejected(record, chosen.status, chosen.reason, wall)
    cursor = 0
    if route.number.strategy == "round-robin":
        cursor = await ctx.store.numbers.advance_cursor(route.number.number)
    groups = [await _targets(ctx.store, d, route, trunk, wall) for d in chosen]
    steps = join_steps(plan(route.number.strategy, [g for g in groups if g], cursor).steps)
    return CallSetup(
        record=record,
        caller=record.caller,
        steps=steps,
        ring_timeout=float(route.number.ring_timeout or ctx.ring_timeout),
        started=now,
        started_wall=wall,
        local=ctx.local,
        caller_id_user=route.number.number if route.number.present_tracking_number else None,
        max_forwards=invite.max_forwards if invite.max_forwards is not None else 70,
        audio=await _audio_plan(ctx.store, route, record),
    )


async def _audio_plan(store: Store, route: RouteInfo, record: CallRecord) -> AudioPlan:
    """The number's audio wishes with its prompts loaded (issue 13; off by default)."""
    number, source = route.number, route.source
    recorded = number.record or source.record  # a source's --record covers all its numbers
    disclosure = number.disclosure or (source.disclosure if recorded else None)
    if not (recorded or disclosure or number.whisper or number.whisper_text or number.voicemail):
        return AudioPlan()

    async def pcm(name: str | None) -> bytes | None:
        found = await store.prompts.get(name) if name else None
        return found.pcm if found is not None else None

    whisper = await pcm(number.whisper)
    if whisper is None and number.whisper_text:
        whisper = await _spoken(number.whisper_text, record)
    return AudioPlan(
        record=recorded,
        disclosure=await pcm(disclosure),
        whisper=whisper,
        screen=number.screen,
        screen_seconds=float(number.screen_seconds),
        voicemail=await pcm(number.voicemail),
        voicemail_seconds=float(number.voicemail_seconds),
        beep=tones.beep() if number.voicemail else None,
    )


async def _spoken(template: str, record: CallRecord) -> bytes | None:
    """The whisper text rendered for this call by espeak-ng, off the event loop (bounded).

    A failure (espeak-ng missing, too slow, a bad template) means no whisper, not no call."""
    values = {
        "source": record.source or "",
        "number": record.tracking_number,
        "caller": record.caller,
        "tag": record.tag or "",
    }
    try:
        spoken = text.render(template, values)
        prompt = await asyncio.wait_for(
            asyncio.to_thread(tts.text_prompt, spoken), WHISPER_TTS_TIMEOUT
        )
    except (InputError, TimeoutError):
        return None
    return prompt.pcm


def _trunk_of(trunks: Sequence[Trunk], host: str) -> Trunk | None:
    acls = [TrunkAcl(t.name, t.allow, t.host) for t in trunks if t.enabled]
    acl = trunk_for_source(acls, host)
    return next((t for t in trunks if acl is not None and t.name == acl.name), None)


def _dialed(invite: Request, region: str) -> str | None:
    try:
        ruri_user = invite.request_uri.user
    except SipParseError:
        ruri_user = None
    try:
        to_user = invite.to.uri.user
    except SipParseError:
        to_user = None
    raw = dialed_number(ruri_user, to_user)
    if raw is None:
        return None
    try:
        return normalise(raw, region)
    except InputError:
        return None


def _caller(invite: Request, region: str) -> tuple[str, str | None, str | None]:
    """(caller as E.164 when it is a valid number else raw, display name, region)."""
    try:
        from_ = invite.from_
    except SipParseError:
        return "anonymous", None, None
    user = from_.uri.user or "anonymous"
    try:
        e164 = normalise(user, region)
    except InputError:
        return user, from_.display, None
    return e164, from_.display, region_of(e164)


_RECEIVED = re.compile(r"\[?[0-9A-Fa-f:.]{2,45}\]?:\d{1,5}")


def received_from(invite: Request) -> str | None:
    """The carrier-side address a front proxy passed in X-Pbx-Received (HOST:PORT).

    Only called for INVITEs already admitted from a trunk address (the proxy
    is that trunk), so the header is the proxy's word; anything that is not
    an IP:port is ignored rather than stored.
    """
    value = (invite.headers.get("X-Pbx-Received") or "").strip()
    return value if _RECEIVED.fullmatch(value) else None


def _ringing_record(
    invite: Request, route: RouteInfo, trunk: Trunk, region: str, wall: float, node: str | None
) -> CallRecord:
    caller, name, caller_region = _caller(invite, region)
    return CallRecord(
        id=uuid.uuid4().hex,
        inbound_call_id=invite.call_id,
        started_at=iso_utc(wall),
        caller=caller,
        caller_name=name,
        caller_region=caller_region,
        caller_location=caller_location(caller),
        tracking_number=route.number.number,
        source=route.source.name,
        tag=route.source.tag,
        trunk=trunk.name,
        disposition=Disposition.RINGING,
        node=node,
        cost_cents=call_cost_cents(SourceCost(route.source.name, route.source.cost_per_call_cents)),
        received_from=received_from(invite),
    )


async def _block_hit(store: Store, invite: Request, record: CallRecord) -> Block | None:
    """The block list entry that stops this caller, if any (issue 7: block list)."""
    caller = record.caller if record.caller.startswith("+") else None
    try:
        from_user = invite.from_.uri.user
    except SipParseError:
        from_user = None
    anonymous = is_anonymous(from_user, invite.headers.get("Privacy"), caller)
    number = record.tracking_number
    candidates = list(await store.blocks.matching(caller, number)) if caller else []
    if anonymous:
        candidates += await store.blocks.matching(ANONYMOUS, number)
    return blocked(caller, anonymous, candidates, number)


def _rejected(
    record: CallRecord,
    status: int,
    reason: str,
    wall: float,
    disposition: Disposition = Disposition.REJECTED,
) -> Refusal:
    final = replace(
        record,
        cost_cents=None,  # refused: never priced
        disposition=disposition,
        sip_status=status,
        sip_reason=reason,
        ended_at=iso_utc(wall),
        hangup_by="system",
    )
    return Refusal(status, reason, final)


def _open_destinations(route: RouteInfo, wall: float) -> list[Destination] | Reject:
    schedule = Schedule.parsed(route.number.hours) if route.number.hours else None
    now_utc = dt.datetime.fromtimestamp(wall, tz=dt.UTC)
    return choose_destinations(schedule, route.destinations, route.after_hours, now_utc)


async def _targets(
    store: Store, dest: Destination, route: RouteInfo, inbound: Trunk, wall: float
) -> tuple[Target, ...]:
    """A destination's targets: one, or every registered contact of an extension."""
    if dest.kind == "extension":
        return await extension_targets(store, dest, wall)
    if dest.kind == "number":
        target = await _trunk_target(dest, route.trunk or inbound)
    else:
        target = await _sip_target(dest)
    return () if target is None else (target,)


async def _trunk_target(dest: Destination, trunk: Trunk) -> Target | None:
    digits = dest.target[1:] if trunk.strip_plus else dest.target
    user = f"{trunk.prefix}{digits}"
    host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
    params = f";transport={trunk.transport}" if trunk.transport != "udp" else ""
    uri = f"sip:{user}@{host}:{trunk.port}{params}"
    peer = await _peer(trunk.host, trunk.port, trunk.transport)
    if peer is None:
        return None
    if peer.transport == "tls":  # verify the certificate against the trunk's name (SNI)
        peer = replace(peer, server_name=trunk.host.strip("[]"), ca=trunk.tls_ca)
    creds = None
    if trunk.username and trunk.password:
        creds = Credentials(trunk.username, trunk.password)
    return Target(dest.name, uri, peer, creds, trunk.name)


async def _sip_target(dest: Destination) -> Target | None:
    try:
        uri = parse_uri(dest.target)
    except SipParseError:
        return None
    sips = uri.scheme == "sips"  # RFC 5630: TLS to the host the URI names
    transport = as_transport(uri.params.get("transport"), "tls" if sips else "udp")
    if transport is None or (sips and transport != "tls"):
        return None
    peer = await _peer(uri.host, uri.port or (5061 if transport == "tls" else 5060), transport)
    if peer is not None and peer.transport == "tls":
        peer = replace(peer, server_name=uri.host.strip("[]"))
    return None if peer is None else Target(dest.name, dest.target, peer)


async def _peer(host: str, port: int, transport: str) -> Peer | None:
    """Where to send: an IP literal as is, a host name resolved (one lookup per call)."""
    kind = as_transport(transport)
    if kind is None:
        return None
    bare = host.strip("[]")
    address = _literal(bare) or await _resolve(bare)
    if address is None:
        return None
    return Peer(kind, address, port)


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def _resolve(host: str) -> str | None:
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return None
    return str(infos[0][4][0]) if infos else None
