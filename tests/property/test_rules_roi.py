"""Properties of the ROI report."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pbx.rules.roi import CallFact, SourceCost, roi_report

callers = st.none() | st.sampled_from(["+14155550101", "+12125550123", "+13125550150"])
calls = st.lists(
    st.builds(
        CallFact,
        source=st.none() | st.sampled_from(["A", "B", "C"]),
        started_at=st.builds(
            lambda m, d, h: f"2026-{m:02d}-{d:02d}T{h:02d}:00:00Z",
            st.integers(2, 4),
            st.integers(1, 28),
            st.integers(0, 23),
        ),
        caller=callers,
        answered=st.booleans(),
    ),
    max_size=30,
)
costs = st.lists(
    st.builds(
        SourceCost,
        name=st.sampled_from(["A", "B", "D"]),
        cost_per_call_cents=st.none() | st.integers(0, 10_000),
        monthly_budget_cents=st.none() | st.integers(0, 10**7),
    ),
    max_size=3,
    unique_by=lambda s: s.name,
)


@given(calls, costs, st.sets(callers.filter(bool)))
def test_report_accounts_for_every_call_and_new_caller(
    facts: list[CallFact], sources: list[SourceCost], prior: set[str]
) -> None:
    rows = roi_report(facts, sources, (2026, 3), prior)
    march = [f for f in facts if f.started_at.startswith("2026-03")]
    assert sum(r.calls for r in rows) == len(march)
    assert sum(r.answered for r in rows) == sum(f.answered for f in march)
    new = {f.caller for f in march if f.caller and f.caller not in prior}
    assert sum(r.first_time_callers for r in rows) == len(new)
    for r in rows:
        assert r.answered <= r.calls
        assert r.first_time_callers <= r.unique_callers <= r.calls
        assert (r.cost_per_call_cents is None) == (r.cost_cents is None or r.calls == 0)
