"""Property: a latched leg never follows a stranger while its source keeps talking."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rtp.relay import Latch

SDP = ("192.0.2.1", 4000)
SOURCES = [("198.51.100.7", 31000), ("203.0.113.9", 5000), ("203.0.113.9", 5002), SDP]
AFTER = 2.0

events = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=3.0), st.sampled_from(SOURCES)), max_size=60
)


@given(events)
def test_target_changes_only_by_the_rules(packets: list[tuple[float, tuple[str, int]]]) -> None:
    latch = Latch(relatch_after=AFTER)
    latch.expect(SDP)
    now = 0.0
    last_taken: float | None = None
    for dt, source in packets:
        now += dt
        before = latch.latched
        taken = latch.accept(source, now)
        may_move = (
            before is None or source == SDP or last_taken is None or now - last_taken >= AFTER
        )
        if source == before or may_move:
            assert taken
            assert latch.target == source
            last_taken = now
        else:
            assert not taken
            assert latch.latched == before
