"""Every provisioning change made from the CLI is in the audit log; secrets never are."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.cli_helpers import ok, pbx, seed


def test_cli_changes_are_audited_without_secrets(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    ok(db, "numbers", "update", "+1 415 555 0150", "--ring-timeout", "25")
    rows = json.loads(ok(db, "audit", "list", "--format", "json"))
    actions = [row["action"] for row in reversed(rows)]
    assert actions == [
        "trunks.add", "destinations.add", "destinations.add", "sources.add", "sources.add",
        "numbers.add", "numbers.update",
    ]  # fmt: skip
    assert all(row["actor"].startswith("cli:") for row in rows)
    assert "s3cret" not in json.dumps(rows)
    assert rows[0]["subject"] == "+1 415 555 0150"


def test_a_refused_change_is_not_audited(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    before = ok(db, "audit", "list", "--format", "json")
    assert pbx(db, "destinations", "add", "bad", "not a number").exit_code == 2
    assert ok(db, "audit", "list", "--format", "json") == before
