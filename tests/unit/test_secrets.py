"""Secrets stay secret (issue 16 point 3): argv, listings, logs, reprs, file modes.

The `ps` check runs the real `pbx` in a subprocess and reads its
`/proc/PID/cmdline` while it waits for the password on stdin.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pbx.admin.provisioning import TrunkOptions
from pbx.sip.auth import ha1
from pbx.store.base import Source, Trunk
from tests.unit.cli_helpers import dump, ok, pbx, run_on_store

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Tr0ub4dor&3-stdin"
TIMEOUT = 60


def _pbx_process(db: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "--db", str(db), *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=ROOT,
    )  # fmt: skip


def _cmdline(pid: int) -> list[bytes]:
    """The argv of `pid` as /proc shows it. Popen returns once exec has closed its
    close-on-exec pipe, a moment before the kernel sets the new argv: until then
    cmdline reads empty, so read again (bounded) until it is there."""
    deadline = time.monotonic() + 5.0
    while True:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        if raw or time.monotonic() > deadline:
            return raw.split(b"\0")
        time.sleep(0.005)


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_trunk_password_from_stdin_is_never_in_argv_listings_or_logs(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    proc = _pbx_process(db, "trunks", "add", "carrier", "--host", "203.0.113.10",
                        "--username", "acme", "--password-stdin")  # fmt: skip
    # What `ps` shows for the whole run (the process then waits on stdin).
    argv = _cmdline(proc.pid)
    out, err = proc.communicate(PASSWORD + "\n", timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert b"--password-stdin" in argv
    assert not any(PASSWORD.encode() in arg for arg in argv)
    assert out == "trunk carrier added (203.0.113.10:5060/udp)\n"
    trunk = run_on_store(db, lambda s: s.trunks.get("carrier"))
    assert trunk is not None
    assert trunk.password == PASSWORD  # stored as given (needed to answer challenges)
    shown = [ok(db, "trunks", cmd, *name, "--format", fmt)
             for cmd, name in (("list", ()), ("show", ("carrier",)))
             for fmt in ("table", "json", "csv")]  # fmt: skip
    for text in (out, err, *shown):
        assert PASSWORD not in text
    assert json.loads(ok(db, "trunks", "show", "carrier", "--format", "json"))["password"] == (
        "********"
    )
    assert PASSWORD not in repr(trunk)


def test_trunk_password_file_update_and_the_warning_for_password(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    old = pbx(db, "trunks", "add", "carrier", "--host", "203.0.113.10", "--username", "acme",
              "--password", "visible-1")  # fmt: skip
    assert old.exit_code == 0
    assert "shows the password" in old.stderr
    assert "visible-1" not in old.stderr
    secret = tmp_path / "pw"
    secret.write_text("from-a-file\n")
    quiet = pbx(db, "trunks", "update", "carrier", "--password-file", str(secret))
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    trunk = run_on_store(db, lambda s: s.trunks.get("carrier"))
    assert trunk is not None
    assert trunk.password == "from-a-file"
    before = dump(db)
    missing = pbx(db, "trunks", "update", "carrier", "--password-file", str(tmp_path / "none"))
    assert missing.exit_code == 2
    assert dump(db) == before


def test_no_database_is_created_when_the_password_option_is_bad(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    result = pbx(db, "trunks", "add", "carrier", "--host", "203.0.113.10", "--username", "a",
                 "--password", "x", "--password-stdin", input="y\n")  # fmt: skip
    assert result.exit_code == 2
    assert result.stderr.strip().endswith("--password-file")
    assert not db.exists()


def test_reprs_hold_no_secret() -> None:
    trunk = Trunk(name="t", host="203.0.113.10", username="u", password="pw-in-repr")
    source = Source(name="s", ga_measurement_id="G-1", ga_api_secret="ga-in-repr")
    opts = TrunkOptions(password="opt-in-repr")
    for value, secret in ((trunk, "pw-in-repr"), (source, "ga-in-repr"), (opts, "opt-in-repr")):
        assert secret not in repr(value)
        assert secret not in str(value)


def test_database_and_its_wal_and_shm_files_are_owner_only(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "pbx.sqlite3"
    old_umask = os.umask(0o022)  # the common default, which would give 0644
    try:
        ok(db, "trunks", "add", "carrier", "--host", "203.0.113.10")

        async def write_and_look(store: object) -> list[int]:
            del store
            return [
                stat.S_IMODE(os.stat(p).st_mode)
                for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm"))
                if p.exists()
            ]

        modes = run_on_store(db, write_and_look)  # WAL and SHM exist while it is open
    finally:
        os.umask(old_umask)
    assert len(modes) == 3
    assert modes == [0o600, 0o600, 0o600]


def _read_until(fd: int, marker: bytes, seen: bytearray) -> None:
    """Read the terminal into `seen` until `marker` shows (bounded by TIMEOUT)."""
    deadline = time.monotonic() + TIMEOUT
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        assert ready, f"no {marker!r} on the terminal: {bytes(seen)!r}"
        seen += os.read(fd, 1024)


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_extension_password_from_a_hidden_prompt_on_a_terminal(tmp_path: Path) -> None:
    db = tmp_path / "pbx.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    controller, terminal = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "cli.py"), "--db", str(db), "extensions", "add", "100"],
        stdin=terminal, stdout=subprocess.PIPE, stderr=terminal, env=env, cwd=ROOT,
    )  # fmt: skip
    os.close(terminal)
    seen = bytearray()
    try:
        _read_until(controller, b"Password: ", seen)
        os.write(controller, b"prompted-pass-1\n")
        _read_until(controller, b"confirmation: ", seen)
        os.write(controller, b"prompted-pass-1\n")
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(controller)
    assert proc.returncode == 0, bytes(seen)
    assert out == b"extension 100 added (realm pbx)\n"
    assert b"prompted-pass-1" not in seen  # hidden: the terminal never echoed it
    ext = run_on_store(db, lambda s: s.extensions.get("100"))
    assert ext is not None
    assert ext.ha1_md5 == ha1("MD5", "100", "pbx", "prompted-pass-1")
