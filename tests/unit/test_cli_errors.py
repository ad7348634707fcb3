"""`pbx` bad input: exit code 2, exactly one line on stderr, database unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.cli_helpers import dump, pbx, seed

BAD_INPUT = [
    # numbers
    (("numbers", "add", "555-123-4567", "--source", "Radio", "--destination", "mobile"),
     "invalid phone number '555-123-4567'"),
    (("numbers", "add", "4155550199", "--source", "Nope", "--destination", "mobile"),
     "no source named 'Nope'"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "nope"),
     "no destination named 'nope'"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "mobile",
      "--trunk", "nope"), "no trunk named 'nope'"),
    (("numbers", "add", "4155550150", "--source", "Radio", "--destination", "mobile"),
     "+14155550150 already exists"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "mobile",
      "--ring-timeout", "-5"), "--ring-timeout must be 1-600 seconds (got -5)"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "mobile",
      "--ring-timeout", "0"), "--ring-timeout must be 1-600"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "mobile",
      "--destination", "mobile"), "destination 'mobile' is given twice"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "mobile",
      "--strategy", "random"), "Invalid value for '--strategy'"),
    (("numbers", "add", "4155550199", "--source", "Radio"), "Missing option '--destination'"),
    (("numbers", "update", "4155550199", "--strategy", "simultaneous"),
     "no tracking number +14155550199"),
    (("numbers", "update", "4155550150", "--destination", "nope"),
     "no destination named 'nope'"),
    (("numbers", "update", "4155550150", "--ring-timeout", "601"), "--ring-timeout must be 1-600"),
    (("numbers", "remove", "4155550199"), "no tracking number +14155550199"),
    (("numbers", "show", "12"), "invalid phone number '12'"),
    # destinations
    (("destinations", "add", "mobile", "+14155550102"), "destination 'mobile' already exists"),
    (("destinations", "add", "x", "+1 555 555 0101"), "invalid phone number"),
    (("destinations", "add", "x", "sip:@"), "invalid SIP URI"),
    (("destinations", "add", "x", "ext:bob"), "no extension named 'bob'"),
    (("destinations", "add", " x", "+14155550102"), "destination name must be non-empty"),
    (("destinations", "remove", "mobile"), "destination 'mobile' is used by +14155550150"),
    (("destinations", "remove", "nope"), "no destination named 'nope'"),
    (("destinations", "update", "mobile", "--rename", "front-desk"),
     "destination 'front-desk' already exists"),
    (("destinations", "update", "nope", "--target", "+14155550102"),
     "no destination named 'nope'"),
    # sources
    (("sources", "add", "Radio"), "source 'Radio' already exists"),
    (("sources", "add", "Bad", "--onsite", "--referrer", "(unclosed"), "--referrer: invalid regex"),
    (("sources", "add", "Bad", "--onsite", "--landing", "x" * 600),
     "--landing: invalid regex: longer than"),
    (("sources", "add", "Bad", "--onsite"), "an onsite source needs --referrer or --landing"),
    (("sources", "add", "Bad", "--referrer", "x"), "are for onsite sources (add --onsite)"),
    (("sources", "add", "Bad", "--cost-per-call", "1", "--monthly-budget", "2"),
     "give only one of --cost-per-call, --monthly-budget and --no-cost"),
    (("sources", "add", "Bad", "--cost-per-call", "-1"), "invalid --cost-per-call '-1'"),
    (("sources", "add", "Bad", "--cost-per-call", "1.234"), "invalid --cost-per-call"),
    (("sources", "add", "Bad", "--monthly-budget", "lots"), "invalid --monthly-budget 'lots'"),
    (("sources", "add", "Bad", "--position", "-1", "--onsite", "--referrer", "x"),
     "--position must be 0-10000 (got -1)"),
    (("sources", "add", "Bad", "--preset", "nope"), "no preset 'nope'"),
    (("sources", "add", "--preset", "google-ads"), "source 'Google Ads' already exists"),
    (("sources", "add"), "give a NAME, or --preset KEY"),
    (("sources", "remove", "Google Ads"), "source 'Google Ads' still has numbers +14155550150"),
    (("sources", "update", "Google Ads", "--referrer", "", "--landing", ""),
     "an onsite source needs --referrer or --landing"),
    (("sources", "update", "Radio", "--rename", "Google Ads"),
     "source 'Google Ads' already exists"),
    (("sources", "show", "nope"), "no source named 'nope'"),
    # trunks
    (("trunks", "add", "carrier", "--host", "203.0.113.11"), "trunk 'carrier' already exists"),
    (("trunks", "add", "t2", "--host", "203.0.113.11", "--allow", "10.0.0.0/33"),
     "invalid --allow '10.0.0.0/33'"),
    (("trunks", "add", "t2", "--host", "203.0.113.11", "--allow", "nope"), "invalid --allow"),
    (("trunks", "add", "t2", "--host", "bad host"), "invalid --host 'bad host'"),
    (("trunks", "add", "t2", "--host", "203.0.113.11:99999"), "invalid --host"),
    (("trunks", "add", "t2", "--host", "sip.example.com"),
     "trunk host sip.example.com is a name: give the provider's addresses with --allow CIDR"),
    (("trunks", "add", "t2", "--host", "203.0.113.11", "--username", "u"),
     "--username and a password go together (give it with --password-stdin)"),
    (("trunks", "add", "t2", "--host", "203.0.113.11", "--register"),
     "--register needs --username and a password (--password-stdin)"),
    (("trunks", "add", "t2", "--host", "203.0.113.11", "--prefix", "9x"), "--prefix must be"),
    (("trunks", "add", "t2"), "Missing option '--host'"),
    (("trunks", "remove", "carrier"), "trunk 'carrier' is used by +14155550150"),
    (("trunks", "update", "nope", "--transport", "tcp"), "no trunk named 'nope'"),
    (("trunks", "update", "carrier", "--username", ""),
     "--username and a password go together (give it with --password-stdin)"),
    # hours, after hours, caller ID
    (("numbers", "update", "4155550150", "--hours", "Mars/Olympus mon 09:00-17:00"),
     "invalid --hours: unknown time zone 'Mars/Olympus'"),
    (("numbers", "update", "4155550150", "--hours", "UTC mon 25:00-26:00"),
     "invalid --hours: invalid time '25:00'"),
    (("numbers", "update", "4155550150", "--hours", "UTC someday 09:00-10:00"),
     "invalid --hours: invalid days 'someday'"),
    (("numbers", "update", "4155550150", "--hours", "UTC"), "invalid --hours: schedule has no"),
    (("numbers", "update", "4155550150", "--after-hours", "mobile"),
     "--after-hours needs business hours: give --hours too"),
    (("numbers", "update", "4155550150", "--hours", "UTC mon 09:00-10:00", "--after-hours", "nope"),
     "no destination named 'nope'"),
    (("numbers", "update", "4155550150", "--hours", "UTC mon 09:00-10:00", "--after-hours",
      "mobile", "--after-hours", "mobile"), "destination 'mobile' is given twice in --after-hours"),
    (("numbers", "update", "4155550150", "--hours", "UTC mon 09:00-10:00", "--no-hours"),
     "give only one of --hours and --no-hours"),
    (("numbers", "add", "4155550199", "--source", "Radio", "--destination", "mobile",
      "--after-hours", "mobile"), "--after-hours needs business hours"),
    # trunk dialing options
    (("trunks", "update", "carrier", "--prefix", "1" * 17), "--prefix must be up to 16"),
    (("trunks", "update", "carrier", "--strip-plus", "--keep-plus", "--rename", " x"),
     "trunk name must be non-empty"),
    # block list
    (("block", "add", "212"), "invalid number or prefix '212'"),
    (("block", "add", "+12x"), "invalid number or prefix '+12x'"),
    (("block", "add", "+1212", "--number", "4155550199"), "no tracking number +14155550199"),
    (("block", "add", "+1212", "--number", "12"), "invalid phone number '12'"),
    (("block", "remove", "+1212"), "+1212 is not blocked everywhere"),
    (("block", "remove", "anonymous", "--number", "4155550150"),
     "anonymous is not blocked for +14155550150"),
    (("block", "list", "--number", "4155550199"), "no tracking number +14155550199"),
    (("block", "add"), "Missing argument 'NUMBER-OR-PREFIX'"),
    # calls export
    (("calls", "export", "--since", "2024-13-01"), "invalid --since '2024-13-01'"),
    (("calls", "export", "--format", "table"), "Invalid value for '--format'"),
    (("calls", "export", "--limit", "0"), "Invalid value for '--limit'"),
    # calls and global
    (("calls", "show", "nope"), "no call nope"),
    (("calls", "list", "--since", "yesterday"), "invalid --since 'yesterday'"),
    (("calls", "list", "--number", "12"), "invalid phone number '12'"),
    (("calls", "list", "--limit", "0"), "Invalid value for '--limit'"),
    (("numbers", "list", "--format", "xml"), "Invalid value for '--format'"),
    (("nope",), "No such command 'nope'"),
]  # fmt: skip


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("cli") / "pbx.sqlite3"
    seed(db)
    return db


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=lambda a: " ".join(a)[:60])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    seeded: Path, args: tuple[str, ...], message: str
) -> None:
    before = dump(seeded)
    result = pbx(seeded, *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert message in lines[0]
    assert dump(seeded) == before


def test_removing_a_used_destination_with_force_succeeds(seeded: Path, tmp_path: Path) -> None:
    db = tmp_path / "own.sqlite3"
    seed(db)
    before = dump(db)
    assert pbx(db, "destinations", "remove", "mobile").exit_code == 2
    assert dump(db) == before
    assert pbx(db, "destinations", "remove", "mobile", "--force").exit_code == 0
    assert dump(db) != before


def test_unusable_database_is_one_line_exit_1(tmp_path: Path) -> None:
    not_a_db = tmp_path / "junk.sqlite3"
    not_a_db.write_bytes(b"this is not sqlite" * 100)
    result = pbx(not_a_db, "numbers", "list")
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: cannot use database {not_a_db}")
