"""Admin use cases behind the CLI: validate input, then call the store (I/O through the store only).

Each use case takes the `Store` and already-parsed CLI values, validates
them completely (raising `InputError` subclasses with one line), and only
then makes one atomic store call, so bad input never changes the database.
The store itself checks references (unknown source / destination / trunk)
and conflicts (duplicates, in-use removals).

Options objects (`TrunkOptions`, `SourceOptions`, `NumberOptions`) carry
`None` for "not given": `add` starts from defaults (or a preset), `update`
from the current row, and the same validation runs on the merged result.

Decisions:
- Names (trunk, destination, source) are 1-64 printable characters without
  leading/trailing spaces; a tracking number's name is its E.164 form.
- A trunk whose host is a name (not an IP) must be given `--allow` CIDRs:
  the store does no DNS, and admitting calls by a name's current address
  would be fragile. `--register` needs `--username` and `--password`.
  CIDRs are normalised (`10.0.0.5/24` -> `10.0.0.0/24`, `1.2.3.4` -> `/32`).
- A destination target is an E.164 number (any spelling `numbers.normalise`
  accepts), `sip:`/`sips:` URI with a host, or `ext:NAME` of an existing
  extension (also written `sip:NAME@local`, stored as `ext:NAME`).
- A source made from a preset copies its type, regexes, tag and position;
  explicit options override them. An onsite source needs a referrer or a
  landing regex; an offsite one may not have either. Regexes are checked
  with `pbx.rules.sources.compile_checked` (the matcher's own rules).
- Money is parsed from `12.50` (at most 2 decimals, up to 1,000,000) into
  integer cents. Setting one cost model on update clears the other.
- Ring timeout is 1-600 seconds (default 20, the store's); position 0-10000.
- Provisioning a number stores `numbers.describe` (region, area code,
  location) so the daemon never loads the geocoder.
- Business hours (`--hours`) are the text `pbx.rules.routing.parse_schedule`
  reads, stored as `Schedule.to_json()`; blank text clears them, and
  clearing them also clears the after-hours list unless `--after-hours` is
  given in the same command. An after-hours list without hours is refused
  (it could never be used). An empty after-hours list (`--after-hours ''`)
  means calls outside the hours are rejected (480).
- `present_tracking_number` (CLI `--present-tracking-number`) shows the
  tracking number as caller ID on outbound legs; the default passes the
  caller's own number through.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import ssl
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from pbx.admin.presets import Preset, load_presets
from pbx.audio.text import check_template
from pbx.errors import InputError, NotFoundError
from pbx.numbers import describe, normalise
from pbx.records import CallFact, CallRecord, Disposition
from pbx.rules.blocking import normalise_pattern
from pbx.rules.roi import RoiRow, SourceCost, roi_report
from pbx.rules.routing import Schedule, parse_schedule
from pbx.rules.sources import compile_checked
from pbx.sip.status import SipParseError
from pbx.sip.uri import parse_host_port, parse_uri
from pbx.store.base import (
    Block,
    Destination,
    DestinationKind,
    Source,
    Store,
    Strategy,
    TrackingNumber,
    Trunk,
    TrunkTransport,
)

MAX_NAME_CHARS = 64
MAX_TAG_CHARS = 64
MAX_DESCRIPTION_CHARS = 500
MAX_CENTS = 100_000_000  # 1,000,000.00
MAX_RING_TIMEOUT = 600
MAX_POSITION = 10_000
MAX_ALLOW = 64
MAX_DESTINATIONS = 32
STRATEGIES: tuple[Strategy, ...] = ("sequential", "simultaneous", "round-robin")
TRANSPORTS: tuple[TrunkTransport, ...] = ("udp", "tcp", "tls")
MAX_CA_BYTES = 256 * 1024  # a CA bundle, not a trust store dump
DEFAULT_RING_TIMEOUT = 20
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MONEY = re.compile(r"^\d{1,7}(\.\d{1,2})?$")


# ---------------------------------------------------------------- field checks


def check_name(kind: str, name: str) -> str:
    """A valid trunk/destination/source name, or `InputError`."""
    if not name or name != name.strip():
        raise InputError(f"{kind} name must be non-empty, without leading or trailing spaces")
    if len(name) > MAX_NAME_CHARS or _CONTROL.search(name):
        raise InputError(f"{kind} name must be at most {MAX_NAME_CHARS} printable characters")
    return name


def parse_host(text: str) -> tuple[str, int | None]:
    """`HOST[:PORT]` or `[IPv6][:PORT]` -> (host, port or None)."""
    try:
        host, port = parse_host_port(text.strip())
    except SipParseError as exc:
        raise InputError(f"invalid --host {text!r}: {exc}") from None
    if not host:
        raise InputError(f"invalid --host {text!r}")
    return host, port


def parse_cidr(text: str) -> str:
    """An IPv4/IPv6 network or address, normalised (`1.2.3.4` -> `1.2.3.4/32`)."""
    try:
        return str(ipaddress.ip_network(text.strip(), strict=False))
    except ValueError:
        raise InputError(f"invalid --allow {text!r}: not an IP address or CIDR") from None


def parse_money(text: str, option: str) -> int:
    """`12.50` -> 1250 cents."""
    if not _MONEY.match(text.strip()):
        raise InputError(f"invalid {option} {text!r}: use an amount like 12.50")
    try:
        cents = int(Decimal(text.strip()) * 100)
    except InvalidOperation:
        raise InputError(f"invalid {option} {text!r}: use an amount like 12.50") from None
    if cents > MAX_CENTS:
        raise InputError(f"invalid {option} {text!r}: at most 1000000.00")
    return cents


def check_regex(text: str, option: str) -> str:
    try:
        compile_checked(text)
    except InputError as exc:
        raise InputError(f"{option}: {exc}") from None
    return text


def check_ring_timeout(seconds: int) -> int:
    if not 1 <= seconds <= MAX_RING_TIMEOUT:
        raise InputError(f"--ring-timeout must be 1-{MAX_RING_TIMEOUT} seconds (got {seconds})")
    return seconds


def check_position(position: int) -> int:
    if not 0 <= position <= MAX_POSITION:
        raise InputError(f"--position must be 0-{MAX_POSITION} (got {position})")
    return position


def check_number(raw: str, region: str) -> str:
    """E.164 form of a tracking number written by an admin."""
    return normalise(raw, region)


def _optional_text(text: str | None, option: str, limit: int) -> str | None:
    """`""` clears (None); otherwise the stripped text, at most `limit` characters."""
    if text is None or not text.strip():
        return None
    if len(text) > limit or _CONTROL.search(text):
        raise InputError(f"{option} must be at most {limit} printable characters")
    return text.strip()


# ---------------------------------------------------------------- trunks


@dataclass(frozen=True, slots=True)
class TrunkOptions:
    """Trunk fields from the CLI; None = not given."""

    host: str | None = None
    transport: str | None = None
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)  # never in a repr
    realm: str | None = None
    register: bool | None = None
    allow: tuple[str, ...] | None = None
    prefix: str | None = None
    strip_plus: bool | None = None
    enabled: bool | None = None
    rename: str | None = None
    tls_ca: str | None = None  # PEM text of --ca FILE; "" clears


def check_ca(pem: str, origin: str = "--ca") -> str:
    """PEM CA certificate(s) a TLS client can trust (`InputError` otherwise); "" stays ""."""
    if not pem:
        return ""
    if len(pem) > MAX_CA_BYTES or "-----BEGIN CERTIFICATE-----" not in pem:
        raise InputError(f"{origin}: not a PEM CA certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as exc:
        raise InputError(f"{origin}: the certificate does not load ({exc})") from None
    return pem


def _trunk_text_changes(opts: TrunkOptions) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for field in ("username", "password", "realm"):
        value = getattr(opts, field)
        if value is not None:
            changes[field] = _optional_text(value, f"--{field}", 256)
    if opts.prefix is not None:
        if not re.fullmatch(r"[0-9*#+]{0,16}", opts.prefix):
            raise InputError(f"--prefix must be up to 16 of 0-9*#+ (got {opts.prefix!r})")
        changes["prefix"] = opts.prefix
    for field in ("register", "strip_plus", "enabled"):
        if getattr(opts, field) is not None:
            changes[field] = getattr(opts, field)
    return changes


def _apply_trunk(base: Trunk, opts: TrunkOptions) -> Trunk:
    changes = _trunk_text_changes(opts)
    if opts.host is not None:
        host, port = parse_host(opts.host)
        tls = (opts.transport or base.transport) == "tls"
        changes |= {"host": host, "port": port or (5061 if tls else 5060)}  # RFC 3261 §19.1.2
    if opts.transport is not None:
        if opts.transport not in TRANSPORTS:
            raise InputError(f"--transport must be udp, tcp or tls (got {opts.transport!r})")
        changes["transport"] = opts.transport
    if opts.tls_ca is not None:
        changes["tls_ca"] = check_ca(opts.tls_ca)
    if opts.allow is not None:
        if len(opts.allow) > MAX_ALLOW:
            raise InputError(f"at most {MAX_ALLOW} --allow networks")
        changes["allow"] = tuple(dict.fromkeys(parse_cidr(a) for a in opts.allow))
    if opts.rename is not None:
        changes["name"] = check_name("trunk", opts.rename)
    return replace(base, **changes)


def _check_trunk(trunk: Trunk) -> Trunk:
    if (trunk.username is None) != (trunk.password is None):
        raise InputError("--username and a password go together (give it with --password-stdin)")
    if trunk.register and trunk.username is None:
        raise InputError("--register needs --username and a password (--password-stdin)")
    if trunk.tls_ca and trunk.transport != "tls":
        raise InputError("--ca is for --transport tls (clear it with --ca '')")
    if not trunk.allow and not _is_ip(trunk.host):
        raise InputError(
            f"trunk host {trunk.host} is a name: give the provider's addresses with --allow CIDR"
        )
    return trunk


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def add_trunk(store: Store, name: str, opts: TrunkOptions) -> Trunk:
    if opts.host is None:
        raise InputError("--host is required")
    base = Trunk(name=check_name("trunk", name), host="")
    return await store.trunks.add(_check_trunk(_apply_trunk(base, opts)))


async def update_trunk(store: Store, name: str, opts: TrunkOptions) -> Trunk:
    current = await require(store.trunks.get(name), f"no trunk named '{name}'")
    new = _check_trunk(_apply_trunk(current, opts))
    return await store.trunks.update(name, **_changes(current, new))


# ---------------------------------------------------------------- destinations


async def parse_target(store: Store, text: str, region: str) -> tuple[str, DestinationKind]:
    """(normalised target, kind) for an E.164 number, a sip:/sips: URI or ext:NAME."""
    target = text.strip()
    lowered = target.lower()
    if lowered.startswith(("sip:", "sips:")):
        try:
            uri = parse_uri(target)
        except SipParseError as exc:
            raise InputError(f"invalid SIP URI {target!r}: {exc}") from None
        if not uri.host:
            raise InputError(f"invalid SIP URI {target!r}: no host")
        if uri.host.lower() != "local" or not uri.user or uri.port is not None:
            return str(uri), "sip"
        target = f"ext:{uri.user}"  # sip:NAME@local is another spelling of ext:NAME
    if target.lower().startswith("ext:"):
        name = target[4:]
        if await store.extensions.get(name) is None:
            raise NotFoundError(f"no extension named '{name}' (add it with pbx extensions add)")
        return f"ext:{name}", "extension"
    return normalise(target, region), "number"


async def add_destination(store: Store, name: str, target: str, region: str) -> Destination:
    check_name("destination", name)
    value, kind = await parse_target(store, target, region)
    return await store.destinations.add(Destination(name=name, target=value, kind=kind))


async def update_destination(
    store: Store, name: str, *, target: str | None, rename: str | None, region: str
) -> Destination:
    current = await require(store.destinations.get(name), f"no destination named '{name}'")
    new = current
    if target is not None:
        value, kind = await parse_target(store, target, region)
        new = replace(new, target=value, kind=kind)
    if rename is not None:
        new = replace(new, name=check_name("destination", rename))
    return await store.destinations.update(name, **_changes(current, new))


# ---------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class SourceOptions:
    """Source fields from the CLI; None = not given, `""` clears a text field."""

    description: str | None = None
    onsite: bool | None = None
    referrer: str | None = None
    landing: str | None = None
    position: int | None = None
    last_touch: bool | None = None
    tag: str | None = None
    cost_per_call: str | None = None
    monthly_budget: str | None = None
    no_cost: bool = False
    enabled: bool | None = None
    rename: str | None = None
    ga_measurement_id: str | None = None
    ga_api_secret: str | None = None
    ga_source: str | None = None
    ga_medium: str | None = None
    ga_campaign: str | None = None
    geo: bool | None = None
    fallback_number: str | None = None  # E.164 (the CLI normalises it), "" clears
    record: bool | None = None  # issue 13: record every number of the source
    disclosure: str | None = None  # its default consent prompt, "" clears


def source_from_preset(name: str, preset: Preset) -> Source:
    return Source(
        name=name,
        preset=preset.key,
        description=preset.description,
        onsite=preset.onsite,
        referrer=preset.referrer,
        landing=preset.landing,
        position=preset.position,
        tag=preset.tag,
    )


def _apply_cost(source: Source, opts: SourceOptions) -> Source:
    given = [o for o in (opts.cost_per_call, opts.monthly_budget) if o is not None]
    if len(given) + opts.no_cost > 1:
        raise InputError("give only one of --cost-per-call, --monthly-budget and --no-cost")
    if opts.no_cost:
        return replace(source, cost_per_call_cents=None, monthly_budget_cents=None)
    if opts.cost_per_call is not None:
        cents = parse_money(opts.cost_per_call, "--cost-per-call")
        return replace(source, cost_per_call_cents=cents, monthly_budget_cents=None)
    if opts.monthly_budget is not None:
        cents = parse_money(opts.monthly_budget, "--monthly-budget")
        return replace(source, cost_per_call_cents=None, monthly_budget_cents=cents)
    return source


def _apply_source(base: Source, opts: SourceOptions) -> Source:
    changes: dict[str, Any] = {}
    if opts.description is not None:
        text = _optional_text(opts.description, "--description", MAX_DESCRIPTION_CHARS)
        changes["description"] = text or ""
    for option, field in (("--referrer", "referrer"), ("--landing", "landing")):
        value = getattr(opts, field)
        if value is not None:
            changes[field] = check_regex(value, option) if value else None
    if opts.tag is not None:
        changes["tag"] = _optional_text(opts.tag, "--tag", MAX_TAG_CHARS)
    if opts.position is not None:
        changes["position"] = check_position(opts.position)
    for field in ("onsite", "last_touch", "enabled", "record"):
        if getattr(opts, field) is not None:
            changes[field] = getattr(opts, field)
    if opts.disclosure is not None:
        changes["disclosure"] = opts.disclosure.strip() or None
    if opts.rename is not None:
        changes["name"] = check_name("source", opts.rename)
    return _apply_attribution(replace(_apply_cost(base, opts), **changes), opts)


_GA_MEASUREMENT_ID = re.compile(r"^G-[A-Z0-9]{4,20}$")
_GA_TEXT = re.compile(r"^[^\s]{1,100}$")
MAX_GA_TEXT_CHARS = 100  # GA4 Measurement Protocol limit for parameter values


def _apply_attribution(source: Source, opts: SourceOptions) -> Source:
    """GA fields, --geo and --fallback-number (issue 6); '' clears a text field."""
    changes: dict[str, Any] = {}
    for field in ("ga_source", "ga_medium", "ga_campaign"):
        value = getattr(opts, field)
        if value is not None:
            option = "--" + field.replace("_", "-")
            changes[field] = _optional_text(value, option, MAX_GA_TEXT_CHARS)
    if opts.ga_measurement_id is not None:
        mid = opts.ga_measurement_id.strip().upper()
        if mid and not _GA_MEASUREMENT_ID.match(mid):
            raise InputError(f"--ga-measurement-id must look like G-ABC123XYZ (got {mid!r})")
        changes["ga_measurement_id"] = mid or None
    if opts.ga_api_secret is not None:
        secret = opts.ga_api_secret.strip()
        if secret and not _GA_TEXT.match(secret):
            raise InputError("--ga-api-secret must be 1-100 characters without spaces")
        changes["ga_api_secret"] = secret or None
    if opts.geo is not None:
        changes["geo"] = opts.geo
    if opts.fallback_number is not None:
        changes["fallback_number"] = (
            check_number(opts.fallback_number, "US") if opts.fallback_number else None
        )
    new = replace(source, **changes)
    if bool(new.ga_measurement_id) != bool(new.ga_api_secret):
        raise InputError("give --ga-measurement-id and --ga-api-secret together")
    return new


def parse_month(text: str) -> tuple[int, int]:
    """`YYYY-MM` -> (year, month) for `pbx report roi --month`."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise InputError(f"--month must be YYYY-MM (got {text!r})")
    return int(match.group(1)), int(match.group(2))


