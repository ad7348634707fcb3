"""Soak benchmark: the real `pbx serve` under steady sipp load with RTP for a bounded time.

Runs one daemon process (uvloop, its own temporary SQLite file, provisioned
like bench/load.py: one trunk on 127.0.0.1, one destination, one tracking
number) for `--minutes` (default 30) at `--rate` calls per second (default:
half of `--capacity` when given, else 20), each call held `--hold-seconds`.
A fraction `--rtp-fraction` of the calls carries RTP both ways:

- two sipp UACs place the calls (bench/scenarios/load_caller.xml): one for
  signalling-only calls, one for RTP calls whose SDP ports are sockets of an
  RTP generator process (uvloop);
- one sipp UAS answers every call (load_callee.xml); its SDP ports are echo
  sockets of the same generator, which send every packet back to where it
  came from (the relay's outbound leg);
- the generator reads the RTP caller's log (ANSWER_MEDIA lines: our socket,
  the relay port the daemon answered with) and streams one 172-byte packet
  every 20 ms from that socket for the hold time minus a guard; each packet
  crosses the relay twice (caller -> callee echo -> caller), so loss and
  round-trip time are through both legs of the relay.

Every `--sample-seconds` it prints the daemon's RSS, open FDs (from
/proc/PID/status and /proc/PID/fd), active calls (/health) and CPU. At the
end: calls ok/failed, INVITE->200 latency percentiles (sipp -trace_rtt),
RTP loss and round trip, records by disposition, RSS/FDs over time and the
verdict: after the calls end (daemon idle), FDs must be back at the idle
baseline (+2) and RSS within max(8 MB, 10%) of the RSS at the end of the
warm-up (the allocator keeps arenas after the first minute of load, so the
cold-start RSS is not the baseline), and the steady-state RSS slope is
printed in MB/hour.

Reuses bench/load.py's helpers (daemon, sipp, /proc readers). Every process
it starts is ended by its PID; everything stays on 127.0.0.1 and is bounded
in time. Prints figures; asserts nothing (exit code 1 if the verdict fails).

    python bench/soak.py                         # 30 min at 20 CPS, 25% of calls with RTP
    python bench/soak.py --minutes 3 --capacity 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load

HOST = load.HOST
PAYLOAD_FILL = b"\xff" * (160 - 8)
ECHO_SOCKETS = 64  # callee-side SDP ports; shared between calls (echo answers the sender)
MAX_RTT_SAMPLES = 200_000


# -- the RTP generator process -----------------------------------------------------


def use_uvloop() -> str:
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


class Echo(asyncio.DatagramProtocol):
    """The callee side: send every packet back to its sender (the relay)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.echoed = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)
        self.echoed += 1


@dataclass
class Returns(asyncio.DatagramProtocol):
    """The caller side: count what comes back and sample its round trip."""

    received: int = 0
    rtts: list[float] = field(default_factory=list)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        if len(self.rtts) < MAX_RTT_SAMPLES and len(data) >= 20:
            sent = int.from_bytes(data[12:20], "big")
            self.rtts.append((time.monotonic_ns() - sent) / 1e6)


def bind_sockets(count: int) -> list[socket.socket]:
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, load.GEN_RCVBUF)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    return socks


def generator_main(conn: Connection, callers: int) -> None:
    """Bind sockets, send their ports, then stream RTP as calls are answered until "stop"."""
    load.raise_nofile()
    caller_socks, echo_socks = bind_sockets(callers), bind_sockets(ECHO_SOCKETS)
    conn.send(([s.getsockname()[1] for s in caller_socks],
               [s.getsockname()[1] for s in echo_socks]))  # fmt: skip
    setup = conn.recv()
    if setup is None:
        return
    loop_name = use_uvloop()
    result = asyncio.run(stream(conn, caller_socks, echo_socks, setup))
    conn.send({**result, "loop": loop_name})


@dataclass
class Stream:
    transport: asyncio.DatagramTransport
    target: tuple[str, int]
    until: float
    seq: int = 0


