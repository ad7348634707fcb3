"""Benchmark: the real `pbx serve` under sipp load on loopback (calls per second, RTP calls).

Two phases, each against a fresh daemon process (uvloop, as `pbx serve`
runs) with its own temporary SQLite file provisioned with one trunk on
127.0.0.1 (which is also the destination's route), one destination and one
tracking number; the destination is a sipp UAS that answers at once:

1. CPS step test: a sipp UAC places short calls (hold `--hold-ms`) at rate R
   for `--step-seconds`, for each R in `--rates`, and stops at the first
   step with failed calls or that sipp could not offer at the rate. Media is
   anchored on every call (relay ports allocated, SDP rewritten both ways)
   even though no RTP flows. Per step: offered/achieved CPS, calls ok/failed,
   daemon CPU % and ms of CPU per call (all threads; `loop_ms`: the event
   loop's thread alone, whose core is the ceiling of one process), RSS,
   INVITE->200 latency percentiles (sipp's per-call response times,
   -trace_rtt), load average.
1b. Overload (`--overload R,...`, off by default): R CPS offered for
   `--step-seconds` with a caller that takes a 503 as an answer
   (load_caller_503.xml); prints calls answered and the admitted CPS, the
   503s the gate gave (rejected_total of loop_busy/loop_lag/overload), what
   the records say, INVITE->200 of the admitted calls, then a short step at
   a tenth of R right after, to show the daemon took calls again at once.
2. RTP test: K concurrent calls (each K in `--concurrent`) set up at
   `--setup-rate`, then both sides of every call send a 172-byte RTP packet
   (12-byte header + 160 bytes of PCMU) every 20 ms for `--rtp-seconds`
   through the relay, from a generator in its own process (`--generator`:
   bench/rtpgen.py's batched one by default, or the plain one here, whose
   sockets are the SDP ports both sipps advertise in their injection files);
   it learns the relay's ports from the sipps' logs (the SDP each received).
   Per step: sent/received per direction, loss %, packets the daemon
   counted in the call records, daemon CPU %.

Every process it starts (daemon, sipps, generator) is ended by its PID;
everything is bounded in time and count and stays on 127.0.0.1. Prints
figures; asserts nothing.

    python bench/load.py                       # both phases, default steps
    python bench/load.py --rates 100,300,500 --concurrent 0
    python bench/load.py --rates 0 --concurrent 100,500,1000 --rtp-seconds 20
    python bench/load.py --rates 150 --overload 300 --concurrent 0    # 2x the clean rate
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import select
import shlex
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rtpgen  # noqa: E402  (bench/, beside this file)

from pbx.config import parse_port_range  # noqa: E402
from pbx.store import Destination, Source, TrackingNumber, Trunk  # noqa: E402
from pbx.store.connect import open_store  # noqa: E402

HOST = "127.0.0.1"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
DID = "+12125550100"
CALLER = "+13125550199"
TARGET = "+14155550101"
CLK_TCK = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 20.0
DRAIN_TIMEOUT = 30.0  # bounded wait for the daemon to have no calls left
LOAD_REASONS = ("loop_busy", "loop_lag", "overload")  # the gate's refusals for load
GEN_RCVBUF = 4 * 1024 * 1024  # generous on the generator side: loss should be the daemon's


# -- small helpers -------------------------------------------------------------


def free_port() -> int:
    """A port free on both UDP and TCP right now (the daemon's SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((HOST, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((HOST, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free UDP+TCP port")


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """utime + stime of a live process (or of its thread `tid`), from /proc (seconds)."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def loop_cpu(pid: int) -> float:
    """CPU of the main thread (the event loop's, in pbx and sippy): one core is its ceiling."""
    return cpu_seconds(pid, pid)


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the daemon's media workers)."""
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_average() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"machine: nproc={os.cpu_count()} cpu={model!r} python={platform.python_version()} "
        f"kernel={platform.release()} load={load_average()}"
    )


async def wait_process(proc: asyncio.subprocess.Process, limit: float) -> int:
    """Its exit code; killed (by its PID) if it runs past `limit` seconds."""
    try:
        return await asyncio.wait_for(proc.wait(), limit)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        return await proc.wait()


def end_process(proc: asyncio.subprocess.Process | None) -> None:
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


# -- the daemon ----------------------------------------------------------------


@dataclass
class Daemon:
    """One `pbx serve` child process with its own database, on free loopback ports."""

    workdir: Path
    callee_port: int
    rtp_ports: str
    log_level: str
    cprofile: bool = False
    env: dict[str, str] = field(default_factory=dict)  # e.g. PBX_RTP_ENGINE, PBX_RTP_WORKERS
    sip_port: int = 0
    http_port: int = 0
    process: asyncio.subprocess.Process | None = None

    @property
    def db(self) -> Path:
        return self.workdir / "pbx.sqlite3"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    async def start(self) -> None:
        await self._provision()
        self.sip_port, self.http_port = free_port(), free_port()
        code = os.environ.get("PBX_BENCH_LAUNCH", "from cli import main; main()")
        if self.cprofile:  # deterministic profile of the daemon, dumped on SIGTERM
            prof = str(self.workdir / "daemon.prof")
            code = f"import cProfile; from cli import main; cProfile.run('main()', {prof!r})"
        args = [
            "-c", code, "serve",
            "--sip", f"{HOST}:{self.sip_port}", "--rtp-ports", self.rtp_ports,
            "--http", f"{HOST}:{self.http_port}", "--admin", f"{HOST}:{free_port()}",
        ]  # fmt: skip
        env = {
            **os.environ, "PBX_DB": str(self.db), "PBX_LOG_FORMAT": "json",
            "PBX_LOG_LEVEL": self.log_level, "PBX_TIMERS_DRAIN_TIMEOUT": "1",
            "PBX_TIMERS_MEDIA_TIMEOUT": "120", **self.env,
        }  # fmt: skip
        with (self.workdir / "daemon.log").open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, *args, cwd=ROOT, env=env,
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            )  # fmt: skip
        deadline = time.monotonic() + READY_TIMEOUT
        while (await self.health()) is None:
            if self.process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pbx serve did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def _provision(self) -> None:
        async with await open_store(self.db) as store:
            await store.trunks.add(
                Trunk(name="carrier", host=HOST, port=self.callee_port, allow=("127.0.0.0/8",))
            )
            await store.destinations.add(Destination(name="office", target=TARGET, kind="number"))
            await store.sources.add(Source(name="Bench", tag="bench"))
            await store.numbers.add(
                TrackingNumber(
                    number=DID, source="Bench", trunk="carrier", destinations=("office",)
                )
            )

    async def health(self) -> dict[str, Any] | None:
        """/health's JSON body, or None when nothing answers."""
        try:
            reader, writer = await asyncio.open_connection(HOST, self.http_port)
        except OSError:
            return None
        try:
            writer.write(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")
            raw = await asyncio.wait_for(reader.read(65536), 2.0)
        except (OSError, TimeoutError):
            return None
        finally:
            writer.close()
        _, _, body = raw.partition(b"\r\n\r\n")
        with contextlib.suppress(ValueError):
            result: dict[str, Any] = json.loads(body)
            return result
        return None

    async def refused(self) -> int:
        """New INVITEs refused at the gate for load (503): rejected_total of the load reasons."""
        try:
            reader, writer = await asyncio.open_connection(HOST, self.http_port)
        except OSError:
            return -1
        try:
            writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            raw = b""
            while chunk := await asyncio.wait_for(reader.read(65536), 2.0):
                raw += chunk
        except (OSError, TimeoutError):
            return -1
        finally:
            writer.close()
        total = 0
        for line in raw.decode(errors="replace").splitlines():
            if line.startswith("pbx_rejected_total{") and any(
                f'reason="{r}"' in line for r in LOAD_REASONS
            ):
                total += int(float(line.rsplit(" ", 1)[1]))
        return total

    async def wait_idle(self, limit: float = DRAIN_TIMEOUT) -> int:
        """Wait (bounded) until no call is active; returns the calls still active."""
        deadline = time.monotonic() + limit
        active = -1
        while time.monotonic() < deadline:
            body = await self.health()
            active = int(body.get("active_calls", -1)) if body else -1
            if active == 0:
                return 0
            await asyncio.sleep(0.2)
        return active

    def records(self) -> dict[str, float]:
        """Aggregates over the call records (read-only)."""
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)) as db:
            rows = db.execute(
                "SELECT disposition, COUNT(*), SUM(packets_in_out), SUM(packets_out_in) "
                "FROM calls GROUP BY disposition"
            ).fetchall()
        out: dict[str, float] = {"packets_in_out": 0, "packets_out_in": 0}
        for disposition, count, pin, pout in rows:
            out[disposition] = count
            out["packets_in_out"] += pin or 0
            out["packets_out_in"] += pout or 0
        return out

    def log_tail(self) -> str:
        path = self.workdir / "daemon.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def log_problems(self) -> int:
        return len(self.problem_lines())

    def problem_lines(self) -> list[str]:
        """The daemon's warning/error log lines (why a step failed)."""
        path = self.workdir / "daemon.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return [line for line in text.splitlines() if '"level": "warning"' in line
                or '"level": "error"' in line or "Traceback" in line]  # fmt: skip

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        await wait_process(self.process, 15.0)


