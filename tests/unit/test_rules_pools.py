"""Number pools: exclusive hold, least recently used first, expiry, exhaustion fallback."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.pools import Pick, PoolNumber, choose, free_numbers, is_free, pool_of, ranked

T0 = "2026-03-05T10:00:00.000000Z"
T1 = "2026-03-05T10:10:00.000000Z"
T2 = "2026-03-05T10:20:00.000000Z"
T3 = "2026-03-05T10:30:00.000000Z"
A, B, C = "+14155550101", "+14155550102", "+14155550103"
FALLBACK = "+14155550199"


def test_never_held_first_then_in_position_order() -> None:
    pool = pool_of([A, B, C], {})
    assert choose(pool, T0, FALLBACK) == Pick(A)


def test_least_recently_used_first() -> None:
    pool = pool_of([A, B, C], {A: T1, B: T0})  # C never held, B released before A
    assert [n.e164 for n in free_numbers(pool, T2)] == [C, B, A]
    assert choose(pool, T2, FALLBACK) == Pick(C)
    pool = pool_of([A, B], {A: T1, B: T0})
    assert choose(pool, T2, FALLBACK) == Pick(B)


def test_exclusive_hold_and_expiry() -> None:
    pool = pool_of([A, B], {A: T2})  # A held until T2
    assert choose(pool, T1, FALLBACK) == Pick(B)
    assert not is_free(pool[0], T1)
    assert is_free(pool[0], T2)  # free the moment its hold expires
    assert choose(pool_of([A], {A: T2}), T2, FALLBACK) == Pick(A)


def test_exhausted_pool_shows_fallback_marked() -> None:
    pool = pool_of([A, B], {A: T2, B: T3})
    assert choose(pool, T1, FALLBACK) == Pick(FALLBACK, fallback=True)
    assert choose(pool, T1, None) == Pick(None, fallback=True)


def test_ranked_is_every_free_number_best_first() -> None:
    pool = pool_of([A, B, C, FALLBACK], {A: T3, B: T1})
    assert [n.e164 for n in ranked(pool, T2)] == [C, FALLBACK, B]  # never held, then LRU
    last = lambda free: free[-1]  # noqa: E731 - a tiny prefer
    assert [n.e164 for n in ranked(pool, T2, last)] == [B, C, FALLBACK]
    assert [n.e164 for n in ranked(pool, T2, last, preferred=2)] == [B, FALLBACK, C]
    assert [n.e164 for n in ranked(pool, T2, last, preferred=9)] == [B, FALLBACK, C]
    assert ranked(pool_of([A], {A: T3}), T2, last) == []


def test_prefer_picks_among_free_only() -> None:
    pool = pool_of([A, B, C], {B: T2})
    assert choose(pool, T1, None, prefer=lambda free: free[-1]) == Pick(C)
    held = PoolNumber(B, 1, T2)
    assert choose(pool, T1, None, prefer=lambda free: held) == Pick(A)  # never a held one


def _stamp(minute: int) -> str:
    return f"2026-03-05T{10 + minute // 60:02d}:{minute % 60:02d}:00.000000Z"


@given(
    size=st.integers(1, 6),
    arrivals=st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40)), max_size=40),
)
def test_property_simulated_visits_never_share_a_number(
    size: int, arrivals: list[tuple[int, int]]
) -> None:
    """Visits arrive over time; each holds its number for its length. No two overlap."""
    numbers = [f"+1415555{100 + i:04d}" for i in range(size)]
    held: dict[str, str] = {}
    holds: list[tuple[str, str, str]] = []  # number, from, until
    now = 0
    for gap, length in arrivals:
        now += gap
        stamp, until = _stamp(now), _stamp(now + length)
        free_before = [n for n in numbers if n not in held or held[n] <= stamp]
        pick = choose(pool_of(numbers, held), stamp, FALLBACK)
        if not free_before:
            assert pick == Pick(FALLBACK, fallback=True)
            continue
        assert pick.number in free_before
        assert not pick.fallback
        lru = min(free_before, key=lambda n: (n in held, held.get(n, ""), numbers.index(n)))
        assert pick.number == lru
        assert pick.number is not None
        holds.append((pick.number, stamp, until))
        held[pick.number] = until
    for i, (num, start, end) in enumerate(holds):
        for other, ostart, oend in holds[i + 1 :]:
            if other == num:
                assert ostart >= end or oend <= start