class LogTail:
    """New `ANSWER_MEDIA <our port> <relay port>` lines of a growing sipp log."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.partial = path, 0, b""

    def lines(self) -> list[tuple[int, int]]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.offset)
                chunk = f.read(1 << 20)
        except OSError:
            return []
        self.offset += len(chunk)
        *full, self.partial = (self.partial + chunk).split(b"\n")
        out = []
        for line in full:
            parts = line.split()
            if len(parts) == 3 and parts[0] == b"ANSWER_MEDIA" and parts[2].isdigit():
                out.append((int(parts[1]), int(parts[2])))
        return out


async def stream(
    conn: Connection, caller_socks: list[socket.socket], echo_socks: list[socket.socket],
    setup: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    loop = asyncio.get_running_loop()
    returns, echoes = Returns(), [Echo() for _ in echo_socks]
    by_port: dict[int, asyncio.DatagramTransport] = {}
    for sock in caller_socks:
        transport, _ = await loop.create_datagram_endpoint(lambda: returns, sock=sock)
        by_port[sock.getsockname()[1]] = transport
    for sock, echo in zip(echo_socks, echoes, strict=True):
        await loop.create_datagram_endpoint(lambda e=echo: e, sock=sock)  # type: ignore[misc]
    tail, ptime = LogTail(Path(setup["log"])), setup["ptime"]
    active: dict[int, Stream] = {}
    sent = calls = 0
    while not conn.poll(0):
        now = loop.time()
        for port, relay in tail.lines():
            if port in by_port:
                active[port] = Stream(by_port[port], (HOST, relay), now + setup["send_seconds"])
            calls += 1
        for port, s in list(active.items()):
            if now >= s.until:
                del active[port]
                continue
            header = load.RTP_HEADER.pack(0x80, 0, s.seq & 0xFFFF, (s.seq * 160) & 0xFFFFFFFF,
                                          port)  # fmt: skip
            s.transport.sendto(header + time.monotonic_ns().to_bytes(8, "big") + PAYLOAD_FILL,
                               s.target)  # fmt: skip
            s.seq += 1
            sent += 1
        await asyncio.sleep(max(0.0, ptime - (loop.time() - now)))
    await asyncio.sleep(1.0)  # packets still in flight through the relay (bounded)
    return {"calls": calls, "sent": sent, "received": returns.received,
            "echoed": sum(e.echoed for e in echoes), "rtts": returns.rtts}  # fmt: skip


# -- sampling the daemon -----------------------------------------------------------


@dataclass
class Sample:
    t: float
    rss: float
    fds: int
    active: int
    cpu_pct: float


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def take_sample(daemon: load.Daemon, t0: float, last: list[float]) -> Sample:
    health = await daemon.health()
    cpu, now = load.cpu_seconds(daemon.pid), time.monotonic()
    pct = 100.0 * (cpu - last[0]) / max(1e-6, now - last[1])
    last[:] = [cpu, now]
    active = int(health.get("active_calls", -1)) if health else -1
    return Sample(now - t0, load.rss_mb(daemon.pid), open_fds(daemon.pid), active, pct)


def print_sample(s: Sample, phase: str) -> None:
    print(f"{s.t:>7.0f} {phase:<8} {s.rss:>7.1f} {s.fds:>5} {s.active:>6} {s.cpu_pct:>6.1f}",
          flush=True)  # fmt: skip


def slope_mb_per_hour(samples: list[Sample]) -> float:
    """Least-squares slope of RSS over time."""
    if len(samples) < 3:
        return float("nan")
    n = len(samples)
    mt, mr = sum(s.t for s in samples) / n, sum(s.rss for s in samples) / n
    var = sum((s.t - mt) ** 2 for s in samples)
    cov = sum((s.t - mt) * (s.rss - mr) for s in samples)
    return 3600.0 * cov / var if var else float("nan")


# -- the run -----------------------------------------------------------------------


@dataclass
class Plan:
    rate: float
    rtp_rate: float
    seconds: float
    hold_ms: int
    warmup: float

    @property
    def plain_rate(self) -> float:
        return self.rate - self.rtp_rate


def make_plan(args: argparse.Namespace) -> Plan:
    rate = args.rate if args.rate else (args.capacity / 2 if args.capacity else 20.0)
    seconds = args.minutes * 60
    warmup = min(args.warmup, seconds / 3)
    return Plan(rate, rate * args.rtp_fraction, seconds, int(args.hold_seconds * 1000), warmup)


async def start_caller(
    workdir: Path, name: str, daemon: load.Daemon, rate: float, ports: list[int], plan: Plan,
    logs: bool,
) -> Any:  # fmt: skip
    calls = max(1, int(rate * plan.seconds))
    timeout = plan.seconds + plan.hold_ms / 1000 + 60
    inf = load.write_injection(workdir / f"{name}.csv", ports)
    args = load.caller_args(inf, rate, calls, plan.hold_ms, timeout)
    return await load.start_sipp(workdir / name, "load_caller.xml", load.free_port(),
                                 [f"{HOST}:{daemon.sip_port}", *args], logs=logs)  # fmt: skip


async def sample_until(
    daemon: load.Daemon, procs: list[Any], plan: Plan, args: argparse.Namespace,
    t0: float, last: list[float],
) -> list[tuple[str, Sample]]:  # fmt: skip
    """Sample every `--sample-seconds` while any caller sipp runs (bounded)."""
    out: list[tuple[str, Sample]] = []
    deadline = time.monotonic() + plan.seconds + plan.hold_ms / 1000 + 90
    while time.monotonic() < deadline and any(p.returncode is None for p in procs):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)),
                                   args.sample_seconds)  # fmt: skip
        s = await take_sample(daemon, t0, last)
        phase = "warmup" if s.t < plan.warmup else "load"
        print_sample(s, phase)
        out.append((phase, s))
    return out


async def settle(
    daemon: load.Daemon, t0: float, last: list[float], seconds: float
) -> list[Sample]:  # fmt: skip
    """Wait (bounded) for no active call, then sample the idle daemon for `seconds`."""
    left = await daemon.wait_idle()
    print(f"idle: {left} calls still active after the bounded drain wait")
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        await asyncio.sleep(min(5.0, seconds))
        s = await take_sample(daemon, t0, last)
        print_sample(s, "after")
        samples.append(s)
    return samples


async def soak(workdir: Path, args: argparse.Namespace) -> bool:
    plan = make_plan(args)
    rtp_concurrent = int(plan.rtp_rate * plan.hold_ms / 1000) + 1
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    gen = ctx.Process(target=generator_main, args=(child, 2 * rtp_concurrent + 20))
    gen.start()
    procs: list[Any] = []
    daemon: load.Daemon | None = None
    try:
        caller_ports, echo_ports = await load.pipe_recv(parent, 30)
        callee, callee_port = await load.start_callee(workdir, echo_ports, logs=False)
        procs.append(callee)
        ports = args.rtp_ports or load.auto_range()
        daemon = load.Daemon(workdir, callee_port, ports, args.log_level)
        await daemon.start()
        return await run_load(workdir, daemon, parent, caller_ports, plan, args, procs)
    finally:
        with contextlib.suppress(OSError):
            parent.send(None)  # a generator still waiting for its setup ends
        if daemon is not None:
            await daemon.stop()
        for proc in procs:
            load.end_process(proc)
            await load.wait_process(proc, 5)
        gen.join(timeout=15)
        if gen.is_alive():
            gen.kill()  # by its PID, via the Process handle


async def run_load(
    workdir: Path, daemon: load.Daemon, gen: Connection, caller_ports: list[int], plan: Plan,
    args: argparse.Namespace, procs: list[Any],
) -> bool:  # fmt: skip
    t0, last = time.monotonic(), [load.cpu_seconds(daemon.pid), time.monotonic()]
    print(
        f"\n{plan.rate:g} CPS for {plan.seconds / 60:g} min ({plan.rtp_rate:g} CPS with RTP), "
        f"hold {plan.hold_ms / 1000:g} s, warm-up {plan.warmup:g} s; daemon pid {daemon.pid}"
    )
    print("      t phase     rss_MB   fds active   cpu%")
    idle = await take_sample(daemon, t0, last)
    print_sample(idle, "idle")
    gen.send({"log": str(workdir / "rtp" / "logs.log"), "ptime": 0.02,
              "send_seconds": plan.hold_ms / 1000 - args.guard})  # fmt: skip
    callers = []
    if plan.plain_rate > 0:
        callers.append(await start_caller(workdir, "plain", daemon, plan.plain_rate, [9], plan,
                                          logs=False))  # fmt: skip
    if plan.rtp_rate > 0:
        callers.append(await start_caller(workdir, "rtp", daemon, plan.rtp_rate, caller_ports,
                                          plan, logs=True))  # fmt: skip
    procs.extend(callers)
    samples = await sample_until(daemon, callers, plan, args, t0, last)
    after = await settle(daemon, t0, last, args.settle_seconds)
    gen.send("stop")
    media = await load.pipe_recv(gen, 60)
    return report(workdir, daemon, plan, idle, samples, after, media)


def report(
    workdir: Path, daemon: load.Daemon, plan: Plan, idle: Sample,
    samples: list[tuple[str, Sample]], after: list[Sample], media: dict[str, Any],
) -> bool:  # fmt: skip
    print("\n== results ==")
    ok = failed = 0
    rtts: list[float] = []
    for name in ("plain", "rtp"):
        stats = load.sipp_stats(workdir / name)
        ok += load.as_int(stats, "SuccessfulCall(C)")
        failed += load.as_int(stats, "FailedCall(C)")
        rtts += [r for _, r in load.sipp_rtts(workdir / name)]
    pct = [load.percentile(rtts, q) for q in (0.5, 0.9, 0.99)]
    print(f"calls: ok {ok}  failed {failed}  (offered {int(plan.rate * plan.seconds)})")
    print(
        f"setup INVITE->200 ms: p50 {pct[0]:.1f}  p90 {pct[1]:.1f}  p99 {pct[2]:.1f}  "
        f"max {max(rtts, default=float('nan')):.1f}  (n={len(rtts)})"
    )
    sent, got = media["sent"], media["received"]
    loss = 100.0 * (sent - got) / sent if sent else float("nan")
    rt = [load.percentile(media["rtts"], q) for q in (0.5, 0.99)]
    print(
        f"rtp: {media['calls']} calls, {sent} packets sent, {got} back after crossing the "
        f"relay twice, loss {loss:.3f}%, round trip ms p50 {rt[0]:.2f} p99 {rt[1]:.2f} "
        f"({media['loop']})"
    )
    print(f"records: {daemon.records()}  daemon warnings/errors logged: {daemon.log_problems()}")
    return verdict(idle, samples, after)


def verdict(idle: Sample, samples: list[tuple[str, Sample]], after: list[Sample]) -> bool:
    warm = [s for phase, s in samples if phase == "warmup"]
    steady = [s for phase, s in samples if phase == "load"]
    if not after or not (warm or steady):
        print("VERDICT: no samples (run too short?)")
        return False
    base = (warm or steady)[-1].rss
    peak = max(s.rss for _, s in samples)
    final = after[-1]
    rss_ok = final.rss <= base + max(8.0, 0.10 * base)
    fds_ok = final.fds <= idle.fds + 2
    print(
        f"rss MB: idle {idle.rss:.1f}, end of warm-up {base:.1f}, peak {peak:.1f}, "
        f"after {final.rss:.1f}; steady slope {slope_mb_per_hour(steady):+.1f} MB/h"
    )
    print(f"fds: idle {idle.fds}, peak {max(s.fds for _, s in samples)}, after {final.fds}")
    good = rss_ok and fds_ok and final.active == 0
    print(
        f"VERDICT: {'PASS' if good else 'FAIL'} (rss back near warm-up: {rss_ok}, "
        f"fds back at idle: {fds_ok}, no active call: {final.active == 0})"
    )
    return good


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--rate", type=float, default=0.0, help="CPS (default: capacity/2, or 20)")
    p.add_argument("--capacity", type=float, default=0.0,
                   help="measured CPS (bench/load.py); the rate is half of it")  # fmt: skip
    p.add_argument("--rtp-fraction", type=float, default=0.25)
    p.add_argument("--hold-seconds", type=float, default=10.0)
    p.add_argument("--guard", type=float, default=1.5, help="stop RTP this long before the BYE")
    p.add_argument("--sample-seconds", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds before the RSS baseline")
    p.add_argument("--settle-seconds", type=float, default=20.0, help="idle sampling at the end")
    p.add_argument("--rtp-ports", default="", help="daemon RTP range (default: a random window)")
    p.add_argument("--log-level", default="info", help="daemon log level (PBX_LOG_LEVEL)")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, CSVs)")
    args = p.parse_args(argv)
    if not 0 <= args.rtp_fraction <= 1 or args.hold_seconds <= args.guard:
        p.error("--rtp-fraction must be in 0..1 and --hold-seconds longer than --guard")
    return args


def main() -> None:
    args = parse_args()
    load.raise_nofile()
    print(load.machine())
    print("command: " + shlex.join([sys.executable, *sys.argv]), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="pbx-soak-"))
    try:
        good = asyncio.run(soak(workdir, args))
    finally:
        if args.keep:
            print(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
