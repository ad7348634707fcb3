"""pbx.rules.limits: token buckets, concurrent-call limits, the flood guard (time passed in)."""

from __future__ import annotations

import pytest

from pbx.rules.limits import (
    LIMIT_GLOBAL,
    LIMIT_NUMBER,
    LIMIT_TRUNK,
    Bucket,
    CallLimits,
    FloodConfig,
    FloodGuard,
    RateLimiter,
    Report,
    ReportLimit,
    Verdict,
)

DID = "+12125550100"
OTHER = "+12125550101"


def test_bucket_spends_burst_then_refills_at_rate() -> None:
    bucket = Bucket(2.0, 0.0)
    assert bucket.take(1.0, 2.0, 0.0)
    assert bucket.take(1.0, 2.0, 0.0)
    assert not bucket.take(1.0, 2.0, 0.0)
    assert not bucket.take(1.0, 2.0, 0.5)
    assert bucket.take(1.0, 2.0, 1.0)


def test_bucket_never_holds_more_than_burst() -> None:
    bucket = Bucket(0.0, 0.0)
    bucket.take(10.0, 3.0, 1000.0)
    assert bucket.tokens == pytest.approx(2.0)


def test_bucket_ignores_time_going_backwards() -> None:
    bucket = Bucket(1.0, 10.0)
    assert bucket.take(1.0, 1.0, 5.0)
    assert bucket.updated == 10.0


def test_rate_limiter_per_key() -> None:
    cps = RateLimiter(2.0)
    assert [cps.allow("127.0.0.2", 0.0) for _ in range(3)] == [True, True, False]
    assert cps.allow("127.0.0.3", 0.0)  # another source has its own bucket
    assert cps.allow("127.0.0.2", 0.5)  # one token back after half a second at 2/s


def test_rate_limiter_zero_is_unlimited_and_keeps_nothing() -> None:
    cps = RateLimiter(0.0)
    assert all(cps.allow("10.0.0.1", 0.0) for _ in range(1000))
    assert len(cps) == 0


def test_rate_limiter_forgets_least_recent_key_at_the_cap() -> None:
    cps = RateLimiter(1.0, 1.0, max_keys=2)
    assert cps.allow("a", 0.0)
    assert cps.allow("b", 0.0)
    assert not cps.allow("a", 0.0)  # "a" is now the most recent
    assert cps.allow("c", 0.0)  # evicts "b"
    assert len(cps) == 2
    assert cps.allow("b", 0.0)  # "b" was forgotten: a fresh bucket


def test_rate_limiter_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="rate"):
        RateLimiter(-1.0)
    with pytest.raises(ValueError, match="max_keys"):
        RateLimiter(1.0, max_keys=0)


def test_call_limits_global() -> None:
    limits = CallLimits(max_global=1)
    assert limits.acquire("call-1", "carrier", DID) is None
    assert limits.acquire("call-2", "carrier", OTHER) == LIMIT_GLOBAL
    assert limits.active == 1
    assert limits.release("call-1")
    assert limits.acquire("call-2", "carrier", OTHER) is None


def test_call_limits_per_trunk_and_number() -> None:
    limits = CallLimits(max_per_trunk=2, max_per_number=1)
    assert limits.acquire(1, "carrier", DID) is None
    assert limits.acquire(2, "carrier", DID) == LIMIT_NUMBER
    assert limits.acquire(3, "carrier", OTHER) is None
    assert limits.acquire(4, "carrier", "+12125550102") == LIMIT_TRUNK
    assert limits.acquire(5, "backup", "+12125550102") is None
    assert limits.count(trunk="carrier") == 2
    assert limits.count(number=DID) == 1


def test_call_limits_release_is_idempotent_and_tables_shrink() -> None:
    limits = CallLimits(max_global=5)
    assert limits.acquire("x", "carrier", DID) is None
    assert limits.acquire("x", "carrier", DID) is None  # same token: no second slot
    assert limits.active == 1
    assert limits.release("x")
    assert not limits.release("x")
    assert limits.count(trunk="carrier") == 0
    assert limits._trunks == {}
    assert limits._numbers == {}


def test_call_limits_zero_is_unlimited() -> None:
    limits = CallLimits()
    assert all(limits.acquire(i, "carrier", DID) is None for i in range(500))
    assert limits.active == 500


def test_call_limits_rejects_negative() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        CallLimits(max_global=-1)


def _guard(**changes: float) -> FloodGuard:
    base = {"rate": 10.0, "burst": 5.0, "ban_after": 3, "window": 10.0, "ban_seconds": 60.0}
    base.update(changes)
    return FloodGuard(FloodConfig(**base))  # type: ignore[arg-type]


def test_flood_guard_passes_burst_throttles_then_bans_once() -> None:
    guard = _guard()
    verdicts = [guard.check("127.0.0.2", 0.0) for _ in range(20)]
    assert verdicts[:5] == [Verdict.PASS] * 5
    assert verdicts[5:8] == [Verdict.THROTTLE] * 3
    assert verdicts[8] == Verdict.BAN
    assert verdicts[9:] == [Verdict.DROP] * 11
    assert guard.stats.bans == 1
    assert guard.stats.throttled == 3
    assert guard.stats.dropped == 12
    assert guard.banned("127.0.0.2", 1.0)


def test_flood_guard_ban_expires_and_a_new_flood_bans_again() -> None:
    guard = _guard()
    for _ in range(9):
        guard.check("127.0.0.2", 0.0)
    assert guard.check("127.0.0.2", 59.9) == Verdict.DROP
    assert guard.check("127.0.0.2", 60.0) == Verdict.PASS  # ban over: a full bucket again
    verdicts = [guard.check("127.0.0.2", 60.0) for _ in range(10)]
    assert verdicts.count(Verdict.BAN) == 1
    assert guard.stats.bans == 2


