"""Benchmark: the relay in-process (0 workers) vs in 1 or 2 worker processes, paced G.711 load.

A "daemon" process (multiprocessing, spawn) owns the media engine: with
`--workers 0` a `MediaRelay` in its own loop, as `pbx serve` does today;
with N > 0 a `WorkerEngine` whose N worker processes are its children.
This process is the generator: two UDP sockets per call (caller and callee
side), each sending one 172-byte RTP packet (12-byte header + 160 bytes of
PCMU) every 20 ms for `--duration` seconds, spread over the 20 ms in
`--slices` groups; every payload starts with its send time
(CLOCK_MONOTONIC ns), so each received packet gives its one-way delay
through the relay. Everything is on 127.0.0.1 and bounded in time.

Printed per run: loss %, one-way delay p50 / p99 / p99.9 / max and the
share of packets under 20 ms, and CPU % of one core for the generator, the
daemon process and each worker (utime + stime from /proc/PID/stat over the
sending window). `--busy 0.5` makes the daemon's loop spend half its time
in 5 ms pieces of synchronous work (standing in for signalling and the
store), which is what workers are for. `--record` makes every session
record a stereo WAV (into a temporary directory, removed after the run):
in-process the daemon's loop writes them, with workers each worker does.
`--direct` adds a baseline run with no relay at all (each
socket sends straight to its partner), so the delay the relay *adds* is
the difference. The delay includes the generator's own scheduling: on a
2-core box the generator competes with the relay for the cores.

    python bench/workers.py --calls 200,500 --workers 0,1,2 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
import shutil
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.rtp.media import MediaStats
from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaRelay
from pbx.rtp.workers import WorkerEngine

HOST = "127.0.0.1"
HEADER = struct.Struct("!BBHIIQ")  # RTP fixed header + 8-byte send stamp in the payload
PAYLOAD = 160  # 20 ms of G.711 at 8 kHz
FILLER = b"\xff" * (PAYLOAD - 8)
GEN_RCVBUF = 4 * 1024 * 1024  # generous on the generator side: loss should be the relay's
TICK = os.sysconf("SC_CLK_TCK")
BUSY_CHUNK = 0.005  # one synchronous piece of fake signalling work (--busy)
SETTLE = 0.5  # seconds for the workers to apply set_remote (not acknowledged) before traffic


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (fields 14 and 15 of /proc/PID/stat, after the comm field)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICK


# -- the daemon process ----------------------------------------------------------


def daemon_main(
    conn: Connection, workers: int, low: int, high: int, busy: float, record: str | None
) -> None:
    raise_nofile()
    uvloop.run(daemon_serve(conn, workers, low, high, busy, record))


def keep_busy(loop: asyncio.AbstractEventLoop, share: float) -> None:
    """Hold the daemon's loop for BUSY_CHUNK seconds, `share` of the time (fake signalling)."""
    end = time.perf_counter() + BUSY_CHUNK
    while time.perf_counter() < end:
        pass
    loop.call_later(BUSY_CHUNK * (1 - share) / share, keep_busy, loop, share)


async def daemon_serve(
    conn: Connection, workers: int, low: int, high: int, busy: float, record: str | None
) -> None:
    loop = asyncio.get_running_loop()
    if busy > 0:
        keep_busy(loop, busy)
    gen_ports: list[tuple[int, int]] = conn.recv()
    engine: MediaRelay | WorkerEngine
    if workers == 0:
        engine = MediaRelay(PortPairAllocator(low, high, 0.0), HOST, media_timeout=3600.0)
        pids = []
    else:
        engine = WorkerEngine(HOST, low, high, workers=workers, media_timeout=3600.0)
        await engine.start()
        pids = engine.pids
    sessions: list[Any] = []  # relay.MediaSession or workers.WorkerSession
    for i, (caller_port, callee_port) in enumerate(gen_ports):
        session = await engine.open_session(f"bench-{i}")
        session.set_remote("inbound", HOST, caller_port)
        session.set_remote("outbound", HOST, callee_port)
        if record is not None:
            session.start_recording(str(Path(record) / f"bench-{i}.wav"))
        sessions.append(session)
    await asyncio.sleep(SETTLE)
    ports = [(s.address("inbound")[1], s.address("outbound")[1]) for s in sessions]
    conn.send((os.getpid(), pids, ports))
    await loop.run_in_executor(None, conn.recv)  # "stop"
    finals: list[MediaStats] = []
    for session in sessions:
        session.close()
    if isinstance(engine, WorkerEngine):
        for session in sessions:
            finals.append(await session.final_stats(5.0))
    else:
        finals = [s.snapshot() for s in sessions]
    engine.close()
    relayed = sum(s.inbound.packets + s.outbound.packets for s in finals)
    dropped = sum(s.inbound.dropped + s.outbound.dropped for s in finals)
    conn.send({"relayed": relayed, "dropped": dropped})


# -- the generator (this process) -------------------------------------------------


@dataclass
class Receiver(asyncio.DatagramProtocol):
    delays: list[int] = field(default_factory=list)
    count: int = 0
    target: int = -1
    all_in: asyncio.Event = field(default_factory=asyncio.Event)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.delays.append(time.monotonic_ns() - HEADER.unpack_from(data)[5])
        self.count += 1
        if self.count == self.target:
            self.all_in.set()


def bind_generators(calls: int) -> list[socket.socket]:
    socks = []
    for _ in range(2 * calls):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, GEN_RCVBUF)
        sock.bind((HOST, 0))
        sock.setblocking(False)
        socks.append(sock)
    return socks


