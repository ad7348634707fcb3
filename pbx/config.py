"""Daemon settings: TOML file, then `PBX_*` env vars, then CLI overrides, validated once.

Not pure (reads the TOML file), but does no other I/O. `load_settings`
returns a frozen `Settings` tree or raises `ConfigError` with one line that
names the bad key, e.g. `config: rtp.port_low must be even (got 10001)`.

Keys are `section.key`, exactly the tables and keys of
`config/pbx.example.toml` (which documents each one). Layering, last wins:
1. the defaults below (the dataclass field defaults);
2. the TOML file, if a path is given (unknown tables/keys are errors: typos
   must not be silently ignored);
3. environment variables `PBX_<SECTION>_<KEY>` (e.g. `PBX_RTP_PORT_LOW`,
   `PBX_SIP_TRANSPORTS=udp,tcp`), plus `PBX_DB` as an alias of
   `PBX_STORE_PATH` (the CLI's variable). Variables for unknown sections
   are ignored; an unknown key in a known section is an error;
4. `overrides`: dotted keys (`{"sip.port": 5070}`), built by the CLI with
   `parse_listen` / `parse_port_range` from flags such as `--sip HOST:PORT`.

Decisions:
- `rtp.host` (where RTP sockets bind) defaults to `sip.host`, and
  `rtp.advertised_address` (the address written into SDP) defaults to
  `rtp.host`. If that ends up a wildcard (`0.0.0.0`, `::`), the daemon must
  substitute a concrete local address before writing SDP (`0.0.0.0` in SDP
  means "on hold", RFC 3264 §8.4): `Settings.media_address_is_wildcard`.
- The RTP range may not contain `sip.port` or `http.port`.
- Timers are seconds (float); `timers.t1` etc. follow RFC 3261 §17.1.1.1.
- Relative `store.path` is relative to the working directory.
- Attribution and integrations (issue 6): `http.cors_origins`,
  `http.trusted_proxies`, `[visits]`, `[ga4]`, `[webhooks]`, `[outbox]`; GA4's
  measurement id and API secret are set together or not at all.
- Overload (issue 7): `calls.max_per_trunk`, `calls.max_per_number`,
  `calls.max_cps_per_source` (0 = no limit, like `calls.max_concurrent`),
  `calls.retry_after`, `[flood]` (per-address flood guard, `flood.rate = 0`
  turns it off) and `metrics.enabled`. Booleans accept TOML true/false and,
  from the environment, true/false/yes/no/on/off/1/0.
- `timers.ring_timeout` applies to calls that have no tracking number of
  their own (e.g. to a local extension); every tracking number stores its
  own ring timeout (`pbx numbers add --ring-timeout`, default 20 s, the
  same as this default).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import phonenumbers

from pbx.errors import ConfigError, InputError
from pbx.store.url import parse_store_url

TRANSPORTS = ("udp", "tcp", "tls")
ENGINES = ("builtin", "rtpengine")
LOG_FORMATS = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
DEFAULT_DB = Path("data/pbx.sqlite3")
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*$"
)
_WILDCARDS = ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class SipSettings:
    host: str = "0.0.0.0"
    port: int = 5060
    transports: tuple[str, ...] = ("udp", "tcp")  # and "tls" (needs tls_cert, tls_key)
    # Live SIP transactions at most (6.7 KiB each, bench/transactions.py): new requests beyond
    # get a stateless 503. Sized for memory (~650 MiB), not to cap the rate (500 CPS ~ 48k).
    max_transactions: int = 100_000
    tls_port: int = 5061  # SIP over TLS (when "tls" is in transports)
    tls_cert: str = ""  # PEM certificate chain file
    tls_key: str = ""  # PEM private key file
    # seconds without a byte either way before a TCP/TLS connection is closed (0 = never);
    # pbx.sip.idle: above RFC 5626's 95-120 s keep-alives and every transaction timer
    tcp_idle_timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class RtpSettings:
    host: str = ""  # "" = sip.host
    port_low: int = 10000
    port_high: int = 20000
    advertised_address: str = ""  # "" = rtp.host
    engine: str = "builtin"  # builtin (pbx's own relay) | rtpengine (drive rtpengine over ng)
    rtpengine: tuple[str, ...] = ()  # ng control addresses HOST:PORT, in failover order
    # relay processes: -1 = one per core beyond the first, at least 1 (resolved at load:
    # `default_workers`); 0 = in the daemon's process; N = N processes
    workers: int = -1


@dataclass(frozen=True, slots=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    cors_origins: tuple[str, ...] = ()  # sites allowed to call the visitor API; "*" = any
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed
    status_allow: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # who may read /health, /metrics


@dataclass(frozen=True, slots=True)
class StoreSettings:
    path: Path = DEFAULT_DB  # the SQLite file when `url` is empty
    url: str = ""  # a path, sqlite:///PATH or postgresql://...; wins over `path`

    @property
    def location(self) -> str | Path:
        """What `pbx.store.open_store` takes."""
        return self.url or self.path

    @property
    def display(self) -> str:
        """The location for messages (a URL's password hidden)."""
        return parse_store_url(self.location).display


@dataclass(frozen=True, slots=True)
class AdminSettings:
    host: str = "127.0.0.1"  # the dashboard and REST API listener; never the public one
    port: int = 8081
    secure_cookies: bool = False  # mark the session cookie Secure (set behind a TLS proxy)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    id: str = ""  # this node's name in a cluster; "" = the host name
    lease_seconds: float = 9.0  # renewed every third of it; expired -> its calls interrupted


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    dir: Path = Path("data/recordings")
    retention_days: int = 90  # recordings older than this are deleted daily; 0 = keep forever


@dataclass(frozen=True, slots=True)
class PhoneSettings:
    default_region: str = "US"


@dataclass(frozen=True, slots=True)
class LogSettings:
    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True, slots=True)