def _fact(record: CallRecord) -> CallFact:
    caller = record.caller if record.caller.startswith("+") else None  # anonymous callers
    # A voicemail was answered by pbx, not by anyone at the business: not "answered" here.
    answered = record.answered_at is not None and record.disposition is not Disposition.VOICEMAIL
    return CallFact(record.source, record.started_at, caller, answered, record.cost_cents)


async def roi_rows(store: Store, month: tuple[int, int]) -> list[RoiRow]:
    """`pbx report roi`: per-source figures for one UTC month (pbx.rules.roi)."""
    start = f"{month[0]:04d}-{month[1]:02d}-01T00:00:00.000000Z"
    records = await store.calls.list()
    facts = [_fact(r) for r in records if r.started_at >= start]
    prior = {r.caller for r in records if r.started_at < start and r.caller.startswith("+")}
    costs = [
        SourceCost(s.name, s.cost_per_call_cents, s.monthly_budget_cents)
        for s in await store.sources.list()
    ]
    return roi_report(facts, costs, month, prior)


def _check_source(source: Source) -> Source:
    has_rule = source.referrer is not None or source.landing is not None
    if source.onsite and not has_rule:
        raise InputError("an onsite source needs --referrer or --landing")
    if not source.onsite and has_rule:
        raise InputError("--referrer and --landing are for onsite sources (add --onsite)")
    return source