# -- sipp ----------------------------------------------------------------------


def sipp_binary() -> str:
    path = shutil.which("sipp")
    if path is None:
        raise SystemExit("sipp is not installed (apt-get install sip-tester)")
    return path


def free_udp_pair() -> int:
    """A port with the three above it free: sipp's own media ports (never used here).

    sipp binds -mp and -mp+2 (audio and video RTP, seen with `ss`); checking
    only -mp and -mp+1 let one of the generator's 1,000-2,000 ephemeral
    sockets sit on -mp+2 and sipp exit 254 (fatal error binding a socket).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((HOST, 0))
            base = int(probe.getsockname()[1])
        base -= base % 4
        held: list[socket.socket] = []
        try:
            for port in range(base, base + 4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(sock)
                sock.bind((HOST, port))
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
        return base
    raise RuntimeError("no four free UDP ports in a row")


def write_injection(path: Path, ports: Sequence[int]) -> Path:
    """A sipp injection file, one call per line, field0 = the SDP media port."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{p};\n" for p in ports))
    return path


async def start_sipp(
    workdir: Path, scenario: str, port: int, args: Sequence[str], *, logs: bool
) -> asyncio.subprocess.Process:
    cmd = sipp_command(workdir, scenario, port, args, logs=logs)
    with (workdir / "stdout.log").open("wb") as out:
        return await asyncio.create_subprocess_exec(
            sipp_binary(), *cmd, cwd=workdir, stdin=asyncio.subprocess.DEVNULL,
            stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip


def sipp_command(
    workdir: Path, scenario: str, port: int, args: Sequence[str], *, logs: bool
) -> list[str]:
    workdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        "-sf", str(SCENARIOS / scenario), "-i", HOST, "-p", str(port), "-t", "u1",
        "-nostdin", "-mi", HOST, "-mp", str(free_udp_pair()),
        "-trace_err", "-error_file", str(workdir / "errors.log"),
        "-trace_screen", "-screen_file", str(workdir / "screen.log"), *args,
    ]  # fmt: skip
    if logs:
        cmd += ["-trace_logs", "-log_file", str(workdir / "logs.log")]
    (workdir / "command").write_text("sipp " + shlex.join(cmd) + "\n")
    return cmd


