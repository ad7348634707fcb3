"""Benchmark: what recording costs (prints figures, asserts nothing).

Runs the relay benchmark's set-up (bench/relay.py: the relay in its own
process, N calls of paced 20 ms PCMU-sized RTP both ways on loopback) twice
per call count, without and with every session recording to a stereo WAV
(`MediaSession.start_recording`), and prints:
- CPU per call (relay process CPU seconds / call / second of audio) and
  per relayed packet, unrecorded vs recorded;
- loss for each run, and the largest call count of the ladder whose
  recorded run lost < 0.1 % of packets;
- disk bytes per recorded minute (measured from the files written).

    python bench/recording.py --calls 50,100,200 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import relay as relay_bench  # bench/relay.py: generator, receiver, helpers

from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaRelay

HOST = "127.0.0.1"


def relay_main(conn: Connection, low: int, high: int, record_dir: str | None) -> None:
    relay_bench.raise_nofile()
    loop_name = relay_bench.use_uvloop("auto")
    asyncio.run(relay_serve(conn, low, high, loop_name, record_dir))


async def relay_serve(
    conn: Connection, low: int, high: int, loop_name: str, record_dir: str | None
) -> None:
    loop = asyncio.get_running_loop()
    gen_ports: list[tuple[int, int]] = conn.recv()
    relay = MediaRelay(PortPairAllocator(low, high, 0.0), HOST, media_timeout=3600.0)
    sessions = []
    for i, (caller_port, callee_port) in enumerate(gen_ports):
        session = await relay.open_session(f"bench-{i}")
        session.set_remote("inbound", HOST, caller_port)
        session.set_remote("outbound", HOST, callee_port)
        if record_dir is not None:
            session.start_recording(str(Path(record_dir) / f"bench-{i}.wav"))
        sessions.append(session)
    conn.send((loop_name, [(s.port("inbound"), s.port("outbound")) for s in sessions]))
    await loop.run_in_executor(None, conn.recv)  # "start"
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    results = [s.stop_recording() for s in sessions]
    stats = relay.close()
    relayed = sum(s.inbound.packets + s.outbound.packets for s in stats)
    written = [r for r in results if r is not None]
    conn.send({
        "cpu": cpu, "wall": t1 - t0, "relayed": relayed,
        "bytes": sum(r.bytes for r in written), "seconds": sum(r.seconds for r in written),
        "errors": sum(1 for r in written if r.error),
    })  # fmt: skip


def run_once(calls: int, args: argparse.Namespace, record_dir: str | None) -> dict[str, Any]:
    low, high = (int(p) for p in args.ports.split("-"))
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(
        target=relay_main, args=(child, low, high, record_dir), daemon=True
    )
    proc.start()
    try:
        socks = relay_bench.bind_generators(calls)
        parent.send([(socks[2 * i].getsockname()[1], socks[2 * i + 1].getsockname()[1])
                     for i in range(calls)])  # fmt: skip
        _, relay_ports = parent.recv()
        targets = []
        for inbound, outbound in relay_ports:
            targets += [(HOST, inbound), (HOST, outbound)]
        gen_args = argparse.Namespace(duration=args.duration, ptime=0.02, slices=10)
        gen = asyncio.run(relay_bench.generate(socks, targets, gen_args, parent))
        relay = parent.recv()
    finally:
        proc.join(timeout=20)
        if proc.is_alive():
            proc.terminate()
    sent, received = gen["sent"], gen["received"]
    relay["loss"] = 100.0 * (sent - received) / sent if sent else 0.0
    relay["calls"] = calls
    return relay


def line(kind: str, r: dict[str, Any], duration: float) -> str:
    per_call = 1e3 * r["cpu"] / r["calls"] / duration  # ms CPU per call per audio second
    per_packet = 1e6 * r["cpu"] / r["relayed"] if r["relayed"] else float("nan")
    return (
        f"  {kind:10} CPU {100 * r['cpu'] / r['wall']:5.1f}% of a core, "
        f"{per_call:.3f} ms CPU per call-second ({100 * per_call / 1000:.3f}% of a core per call), "
        f"{per_packet:.1f} us/packet, loss {r['loss']:.3f}%"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="50,100,200", help="comma-separated ladder")
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--ports", default="40000-49999", help="relay RTP port range LOW-HIGH")
    parser.add_argument("--dir", help="where to write recordings (default: a temp dir)")
    args = parser.parse_args()
    relay_bench.raise_nofile()
    best = 0
    per_minute: list[float] = []
    for calls in (int(c) for c in args.calls.split(",")):
        folder = Path(args.dir or tempfile.mkdtemp(prefix="pbx-rec-bench-"))
        folder.mkdir(parents=True, exist_ok=True)
        try:
            plain = run_once(calls, args, None)
            recorded = run_once(calls, args, str(folder))
        finally:
            if args.dir is None:
                shutil.rmtree(folder, ignore_errors=True)
        print(f"calls={calls} duration={args.duration}s")
        print(line("unrecorded", plain, args.duration))
        print(line("recorded", recorded, args.duration))
        extra = (recorded["cpu"] - plain["cpu"]) / calls / args.duration * 1e3
        print(f"  recording adds {extra:.3f} ms CPU per call-second; "
              f"write errors {recorded['errors']}")  # fmt: skip
        if recorded["seconds"]:
            per_minute.append(recorded["bytes"] / recorded["seconds"] * 60)
        if recorded["loss"] < 0.1:
            best = max(best, calls)
    if per_minute:
        print(f"disk: {per_minute[-1]:.0f} bytes per recorded minute (8 kHz stereo 16-bit WAV)")
    print(f"largest recorded call count with < 0.1% loss: {best or 'none of the ladder'}")


if __name__ == "__main__":
    main()
