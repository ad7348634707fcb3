"""Benchmark: dashboard and admin API over a big call log (prints figures, asserts nothing).

Run: `python bench/dashboard.py [--calls 1000000] [--db PATH] [--requests 40] [--postgres]`.

Fills a SQLite store (the real migrations, then the call rows written with
`executemany` straight into the file, with the migration's call indexes
and triggers dropped during the load and made again after, the per-day
counts filled the way the migration fills them: the same schema, built once)
with `--calls` records spread over the last 365 days (8 sources, 40
tracking numbers, 20,000 callers), starts the admin app on 127.0.0.1 and
times `--requests` requests per route (after 3 warm-ups, the first
request's time is printed too: caches are cold then) through a real HTTP
client: the overview page, call log pages (first, deep in the log via
the keyset cursor, filtered by source, by caller prefix, by disposition and
date), a call's detail page and the main API routes. Prints p50 / p99 in ms
per route. `--db` reuses a file already filled with the same `--calls`.
`--postgres` then also copies that file into PostgreSQL 15 on a throwaway
cluster (tests/pg.py, the `pbx db migrate --to` code; its time is printed),
runs ANALYZE and times the same routes over it.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiohttp import ClientSession, CookieJar, web

from pbx.admin import users as admin_users
from pbx.http.admin.factory import make_admin_app
from pbx.records import FIELD_NAMES
from pbx.store.base import CallFilter, Destination, Source, TrackingNumber
from pbx.store.connect import open_store
from pbx.store.transfer import copy_sqlite_to
from tests import pg

SOURCES = ("google-ads", "bing", "facebook", "radio", "tv", "print", "direct", "yelp")
NUMBER_COUNT = 40
AREA_CODES = [201 + i for i in range(200)]
ADMIN = admin_users.Actor("cli:bench", "admin")
PASSWORD = "bench password"


def _numbers() -> list[str]:
    return [f"+1212555{100 + i:04d}" for i in range(NUMBER_COUNT)]


def _rows(count: int, now: dt.datetime, numbers: list[str]) -> Iterator[tuple[object, ...]]:
    rng = random.Random(14)
    span = 365 * 86400
    callers = [f"+1{a}5550{100 + n:03d}"[:12] for a in AREA_CODES for n in range(100)]
    index = {name: i for i, name in enumerate(FIELD_NAMES)}
    for i in range(count):
        start = now - dt.timedelta(seconds=span * (i + rng.random()) / count)
        answered = rng.random() < 0.7
        n = rng.randrange(len(numbers))
        row: list[object] = [None] * len(FIELD_NAMES)
        stamp = start.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        row[index["id"]] = f"{i:08x}{rng.getrandbits(96):024x}"
        row[index["inbound_call_id"]] = f"in{i}@192.0.2.10"
        row[index["started_at"]] = stamp
        row[index["caller"]] = rng.choice(callers)
        row[index["tracking_number"]] = numbers[n]
        row[index["source"]] = SOURCES[n % len(SOURCES)]
        row[index["destination"]] = "office"
        row[index["attempts"]] = json.dumps(
            [{"target": "+14155550101", "status": 200 if answered else 480}]
        )
        row[index["disposition"]] = "answered" if answered else rng.choice(("busy", "no-answer"))
        row[index["answered_at"]] = stamp if answered else None
        row[index["ended_at"]] = stamp
        for key, value in (
            ("ring_seconds", 5.0),
            ("talk_seconds", 60.0 if answered else 0.0),
            ("packets_in_out", 3000),
            ("packets_out_in", 3000),
            ("bytes_in_out", 516000),
            ("bytes_out_in", 516000),
        ):
            row[index[key]] = value
        yield tuple(row)


async def _provision(path: Path, numbers: list[str]) -> str:
    async with await open_store(path) as store:
        await store.destinations.add(
            Destination(name="office", target="+14155550101", kind="number")
        )
        for i, name in enumerate(SOURCES):
            cost = {"cost_per_call_cents": 1250} if i % 2 else {"monthly_budget_cents": 50000}
            await store.sources.add(Source(name=name, **cost))  # type: ignore[arg-type]
        for i, number in enumerate(numbers):
            await store.numbers.add(
                TrackingNumber(
                    number=number, source=SOURCES[i % len(SOURCES)], destinations=("office",)
                )
            )
        await admin_users.add_user(store, ADMIN, "ann", "admin", PASSWORD)
        _, token = await admin_users.add_token(store, ADMIN, "bench", "viewer")
    return token


def _fill(path: Path, count: int, numbers: list[str]) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    made = conn.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') "
        "AND tbl_name = 'calls' AND sql IS NOT NULL"
    ).fetchall()
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    for kind, name, _ in made:
        conn.execute(f"DROP {kind.upper()} {name}")
    marks = ", ".join("?" * len(FIELD_NAMES))
    sql = f"INSERT INTO calls ({', '.join(FIELD_NAMES)}) VALUES ({marks})"
    conn.executemany(sql, _rows(count, dt.datetime.now(dt.UTC), numbers))
    for _, _, create in made:
        conn.execute(create)
    conn.execute("DELETE FROM call_days")  # what the triggers would have counted
    conn.execute(
        "INSERT INTO call_days (day, source, calls, answered) SELECT substr(started_at, 1, 10), "
        "coalesce(source, ''), count(*), sum(answered_at IS NOT NULL) FROM calls GROUP BY 1, 2"
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def _deep_cursor(path: Path, offset: int) -> str:
    conn = sqlite3.connect(path)
    started, call_id = conn.execute(
        "SELECT started_at, id FROM calls ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET ?",
        (offset,),
    ).fetchone()
    conn.close()
    from pbx.http.admin.views import encode_cursor
    from pbx.records import CallRecord

    return encode_cursor(
        CallRecord(
            id=call_id, inbound_call_id="", started_at=started, caller="", tracking_number=""
        )
    )


async def _login(http: ClientSession, base: str) -> None:
    page = await (await http.get(f"{base}/login")).text()
    csrf = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    answer = await http.post(
        f"{base}/login",
        data={"name": "ann", "password": PASSWORD, "csrf_token": csrf},
        allow_redirects=False,
    )
    assert answer.status == 303, answer.status


async def _time(http: ClientSession, url: str, n: int, headers: dict[str, str]) -> list[float]:
    """n + 3 requests; returns their times in ms, the first (cold) one first."""
    times = []
    for _ in range(n + 3):
        t0 = time.perf_counter()
        async with http.get(url, headers=headers) as answer:
            await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"{url}: {answer.status} {await answer.text()}")
        times.append((time.perf_counter() - t0) * 1000)
    return times


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _measure(
    path: Path, token: str, count: int, requests: int, url: str | None = None
) -> None:
    """Time the routes over the store at `url` (default: the SQLite file `path`)."""
    async with await open_store(url or path) as store:
        app = make_admin_app(store, live_calls=None, secure_cookies=False, recordings_dir=None)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        some = (await store.call_log.page(CallFilter(), 1))[0]
        deep = _deep_cursor(path, count // 2)
        since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=90)).strftime("%Y-%m-%d")
        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        last = (dt.datetime.now(dt.UTC).replace(day=1) - dt.timedelta(days=1)).strftime("%Y-%m")
        bearer = {"Authorization": f"Bearer {token}"}
        routes = [
            ("page  /  (overview)", "/", {}),
            ("page  /calls", "/calls", {}),
            ("page  /calls?cursor=<middle of the log>", f"/calls?cursor={deep}", {}),
            ("page  /calls?source=radio", "/calls?source=radio", {}),
            ("page  /calls?q=+1305 (caller prefix)", "/calls?q=%2B1305", {}),
            ("page  /calls?q=+13055550123 (one caller)", "/calls?q=%2B13055550123", {}),
            ("page  /calls?q=+1999 (nobody)", "/calls?q=%2B1999", {}),
            ("page  /calls?q=+1 (everybody)", "/calls?q=%2B1", {}),
            (
                "page  /calls?disposition=busy&since=-90d",
                f"/calls?disposition=busy&since={since}",
                {},
            ),
            ("page  /calls/{id}", f"/calls/{some.id}", {}),
            ("page  /sources", "/sources", {}),
            ("page  /numbers", "/numbers", {}),
            ("api   /api/v1/calls", "/api/v1/calls", bearer),
            (
                "api   /api/v1/calls?cursor=<middle>&source=tv",
                f"/api/v1/calls?source=tv&cursor={deep}",
                bearer,
            ),
            ("api   /api/v1/calls/{id}", f"/api/v1/calls/{some.id}", bearer),
            ("api   /api/v1/overview", "/api/v1/overview", bearer),
            ("api   /api/v1/reports/calls-per-source", "/api/v1/reports/calls-per-source", bearer),
            (
                "api   /api/v1/reports/roi (this month)",
                f"/api/v1/reports/roi?month={month}",
                bearer,
            ),
            ("api   /api/v1/reports/roi (last month)", f"/api/v1/reports/roi?month={last}", bearer),
            ("api   /api/v1/numbers", "/api/v1/numbers", bearer),
            ("api   /api/v1/sources", "/api/v1/sources", bearer),
            ("api   /api/v1/live", "/api/v1/live", bearer),
        ]
        async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
            await _login(http, base)
            print(f"{'route':50} {'first ms':>8} {'p50 ms':>8} {'p99 ms':>8}")
            for label, url, headers in routes:
                times = await _time(http, base + url, requests, headers)
                warm = times[3:]  # the first 3 are warm-ups
                p50, p99 = statistics.median(warm), _p(warm, 0.99)
                print(f"{label:50} {times[0]:8.1f} {p50:8.1f} {p99:8.1f}")
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--db", type=Path, help="reuse (or create) this file")
    parser.add_argument("--postgres", action="store_true", help="also over PostgreSQL")
    args = parser.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="pbx-bench-dashboard-")
    path = args.db or Path(scratch.name) / "pbx.sqlite3"
    numbers = _numbers()
    token_file = path.with_suffix(".token")
    if not path.exists():
        t0 = time.perf_counter()
        token = asyncio.run(_provision(path, numbers))
        _fill(path, args.calls, numbers)
        token_file.write_text(token)
        print(
            f"filled {args.calls:,} calls in {time.perf_counter() - t0:.1f} s "
            f"({path.stat().st_size / 1e6:.0f} MB)"
        )
    print("SQLite")
    asyncio.run(_measure(path, token_file.read_text(), args.calls, args.requests))
    if args.postgres:
        _measure_postgres(path, token_file.read_text(), args.calls, args.requests)
    scratch.cleanup()


def _measure_postgres(path: Path, token: str, count: int, requests: int) -> None:
    cluster = pg.Cluster.start()
    try:
        name = cluster.fresh_db(empty=True)
        url = cluster.url(name)
        t0 = time.perf_counter()
        asyncio.run(copy_sqlite_to(path, url))
        print(f"PostgreSQL (copied {count:,} calls in {time.perf_counter() - t0:.1f} s)")
        cluster.psql("ANALYZE", db=name)
        asyncio.run(_measure(path, token, count, requests, url))
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
