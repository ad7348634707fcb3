"""The loop-lag overload estimator: trips past `high`, recovers below `low`, never flaps."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.lag import LagEstimator


def test_a_quiet_loop_is_not_overloaded() -> None:
    est = LagEstimator()
    assert not any(est.feed(0.002, t * 0.05) for t in range(100))


def test_sustained_lag_trips_and_recovery_needs_the_low_mark() -> None:
    est = LagEstimator(high=0.1, low=0.03)
    states = [est.feed(0.2, t * 0.05) for t in range(10)]
    assert states[-1]
    assert est.trips == 1
    est.feed(0.06, 1.0)
    assert est.overloaded  # between low and high: still overloaded (hysteresis)
    for t in range(30):
        est.feed(0.0, 1.0 + t * 0.05)
    assert not est.overloaded


def test_one_stall_trips_at_once() -> None:
    est = LagEstimator(spike=1.0)
    assert est.feed(1.5, 0.0)


@given(st.lists(st.floats(min_value=-1.0, max_value=5.0), max_size=200))
def test_state_follows_the_mean_with_hysteresis(samples: list[float]) -> None:
    est = LagEstimator()
    previous = False
    for i, lag in enumerate(samples):
        now = est.feed(lag, i * 0.05)
        if now and not previous:
            assert est.mean > est.high or max(0.0, lag) > est.spike
        if previous and not now:
            assert est.mean < est.low
        assert est.mean >= 0.0
        previous = now


def test_a_saturated_loop_sheds_a_growing_share_and_an_idle_one_none() -> None:
    from pbx.rules.lag import BusyShedder

    shedder = BusyShedder(target=0.85)
    shares = [shedder.feed(1.0, i * 0.05) for i in range(10)]
    assert shares == sorted(shares)  # climbs while the loop stays saturated
    assert 0.3 < shares[-1] <= 1.0
    refused = sum(shedder.refuse() for _ in range(100))
    assert abs(refused - 100 * shedder.share) <= 1  # every 1/share-th call, not at random
    for i in range(10):
        shedder.feed(0.2, 1 + i * 0.05)
    assert shedder.share == 0.0
    assert not any(shedder.refuse() for _ in range(100))


def test_under_the_target_nothing_is_refused() -> None:
    from pbx.rules.lag import BusyShedder

    shedder = BusyShedder(target=0.85)
    for i in range(100):
        shedder.feed(0.8, i * 0.05)
    assert shedder.share == 0.0
    assert shedder.refused == 0


@given(st.lists(st.floats(-1.0, 2.0, allow_nan=False), max_size=200), st.integers(0, 300))
def test_the_share_stays_a_fraction_and_refusals_follow_it(
    samples: list[float], calls: int
) -> None:
    from pbx.rules.lag import BusyShedder

    shedder = BusyShedder()
    for i, busy in enumerate(samples):
        assert 0.0 <= shedder.feed(busy, i * 0.05) <= 1.0
    refused = sum(shedder.refuse() for _ in range(calls))
    assert abs(refused - calls * shedder.share) <= 1.0
