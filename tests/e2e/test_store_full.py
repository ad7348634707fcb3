"""A store that cannot write, for real: the daemon's SQLite file on a full 3 MB tmpfs.

- A call up when the disk fills goes on; its final record waits and is
  written once there is space again.
- New calls get 503 + Retry-After at once (the carrier fails over), never a
  500 and a traceback; /health says `degraded` and names the cause.
- Once space is back, calls are taken again without a restart.

Needs root (mount -t tmpfs), as CI has; skipped locally without it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.records import Disposition

from .conftest import SippFactory
from .daemon import DaemonProcess
from .test_b2bua import OFFICE, _call, _logged, _ok, _setup

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"cannot mount a tmpfs under CI: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write until the file system is full; the filler file, to delete later."""
    filler = disk / "filler"
    chunk = b"\0" * 65536
    with contextlib.suppress(OSError), filler.open("wb") as out:
        while True:
            out.write(chunk)
            out.flush()
    return filler


async def test_a_full_disk_sheds_new_calls_keeps_the_live_one_and_recovers(
    small_disk: Path, tmp_path: Path, sipp: SippFactory
) -> None:
    daemon = DaemonProcess(tmp_path, small_disk / "pbx.sqlite3")
    try:
        callee = await sipp.start("b2bua_callee.xml", calls=3, seconds=60)
        await _setup(daemon, [OFFICE], trunk_port=callee.port)
        live = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=6000)
        await _logged(live, "ANSWER_MEDIA")
        filler = _fill(small_disk)
        refused = await _call(sipp, daemon, "b2bua_caller_fail.xml")
        assert await _logged(refused, "FINAL", limit=15) == ["503"]
        await _ok(refused)
        assert await daemon.health() == 503  # degraded
        await _ok(live)  # the call that was up went on and ended normally
        text = daemon.log_text()
        assert "store.unwritable" in text
        assert "Traceback" not in text
        filler.unlink()
        rows = await daemon.wait_final_record(2, limit=20)  # the queued final rows land
        by_reason = {r.sip_reason: r for r in rows}
        assert by_reason["store unavailable"].sip_status == 503  # the refused call, recorded late
        assert [r.disposition for r in rows if r.sip_reason != "store unavailable"] == [
            Disposition.ANSWERED  # the live call's final row was kept and written
        ]
        await daemon.wait_health(200, limit=20)
        again = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=300)
        await _ok(again)  # taken again, no restart
        rows = await daemon.wait_final_record(3, limit=20)
        assert rows[0].disposition == Disposition.ANSWERED
    finally:
        await daemon.stop()
