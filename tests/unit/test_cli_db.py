"""`pbx db migrate --to URL` against a real throwaway PostgreSQL cluster (tests/pg.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from pbx.store.connect import open_store
from tests.unit.cli_helpers import dump, ok, pbx, seed


def _pg_dump(url: str) -> str:
    async def go() -> str:
        async with await open_store(url) as store:
            return await store.dump()

    return asyncio.run(go())


def test_migrate_copies_every_row_and_prints_counts(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    out = json.loads(ok(db, "db", "migrate", "--to", pg_url, "--format", "json"))
    counts = {row["table"]: (row["source_rows"], row["target_rows"]) for row in out}
    assert counts["trunks"] == (1, 1)
    assert counts["sources"] == (2, 2)
    assert counts["numbers"] == (1, 1)
    assert all(source == target for source, target in counts.values())
    assert _pg_dump(pg_url) == dump(db)  # row for row, through both backends' dump()


def test_migrate_refuses_a_non_empty_target_and_writes_nothing(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    ok(db, "db", "migrate", "--to", pg_url)
    ok(db, "destinations", "add", "late", "+14155550109")
    before = _pg_dump(pg_url)
    result = pbx(db, "db", "migrate", "--to", pg_url)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert result.stderr.count("\n") == 1
    assert _pg_dump(pg_url) == before


def test_migrate_needs_a_postgresql_target_and_a_sqlite_source(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    seed(db)
    wrong = pbx(db, "db", "migrate", "--to", str(tmp_path / "other.sqlite3"))
    assert (wrong.exit_code, wrong.stderr) == (
        2,
        "Error: db migrate: --to must be a postgresql:// URL\n",
    )
    missing = pbx(tmp_path / "none.sqlite3", "db", "migrate", "--to", "postgresql://x@127.0.0.1/x")
    assert missing.exit_code == 2
    assert "no SQLite store" in missing.stderr
    assert not (tmp_path / "none.sqlite3").exists()


def test_an_unreachable_postgresql_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = _closed_port()
    url = f"postgresql://pbx@127.0.0.1:{port}/pbx"
    result = pbx(Path(url), "trunks", "list")  # type: ignore[arg-type]
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: cannot open PostgreSQL store")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr


def test_serve_on_an_unreachable_postgresql_exits_with_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"postgresql://pbx:hunter22@127.0.0.1:{_closed_port()}/pbx"
    done = subprocess.run(
        [sys.executable, "-c", "from cli import main; main()", "--db", url, "serve",
         "--sip", "127.0.0.1:5990", "--http", "127.0.0.1:5991", "--admin", "127.0.0.1:5992"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert done.returncode == 1
    lines = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1
    assert lines[0].startswith("Error: cannot start: cannot open PostgreSQL store")
    assert "hunter22" not in done.stderr + done.stdout  # the password is never shown
    assert not list(tmp_path.iterdir())  # nothing half-created


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
