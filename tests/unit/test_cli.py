"""`pbx` CLI round trips on a real SQLite file: every command, every output format."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from cli import cli
from pbx.records import Attempt, CallRecord, Disposition
from pbx.store.base import Extension
from tests.unit.cli_helpers import dump, ok, run_on_store, seed


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pbx.sqlite3"


def _json(db: Path, *args: str) -> Any:
    return json.loads(ok(db, *args, "--format", "json"))


def _csv(db: Path, *args: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(ok(db, *args, "--format", "csv"))))


# ---------------------------------------------------------------- trunks


def test_trunk_round_trip(db: Path) -> None:
    out = ok(db, "trunks", "add", "carrier", "--host", "203.0.113.10:5080", "--transport", "tcp",
             "--username", "acme", "--password", "s3cret", "--register",
             "--allow", "198.51.100.0/24", "--allow", "203.0.113.10")  # fmt: skip
    assert out == "trunk carrier added (203.0.113.10:5080/tcp)\n"
    shown = _json(db, "trunks", "show", "carrier")
    assert shown["host"] == "203.0.113.10"
    assert shown["port"] == 5080
    assert shown["transport"] == "tcp"
    assert shown["register"] is True
    assert shown["allow"] == ["198.51.100.0/24", "203.0.113.10/32"]
    assert shown["password"] == "********"
    assert "s3cret" not in ok(db, "trunks", "list") + ok(db, "trunks", "show", "carrier")

    ok(db, "trunks", "update", "carrier", "--host", "[2001:db8::1]", "--transport", "udp",
       "--no-register", "--allow", "2001:db8::/64", "--prefix", "9", "--strip-plus", "--disable",
       "--rename", "backup")  # fmt: skip
    shown = _json(db, "trunks", "show", "backup")
    assert (shown["host"], shown["port"], shown["transport"]) == ("2001:db8::1", 5060, "udp")
    assert shown["allow"] == ["2001:db8::/64"]
    assert shown["register"] is False
    assert shown["strip_plus"] is True
    assert shown["prefix"] == "9"
    assert shown["enabled"] is False

    ok(db, "trunks", "update", "backup", "--username", "", "--password", "")
    assert _json(db, "trunks", "show", "backup")["username"] is None
    assert ok(db, "trunks", "remove", "backup") == "trunk backup removed\n"
    assert _json(db, "trunks", "list") == []


def test_trunk_default_allow_is_the_host(db: Path) -> None:
    ok(db, "trunks", "add", "carrier", "--host", "203.0.113.10")
    assert _json(db, "trunks", "list")[0]["allow"] == ["203.0.113.10/32"]
    ok(db, "trunks", "add", "named", "--host", "sip.example.com", "--allow", "192.0.2.0/28")
    rows = _csv(db, "trunks", "list")
    assert [r["name"] for r in rows] == ["carrier", "named"]
    assert rows[1]["allow"] == "192.0.2.0/28"


# ---------------------------------------------------------------- destinations


def test_destination_round_trip(db: Path) -> None:
    assert ok(db, "destinations", "add", "desk", "415.555.0101") == (
        "destination desk added (+14155550101)\n"
    )
    ok(db, "destinations", "add", "agent", "sip:agent@192.0.2.5:5070")
    run_on_store(db, lambda s: s.extensions.add(
        Extension(name="alice", ha1_md5="0" * 32, ha1_sha256="0" * 64, realm="pbx")))  # fmt: skip
    ok(db, "destinations", "add", "alice-phone", "ext:alice")
    rows = {r["name"]: r for r in _json(db, "destinations", "list")}
    assert rows["desk"]["kind"] == "number"
    assert rows["agent"] == {"name": "agent", "target": "sip:agent@192.0.2.5:5070",
                             "kind": "sip", "id": 2}  # fmt: skip
    assert rows["alice-phone"]["target"] == "ext:alice"
    assert rows["alice-phone"]["kind"] == "extension"

    ok(db, "destinations", "update", "desk", "--target", "tel:+12125550123", "--rename", "front")
    assert _json(db, "destinations", "show", "front")["target"] == "+12125550123"
    ok(db, "destinations", "remove", "front")
    assert sorted(r["name"] for r in _json(db, "destinations", "list")) == ["agent", "alice-phone"]


def test_destination_remove_force_drops_it_from_numbers(db: Path) -> None:
    seed(db)
    ok(db, "destinations", "remove", "mobile", "--force")
    assert _json(db, "numbers", "show", "4155550150")["destinations"] == ["front-desk"]


# ---------------------------------------------------------------- sources


def test_source_from_preset_can_be_renamed_and_overridden(db: Path) -> None:
    assert ok(db, "sources", "add", "My Google", "--preset", "google-ads", "--tag", "gads") == (
        "source My Google added (onsite)\n"
    )
    shown = _json(db, "sources", "show", "My Google")
    assert shown["preset"] == "google-ads"
    assert shown["onsite"] is True
    assert "gclid" in shown["landing"]
    assert shown["position"] == 10
    assert shown["tag"] == "gads"

    ok(db, "sources", "add", "--preset", "tv")
    tv = _json(db, "sources", "show", "TV")
    assert tv["onsite"] is False
    assert tv["preset"] == "tv"


def test_custom_source_is_offsite_unless_onsite(db: Path) -> None:
    ok(db, "sources", "add", "Flyer", "--description", "Spring flyer", "--monthly-budget", "300")
    flyer = _json(db, "sources", "show", "Flyer")
    assert flyer["onsite"] is False
    assert flyer["monthly_budget"] == "300.00"
    assert flyer["cost_per_call"] is None
    assert flyer["description"] == "Spring flyer"

    ok(db, "sources", "add", "Partner", "--onsite", "--referrer", r"partner\.example",
       "--position", "5", "--last-touch", "--cost-per-call", "0.75")  # fmt: skip
    partner = _json(db, "sources", "show", "Partner")
    assert partner["onsite"] is True
    assert partner["referrer"] == r"partner\.example"
    assert partner["position"] == 5
    assert partner["last_touch"] is True
    assert partner["cost_per_call"] == "0.75"


def test_source_update_and_remove(db: Path) -> None:
    ok(db, "sources", "add", "Flyer", "--monthly-budget", "300")
    ok(db, "sources", "update", "Flyer", "--cost-per-call", "2.05", "--tag", "flyer", "--disable")
    flyer = _json(db, "sources", "show", "Flyer")
    assert (flyer["cost_per_call"], flyer["monthly_budget"]) == ("2.05", None)
    assert flyer["enabled"] is False
    ok(db, "sources", "update", "Flyer", "--onsite", "--landing", "utm_source=flyer", "--no-cost",
       "--rename", "Flyer QR")  # fmt: skip
    moved = _json(db, "sources", "show", "Flyer QR")
    assert moved["onsite"] is True
    assert moved["landing"] == "utm_source=flyer"
    assert moved["cost_per_call"] is None
    ok(db, "sources", "update", "Flyer QR", "--offsite", "--landing", "", "--tag", "")
    assert _json(db, "sources", "show", "Flyer QR")["tag"] is None
    ok(db, "sources", "remove", "Flyer QR")
    assert _json(db, "sources", "list") == []


def test_sources_list_formats(db: Path) -> None:
    seed(db)
    table = ok(db, "sources", "list").splitlines()
    assert table[0].split() == ["name", "preset", "type", "position", "tag", "cost", "enabled"]
    assert table[1].split()[:2] == ["Radio", "offsite"]  # position 0 first; no preset
    assert "12.50/call" in table[1]
    rows = _csv(db, "sources", "list")
    assert [r["name"] for r in rows] == ["Radio", "Google Ads"]
    assert rows[1]["type"] == "onsite"
    as_json = _json(db, "sources", "list")
    assert as_json[0]["cost_per_call"] == "12.50"


def test_sources_presets_lists_every_preset(db: Path) -> None:
    keys = [p["key"] for p in _json(db, "sources", "presets")]
    assert {"google-ads", "direct-mail", "x-twitter"} <= set(keys)
    table = ok(db, "sources", "presets").splitlines()
    assert table[0].split() == ["key", "name", "type", "position", "description"]
    assert len(table) == len(keys) + 1
    assert _csv(db, "sources", "presets")[0]["key"] == keys[0]


# ---------------------------------------------------------------- numbers


def test_number_round_trip(db: Path) -> None:
    seed(db)
    shown = _json(db, "numbers", "show", "(415) 555-0150")
    assert shown["number"] == "+14155550150"
    assert shown["source"] == "Google Ads"
    assert shown["destinations"] == ["front-desk", "mobile"]
    assert shown["strategy"] == "sequential"
    assert shown["ring_timeout"] == 20
    assert shown["trunk"] == "carrier"
    assert (shown["region"], shown["area_code"], shown["location"]) == (
        "US", "415", "San Francisco, CA",
    )  # fmt: skip

    ok(db, "numbers", "update", "14155550150", "--destination", "mobile", "--strategy",
       "round-robin", "--ring-timeout", "45", "--trunk", "", "--source", "Radio",
       "--disable")  # fmt: skip
    shown = _json(db, "numbers", "show", "+14155550150")
    assert shown["destinations"] == ["mobile"]
    assert (shown["strategy"], shown["ring_timeout"], shown["trunk"]) == ("round-robin", 45, None)
    assert shown["source"] == "Radio"
    assert shown["enabled"] is False
    assert ok(db, "numbers", "remove", "415-555-0150") == "number +14155550150 removed\n"
    assert _json(db, "numbers", "list") == []


def test_numbers_list_formats_and_filter(db: Path) -> None:
    seed(db)
    ok(db, "numbers", "add", "+442079460958", "--source", "Radio", "--destination", "mobile",
       "--strategy", "simultaneous", "--ring-timeout", "30")  # fmt: skip
    table = ok(db, "numbers", "list").splitlines()
    assert table[0].split() == ["number", "source", "destinations", "strategy", "ring_timeout",
                                "trunk", "location"]  # fmt: skip
    cells = [re.split(r"\s{2,}", line) for line in table[1:]]
    assert cells[0] == ["+14155550150", "Google Ads", "front-desk, mobile", "sequential", "20",
                        "carrier", "San Francisco, CA"]  # fmt: skip
    assert cells[1] == ["+442079460958", "Radio", "mobile", "simultaneous", "30", "London"]
    rows = _csv(db, "numbers", "list")
    assert rows[0]["destinations"] == "front-desk, mobile"
    assert rows[1]["location"] == "London"
    radio = _json(db, "numbers", "list", "--source", "Radio")
    assert [n["number"] for n in radio] == ["+442079460958"]
    assert radio[0]["area_code"] == "20"


def test_region_option_reads_national_numbers(db: Path) -> None:
    seed(db)
    ok(db, "--region", "gb", "destinations", "add", "london", "020 7946 0958")
    assert _json(db, "destinations", "show", "london")["target"] == "+442079460958"


# ---------------------------------------------------------------- calls


def _record(call_id: str, started: str, number: str = "+14155550150") -> CallRecord:
    return CallRecord(
        id=call_id, inbound_call_id=f"in-{call_id}", started_at=started, caller="+12125550199",
        tracking_number=number, source="Google Ads", destination="front-desk",
        disposition=Disposition.ANSWERED, talk_seconds=42.0,
        attempts=(Attempt(target="+14155550101", status=200),),
    )  # fmt: skip


def test_calls_list_and_show(db: Path) -> None:
    seed(db)
    assert ok(db, "calls", "list").splitlines()[0].split()[:3] == [
        "started_at", "caller", "tracking_number",
    ]  # fmt: skip
    assert _json(db, "calls", "list") == []
    run_on_store(db, lambda s: s.calls.insert(_record("a1", "2024-05-01T10:00:00.000000Z")))
    run_on_store(db, lambda s: s.calls.insert(_record("b2", "2024-06-01T10:00:00.000000Z")))
    listed = _json(db, "calls", "list")
    assert [c["id"] for c in listed] == ["b2", "a1"]
    assert listed[0]["attempts"] == [
        {"target": "+14155550101", "status": 200, "started_at": None, "ended_at": None,
         "reason": None, "dialled": None},
    ]  # fmt: skip
    assert [c["id"] for c in _json(db, "calls", "list", "--since", "2024-05-15")] == ["b2"]
    assert [c["id"] for c in _json(db, "calls", "list", "--limit", "1")] == ["b2"]
    assert _json(db, "calls", "list", "--number", "(212) 555-0123") == []
    assert len(_json(db, "calls", "list", "--number", "4155550150")) == 2
    rows = _csv(db, "calls", "list")
    assert rows[0]["id"] == "b2"
    assert "+14155550101" in rows[0]["attempts"]  # summarised by pbx.records.to_csv
    table = ok(db, "calls", "list").splitlines()
    assert len(table) == 3
    assert "answered" in table[1]
    shown = _json(db, "calls", "show", "a1")
    assert shown["caller"] == "+12125550199"
    assert shown["disposition"] == "answered"
    text = ok(db, "calls", "show", "a1")
    assert re.search(r"^talk_seconds +42\.0$", text, re.MULTILINE)
    assert re.search(r"^attempts +200 \+14155550101$", text, re.MULTILINE)  # as in CSV
    assert _json(db, "calls", "show", "a")["id"] == "a1"  # a unique prefix is enough


# ---------------------------------------------------------------- global options, help


def test_db_from_environment(tmp_path: Path) -> None:
    db = tmp_path / "env.sqlite3"
    result = CliRunner().invoke(cli, ["destinations", "add", "desk", "+14155550101"],
                                env={"PBX_DB": str(db)})  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "+14155550101" in dump(db)


def test_default_db_is_data_pbx_sqlite3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PBX_DB", raising=False)
    result = CliRunner().invoke(cli, ["sources", "add", "--preset", "tv"])
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "data" / "pbx.sqlite3").exists()


def _all_commands() -> list[list[str]]:
    paths: list[list[str]] = [[]]
    for name, command in sorted(cli.commands.items()):
        paths.append([name])
        if isinstance(command, click.Group):
            paths.extend([name, sub] for sub in sorted(command.commands))
    return paths


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p) or "pbx")
def test_every_command_and_option_has_help(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage: " in result.stdout
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.help, path
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            assert param.help, (path, param.name)


# ---------------------------------------------------------------- README quickstart

README = Path(__file__).resolve().parents[2] / "README.md"


def _quickstart() -> tuple[str, str]:
    """The README's Quickstart commands and the output it shows for them."""
    text = README.read_text().split("## Quickstart", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", text, re.S)
    commands = next(body for lang, body in blocks if lang == "sh")
    output = next(body for lang, body in blocks if lang == "")
    return commands, output


def test_readme_quickstart_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PBX_DB", raising=False)
    commands, expected = _quickstart()
    output = ""
    for line in commands.replace("\\\n", " ").splitlines():
        given = None
        if " | pbx " in line:  # printf '%s\n' SECRET | pbx ... --password-stdin
            feed, line = line.split(" | ", 1)
            printf = shlex.split(feed)
            assert printf[:2] == ["printf", "%s\\n"], feed
            given = printf[2] + "\n"
        argv = shlex.split(line)
        assert argv[0] == "pbx"
        result = CliRunner().invoke(cli, argv[1:], input=given)
        assert result.exit_code == 0, (line, result.stderr)
        output = result.stdout
    assert output == expected