class TimerSettings:
    t1: float = 0.5  # RFC 3261 §17.1.1.1: RTT estimate
    t2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    t4: float = 5.0  # maximum time a message stays in the network
    ring_timeout: float = 20.0  # calls without a number's own value (a number's default is 20)
    media_timeout: float = 60.0  # no RTP from either side for this long ends the call
    drain_timeout: float = 30.0  # on SIGTERM: wait this long for calls in progress


@dataclass(frozen=True, slots=True)
class RegistrarSettings:
    realm: str = "pbx"
    default_expires: int = 3600  # RFC 3261 §10.2.1.1
    min_expires: int = 60  # below this: 423 Interval Too Brief (RFC 3261 §10.3 step 7)
    max_expires: int = 7200


@dataclass(frozen=True, slots=True)
class CallSettings:
    max_concurrent: int = 0  # 0 = unlimited; above it new calls get 503
    max_per_trunk: int = 0  # calls in progress per trunk; 0 = unlimited
    max_per_number: int = 0  # calls in progress per tracking number; 0 = unlimited
    max_cps_per_source: float = 0.0  # new INVITEs per second per source address; 0 = unlimited
    retry_after: int = 5  # seconds in the Retry-After of a 503 for a call over a limit
    block_status: int = 603  # answer to a blocked caller (603 Decline; 486 or 403 also common)
    max_loop_lag: float = 0.25  # mean event-loop lag (s) past which new calls get 503; 0 = off
    max_loop_busy: float = 0.9  # loop thread busy fraction kept by refusing a share; 0 = off


@dataclass(frozen=True, slots=True)
class FloodSettings:
    rate: float = 50.0  # datagrams/s one address may send, sustained; 0 = flood guard off
    burst: float = 200.0  # ... and at once
    ban_after: int = 100  # datagrams answered 503 (within `window` s) before the address is banned
    window: float = 10.0
    ban_seconds: float = 60.0  # a banned address is ignored this long
    max_addresses: int = 10_000  # addresses remembered (LRU): bounds memory under spoofed floods
    exempt_trunks: bool = True  # trunk addresses (allow lists, IP hosts) are never throttled


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    enabled: bool = True  # GET /metrics on the HTTP server (Prometheus text format)