def find_preset(key: str) -> Preset:
    presets = load_presets()
    if key not in presets:
        raise NotFoundError(f"no preset '{key}' (see pbx sources presets)")
    return presets[key]


async def add_source(
    store: Store, name: str | None, preset_key: str | None, opts: SourceOptions
) -> Source:
    preset = find_preset(preset_key) if preset_key is not None else None
    if name is None:
        if preset is None:
            raise InputError("give a NAME, or --preset KEY to use the preset's name")
        name = preset.name
    check_name("source", name)
    base = source_from_preset(name, preset) if preset else Source(name=name)
    source = _check_source(_apply_source(base, opts))
    await _check_disclosure(store, source)
    return await store.sources.add(source)


async def update_source(store: Store, name: str, opts: SourceOptions) -> Source:
    current = await require(store.sources.get(name), f"no source named '{name}'")
    new = _check_source(_apply_source(current, opts))
    await _check_disclosure(store, new)
    return await store.sources.update(name, **_changes(current, new))


async def _check_disclosure(store: Store, source: Source) -> None:
    """A source's --disclosure must name a prompt (numbers are checked by the store)."""
    name = source.disclosure
    if name is not None and await store.prompts.get(name) is None:
        raise NotFoundError(f"no prompt named '{name}' (pbx prompts add {name} ...)")