async def start_callee(workdir: Path, ports: Sequence[int], *, logs: bool) -> tuple[Any, int]:
    """The destination UAS (runs until killed) and its SIP port, once it listens."""
    port = free_port()
    inf = write_injection(workdir / "callee.csv", ports)
    proc = await start_sipp(workdir / "callee", "load_callee.xml", port,
                            ["-inf", str(inf), "-max_recv_loops", "5000"], logs=logs)  # fmt: skip
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"callee sipp exited: {(workdir / 'callee').as_posix()}")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                return proc, port
        await asyncio.sleep(0.02)
    raise RuntimeError("callee sipp did not listen")


def caller_args(inf: Path, rate: float, calls: int, hold_ms: int, timeout: float) -> list[str]:
    return [
        "-inf", str(inf), "-s", DID[1:], "-key", "caller", CALLER,
        "-r", f"{rate:g}", "-rp", "1000", "-m", str(calls), "-l", str(max(100, calls)),
        "-d", str(hold_ms), "-timeout", f"{int(timeout)}s", "-timeout_error",
        "-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
        "-max_recv_loops", "5000", "-max_sched_loops", "5000",
    ]  # fmt: skip


def sipp_stats(workdir: Path) -> dict[str, str]:
    """The last line of sipp's -trace_stat CSV, by column name."""
    files = sorted(workdir.glob("*_.csv"))
    if not files:
        return {}
    lines = [x for x in files[0].read_text(errors="replace").splitlines() if x.strip()]
    if len(lines) < 2:
        return {}
    return dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))


def sipp_rtts(workdir: Path) -> list[tuple[float, float]]:
    """(date_ms, INVITE->200 ms) for every answered call, from sipp's -trace_rtt file."""
    out: list[tuple[float, float]] = []
    for path in workdir.glob("*_rtt.csv"):
        for line in path.read_text(errors="replace").splitlines()[1:]:
            parts = line.split(";")
            with contextlib.suppress(ValueError, IndexError):
                out.append((float(parts[0]), float(parts[1])))
    return out


def as_int(stats: dict[str, str], name: str) -> int:
    try:
        return int(stats.get(name, "0") or 0)
    except ValueError:
        return 0


# -- phase 1: calls per second ---------------------------------------------------


