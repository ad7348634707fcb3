"""End to end (issue 16, secrets): a trunk password given on stdin works and is never logged.

`pbx trunks add --password-stdin` (a real subprocess) stores the password;
the running daemon registers to sipp with it (sipp verifies the digest);
neither the CLI's output nor the daemon's log (JSON lines, debug SIP traces
included) holds the password, and the database file is owner-only.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from .conftest import SippFactory
from .daemon import DaemonProcess

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-on-stdin-77"


async def _pbx(db: Path, *args: str, stdin: bytes) -> tuple[int, bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PBX_DB": str(db)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "cli.py"), *args, env=env, cwd=ROOT,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out


async def test_password_from_stdin_registers_and_is_never_logged(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    registrar = await sipp.start(
        "sip_uas_register.xml", keys={"user": "acme", "pass": PASSWORD}, seconds=15
    )
    code, out = await _pbx(
        daemon.db, "trunks", "add", "carrier", "--host", f"127.0.0.1:{registrar.port}",
        "--username", "acme", "--password-stdin", "--register", stdin=PASSWORD.encode() + b"\n",
    )  # fmt: skip
    assert code == 0, out
    assert stat.S_IMODE(daemon.db.stat().st_mode) == 0o600
    daemon.env["PBX_LOG_LEVEL"] = "debug"  # raw SIP in and out is logged at debug
    await daemon.start()
    run = await registrar.wait()
    assert run == 0, registrar.diagnostics()  # sipp verified the digest made with it
    for args in (("trunks", "list"), ("trunks", "show", "carrier", "--format", "json")):
        _, shown = await _pbx(daemon.db, *args, stdin=b"")
        assert PASSWORD.encode() not in shown
    log = daemon.log_text()
    assert '"trunk.registering"' in log
    assert "Authorization: Digest" in log  # the debug trace of the REGISTER is there...
    assert PASSWORD not in log  # ...and only the digest, never the password
    assert PASSWORD.encode() not in out