# ---------------------------------------------------------------- numbers


@dataclass(frozen=True, slots=True)
class NumberOptions:
    """Tracking-number fields from the CLI; None = not given, trunk `""` = default trunk."""

    source: str | None = None
    destinations: tuple[str, ...] | None = None
    strategy: str | None = None
    ring_timeout: int | None = None
    trunk: str | None = None
    enabled: bool | None = None
    hours: str | None = None
    after_hours: tuple[str, ...] | None = None
    present_tracking_number: bool | None = None
    # Audio (issue 13): prompt names ('' clears), flags, seconds.
    record: bool | None = None
    disclosure: str | None = None
    whisper: str | None = None
    whisper_text: str | None = None
    screen: bool | None = None
    screen_seconds: int | None = None
    voicemail: str | None = None
    voicemail_seconds: int | None = None


def parse_hours(text: str) -> str | None:
    """`--hours` text -> the stored `Schedule.to_json()`; blank -> None (no hours)."""
    if not text.strip():
        return None
    try:
        return parse_schedule(text).to_json()
    except InputError as exc:
        raise InputError(f"invalid --hours: {exc}") from None


def hours_text(stored: str | None) -> str | None:
    """A stored schedule as the text `--hours` accepts (None when there is none)."""
    return None if stored is None else Schedule.from_json(stored).to_text()


