"""Shared e2e helpers: run sipp as a subprocess with a scenario, find free ports.

Usage (in an `async def` test marked `@pytest.mark.e2e`):

    async def test_x(sipp: SippFactory) -> None:
        run = await sipp.start("sip_uas_answer.xml", seconds=10)       # UAS: no remote
        run = await sipp.start("sip_options_uac.xml", remote=("127.0.0.1", port))
        code = await run.wait()          # bounded by the run's own -timeout
        assert code == 0, run.diagnostics()
        run.messages()                   # sipp's -trace_msg log, split per message

Every run is bounded three ways: `-m calls`, `-timeout N -timeout_error`, and
`wait()` kills the process by PID if it outlives that; teardown kills any run
still alive (by its PID only). sipp missing: the test is skipped locally and
fails when the `CI` environment variable is set (CI must never pass by skipping).
Scenario names resolve against tests/e2e/scenarios unless given as a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .daemon import DaemonProcess

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP_GRACE = 5.0  # seconds past sipp's own -timeout before we kill it
# sipp's -trace_msg log: a dashed banner with a timestamp before every message.
_BANNER = re.compile(r"^-{10,} [^\n]*\n", re.M)


def sipp_binary() -> str:
    """The sipp executable, or skip (locally) / fail (CI) the test."""
    path = shutil.which("sipp")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("sipp is not installed but CI is set (apt-get install sip-tester)")
        pytest.skip("sipp is not installed (apt-get install sip-tester)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on both UDP and TCP right now (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port found")


def free_udp_range(count: int, host: str = "127.0.0.1", *, even: bool = True) -> int:
    """The first of `count` consecutive free UDP ports (even first port: RTP/RTCP pairs)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            base = int(probe.getsockname()[1])
        if even:
            base -= base % 2
        if base + count > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((host, port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise RuntimeError(f"no {count} consecutive free UDP ports found")


@dataclass
class SippRun:
    """One sipp process and the files it writes."""

    process: asyncio.subprocess.Process
    port: int
    workdir: Path
    timeout: float
    args: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def message_file(self) -> Path:
        return self.workdir / "messages.log"

    async def wait(self, limit: float | None = None) -> int:
        """sipp's exit code; kills it (by PID) if it runs past its own timeout + grace."""
        limit = limit if limit is not None else self.timeout + SIPP_GRACE
        try:
            return await asyncio.wait_for(self.process.wait(), limit)
        except TimeoutError:
            self.kill()
            await self.process.wait()
            raise

    async def listening(self, transport: str, limit: float = 5.0) -> None:
        """Wait until sipp holds its port (our own bind on it fails), bounded by `limit`.

        This is a readiness probe of another process, like polling a daemon's
        /health: it never sends sipp anything.
        """
        kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            if self.process.returncode is not None:
                raise RuntimeError(f"sipp exited early\n{self.diagnostics()}")
            with socket.socket(socket.AF_INET, kind) as probe:
                try:
                    probe.bind(("127.0.0.1", self.port))
                except OSError:
                    return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"sipp did not listen on {transport} {self.port}")

    def kill(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()

    def _read(self, name: str) -> str:
        path = self.workdir / name
        return path.read_bytes().decode(errors="replace") if path.exists() else ""

    def messages(self) -> list[tuple[str, str]]:
        """(direction, raw message) for every SIP message in sipp's -trace_msg log.

        direction is "sent" or "received"; the raw text keeps its CRLFs, so
        `pbx.sip.message.parse(raw.encode())` reads it.
        """
        out: list[tuple[str, str]] = []
        for chunk in _BANNER.split(self._read("messages.log"))[1:]:
            title, _, raw = chunk.lstrip("\n").partition("\n")
            direction = "received" if "received" in title else "sent"
            raw = raw.lstrip("\n")
            if raw.endswith("\r\n\r\n\n"):
                raw = raw[:-1]
            out.append((direction, raw))
        return out

    def received(self) -> list[str]:
        """The raw messages sipp received, in order."""
        return [raw for direction, raw in self.messages() if direction == "received"]

    def diagnostics(self) -> str:
        """What to print when a run fails: command, errors, screen, last messages."""
        return "\n".join([
            "sipp " + " ".join(self.args),
            "--- errors ---", self._read("errors.log")[-3000:],
            "--- screen ---", self._read("screen.log")[-2000:],
            "--- stdout ---", self._read("stdout.log")[-2000:],
            "--- messages ---", self._read("messages.log")[-4000:],
        ])  # fmt: skip


class SippFactory:
    """Starts sipp runs for one test; `close()` kills the ones still running."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self.runs: list[SippRun] = []

    async def start(
        self,
        scenario: str | Path,
        *,
        remote: tuple[str, int] | None = None,
        transport: str = "u1",
        calls: int = 1,
        seconds: float = 10.0,
        port: int | None = None,
        keys: dict[str, str] | None = None,
        extra: Sequence[str] = (),
    ) -> SippRun:
        """Start sipp with `scenario` (UAS when `remote` is None).

        `seconds` is sipp's own -timeout (with -timeout_error). A UAS run returns
        once sipp holds its port; a UAC run returns at once.
        """
        binary = sipp_binary()
        path = Path(scenario) if Path(scenario).is_absolute() else SCENARIOS / scenario
        for attempt in range(3):  # a port picked as free can be taken before sipp binds it
            chosen = port or free_port()
            workdir = self._workdir / f"sipp{len(self.runs)}"
            workdir.mkdir(parents=True)
            args = self._args(path, workdir, chosen, transport, calls, seconds, keys or {}, extra)
            if remote is not None:
                args.insert(0, f"{remote[0]}:{remote[1]}")
            with (workdir / "stdout.log").open("wb") as out:
                process = await asyncio.create_subprocess_exec(
                    binary, *args, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
                    stdout=out, stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
            run = SippRun(process, chosen, workdir, seconds, args)
            self.runs.append(run)
            if remote is not None:
                return run
            try:  # a UAS: peers may only send once it listens
                await run.listening("tcp" if transport.startswith("t") else "udp")
                return run
            except RuntimeError:
                taken = "Address already in use" in run._read("errors.log")
                if not taken or port is not None or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _args(
        path: Path, workdir: Path, port: int, transport: str, calls: int, timeout: float,
        keys: dict[str, str], extra: Sequence[str],
    ) -> list[str]:  # fmt: skip
        args = [
            "-sf", str(path), "-i", "127.0.0.1", "-p", str(port), "-t", transport,
            "-m", str(calls), "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-nostdin", "-mi", "127.0.0.1", "-mp", str(free_udp_range(4)),
            "-trace_msg", "-message_file", str(workdir / "messages.log"),
            "-trace_err", "-error_file", str(workdir / "errors.log"),
            "-trace_screen", "-screen_file", str(workdir / "screen.log"),
            "-trace_logs", "-log_file", str(workdir / "logs.log"),
        ]  # fmt: skip
        for name, value in keys.items():
            args += ["-key", name, value]
        return [*args, *extra]

    async def close(self) -> None:
        for run in self.runs:
            run.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.process.wait(), 5)


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[DaemonProcess]:
    """A `pbx serve` process on its own SQLite file; stopped (by PID) at teardown.

    Tests provision the file, then `await daemon.start()`.
    """
    from .daemon import DaemonProcess  # daemon.py imports this module's port helpers

    proc = DaemonProcess(tmp_path, tmp_path / "pbx.sqlite3")
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
async def sipp(tmp_path: Path) -> AsyncIterator[SippFactory]:
    """A factory for sipp runs; every run still alive at teardown is killed by PID."""
    sipp_binary()
    factory = SippFactory(tmp_path)
    try:
        yield factory
    finally:
        await factory.close()