@dataclass
class CpsStep:
    rate: int
    offered: int
    ok: int
    failed: int
    achieved: float
    cpu_pct: float
    cpu_ms_per_call: float
    loop_ms_per_call: float  # the main thread's share: 1000 / it is the one-process ceiling
    rss: float
    rtt: list[float]
    load: str
    exit_code: int

    def kept_rate(self) -> bool:
        return self.achieved >= 0.95 * self.rate

    def line(self) -> str:
        p50, p90, p99 = (percentile(self.rtt, q) for q in (0.5, 0.9, 0.99))
        return (
            f"{self.rate:>6} {self.achieved:>8.1f} {self.ok:>7} {self.failed:>6} "
            f"{self.cpu_pct:>6.1f} {self.cpu_ms_per_call:>7.2f} {self.loop_ms_per_call:>7.2f} "
            f"{self.rss:>6.1f} "
            f"{p50:>7.1f} {p90:>7.1f} {p99:>7.1f} {max(self.rtt, default=float('nan')):>7.1f}"
            f"  {self.load}"
        )


CPS_HEADER = (
    "  rate achieved      ok failed  cpu% ms/call loop_ms rss_MB "
    "rtt_p50 rtt_p90 rtt_p99 rtt_max  load(1/5/15)"
)


def achieved_rate(rtts: Sequence[tuple[float, float]]) -> float:
    """Answered calls per second over the span between the first and last 200 OK."""
    if len(rtts) < 2:
        return 0.0
    dates = sorted(d for d, _ in rtts)
    span = (dates[-1] - dates[0]) / 1000.0
    return (len(dates) - 1) / span if span > 0 else 0.0


class Target(Protocol):
    """A B2BUA under test: `pbx serve` (Daemon) or a peer (bench/compare.py's Sippy)."""

    @property
    def pid(self) -> int: ...
    @property
    def sip_port(self) -> int: ...
    def cpu(self) -> float: ...
    async def wait_idle(self) -> int: ...


async def cps_step(
    daemon: Target, workdir: Path, rate: int, args: argparse.Namespace,
    *, seconds: float | None = None, media_port: int = 9,
) -> CpsStep:  # fmt: skip
    """One step of `rate` CPS for `seconds` (default `--step-seconds`); no RTP flows,
    so the caller's SDP port (`media_port`) is only what the B2BUA is offered."""
    seconds = args.step_seconds if seconds is None else seconds
    calls = int(rate * seconds)
    sdir = workdir / f"cps{rate}"
    sdir.mkdir(parents=True)
    inf = write_injection(sdir / "caller.csv", [media_port])
    timeout = seconds + args.hold_ms / 1000 + 30
    c0, l0, t0 = daemon.cpu(), loop_cpu(daemon.pid), time.monotonic()
    proc = await start_sipp(
        sdir, "load_caller.xml", free_port(),
        [f"{HOST}:{daemon.sip_port}", *caller_args(inf, rate, calls, args.hold_ms, timeout)],
        logs=False,
    )  # fmt: skip
    code = await wait_process(proc, timeout + 10)
    await daemon.wait_idle()
    c1, l1, t1 = daemon.cpu(), loop_cpu(daemon.pid), time.monotonic()
    stats, rtts = sipp_stats(sdir), sipp_rtts(sdir)
    ok = as_int(stats, "SuccessfulCall(C)")
    return CpsStep(
        rate=rate,
        offered=calls,
        ok=ok,
        failed=as_int(stats, "FailedCall(C)") + max(0, calls - ok - as_int(stats, "FailedCall(C)")),
        achieved=achieved_rate(rtts),
        cpu_pct=100.0 * (c1 - c0) / (t1 - t0),
        cpu_ms_per_call=1000.0 * (c1 - c0) / max(1, calls),
        loop_ms_per_call=1000.0 * (l1 - l0) / max(1, calls),
        rss=rss_mb(daemon.pid),
        rtt=[r for _, r in rtts],
        load=load_average(),
        exit_code=code,
    )


async def cps_phase(workdir: Path, args: argparse.Namespace) -> None:
    rates = [r for r in args.rates if r > 0]
    if not rates:
        return
    print(f"\n== CPS step test: {args.step_seconds:g} s per step, hold {args.hold_ms} ms, "
          "media anchored (no RTP) ==")  # fmt: skip
    pdir = workdir / "cps"
    pdir.mkdir()
    callee, callee_port = await start_callee(pdir, [9], logs=False)
    daemon = Daemon(pdir, callee_port, args.rtp_ports, args.log_level, args.cprofile)
    best = 0
    try:
        await daemon.start()
        print(f"daemon pid={daemon.pid} rss={rss_mb(daemon.pid):.1f} MB")
        print(CPS_HEADER)
        for rate in rates:
            step = await cps_step(daemon, pdir, rate, args)
            print(step.line(), flush=True)
            if step.failed or step.exit_code != 0 or not step.kept_rate():
                failed = step.failed or step.exit_code
                why = "failed calls" if failed else "rate not kept (answers late)"
                print(f"stop: {why} at {rate} CPS (sipp exit {step.exit_code})")
                for line in daemon.problem_lines()[:3]:
                    print(f"  daemon: {line[:300]}")
                break
            best = rate
        print(f"records: {daemon.records()}  daemon warnings/errors logged: "
              f"{daemon.log_problems()}")  # fmt: skip
    finally:
        await daemon.stop()
        end_process(callee)
        await wait_process(callee, 5)
    print(f"RESULT highest CPS with 0 failed calls: {best}")