def test_flood_guard_other_addresses_unaffected() -> None:
    guard = _guard()
    for _ in range(30):
        guard.check("127.0.0.2", 0.0)
    assert guard.check("127.0.0.1", 0.0) == Verdict.PASS


def test_flood_guard_throttled_count_resets_after_window() -> None:
    guard = _guard(ban_after=2, rate=1.0, burst=1.0, window=1.0)
    assert guard.check("h", 0.0) == Verdict.PASS
    assert guard.check("h", 0.0) == Verdict.THROTTLE
    assert guard.check("h", 0.0) == Verdict.THROTTLE
    # more than `window` later the throttled count starts again (a slow prober is not banned)
    assert guard.check("h", 5.0) == Verdict.PASS
    assert guard.check("h", 5.0) == Verdict.THROTTLE
    assert guard.check("h", 5.0) == Verdict.THROTTLE
    assert guard.check("h", 5.0) == Verdict.BAN


def test_flood_guard_sustained_rate_under_the_limit_passes() -> None:
    guard = _guard(rate=10.0, burst=1.0)
    assert all(guard.check("h", i * 0.11) == Verdict.PASS for i in range(1000))


def test_flood_guard_exempt_addresses_never_throttled() -> None:
    guard = _guard()
    guard.set_exempt(lambda host: host == "127.0.0.1")
    assert all(guard.check("127.0.0.1", 0.0) == Verdict.PASS for _ in range(1000))


def test_flood_guard_set_exempt_lifts_an_existing_ban() -> None:
    guard = _guard()
    for _ in range(10):
        guard.check("127.0.0.1", 0.0)
    assert guard.banned("127.0.0.1", 0.0)
    guard.set_exempt(lambda host: host == "127.0.0.1")
    assert not guard.banned("127.0.0.1", 0.0)
    assert guard.check("127.0.0.1", 0.0) == Verdict.PASS


def test_flood_guard_rate_zero_is_off() -> None:
    guard = _guard(rate=0.0)
    assert all(guard.check("h", 0.0) == Verdict.PASS for _ in range(100))
    assert len(guard) == 0


def test_flood_guard_memory_capped() -> None:
    guard = FloodGuard(FloodConfig(max_keys=100))
    for i in range(10_000):
        guard.check(f"10.0.{i // 256}.{i % 256}", 0.0)
    assert len(guard) == 100


def test_flood_guard_ban_after_zero_bans_at_first_excess() -> None:
    guard = _guard(ban_after=0, burst=1.0)
    assert guard.check("h", 0.0) == Verdict.PASS
    assert guard.check("h", 0.0) == Verdict.BAN


def test_flood_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="window"):
        FloodConfig(window=0.0)
    with pytest.raises(ValueError, match="rate"):
        FloodConfig(rate=-5.0)


# --- ReportLimit: at most `count` log lines per key per interval -------------------------


def test_once_per_minute_per_key_counts_what_it_held_back() -> None:
    quiet = ReportLimit(60.0)
    assert quiet.report("Ads", 1000.0) == Report(0)  # the first occurrence is told at once
    assert quiet.report("TV", 1000.5) == Report(0)  # another key has its own minute
    assert [quiet.report("Ads", 1000.0 + t) for t in (1, 30, 59.9)] == [None, None, None]
    assert quiet.report("Ads", 1060.0) == Report(3)  # a minute after the last line: 3 held back
    assert quiet.report("Ads", 1061.0) is None
    assert quiet.report("Ads", 1200.0) == Report(1)
    assert quiet.report("Ads", 1300.0) == Report(0)  # nothing happened in between
    assert quiet.report("TV", 1010.0) is None


def test_once_per_a_clock_that_steps_back_stays_quiet_until_the_interval() -> None:
    quiet = ReportLimit(60.0)
    assert quiet.report("Ads", 500.0) == Report(0)
    assert quiet.report("Ads", 400.0) is None
    assert quiet.report("Ads", 560.0) == Report(1)


def test_once_per_forgets_the_oldest_key_beyond_max_keys() -> None:
    quiet = ReportLimit(60.0, max_keys=2)
    assert quiet.report("a", 0.0) == Report(0)
    assert quiet.report("b", 1.0) == Report(0)
    assert quiet.report("a", 2.0) is None  # a is now the most recent
    assert quiet.report("c", 3.0) == Report(0)  # b is forgotten
    assert quiet.report("b", 4.0) == Report(0)  # and a, then the oldest, goes
    assert quiet.report("a", 5.0) == Report(0)
    assert quiet.report("a", 6.0) is None
    with pytest.raises(ValueError, match="interval"):
        ReportLimit(-1.0)


def test_report_limit_five_a_second_names_what_it_held_back() -> None:
    limit = ReportLimit(1.0, count=5)
    told = [limit.report("overload", 100.0 + i * 0.01) for i in range(12)]
    assert told[:5] == [Report(0)] * 5
    assert told[5:] == [None] * 7
    assert limit.report("loop_busy", 100.2) == Report(0)  # its own window
    assert limit.report("overload", 101.0) == Report(7)  # a new window opens: 7 held back
    assert [limit.report("overload", 101.5) for _ in range(4)] == [Report(0)] * 4
    assert limit.report("overload", 101.6) is None
    with pytest.raises(ValueError, match="count"):
        ReportLimit(1.0, count=0)
