"""Overload limits: token buckets per source, concurrent-call counts, a flood guard (pure).

Three pieces, all with time passed in (`now`, monotonic seconds) and memory
bounded whatever the input:

- `RateLimiter(rate, burst, max_keys)`: one token bucket per key (a source
  address); `allow(key, now)` takes a token or says no. Used for new calls
  per second per source address (`calls.max_cps_per_source`).
- `CallLimits(global, per_trunk, per_number)`: counts of calls in progress;
  `acquire(token, trunk, number)` takes a slot in all three or names the
  limit that refused (`LIMIT_GLOBAL`, `LIMIT_TRUNK`, `LIMIT_NUMBER`);
  `release(token)` gives it back (idempotent).
- `ReportLimit(interval, count=1)`: at most `count` log lines per key per
  `interval` seconds; `report(key, now)` says whether to write one now and
  how many occurrences were held back since the last (a pool that runs out
  on every page view costs one line a minute, not one per visit).
- `FloodGuard`: a per-address token bucket over every datagram (any
  method), checked before parsing. `check(host, now)` returns a `Verdict`:
  `PASS`, `THROTTLE` (over the rate: answer 503 without a transaction),
  `BAN` (the first datagram of a ban episode: the shell logs exactly one
  line and drops it) or `DROP` (banned, or over the rate with nothing to
  say: ignore it without parsing).

Decisions (the spec is silent):
- Token bucket: `burst` tokens, refilled at `rate` per second; a request
  costs one. A limit of 0 means "no limit" everywhere (as `calls.max_concurrent`).
- Bounded memory: every per-key table is an LRU (`OrderedDict`) capped at
  `max_keys`; the least recently seen key is forgotten first. A forgotten
  key starts again with a full bucket, so an attacker spreading a flood
  over more than `max_keys` addresses is not throttled per address; the
  transaction layer's own cap (`TransactionLayer.max_transactions`) and the
  call limits still bound what such a flood costs. A banned key is "seen"
  on every datagram it sends, so it stays at the recent end while it floods.
- Flood episode: once an address's bucket is empty, each further datagram
  is `THROTTLE`d; once `ban_after` datagrams were throttled within
  `window` seconds (a fixed window opened by the first of them), the next
  over-rate datagram bans the address for `ban_seconds`: `BAN` once, then `DROP` until the
  ban expires, after which it starts afresh with a full bucket. So a
  scanner that keeps flooding costs one log line per ban period, not one per
  datagram. `ban_after = 0` bans at the first throttled datagram.
- Exempt addresses (`set_exempt`): trunk signalling addresses are never
  throttled or banned by the flood guard. UDP source addresses are easy to
  forge: banning a trunk address because someone spoofs it would cut every
  real call. Trunk traffic stays bounded by `calls.max_cps_per_source`, the
  concurrent-call limits and the transaction cap. Whether an address is
  exempt is decided once when its entry is created (CIDR matching is not
  per datagram) and re-decided for every key when `set_exempt` is called.
- `CallLimits` keys come from provisioning (trunk and tracking-number
  names), not from the network, and an entry is deleted when its count
  drops to zero, so those tables are bounded by the calls in progress.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

MAX_KEYS = 10_000  # addresses tracked per table; ~150 bytes each, ~1.5 MiB at the cap

LIMIT_GLOBAL = "max_concurrent"
LIMIT_TRUNK = "max_per_trunk"
LIMIT_NUMBER = "max_per_number"


class Verdict(enum.Enum):
    """What to do with one datagram from an address (see the module docstring)."""

    PASS = "pass"  # noqa: S105 - a verdict name, not a password
    THROTTLE = "throttle"
    BAN = "ban"
    DROP = "drop"


@dataclass(slots=True)
class Bucket:
    """A token bucket's state: tokens left as of `updated`."""

    tokens: float
    updated: float

    def take(self, rate: float, burst: float, now: float) -> bool:
        """Refill for the time since `updated`, then take one token if there is one."""
        elapsed = now - self.updated
        if elapsed > 0:
            self.tokens = min(burst, self.tokens + elapsed * rate)
            self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


def _check_rate(rate: float, burst: float, max_keys: int) -> None:
    if rate < 0 or burst < 0:
        raise ValueError(f"rate and burst must be >= 0 (got {rate}, {burst})")
    if max_keys < 1:
        raise ValueError(f"max_keys must be >= 1 (got {max_keys})")