# -- phase 1b: beyond capacity ---------------------------------------------------


async def overload_step(daemon: Daemon, workdir: Path, rate: int,
                        args: argparse.Namespace) -> None:  # fmt: skip
    """Offer `rate` CPS (503 is an expected answer), then check that the daemon recovers."""
    calls = int(rate * args.step_seconds)
    sdir = workdir / f"over{rate}"
    sdir.mkdir(parents=True)
    inf = write_injection(sdir / "caller.csv", [9])
    timeout = args.step_seconds + args.hold_ms / 1000 + 30
    before, records_before = await daemon.refused(), daemon.records()
    c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
    proc = await start_sipp(
        sdir, "load_caller_503.xml", free_port(),
        [f"{HOST}:{daemon.sip_port}", *caller_args(inf, rate, calls, args.hold_ms, timeout)],
        logs=False,
    )  # fmt: skip
    code = await wait_process(proc, timeout + 10)
    stopped = time.monotonic()
    left = await daemon.wait_idle()
    c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
    refused = await daemon.refused() - before
    stats, rtts = sipp_stats(sdir), sipp_rtts(sdir)
    times = [r for _, r in rtts]
    after = daemon.records()
    answered = after.get("answered", 0) - records_before.get("answered", 0)
    other = {k: v - records_before.get(k, 0) for k, v in after.items()
             if k not in ("answered", "packets_in_out", "packets_out_in")
             and v != records_before.get(k, 0)}  # fmt: skip
    print(f"offered {rate} CPS x {args.step_seconds:g} s = {calls} calls (sipp exit {code})")
    print(f"  answered {len(times)} (admitted {achieved_rate(rtts):.1f} CPS), 503 at the gate "
          f"{refused}, sipp failed {as_int(stats, 'FailedCall(C)')}, "
          f"unaccounted {calls - len(times) - max(refused, 0)}")  # fmt: skip
    print(f"  INVITE->200 of admitted calls p50/p90/p99/max "
          f"{percentile(times, 0.5):.0f}/{percentile(times, 0.9):.0f}/"
          f"{percentile(times, 0.99):.0f}/{max(times, default=float('nan')):.0f} ms")  # fmt: skip
    print(f"  records: {answered} answered, others {other or 'none'}; calls left "
          f"{left} {time.monotonic() - stopped:.1f} s after the load stopped")  # fmt: skip
    print(f"  daemon cpu {100.0 * (c1 - c0) / (t1 - t0):.1f} %  load {load_average()}")
    probe_rate = max(10, rate // 10)
    probe = await cps_step(daemon, workdir, probe_rate, args, seconds=3.0)
    print(f"  recovery: {probe_rate} CPS for 3 s right after: {probe.ok} ok, {probe.failed} "
          f"failed, INVITE->200 p99 {percentile(probe.rtt, 0.99):.0f} ms")  # fmt: skip


async def overload_phase(workdir: Path, args: argparse.Namespace) -> None:
    rates = [r for r in args.overload if r > 0]
    if not rates:
        return
    print(f"\n== Overload: {args.step_seconds:g} s at each rate, 503 counted, media anchored ==")
    pdir = workdir / "overload"
    pdir.mkdir()
    callee, callee_port = await start_callee(pdir, [9], logs=False)
    daemon = Daemon(pdir, callee_port, args.rtp_ports, args.log_level, args.cprofile)
    try:
        await daemon.start()
        for rate in rates:
            await overload_step(daemon, pdir, rate, args)
    finally:
        await daemon.stop()
        end_process(callee)
        await wait_process(callee, 5)


# -- phase 2: concurrent calls with RTP ------------------------------------------


def generator_main(conn: Connection, calls: int, ptime: float, seconds: float) -> None:
    """The RTP generator process: 2 sockets per call, ports out, targets in, counts out."""
    raise_nofile()
    socks = []
    for _ in range(2 * calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, GEN_RCVBUF)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    conn.send([s.getsockname()[1] for s in socks])
    targets: list[int] | None = conn.recv()
    if targets is None:
        return
    for sock, port in zip(socks, targets, strict=True):
        sock.connect((HOST, port))  # the relay answers from the port it is sent to (symmetric)
    conn.send({**generate(conn, socks, ptime, seconds), "loop": "epoll"})


def generate(
    conn: Connection, socks: list[socket.socket], ptime: float, seconds: float
) -> dict[str, Any]:
    """Send from every socket each `ptime` (spread over 10 slices); count what comes back.

    A plain epoll loop on connected sockets, no event-loop machinery: the
    generator must stay cheaper than the daemon it measures (2 cores).
    """
    slices = 10
    groups = [socks[i::slices] for i in range(slices)]
    side = {s.fileno(): i % 2 for i, s in enumerate(socks)}  # 0: caller side, 1: callee side
    by_fd = {s.fileno(): s for s in socks}
    received = [0, 0]
    delays = array.array("q")  # ns from the send to the receive of each packet back
    ep = select.epoll()
    for sock in socks:
        ep.register(sock.fileno(), select.EPOLLIN)
    ticks, sent, n = int(seconds / ptime) * slices, 0, 0
    send_time: float | None = None
    cpu0, gen_cpu = time.process_time(), 0.0
    conn.send("start")
    start = time.monotonic() + 0.05
    while True:
        now = time.monotonic()
        while n < ticks and now >= start + n * ptime / slices:
            seq, group = divmod(n, slices)
            packet = rtpgen.rtp_packet(seq, time.monotonic_ns())
            for sock in groups[group]:
                with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                    sock.send(packet)
            sent += len(groups[group])
            n += 1
        if n >= ticks and send_time is None:
            send_time = now - start
            gen_cpu = time.process_time() - cpu0
            conn.send("stop")  # the daemon's CPU window is the sending window
        if n >= ticks and now > start + seconds + 1.0:  # 1 s for packets in flight
            break
        wake = start + n * ptime / slices if n < ticks else start + seconds + 1.0
        for fd, _ in ep.poll(max(0.0, wake - time.monotonic())):
            received[side[fd]] += _drain(by_fd[fd], delays)
    ep.close()
    for sock in socks:
        sock.close()
    return {
        "sent_each_side": sent // 2,
        "caller_received": received[0],
        "callee_received": received[1],
        "send_time": send_time,
        "generator_cpu_pct": round(100.0 * gen_cpu / (send_time or 1.0), 1),
        "delay_ms": rtpgen.delay_figures(np.frombuffer(delays, dtype=np.int64)),
    }


def _drain(sock: socket.socket, delays: array.array[int]) -> int:
    """Read what is queued; one clock read per wake-up (the generator must stay cheap)."""
    count, now = 0, time.monotonic_ns()
    with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
        while True:
            data = sock.recv(2048)
            count += 1
            if len(data) >= rtpgen.RTP_HEADER.size + rtpgen.STAMP.size:
                delays.append(now - rtpgen.STAMP.unpack_from(data, rtpgen.RTP_HEADER.size)[0])
    return count


@dataclass
class RtpStep:
    calls: int
    answered: int = 0
    sent: int = 0  # per direction
    caller_received: int = 0
    callee_received: int = 0
    relayed: int = 0
    cpu_pct: float = 0.0
    rss: float = 0.0
    send_time: float = 0.0
    load: str = ""
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def loss_pct(self) -> float:
        total = 2 * self.sent
        received = self.caller_received + self.callee_received
        return 100.0 * (total - received) / total if total else float("nan")

    def line(self) -> str:
        return (
            f"{self.calls:>6} {self.answered:>6} {2 * self.sent:>9} "
            f"{self.caller_received + self.callee_received:>9} {self.relayed:>9} "
            f"{self.loss_pct():>7.3f} {self.cpu_pct:>6.1f} {self.rss:>6.1f} "
            f"{self.send_time:>6.1f}  {self.load}  {self.note}"
        )


RTP_HEADER_LINE = (
    " calls answer      sent  received   relayed  loss_%  cpu% rss_MB  pace_s  load(1/5/15)"
)


async def pipe_recv(conn: Connection, limit: float) -> Any:
    """conn.recv() without blocking the loop, bounded by `limit` seconds."""
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, conn.poll, limit):
        raise TimeoutError("generator did not answer")
    return conn.recv()


