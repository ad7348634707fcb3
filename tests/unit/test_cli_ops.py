"""`pbx` round trips for business hours, caller ID, trunk dialing options, exports, block list."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pbx.records import FIELD_NAMES, Attempt, CallRecord, Disposition
from pbx.rules.routing import Schedule, is_open
from tests.unit.cli_helpers import dump, ok, pbx, run_on_store, seed

NUMBER = "+14155550150"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "pbx.sqlite3"
    seed(path)
    return path


def _json(db: Path, *args: str) -> Any:
    return json.loads(ok(db, *args, "--format", "json"))


def _stored_hours(db: Path) -> str | None:
    row = run_on_store(db, lambda s: s.numbers.get(NUMBER))
    assert row is not None
    return row.hours


# ---------------------------------------------------------------- numbers


def test_hours_are_stored_as_schedule_json_and_shown_as_text(db: Path) -> None:
    hours = "America/New_York mon-fri 09:00-17:00; sat 10:00-14:00; closed 2026-12-25"
    ok(db, "numbers", "update", NUMBER, "--hours", hours, "--after-hours", "mobile",
       "--present-tracking-number")  # fmt: skip
    stored = _stored_hours(db)
    assert stored is not None
    schedule = Schedule.from_json(stored)
    assert schedule.zone == "America/New_York"
    # Friday 2026-12-18 15:00 UTC = 10:00 in New York: open; Christmas day closed.
    assert is_open(schedule, dt.datetime(2026, 12, 18, 15, 0, tzinfo=dt.UTC))
    assert not is_open(schedule, dt.datetime(2026, 12, 25, 15, 0, tzinfo=dt.UTC))
    shown = _json(db, "numbers", "show", NUMBER)
    assert shown["hours"] == schedule.to_text()
    assert shown["after_hours"] == ["mobile"]
    assert shown["present_tracking_number"] is True
    assert _json(db, "numbers", "list")[0]["hours"] == schedule.to_text()
    # the text shown is accepted back unchanged
    ok(db, "numbers", "update", NUMBER, "--hours", shown["hours"])
    assert _stored_hours(db) == stored


def test_empty_after_hours_list_means_reject_and_no_hours_clears_both(db: Path) -> None:
    ok(db, "numbers", "update", NUMBER, "--hours", "UTC mon-fri 08:00-18:00",
       "--after-hours", "mobile", "--after-hours", "front-desk")  # fmt: skip
    assert _json(db, "numbers", "show", NUMBER)["after_hours"] == ["mobile", "front-desk"]
    ok(db, "numbers", "update", NUMBER, "--after-hours", "")
    shown = _json(db, "numbers", "show", NUMBER)
    assert shown["after_hours"] == []
    assert shown["hours"] is not None
    ok(db, "numbers", "update", NUMBER, "--after-hours", "mobile")
    ok(db, "numbers", "update", NUMBER, "--no-hours")
    shown = _json(db, "numbers", "show", NUMBER)
    assert (shown["hours"], shown["after_hours"]) == (None, [])
    ok(db, "numbers", "update", NUMBER, "--hours", "UTC daily 00:00-24:00",
       "--after-hours", "mobile")  # fmt: skip
    ok(db, "numbers", "update", NUMBER, "--hours", "")
    assert _stored_hours(db) is None


def test_number_add_with_every_new_option(db: Path) -> None:
    ok(db, "numbers", "add", "2125550123", "--source", "Radio", "--destination", "mobile",
       "--hours", "Europe/London sat-sun 10:00-16:00", "--after-hours", "front-desk",
       "--pass-caller-id", "--disable")  # fmt: skip
    shown = _json(db, "numbers", "show", "2125550123")
    assert shown["hours"] == "Europe/London sat 10:00-16:00; sun 10:00-16:00"
    assert shown["after_hours"] == ["front-desk"]
    assert shown["present_tracking_number"] is False
    assert shown["enabled"] is False
    ok(db, "numbers", "update", "2125550123", "--enable", "--present-tracking-number")
    shown = _json(db, "numbers", "show", "2125550123")
    assert (shown["enabled"], shown["present_tracking_number"]) == (True, True)
    ok(db, "numbers", "update", "2125550123", "--pass-caller-id")
    assert _json(db, "numbers", "show", "2125550123")["present_tracking_number"] is False


# ---------------------------------------------------------------- trunks


def test_trunk_dialing_options_on_add_and_in_listing(db: Path) -> None:
    ok(db, "trunks", "add", "intl", "--host", "198.51.100.7", "--strip-plus", "--prefix", "011",
       "--realm", "sip.example.net", "--disable")  # fmt: skip
    shown = _json(db, "trunks", "show", "intl")
    assert (shown["strip_plus"], shown["prefix"], shown["realm"], shown["enabled"]) == (
        True, "011", "sip.example.net", False,
    )  # fmt: skip
    table = ok(db, "trunks", "list").splitlines()
    assert table[0].split() == ["name", "host", "port", "transport", "username", "register",
                                "allow", "strip_plus", "prefix", "enabled"]  # fmt: skip
    intl = next(line for line in table if line.startswith("intl"))
    assert intl.split()[-3:] == ["yes", "011", "no"]
    ok(db, "trunks", "update", "intl", "--keep-plus", "--prefix", "", "--realm", "", "--enable")
    shown = _json(db, "trunks", "show", "intl")
    assert (shown["strip_plus"], shown["prefix"], shown["realm"], shown["enabled"]) == (
        False, "", None, True,
    )  # fmt: skip


# ---------------------------------------------------------------- calls export


def _record(call_id: str, started: str, source: str, disposition: Disposition) -> CallRecord:
    return CallRecord(
        id=call_id, inbound_call_id=f"in-{call_id}", started_at=started, caller="+12125550199",
        tracking_number=NUMBER, source=source, destination="front-desk", disposition=disposition,
        talk_seconds=42.0, sip_status=200, caller_name="=cmd|' /C calc'!A0",
        attempts=(Attempt(target="+14155550101", status=200),),
    )  # fmt: skip


def _with_calls(db: Path) -> None:
    for rec in (
        _record("a1", "2024-05-01T10:00:00.000000Z", "Google Ads", Disposition.ANSWERED),
        _record("b2", "2024-06-01T10:00:00.000000Z", "Radio", Disposition.BUSY),
        _record("c3", "2024-06-02T23:30:00.000000Z", "Radio", Disposition.ANSWERED),
    ):
        run_on_store(db, lambda s, r=rec: s.calls.insert(r))  # type: ignore[misc]


def test_calls_export_csv_has_every_field(db: Path) -> None:
    _with_calls(db)
    out = ok(db, "calls", "export")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(FIELD_NAMES)
    assert [r["id"] for r in rows] == ["c3", "b2", "a1"]
    assert rows[0]["caller_name"].startswith("'=")  # spreadsheet formula defused
    assert rows[0]["inbound_call_id"] == "in-c3"
    since = list(csv.DictReader(io.StringIO(ok(db, "calls", "export", "--since", "2024-06-02"))))
    assert [r["id"] for r in since] == ["c3"]
    radio = list(csv.DictReader(io.StringIO(ok(db, "calls", "export", "--source", "Radio"))))
    assert [r["id"] for r in radio] == ["c3", "b2"]


def test_calls_export_json_and_filters(db: Path) -> None:
    _with_calls(db)
    rows = json.loads(ok(db, "calls", "export", "--format", "json"))
    assert set(rows[0]) == set(FIELD_NAMES)
    assert rows[0]["attempts"][0]["target"] == "+14155550101"
    # an aware time is converted to UTC: 2024-06-03 01:00+02:00 is 2024-06-02 23:00Z
    late = json.loads(ok(db, "calls", "export", "--format", "json",
                         "--since", "2024-06-03T01:00:00+02:00"))  # fmt: skip
    assert [r["id"] for r in late] == ["c3"]
    busy = json.loads(ok(db, "calls", "export", "--format", "json", "--disposition", "busy"))
    assert [r["id"] for r in busy] == ["b2"]
    assert json.loads(ok(db, "calls", "export", "--format", "json", "--limit", "1"))[0]["id"] == (
        "c3"
    )
    listed = json.loads(ok(db, "calls", "list", "--source", "Radio", "--disposition",
                           "answered", "--format", "json"))  # fmt: skip
    assert [r["id"] for r in listed] == ["c3"]


def test_calls_export_of_nothing_is_a_header(db: Path) -> None:
    assert ok(db, "calls", "export").strip() == ",".join(FIELD_NAMES)
    assert json.loads(ok(db, "calls", "export", "--format", "json")) == []


# ---------------------------------------------------------------- block list


def test_block_round_trip(db: Path) -> None:
    assert ok(db, "block", "add", "+1 212") == "blocked +1212 for all numbers\n"
    assert ok(db, "block", "add", "(646) 555-0123") == "blocked +16465550123 for all numbers\n"
    assert ok(db, "block", "add", "anonymous", "--number", "415 555 0150") == (
        f"blocked anonymous for {NUMBER}\n"
    )
    listed = _json(db, "block", "list")
    assert listed == [
        {"pattern": "+1212", "number": None},
        {"pattern": "+16465550123", "number": None},
        {"pattern": "anonymous", "number": NUMBER},
    ]
    assert _json(db, "block", "list", "--number", NUMBER) == [
        {"pattern": "anonymous", "number": NUMBER}
    ]
    table = ok(db, "block", "list").splitlines()
    assert table[0].split() == ["pattern", "scope"]
    assert table[1].split() == ["+1212", "all", "numbers"]
    rows = list(csv.DictReader(io.StringIO(ok(db, "block", "list", "--format", "csv"))))
    assert rows[2] == {"pattern": "anonymous", "scope": NUMBER}

    assert ok(db, "block", "remove", "+1212") == "unblocked +1212 for all numbers\n"
    ok(db, "block", "remove", "ANONYMOUS", "--number", NUMBER)
    assert _json(db, "block", "list") == [{"pattern": "+16465550123", "number": None}]


def test_block_is_dropped_with_its_number(db: Path) -> None:
    ok(db, "block", "add", "+44", "--number", NUMBER)
    ok(db, "numbers", "remove", NUMBER)
    assert _json(db, "block", "list") == []


def test_blocked_caller_is_found_by_the_store_match(db: Path) -> None:
    ok(db, "block", "add", "+1212")
    found = run_on_store(db, lambda s: s.blocks.matching("+12125550123", NUMBER))
    assert [b.pattern for b in found] == ["+1212"]


def test_no_database_change_on_duplicate_block(db: Path) -> None:
    ok(db, "block", "add", "+1212")
    before = dump(db)
    result = pbx(db, "block", "add", "+1 (212)")
    assert result.exit_code == 2
    assert result.stderr == "Error: +1212 is already blocked everywhere\n"
    assert dump(db) == before