class RateLimiter:
    """Token buckets keyed by source address, LRU-bounded to `max_keys`."""

    def __init__(self, rate: float, burst: float | None = None, max_keys: int = MAX_KEYS) -> None:
        burst = max(1.0, rate) if burst is None else burst
        _check_rate(rate, burst, max_keys)
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, Bucket] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        return len(self._buckets)

    def allow(self, key: Hashable, now: float) -> bool:
        """True if `key` may go ahead now (and a token is spent)."""
        if not self.enabled:
            return True
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(self.rate, self.burst, now)


@dataclass(frozen=True, slots=True)
class Report:
    """Write a line now; `held_back` occurrences were kept quiet since the last one."""

    held_back: int


class ReportLimit:
    """At most `count` reports per key per `interval` seconds; keys LRU-bounded to `max_keys`.

    The first occurrence of a key reports at once and opens its window; up
    to `count` occurrences in the window report, the rest are counted and
    told in the next report (`held_back`). The next occurrence `interval`
    or more after the window opened reports and opens a new one. A
    forgotten key (over `max_keys`) reports again at its next occurrence.
    One line a minute per source is `ReportLimit(60)`; five lines a second
    per refusal reason is `ReportLimit(1, count=5)`.
    """

    def __init__(self, interval: float, count: int = 1, max_keys: int = MAX_KEYS) -> None:
        if interval < 0 or count < 1 or max_keys < 1:
            raise ValueError(
                f"interval >= 0, count >= 1 and max_keys >= 1 (got {interval}, {count}, {max_keys})"
            )
        self.interval = interval
        self.count = count
        self.max_keys = max_keys
        # key -> [window opened at, reports in the window, held back]
        self._seen: OrderedDict[Hashable, list[float]] = OrderedDict()

    def report(self, key: Hashable, now: float) -> Report | None:
        """A `Report` if a line is due for `key` at `now`, else None (counted)."""
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = [now, 1, 0]
            if len(self._seen) > self.max_keys:
                self._seen.popitem(last=False)
            return Report(0)
        self._seen.move_to_end(key)
        if now - seen[0] >= self.interval:
            seen[0], seen[1] = now, 0
        if seen[1] < self.count:
            held = int(seen[2])
            seen[1], seen[2] = seen[1] + 1, 0
            return Report(held)
        seen[2] += 1
        return None


class CallLimits:
    """Concurrent calls in progress: global, per trunk and per tracking number."""

    def __init__(
        self, max_global: int = 0, max_per_trunk: int = 0, max_per_number: int = 0
    ) -> None:
        if min(max_global, max_per_trunk, max_per_number) < 0:
            raise ValueError("call limits must be >= 0")
        self.max_global = max_global
        self.max_per_trunk = max_per_trunk
        self.max_per_number = max_per_number
        self._held: dict[Hashable, tuple[str | None, str | None]] = {}
        self._trunks: dict[str, int] = {}
        self._numbers: dict[str, int] = {}

    @property
    def active(self) -> int:
        """Calls holding a slot now."""
        return len(self._held)

    def count(self, *, trunk: str | None = None, number: str | None = None) -> int:
        if trunk is not None:
            return self._trunks.get(trunk, 0)
        if number is not None:
            return self._numbers.get(number, 0)
        return self.active

    def refusal(self, trunk: str | None, number: str | None) -> str | None:
        """The limit a new call on `trunk` to `number` would break, or None."""
        if self.max_global and self.active >= self.max_global:
            return LIMIT_GLOBAL
        if _full(self._trunks, trunk, self.max_per_trunk):
            return LIMIT_TRUNK
        if _full(self._numbers, number, self.max_per_number):
            return LIMIT_NUMBER
        return None

    def acquire(self, token: Hashable, trunk: str | None, number: str | None) -> str | None:
        """Take a slot for call `token`; returns the refusing limit's name instead, if any.

        A token that already holds a slot keeps it (acquire is idempotent).
        """
        if token in self._held:
            return None
        refused = self.refusal(trunk, number)
        if refused is not None:
            return refused
        self._held[token] = (trunk, number)
        if trunk is not None:
            self._trunks[trunk] = self._trunks.get(trunk, 0) + 1
        if number is not None:
            self._numbers[number] = self._numbers.get(number, 0) + 1
        return None

    def release(self, token: Hashable) -> bool:
        """Give back `token`'s slot; False if it held none."""
        held = self._held.pop(token, None)
        if held is None:
            return False
        trunk, number = held
        if trunk is not None:
            _decrement(self._trunks, trunk)
        if number is not None:
            _decrement(self._numbers, number)
        return True


