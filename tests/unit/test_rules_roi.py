"""ROI report over a fixture month, with exact figures."""

from __future__ import annotations

from pbx.rules.roi import (
    UNATTRIBUTED,
    CallFact,
    RoiRow,
    SourceCost,
    call_cost_cents,
    roi_report,
)

SOURCES = [
    SourceCost("Google Ads", cost_per_call_cents=1250),
    SourceCost("Billboard", monthly_budget_cents=50_000),
    SourceCost("Radio", monthly_budget_cents=30_000),
    SourceCost("Organic"),
]
# Google Ads calls carry the cost intake wrote on their records (12.50 each).
CALLS = [
    CallFact("Google Ads", "2026-03-01T00:00:00.000000Z", "+14155550101", True, 1250),
    CallFact("Google Ads", "2026-03-02T10:00:00.000000Z", "+14155550101", False, 1250),
    CallFact("Google Ads", "2026-03-03T10:00:00.000000Z", "+12125550123", True, 1250),
    CallFact("Billboard", "2026-03-04T10:00:00.000000Z", "+13125550150", True),
    CallFact("Billboard", "2026-03-05T10:00:00.000000Z", "+14155550101", True),
    CallFact("Billboard", "2026-03-06T10:00:00.000000Z", None, False),
    CallFact("Organic", "2026-03-31T23:59:59.999999Z", "+16175550111", True),
    CallFact(None, "2026-03-10T10:00:00.000000Z", "+12065550122", False),
    CallFact("Google Ads", "2026-02-28T23:59:59.999999Z", "+13105550133", True),  # February
    CallFact("Google Ads", "2026-04-01T00:30:00+02:00", "+13105550133", True, 1250),  # 31 Mar
    CallFact("Deleted", "2026-03-15T10:00:00.000000Z", "+17135550144", True),
    CallFact("Google Ads", "2026-04-01T00:00:00.000000Z", "+13105550133", True),  # April
]
PRIOR = {"+12125550123"}


def test_fixture_month_exact_figures() -> None:
    rows = roi_report(CALLS, SOURCES, (2026, 3), PRIOR)
    assert rows == [
        RoiRow("Billboard", 3, 2, 2, 1, 50_000, 16_667, 25_000),
        RoiRow("Deleted", 1, 1, 1, 1, None, None, None),
        RoiRow("Google Ads", 4, 3, 3, 2, 5_000, 1_250, 1_667),
        RoiRow("Organic", 1, 1, 1, 1, None, None, None),
        RoiRow("Radio", 0, 0, 0, 0, 30_000, None, None),
        RoiRow(UNATTRIBUTED, 1, 0, 1, 1, None, None, None),
    ]


def test_budget_counts_in_an_empty_month() -> None:
    rows = roi_report(CALLS, SOURCES, (2025, 1), set())
    by_name = {r.source: r for r in rows}
    assert by_name["Billboard"].cost_cents == 50_000
    assert by_name["Google Ads"] == RoiRow("Google Ads", 0, 0, 0, 0, 0, None, None)
    assert set(by_name) == {"Billboard", "Google Ads", "Radio", "Organic"}


def test_rounding_is_half_up_and_per_call_wins_over_budget() -> None:
    both = SourceCost("Both", cost_per_call_cents=5, monthly_budget_cents=99_999)
    calls = [CallFact("Both", "2026-03-01T00:00:00Z", None, i == 0, 5) for i in range(2)]
    (row,) = roi_report(calls, [both], (2026, 3), set())
    assert row.cost_cents == 10
    assert row.cost_per_call_cents == 5
    assert row.cost_per_answered_cents == 10
    budget = SourceCost("B", monthly_budget_cents=5)
    calls = [CallFact("B", "2026-03-01T00:00:00", None, True) for _ in range(2)]
    assert roi_report(calls, [budget], (2026, 3), set())[0].cost_per_call_cents == 3  # 2.5 -> 3


def test_call_cost_cents() -> None:
    assert call_cost_cents(SOURCES[0]) == 1250
    assert call_cost_cents(SOURCES[1]) is None
    assert call_cost_cents(None) is None


def test_past_calls_keep_their_price_and_refused_calls_are_free() -> None:
    old = CallFact("Ads", "2026-03-01T10:00:00Z", "+14155550101", True, 1000)  # at 10.00
    new = CallFact("Ads", "2026-03-20T10:00:00Z", "+14155550102", True, 2500)  # after a raise
    blocked = CallFact("Ads", "2026-03-21T10:00:00Z", "+14155550103", False)  # intake: no cost
    (row,) = roi_report([old, new, blocked], [SourceCost("Ads", 9999)], (2026, 3), set())
    assert (row.calls, row.cost_cents) == (3, 3500)  # not 3 x 99.99: nothing repriced
