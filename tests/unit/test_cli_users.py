"""`pbx users|tokens|audit` on a real SQLite file: prompts, stdin passwords, the token printed
once as the last line, one-line errors with exit 2 and nothing changed, audit rows."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

from click.testing import CliRunner

from cli import cli
from pbx.admin import users as admin_users
from pbx.store.connect import open_store
from tests.unit.cli_helpers import dump, ok, pbx


def _stdin(db: Path, stdin: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--db", str(db), *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def _verify(db: Path, name: str, password: str) -> bool:
    async def go() -> bool:
        async with await open_store(db) as store:
            return await admin_users.verify_password(store, name, password) is not None

    return asyncio.run(go())


def test_users_add_with_stdin_and_prompt(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    code, out, _ = _stdin(
        db, "correct horse\n", "users", "add", "ann", "--role", "admin", "--password-stdin"
    )
    assert (code, out.strip()) == (0, "user ann added (admin)")
    code, out, _ = _stdin(
        db, "viewer pass 1\nviewer pass 1\n", "users", "add", "vic", "--role", "viewer"
    )
    assert code == 0
    assert "viewer pass 1" not in out  # hidden prompt
    assert _verify(db, "ann", "correct horse")
    assert _verify(db, "vic", "viewer pass 1")
    assert not _verify(db, "vic", "viewer pass 2")
    listed = json.loads(ok(db, "users", "list", "--format", "json"))
    assert [(u["name"], u["role"]) for u in listed] == [("ann", "admin"), ("vic", "viewer")]
    assert "argon2" not in ok(db, "users", "list", "--format", "csv")


def test_users_bad_input_is_one_line_exit_2_and_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    _stdin(db, "correct horse\n", "users", "add", "ann", "--role", "admin", "--password-stdin")
    before = dump(db)
    for stdin, args in (
        ("short\n", ("users", "add", "bob", "--role", "viewer", "--password-stdin")),
        ("long enough\n", ("users", "add", "bad name!", "--role", "viewer", "--password-stdin")),
        ("long enough\n", ("users", "add", "ann", "--role", "viewer", "--password-stdin")),
        ("", ("users", "add", "bob", "--role", "viewer", "--password-stdin")),
        ("", ("users", "add", "bob", "--role", "root", "--password-stdin")),
        ("", ("users", "remove", "ann")),
        ("", ("users", "remove", "nobody")),
        ("long enough\n", ("users", "passwd", "nobody", "--password-stdin")),
    ):
        code, _, err = _stdin(db, stdin, *args)
        assert code == 2, (args, err)
        assert err.startswith("Error: ")
        assert err.count("\n") == 1, err
    assert dump(db) == before


def test_passwd_and_remove(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    _stdin(db, "correct horse\n", "users", "add", "ann", "--role", "admin", "--password-stdin")
    _stdin(db, "correct horse\n", "users", "add", "amy", "--role", "admin", "--password-stdin")
    code, out, _ = _stdin(db, "new password!\n", "users", "passwd", "ann", "--password-stdin")
    assert (code, out.strip()) == (0, "password of user ann changed")
    assert _verify(db, "ann", "new password!")
    assert not _verify(db, "ann", "correct horse")
    assert ok(db, "users", "remove", "ann").strip() == "user ann removed"
    assert pbx(db, "users", "remove", "amy").exit_code == 2  # the last admin stays


def test_tokens_add_prints_the_token_last_and_stores_its_hash(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    out = ok(db, "tokens", "add", "ci", "--role", "viewer")
    token = out.rstrip("\n").splitlines()[-1]
    assert token.startswith("pbx_")
    assert len(token) > 40
    assert token not in dump(db)
    assert hashlib.sha256(token.encode()).hexdigest() in dump(db)
    assert token not in ok(db, "tokens", "list", "--format", "json")
    assert pbx(db, "tokens", "add", "ci", "--role", "admin").exit_code == 2
    assert ok(db, "tokens", "revoke", "ci").strip() == "token ci revoked"
    rows = json.loads(ok(db, "tokens", "list", "--format", "json"))
    assert [(r["name"], r["state"]) for r in rows] == [("ci", "revoked")]
    result = pbx(db, "tokens", "revoke", "ci")
    assert result.exit_code == 2
    assert result.stderr == "Error: no active token named 'ci'\n"


def test_audit_list_shows_who_when_what(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    _stdin(db, "correct horse\n", "users", "add", "ann", "--role", "admin", "--password-stdin")
    ok(db, "tokens", "add", "ci", "--role", "viewer")
    ok(db, "tokens", "revoke", "ci")
    rows = json.loads(ok(db, "audit", "list", "--format", "json"))
    assert [(r["action"], r["subject"]) for r in rows] == [
        ("tokens.revoke", "ci"),
        ("tokens.add", "ci"),
        ("users.add", "ann"),
    ]
    assert all(r["actor"].startswith("cli:") and r["at"].endswith("Z") for r in rows)
    assert rows[2]["detail"] == {"role": "admin"}
    table = ok(db, "audit", "list", "--limit", "1")
    assert "tokens.revoke" in table
    assert "users.add" not in table
    assert ok(db, "audit", "list", "--format", "csv").startswith("id,at,actor,action")
