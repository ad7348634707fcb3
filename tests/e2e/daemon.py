"""A real `pbx serve` process for end-to-end tests, provisioned through the store.

The daemon runs as a child process (so a test can SIGTERM or SIGKILL it by
PID) on free loopback ports, with its own SQLite file. Readiness is the
`/health` endpoint answering 200; records are read back from the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from pbx.records import CallRecord
from pbx.store import Destination, Source, Store, TrackingNumber, Trunk
from pbx.store.connect import open_store

from .conftest import free_port, free_udp_range

READY_TIMEOUT = 20.0
RTP_PORTS = 40  # 10 calls' worth of port pairs (2 legs x RTP/RTCP)


class PortTaken(RuntimeError):
    """A port picked as free was taken before the daemon could bind it."""


@dataclass
class DaemonProcess:
    """One `pbx serve` child process and where it listens."""

    workdir: Path
    db: Path | str  # a SQLite file or a postgresql:// URL
    sip_port: int = 0
    http_port: int = 0
    admin_port: int = 0
    rtp_low: int = 0
    rtp_high: int = 0
    env: dict[str, str] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "daemon.log"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self) -> None:
        """Start on free ports and wait (bounded) until /health answers.

        Free ports are picked before the daemon binds them, so another process
        may take one in between: on "address already in use" the start is
        retried on new ports (three tries).
        """
        for attempt in range(3):
            try:
                await self._start_once()
                return
            except PortTaken:
                if attempt == 2:
                    raise
                self.sip_port = self.http_port = self.admin_port = self.rtp_low = 0

    async def _start_once(self) -> None:
        if not self.rtp_low:
            self.rtp_low = free_udp_range(RTP_PORTS)
            self.rtp_high = self.rtp_low + RTP_PORTS - 1
        self.sip_port = self.sip_port or self._port_outside_rtp()
        self.http_port = self.http_port or self._port_outside_rtp()
        self.admin_port = self.admin_port or self._port_outside_rtp()
        args = [
            "-c", "from cli import main; main()", "serve",
            "--sip", f"127.0.0.1:{self.sip_port}",
            "--rtp-ports", f"{self.rtp_low}-{self.rtp_high}",
            "--http", f"127.0.0.1:{self.http_port}",
            "--admin", f"127.0.0.1:{self.admin_port}",
        ]  # fmt: skip
        env = {
            **os.environ, "PBX_DB": str(self.db), "PBX_LOG_FORMAT": "json",
            # the e2e box is shared with sipp and the test runner: only a real stall sheds calls
            "PBX_CALLS_MAX_LOOP_LAG": "0.5",
            **self.env,
        }  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=self.workdir, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        await self._wait_ready()

    def _port_outside_rtp(self) -> int:
        """A free port not inside the RTP range (the daemon refuses that overlap)."""
        for _ in range(100):
            port = free_port()
            if not self.rtp_low <= port <= self.rtp_high:
                return port
        raise RuntimeError("no free port outside the RTP range")

    async def _wait_ready(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while loop.time() < deadline:
            assert self.process is not None
            if self.process.returncode is not None:
                tail = self.log_text()[-3000:]
                if "address already in use" in tail:
                    raise PortTaken(tail)
                raise RuntimeError(f"pbx serve exited early:\n{tail}")
            if await self.health() == 200:
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"pbx serve not ready in {READY_TIMEOUT}s:\n{self.log_text()[-3000:]}")

    async def wait_health(self, status: int, limit: float = 5.0) -> None:
        """Poll /health (bounded) until it answers `status` (503 = draining)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while loop.time() < deadline:
            if await self.health() == status:
                return
            await asyncio.sleep(0.02)
        raise TimeoutError(f"/health never answered {status}")

    async def health(self) -> int | None:
        """The /health status code, or None when nothing answers."""
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.http_port)
        except OSError:
            return None
        try:
            writer.write(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), 2.0)
        except (OSError, TimeoutError):
            return None
        finally:
            writer.close()
        parts = line.split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    async def stop(self, sig: int = signal.SIGTERM, limit: float = 15.0) -> int:
        """Signal the daemon (by its PID) and wait for it to exit; SIGKILL past `limit`."""
        if self.process is None or self.process.returncode is not None:
            return self.process.returncode if self.process else 0
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            return await asyncio.wait_for(self.process.wait(), limit)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()

    async def records(self) -> list[CallRecord]:
        async with await open_store(self.db) as store:
            return await store.calls.list()

    async def wait_final_record(self, count: int = 1, limit: float = 15.0) -> list[CallRecord]:
        """Wait (bounded) until `count` records are final; newest first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        rows: list[CallRecord] = []
        while loop.time() < deadline:
            rows = await self.records()
            if len(rows) >= count and all(r.is_final for r in rows[:count]):
                return rows
            await asyncio.sleep(0.05)
        raise TimeoutError(f"records not final: {rows}\n{self.log_text()[-3000:]}")


async def provision(db: Path | str, fn: Callable[[Store], Awaitable[None]]) -> None:
    """Write provisioning rows straight into the daemon's database file."""
    async with await open_store(db) as store:
        await fn(store)


async def start_with_pool(
    daemon: DaemonProcess, callee_port: int, pool: tuple[str, ...], office: str
) -> None:
    """An onsite "Google Ads" source (landing `gclid=`, tag PPC) whose pool numbers
    forward through trunk `carrier` (the callee at `callee_port`) to `office`; start."""

    async def rows(store: Store) -> None:
        await store.trunks.add(Trunk(name="carrier", host="127.0.0.1", port=callee_port,
                                     allow=("127.0.0.0/8",)))  # fmt: skip
        await store.destinations.add(Destination(name="office", target=office, kind="number"))
        await store.sources.add(Source(name="Google Ads", onsite=True, landing="gclid=",
                                       position=1, tag="PPC"))  # fmt: skip
        for number in pool:
            row = TrackingNumber(number=number, source="Google Ads", destinations=("office",),
                                 trunk="carrier")  # fmt: skip
            await store.numbers.add(row)

    await provision(daemon.db, rows)
    await daemon.start()