async def generate(
    socks: list[socket.socket],
    targets: list[tuple[str, int]],
    args: argparse.Namespace,
    pids: dict[str, int],
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    receiver = Receiver()
    transports = []
    for sock in socks:
        transport, _ = await loop.create_datagram_endpoint(lambda: receiver, sock=sock)
        transports.append(transport)
    streams = list(zip(transports, targets, strict=True))
    groups = [streams[i :: args.slices] for i in range(args.slices)]
    step = args.ptime / args.slices
    ticks = int(args.duration / args.ptime) * args.slices
    sent = [0]
    done = asyncio.Event()
    start = loop.time() + 0.05

    def tick(n: int) -> None:
        seq, group = divmod(n, args.slices)
        for ssrc, (transport, target) in enumerate(groups[group]):
            pkt = HEADER.pack(0x80, 0, seq & 0xFFFF, seq * 160, ssrc, time.monotonic_ns()) + FILLER
            transport.sendto(pkt, target)
        sent[0] += len(groups[group])
        if n + 1 < ticks:
            loop.call_at(start + (n + 1) * step, tick, n + 1)
        else:
            done.set()

    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    loop.call_at(start, tick, 0)
    await asyncio.wait_for(done.wait(), args.duration * 3 + 10)
    wall = time.monotonic() - t0
    cpu = {name: 100.0 * (cpu_seconds(pid) - cpu0[name]) / wall for name, pid in pids.items()}
    receiver.target = sent[0]
    if receiver.count < sent[0]:
        with contextlib.suppress(TimeoutError):  # bounded drain of packets still in flight
            await asyncio.wait_for(receiver.all_in.wait(), 1.0)
    for transport in transports:
        transport.close()
    return {"sent": sent[0], "received": receiver.count, "delays": receiver.delays, "cpu": cpu}


def run_once(calls: int, workers: int | None, args: argparse.Namespace) -> dict[str, Any]:
    """One run; `workers` None = direct (no relay)."""
    socks = bind_generators(calls)
    pairs = [(socks[2 * i], socks[2 * i + 1]) for i in range(calls)]
    pids = {"generator": os.getpid()}
    proc = None
    if workers is None:
        targets = []
        for a, b in pairs:
            targets += [b.getsockname(), a.getsockname()]
        result = uvloop.run(generate(socks, targets, args, pids))
        result["relay"] = {"relayed": result["received"], "dropped": 0}
        return result
    parent, child = mp.get_context("spawn").Pipe()
    record = tempfile.mkdtemp(prefix="pbx-bench-") if args.record else None
    proc = mp.get_context("spawn").Process(
        target=daemon_main, args=(child, workers, args.low, args.high, args.busy, record),
        daemon=True,
    )  # fmt: skip
    proc.start()
    try:
        parent.send([(a.getsockname()[1], b.getsockname()[1]) for a, b in pairs])
        daemon_pid, worker_pids, ports = parent.recv()
        pids["daemon"] = daemon_pid
        for i, pid in enumerate(worker_pids):
            pids[f"worker{i}"] = pid
        targets = []
        for inbound, outbound in ports:
            targets += [(HOST, inbound), (HOST, outbound)]
        result = uvloop.run(generate(socks, targets, args, pids))
        parent.send("stop")
        result["relay"] = parent.recv()
    finally:
        proc.join(timeout=15)
        if proc.is_alive():
            proc.terminate()
            proc.join(timeout=5)
        if record is not None:
            shutil.rmtree(record, ignore_errors=True)
    return result


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6


def report(calls: int, workers: int | None, result: dict[str, Any]) -> None:
    sent, received = result["sent"], result["received"]
    delays = sorted(result["delays"])
    under = sum(1 for d in delays if d < 20_000_000)
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    mode = "direct" if workers is None else f"{workers} worker(s)" if workers else "in-process"
    cpu = " ".join(f"{name}={pct:.0f}%" for name, pct in result["cpu"].items())
    print(
        f"calls={calls:4d} {mode:12s} loss={loss:.3f}% "
        f"delay p50={percentile(delays, 0.5):.2f} p99={percentile(delays, 0.99):.2f} "
        f"p99.9={percentile(delays, 0.999):.2f} max={percentile(delays, 1.0):.1f} ms "
        f"<20ms={100.0 * under / len(delays) if delays else 0.0:.2f}% | CPU {cpu} "
        f"| relay dropped={result['relay']['dropped']}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="200,500", help="comma-separated concurrent calls")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated; 0 = in-process")
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--ptime", type=float, default=0.02)
    parser.add_argument("--slices", type=int, default=10, help="send groups per ptime")
    parser.add_argument("--ports", default="50000-53999", help="relay RTP port range LOW-HIGH")
    parser.add_argument("--direct", action="store_true", help="add a no-relay baseline run")
    parser.add_argument("--record", action="store_true", help="every session records a WAV")
    parser.add_argument(
        "--busy", type=float, default=0.0,
        help="share (0..0.9) of the daemon's loop held by fake signalling work, in 5 ms pieces",
    )  # fmt: skip
    args = parser.parse_args()
    args.low, args.high = (int(p) for p in args.ports.split("-"))
    if not 0 < args.duration <= 60:
        parser.error("--duration must be in (0, 60] seconds")
    if not 0 <= args.busy <= 0.9:
        parser.error("--busy must be in [0, 0.9]")
    raise_nofile()
    modes: list[int | None] = [None] if args.direct else []
    modes += [int(w) for w in args.workers.split(",")]
    print(
        f"duration={args.duration}s ptime={args.ptime * 1000:.0f}ms cores={os.cpu_count()} "
        f"daemon busy={args.busy:.0%} record={args.record} load average={os.getloadavg()[0]:.1f}"
    )
    for calls in (int(c) for c in args.calls.split(",")):
        for workers in modes:
            report(calls, workers, run_once(calls, workers, args))


if __name__ == "__main__":
    main()
