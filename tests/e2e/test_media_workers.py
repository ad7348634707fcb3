"""The relay in worker processes, with a real daemon: a worker killed mid-call.

`pbx serve` with `[rtp] workers = 1` starts its relay worker and logs its
PID (`media.workers`). A worker SIGKILLed while a call is up: both legs get
BYE, the record says `media_failed`, the worker is restarted and the next
call relays again; a recorded call's file is left playable and the record
notes why it stops early. (Prompts, whisper, screening and recording through
the worker engine: tests/e2e/test_audio.py, parametrised over both engines.)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from pbx.records import Disposition

from .conftest import SippFactory, free_udp_range
from .daemon import DaemonProcess
from .test_b2bua import OFFICE, _call, _exchange_rtp, _logged, _ok, _setup

pytestmark = pytest.mark.e2e


def _worker_pids(daemon: DaemonProcess) -> list[int]:
    for line in daemon.log_text().splitlines():
        if '"media.workers"' in line:
            return [int(p) for p in json.loads(line)["pids"]]
    raise AssertionError(f"no media.workers line:\n{daemon.log_text()[-2000:]}")


async def _answered(daemon: DaemonProcess, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while loop.time() < deadline:
        rows = await daemon.records()
        if rows and rows[0].disposition == Disposition.ANSWERED:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the call was never answered")


async def test_a_killed_worker_ends_its_calls_and_comes_back(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    daemon.env["PBX_RTP_WORKERS"] = "1"
    callee = await sipp.start("b2bua_callee.xml", calls=2, extra=["-rtp_echo"], seconds=30)
    await _setup(daemon, [OFFICE], trunk_port=callee.port)
    [worker] = _worker_pids(daemon)
    caller = await _call(sipp, daemon, "b2bua_caller_wait_bye.xml")
    await _answered(daemon)
    os.kill(worker, signal.SIGKILL)
    await _ok(caller)  # the caller got our BYE
    [record] = await daemon.wait_final_record()
    assert record.sip_reason == "media_failed"
    assert record.hangup_by == "system"
    second = await _call(sipp, daemon, "b2bua_caller.xml", hold_ms=500)
    await _ok(second)
    await _ok(callee)  # both callee legs were ended by a BYE
    rows = await daemon.wait_final_record(2)
    assert rows[0].disposition == Disposition.ANSWERED
    assert rows[0].hangup_by == "caller"
    assert "media.worker_died" in daemon.log_text()


def test_a_failed_start_exits_at_once_and_leaves_no_worker(tmp_path: Path) -> None:
    """The admin port is taken: `pbx serve` says so and exits; its relay worker goes too."""
    import socket
    import subprocess
    import sys

    from .conftest import free_port

    low = free_udp_range(8)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        admin = taken.getsockname()[1]
        args = [sys.executable, "-c", "from cli import main; main()", "--db",
                str(tmp_path / "pbx.sqlite3"), "serve", "--sip", f"127.0.0.1:{free_port()}",
                "--http", f"127.0.0.1:{free_port()}", "--admin", f"127.0.0.1:{admin}",
                "--rtp-ports", f"{low}-{low + 7}"]  # fmt: skip
        done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert "Error: cannot start:" in done.stderr
    assert "address already in use" in done.stderr
    leftovers = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "pbx.rtp.worker" in text and f"{low}-" in text:
            leftovers.append(text)
    assert leftovers == []


async def test_a_worker_killed_mid_recording_leaves_a_playable_file_and_a_note(
    sipp: SippFactory, daemon: DaemonProcess
) -> None:
    """Workers carry audio: a recorded call's worker dies; the call ends media_failed, the
    file is repaired at once (not at the next start) and named, and the record says why."""
    from pbx.audio import wav
    from pbx.store import Destination, Source, Store, TrackingNumber, Trunk

    from .daemon import provision
    from .test_b2bua import DID

    callee = await sipp.start("b2bua_callee.xml", extra=["-rtp_echo"], seconds=30)

    async def rows(store: Store) -> None:
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", port=callee.port,
                                     allow=("127.0.0.0/8",)))  # fmt: skip
        await store.destinations.add(Destination(name="d0", target=OFFICE, kind="number"))
        await store.sources.add(Source(name="Radio"))
        await store.numbers.add(TrackingNumber(number=DID, source="Radio", trunk="carrier",
                                               destinations=("d0",), record=True))  # fmt: skip

    await provision(daemon.db, rows)
    daemon.env["PBX_RTP_WORKERS"] = "1"
    daemon.env["PBX_RECORDING_DIR"] = str(daemon.workdir / "rec")
    await daemon.start()
    [worker] = _worker_pids(daemon)
    media_port = free_udp_range(2)
    caller = await _call(sipp, daemon, "b2bua_caller_wait_bye.xml", media_port=media_port)
    answer_ip, answer_port = await _logged(caller, "ANSWER_MEDIA")
    await _answered(daemon)
    echoed = await _exchange_rtp(media_port, (answer_ip, int(answer_port)), 150)  # 3 s
    assert echoed > 100
    os.kill(worker, signal.SIGKILL)
    await _ok(caller)  # the caller got our BYE
    [record] = await daemon.wait_final_record()
    assert record.sip_reason == "media_failed"
    assert record.recording == f"{record.id}.wav"
    assert record.media_note == "recording failed: media worker died"
    data = (daemon.workdir / "rec" / record.recording).read_bytes()
    assert not wav.needs_repair(data[:44], len(data))
    assert record.recording_bytes == len(data)
    assert record.recording_seconds >= 1.0  # what the worker had flushed (64 KiB = 2 s)
    assert "recording.salvaged" in daemon.log_text()
    await _ok(callee)  # the callee got our BYE too
