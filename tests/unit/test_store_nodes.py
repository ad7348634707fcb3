"""Node leases on the shared PostgreSQL store (pbx/store/postgres/nodes.py), real cluster."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace

import asyncpg
import pytest

from pbx.errors import ConflictError
from pbx.records import CallRecord, Disposition
from pbx.store.postgres.nodes import LeaseLostError
from pbx.store.postgres.store import PostgresStore, open_postgres

T0 = "2024-05-01T10:00:00.000000Z"
T10 = "2024-05-01T10:00:10.000000Z"
T20 = "2024-05-01T10:00:20.000000Z"
T31 = "2024-05-01T10:00:31.000000Z"
T40 = "2024-05-01T10:00:40.000000Z"
T60 = "2024-05-01T10:01:00.000000Z"
T90 = "2024-05-01T10:01:30.000000Z"


def _call(call_id: str, **kw: object) -> CallRecord:
    return CallRecord(
        id=call_id,
        inbound_call_id=f"in-{call_id}@192.0.2.10",
        started_at=T0,
        caller="+14155550102",
        tracking_number="+12125550123",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
async def stores(pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    opened = [await open_postgres(pg_url) for _ in range(3)]
    yield opened
    for store in opened:
        await store.close()


async def _nodes_of_calls(url: str) -> dict[str, str | None]:
    conn = await asyncpg.connect(url)
    try:
        return {r["id"]: r["node"] for r in await conn.fetch("SELECT id, node FROM calls")}
    finally:
        await conn.close()


async def test_a_live_name_is_refused(stores: list[PostgresStore]) -> None:
    a, b, _ = stores
    lease = await a.nodes.acquire_node("node-1", 30, now=T0)
    assert (lease.name, lease.expires_at, lease.interrupted) == (
        "node-1",
        "2024-05-01T10:00:30.000000Z",
        0,
    )
    with pytest.raises(ConflictError) as info:
        await b.nodes.acquire_node("node-1", 30, now=T10)
    assert "node-1" in str(info.value)
    assert "\n" not in str(info.value)
    assert (await b.nodes.acquire_node("node-2", 30, now=T10)).name == "node-2"
    assert await a.nodes.live(now=T20) == {
        "node-1": "2024-05-01T10:00:30.000000Z",
        "node-2": "2024-05-01T10:00:40.000000Z",
    }


async def test_calls_carry_the_node_and_the_dump_shows_it(
    stores: list[PostgresStore], pg_url: str
) -> None:
    a = stores[0]
    await a.nodes.acquire_node("node-1", 30, now=T0)
    await a.calls.insert(_call("c1"))
    await a.calls.finish(_call("c2", ended_at=T10, disposition=Disposition.BUSY))
    assert await _nodes_of_calls(pg_url) == {"c1": "node-1", "c2": "node-1"}
    dump = json.loads(await a.dump())
    assert "nodes" not in dump
    assert [row["node"] for row in dump["calls"]] == ["node-1", "node-1"]  # as on SQLite


async def test_sweep_interrupts_an_expired_nodes_calls_once(stores: list[PostgresStore]) -> None:
    a, b, sweeper = stores
    await a.nodes.acquire_node("node-a", 30, now=T0)
    await b.nodes.acquire_node("node-b", 60, now=T0)
    await a.calls.insert(_call("ringing"))
    await a.calls.insert(_call("answered", answered_at=T10, disposition=Disposition.ANSWERED))
    done = _call("done", ended_at=T10, disposition=Disposition.BUSY, hangup_by="callee")
    await a.calls.insert(done)
    await b.calls.insert(_call("b-live"))
    assert await sweeper.nodes.sweep_expired(now=T10) == {}
    assert await a.nodes.renew("node-a", 10, now=T10) == "2024-05-01T10:00:20.000000Z"
    assert await sweeper.nodes.sweep_expired(now=T31) == {"node-a": 2}
    for call_id in ("ringing", "answered"):
        got = await a.calls.get(call_id)
        assert got is not None
        assert (got.disposition, got.ended_at, got.hangup_by) == (
            Disposition.INTERRUPTED,
            T31,
            "system",
        )
    assert await a.calls.get("done") == replace(done, node="node-a")  # the writer's node
    b_live = await b.calls.get("b-live")
    assert b_live is not None
    assert b_live.disposition is Disposition.RINGING
    assert await sweeper.nodes.sweep_expired(now=T31) == {}  # exactly once
    with pytest.raises(LeaseLostError):
        await a.nodes.renew("node-a", 30, now=T40)
    assert await b.nodes.renew("node-b", 30, now=T40) == "2024-05-01T10:01:10.000000Z"


async def test_swept_calls_talk_until_their_last_media(stores: list[PostgresStore]) -> None:
    """Both node sweeps give an answered call the talk time to its last media_at."""
    a, b, sweeper = stores
    await a.nodes.acquire_node("node-a", 30, now=T0)
    await b.nodes.acquire_node("node-b", 30, now=T0)
    answered = {"answered_at": T10, "disposition": Disposition.ANSWERED}
    await a.calls.insert(_call("a-talk", **answered))
    await a.calls.insert(_call("a-quiet", **answered))
    await b.calls.insert(_call("b-talk", **answered))
    await a.calls.touch_media(["a-talk", "b-talk"], T20)  # any node's checkpoint may stamp
    await b.calls.touch_media(["b-talk"], T40)
    assert await sweeper.nodes.sweep_expired(now=T31) == {"node-a": 2, "node-b": 1}
    talk = {c.id: c.talk_seconds for c in await sweeper.calls.list()}
    assert talk == {"a-talk": 10.0, "a-quiet": 0.0, "b-talk": 30.0}
    await b.nodes.acquire_node("node-b", 30, now=T60)  # a new incarnation
    await b.calls.insert(_call("b-again", **answered))
    await b.calls.touch_media(["b-again"], T60)
    lease = await a.nodes.acquire_node("node-b", 30, now=T90)  # taken over once expired
    assert lease.interrupted == 1
    again = await a.calls.get("b-again")
    assert again is not None
    assert (again.disposition, again.talk_seconds, again.ended_at) == (
        Disposition.INTERRUPTED,
        50.0,  # T10 -> T60
        T90,
    )


async def _blocked_on_locks(conn: asyncpg.Connection, count: int) -> None:
    """Wait (bounded) until `count` other sessions wait for a lock."""
    for _ in range(500):
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database()"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.01)  # polling a server-side condition, bounded to 5 s
    raise AssertionError(f"{count} sessions never waited for the lock")


async def test_two_sweepers_at_once_sweep_each_node_once(
    stores: list[PostgresStore], pg_url: str
) -> None:
    writer, s1, s2 = stores
    for n in range(20):
        await writer.nodes.acquire_node(f"node-{n:02d}", 30, now=T0)
        for k in range(n % 3 + 1):
            await writer.calls.insert(_call(f"c-{n}-{k}"))
    # Hold one node row so both sweepers start, block on it, and then race for the rest.
    holder = await asyncpg.connect(pg_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM nodes WHERE name = 'node-00' FOR UPDATE")
        sweeps = [asyncio.ensure_future(s.nodes.sweep_expired(now=T60)) for s in (s1, s2)]
        await _blocked_on_locks(holder, 2)
        await tx.commit()
        first, second = await asyncio.wait_for(asyncio.gather(*sweeps), 30)
    finally:
        await holder.close()
    assert not set(first) & set(second)
    assert set(first) | set(second) == {f"node-{n:02d}" for n in range(20)}
    assert sum(first.values()) + sum(second.values()) == sum(n % 3 + 1 for n in range(20))
    interrupted = await writer.calls.list(disposition=Disposition.INTERRUPTED)
    assert len(interrupted) == sum(n % 3 + 1 for n in range(20))


async def test_taking_over_an_expired_name_interrupts_its_old_calls(
    stores: list[PostgresStore],
) -> None:
    old, new, _ = stores
    await old.nodes.acquire_node("node-1", 30, now=T0)
    await old.calls.insert(_call("orphan"))
    with pytest.raises(ConflictError):
        await new.nodes.acquire_node("node-1", 30, now=T20)
    lease = await new.nodes.acquire_node("node-1", 30, now=T60)
    assert lease.interrupted == 1
    orphan = await new.calls.get("orphan")
    assert orphan is not None
    assert (orphan.disposition, orphan.ended_at) == (Disposition.INTERRUPTED, T60)
    with pytest.raises(LeaseLostError):  # the old incarnation's token no longer holds it
        await old.nodes.renew("node-1", 30, now=T60)
    await new.nodes.release("node-1")
    assert await new.nodes.live(now=T60) == {}
    assert (await old.nodes.acquire_node("node-1", 30, now=T90)).interrupted == 0


async def test_the_database_clock_is_the_default(stores: list[PostgresStore]) -> None:
    a, sweeper, _ = stores
    lease = await a.nodes.acquire_node("node-1", 600)
    assert lease.expires_at.endswith("Z")
    assert len(lease.expires_at) == len(T0)
    assert await sweeper.nodes.sweep_expired() == {}
    assert list(await sweeper.nodes.live()) == ["node-1"]


async def test_nodes_never_hold_one_pool_number_for_two_visitors(
    stores: list[PostgresStore],
) -> None:
    """Three nodes' visitor APIs read the same free pool and hold at once: `add_holding`
    is atomic across the cluster, so thirty visits get the ten numbers once each."""
    from pbx.store import Visit

    pool = [f"+1212555{n:04d}" for n in range(100, 110)]

    async def pick(store: PostgresStore, n: int) -> str | None:
        held = await store.visits.held_until(pool)
        free = [number for number in pool if held.get(number, "") <= T10]
        visit = Visit(id=f"v{n}", visitor_id=f"visitor{n}", started_at=T10, last_seen_at=T10,
                      expires_at=T90, source="google")  # fmt: skip
        added = await store.visits.add_holding(visit, free, T10)
        return None if added is None else added.number

    picked = await asyncio.gather(*(pick(stores[n % 3], n) for n in range(30)))
    assert sorted(p for p in picked if p is not None) == pool  # no visitor shares one
    assert picked.count(None) == 20