def _apply_number(base: TrackingNumber, opts: NumberOptions) -> TrackingNumber:
    changes: dict[str, Any] = {}
    if opts.destinations is not None:
        changes["destinations"] = _check_destinations(opts.destinations, "--destination")
    if opts.strategy is not None:
        if opts.strategy not in STRATEGIES:
            raise InputError(f"--strategy must be one of {'|'.join(STRATEGIES)}")
        changes["strategy"] = opts.strategy
    if opts.ring_timeout is not None:
        changes["ring_timeout"] = check_ring_timeout(opts.ring_timeout)
    if opts.trunk is not None:
        changes["trunk"] = opts.trunk or None
    for field in ("source", "enabled", "present_tracking_number", "record", "screen"):
        if getattr(opts, field) is not None:
            changes[field] = getattr(opts, field)
    return _apply_hours(replace(base, **changes, **_audio_changes(opts)), opts)


MAX_SCREEN_SECONDS = 60
MAX_VOICEMAIL_SECONDS = 3600


def _audio_changes(opts: NumberOptions) -> dict[str, Any]:
    """--disclosure/--whisper/--voicemail ('' clears), --whisper-text, the seconds."""
    changes: dict[str, Any] = {}
    for field in ("disclosure", "whisper", "voicemail"):
        value = getattr(opts, field)
        if value is not None:
            changes[field] = value.strip() or None
    if opts.whisper_text is not None:
        text = opts.whisper_text.strip()
        if text:
            whisper_template(text)
        changes["whisper_text"] = text or None
    for field, limit in (("screen_seconds", MAX_SCREEN_SECONDS),
                         ("voicemail_seconds", MAX_VOICEMAIL_SECONDS)):  # fmt: skip
        value = getattr(opts, field)
        if value is not None:
            if not 1 <= value <= limit:
                option = "--" + field.replace("_", "-")
                raise InputError(f"{option} must be 1-{limit} seconds (got {value})")
            changes[field] = value
    return changes


