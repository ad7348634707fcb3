"""Benchmark: the same sipp CPS steps against pbx and against sippy's B2BUA, in one run.

The peer is sippy's `b2bua_radius` (PyPI `sippy`, benchmark-only: `pip install
sippy`; never a pbx dependency) with a static route to the same sipp UAS pbx
uses, Radius off. Media: pbx anchors every call in its own relay (as
`bench/load.py` phase 1); sippy anchors through an rtpproxy when one is
given (`--rtpproxy PATH`, or `rtpproxy` on PATH) and passes SDP through
untouched otherwise - the report says which, since an unanchored peer does
less work per call. Debian has no rtpproxy package; it builds from its
source (github.com/sippy/rtpproxy: `./configure && make`, the binary is
`src/rtpproxy`) and is not part of this repository.

Each system gets a fresh process and a fresh callee; for each rate R in
`--rates` a sipp UAC places calls at R for `--step-seconds` with a hold of
`--hold-ms`, and the steps stop at the first one with failed calls or where
the rate was not kept (answers under 95 % of R). Per step: achieved CPS,
calls ok/failed, the B2BUA's CPU % and ms of CPU per call (rtpproxy's CPU
counted with sippy's when it runs), INVITE->200 p50/p99. Then the highest
clean rate of each and the ratio pbx/sippy.

Every process it starts (pbx, sippy, rtpproxy, sipps) is ended by its PID;
everything is bounded in time and count and stays on 127.0.0.1. Prints
figures; asserts nothing.

    python bench/compare.py
    python bench/compare.py --rates 50,100,200,300 --step-seconds 10
    python bench/compare.py --rtpproxy /path/to/rtpproxy/src/rtpproxy
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shlex
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (
    CPS_HEADER,
    HOST,
    Daemon,
    auto_range,
    cps_step,
    cpu_seconds,
    end_process,
    free_port,
    free_udp_pair,
    int_list,
    machine,
    raise_nofile,
    rss_mb,
    sipp_binary,
    start_callee,
    wait_process,
)

READY_TIMEOUT = 20.0
CALLER_MEDIA_PORT = 7078  # what the caller's SDP offers (no RTP flows): the callee sees it or not


def anchoring(callee_dir: Path) -> str:
    """Whether the INVITEs the callee got offered the caller's media port or a relay's."""
    path = callee_dir / "callee" / "logs.log"
    ports = [line.split()[-1] for line in path.read_text(errors="replace").splitlines()
             if "OFFER_MEDIA" in line] if path.exists() else []  # fmt: skip
    if not ports:
        return "unknown (the callee logged no offer)"
    relayed = sum(p != str(CALLER_MEDIA_PORT) for p in ports)
    return f"{relayed} of {len(ports)} offers carried a relay port (anchored)"


@dataclass
class Sippy:
    """sippy's b2bua_radius (and its rtpproxy, if any) as child processes."""

    workdir: Path
    callee_port: int
    rtpproxy: str | None
    sip_port: int = 0
    process: asyncio.subprocess.Process | None = None
    relay: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu(self) -> float:
        total = cpu_seconds(self.pid)
        if self.relay is not None and self.relay.returncode is None:
            with contextlib.suppress(FileNotFoundError):  # exited, not yet reaped by asyncio
                total += cpu_seconds(self.relay.pid)
        return total

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sip_port = free_port()
        args = [
            "--foreground=on", f"--sip_address={HOST}", f"--sip_port={self.sip_port}",
            f"--static_route={HOST}:{self.callee_port}", "--auth_enable=off",
            "--acct_enable=off", f"--logfile={self.workdir / 'sippy.log'}",
        ]  # fmt: skip
        if self.rtpproxy:
            control = free_port()
            base = free_udp_pair()
            with (self.workdir / "rtpproxy.log").open("ab") as out:
                self.relay = await asyncio.create_subprocess_exec(
                    self.rtpproxy, "-f", "-F", "-s", f"udp:{HOST}:{control}", "-l", HOST,
                    "-m", str(base), "-M", str(base + 8000), "-d", "ERR",
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                )  # fmt: skip
            args.append(f"--rtp_proxy_clients=udp:{HOST}:{control}")
        script = shutil.which("b2bua_radius")
        if script is None:
            raise SystemExit("sippy is not installed (pip install sippy)")
        with (self.workdir / "sippy.out").open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, script, *args, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=out,
            )  # fmt: skip
        await self._wait_ready()
        if self.relay is not None and self.relay.returncode is not None:
            log = (self.workdir / "rtpproxy.log").read_text(errors="replace")[-500:]
            raise SystemExit(f"rtpproxy exited ({self.relay.returncode}) at start:\n{log}")

    async def _wait_ready(self) -> None:
        """Ready once an OPTIONS to its SIP port gets any answer (bounded)."""
        deadline = time.monotonic() + READY_TIMEOUT
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            probe.settimeout(0.2)
            port = probe.getsockname()[1]
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise RuntimeError(f"sippy exited: {self.log_tail()}")
                probe.sendto(_options(self.sip_port, port), (HOST, self.sip_port))
                with contextlib.suppress(TimeoutError):
                    if probe.recv(4096).startswith(b"SIP/2.0"):
                        return
                await asyncio.sleep(0)
        raise RuntimeError(f"sippy did not answer OPTIONS: {self.log_tail()}")

    def log_tail(self) -> str:
        path = self.workdir / "sippy.out"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    async def wait_idle(self) -> int:
        return 0  # sipp has seen every BYE answered when it exits

    async def stop(self) -> None:
        for proc in (self.process, self.relay):
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                await wait_process(proc, 10.0)