@dataclass(frozen=True, slots=True)
class VisitSettings:
    session_length: float = 1800.0  # seconds after the last ping a visit holds its number
    default_source: str = ""  # source of visits no onsite source matches; "" = none
    geoip_db: str = ""  # GeoLite2/GeoIP2 City .mmdb for GeoContact; "" = off
    area_codes: str = ""  # area-code centroids CSV; "" = the shipped data/area_codes.csv
    max_new_per_ip: int = 60  # new visits one IP may start per session_length; 0 = no limit
    max_requests_per_minute: int = 120  # visitor API requests (pings, preflights) per IP; 0 = off


@dataclass(frozen=True, slots=True)
class Ga4Settings:
    measurement_id: str = ""  # global GA4 property (a source's own id wins); "" = off
    api_secret: str = field(default="", repr=False)  # a secret: never in a repr
    base_url: str = "https://www.google-analytics.com"  # Measurement Protocol host
    event_name: str = "phone_call"


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    urls: tuple[str, ...] = ()
    secret: str = field(default="", repr=False)  # HMAC key of X-Pbx-Signature; "" = unsigned


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    poll_interval: float = 1.0  # seconds between looks for due deliveries
    backoff_base: float = 5.0  # first retry after this long, then doubled
    backoff_max: float = 3600.0  # retries are never further apart than this
    max_attempts: int = 30  # then the item is kept but given up
    timeout: float = 10.0  # seconds per HTTP attempt


