"""Benchmark: call setup time while the visitor API is flooded (issue 16, point 4).

One real `pbx serve` (uvloop, temporary SQLite file, provisioned like
`bench/load.py` plus an onsite source "Web" with a pool of `--pool`
numbers and a fallback number). The same sipp call load (`--cps` calls per
second for `--seconds`, 1 s hold, media anchored, no RTP) runs twice on the
same daemon, `--rounds` times alternating (the box may be shared: pairs run
back to back):

1. alone;
2. while a flood process (uvloop + aiohttp, its own process) sends
   `--rps` visitor API requests per second to the daemon's HTTP listener:
   70 % pings of a known visitor, 20 % new visits (the pool runs out and
   the rest get the fallback: the exhausted path with its counter and
   once-a-minute log line), 10 % `GET /swap.js` with `If-None-Match` (304).
   Visitors come from distinct addresses (X-Forwarded-For from 198.18.0.0/15,
   RFC 2544's benchmark range; the daemon trusts 127.0.0.1 as its proxy), so
   per-address limits do not turn the flood into cheap 429s. At most
   `MAX_IN_FLIGHT` requests are outstanding; a request that would exceed it
   is not sent (counted as `skipped`).

Prints, per run: calls ok/failed, INVITE->200 p50/p99 (sipp's -trace_rtt),
daemon CPU %, and for the flood the achieved requests/s (answers received
over the call window), statuses and visitor-request p50/p99. Everything
stays on 127.0.0.1, is bounded in count and time, and every process is
ended by its PID. Asserts nothing.

    python bench/visitors.py                     # 50 CPS x 10 s, 500 req/s, 2 rounds
    python bench/visitors.py --cps 80 --rps 1000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import multiprocessing as mp
import os
import random
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import (
    DID,
    HOST,
    Daemon,
    achieved_rate,
    as_int,
    caller_args,
    cpu_seconds,
    end_process,
    free_port,
    load_average,
    machine,
    percentile,
    raise_nofile,
    sipp_rtts,
    sipp_stats,
    start_callee,
    start_sipp,
    wait_process,
    write_injection,
)

from pbx.store import Source, TrackingNumber
from pbx.store.connect import open_store

MAX_IN_FLIGHT = 128  # visitor requests outstanding at once
FALLBACK = "+12125550199"
HOLD_MS = 1000


class VisitorDaemon(Daemon):
    """`load.Daemon` plus an onsite source with a number pool."""

    pool: int = 50

    async def _provision(self) -> None:
        await super()._provision()
        async with await open_store(self.db) as store:
            await store.sources.add(Source(name="Web", onsite=True, landing="gclid=",
                                           position=1, fallback_number=FALLBACK))  # fmt: skip
            for n in range(self.pool):
                await store.numbers.add(TrackingNumber(
                    number=f"+1212555{1000 + n:04d}", source="Web", trunk="carrier",
                    destinations=("office",),
                ))  # fmt: skip


# -- the flood (its own process) ---------------------------------------------------------


def _address(n: int) -> str:
    return f"198.{18 + (n >> 16) % 2}.{(n >> 8) % 256}.{n % 256}"


async def _flood(conn: Connection, port: int, rps: float, seconds: float) -> dict[str, Any]:
    import aiohttp

    base = f"http://{HOST}:{port}"
    rng = random.Random(16)
    visitors: list[int] = []
    statuses: collections.Counter[str] = collections.Counter()
    latencies: list[float] = []
    done_at: list[float] = []
    in_flight = 0
    skipped = 0
    etag = ""
    loop = asyncio.get_running_loop()

    async def one(session: aiohttp.ClientSession, kind: str, n: int) -> None:
        nonlocal in_flight, etag
        start = loop.time()
        try:
            if kind == "swap":
                headers = {"If-None-Match": etag} if etag else {}
                async with session.get(f"{base}/swap.js", headers=headers) as r:
                    await r.read()
                    etag = r.headers.get("ETag", etag)
            else:
                body = {"visitor_id": f"bench{n:08d}", "numbers": [DID],
                        "landing_url": f"https://www.example.com/?gclid=g{n}"}  # fmt: skip
                headers = {"X-Forwarded-For": _address(n)}
                async with session.post(f"{base}/v1/visits", json=body, headers=headers) as r:
                    await r.read()
            statuses[f"{kind} {r.status}"] += 1
            latencies.append((loop.time() - start) * 1000.0)
            done_at.append(loop.time())
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            statuses[f"{kind} {type(exc).__name__}"] += 1
        finally:
            in_flight -= 1

    timeout = aiohttp.ClientTimeout(total=10)
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        t0 = loop.time()
        conn.send("ready")  # the parent's call window is timed from here
        for i in range(int(rps * seconds)):
            delay = t0 + i / rps - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= MAX_IN_FLIGHT:
                skipped += 1
                continue
            roll = rng.random()
            if roll < 0.1:
                kind, n = "swap", 0
            elif roll < 0.3 or not visitors:
                kind, n = "new", len(visitors)
                visitors.append(n)
            else:
                kind, n = "ping", rng.choice(visitors)
            in_flight += 1
            task = asyncio.create_task(one(session, kind, n))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(set(tasks), timeout=10)
        t1 = loop.time()
    return {"statuses": dict(statuses), "latencies": latencies, "skipped": skipped,
            "done_at": [d - t0 for d in done_at], "wall": t1 - t0}  # fmt: skip


def _flood_main(conn: Connection, port: int, rps: float, seconds: float) -> None:
    import uvloop

    conn.send(uvloop.run(_flood(conn, port, rps, seconds)))
    conn.close()


# -- one run of the call load ------------------------------------------------------------


async def call_run(
    daemon: Daemon, workdir: Path, name: str, args: argparse.Namespace
) -> dict[str, Any]:
    calls = int(args.cps * args.seconds)
    sdir = workdir / name
    sdir.mkdir(parents=True)
    inf = write_injection(sdir / "caller.csv", [9])
    timeout = args.seconds + HOLD_MS / 1000 + 30
    c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
    proc = await start_sipp(
        sdir, "load_caller.xml", free_port(),
        [f"{HOST}:{daemon.sip_port}", *caller_args(inf, args.cps, calls, HOLD_MS, timeout)],
        logs=False,
    )  # fmt: skip
    try:
        code = await wait_process(proc, timeout + 10)
    finally:
        end_process(proc)
    setup_end = time.monotonic()
    c1 = cpu_seconds(daemon.pid)
    await daemon.wait_idle()
    stats, rtts = sipp_stats(sdir), sipp_rtts(sdir)
    ok = as_int(stats, "SuccessfulCall(C)")
    return {
        "name": name, "ok": ok, "failed": calls - ok, "exit": code,
        "achieved": achieved_rate(rtts), "rtt": [r for _, r in rtts],
        "cpu": 100.0 * (c1 - c0) / max(1e-9, setup_end - t0), "window": setup_end - t0,
        "load": load_average(),
    }  # fmt: skip


def _line(run: dict[str, Any]) -> str:
    rtt = run["rtt"]
    return (f"{run['name']:>12} {run['ok']:>5} {run['failed']:>6} {run['achieved']:>8.1f} "
            f"{percentile(rtt, 0.5):>7.1f} {percentile(rtt, 0.99):>7.1f} "
            f"{max(rtt, default=float('nan')):>7.1f} {run['cpu']:>6.1f}  "
            f"{run['load']}")  # fmt: skip


async def metric(daemon: Daemon, name: str) -> str:
    reader, writer = await asyncio.open_connection(HOST, daemon.http_port)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    lines = [x for x in raw.decode(errors="replace").splitlines() if x.startswith(name)]
    return "; ".join(lines) or f"{name}: none"


async def flooded_run(
    daemon: Daemon, workdir: Path, name: str, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The call load while the flood process runs; (call run, flood result)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    flood_seconds = args.seconds + 4.0  # covers the call window (and the hold) with margin
    flood = ctx.Process(target=_flood_main, args=(child, daemon.http_port, args.rps,
                                                  flood_seconds), daemon=True)  # fmt: skip
    flood.start()
    try:
        ready = await asyncio.get_running_loop().run_in_executor(None, parent.poll, 20.0)
        if not ready:
            raise RuntimeError("the flood process did not start")
        parent.recv()
        await asyncio.sleep(0.5)  # the flood reaches its rate before the calls start
        spy = None
        if args.py_spy:  # sample the daemon during the flooded run (collapsed stacks)
            spy = await asyncio.create_subprocess_exec(
                "py-spy", "record", "-p", str(daemon.pid), "-d", str(int(args.seconds)),
                "-r", "200", "-f", "raw", "-o", args.py_spy,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        run = await call_run(daemon, workdir, name, args)
        if spy is not None:
            await wait_process(spy, 15)
        got = await asyncio.get_running_loop().run_in_executor(None, parent.poll, 30.0)
        result: dict[str, Any] = parent.recv() if got else {}
    finally:
        if flood.is_alive() and flood.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(flood.pid, 9)
        flood.join(5)
    done = [d for d in result.get("done_at", []) if 0.5 <= d <= 0.5 + run["window"]]
    result["rate"] = len(done) / max(1e-9, run["window"])
    return run, result


def _flood_line(result: dict[str, Any], rps: float) -> str:
    lat = result.get("latencies", [])
    return (f"  flood: {result.get('rate', 0):.1f} req/s answered during the call window "
            f"({rps:g} offered), {len(lat)} answers in {result.get('wall', 0):.1f} s, "
            f"skipped {result.get('skipped', 0)}, request p50/p99 "
            f"{percentile(lat, 0.5):.1f}/{percentile(lat, 0.99):.1f} ms; "
            f"{dict(sorted(result.get('statuses', {}).items()))}")  # fmt: skip


async def main(args: argparse.Namespace) -> None:
    raise_nofile()
    print(machine())
    os.environ["PBX_HTTP_TRUSTED_PROXIES"] = "127.0.0.1/32"  # the flood's X-Forwarded-For
    with tempfile.TemporaryDirectory(prefix="pbx-bench-visitors-") as tmp:
        workdir = Path(tmp)
        callee, callee_port = await start_callee(workdir, [9], logs=False)
        daemon = VisitorDaemon(workdir, callee_port, args.rtp_ports, "info")
        daemon.pool = args.pool
        try:
            await daemon.start()
            print(f"daemon pid={daemon.pid}; calls: {args.cps} CPS x {args.seconds:g} s, "
                  f"hold {HOLD_MS} ms; flood: {args.rps:g} req/s, pool {args.pool}; "
                  f"{args.rounds} round(s), alone and flooded alternating")  # fmt: skip
            print("         run    ok failed achieved rtt_p50 rtt_p99 rtt_max  cpu%  load(1/5/15)")
            pooled: dict[str, list[float]] = {"alone": [], "with flood": []}
            rates: list[float] = []
            for n in range(args.rounds):
                alone = await call_run(daemon, workdir, f"alone{n}", args)
                print(_line(alone), flush=True)
                flooded, result = await flooded_run(daemon, workdir, f"flood{n}", args)
                print(_line(flooded), flush=True)
                print(_flood_line(result, args.rps), flush=True)
                pooled["alone"] += alone["rtt"]
                pooled["with flood"] += flooded["rtt"]
                rates.append(result["rate"])
            for name, rtt in pooled.items():
                print(f"RESULT {name}: INVITE->200 p50 {percentile(rtt, 0.5):.0f} ms, "
                      f"p99 {percentile(rtt, 0.99):.0f} ms over {len(rtt)} calls")  # fmt: skip
            print(f"RESULT flood answered {min(rates):.0f}-{max(rates):.0f} req/s")
            print(await metric(daemon, "pbx_pool_exhausted_total"))
            exhausted = (workdir / "daemon.log").read_text(errors="replace").count("pool.exhausted")
            print(f"pool.exhausted log lines: {exhausted}; daemon warnings/errors logged: "
                  f"{daemon.log_problems()}")  # fmt: skip
        finally:
            await daemon.stop()
            end_process(callee)
            await wait_process(callee, 5)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cps", type=int, default=50, help="calls per second (sipp)")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each call run")
    p.add_argument("--rps", type=float, default=500.0, help="visitor requests per second")
    p.add_argument("--pool", type=int, default=50, help="numbers in the onsite source's pool")
    p.add_argument("--rounds", type=int, default=2, help="alone/flooded pairs, alternating")
    p.add_argument("--py-spy", metavar="FILE", help="py-spy the daemon under the flood")
    p.add_argument("--rtp-ports", default="42000-43999", help="the daemon's RTP range")
    return p.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
