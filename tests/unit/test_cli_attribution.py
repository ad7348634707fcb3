"""CLI for issue 6: source GA/geo/fallback options, `pbx visits list`, `pbx report roi`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from pbx.records import CallRecord, Disposition
from pbx.store.base import Store, Visit

from .cli_helpers import dump, ok, pbx, run_on_store


def test_source_ga_geo_fallback_round_trip(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    ok(db, "sources", "add", "Ads", "--onsite", "--landing", "gclid=", "--geo",
       "--fallback-number", "(415) 555-0199", "--ga-measurement-id", "g-abc1234",
       "--ga-api-secret", "s3cret", "--ga-source", "google", "--ga-medium", "cpc",
       "--ga-campaign", "spring")  # fmt: skip
    shown = json.loads(ok(db, "sources", "show", "Ads", "--format", "json"))
    assert shown["geo"] is True
    assert shown["fallback_number"] == "+14155550199"
    assert shown["ga_measurement_id"] == "G-ABC1234"
    assert shown["ga_api_secret"] == "********"  # never printed
    assert (shown["ga_source"], shown["ga_medium"], shown["ga_campaign"]) == (
        "google", "cpc", "spring",
    )  # fmt: skip
    ok(db, "sources", "update", "Ads", "--no-geo", "--fallback-number", "",
       "--ga-measurement-id", "", "--ga-api-secret", "", "--ga-medium", "")  # fmt: skip
    shown = json.loads(ok(db, "sources", "show", "Ads", "--format", "json"))
    assert (shown["geo"], shown["fallback_number"], shown["ga_medium"]) == (False, None, None)
    assert (shown["ga_measurement_id"], shown["ga_api_secret"]) == (None, None)
    assert shown["ga_source"] == "google"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--fallback-number", "555"), "--fallback-number"),
        (("--ga-measurement-id", "UA-1234-1", "--ga-api-secret", "x"), "--ga-measurement-id"),
        (("--ga-measurement-id", "G-ABC1234"), "together"),
        (("--ga-api-secret", "has space", "--ga-measurement-id", "G-ABC1234"), "--ga-api-secret"),
    ],
)
def test_bad_source_options_exit_2_and_change_nothing(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    db = tmp_path / "db.sqlite3"
    ok(db, "sources", "add", "Radio")
    before = dump(db)
    result = pbx(db, "sources", "update", "Radio", *args)
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert dump(db) == before


async def _visits(store: Store) -> None:
    for i, source in enumerate(("Ads", "Craigslist")):
        await store.visits.add(Visit(
            id=f"v{i}", visitor_id=f"visitor-{i}", source=source, number=f"+1415555010{i}",
            started_at=f"2026-03-05T10:0{i}:00.000000Z", last_seen_at="2026-03-05T10:05:00.000000Z",
            expires_at="2026-03-05T10:35:00.000000Z", landing_url="https://e.com/?gclid=1",
            country="US", city="Milton",
        ))  # fmt: skip


def test_visits_list_formats(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    run_on_store(db, _visits)
    table = ok(db, "visits", "list")
    assert table.splitlines()[0].split()[:4] == ["started_at", "visitor_id", "source", "number"]
    assert "visitor-1" in table.splitlines()[1]  # newest first
    rows = json.loads(ok(db, "visits", "list", "--format", "json"))
    assert [r["id"] for r in rows] == ["v1", "v0"]
    assert rows[0]["city"] == "Milton"
    csv_lines = ok(db, "visits", "list", "--format", "csv", "--limit", "1").splitlines()
    assert len(csv_lines) == 2


def _call(i: int, source: str | None, caller: str, day: str, answered: bool) -> CallRecord:
    return CallRecord(
        id=f"c{i}", inbound_call_id=f"x{i}", started_at=f"{day}T10:00:0{i % 10}.000000Z",
        caller=caller, tracking_number="+14155550101", source=source,
        answered_at=f"{day}T10:00:05.000000Z" if answered else None,
        ended_at=f"{day}T10:01:00.000000Z",
        disposition=Disposition.ANSWERED if answered else Disposition.NO_ANSWER,
    )  # fmt: skip


async def _fixture_month(store: Store) -> None:
    calls = [
        _call(0, "Radio", "+12125550101", "2026-02-20", True),  # before the month
        _call(1, "Radio", "+12125550101", "2026-03-02", True),  # returning caller
        _call(2, "Radio", "+12125550102", "2026-03-03", False),  # first-time
        _call(3, "Radio", "+12125550102", "2026-03-04", True),
        _call(4, "Ads", "+12125550103", "2026-03-05", True),  # first-time
        _call(5, None, "anonymous", "2026-03-06", False),
        _call(6, "Ads", "+12125550104", "2026-04-01", True),  # next month
    ]
    for record in calls:  # as intake writes them: Radio's 12.50 stamped on each record
        cost = 1250 if record.source == "Radio" else None
        await store.calls.finish(replace(record, cost_cents=cost))


def test_report_roi_fixture_month(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    ok(db, "sources", "add", "Radio", "--cost-per-call", "12.50")
    ok(db, "sources", "add", "Ads", "--monthly-budget", "100.00")
    run_on_store(db, _fixture_month)
    rows = json.loads(ok(db, "report", "roi", "--month", "2026-03", "--format", "json"))
    by = {r["source"]: r for r in rows}
    assert [r["source"] for r in rows] == ["Ads", "Radio", "(unattributed)"]
    radio = by["Radio"]
    assert (radio["calls"], radio["answered"], radio["unique_callers"]) == (3, 2, 2)
    assert radio["first_time_callers"] == 1
    assert (radio["cost"], radio["cost_per_call"]) == ("37.50", "12.50")
    assert radio["cost_per_answered"] == "18.75"
    ads = by["Ads"]
    assert (ads["calls"], ads["first_time_callers"], ads["cost"]) == (1, 1, "100.00")
    assert by["(unattributed)"]["calls"] == 1
    assert by["(unattributed)"]["unique_callers"] == 0
    table = ok(db, "report", "roi", "--month", "2026-03")
    assert "37.50" in table
    assert "18.75" in table
    csv_text = ok(db, "report", "roi", "--month", "2026-03", "--format", "csv")
    assert csv_text.splitlines()[0].startswith("source,calls,answered")
    ok(db, "sources", "update", "Radio", "--cost-per-call", "99.00")  # a price change later
    again = json.loads(ok(db, "report", "roi", "--month", "2026-03", "--format", "json"))
    assert next(r for r in again if r["source"] == "Radio")["cost"] == "37.50"


def test_report_roi_bad_month(tmp_path: Path) -> None:
    result = pbx(tmp_path / "db.sqlite3", "report", "roi", "--month", "2026-13")
    assert result.exit_code == 2
    assert "--month must be YYYY-MM" in result.stderr
