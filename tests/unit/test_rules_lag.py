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
