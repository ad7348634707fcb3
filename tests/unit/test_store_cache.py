"""The provisioning cache (SQLite and PostgreSQL): changes from any connection are seen at once.

`test_a_raw_sqlite_edit_is_seen` edits the file with sqlite3 and runs on
SQLite only; its PostgreSQL twin (a raw SQL edit) is in test_store_postgres.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pbx.store import Block, Destination, Source, TrackingNumber, Trunk
from pbx.store.connect import open_store
from pbx.store.postgres.store import open_postgres
from pbx.store.sqlite.cache import MAX_ENTRIES

NUM = "+12125550123"
NUM2 = "+13125550150"
CALLER = "+14155550102"


@dataclass
class Pair:
    daemon: Any  # the cached store, as `pbx serve` holds it (SqliteStore or PostgresStore)
    cli: Any  # another connection on the same database, as the CLI opens it
    path: Path | None  # the SQLite file (None on PostgreSQL)

    @property
    def cache(self) -> Any:
        assert self.daemon.cache is not None
        return self.daemon.cache


@pytest.fixture(params=["sqlite", "postgres"])
async def pair(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    path: Path | None = None
    if request.param == "postgres":
        url = request.getfixturevalue("pg_url")
        daemon: Any = await open_postgres(url)
        cli: Any = await open_postgres(url, cache=False)
    else:
        path = tmp_path / "pbx.sqlite3"
        daemon = await open_store(path)
        cli = await open_store(path, cache=False)
    await cli.trunks.add(Trunk(name="carrier", host="192.0.2.10"))
    await cli.destinations.add(Destination(name="sales", target="+14155550101", kind="number"))
    await cli.sources.add(Source(name="google", tag="ppc"))
    await cli.numbers.add(
        TrackingNumber(number=NUM, source="google", destinations=("sales",), trunk="carrier")
    )
    yield Pair(daemon, cli, path)
    await cli.close()
    await daemon.close()


async def test_repeated_reads_are_hits(pair: Pair) -> None:
    first = await pair.daemon.numbers.lookup(NUM)
    misses = pair.cache.misses
    assert await pair.daemon.numbers.lookup(NUM) == first
    assert pair.cache.misses == misses
    assert pair.cache.hits >= 1


async def test_cli_changes_are_seen_by_the_next_read(pair: Pair) -> None:
    d = pair.daemon
    assert [t.name for t in await d.trunks.list()] == ["carrier"]
    assert await d.numbers.lookup(NUM2) is None  # unknown: cached as None
    assert await d.blocks.matching(CALLER, NUM) == []
    assert (await d.sources.get("google")) is not None
    await pair.cli.trunks.add(Trunk(name="other", host="192.0.2.11"))
    await pair.cli.numbers.add(TrackingNumber(number=NUM2, source="google", destinations=()))
    await pair.cli.blocks.add(Block(pattern="+1415"))
    await pair.cli.sources.update("google", tag="brand")
    assert [t.name for t in await d.trunks.list()] == ["carrier", "other"]
    route = await d.numbers.lookup(NUM2)
    assert route is not None
    assert route.number.number == NUM2
    assert [b.pattern for b in await d.blocks.matching(CALLER, NUM)] == ["+1415"]
    source = await d.sources.get("google")
    assert source is not None
    assert source.tag == "brand"


async def test_destination_and_allow_changes_reach_the_route(pair: Pair) -> None:
    d = pair.daemon
    route = await d.numbers.lookup(NUM)
    assert route is not None
    assert route.destinations[0].target == "+14155550101"
    await pair.cli.destinations.update("sales", target="+14155550109")
    await pair.cli.trunks.update("carrier", allow=("192.0.2.0/24",))
    route = await d.numbers.lookup(NUM)
    assert route is not None
    assert route.destinations[0].target == "+14155550109"
    assert route.trunk is not None
    assert route.trunk.allow == ("192.0.2.0/24",)


@pytest.mark.parametrize("pair", ["sqlite"], indirect=True)
async def test_a_raw_sqlite_edit_is_seen(pair: Pair) -> None:
    route = await pair.daemon.numbers.lookup(NUM)
    assert route is not None
    assert route.number.enabled
    assert pair.path is not None
    with sqlite3.connect(pair.path) as conn:
        conn.execute("UPDATE numbers SET enabled = 0 WHERE number = ?", (NUM,))
    route = await pair.daemon.numbers.lookup(NUM)
    assert route is not None
    assert not route.number.enabled


async def test_call_writes_and_the_cursor_keep_the_cache(pair: Pair) -> None:
    await pair.daemon.numbers.lookup(NUM)
    version = pair.cache.version()
    assert await pair.daemon.numbers.advance_cursor(NUM) == 0
    assert await pair.cli.numbers.advance_cursor(NUM) == 1  # another connection's cursor step
    assert pair.cache.version() == version  # the cursor is not provisioning
    route = await pair.daemon.numbers.lookup(NUM)
    assert route is not None
    assert route.number.rr_cursor == 1


async def test_blocks_longest_prefix_first_and_scoped(pair: Pair) -> None:
    for block in (Block(pattern="+1"), Block(pattern=CALLER, number=NUM), Block(pattern="+141555")):
        await pair.cli.blocks.add(block)
    found = await pair.daemon.blocks.matching(CALLER, NUM)
    assert [b.pattern for b in found] == [CALLER, "+141555", "+1"]
    assert [b.pattern for b in await pair.daemon.blocks.matching(CALLER, NUM2)] == [
        "+141555",
        "+1",
    ]
    assert await pair.daemon.blocks.matching("+12125550100", NUM) == [found[-1]]
    assert await pair.daemon.blocks.matching("+442071838750", NUM) == []


async def test_the_cache_is_bounded(pair: Pair) -> None:
    for i in range(MAX_ENTRIES + 5):
        pair.cache.put(("lookup", str(i)), None, pair.cache.version())
    assert len(pair.cache._values) <= MAX_ENTRIES


async def test_a_value_fetched_across_a_change_is_not_kept(pair: Pair) -> None:
    version = pair.cache.version()
    await pair.cli.trunks.add(Trunk(name="late", host="192.0.2.12"))
    pair.cache.version()  # moved on
    pair.cache.put(("trunks",), [], version)  # a fetch that started before the change
    assert [t.name for t in await pair.daemon.trunks.list()] == ["carrier", "late"]


async def _admission_reads(d: Any) -> None:
    """The provisioning reads one INVITE makes."""
    await d.trunks.list()
    await d.numbers.lookup(NUM)
    await d.blocks.matching(CALLER, NUM)
    await d.sources.get("google")


async def test_a_pin_reads_the_version_once(pair: Pair) -> None:
    d = pair.daemon
    before = pair.cache.version_reads
    await _admission_reads(d)
    unpinned = pair.cache.version_reads - before
    before = pair.cache.version_reads
    with d.pinned_config():
        await _admission_reads(d)
    assert unpinned == 4
    assert pair.cache.version_reads - before == 1


async def test_a_change_before_the_pin_is_seen_by_every_read_in_it(pair: Pair) -> None:
    d = pair.daemon
    await _admission_reads(d)  # warm: everything cached at the old version
    await pair.cli.trunks.add(Trunk(name="other", host="192.0.2.11"))
    await pair.cli.numbers.add(TrackingNumber(number=NUM2, source="google", destinations=()))
    with d.pinned_config():
        assert [t.name for t in await d.trunks.list()] == ["carrier", "other"]
        assert (await d.numbers.lookup(NUM2)) is not None


async def test_pins_of_concurrent_calls_are_their_own(pair: Pair) -> None:
    """A task pinned at an old version does not pin another task that starts after a change."""
    import asyncio

    d = pair.daemon
    pinned = asyncio.Event()
    changed = asyncio.Event()

    async def old_call() -> list[str]:
        with d.pinned_config():
            await d.numbers.lookup(NUM)  # pins the version before the change
            pinned.set()
            await changed.wait()
            return [t.name for t in await d.trunks.list()]

    async def new_call() -> list[str]:
        await pinned.wait()
        await pair.cli.trunks.add(Trunk(name="other", host="192.0.2.11"))
        with d.pinned_config():
            names = [t.name for t in await d.trunks.list()]
        changed.set()
        return names

    old, new = await asyncio.wait_for(asyncio.gather(old_call(), new_call()), 10)
    assert new == ["carrier", "other"]
    # the old call may see the newer list (never an older one than its pin)
    assert old in (["carrier"], ["carrier", "other"])
