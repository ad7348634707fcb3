"""Run a private Kamailio (foreground) on 127.0.0.1 for e2e tests: the cluster's front
proxy (test_cluster.py) and the TLS peer (test_tls.py) share this harness.

`KamailioProcess.start(config, defines)` runs `kamailio -f CONFIG -DD -E` with each
define as `-A NAME=VALUE`, logs to `kamailio.log` in the work directory, and
returns once Kamailio answers an OPTIONS to its own UDP listener (bounded). It is
ended by its PID (SIGTERM, then SIGKILL after 10 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

import asyncio_dgram
import pytest


def kamailio_binary() -> str:
    """Debian's kamailio; a clear failure on CI (which installs it), a skip elsewhere."""
    path = shutil.which("kamailio") or "/usr/sbin/kamailio"
    if not Path(path).exists():
        if os.environ.get("CI"):
            pytest.fail("kamailio is not installed but CI is set (apt-get install kamailio)")
        pytest.skip("kamailio is not installed (apt-get install kamailio)")
    return path


def options(port: int, n: int) -> bytes:
    """An out-of-dialog OPTIONS to Kamailio itself (it answers 200 from its config)."""
    return (
        f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKprobe{n};rport\r\n"
        "From: <sip:probe@127.0.0.1>;tag=probe\r\nTo: <sip:127.0.0.1>\r\n"
        f"Call-ID: probe-{n}@127.0.0.1\r\nCSeq: {n + 1} OPTIONS\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class KamailioProcess:
    """One Kamailio child process, ready once its UDP listener `udp_port` answers."""

    def __init__(self, workdir: Path, udp_port: int) -> None:
        self.workdir = workdir
        self.udp_port = udp_port
        self.process: asyncio.subprocess.Process | None = None

    async def start(
        self, config: Path, defines: Mapping[str, str], extra: Sequence[str] = ()
    ) -> None:
        args = ["-f", str(config), "-DD", "-E", *extra,
                "-P", str(self.workdir / "kamailio.pid"), "-Y", str(self.workdir)]  # fmt: skip
        for name, value in defines.items():
            args += ["-A", f"{name}={value}"]
        with (self.workdir / "kamailio.log").open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                kamailio_binary(), *args, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        await self._ready()

    async def _ready(self, limit: float = 10.0) -> None:
        """Bounded: OPTIONS to Kamailio until it answers 200 itself."""
        stream = await asyncio_dgram.bind(("127.0.0.1", 0))  # unconnected: no ICMP errors
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        try:
            for attempt in range(100):
                if loop.time() > deadline or self._exited():
                    break
                await stream.send(options(self.udp_port, attempt), ("127.0.0.1", self.udp_port))
                with contextlib.suppress(TimeoutError):
                    data, _ = await asyncio.wait_for(stream.recv(), 0.2)
                    if data.startswith(b"SIP/2.0 200"):
                        return
        finally:
            stream.close()
        raise RuntimeError(f"kamailio not ready:\n{self.log()[-3000:]}")

    def _exited(self) -> bool:
        return self.process is not None and self.process.returncode is not None

    def log(self) -> str:
        path = self.workdir / "kamailio.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
