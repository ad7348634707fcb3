"""RecordWriter over a real SQLite store that cannot write (SQLITE_FULL via max_page_count).

`PRAGMA max_page_count` makes SQLite answer "database or disk is full" exactly
as a full disk does, on both of the store's connections; raising it again is
"space is back". No mock: the errors are SQLite's own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from pbx.records import CallRecord, Disposition
from pbx.service.records import RecordWriter
from pbx.store import OutboxItem
from pbx.store.connect import open_store
from pbx.store.sqlite.store import SqliteStore

T0 = "2026-12-01T10:00:00.000000Z"
T1 = "2026-12-01T10:00:05.000000Z"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _call(call_id: str, **kw: object) -> CallRecord:
    return CallRecord(id=call_id, inbound_call_id=f"in-{call_id}", started_at=T0,
                      caller="+14155550102", tracking_number="+12125550150", **kw)  # type: ignore[arg-type]  # fmt: skip


async def _limit(store: SqliteStore, full: bool) -> None:
    """Cap the file at its current size on both connections (the disk is 'full'), or uncap."""
    db = store._db
    async with db.lock:
        rows = list(await db.conn.execute_fetchall("PRAGMA page_count"))
        limit = int(rows[0][0]) if full else 1_000_000_000
        pragma = f"PRAGMA max_page_count = {limit}"
        await db.conn.execute_fetchall(pragma)  # fetched: no statement left holding a snapshot
        await db.writer.call(db.writer._conn.execute, pragma)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await open_store(tmp_path / "pbx.sqlite3", cache=False)
    assert isinstance(opened, SqliteStore)
    try:
        yield opened
    finally:
        await _limit(opened, False)
        await opened.close()


async def _fill(store: SqliteStore) -> None:
    """Write until the capped file is full (each call row is small, pages fill up)."""
    await _limit(store, True)


async def test_full_store_refuses_new_calls_and_keeps_finals_until_space_is_back(
    store: SqliteStore,
) -> None:
    clock = Clock()
    writer = RecordWriter(store, clock, retry_interval=0.05, cooldown=5.0)
    assert await writer.insert(_call("up"))  # a call up before the disk fills
    await _fill(store)
    big = replace(_call("new"), caller_name="x" * 200_000)  # needs new pages
    assert not await writer.insert(big)
    assert writer.degraded
    assert not writer.gate()  # new calls are refused at once
    assert "full" in writer.cause
    final = replace(_call("up"), disposition=Disposition.ANSWERED, ended_at=T1,
                    caller_name="y" * 200_000)  # fmt: skip
    item = OutboxItem(kind="webhook", payload='{"event":"call.ended"}',
                      target_url="https://hooks.example.com/x")  # fmt: skip
    await writer.finish(final, [item])
    assert writer.queued == 1
    stored = await store.calls.get("up")
    assert stored is not None
    assert stored.disposition == Disposition.RINGING  # not written yet
    clock.now += 5.0
    assert writer.gate()  # half-open: the next call may try
    await _limit(store, False)  # space is back

    async def written() -> bool:
        got = await store.calls.get("up")
        return got is not None and got.disposition == Disposition.ANSWERED

    for _ in range(100):
        if await written():
            break
        await asyncio.sleep(0.02)
    assert await written()
    assert writer.queued == 0
    assert not writer.degraded
    assert [i.payload for i in await store.outbox.due(T1)] == ['{"event":"call.ended"}']
    assert await writer.insert(_call("after"))  # calls are taken again, no restart


async def test_a_final_row_is_never_replaced_by_a_late_update(store: SqliteStore) -> None:
    writer = RecordWriter(store, Clock(), retry_interval=60.0)
    assert await writer.insert(_call("c"))
    await _fill(store)
    final = replace(_call("c"), disposition=Disposition.BUSY, ended_at=T1, caller_name="z" * 9**6)
    await writer.finish(final, [])
    await writer.update(replace(_call("c"), disposition=Disposition.ANSWERED))
    await _limit(store, False)
    await writer.flush()
    got = await store.calls.get("c")
    assert got is not None
    assert got.disposition == Disposition.BUSY


async def test_the_queue_is_bounded(store: SqliteStore) -> None:
    writer = RecordWriter(store, Clock(), retry_interval=60.0, max_queued=3)
    for n in range(5):
        assert await writer.insert(_call(f"c{n}"))
    await _fill(store)
    for n in range(5):
        await writer.update(replace(_call(f"c{n}"), caller_name="w" * 200_000))
    assert writer.queued == 3
    assert writer.dropped == 2
    await writer.close()


async def test_a_dropped_call_is_written_whole_once_the_store_is_back(store: SqliteStore) -> None:
    """Its held update was dropped, so the row is older than the runner's `previous`:
    writing "only what changed since previous" would leave the answer out of it."""
    writer = RecordWriter(store, Clock(), retry_interval=60.0, max_queued=1)
    ringing = [_call(f"c{n}") for n in range(2)]
    for record in ringing:
        assert await writer.insert(record)
    await _fill(store)
    answered = [replace(r, disposition=Disposition.ANSWERED, answered_at=T1,
                        caller_name="w" * 200_000) for r in ringing]  # fmt: skip
    for new, old in zip(answered, ringing, strict=True):
        await writer.update(new, old)
    assert writer.dropped == 1  # c0's update is gone; c1's is held
    await _limit(store, False)
    final = replace(answered[0], disposition=Disposition.ANSWERED, ended_at=T1, talk_seconds=3.0)
    await writer.finish(final, [], answered[0])  # `previous` as the runner knows it
    got = await store.calls.get("c0")
    assert got == final  # whole: answered_at and caller_name are there too
    await writer.close()


async def test_bugs_are_not_swallowed(store: SqliteStore) -> None:
    writer = RecordWriter(store, Clock())
    with pytest.raises((AttributeError, TypeError)):  # TypeError where compiled (mypyc)
        await writer.insert(object())  # type: ignore[arg-type]
