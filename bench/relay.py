"""Benchmark: N concurrent calls of paced G.711-sized RTP through MediaRelay on loopback.

The relay runs in its own process (uvloop when installed) so it does not
share an event loop, or a core, with the generators. The generator process
binds two sockets per call (caller side and callee side), both sending one
172-byte packet every 20 ms (12-byte RTP header + 160 bytes of PCMU) for
`--duration` seconds, spread over the 20 ms in `--slices` groups. Each
payload starts with the send time (CLOCK_MONOTONIC ns, shared by both
processes), so the receiver also reports one-way latency through the relay
(including the generator's own delays). Prints figures; asserts nothing.

    python bench/relay.py --calls 200 --duration 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import resource
import socket
import statistics
import struct
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pbx.rtp.ports import PortPairAllocator
from pbx.rtp.relay import MediaRelay

HOST = "127.0.0.1"
HEADER = struct.Struct("!BBHIIQ")  # RTP fixed header + 8-byte send stamp in the payload
PAYLOAD = 160  # 20 ms of G.711 at 8 kHz
FILLER = b"\xff" * (PAYLOAD - 8)
GEN_RCVBUF = 4 * 1024 * 1024  # generous on the generator side: loss should be the relay's


def use_uvloop(kind: str) -> str:
    if kind == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"


def raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# -- relay process -------------------------------------------------------------


def relay_main(conn: Connection, low: int, high: int, loop_kind: str) -> None:
    raise_nofile()
    used = use_uvloop(loop_kind)
    asyncio.run(relay_serve(conn, low, high, used))


async def relay_serve(conn: Connection, low: int, high: int, loop_name: str) -> None:
    loop = asyncio.get_running_loop()
    gen_ports: list[tuple[int, int]] = conn.recv()
    relay = MediaRelay(PortPairAllocator(low, high, 0.0), HOST, media_timeout=3600.0)
    sessions = []
    for i, (caller_port, callee_port) in enumerate(gen_ports):
        session = await relay.open_session(f"bench-{i}")
        session.set_remote("inbound", HOST, caller_port)
        session.set_remote("outbound", HOST, callee_port)
        sessions.append(session)
    conn.send((loop_name, [(s.port("inbound"), s.port("outbound")) for s in sessions]))
    await loop.run_in_executor(None, conn.recv)  # "start"
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    stats = relay.close()
    relayed = sum(s.inbound.packets + s.outbound.packets for s in stats)
    dropped = sum(s.inbound.dropped + s.outbound.dropped for s in stats)
    conn.send({"cpu": cpu, "wall": t1 - t0, "relayed": relayed, "dropped": dropped,
               "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime})


# -- generator (this process) --------------------------------------------------


@dataclass
class Receiver(asyncio.DatagramProtocol):
    counts: list[int]
    latencies: list[int] = field(default_factory=list)
    all_in: asyncio.Event = field(default_factory=asyncio.Event)
    target: int = -1

    def expect(self, total: int) -> None:
        self.target = total
        if self.counts[0] >= total:
            self.all_in.set()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counts[0] += 1
        if len(data) >= HEADER.size and data[3] & 7 == 0:  # sample 1 packet in 8
            self.latencies.append(time.monotonic_ns() - HEADER.unpack_from(data)[5])
        if self.counts[0] == self.target:
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
    conn: Connection,
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    receiver = Receiver([0])
    transports = []
    for sock in socks:
        transport, _ = await loop.create_datagram_endpoint(lambda: receiver, sock=sock)
        transports.append(transport)
    streams = list(zip(transports, targets, strict=True))
    groups = [streams[i :: args.slices] for i in range(args.slices)]
    step = args.ptime / args.slices
    ticks = int(args.duration / args.ptime)
    sent = [0]
    done = asyncio.Event()
    start = loop.time() + 0.05

    def tick(n: int) -> None:
        seq, group = divmod(n, args.slices)
        for ssrc, (transport, target) in enumerate(groups[group]):
            stamp = time.monotonic_ns()
            pkt = HEADER.pack(0x80, 0, seq & 0xFFFF, seq * 160, ssrc, stamp) + FILLER
            transport.sendto(pkt, target)
        sent[0] += len(groups[group])
        if n + 1 < ticks * args.slices:
            loop.call_at(start + (n + 1) * step, tick, n + 1)
        else:
            done.set()

    conn.send("start")
    loop.call_at(start, tick, 0)
    await asyncio.wait_for(done.wait(), args.duration * 3 + 10)
    conn.send("stop")  # the relay's CPU window is the sending window
    send_time = loop.time() - start
    receiver.expect(sent[0])
    with contextlib.suppress(TimeoutError):  # bounded drain of packets still in flight
        await asyncio.wait_for(receiver.all_in.wait(), 1.0)
    for transport in transports:
        transport.close()
    return {
        "sent": sent[0],
        "received": receiver.counts[0],
        "latencies": receiver.latencies,
        "send_time": send_time,
    }


def percentile(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    values.sort()
    return values[min(len(values) - 1, int(q * len(values)))] / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--ptime", type=float, default=0.02)
    parser.add_argument("--slices", type=int, default=10, help="send groups per ptime")
    parser.add_argument("--ports", default="40000-49999", help="relay RTP port range LOW-HIGH")
    parser.add_argument("--loop", choices=["auto", "asyncio"], default="auto")
    args = parser.parse_args()
    low, high = (int(p) for p in args.ports.split("-"))
    raise_nofile()

    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(
        target=relay_main, args=(child, low, high, args.loop), daemon=True
    )
    proc.start()
    try:
        socks = bind_generators(args.calls)
        parent.send(
            [
                (socks[2 * i].getsockname()[1], socks[2 * i + 1].getsockname()[1])
                for i in range(args.calls)
            ]
        )
        relay_loop, relay_ports = parent.recv()
        targets = []
        for inbound, outbound in relay_ports:
            targets += [(HOST, inbound), (HOST, outbound)]
        gen_loop = use_uvloop(args.loop)
        result = asyncio.run(generate(socks, targets, args, parent))
        relay = parent.recv()
    finally:
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
    report(args, relay_loop, gen_loop, result, relay)


def report(
    args: argparse.Namespace,
    relay_loop: str,
    gen_loop: str,
    gen: dict[str, Any],
    relay: dict[str, Any],
) -> None:
    sent, received = gen["sent"], gen["received"]
    loss = 100.0 * (sent - received) / sent if sent else 0.0
    lat = gen["latencies"]
    print(
        f"calls={args.calls} duration={args.duration}s ptime={args.ptime * 1000:.0f}ms "
        f"relay loop={relay_loop} generator loop={gen_loop}"
    )
    print(
        f"sent={sent} received={received} relayed={relay['relayed']} "
        f"relay_dropped={relay['dropped']} loss={loss:.3f}%"
    )
    per_packet = 1e6 * relay["cpu"] / relay["relayed"] if relay["relayed"] else float("nan")
    print(f"generator pace: {gen['send_time']:.1f}s to send {args.duration:.1f}s of audio")
    print(
        f"relay: {relay['relayed'] / relay['wall']:.0f} packets/s, "
        f"CPU {100.0 * relay['cpu'] / relay['wall']:.1f}% of one core over {relay['wall']:.1f}s, "
        f"{per_packet:.1f} us CPU per relayed packet (~{1e6 / per_packet:.0f} packets/s per core; "
        f"user {1e6 * relay['user'] / max(relay['relayed'], 1):.1f} us, "
        f"kernel {1e6 * relay['sys'] / max(relay['relayed'], 1):.1f} us)"
    )
    print(
        f"latency through relay (incl. generator delays): p50={percentile(lat, 0.5):.2f}ms "
        f"p99={percentile(lat, 0.99):.2f}ms max={percentile(lat, 1.0):.2f}ms "
        f"mean={statistics.fmean(lat) / 1e6 if lat else float('nan'):.2f}ms"
    )


if __name__ == "__main__":
    main()
