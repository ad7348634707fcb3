"""Benchmark: calls per second through Kamailio with 1 and with 2 pbx nodes on one PostgreSQL.

The carrier is sipp on both sides (bench/scenarios/load_caller.xml and
load_callee.xml, as bench/load.py); Kamailio (config/kamailio/kamailio.cfg)
spreads the calls over the nodes; every node shares one throwaway PostgreSQL
cluster (tests/pg.py). For each node count, CPS steps of `--step-seconds`
until a step has failed calls or does not keep its rate. Prints figures;
asserts nothing. Everything runs on 127.0.0.1 and stops by itself.

    python bench/cluster.py [--nodes 1,2] [--rates 50,100,150,200] [--step-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.load import (  # noqa: E402
    DID,
    HOST,
    achieved_rate,
    as_int,
    caller_args,
    end_process,
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
from bench.load import free_port as bench_free_port  # noqa: E402
from pbx.store import Destination, Source, Store, TrackingNumber, Trunk  # noqa: E402
from tests import pg  # noqa: E402
from tests.e2e.daemon import DaemonProcess, provision  # noqa: E402
from tests.e2e.test_cluster import Kamailio  # noqa: E402

OFFICE = "+14155550101"


async def _provision(url: str, front_port: int) -> None:
    async def rows(store: Store) -> None:
        await store.trunks.add(
            Trunk(name="front", host=HOST, port=front_port, allow=(f"{HOST}/32",))
        )
        await store.destinations.add(Destination(name="office", target=OFFICE, kind="number"))
        await store.sources.add(Source(name="Radio", tag="radio"))
        await store.numbers.add(
            TrackingNumber(number=DID, source="Radio", destinations=("office",), trunk="front")
        )

    await provision(url, rows)


async def _step(front_port: int, workdir: Path, rate: int, seconds: float) -> tuple[str, bool]:
    calls = int(rate * seconds)
    sdir = workdir / f"cps{rate}"
    sdir.mkdir(parents=True)
    inf = write_injection(sdir / "caller.csv", [9])
    timeout = seconds + 31
    t0 = time.monotonic()
    proc = await start_sipp(
        sdir, "load_caller.xml", bench_free_port(),
        [f"{HOST}:{front_port}", *caller_args(inf, rate, calls, 1000, timeout)], logs=False,
    )  # fmt: skip
    code = await wait_process(proc, timeout + 10)
    stats, rtts = sipp_stats(sdir), sipp_rtts(sdir)
    ok = as_int(stats, "SuccessfulCall(C)")
    failed = calls - ok
    achieved = achieved_rate(rtts)
    rtt = [r for _, r in rtts]
    p50, p99 = percentile(rtt, 0.5), percentile(rtt, 0.99)
    line = (f"{rate:>6} {achieved:>8.1f} {ok:>6} {failed:>6} {p50:>8.1f} {p99:>8.1f}"
            f"  {time.monotonic() - t0:>5.1f}s  {load_average()}")  # fmt: skip
    return line, failed == 0 and code == 0 and achieved >= 0.95 * rate


async def run_nodes(count: int, rates: list[int], seconds: float, cluster: pg.Cluster) -> int:
    url = cluster.url(cluster.fresh_db())
    work = Path(tempfile.mkdtemp(prefix=f"pbx-cluster{count}-"))
    front_port = bench_free_port()
    await _provision(url, front_port)
    callee, callee_port = await start_callee(work, [9], logs=False)
    nodes = [DaemonProcess(work / f"n{i}", url, env={"PBX_NODE_ID": f"n{i}",
                           "PBX_LOG_LEVEL": "warning"}) for i in range(count)]  # fmt: skip
    for i, node in enumerate(nodes):  # 1,000 calls' worth of RTP ports each, apart
        node.rtp_low, node.rtp_high = 30000 + 4000 * i, 30000 + 4000 * i + 3999
    front: Kamailio | None = None
    best = 0
    try:
        for node in nodes:
            node.workdir.mkdir()
            await node.start()
        front = Kamailio(work, front_port, [n.sip_port for n in nodes], callee_port)
        await front.start()
        print(f"\n== {count} node(s) behind Kamailio, {seconds:g} s per step, hold 1000 ms ==")
        print("  rate achieved     ok failed  rtt_p50  rtt_p99  took    load(1/5/15)")
        for rate in rates:
            line, clean = await _step(front_port, work, rate, seconds)
            print(line, flush=True)
            if not clean:
                break
            best = rate
    finally:
        if front is not None:
            await front.stop()
        for node in nodes:
            await node.stop()
        end_process(callee)
        await wait_process(callee, 5)
    print(f"RESULT {count} node(s): highest CPS with 0 failed calls: {best}")
    return best


async def main_async(args: argparse.Namespace) -> None:
    print(machine())
    cluster = pg.Cluster.start()
    try:
        cluster.create_template()
        for count in args.nodes:
            await run_nodes(count, args.rates, args.step_seconds, cluster)
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    parser.add_argument(
        "--rates", type=lambda s: [int(x) for x in s.split(",")], default=[50, 100, 150, 200]
    )
    parser.add_argument("--step-seconds", type=float, default=10.0)
    raise_nofile()
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
