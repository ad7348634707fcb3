"""Properties of pbx.rules.limits: bounded memory, bucket arithmetic, slot accounting."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.rules.limits import CallLimits, FloodConfig, FloodGuard, RateLimiter, Verdict

hosts = st.sampled_from([f"10.0.0.{i}" for i in range(40)])
times = st.lists(st.floats(min_value=0.0, max_value=1000.0), min_size=1, max_size=300).map(sorted)


@given(st.lists(st.tuples(hosts, st.floats(0.0, 100.0)), max_size=400), st.integers(1, 20))
def test_rate_limiter_never_tracks_more_than_max_keys(
    events: list[tuple[str, float]], cap: int
) -> None:
    limiter = RateLimiter(5.0, 5.0, max_keys=cap)
    for host, now in sorted(events, key=lambda e: e[1]):
        limiter.allow(host, now)
        assert len(limiter) <= cap


@given(times, st.floats(0.1, 100.0), st.integers(1, 50))
def test_rate_limiter_allows_at_most_burst_plus_rate_times_span(
    moments: list[float], rate: float, burst: int
) -> None:
    limiter = RateLimiter(rate, float(burst))
    allowed = sum(limiter.allow("h", now) for now in moments)
    span = moments[-1] - moments[0]
    assert allowed <= burst + rate * span + 1e-6
    assert allowed >= min(len(moments), burst) or burst > len(moments)


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30), st.sampled_from("abc"),
                          st.sampled_from(["n1", "n2", "n3"])), max_size=300),
       st.integers(0, 5), st.integers(0, 3), st.integers(0, 2))  # fmt: skip
def test_call_limits_counts_match_held_slots_and_limits_hold(
    ops: list[tuple[bool, int, str, str]], g: int, t: int, n: int
) -> None:
    limits = CallLimits(g, t, n)
    held: dict[int, tuple[str, str]] = {}
    for take, token, trunk, number in ops:
        if take:
            if limits.acquire(token, trunk, number) is None:
                held.setdefault(token, (trunk, number))
        else:
            assert limits.release(token) == (token in held)
            held.pop(token, None)
        assert limits.active == len(held)
        for name in "abc":
            count = sum(1 for tr, _ in held.values() if tr == name)
            assert limits.count(trunk=name) == count
            assert t == 0 or count <= t
        assert g == 0 or limits.active <= g
        for number_ in ("n1", "n2", "n3"):
            assert n == 0 or limits.count(number=number_) <= n


few_hosts = st.sampled_from([f"10.0.0.{i}" for i in range(12)])


@settings(max_examples=50)
@given(st.lists(st.tuples(few_hosts, st.floats(0.0, 200.0)), min_size=1, max_size=600))
def test_flood_guard_bans_at_most_once_per_ban_period_per_address(
    events: list[tuple[str, float]],
) -> None:
    config = FloodConfig(rate=5.0, burst=5.0, ban_after=3, window=5.0, ban_seconds=30.0,
                         max_keys=16)  # fmt: skip
    guard = FloodGuard(config)
    last_ban: dict[str, float] = {}
    bans = 0
    for host, now in sorted(events, key=lambda e: e[1]):
        verdict = guard.check(host, now)
        if verdict is Verdict.BAN:
            bans += 1
            previous = last_ban.get(host)
            assert previous is None or now - previous >= config.ban_seconds
            last_ban[host] = now
        elif verdict is Verdict.DROP:
            assert guard.banned(host, now)
    assert guard.stats.bans == bans


@settings(max_examples=50)
@given(st.lists(st.tuples(hosts, st.floats(0.0, 200.0)), min_size=1, max_size=600))
def test_flood_guard_memory_is_capped(events: list[tuple[str, float]]) -> None:
    guard = FloodGuard(FloodConfig(rate=5.0, burst=5.0, ban_after=3, max_keys=16))
    for host, now in sorted(events, key=lambda e: e[1]):
        guard.check(host, now)
        assert len(guard) <= 16