def logged_ports(log: Path, prefix: str) -> dict[int, int]:
    found: dict[int, int] = {}
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == prefix:
                found[int(parts[1])] = int(parts[2])
    return found


async def relay_ports(
    log: Path, prefix: str, wanted: int, deadline: float, proc: Any
) -> dict[int, int]:
    """local SDP port -> relay port, read (bounded) from a sipp log's `prefix` lines."""
    found: dict[int, int] = {}
    while time.monotonic() < deadline:
        found.update(logged_ports(log, prefix))
        if len(found) >= wanted or proc.returncode is not None:
            break
        await asyncio.sleep(0.25)
    return found


def media_env(args: argparse.Namespace, engine: Any) -> dict[str, str]:
    """The daemon's `[rtp]` settings for this run (engine, workers)."""
    env = {} if args.workers is None else {"PBX_RTP_WORKERS": str(args.workers)}
    if engine is not None:
        env |= {"PBX_RTP_ENGINE": "rtpengine",
                "PBX_RTP_RTPENGINE": f"{engine.ng[0]}:{engine.ng[1]}"}  # fmt: skip
    return env


def start_engine(sdir: Path, args: argparse.Namespace) -> Any:
    """A private userspace rtpengine for `--engine rtpengine` (None for the built-in relay)."""
    if args.engine != "rtpengine":
        return None
    from tests.e2e.rtpengine_proc import start_rtpengine

    return start_rtpengine(sdir, free_port(), parse_port_range(args.rtp_ports, "--rtp-ports"),
                           threads=args.rtpengine_threads)  # fmt: skip


