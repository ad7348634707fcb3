"""Rough edges a new admin hit (issue 16 point 6), each on a real SQLite file.

Read-only commands on a missing database, `calls show` by id prefix,
internal fields and money in listings, `--force` named in errors, and the
migration that prices records written before calls kept their own cost.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from pbx.records import CallRecord, Disposition
from pbx.store.connect import open_store
from pbx.store.sqlite.store import load_migrations, split_statements
from tests.unit.cli_helpers import ok, pbx, run_on_store, seed

READ_ONLY = [
    ("trunks", "list"),
    ("trunks", "show", "carrier"),
    ("numbers", "list"),
    ("sources", "list"),
    ("destinations", "list"),
    ("extensions", "list"),
    ("block", "list"),
    ("calls", "list"),
    ("calls", "show", "abc"),
    ("calls", "export"),
    ("visits", "list"),
    ("report", "roi", "--month", "2026-03"),
    ("trunks", "remove", "carrier"),
]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_read_only_command_on_a_missing_database_creates_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    db = tmp_path / "typo" / "pbx.sqlite3"
    result = pbx(db, *args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert f"no database at {db}" in result.stderr
    assert not db.exists()
    assert not db.parent.exists()


def test_add_creates_the_database(tmp_path: Path) -> None:
    db = tmp_path / "new" / "pbx.sqlite3"
    ok(db, "destinations", "add", "desk", "+14155550101")
    assert db.exists()
    assert json.loads(ok(db, "destinations", "list", "--format", "json"))[0]["name"] == "desk"


def _record(call_id: str) -> CallRecord:
    return CallRecord(
        id=call_id, inbound_call_id=f"in-{call_id}", started_at="2026-03-05T10:00:00.000000Z",
        caller="+12125550199", tracking_number="+14155550150", source="Radio",
        disposition=Disposition.ANSWERED,
    )  # fmt: skip


def test_calls_show_takes_a_unique_prefix(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    for call_id in ("4f1a0001", "4f1a0002", "77b2c3"):
        run_on_store(db, lambda s, i=call_id: s.calls.insert(_record(i)))  # type: ignore[misc]
    shown = json.loads(ok(db, "calls", "show", "77", "--format", "json"))
    assert shown["id"] == "77b2c3"
    assert json.loads(ok(db, "calls", "show", "4f1a0002", "--format", "json"))["id"] == "4f1a0002"
    ambiguous = pbx(db, "calls", "show", "4f1a")
    assert ambiguous.exit_code == 2
    expected = "Error: 2 calls have ids starting with '4f1a': give more characters\n"
    assert ambiguous.stderr == expected
    for missing in ("9", "4f1a*", "%"):
        result = pbx(db, "calls", "show", missing)
        assert result.exit_code == 2
        assert result.stderr.startswith("Error: no call ")


def test_internal_fields_are_not_listed_and_money_shows_as_entered(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    for args in (("numbers", "list"), ("numbers", "show", "+14155550150")):
        text = ok(db, *args) + ok(db, *args, "--format", "json") + ok(db, *args, "--format", "csv")
        assert "rr_cursor" not in text
    radio = json.loads(ok(db, "sources", "show", "Radio", "--format", "json"))
    assert radio["cost_per_call"] == "12.50"
    assert "cost_per_call_cents" not in radio
    assert "12.50" in ok(db, "sources", "show", "Radio")
    assert "1250" not in ok(db, "sources", "show", "Radio")
    listed = json.loads(ok(db, "sources", "list", "--format", "json"))
    assert all("cost_per_call_cents" not in row for row in listed)


def test_errors_that_suggest_forcing_name_the_flag(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    trunk = pbx(db, "trunks", "remove", "carrier")
    destination = pbx(db, "destinations", "remove", "front-desk")
    for result in (trunk, destination):
        assert result.exit_code == 2
        assert "--force" in result.stderr, result.stderr


def test_migration_prices_old_records_once_and_never_blocked_ones(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    for migration in load_migrations()[:2]:  # a database from before 0003
        for statement in split_statements(migration.sql):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute("INSERT INTO sources (name, cost_per_call_cents) VALUES ('Radio', 1250)")
    for call_id, disposition in (("a", "answered"), ("b", "blocked"), ("c", "rejected")):
        conn.execute(
            "INSERT INTO calls (id, inbound_call_id, started_at, caller, tracking_number, "
            "source, disposition) VALUES (?, ?, '2026-03-05T10:00:00.000000Z', '+12125550199', "
            "'+14155550150', 'Radio', ?)",
            (call_id, f"in-{call_id}", disposition),
        )
    conn.commit()
    conn.close()

    async def costs() -> dict[str, int | None]:
        async with await open_store(db) as store:
            return {r.id: r.cost_cents for r in await store.calls.list()}

    assert asyncio.run(costs()) == {"a": 1250, "b": None, "c": None}
