"""Property: the allocator never hands out a pair twice while in use or quarantined."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rtp.ports import PortPairAllocator

LOW, HIGH, QUARANTINE = 50000, 50021, 3.0

# Each step: advance the clock by dt, then allocate (None) or release the
# i-th currently held pair.
steps = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=2.0), st.one_of(st.none(), st.integers(0, 20))),
    max_size=200,
)


@given(steps)
def test_never_reissues_a_held_or_quarantined_pair(ops: list[tuple[float, int | None]]) -> None:
    alloc = PortPairAllocator(LOW, HIGH, QUARANTINE)
    now = 0.0
    held: list[int] = []
    released_at: dict[int, float] = {}
    for dt, pick in ops:
        now += dt
        if pick is None or not held:
            port = alloc.allocate(now)
            if port is None:
                assert len(held) + alloc.free_count(now) <= alloc.capacity
                continue
            assert port % 2 == 0
            assert port >= LOW
            assert port + 1 <= HIGH
            assert port not in held
            assert now >= released_at.get(port, -QUARANTINE) + QUARANTINE
            held.append(port)
        else:
            port = held.pop(pick % len(held))
            alloc.release(port, now)
            released_at[port] = now
        assert alloc.in_use == len(held)


@given(st.integers(1024, 65000), st.integers(1, 400))
def test_every_pair_is_even_and_inside(low: int, width: int) -> None:
    high = min(low + width, 65535)
    if low + (low % 2) + 1 > high:
        return
    alloc = PortPairAllocator(low, high, 0.0)
    seen = set()
    while (port := alloc.allocate(0.0)) is not None:
        assert port % 2 == 0
        assert low <= port
        assert port + 1 <= high
        seen.add(port)
    assert len(seen) == alloc.capacity == (high - (low + low % 2) + 1) // 2