def _options(target_port: int, own_port: int) -> bytes:
    return (
        f"OPTIONS sip:probe@{HOST}:{target_port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {HOST}:{own_port};branch=z9hG4bKcmp{time.monotonic_ns()}\r\n"
        f"From: <sip:bench@{HOST}>;tag=cmp\r\nTo: <sip:probe@{HOST}>\r\n"
        f"Call-ID: cmp-{time.monotonic_ns()}@{HOST}\r\nCSeq: 1 OPTIONS\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


System = Sippy | Daemon


async def run_system(name: str, make: str, workdir: Path, args: argparse.Namespace) -> int:
    """The highest clean rate of one system over the steps."""
    wdir = workdir / name
    wdir.mkdir()
    # the callee logs the media port each INVITE offered it: anchored or not is shown, not assumed
    callee, callee_port = await start_callee(wdir, [free_udp_pair()], logs=True)
    system: System
    if make == "pbx":
        system = Daemon(wdir, callee_port, args.rtp_ports, args.log_level)
    else:
        system = Sippy(wdir / "sippy", callee_port, args.rtpproxy)
    best = 0
    try:
        await system.start()
        print(f"\n-- {name}: pid={system.pid} rss={rss_mb(system.pid):.1f} MB --")
        print(CPS_HEADER)
        for rate in args.rates:
            result = await cps_step(system, wdir, rate, args, media_port=CALLER_MEDIA_PORT)
            print(result.line(), flush=True)
            if result.failed or result.exit_code != 0 or not result.kept_rate():
                why = "failed calls" if result.failed or result.exit_code else "rate not kept"
                print(f"stop: {why} at {rate} CPS (sipp exit {result.exit_code})")
                break
            best = rate
    finally:
        await system.stop()
        end_process(callee)
        await wait_process(callee, 5)
    print(f"{name} media: {anchoring(wdir)}")
    return best


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rates", type=int_list, default=int_list("25,50,100,150,200,300,400,500"))
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument("--hold-ms", type=int, default=1000)
    p.add_argument("--rtpproxy", default=shutil.which("rtpproxy"),
                   help="rtpproxy binary for sippy (default: rtpproxy on PATH)")  # fmt: skip
    p.add_argument("--rtp-ports", default=auto_range(), help="pbx RTP range")
    p.add_argument("--log-level", default="info", help="pbx log level (PBX_LOG_LEVEL)")
    p.add_argument("--only", choices=("pbx", "sippy"), help="run one side only")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, workdir: Path) -> None:
    anchored = f"rtpproxy {args.rtpproxy}" if args.rtpproxy else "NOT anchored (no rtpproxy)"
    print(f"pbx: media anchored in its relay; sippy: media {anchored}")
    best: dict[str, int] = {}
    for name in ("pbx", "sippy"):
        if args.only in (None, name):
            best[name] = await run_system(name, name, workdir, args)
    print("\nRESULT highest CPS with 0 failed calls: "
          + ", ".join(f"{k} {v}" for k, v in best.items()))  # fmt: skip
    if best.get("sippy"):
        print(f"RESULT ratio pbx/sippy: {best.get('pbx', 0) / best['sippy']:.2f}")


def main() -> None:
    args = parse_args()
    raise_nofile()
    print(machine())
    print(f"sipp {sipp_binary()}; steps {args.step_seconds:g} s, hold {args.hold_ms} ms")
    print("command: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="pbx-compare-"))
    try:
        asyncio.run(run(args, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