async def rtp_step(workdir: Path, calls: int, args: argparse.Namespace) -> RtpStep:
    sdir = workdir / f"rtp{calls}"
    sdir.mkdir(parents=True)
    engine = start_engine(sdir, args)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    target = rtpgen.generator_main if args.generator == "mmsg" else generator_main
    gen = ctx.Process(target=target, args=(child, calls, args.ptime, args.rtp_seconds))
    gen.start()
    callee = caller = None
    daemon: Daemon | None = None
    try:
        ports: list[int] = await pipe_recv(parent, 30)
        callee, callee_port = await start_callee(sdir, ports[1::2], logs=True)
        daemon = Daemon(sdir, callee_port, args.rtp_ports, args.log_level, args.cprofile,
                        media_env(args, engine))  # fmt: skip
        await daemon.start()
        media = [engine.proc.pid] if engine is not None else children(daemon.pid)
        return await rtp_run(sdir, daemon, parent, ports, calls, args, callee, media)
    finally:
        with contextlib.suppress(OSError):
            parent.send(None)  # a generator still waiting for targets ends
        if daemon is not None:
            await daemon.stop()
        for proc in (callee, caller):
            end_process(proc)
        gen.join(timeout=10)
        if gen.is_alive():
            gen.kill()  # by its PID, via the Process handle
        if callee is not None:
            await wait_process(callee, 5)
        if engine is not None:
            engine.stop()


async def rtp_run(
    sdir: Path, daemon: Daemon, gen: Connection, ports: list[int], calls: int,
    args: argparse.Namespace, callee: Any, media: list[int],
) -> RtpStep:  # fmt: skip
    setup = calls / args.setup_rate
    hold_ms = int(1000 * (setup + args.rtp_seconds + 15))
    timeout = hold_ms / 1000 + setup + 60
    inf = write_injection(sdir / "caller.csv", ports[0::2])
    caller = await start_sipp(
        sdir / "caller", "load_caller.xml", free_port(),
        [f"{HOST}:{daemon.sip_port}", *caller_args(inf, args.setup_rate, calls, hold_ms, timeout)],
        logs=True,
    )  # fmt: skip
    try:
        step = await rtp_media(sdir, daemon, gen, ports, calls, setup, caller, callee, media)
        code = await wait_process(caller, timeout + 10)
        left = await daemon.wait_idle()
        rec = daemon.records()
        step.relayed = int(rec["packets_in_out"] + rec["packets_out_in"])
        step.extra = {**step.extra, "sipp_exit": code, "active_after": left, "records": rec,
                      "daemon_warnings": daemon.log_problems()}  # fmt: skip
        return step
    finally:
        end_process(caller)


async def rtp_media(
    sdir: Path, daemon: Daemon, gen: Connection, ports: list[int], calls: int,
    setup: float, caller: Any, callee: Any, media: list[int],
) -> RtpStep:  # fmt: skip
    """The generator's window; `media` are the relaying processes (workers or rtpengine)."""
    step = RtpStep(calls)
    deadline = time.monotonic() + setup + 30
    inbound = await relay_ports(sdir / "caller" / "logs.log", "ANSWER_MEDIA", calls, deadline,
                                caller)  # fmt: skip
    outbound = await relay_ports(sdir / "callee" / "logs.log", "OFFER_MEDIA", calls, deadline,
                                 callee)  # fmt: skip
    step.answered = len(inbound)
    if len(inbound) < calls or len(outbound) < calls:
        step.note = f"only {len(inbound)}/{len(outbound)} calls set up: no RTP sent"
        return step
    gen.send([inbound[p] if i % 2 == 0 else outbound[p] for i, p in enumerate(ports)])
    assert await pipe_recv(gen, 30) == "start"
    c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
    s0 = [cpu_seconds(p.pid) for p in (caller, callee)]
    w0 = {pid: cpu_seconds(pid) for pid in media}
    assert await pipe_recv(gen, 3 * 60 + 60) == "stop"
    c1, t1 = cpu_seconds(daemon.pid), time.monotonic()
    workers = [round(100.0 * (cpu_seconds(pid) - c) / (t1 - t0), 1)
               for pid, c in w0.items() if alive(pid)]  # fmt: skip
    sipps = zip((caller, callee), s0, strict=True)
    sipp_cpu = [100.0 * (cpu_seconds(p.pid) - c) / (t1 - t0) for p, c in sipps]
    result = await pipe_recv(gen, 30)
    step.sent = result["sent_each_side"]
    step.caller_received = result["caller_received"]
    step.callee_received = result["callee_received"]
    step.send_time = result["send_time"]
    step.extra = {"delay_ms": result["delay_ms"], "worker_cpu_pct": workers,
                  "generator_cpu_pct": result["generator_cpu_pct"],
                  "generator_us_per_packet": result.get("generator_us_per_packet"),
                  "sipp_cpu_pct": [round(x, 1) for x in sipp_cpu]}  # fmt: skip
    step.cpu_pct = 100.0 * (c1 - c0) / (t1 - t0)
    step.rss = rss_mb(daemon.pid)
    step.load = load_average()
    return step