@dataclass(frozen=True, slots=True)
class Settings:
    sip: SipSettings = field(default_factory=SipSettings)
    rtp: RtpSettings = field(default_factory=RtpSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    admin: AdminSettings = field(default_factory=AdminSettings)
    node: NodeSettings = field(default_factory=NodeSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    phone: PhoneSettings = field(default_factory=PhoneSettings)
    log: LogSettings = field(default_factory=LogSettings)
    timers: TimerSettings = field(default_factory=TimerSettings)
    registrar: RegistrarSettings = field(default_factory=RegistrarSettings)
    calls: CallSettings = field(default_factory=CallSettings)
    flood: FloodSettings = field(default_factory=FloodSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    visits: VisitSettings = field(default_factory=VisitSettings)
    ga4: Ga4Settings = field(default_factory=Ga4Settings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    outbox: OutboxSettings = field(default_factory=OutboxSettings)

    @property
    def media_address_is_wildcard(self) -> bool:
        """True when the daemon must pick a concrete address for SDP itself."""
        return self.rtp.advertised_address in _WILDCARDS


def _schema() -> dict[str, dict[str, Any]]:
    """{section: {key: type}} from the dataclasses above."""
    sections = get_type_hints(Settings)
    return {name: get_type_hints(cls) for name, cls in sections.items()}


_SCHEMA = _schema()
Flat = dict[str, object]


def _defaults() -> Flat:
    flat: Flat = {}
    for section in dataclasses.fields(Settings):
        value = getattr(Settings(), section.name)
        for key in _SCHEMA[section.name]:
            flat[f"{section.name}.{key}"] = getattr(value, key)
    return flat


# -- conversion of one raw value (TOML, env string or CLI value) to its type --


def _bad(key: str, want: str, got: object) -> ConfigError:
    return ConfigError(f"config: {key} must be {want} (got {got!r})")


def _to_int(key: str, raw: object) -> int:
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            raise _bad(key, "an integer", raw) from None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _bad(key, "an integer", raw)
    return raw


def _to_float(key: str, raw: object) -> float:
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            raise _bad(key, "a number of seconds", raw) from None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _bad(key, "a number of seconds", raw)
    return float(raw)


_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def _to_bool(key: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise _bad(key, "true or false", raw)


def _to_str(key: str, raw: object) -> str:
    if not isinstance(raw, str):
        raise _bad(key, "a string", raw)
    return raw.strip()


def _to_path(key: str, raw: object) -> Path:
    if isinstance(raw, Path):
        return raw
    text = _to_str(key, raw)
    if not text:
        raise _bad(key, "a file path", raw)
    return Path(text)


def _to_str_tuple(key: str, raw: object) -> tuple[str, ...]:
    if isinstance(raw, str):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if isinstance(raw, list | tuple) and all(isinstance(item, str) for item in raw):
        return tuple(str(item).strip() for item in raw)
    raise _bad(key, "a list of strings", raw)


_CONVERTERS: dict[object, Callable[[str, object], object]] = {
    bool: _to_bool,
    int: _to_int,
    float: _to_float,
    str: _to_str,
    Path: _to_path,
    tuple[str, ...]: _to_str_tuple,
}


def _convert(key: str, raw: object) -> object:
    section, name = key.split(".", 1)
    return _CONVERTERS[_SCHEMA[section][name]](key, raw)


# -- the three layers --


def _known_key(key: str, origin: str) -> str:
    section, _, name = key.partition(".")
    if section not in _SCHEMA or name not in _SCHEMA[section]:
        raise ConfigError(f"config: unknown key {key} ({origin})")
    return key


def _read_toml(path: Path) -> Flat:
    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {path} is not valid TOML: {exc}") from None
    flat: Flat = {}
    for section, table in document.items():
        if not isinstance(table, dict):
            raise ConfigError(f"config: {section} must be a table [{section}] (in {path})")
        for name, raw in table.items():
            key = _known_key(f"{section}.{name}", f"in {path}")
            flat[key] = _convert(key, raw)
    return flat


def _from_env(env: Mapping[str, str]) -> Flat:
    flat: Flat = {}
    for var, raw in env.items():
        if var == "PBX_DB":
            var = "PBX_STORE_PATH"
        if not var.startswith("PBX_"):
            continue
        section, _, name = var[4:].lower().partition("_")
        if section not in _SCHEMA:
            continue
        key = _known_key(f"{section}.{name}", f"env {var}")
        flat[key] = _convert(key, raw)
    return flat


def _from_overrides(overrides: Mapping[str, object]) -> Flat:
    flat: Flat = {}
    for key, raw in overrides.items():
        if raw is None:
            continue
        known = _known_key(key, "command line")
        flat[known] = _convert(known, raw)
    return flat


# -- validation (once, on the merged and typed values) --


def _check_host(key: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise _bad(key, "an IP address or host name", host) from None


def _check_port(key: str, port: int) -> None:
    if not 1 <= port <= 65535:
        raise _bad(key, "a port 1-65535", port)


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise _bad(key, "one of " + "|".join(choices), value)


def _check_positive(key: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise _bad(key, "zero or more" if allow_zero else "more than zero", value)


def _check_listen(s: Settings) -> None:
    for key, host in (
        ("sip.host", s.sip.host),
        ("rtp.host", s.rtp.host),
        ("rtp.advertised_address", s.rtp.advertised_address),
        ("http.host", s.http.host),
    ):
        _check_host(key, host)
    _check_port("sip.port", s.sip.port)
    if s.sip.max_transactions < 100:
        raise _bad("sip.max_transactions", "at least 100", s.sip.max_transactions)
    if not 0 <= s.sip.tcp_idle_timeout <= 86_400:
        raise _bad("sip.tcp_idle_timeout", "0 (never) to 86400 seconds", s.sip.tcp_idle_timeout)
    _check_port("http.port", s.http.port)
    if not s.sip.transports or len(set(s.sip.transports)) != len(s.sip.transports):
        raise _bad("sip.transports", "a non-empty list without repeats", list(s.sip.transports))
    for transport in s.sip.transports:
        _check_choice("sip.transports", transport, TRANSPORTS)
    _check_host("admin.host", s.admin.host)
    _check_port("admin.port", s.admin.port)
    if "tls" in s.sip.transports:
        _check_port("sip.tls_port", s.sip.tls_port)
        for key, value in (("sip.tls_cert", s.sip.tls_cert), ("sip.tls_key", s.sip.tls_key)):
            if not value:
                raise ConfigError(f"config: {key} must name a PEM file when sip.transports has tls")


def _check_rtp(s: Settings) -> None:
    _check_choice("rtp.engine", s.rtp.engine, ENGINES)
    if s.rtp.engine == "rtpengine" and not s.rtp.rtpengine:
        raise ConfigError("config: rtp.rtpengine must list HOST:PORT when rtp.engine is rtpengine")
    for address in s.rtp.rtpengine:
        parse_listen(address, "rtp.rtpengine")
    if not 1.0 <= s.node.lease_seconds <= 600.0:
        raise _bad("node.lease_seconds", "1 to 600 seconds", s.node.lease_seconds)
    if s.rtp.workers < -1:
        raise _bad("rtp.workers", "-1 (auto), 0 (in-process) or a count", s.rtp.workers)
    if s.recording.retention_days < 0:
        days = s.recording.retention_days
        raise _bad("recording.retention_days", "0 (keep) or a number of days", days)
    low, high = s.rtp.port_low, s.rtp.port_high
    _check_port("rtp.port_low", low)
    _check_port("rtp.port_high", high)
    if low % 2:
        raise _bad("rtp.port_low", "even", low)
    if high <= low:
        raise ConfigError(f"config: rtp.port_high must be above rtp.port_low (got {low}-{high})")
    for key, port in (("sip.port", s.sip.port), ("http.port", s.http.port)):
        if low <= port <= high:
            raise ConfigError(f"config: rtp port range {low}-{high} overlaps {key} ({port})")


def _check_timers(t: TimerSettings) -> None:
    for name in ("t1", "t2", "t4", "ring_timeout", "media_timeout"):
        _check_positive(f"timers.{name}", getattr(t, name))
    _check_positive("timers.drain_timeout", t.drain_timeout, allow_zero=True)
    if t.t2 < t.t1:
        raise _bad("timers.t2", "at least timers.t1", t.t2)


def _check_registrar(r: RegistrarSettings) -> None:
    _check_positive("registrar.min_expires", r.min_expires)
    if not r.min_expires <= r.default_expires <= r.max_expires:
        raise ConfigError(
            "config: registrar.default_expires must be between min_expires and max_expires"
            f" (got {r.min_expires} <= {r.default_expires} <= {r.max_expires})"
        )
    if not r.realm:
        raise _bad("registrar.realm", "a non-empty string", r.realm)


def _check_misc(s: Settings) -> None:
    _check_choice("log.format", s.log.format, LOG_FORMATS)
    _check_choice("log.level", s.log.level, LOG_LEVELS)
    if s.phone.default_region not in phonenumbers.SUPPORTED_REGIONS:
        raise _bad("phone.default_region", "a region code like US or GB", s.phone.default_region)
    for name in ("max_concurrent", "max_per_trunk", "max_per_number", "max_cps_per_source"):
        _check_positive(f"calls.{name}", getattr(s.calls, name), allow_zero=True)
    _check_positive("calls.retry_after", s.calls.retry_after, allow_zero=True)
    _check_positive("calls.max_loop_lag", s.calls.max_loop_lag, allow_zero=True)
    if not 0.0 <= s.calls.max_loop_busy < 1.0:
        raise ConfigError("config: calls.max_loop_busy must be at least 0 and below 1 (0 = off)")
    if not 400 <= s.calls.block_status <= 699:
        raise _bad("calls.block_status", "a final SIP status 400-699", s.calls.block_status)
    if s.store.url:
        try:
            parse_store_url(s.store.url)
        except InputError as exc:
            raise ConfigError(f"config: store.url: {exc}") from None


_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
_HTTP_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$")


def _check_http_lists(h: HttpSettings) -> None:
    for origin in h.cors_origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise _bad("http.cors_origins", "origins like https://www.example.com or *", origin)
    for key, cidrs in (("http.trusted_proxies", h.trusted_proxies),
                       ("http.status_allow", h.status_allow)):  # fmt: skip
        for cidr in cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise _bad(key, "a list of CIDRs", cidr) from None


def _check_flood(f: FloodSettings) -> None:
    for name in ("rate", "burst", "ban_seconds"):
        _check_positive(f"flood.{name}", getattr(f, name), allow_zero=True)
    _check_positive("flood.ban_after", f.ban_after, allow_zero=True)
    _check_positive("flood.window", f.window)
    _check_positive("flood.max_addresses", f.max_addresses)
    if f.rate > 0 and f.burst < 1:
        raise _bad("flood.burst", "at least 1 when flood.rate is set", f.burst)


def _check_integrations(s: Settings) -> None:
    v, o = s.visits, s.outbox
    _check_positive("visits.session_length", v.session_length)
    _check_positive("visits.max_new_per_ip", v.max_new_per_ip, allow_zero=True)
    for name in ("poll_interval", "backoff_base", "backoff_max", "timeout"):
        _check_positive(f"outbox.{name}", getattr(o, name))
    _check_positive("outbox.max_attempts", o.max_attempts)
    if bool(s.ga4.measurement_id) != bool(s.ga4.api_secret):
        raise ConfigError("config: ga4.measurement_id and ga4.api_secret go together")
    if not _HTTP_URL.match(s.ga4.base_url):
        raise _bad("ga4.base_url", "an http(s) URL", s.ga4.base_url)
    if not s.ga4.event_name:
        raise _bad("ga4.event_name", "a non-empty string", s.ga4.event_name)
    for url in s.webhooks.urls:
        if not _HTTP_URL.match(url):
            raise _bad("webhooks.urls", "a list of http(s) URLs", url)


def default_workers() -> int:
    """Media worker processes by default: one per core beyond the first (the daemon's), at
    least 1, counted from the CPU affinity mask (containers pin cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _resolve(s: Settings) -> Settings:
    """Fill derived defaults and normalise case."""
    rtp_host = s.rtp.host or s.sip.host
    workers = s.rtp.workers if s.rtp.workers >= 0 else default_workers()
    return dataclasses.replace(
        s,
        sip=dataclasses.replace(s.sip, transports=tuple(t.lower() for t in s.sip.transports)),
        rtp=dataclasses.replace(
            s.rtp,
            host=rtp_host,
            advertised_address=s.rtp.advertised_address or rtp_host,
            workers=workers,
        ),
        phone=PhoneSettings(s.phone.default_region.upper()),
        log=LogSettings(s.log.format.lower(), s.log.level.lower()),
    )


def _build(flat: Flat) -> Settings:
    sections = {
        name: cls(**{key: flat[f"{name}.{key}"] for key in _SCHEMA[name]})
        for name, cls in get_type_hints(Settings).items()
    }
    return Settings(**sections)


def load_settings(
    path: Path | None,
    env: Mapping[str, str],
    overrides: Mapping[str, object],
) -> Settings:
    """Defaults <- TOML file <- `PBX_*` env <- CLI overrides; validated; raises `ConfigError`."""
    flat = _defaults()
    if path is not None:
        flat.update(_read_toml(path))
    flat.update(_from_env(env))
    flat.update(_from_overrides(overrides))
    settings = _resolve(_build(flat))
    _check_listen(settings)
    _check_rtp(settings)
    _check_timers(settings.timers)
    _check_registrar(settings.registrar)
    _check_misc(settings)
    _check_http_lists(settings.http)
    _check_integrations(settings)
    _check_flood(settings.flood)
    return settings


# -- helpers for the CLI's `--sip HOST:PORT`, `--http HOST:PORT`, `--rtp-ports LOW-HIGH` --


def parse_listen(text: str, option: str) -> tuple[str, int]:
    """`HOST:PORT`, `[v6]:PORT` -> (host, port); `ConfigError` naming `option`."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text.strip())
    if not match:
        raise ConfigError(f"config: {option} must be HOST:PORT (got {text!r})")
    host = match.group(1) or match.group(3)
    return host, int(match.group(2) or match.group(4))


def parse_port_range(text: str, option: str) -> tuple[int, int]:
    """`LOW-HIGH` -> (low, high); the values are validated by `load_settings`."""
    match = re.fullmatch(r"(\d{1,5})-(\d{1,5})", text.strip())
    if not match:
        raise ConfigError(f"config: {option} must be LOW-HIGH (got {text!r})")
    return int(match.group(1)), int(match.group(2))
