"""`pbx extensions ...` on a real SQLite file: HA1 only, formats, bad input, ext: destinations."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from pbx.records import iso_utc
from pbx.sip.auth import ha1
from pbx.store import Binding, Store
from tests.unit import cli_helpers
from tests.unit.cli_helpers import dump, run_on_store

PASSWORD = "correct-horse-42"


def _stdin(args: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """`--password PW` as `--password-stdin` with PW on stdin (the way the guide says)."""
    if "--password" not in args:
        return args, None
    i = args.index("--password")
    return (*args[:i], "--password-stdin", *args[i + 2 :]), args[i + 1] + "\n"


def ok(db: Path, *args: str) -> str:
    argv, given = _stdin(args)
    return cli_helpers.ok(db, *argv, input=given)


def pbx(db: Path, *args: str) -> cli_helpers.Result:
    argv, given = _stdin(args)
    return cli_helpers.pbx(db, *argv, input=given)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "pbx.sqlite3"


def _json(db: Path, *args: str) -> Any:
    return json.loads(ok(db, *args, "--format", "json"))


def _bad(db: Path, *args: str) -> str:
    before = dump(db) if db.exists() else ""
    result = pbx(db, *args)
    assert result.exit_code == 2, (args, result.stdout, result.stderr)
    assert result.stderr.count("\n") == 1
    if before:
        assert dump(db) == before  # nothing changed
    return result.stderr


def test_add_stores_only_ha1_for_both_algorithms(db: Path) -> None:
    out = ok(db, "extensions", "add", "100", "--password", PASSWORD, "--max-contacts", "2")
    assert out == "extension 100 added (realm pbx)\n"
    assert PASSWORD not in dump(db)
    ext = run_on_store(db, lambda s: s.extensions.get("100"))
    assert ext is not None
    assert ext.ha1_md5 == ha1("MD5", "100", "pbx", PASSWORD)
    assert ext.ha1_sha256 == ha1("SHA-256", "100", "pbx", PASSWORD)
    assert ext.max_contacts == 2
    shown = _json(db, "extensions", "show", "100")
    assert shown == {
        "name": "100",
        "realm": "pbx",
        "max_contacts": 2,
        "digest": "both",
        "registered": 0,
        "contacts": [],
    }
    assert "ha1" not in ok(db, "extensions", "show", "100")


def test_list_in_every_format_counts_current_bindings(db: Path) -> None:
    ok(db, "extensions", "add", "alice", "--password", PASSWORD, "--realm", "office.example")
    ok(db, "extensions", "add", "bob", "--password", PASSWORD)

    async def bind(store: Store) -> None:
        live = Binding(
            extension="alice",
            contact="sip:alice@192.0.2.7:5062",
            expires_at=iso_utc(4_000_000_000),
            received="udp:192.0.2.7:5062",
        )
        dead = Binding(extension="bob", contact="sip:bob@192.0.2.8", expires_at=iso_utc(1_000))
        await store.extensions.set_binding(live)
        await store.extensions.set_binding(dead)

    run_on_store(db, bind)
    rows = _json(db, "extensions", "list")
    assert [(r["name"], r["realm"], r["registered"]) for r in rows] == [
        ("alice", "office.example", 1),
        ("bob", "pbx", 0),
    ]
    table = ok(db, "extensions", "list").splitlines()
    assert table[0].split() == ["name", "realm", "max_contacts", "digest", "registered"]
    assert table[1].split() == ["alice", "office.example", "1", "both", "1"]
    parsed = list(csv.DictReader(io.StringIO(ok(db, "extensions", "list", "--format", "csv"))))
    assert parsed[1] == {"name": "bob", "realm": "pbx", "max_contacts": "1", "digest": "both",
                         "registered": "0"}  # fmt: skip
    shown = _json(db, "extensions", "show", "alice")
    assert shown["contacts"][0]["received"] == "udp:192.0.2.7:5062"
    assert "sip:alice@192.0.2.7:5062" in ok(db, "extensions", "show", "alice")


def test_update_password_limit_and_rename(db: Path) -> None:
    ok(db, "extensions", "add", "alice", "--password", PASSWORD)
    ok(db, "extensions", "update", "alice", "--password", "another-pass-7", "--max-contacts", "3")
    ext = run_on_store(db, lambda s: s.extensions.get("alice"))
    assert ext is not None
    assert ext.ha1_md5 == ha1("MD5", "alice", "pbx", "another-pass-7")
    assert ext.max_contacts == 3
    assert "needs the password" in _bad(db, "extensions", "update", "alice", "--rename", "carol")
    assert "needs the password" in _bad(db, "extensions", "update", "alice", "--realm", "x")
    ok(db, "extensions", "update", "alice", "--rename", "carol", "--password", PASSWORD)
    carol = run_on_store(db, lambda s: s.extensions.get("carol"))
    assert carol is not None
    assert carol.ha1_sha256 == ha1("SHA-256", "carol", "pbx", PASSWORD)
    assert "nothing to change" in _bad(db, "extensions", "update", "carol")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "alice"), "--password-stdin"),
        (("add", "alice", "--password", "short"), "8-128"),
        (("add", "al ice", "--password", PASSWORD), "SIP user part"),
        (("add", "al@ce", "--password", PASSWORD), "SIP user part"),
        (("add", "alice", "--password", PASSWORD, "--max-contacts", "0"), "between 1 and 16"),
        (("add", "alice", "--password", PASSWORD, "--max-contacts", "17"), "between 1 and 16"),
        (("add", "alice", "--password", PASSWORD, "--realm", 'a"b'), "realm"),
        (("update", "nobody", "--max-contacts", "2"), "no extension named 'nobody'"),
        (("show", "nobody"), "no extension named 'nobody'"),
        (("remove", "nobody"), "no extension named 'nobody'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    db: Path, args: tuple[str, ...], message: str
) -> None:
    ok(db, "extensions", "add", "bob", "--password", PASSWORD)
    assert message in _bad(db, "extensions", *args)


def test_duplicate_is_refused(db: Path) -> None:
    ok(db, "extensions", "add", "alice", "--password", PASSWORD)
    assert "already exists" in _bad(db, "extensions", "add", "alice", "--password", PASSWORD)


def test_extension_as_destination_and_removal_rules(db: Path) -> None:
    assert "no extension named 'alice'" in _bad(db, "destinations", "add", "desk", "ext:alice")
    ok(db, "extensions", "add", "alice", "--password", PASSWORD)
    assert (
        ok(db, "destinations", "add", "desk", "ext:alice") == "destination desk added (ext:alice)\n"
    )
    assert _json(db, "destinations", "show", "desk")["kind"] == "extension"
    local = ok(db, "destinations", "add", "desk2", "sip:alice@local")
    assert local == "destination desk2 added (ext:alice)\n"
    assert "no extension named 'bob'" in _bad(db, "destinations", "add", "d3", "sip:bob@local")
    ok(db, "destinations", "remove", "desk2")
    assert "destination 'desk' points to it" in _bad(db, "extensions", "remove", "alice")
    ok(db, "destinations", "remove", "desk")
    assert ok(db, "extensions", "remove", "alice") == "extension alice removed\n"
    assert _json(db, "extensions", "list") == []


def test_digest_choice_is_stored_and_changed_without_the_password(db: Path) -> None:
    ok(db, "extensions", "add", "desk", "--password", PASSWORD, "--digest", "md5")
    assert _json(db, "extensions", "show", "desk")["digest"] == "md5"
    ok(db, "extensions", "update", "desk", "--digest", "sha-256")
    ext = run_on_store(db, lambda s: s.extensions.get("desk"))
    assert ext is not None
    assert ext.digest == "sha-256"
    assert ext.ha1_md5 == ha1("MD5", "desk", "pbx", PASSWORD)  # both kept: switch back freely
    assert "--digest" in pbx(db, "extensions", "add", "x1", "--digest", "sha1").stderr


def test_password_from_a_file_and_the_old_option_warns(db: Path, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD + "\n")
    ok(db, "extensions", "add", "filed", "--password-file", str(secret))
    ext = run_on_store(db, lambda s: s.extensions.get("filed"))
    assert ext is not None
    assert ext.ha1_md5 == ha1("MD5", "filed", "pbx", PASSWORD)  # the newline is not part of it
    old = cli_helpers.pbx(db, "extensions", "add", "old", "--password", PASSWORD)
    assert old.exit_code == 0
    assert "shows the password" in old.stderr
    assert PASSWORD not in old.stderr + old.stdout
    two = cli_helpers.pbx(
        db, "extensions", "add", "two", "--password", PASSWORD, "--password-file", str(secret)
    )
    assert two.exit_code == 2
    assert "only one of" in two.stderr
    assert ext.ha1_md5 not in repr(ext)
    assert ext.ha1_sha256 not in repr(ext)