async def rtp_phase(workdir: Path, args: argparse.Namespace) -> None:
    steps = [k for k in args.concurrent if k > 0]
    if not steps:
        return
    ptime, secs, rate = args.ptime * 1000, args.rtp_seconds, args.setup_rate
    print(f"\n== concurrent calls with RTP: {ptime:.0f} ms ptime, 172-byte packets "
          f"both ways for {secs:g} s, set up at {rate:g}/s ==")  # fmt: skip
    print(RTP_HEADER_LINE)
    best = 0
    for calls in steps:
        step = await rtp_step(workdir, calls, args)
        print(step.line(), flush=True)
        print(f"        {step.extra}", flush=True)
        if step.sent == 0 or step.loss_pct() >= args.max_loss:
            print(f"stop: loss {step.loss_pct():.3f}% at {calls} calls {step.note}")
            break
        best = calls
    print(f"RESULT most concurrent calls with RTP under {args.max_loss}% loss: {best}")


# -- main ------------------------------------------------------------------------


def auto_range(size: int = 16384) -> str:
    """A random window below the ephemeral range, so two runs rarely share ports."""
    low = 10000 + 2 * random.randrange((32767 - 10000 - size) // 2)
    return f"{low}-{low + size - 1}"


def int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--rates", type=int_list, default=int_list("50,100,200,300,500,700,1000"),
                   help="CPS steps, comma-separated (0 skips the phase)")  # fmt: skip
    p.add_argument("--step-seconds", type=float, default=10.0)
    p.add_argument("--overload", type=int_list, default=[],
                   help="CPS offered beyond capacity, comma-separated (503 expected)")  # fmt: skip
    p.add_argument("--hold-ms", type=int, default=1000)
    p.add_argument("--concurrent", type=int_list, default=int_list("100,300,500,1000"),
                   help="concurrent RTP call steps (0 skips the phase)")  # fmt: skip
    p.add_argument("--rtp-seconds", type=float, default=20.0)
    p.add_argument("--setup-rate", type=float, default=40.0, help="CPS while setting up RTP calls")
    p.add_argument("--ptime", type=float, default=0.02)
    p.add_argument("--generator", choices=("mmsg", "plain"), default="mmsg",
                   help="RTP generator: mmsg (2 sockets, sendmmsg/recvmmsg; bench/rtpgen.py) "
                        "or plain (2 sockets per call, a syscall per packet)")  # fmt: skip
    p.add_argument("--max-loss", type=float, default=0.1, help="RTP loss %% that ends the steps")
    p.add_argument("--rtp-ports", default=auto_range(), help="daemon RTP range (4 ports/call)")
    p.add_argument("--log-level", default="info", help="daemon log level (PBX_LOG_LEVEL)")
    p.add_argument("--engine", choices=("builtin", "rtpengine"), default="builtin",
                   help="media engine of the RTP phase (rtpengine: a private userspace one)")
    p.add_argument("--workers", type=int, default=None,
                   help="PBX_RTP_WORKERS for the daemon (default: its own default)")
    p.add_argument("--rtpengine-threads", type=int, default=2,
                   help="rtpengine --num-threads/--media-num-threads with --engine rtpengine")
    p.add_argument("--cprofile", action="store_true",
                   help="daemon under cProfile (daemon.prof in the work dir)")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, CSVs)")
    return p.parse_args(argv)


async def run(args: argparse.Namespace, workdir: Path) -> None:
    await cps_phase(workdir, args)
    await overload_phase(workdir, args)
    await rtp_phase(workdir, args)


def main() -> None:
    args = parse_args()
    raise_nofile()
    print(machine())
    print(f"daemon loop: uvloop (pbx serve); log level {args.log_level}; "
          f"rtp ports {args.rtp_ports}; sipp {sipp_binary()}")  # fmt: skip
    print("command: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="pbx-load-"))
    try:
        asyncio.run(run(args, workdir))
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
