"""Benchmark: per-call store writes on SQLite vs PostgreSQL (throwaway cluster).

One call = the three writes the runner makes: `calls.insert` (ringing),
`calls.update` (answered), `calls.finish` (final row + one webhook outbox
item, one transaction). `--calls` calls run with `--concurrency` of them in
flight at once (each call's writes in order, as one runner awaits them).
Per backend and concurrency: calls/s (wall clock) and the mean and p99 ms
of one call's three writes.

Backends: SQLite (a temporary file, the store's WAL + synchronous=NORMAL,
group commit); PostgreSQL 15 on a throwaway cluster (tests/pg.py) started
with the server's defaults (fsync on), once with synchronous_commit=on
(each COMMIT waits for its WAL fsync) and once with synchronous_commit=off
(the closer match to SQLite's synchronous=NORMAL: a crash may lose the last
moments, never corrupts), over the unix socket, pool of `--pool` (default
4, the store's default).

Bounded: at most 20000 calls per run, each run under `--timeout` seconds;
the cluster is stopped (its PID via pg_ctl) and removed at the end. Prints
figures; asserts nothing.

    python bench/store.py                      # 2000 calls at 1 and 32 in flight
    python bench/store.py --calls 5000 --concurrency 1,8,64 --pool 16
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pbx.records import CallRecord, Disposition  # noqa: E402
from pbx.store import OutboxItem, Store  # noqa: E402
from pbx.store.connect import open_store  # noqa: E402
from pbx.store.postgres.store import open_postgres  # noqa: E402
from tests import pg  # noqa: E402

MAX_CALLS = 20_000
T0 = "2024-05-01T10:00:00.000000Z"
T1 = "2024-05-01T10:00:05.000000Z"
T2 = "2024-05-01T10:01:00.000000Z"


def _record(n: int) -> CallRecord:
    return CallRecord(
        id=f"call-{n:08d}",
        inbound_call_id=f"in-{n}@192.0.2.10",
        started_at=T0,
        caller="+14155550102",
        tracking_number="+12125550123",
        source="google",
    )


_ITEM = OutboxItem(kind="webhook", payload='{"event":"call"}', target_url="https://h.example/x")


async def _one_call(store: Store, n: int) -> float:
    start = time.perf_counter()
    ringing = _record(n)
    await store.calls.insert(ringing)
    answered = replace(ringing, answered_at=T1, disposition=Disposition.ANSWERED)
    await store.calls.update(answered, ringing)
    final = replace(answered, ended_at=T2, hangup_by="caller", talk_seconds=55.0)
    await store.calls.finish(final, [_ITEM])
    return time.perf_counter() - start


async def _run(
    store: Store, calls: int, concurrency: int, first: int
) -> tuple[float, float, list[float]]:
    queue = iter(range(first, first + calls))
    took: list[float] = []

    async def worker() -> None:
        for n in queue:
            took.append(await _one_call(store, n))

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, time.process_time() - cpu, took


def _line(name: str, concurrency: int, wall: float, cpu: float, took: list[float]) -> str:
    ms = sorted(t * 1000 for t in took)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    return (
        f"{name:<28} in_flight={concurrency:<3} calls={len(took):<6} "
        f"calls/s={len(took) / wall:8.0f}  ms/call mean={statistics.fmean(ms):6.2f} "
        f"p99={p99:6.2f}  cpu ms/call={cpu * 1000 / len(took):5.2f}"
    )


async def _bench(name: str, opener: object, args: argparse.Namespace) -> None:
    first = 0
    for concurrency in args.concurrency:
        store: Store = await opener()  # type: ignore[operator]
        try:
            await _run(store, min(50, args.calls), concurrency, 10**7 + first)  # warm up
            wall, cpu, took = await asyncio.wait_for(
                _run(store, args.calls, concurrency, first), args.timeout
            )
        finally:
            await store.close()
        first += args.calls
        print(_line(name, concurrency, wall, cpu, took), flush=True)


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pbx-bench-") as tmp:
        path = Path(tmp) / "pbx.sqlite3"
        await _bench("sqlite", lambda: open_store(path), args)
    if not args.postgres:
        return
    cluster = pg.Cluster.start(durable=True)
    try:
        on, off = cluster.fresh_db(empty=True), cluster.fresh_db(empty=True)
        cluster.psql(f"ALTER DATABASE {off} SET synchronous_commit = off")
        size = args.pool
        await _bench(
            f"postgres pool={size} sync=on",
            lambda: open_postgres(cluster.url(on), pool_size=size),
            args,
        )
        await _bench(
            f"postgres pool={size} sync=off",
            lambda: open_postgres(cluster.url(off), pool_size=size),
            args,
        )
    finally:
        cluster.stop()


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per run")
    parser.add_argument(
        "--pool", type=int, default=4, help="PostgreSQL pool size (store default 4)"
    )
    parser.add_argument(
        "--no-postgres", dest="postgres", action="store_false", help="SQLite only"
    )
    args = parser.parse_args()
    args.calls = max(1, min(MAX_CALLS, args.calls))
    args.concurrency = [max(1, int(c)) for c in args.concurrency.split(",")]
    args.pool = max(1, min(32, args.pool))
    return args


if __name__ == "__main__":
    asyncio.run(main(_parse()))
