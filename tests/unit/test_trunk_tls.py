"""Trunks over TLS in the store and the CLI: --transport tls, --ca FILE, the 0008 migration."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from pbx.store.connect import open_store
from pbx.store.sqlite.store import load_migrations, split_statements
from tests.tls_support import Authority
from tests.unit.cli_helpers import dump, ok, pbx


def test_tls_trunk_with_private_ca(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    ca = tmp_path / "ca.pem"
    ca.write_text(Authority().pem)
    out = ok(db, "trunks", "add", "secure", "--host", "192.0.2.10", "--transport", "tls",
             "--ca", str(ca))  # fmt: skip
    assert "192.0.2.10:5061/tls" in out  # RFC 3261 §19.1.2: 5061 for TLS
    shown = ok(db, "trunks", "show", "secure")
    assert "1 PEM certificate" in shown
    assert "BEGIN" not in shown
    ok(db, "trunks", "update", "secure", "--ca", "")
    assert "PEM certificate" not in ok(db, "trunks", "show", "secure")


def test_bad_ca_and_ca_without_tls_change_nothing(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    ok(db, "trunks", "add", "plain", "--host", "192.0.2.10")
    before = dump(db)
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    key_only = tmp_path / "key.pem"
    key_only.write_text(Authority().issue("x.test").key)
    ca = tmp_path / "ca.pem"
    ca.write_text(Authority().pem)
    cases = [
        (("--transport", "tls", "--ca", str(tmp_path / "missing.pem")), "cannot read"),
        (("--transport", "tls", "--ca", str(junk)), "does not load"),
        (("--transport", "tls", "--ca", str(key_only)), "not a PEM CA certificate"),
        (("--ca", str(ca)), "--ca is for --transport tls"),
    ]
    for args, words in cases:
        result = pbx(db, "trunks", "update", "plain", *args)
        assert result.exit_code == 2, result.output
        assert words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert dump(db) == before


def test_migration_0008_keeps_trunks_their_allow_lists_and_numbers(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    for migration in load_migrations()[:7]:  # a database from before 0008
        for statement in split_statements(migration.sql):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 7")
    conn.execute(
        "INSERT INTO trunks (id, name, host, transport) VALUES (4, 'carrier', '192.0.2.10', 'tcp')"
    )
    conn.execute("INSERT INTO trunk_allow VALUES (4, 0, '192.0.2.0/24')")
    conn.execute("INSERT INTO sources (id, name) VALUES (1, 'Radio')")
    conn.execute("INSERT INTO numbers (number, source_id, trunk_id) VALUES ('+14155550150', 1, 4)")
    conn.commit()
    conn.close()

    async def after() -> tuple[str, tuple[str, ...], str | None, str]:
        async with await open_store(db) as store:
            trunk = await store.trunks.get("carrier")
            assert trunk is not None
            number = await store.numbers.get("+14155550150")
            assert number is not None
            tls = await store.trunks.update("carrier", transport="tls")
            return trunk.transport, trunk.allow, number.trunk, tls.transport

    assert asyncio.run(after()) == ("tcp", ("192.0.2.0/24",), "carrier", "tls")
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(load_migrations())
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'trunks'"
        )
        triggers = {r[0] for r in rows}
        assert triggers == {
            "trunks_insert_version",
            "trunks_update_version",
            "trunks_delete_version",
        }
        try:  # the foreign key from numbers still points at the rebuilt table
            conn.execute("DELETE FROM trunks WHERE id = 4")
            raise AssertionError("RESTRICT did not hold")
        except sqlite3.IntegrityError:
            pass
    finally:
        conn.close()


def test_serve_with_a_bad_certificate_exits_2_with_one_line(tmp_path: Path) -> None:
    leaf = Authority().issue("pbx.test")
    cert, key = leaf.write(tmp_path, "pbx")
    other_key = Authority().issue("x.test").write(tmp_path, "other")[1]
    cases = [
        (tmp_path / "missing.crt", key, "cannot read (No such file or directory)"),
        (key, key, "no PEM certificate"),
        (cert, other_key, "do not load as a certificate and its key"),
    ]
    for c, k, words in cases:
        env = {"PBX_SIP_TRANSPORTS": "udp,tls", "PBX_SIP_TLS_CERT": str(c),
               "PBX_SIP_TLS_KEY": str(k)}  # fmt: skip
        result = pbx(tmp_path / "pbx.sqlite3", "serve", "--sip", "127.0.0.1:45999", env=env)
        assert result.exit_code == 2, result.output
        assert words in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "pbx.sqlite3").exists()  # refused before anything was opened