def whisper_template(template: str) -> None:
    """InputError (one line) unless `template` is a usable --whisper-text."""
    check_template(template)


def _apply_hours(number: TrackingNumber, opts: NumberOptions) -> TrackingNumber:
    if opts.hours is not None:
        hours = parse_hours(opts.hours)
        number = replace(number, hours=hours)
        if hours is None and opts.after_hours is None:
            number = replace(number, after_hours=())  # no hours: nothing is "after hours"
    if opts.after_hours is not None:
        names = tuple(n for n in opts.after_hours if n)
        after = _check_destinations(names, "--after-hours", empty_ok=True)
        number = replace(number, after_hours=after)
    if number.after_hours and number.hours is None:
        raise InputError("--after-hours needs business hours: give --hours too")
    return number


def _check_destinations(
    names: Sequence[str], option: str, *, empty_ok: bool = False
) -> tuple[str, ...]:
    if not names and not empty_ok:
        raise InputError(f"give at least one {option}")
    if len(names) > MAX_DESTINATIONS:
        raise InputError(f"at most {MAX_DESTINATIONS} {option} destinations per number")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise InputError(f"destination '{name}' is given twice in {option}")
        seen.add(name)
    return tuple(names)


async def add_number(store: Store, raw: str, opts: NumberOptions, region: str) -> TrackingNumber:
    e164 = check_number(raw, region)
    if opts.source is None:
        raise InputError("--source is required")
    if opts.destinations is None:
        raise InputError("give at least one --destination")
    info = describe(e164)
    base = TrackingNumber(
        number=e164,
        source=opts.source,
        destinations=(),
        ring_timeout=DEFAULT_RING_TIMEOUT,
        region=info.region,
        area_code=info.area_code,
        location=info.location,
    )
    return await store.numbers.add(_apply_number(base, opts))