def _full(table: dict[str, int], key: str | None, limit: int) -> bool:
    return key is not None and limit > 0 and table.get(key, 0) >= limit


def _decrement(table: dict[str, int], key: str) -> None:
    left = table.get(key, 0) - 1
    if left > 0:
        table[key] = left
    else:
        table.pop(key, None)


@dataclass(frozen=True, slots=True)
class FloodConfig:
    """Flood guard thresholds (config `[flood]`); `rate = 0` turns the guard off."""

    rate: float = 50.0  # datagrams per second one address may send, sustained
    burst: float = 200.0  # ... and at once
    ban_after: int = 100  # throttled datagrams within `window` before a ban
    window: float = 10.0
    ban_seconds: float = 60.0
    max_keys: int = MAX_KEYS

    def __post_init__(self) -> None:
        _check_rate(self.rate, self.burst, self.max_keys)
        if self.ban_after < 0 or self.window <= 0 or self.ban_seconds < 0:
            raise ValueError("ban_after >= 0, window > 0 and ban_seconds >= 0 required")


@dataclass(slots=True)
class _Source:
    """What the guard remembers about one address."""

    bucket: Bucket
    exempt: bool
    throttled: int = 0  # throttled datagrams in the current window
    window_start: float = 0.0
    banned_until: float | None = None


@dataclass(slots=True)
class FloodStats:
    """Totals since start, for metrics."""

    throttled: int = 0
    dropped: int = 0
    bans: int = 0


class FloodGuard:
    """Per-address flood detection before parsing; see the module docstring."""

    def __init__(self, config: FloodConfig | None = None) -> None:
        self.config = config or FloodConfig()
        self.stats = FloodStats()
        self._sources: OrderedDict[str, _Source] = OrderedDict()
        self._exempt: Callable[[str], bool] = _never

    @property
    def enabled(self) -> bool:
        return self.config.rate > 0

    def __len__(self) -> int:
        return len(self._sources)

    def set_exempt(self, exempt: Callable[[str], bool]) -> None:
        """`exempt(host)` says whether an address is never throttled (trunks)."""
        self._exempt = exempt
        for host, source in self._sources.items():
            source.exempt = exempt(host)
            if source.exempt:
                source.banned_until = None

    def banned(self, host: str, now: float) -> bool:
        source = self._sources.get(host)
        return source is not None and source.banned_until is not None and now < source.banned_until

    def check(self, host: str, now: float) -> Verdict:
        """The verdict for one datagram from `host` received at `now`."""
        if not self.enabled:
            return Verdict.PASS
        source = self._source(host, now)
        if source.exempt:
            return Verdict.PASS
        if source.banned_until is not None:
            if now < source.banned_until:
                self.stats.dropped += 1
                return Verdict.DROP
            source.banned_until = None  # the ban is over: start afresh
            source.bucket = Bucket(self.config.burst, now)
            source.throttled = 0
        if source.bucket.take(self.config.rate, self.config.burst, now):
            return Verdict.PASS
        return self._over_rate(source, now)

    def _over_rate(self, source: _Source, now: float) -> Verdict:
        config = self.config
        if source.throttled == 0 or now - source.window_start > config.window:
            source.throttled = 0
            source.window_start = now
        source.throttled += 1
        if source.throttled > config.ban_after:
            source.banned_until = now + config.ban_seconds
            source.throttled = 0
            self.stats.bans += 1
            self.stats.dropped += 1
            return Verdict.BAN
        self.stats.throttled += 1
        return Verdict.THROTTLE

    def _source(self, host: str, now: float) -> _Source:
        source = self._sources.get(host)
        if source is not None:
            self._sources.move_to_end(host)
            return source
        source = _Source(Bucket(self.config.burst, now), self._exempt(host))
        self._sources[host] = source
        if len(self._sources) > self.config.max_keys:
            self._sources.popitem(last=False)
        return source


def _never(_: str) -> bool:
    return False