async def update_number(store: Store, raw: str, opts: NumberOptions, region: str) -> TrackingNumber:
    e164 = check_number(raw, region)
    current = await require(store.numbers.get(e164), f"no tracking number {e164}")
    new = _apply_number(current, opts)
    return await store.numbers.update(e164, **_changes(current, new))


async def remove_number(store: Store, raw: str, region: str) -> str:
    e164 = check_number(raw, region)
    await store.numbers.remove(e164)
    return e164


async def get_number(store: Store, raw: str, region: str) -> TrackingNumber:
    e164 = check_number(raw, region)
    return await require(store.numbers.get(e164), f"no tracking number {e164}")


# ---------------------------------------------------------------- blocks


async def add_block(store: Store, pattern: str, number: str | None, region: str) -> Block:
    """Block a caller number, a `+digits` prefix or `anonymous`, globally or for `number`."""
    block = Block(
        pattern=normalise_pattern(pattern, region),
        number=None if number is None else check_number(number, region),
    )
    return await store.blocks.add(block)


async def remove_block(store: Store, pattern: str, number: str | None, region: str) -> Block:
    block = Block(
        pattern=normalise_pattern(pattern, region),
        number=None if number is None else check_number(number, region),
    )
    await store.blocks.remove(block.pattern, block.number)
    return block


async def list_blocks(store: Store, number: str | None, region: str) -> list[Block]:
    """Every block, or only those set for tracking `number` (`--number`)."""
    if number is None:
        return await store.blocks.list()
    e164 = check_number(number, region)
    await require(store.numbers.get(e164), f"no tracking number {e164}")
    return await store.blocks.list(number=e164)


# ---------------------------------------------------------------- helpers

Row = Trunk | Destination | Source | TrackingNumber
T = TypeVar("T")


async def require(pending: Awaitable[T | None], message: str) -> T:
    found = await pending
    if found is None:
        raise NotFoundError(message)
    return found


def _changes(current: Row, new: Row) -> dict[str, object]:
    """Fields of `new` that differ from `current` (never `id`)."""
    names = [f.name for f in fields(current) if f.name != "id"]
    return {n: getattr(new, n) for n in names if getattr(new, n) != getattr(current, n)}
